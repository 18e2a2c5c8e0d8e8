//! Errors that reach the user, their exit codes and hints.

use std::fmt;
use std::path::PathBuf;

use crate::data::DataError;
use crate::model::{TimestampNs, format_timestamp};

/// Process exit codes (documented in docs/guide.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// The user's Python code failed: syntax error, no `Algorithm` class, an exception.
    Algorithm = 1,
    /// Bad command line, configuration or parameter.
    Usage = 2,
    /// Market data could not be read or failed validation.
    Data = 3,
    /// An exchange or broker refused or failed (live trading).
    Broker = 4,
    /// A bug in rustybt itself.
    Internal = 5,
    /// The live journal (SQLite) could not be read or written: locked by another program, an
    /// I/O error, a full disk, read-only, corrupt.
    Storage = 6,
    /// Stopped by Ctrl-C; results written so far are marked partial.
    Interrupted = 130,
}

impl ExitCode {
    /// The code a rustybt child process exited with (a code it does not document is a bug).
    pub fn of_code(code: i32) -> ExitCode {
        match code {
            0 => ExitCode::Success,
            1 => ExitCode::Algorithm,
            2 => ExitCode::Usage,
            3 => ExitCode::Data,
            4 => ExitCode::Broker,
            6 => ExitCode::Storage,
            130 => ExitCode::Interrupted,
            _ => ExitCode::Internal,
        }
    }
}

/// Where in the user's code something happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: Option<u32>,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        Ok(())
    }
}

/// A failure of the user's Python code, with everything needed to find it.
#[derive(Debug, Clone)]
pub struct AlgorithmError {
    /// What the engine was doing: `loading`, `initialize`, `on_tick`, `on_fill`, `on_stop`.
    pub phase: String,
    pub sim_time: Option<TimestampNs>,
    /// Python exception type, e.g. `ZeroDivisionError`.
    pub exception: String,
    pub message: String,
    pub location: Option<SourceLocation>,
    /// The full Python traceback, chained causes included.
    pub traceback: String,
    pub hint: Option<String>,
}

impl fmt::Display for AlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in `{}`", self.exception, self.phase)?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        if let Some(time) = self.sim_time {
            write!(f, " (simulated time {})", format_timestamp(time))?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Algorithm(Box<AlgorithmError>),
    #[error("{context} `{}`", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The loaded data cannot make a market (no bars after filtering, a symbol twice).
    #[error("{0}")]
    Market(String),
    #[error("could not start Python: {message}")]
    Python {
        message: String,
        hint: Option<String>,
    },
    #[error("internal error (a bug in rustybt): {0}")]
    Internal(String),
    /// The exchange refused or failed (live trading): credentials, connection, a market.
    #[error("broker: {0}")]
    Broker(String),
    /// The live journal could not be read or written (an I/O or locking condition, not a
    /// bug and not a usage error); the message names the file.
    #[error("{message}")]
    Storage {
        message: String,
        hint: Option<String>,
    },
    /// Ctrl-C before the backtest started (e.g. while the algorithm was being imported).
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage { .. } => ExitCode::Usage,
            Error::Data(_) | Error::Market(_) => ExitCode::Data,
            Error::Algorithm(_) => ExitCode::Algorithm,
            Error::Io { .. } => ExitCode::Usage,
            Error::Python { .. } => ExitCode::Usage,
            Error::Internal(_) => ExitCode::Internal,
            Error::Broker(_) => ExitCode::Broker,
            Error::Storage { .. } => ExitCode::Storage,
            Error::Interrupted => ExitCode::Interrupted,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Usage { hint, .. } | Error::Python { hint, .. } => hint.as_deref(),
            Error::Storage { hint, .. } => hint.as_deref(),
            Error::Algorithm(e) => e.hint.as_deref(),
            Error::Data(e) => e.hint(),
            _ => None,
        }
    }

    /// Extra text printed after the message (the Python traceback).
    pub fn details(&self) -> Option<&str> {
        match self {
            Error::Algorithm(e) if !e.traceback.is_empty() => Some(&e.traceback),
            _ => None,
        }
    }
}

impl From<AlgorithmError> for Error {
    fn from(e: AlgorithmError) -> Self {
        Error::Algorithm(Box::new(e))
    }
}

/// Prints an error the way every subcommand does: `error: …`, `Caused by: …`, details, `hint: …`.
pub fn report(error: &Error) {
    use std::error::Error as _;
    let message = error.to_string();
    errln!("error: {message}");
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some messages already end with their cause; say it once.
        if !message.contains(&cause_text) {
            errln!("  Caused by: {cause_text}");
        }
        source = cause.source();
    }
    if let Some(details) = error.details() {
        errln!();
        for line in details.trim_end().lines() {
            errln!("  {line}");
        }
    }
    if let Some(hint) = error.hint() {
        errln!("hint: {hint}");
    }
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the panic hook silenced on this thread, for third-party code whose panics on
/// bad input the caller catches and reports as an ordinary error.
pub fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    let previous = QUIET_PANICS.with(|q| q.replace(true));
    let result = f();
    QUIET_PANICS.with(|q| q.set(previous));
    result
}

/// The process panic hook: a panic is a bug in rustybt, said in one line without a Rust
/// backtrace, unless it happens inside [`quiet_panics`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if !QUIET_PANICS.with(|q| q.get()) {
            errln!("error: internal error (a bug in rustybt): {info}");
        }
    }));
}
