//! GitHub App credentials: the app's JWT, and the installation tokens it
//! buys, cached until shortly before they expire.
//!
//! An app authenticates as itself with a JWT it signs (RS256, valid at most
//! 10 minutes) and may then mint an installation token (valid an hour) for
//! each account that installed it; only installation tokens can write checks.
//! Minting one per request would cost a round trip and eat into the app's
//! rate limit, so tokens are cached per installation and refreshed
//! [`REFRESH_MARGIN`] early, so a request never starts with a token that
//! expires while it is retried.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::GitHubError;

/// Refresh an installation token this long before GitHub says it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// GitHub rejects a JWT whose `iat` is in its future; backdating by a minute
/// absorbs clock drift between us and GitHub (GitHub's own advice).
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// GitHub rejects a JWT that expires more than 10 minutes ahead; stay under.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);

pub(crate) struct AppAuth {
    app_id: u64,
    key: EncodingKey,
    installation_id: Option<u64>,
    /// `owner/name` (lowercased: GitHub names are case-insensitive) →
    /// installation id, so each repository is looked up once.
    installations: Mutex<HashMap<String, u64>>,
    /// One slot per installation, locked while its token is refreshed so
    /// that concurrent requests wait for one mint instead of each minting.
    tokens: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<InstallationToken>>>>>,
}

#[derive(Clone)]
pub(crate) struct InstallationToken {
    pub token: String,
    pub expires_at: SystemTime,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<redacted>")
            .field("expires_at", &humantime::format_rfc3339(self.expires_at))
            .finish()
    }
}

impl InstallationToken {
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now + REFRESH_MARGIN < self.expires_at
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    /// The app id, as a string: GitHub accepts either form, and a string is
    /// what JWT libraries (and GitHub's fake here) validate `iss` against.
    iss: String,
}

impl AppAuth {
    pub fn new(
        app_id: u64,
        private_key_pem: &str,
        installation_id: Option<u64>,
    ) -> Result<AppAuth, GitHubError> {
        let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
            GitHubError::Auth {
                message: format!("app {app_id}: private key is not an RSA PEM: {e}"),
            }
        })?;
        Ok(AppAuth {
            app_id,
            key,
            installation_id,
            installations: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// A JWT for the app endpoints, signed now.
    pub fn jwt(&self, now: SystemTime) -> Result<String, GitHubError> {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            iat: secs.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: secs + JWT_LIFETIME.as_secs(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map_err(|e| {
            GitHubError::Auth {
                message: format!("app {}: signing JWT: {e}", self.app_id),
            }
        })
    }

    /// The configured installation, or the one remembered for `repo`.
    pub fn known_installation(&self, repo: &str) -> Option<u64> {
        self.installation_id.or_else(|| {
            lock(&self.installations)
                .get(&repo.to_ascii_lowercase())
                .copied()
        })
    }

    pub fn remember_installation(&self, repo: &str, id: u64) {
        lock(&self.installations).insert(repo.to_ascii_lowercase(), id);
    }

    pub fn token_slot(
        &self,
        installation: u64,
    ) -> Arc<tokio::sync::Mutex<Option<InstallationToken>>> {
        lock(&self.tokens).entry(installation).or_default().clone()
    }
}

/// The maps hold plain data that a panicking holder cannot leave half
/// updated, so a poisoned lock is still good to use.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    use super::*;

    const PRIVATE: &str = include_str!("../tests/data/test-app-private-key.pem");
    const PUBLIC: &str = include_str!("../tests/data/test-app-public-key.pem");

    #[derive(Deserialize)]
    struct Decoded {
        iat: u64,
        exp: u64,
        iss: String,
    }

    #[test]
    fn jwt_is_rs256_backdated_and_short_lived() {
        let app = AppAuth::new(4242, PRIVATE, None).expect("key");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let jwt = app.jwt(now).expect("jwt");
        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false; // `now` is in the past
        validation.set_issuer(&["4242"]);
        let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).expect("public key");
        let claims = jsonwebtoken::decode::<Decoded>(&jwt, &key, &validation)
            .expect("valid signature")
            .claims;
        assert_eq!(claims.iss, "4242");
        assert_eq!(claims.iat, 1_700_000_000 - 60);
        assert!(claims.exp > 1_700_000_000);
        assert!(claims.exp <= 1_700_000_000 + 600);
    }

    #[test]
    fn bad_key_is_an_auth_error() {
        let err = AppAuth::new(1, "not a key", None).err().expect("error");
        assert!(matches!(err, GitHubError::Auth { .. }), "{err}");
    }

    #[test]
    fn token_freshness_has_a_margin() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = |secs| InstallationToken {
            token: "t".into(),
            expires_at: now + Duration::from_secs(secs),
        };
        assert!(token(3600).is_fresh(now));
        assert!(!token(300).is_fresh(now));
        assert!(!token(60).is_fresh(now));
        assert!(!format!("{:?}", token(1)).contains("\"t\""));
    }

    #[test]
    fn installations_are_remembered_case_insensitively() {
        let app = AppAuth::new(1, PRIVATE, None).expect("key");
        assert_eq!(app.known_installation("Octo/Repo"), None);
        app.remember_installation("Octo/Repo", 9);
        assert_eq!(app.known_installation("octo/repo"), Some(9));
        let fixed = AppAuth::new(1, PRIVATE, Some(3)).expect("key");
        assert_eq!(fixed.known_installation("any/repo"), Some(3));
    }
}
