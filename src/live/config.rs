//! `LiveSettings` from a TOML file (see `config/live.toml`), credentials, [`Secret`] and
//! [`mask`].
//!
//! Credentials come from two environment variables (default `RUSTYBT_API_KEY` and
//! `RUSTYBT_API_SECRET`) or from a TOML file (`api_key = "..."`, `api_secret = "..."`) that only
//! its owner may read (mode `0600` or stricter): anything else is refused with the file's name
//! and actual mode. Secrets print as `***` (Debug, Display, Serialize) and [`mask`] removes
//! their values from any text.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use super::breakers::BreakerConfig;
use super::feed::FeedMode;
use super::reconcile::{Action, ReconcileConfig, Tolerance};
use crate::model::TimestampNs;
use crate::model::time::NANOS_PER_MINUTE;

pub const DEFAULT_API_KEY_ENV: &str = "RUSTYBT_API_KEY";
pub const DEFAULT_API_SECRET_ENV: &str = "RUSTYBT_API_SECRET";
/// What a secret prints as.
pub const MASK: &str = "***";

/// A credential. It never prints: Debug, Display and Serialize all give `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (the broker client).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// Replaces every occurrence of every non-empty secret value in `text` with `***` (longest
/// secrets first, so one that contains another is masked whole).
pub fn mask(text: &str, secrets: &[Secret]) -> String {
    let mut values: Vec<&str> = secrets
        .iter()
        .map(|s| s.expose())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for value in values {
        if out.contains(value) {
            out = out.replace(value, MASK);
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the live settings {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid live settings {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid live settings: {0}")]
    Invalid(String),
    #[error(
        "environment variable {name} (the {what}) is not set or empty; set it, or use [credentials] file = \"...\" (mode 0600)"
    )]
    MissingEnv { name: String, what: &'static str },
    #[error(
        "the credentials file {path} has mode {mode:04o}; it must be readable by its owner only: chmod 600 {path}"
    )]
    CredentialFileMode { path: PathBuf, mode: u32 },
    #[error("the credentials file {path}: {message}")]
    CredentialFile { path: PathBuf, message: String },
}

/// Where the API key and secret come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Env { api_key: String, api_secret: String },
    File(PathBuf),
}

/// The API credentials (masked in any output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_secret: Secret,
}

impl Credentials {
    /// Both, for [`mask`] and the audit log.
    pub fn secrets(&self) -> Vec<Secret> {
        vec![self.api_key.clone(), self.api_secret.clone()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    /// Holds `journal.sqlite`, `audit.jsonl` and the halt file by default.
    pub state_dir: PathBuf,
    pub reconcile_interval_ns: i64,
    pub cancel_open_orders_on_exit: bool,
    pub status_line: bool,
    /// An algorithm state older than this at restart is reported stale.
    pub max_state_age_ns: i64,
    pub breakers: BreakerConfig,
    pub reconcile: ReconcileConfig,
    pub credentials: CredentialSource,
    pub exchange: ExchangeSettings,
    /// How an exchange feed gets its bars (`live.feed_mode`; `--feed-mode` overrides it).
    pub feed_mode: FeedMode,
}

/// How the exchange client behaves (`[exchange]`): timeouts, the signed requests' receive
/// window, ccxt's request spacing, and retries of transient failures.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSettings {
    pub timeout_ms: u64,
    pub recv_window_ms: u64,
    /// Least time between two requests; `None`: the exchange's own limit from ccxt.
    pub rate_limit_ms: Option<f64>,
    /// Margin after the receive window before a lookup's "not found" counts; `None`: 1 s.
    pub settle_margin_ms: Option<u64>,
    pub retry_attempts: Option<u32>,
    pub retry_base_delay_s: Option<f64>,
    pub retry_max_delay_s: Option<f64>,
}

impl LiveSettings {
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir.join("journal.sqlite")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }

