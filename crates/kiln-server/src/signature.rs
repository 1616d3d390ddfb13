//! `X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256 of the raw body, keyed
//! with the webhook secret (GitHub, *Validating webhook deliveries*).
//!
//! Verified before anything parses the body. Comparison is constant-time
//! (`Mac::verify_slice`). Several secrets may be configured at once so the
//! secret can be rotated without refusing deliveries: a signature made with
//! any of them is accepted.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The header GitHub signs deliveries with.
pub const HEADER: &str = "x-hub-signature-256";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks `header` against `body` with each secret in turn.
pub fn verify(
    secrets: &[Secret],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = parse(header)?;
    let mut matched = false;
    for secret in secrets {
        // Every secret is tried, so the time taken does not tell which one matched.
        matched |= mac(secret.expose().as_bytes(), body)
            .verify_slice(&digest)
            .is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(body);
    mac
}

fn parse(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| SignatureError::Malformed)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test values ("Testing the webhook payload
    /// validation" in *Validating webhook deliveries*).
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_PAYLOAD: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn github_known_answer_vector() {
        assert_eq!(sign(DOC_SECRET.as_bytes(), DOC_PAYLOAD), DOC_SIGNATURE);
        let got = verify(
            &secrets(&[DOC_SECRET]),
            DOC_PAYLOAD,
            Some(DOC_SIGNATURE.as_bytes()),
        );
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn wrong_secret_body_or_digest_is_a_mismatch() {
        let sig = Some(DOC_SIGNATURE.as_bytes());
        let s = secrets(&[DOC_SECRET]);
        assert_eq!(
            verify(&secrets(&["other"]), DOC_PAYLOAD, sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&s, b"Hello, World?", sig),
            Err(SignatureError::Mismatch)
        );
        let flipped = DOC_SIGNATURE.replace("e17", "e18");
        assert_eq!(
            verify(&s, DOC_PAYLOAD, Some(flipped.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&[], DOC_PAYLOAD, sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn missing_and_malformed_headers() {
        let s = secrets(&[DOC_SECRET]);
        assert_eq!(verify(&s, DOC_PAYLOAD, None), Err(SignatureError::Missing));
        let hex = &DOC_SIGNATURE["sha256=".len()..];
        for bad in [
            "",
            hex,                                       // no prefix
            &format!("sha1={hex}"),                    // other algorithm
            &DOC_SIGNATURE[..DOC_SIGNATURE.len() - 2], // too short
            &format!("{DOC_SIGNATURE}00"),             // too long
            &DOC_SIGNATURE.replace('7', "z"),          // not hex
            &DOC_SIGNATURE.to_uppercase(),             // SHA256= prefix
        ] {
            assert_eq!(
                verify(&s, DOC_PAYLOAD, Some(bad.as_bytes())),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn either_secret_verifies_during_rotation() {
        let s = secrets(&["new-secret", DOC_SECRET]);
        let old = sign(DOC_SECRET.as_bytes(), DOC_PAYLOAD);
        let new = sign(b"new-secret", DOC_PAYLOAD);
        assert_eq!(verify(&s, DOC_PAYLOAD, Some(old.as_bytes())), Ok(()));
        assert_eq!(verify(&s, DOC_PAYLOAD, Some(new.as_bytes())), Ok(()));
        let stranger = sign(b"third", DOC_PAYLOAD);
        assert_eq!(
            verify(&s, DOC_PAYLOAD, Some(stranger.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn uppercase_hex_digits_are_accepted() {
        let s = secrets(&[DOC_SECRET]);
        let upper = format!("sha256={}", DOC_SIGNATURE["sha256=".len()..].to_uppercase());
        assert_eq!(verify(&s, DOC_PAYLOAD, Some(upper.as_bytes())), Ok(()));
    }
}
