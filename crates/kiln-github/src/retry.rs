//! When to try a request again, and how long to wait first.
//!
//! GitHub's rules (docs: "Rate limits for the REST API", "Best practices"):
//! a 429, or a 403 that says so (`x-ratelimit-remaining: 0` for the primary
//! limit, `retry-after` for a secondary limit), is a rate limit; wait
//! `retry-after` seconds, or until `x-ratelimit-reset`, before the next try.
//! A 5xx is GitHub's trouble and usually passes. Any other 4xx is ours and
//! will not change on a retry.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::RetryPolicy;

/// What an error status means for the next attempt. `wait` is the least the
/// response asked for, if it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    RateLimited { wait: Option<Duration> },
    Retry { wait: Option<Duration> },
    Fail,
}

pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Verdict {
    let retry_after = retry_after(headers, now);
    let exhausted = header_str(headers, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (exhausted || retry_after.is_some()))
    {
        let reset = if exhausted {
            ratelimit_reset(headers, now)
        } else {
            None
        };
        return Verdict::RateLimited {
            wait: retry_after.or(reset),
        };
    }
    if status.is_server_error() {
        return Verdict::Retry { wait: retry_after };
    }
    Verdict::Fail
}

/// The wait before retry number `retry` (1 for the second attempt):
/// exponential backoff with "equal jitter" (half fixed, half random, so
/// clients that failed together do not retry together), but never less than
/// what GitHub asked for.
pub(crate) fn delay(policy: &RetryPolicy, retry: u32, asked: Option<Duration>) -> Duration {
    let backoff = policy
        .base_delay
        .saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .min(policy.max_delay);
    let half = backoff / 2;
    let jittered = half + half.mul_f64(random_fraction());
    jittered.max(asked.unwrap_or_default())
}

/// Uniform in [0, 1). Jitter needs spread, not quality: the std hasher's
/// per-instance random keys are enough and spare a dependency.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// `retry-after`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `x-ratelimit-reset`: when the quota refills, in UTC epoch seconds.
fn ratelimit_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let epoch: u64 = header_str(headers, "x-ratelimit-reset")?
        .trim()
        .parse()
        .ok()?;
    let at = UNIX_EPOCH + Duration::from_secs(epoch);
    Some(at.duration_since(now).unwrap_or_default())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        map
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rate_limits_are_recognised() {
        let now = at(1_000);
        let s = |code| StatusCode::from_u16(code).expect("status");
        assert_eq!(
            classify(s(429), &headers(&[("retry-after", "7")]), now),
            Verdict::RateLimited {
                wait: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(s(429), &headers(&[]), now),
            Verdict::RateLimited { wait: None }
        );
        assert_eq!(
            classify(
                s(403),
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1030")
                ]),
                now
            ),
            Verdict::RateLimited {
                wait: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            classify(s(403), &headers(&[("retry-after", "60")]), now),
            Verdict::RateLimited {
                wait: Some(Duration::from_secs(60))
            }
        );
        // A reset in the past (clock skew) means "now", not a panic.
        assert_eq!(
            classify(
                s(403),
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "10")]),
                now
            ),
            Verdict::RateLimited {
                wait: Some(Duration::ZERO)
            }
        );
    }

    #[test]
    fn plain_403_and_other_4xx_fail() {
        let now = at(0);
        for code in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(code).expect("status");
            let h = headers(&[("x-ratelimit-remaining", "4999")]);
            assert_eq!(classify(status, &h, now), Verdict::Fail, "{code}");
        }
    }

    #[test]
    fn server_errors_retry() {
        let now = at(0);
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &headers(&[]), now),
            Verdict::Retry { wait: None }
        );
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(&[("retry-after", "Thu, 01 Jan 1970 00:00:05 GMT")]),
                now
            ),
            Verdict::Retry {
                wait: Some(Duration::from_secs(5))
            }
        );
    }

    #[test]
    fn delay_grows_is_capped_and_honours_asked() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        };
        for _ in 0..50 {
            let d1 = delay(&policy, 1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = delay(&policy, 3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = delay(&policy, 9, None);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1_000));
            assert!(delay(&policy, 200, None) <= Duration::from_millis(1_000));
            let asked = delay(&policy, 1, Some(Duration::from_secs(2)));
            assert_eq!(asked, Duration::from_secs(2));
        }
    }

    #[test]
    fn jitter_spreads() {
        let samples: Vec<f64> = (0..64).map(|_| random_fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        let distinct = samples
            .iter()
            .map(|f| f.to_bits())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 32, "{distinct:?}");
    }
}