    /// Reads and validates a settings file. Relative paths inside are taken from the working
    /// directory (like `rustybt run --config`).
    pub fn load(path: &Path) -> Result<LiveSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Invalid(message) => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses settings text; every field has a default, so an empty text is valid.
    pub fn from_toml(text: &str) -> Result<LiveSettings, ConfigError> {
        // The settings file holds no secrets (only variable names or a path): quote it freely.
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid(e.to_string().trim_end().to_string()))?;
        let live = raw.live.unwrap_or_default();
        let state_dir = PathBuf::from(live.state_dir.unwrap_or_else(|| "live-state".into()));
        let reconcile_interval_ns = duration(
            "live.reconcile_interval",
            live.reconcile_interval.as_deref(),
            5 * NANOS_PER_MINUTE,
        )?;
        let feed_mode = match live.feed_mode.as_deref() {
            None => FeedMode::Auto,
            Some(text) => FeedMode::parse(text).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "live.feed_mode = \"{text}\" is not a feed mode; use {}",
                    FeedMode::NAMES
                ))
            })?,
        };
        let max_state_age_ns = duration(
            "live.max_state_age",
            live.max_state_age.as_deref(),
            15 * NANOS_PER_MINUTE,
        )?;

        let b = raw.breakers.unwrap_or_default();
        let daily_timezone = match b.timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "breakers.timezone `{name}` is not an IANA time zone (e.g. UTC, Europe/London)"
                ))
            })?,
        };
        let halt_file = match b.halt_file {
            None => Some(state_dir.join("HALT")),
            Some(text) if text.is_empty() => None,
            Some(text) => Some(PathBuf::from(text)),
        };
        let defaults = BreakerConfig::default();
        let breakers = BreakerConfig {
            max_drawdown: decimal("breakers.max_drawdown", b.max_drawdown.as_deref())?,
            daily_loss_amount: decimal("breakers.daily_loss", b.daily_loss.as_deref())?,
            daily_loss_fraction: decimal(
                "breakers.daily_loss_fraction",
                b.daily_loss_fraction.as_deref(),
            )?,
            daily_timezone,
            max_orders_per_minute: b.max_orders_per_minute,
            max_errors: b.max_errors,
            max_error_fraction: decimal(
                "breakers.max_error_fraction",
                b.max_error_fraction.as_deref(),
            )?,
            error_min_requests: b.error_min_requests.unwrap_or(defaults.error_min_requests),
            error_window_ns: duration(
                "breakers.error_window",
                b.error_window.as_deref(),
                defaults.error_window_ns,
            )?,
            halt_file,
        };
        breakers.validate().map_err(ConfigError::Invalid)?;

        let r = raw.reconcile.unwrap_or_default();
        let zero = |key: &str, v: Option<&str>| decimal(key, v).map(|d| d.unwrap_or(Decimal::ZERO));
        let reconcile = ReconcileConfig {
            position_tolerance: Tolerance {
                absolute: zero(
                    "reconcile.position_absolute",
                    r.position_absolute.as_deref(),
                )?,
                relative: zero(
                    "reconcile.position_relative",
                    r.position_relative.as_deref(),
                )?,
            },
            balance_tolerance: Tolerance {
                absolute: zero("reconcile.balance_absolute", r.balance_absolute.as_deref())?,
                relative: zero("reconcile.balance_relative", r.balance_relative.as_deref())?,
            },
            minor: r.minor.unwrap_or(Action::Sync),
            critical: r.critical.unwrap_or(Action::Halt),
        };
        reconcile.validate().map_err(ConfigError::Invalid)?;

        let c = raw.credentials.unwrap_or_default();
        let credentials = match (
            c.file,
            c.api_key_env.is_some() || c.api_secret_env.is_some(),
        ) {
            (Some(_), true) => {
                return Err(ConfigError::Invalid(
                    "[credentials] has both `file` and environment variable names; use one".into(),
                ));
            }
            (Some(file), false) if file.trim().is_empty() => {
                return Err(ConfigError::Invalid("credentials.file is empty".into()));
            }
            (Some(file), false) => CredentialSource::File(PathBuf::from(file)),
            (None, _) => {
                let api_key = c.api_key_env.unwrap_or_else(|| DEFAULT_API_KEY_ENV.into());
                let api_secret = c
                    .api_secret_env
                    .unwrap_or_else(|| DEFAULT_API_SECRET_ENV.into());
                if api_key.trim().is_empty() || api_secret.trim().is_empty() {
                    return Err(ConfigError::Invalid(
                        "credentials.api_key_env and credentials.api_secret_env must not be empty"
                            .into(),
                    ));
                }
                CredentialSource::Env {
                    api_key,
                    api_secret,
                }
            }
        };

        let x = raw.exchange.unwrap_or_default();
        let ms = |key: &str, v: Option<&str>, default: i64| {
            duration(key, v, default * 1_000_000).map(|ns| (ns / 1_000_000).max(0) as u64)
        };
        let seconds = |key: &str, v: Option<&str>| {
            v.map(|t| {
                crate::config::parse_duration(t)
                    .map(|ns| ns as f64 / 1e9)
                    .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))
            })
            .transpose()
        };
        let exchange = ExchangeSettings {
            timeout_ms: ms("exchange.timeout", x.timeout.as_deref(), 10_000)?,
            recv_window_ms: ms("exchange.recv_window", x.recv_window.as_deref(), 5_000)?,
            rate_limit_ms: x
                .rate_limit
                .as_deref()
                .map(|t| ms("exchange.rate_limit", Some(t), 0).map(|v| v as f64))
                .transpose()?,
            settle_margin_ms: x
                .settle_margin
                .as_deref()
                .map(|t| ms("exchange.settle_margin", Some(t), 0))
                .transpose()?,
            retry_attempts: x.retry_attempts,
            retry_base_delay_s: seconds(
                "exchange.retry_base_delay",
                x.retry_base_delay.as_deref(),
            )?,
            retry_max_delay_s: seconds("exchange.retry_max_delay", x.retry_max_delay.as_deref())?,
        };
        if exchange.recv_window_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "exchange.recv_window must be at most 60s (the exchanges' limit)".into(),
            ));
        }

        Ok(LiveSettings {
            exchange,
            state_dir,
            reconcile_interval_ns,
            cancel_open_orders_on_exit: live.cancel_open_orders_on_exit.unwrap_or(false),
            status_line: live.status_line.unwrap_or(true),
            max_state_age_ns,
            breakers,
            reconcile,
            credentials,
            feed_mode,
        })
    }

    /// Reads the credentials from the process environment or the file.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        self.credentials_with(&|name| std::env::var(name).ok())
    }

    /// Same, with the environment given as a function (tests).
    pub fn credentials_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, ConfigError> {
        match &self.credentials {
            CredentialSource::Env {
                api_key,
                api_secret,
            } => {
                let read = |name: &str, what: &'static str| {
                    env(name)
                        .filter(|v| !v.is_empty())
                        .map(Secret::new)
                        .ok_or_else(|| ConfigError::MissingEnv {
                            name: name.to_string(),
                            what,
                        })
                };
                Ok(Credentials {
                    api_key: read(api_key, "API key")?,
                    api_secret: read(api_secret, "API secret")?,
                })
            }
            CredentialSource::File(path) => read_credentials_file(path),
        }
    }
}

