//! How a [`GitHubClient`](crate::GitHubClient) reaches and authenticates to
//! GitHub, and how hard it tries.

use std::fmt;
use std::time::Duration;

/// Where and as whom to talk to GitHub.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// REST API root: `https://api.github.com`, or `https://HOST/api/v3` for
    /// GitHub Enterprise Server. A trailing `/` is ignored.
    pub api_url: String,
    pub auth: Auth,
    /// GitHub rejects requests without a `User-Agent`; it should name the
    /// installation so GitHub support can find it in their logs.
    pub user_agent: String,
    pub retry: RetryPolicy,
}

impl GitHubConfig {
    /// The public GitHub API.
    pub const DEFAULT_API_URL: &'static str = "https://api.github.com";

    /// The public API with Kiln's user agent and the default retry policy.
    pub fn new(auth: Auth) -> GitHubConfig {
        GitHubConfig {
            api_url: GitHubConfig::DEFAULT_API_URL.to_owned(),
            auth,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
        }
    }
}

/// Credentials. `Debug` never prints the secret parts.
#[derive(Clone)]
pub enum Auth {
    /// A personal access token (classic or fine-grained) or any other bearer
    /// token that GitHub accepts as is.
    Token(String),
    /// A GitHub App: requests are made with short-lived installation tokens,
    /// minted from a JWT signed with the app's private key.
    App {
        app_id: u64,
        /// The PEM the app's settings page hands out (PKCS#1 or PKCS#8).
        private_key_pem: String,
        /// Fixed installation, for an app installed on one account. `None`
        /// looks up the installation of each repository
        /// (`GET /repos/{owner}/{repo}/installation`) and remembers it.
        installation_id: Option<u64>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("private_key_pem", &"<redacted>")
                .field("installation_id", installation_id)
                .finish(),
        }
    }
}

/// Retries with exponential backoff and jitter.
///
/// `max_delay` is also the longest wait the client accepts from GitHub's
/// `retry-after` / `x-ratelimit-reset`: an exhausted hourly quota is not worth
/// blocking a request for, so a longer wait fails at once with
/// [`GitHubError::RateLimited`](crate::GitHubError::RateLimited) and the
/// caller decides (requeue, drop the update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// The first backoff; each retry doubles it.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let token = format!("{:?}", Auth::Token("ghp_secret".into()));
        assert!(!token.contains("ghp_secret"), "{token}");
        let app = format!(
            "{:?}",
            Auth::App {
                app_id: 7,
                private_key_pem: "-----BEGIN RSA PRIVATE KEY-----xyz".into(),
                installation_id: None,
            }
        );
        assert!(!app.contains("xyz"), "{app}");
        assert!(app.contains("app_id: 7"), "{app}");
    }
}
