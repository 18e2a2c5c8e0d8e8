//! Who may use the control API: bearer tokens (from a 0600 file or the environment), compared
//! in constant time, each with a name the audit log records; and a per-client rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use subtle::ConstantTimeEq;

use crate::live::config::{Secret, SecretFileProblem, check_secret_file};

/// The environment variable holding a token when no `--api-token-file` is given.
pub const TOKEN_ENV: &str = "RUSTYBT_API_TOKEN";
/// The name the audit log gives the environment's token (default `env`).
pub const TOKEN_NAME_ENV: &str = "RUSTYBT_API_TOKEN_NAME";
/// Shorter tokens are refused: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error(
        "the API token file {path} can be read by others (mode {mode:04o}); it must be readable by its owner only"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("the API token file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "--api needs a token: give --api-token-file FILE (lines `name:token`, mode 0600) or set {TOKEN_ENV}"
    )]
    Missing,
}

impl TokenError {
    pub fn hint(&self) -> &'static str {
        match self {
            TokenError::Mode { .. } => {
                "chmod 600 the file (its tokens grant control of the session)"
            }
            TokenError::File { .. } => {
                "one token per line as `name:token` (the name is recorded in the audit log), tokens of at least 16 characters; `#` starts a comment"
            }
            TokenError::Missing => {
                "e.g. `umask 077; echo \"ops:$(openssl rand -hex 24)\" > api-tokens` then `--api-token-file api-tokens`"
            }
        }
    }
}

/// One accepted token and the name actions taken with it are recorded under.
pub struct Token {
    pub name: String,
    pub secret: Secret,
}

/// The accepted tokens.
pub struct Tokens(Vec<Token>);

fn check_token(name: &str, token: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(format!(
            "the token name `{name}` must be letters, digits, `-`, `_`, `.` or `@`"
        ));
    }
    if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(format!(
            "the token named `{name}` must be at least {MIN_TOKEN_LEN} characters without spaces"
        ));
    }
    Ok(())
}

impl Tokens {
    /// From `--api-token-file` (mode 0600 or stricter), else from [`TOKEN_ENV`].
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Tokens, TokenError> {
        match file {
            Some(path) => Tokens::from_file(path),
            None => {
                let token = env(TOKEN_ENV)
                    .filter(|t| !t.is_empty())
                    .ok_or(TokenError::Missing)?;
                let name = env(TOKEN_NAME_ENV)
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "env".into());
                check_token(&name, &token).map_err(|message| TokenError::File {
                    path: PathBuf::from(format!("${TOKEN_ENV}")),
                    message,
                })?;
                Ok(Tokens(vec![Token {
                    name,
                    secret: Secret::new(token),
                }]))
            }
        }
    }

    pub fn from_file(path: &Path) -> Result<Tokens, TokenError> {
        let failed = |message: String| TokenError::File {
            path: path.to_path_buf(),
            message,
        };
        check_secret_file(path).map_err(|problem| match problem {
            SecretFileProblem::Unusable(message) => failed(message),
            SecretFileProblem::Mode(mode) => TokenError::Mode {
                path: path.to_path_buf(),
                mode,
            },
        })?;
        let text =
            std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read it: {e}")))?;
        let mut tokens = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Never quote the line: it holds a secret.
            let Some((name, token)) = line.split_once(':') else {
                return Err(failed(format!("line {}: expected `name:token`", index + 1)));
            };
            check_token(name.trim(), token.trim())
                .map_err(|message| failed(format!("line {}: {message}", index + 1)))?;
            tokens.push(Token {
                name: name.trim().to_string(),
                secret: Secret::new(token.trim()),
            });
        }
        if tokens.is_empty() {
            return Err(failed("it holds no token".into()));
        }
        Ok(Tokens(tokens))
    }

    /// The name of the token `presented` matches. Every token is compared, each in constant
    /// time, so the time taken does not say which one (or how much of one) matched.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.secret.expose().as_bytes().ct_eq(presented)) {
                found = Some(token.name.as_str());
            }
        }
        found
    }

    /// The token from an `Authorization: Bearer <token>` header's value.
    pub fn bearer(header: &str) -> Option<&str> {
        let (scheme, token) = header.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// For the audit log's masking.
    pub fn secrets(&self) -> Vec<Secret> {
        self.0.iter().map(|t| t.secret.clone()).collect()
    }
}

/// A token bucket per client address: `rate` requests a second on average, bursts of `rate`.
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// `Ok` takes one request from the client's bucket; `Err(seconds)`: none left, retry after.
    pub fn take(&mut self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.buckets.len() > 10_000 {
            // Full buckets carry no state worth keeping.
            let rate = self.rate;
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("tokens");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "ops:0123456789abcdef\n", 0o644);
        assert_eq!(
            Tokens::from_file(&path).err(),
            Some(TokenError::Mode { path, mode: 0o644 })
        );
    }

    #[test]
    fn tokens_are_named_and_matched_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "# operators\nops:0123456789abcdef\n\ngrafana:fedcba9876543210\n",
            0o600,
        );
        let tokens = Tokens::from_file(&path).unwrap();
        assert_eq!(tokens.authenticate(b"0123456789abcdef"), Some("ops"));
        assert_eq!(tokens.authenticate(b"fedcba9876543210"), Some("grafana"));
        assert_eq!(tokens.authenticate(b"0123456789abcde"), None);
        assert_eq!(tokens.authenticate(b"0123456789abcdefX"), None);
        assert_eq!(tokens.authenticate(b""), None);
        assert_eq!(Tokens::bearer("Bearer abc"), Some("abc"));
        assert_eq!(Tokens::bearer("bearer  abc "), Some("abc"));
        assert_eq!(Tokens::bearer("Basic abc"), None);
    }

    #[test]
    fn bad_lines_are_named_without_quoting_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "ops:short\n", 0o600);
        let message = Tokens::from_file(&path).err().unwrap().to_string();
        assert!(
            message.contains("line 1") && !message.contains("short"),
            "{message}"
        );
        let path = write(dir.path(), "0123456789abcdef0123\n", 0o600);
        let message = Tokens::from_file(&path).err().unwrap().to_string();
        assert!(
            message.contains("name:token") && !message.contains("0123456789"),
            "{message}"
        );
    }

    #[test]
    fn the_environment_token_is_named_env_unless_named() {
        let tokens = Tokens::load(None, |k| {
            (k == TOKEN_ENV).then(|| "0123456789abcdef".into())
        })
        .unwrap();
        assert_eq!(tokens.authenticate(b"0123456789abcdef"), Some("env"));
        assert_eq!(
            Tokens::load(None, |_| None).err(),
            Some(TokenError::Missing)
        );
    }

    #[test]
    fn the_rate_limit_refills_at_its_rate() {
        let mut limiter = RateLimiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(limiter.take(ip, t0), Ok(()));
        assert_eq!(limiter.take(ip, t0), Ok(()));
        assert_eq!(limiter.take(ip, t0), Err(1));
        assert_eq!(limiter.take(ip, t0 + Duration::from_millis(500)), Ok(()));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(limiter.take(other, t0), Ok(()));
    }
}