/// Why a file of secrets (credentials, API tokens) is not used.
pub enum SecretFileProblem {
    /// It cannot be read, or is not a regular file (the message says which).
    Unusable(String),
    /// Others than its owner may read or write it: its mode.
    Mode(u32),
}

/// A file of secrets must be a regular file that only its owner can read or write.
pub fn check_secret_file(path: &Path) -> Result<(), SecretFileProblem> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| SecretFileProblem::Unusable(format!("cannot read it: {e}")))?;
    if !metadata.is_file() {
        return Err(SecretFileProblem::Unusable(
            "it is not a regular file".into(),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretFileProblem::Mode(mode));
        }
    }
    Ok(())
}

/// Reads `api_key` and `api_secret` from a TOML file that only its owner can read.
pub fn read_credentials_file(path: &Path) -> Result<Credentials, ConfigError> {
    let failed = |message: String| ConfigError::CredentialFile {
        path: path.to_path_buf(),
        message,
    };
    check_secret_file(path).map_err(|problem| match problem {
        SecretFileProblem::Unusable(message) => failed(message),
        SecretFileProblem::Mode(mode) => ConfigError::CredentialFileMode {
            path: path.to_path_buf(),
            mode,
        },
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read it: {e}")))?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        api_key: Option<String>,
        api_secret: Option<String>,
    }
    // The parser's message could quote the file's text (a secret): give the line only.
    let file: File = toml::from_str(&text).map_err(|e| {
        failed(format!(
            "not valid TOML with `api_key` and `api_secret` strings{}",
            line_hint(&text, e.span())
        ))
    })?;
    let key = file
        .api_key
        .filter(|v| !v.is_empty())
        .ok_or_else(|| failed("`api_key` is missing or empty".into()))?;
    let secret = file
        .api_secret
        .filter(|v| !v.is_empty())
        .ok_or_else(|| failed("`api_secret` is missing or empty".into()))?;
    Ok(Credentials {
        api_key: Secret::new(key),
        api_secret: Secret::new(secret),
    })
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn decimal(key: &str, value: Option<&str>) -> Result<Option<Decimal>, ConfigError> {
    value
        .map(|text| {
            text.trim().parse::<Decimal>().map_err(|_| {
                ConfigError::Invalid(format!("{key} = \"{text}\" is not a decimal number"))
            })
        })
        .transpose()
}

fn duration(
    key: &str,
    value: Option<&str>,
    default: TimestampNs,
) -> Result<TimestampNs, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => crate::config::parse_duration(text)
            .map_err(|e| ConfigError::Invalid(format!("{key}: {e}"))),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    live: Option<RawLive>,
    breakers: Option<RawBreakers>,
    reconcile: Option<RawReconcile>,
    credentials: Option<RawCredentials>,
    exchange: Option<RawExchange>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExchange {
    timeout: Option<String>,
    recv_window: Option<String>,
    rate_limit: Option<String>,
    settle_margin: Option<String>,
    retry_attempts: Option<u32>,
    retry_base_delay: Option<String>,
    retry_max_delay: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLive {
    state_dir: Option<String>,
    reconcile_interval: Option<String>,
    cancel_open_orders_on_exit: Option<bool>,
    status_line: Option<bool>,
    max_state_age: Option<String>,
    feed_mode: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBreakers {
    max_drawdown: Option<String>,
    daily_loss: Option<String>,
    daily_loss_fraction: Option<String>,
    timezone: Option<String>,
    max_orders_per_minute: Option<u32>,
    max_errors: Option<u32>,
    max_error_fraction: Option<String>,
    error_min_requests: Option<u32>,
    error_window: Option<String>,
    halt_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    position_absolute: Option<String>,
    position_relative: Option<String>,
    balance_absolute: Option<String>,
    balance_relative: Option<String>,
    minor: Option<Action>,
    critical: Option<Action>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    api_key_env: Option<String>,
    api_secret_env: Option<String>,
    file: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn write_mode(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/live.toml");
        let s = LiveSettings::load(&path).unwrap();
        assert_eq!(s.state_dir, PathBuf::from("live-state"));
        assert_eq!(s.journal_path(), PathBuf::from("live-state/journal.sqlite"));
        assert_eq!(s.audit_path(), PathBuf::from("live-state/audit.jsonl"));
        assert_eq!(s.reconcile_interval_ns, 5 * NANOS_PER_MINUTE);
        assert_eq!(s.max_state_age_ns, 15 * NANOS_PER_MINUTE);
        assert!(!s.cancel_open_orders_on_exit && s.status_line);
        assert_eq!(s.feed_mode, FeedMode::Auto);
        assert_eq!(s.breakers.max_drawdown, Some(dec!(0.25)));
        assert_eq!(s.breakers.daily_loss_amount, Some(dec!(1000)));
        assert_eq!(s.breakers.max_orders_per_minute, Some(30));
        assert_eq!(s.breakers.halt_file, Some(PathBuf::from("live-state/HALT")));
        assert_eq!(s.reconcile.balance_tolerance.absolute, dec!(0.01));
        assert_eq!(
            (s.reconcile.minor, s.reconcile.critical),
            (Action::Sync, Action::Halt)
        );
        assert_eq!(
            s.credentials,
            CredentialSource::Env {
                api_key: DEFAULT_API_KEY_ENV.into(),
                api_secret: DEFAULT_API_SECRET_ENV.into()
            }
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let s = LiveSettings::from_toml("").unwrap();
        assert_eq!(s.breakers.max_drawdown, None);
        assert_eq!(s.breakers.daily_timezone, Tz::UTC);
        assert_eq!(s.breakers.halt_file, Some(PathBuf::from("live-state/HALT")));
        assert_eq!(s.reconcile, ReconcileConfig::default());
        assert_eq!(s.feed_mode, FeedMode::Auto);
        let s = LiveSettings::from_toml("[live]\nfeed_mode = \"ws-trades\"").unwrap();
        assert_eq!(s.feed_mode, FeedMode::WsTrades);
        let s = LiveSettings::from_toml("[breakers]\nhalt_file = \"\"\ntimezone = \"Asia/Tokyo\"")
            .unwrap();
        assert_eq!(s.breakers.halt_file, None);
        assert_eq!(s.breakers.daily_timezone, chrono_tz::Asia::Tokyo);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let cases = [
            (
                "[live]\nreconcile_interval = \"5 parsecs\"",
                "live.reconcile_interval",
            ),
            ("[live]\nmax_state_age = \"-1m\"", "live.max_state_age"),
            ("[live]\nstatus = true", "unknown field `status`"),
            (
                "[live]\nfeed_mode = \"socket\"",
                "live.feed_mode = \"socket\" is not a feed mode; use `auto`, `ws`, `ws-trades` or `poll`",
            ),
            ("[live]\nfeed_mode = 1", "feed_mode"),
            ("[breakers]\nmax_drawdown = 0.2", "max_drawdown"),
            (
                "[breakers]\nmax_drawdown = \"abc\"",
                "breakers.max_drawdown = \"abc\" is not a decimal",
            ),
            (
                "[breakers]\nmax_drawdown = \"1.5\"",
                "breakers.max_drawdown must be in (0, 1]",
            ),
            ("[breakers]\ntimezone = \"Mars/Olympus\"", "Mars/Olympus"),
            (
                "[breakers]\nmax_orders_per_minute = 0",
                "max_orders_per_minute",
            ),
            (
                "[reconcile]\nminor = \"ignore\"",
                "unknown variant `ignore`",
            ),
            (
                "[reconcile]\nposition_absolute = \"-1\"",
                "reconcile.position_absolute",
            ),
            (
                "[credentials]\nfile = \"x\"\napi_key_env = \"K\"",
                "both `file` and environment",
            ),
            ("[credentials]\nfile = \" \"", "credentials.file is empty"),
            ("[credentials]\napi_key_env = \"\"", "must not be empty"),
            ("[live\n", "line 1"),
        ];
        for (text, expected) in cases {
            let err = LiveSettings::from_toml(text).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{text:?}: expected `{expected}` in: {err}"
            );
        }
    }

    #[test]
    fn a_missing_or_bad_settings_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = LiveSettings::load(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[breakers]\nmax_drawdown = \"x\"").unwrap();
        let err = LiveSettings::load(&bad).unwrap_err();
        assert!(
            err.to_string().contains("bad.toml") && err.to_string().contains("max_drawdown"),
            "{err}"
        );
    }

    #[test]
    fn credentials_from_the_environment() {
        let s = LiveSettings::from_toml(
            "[credentials]\napi_key_env = \"MY_KEY\"\napi_secret_env = \"MY_SECRET\"",
        )
        .unwrap();
        let env = |name: &str| match name {
            "MY_KEY" => Some("k-123".to_string()),
            "MY_SECRET" => Some("s-456".to_string()),
            _ => None,
        };
        let c = s.credentials_with(&env).unwrap();
        assert_eq!(
            (c.api_key.expose(), c.api_secret.expose()),
            ("k-123", "s-456")
        );
        let err = s
            .credentials_with(&|name: &str| {
                if name == "MY_KEY" {
                    Some("k".into())
                } else {
                    None
                }
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("MY_SECRET") && err.to_string().contains("API secret"),
            "{err}"
        );
        let err = s
            .credentials_with(&|_: &str| Some(String::new()))
            .unwrap_err();
        assert!(err.to_string().contains("MY_KEY"), "{err}");
        // The default names, through the real environment (a variable no other test sets).
        let d =
            LiveSettings::from_toml("[credentials]\napi_key_env = \"RUSTYBT_TEST_UNSET_KEY_7\"")
                .unwrap();
        assert!(
            d.credentials()
                .unwrap_err()
                .to_string()
                .contains("RUSTYBT_TEST_UNSET_KEY_7")
        );
    }

    #[test]
    fn a_credentials_file_must_be_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let text = "api_key = \"key-abc\"\napi_secret = \"secret-xyz\"\n";
        let ok = write_mode(dir.path(), "ok.toml", text, 0o600);
        let settings =
            LiveSettings::from_toml(&format!("[credentials]\nfile = \"{}\"", ok.display()))
                .unwrap();
        let c = settings.credentials().unwrap();
        assert_eq!(
            (c.api_key.expose(), c.api_secret.expose()),
            ("key-abc", "secret-xyz")
        );
        assert_eq!(
            read_credentials_file(&write_mode(dir.path(), "ro.toml", text, 0o400)).unwrap(),
            c
        );
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let path = write_mode(dir.path(), &format!("m{mode:o}.toml"), text, mode);
            let err = read_credentials_file(&path).unwrap_err();
            assert!(matches!(err, ConfigError::CredentialFileMode { .. }));
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains(&format!("mode {mode:04o}")),
                "{message}"
            );
            assert!(message.contains("chmod 600"), "{message}");
        }
    }

    #[test]
    fn a_bad_credentials_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "syntax.toml",
                "api_key = \"key-abc\nsecret-xyz",
                "not valid TOML",
            ),
            (
                "missing.toml",
                "api_key = \"key-abc\"",
                "`api_secret` is missing",
            ),
            (
                "empty.toml",
                "api_key = \"\"\napi_secret = \"secret-xyz\"",
                "`api_key` is missing or empty",
            ),
            (
                "extra.toml",
                "api_key = \"key-abc\"\napi_secret = \"secret-xyz\"\npassword = \"pw-1\"",
                "not valid TOML",
            ),
        ];
        for (name, text, expected) in cases {
            let path = write_mode(dir.path(), name, text, 0o600);
            let message = read_credentials_file(&path).unwrap_err().to_string();
            assert!(
                message.contains(expected) && message.contains(name),
                "{name}: {message}"
            );
            for secret in ["key-abc", "secret-xyz", "pw-1"] {
                assert!(
                    !message.contains(secret),
                    "{name} leaks {secret}: {message}"
                );
            }
        }
        let err = read_credentials_file(&dir.path().join("absent.toml")).unwrap_err();
        assert!(
            err.to_string().contains("absent.toml") && err.to_string().contains("cannot read"),
            "{err}"
        );
        let err = read_credentials_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        let c = Credentials {
            api_key: Secret::new("AKIA-123"),
            api_secret: secret.clone(),
        };
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).unwrap();
        for text in [&debug, &json] {
            assert!(
                !text.contains("hunter2") && !text.contains("AKIA"),
                "{text}"
            );
        }
        assert_eq!(json, r#"{"api_key":"***","api_secret":"***"}"#);
        assert_eq!(secret.expose(), "hunter2-very-secret");
        assert!(!secret.is_empty() && Secret::new("").is_empty());
    }

    #[test]
    fn mask_removes_every_secret_value() {
        let secrets = vec![Secret::new("abc"), Secret::new("abcdef"), Secret::new("")];
        assert_eq!(
            mask("key=abcdef&x=abc&y=abcabc, empty stays", &secrets),
            "key=***&x=***&y=******, empty stays"
        );
        assert_eq!(mask("nothing here", &secrets), "nothing here");
        assert_eq!(mask("abc", &[]), "abc");
    }
}
