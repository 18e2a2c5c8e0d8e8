//! The live session's errors: what stopped a session (or its start), typed so the end of the
//! session can say what it was and exit with the right code (docs/guide.md, exit codes).

use std::path::Path;

use super::breakers::BreakerError;
use super::journal::JournalError;
use super::storage::StorageFailure;
use super::venue::VenueError;
use crate::accounting::LedgerError;
use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A breaker trip or mark could not be kept, or its settings are wrong.
    #[error(transparent)]
    Breaker(#[from] BreakerError),
    /// The exchange failed in a way the session cannot carry on from.
    #[error("{context}: {source}")]
    Venue {
        context: String,
        #[source]
        source: VenueError,
    },
    /// The feed's bars could not be used (a bad price, a bar out of order).
    #[error("{0}")]
    Feed(String),
    /// The journal holds something of a symbol the session does not trade.
    #[error(
        "the journal holds {what} of `{symbol}`, which --symbols does not list; add it, or use another --state folder"
    )]
    UnlistedSymbol { symbol: String, what: String },
    /// The session's settings cannot work (reconciliation rules).
    #[error("{0}")]
    Settings(String),
    /// The books could not take a fill or an adjustment (a decimal overflow).
    #[error("the books: {0}")]
    Ledger(#[from] LedgerError),
    /// The engine refused an order it had to hold (an adopted open order).
    #[error("{0}")]
    Engine(String),
}

impl LiveError {
    pub fn venue(context: impl Into<String>, source: VenueError) -> Self {
        LiveError::Venue {
            context: context.into(),
            source,
        }
    }

    /// The storage condition behind this error (locked, I/O, full…), if it is one.
    pub fn storage(&self) -> Option<StorageFailure> {
        match self {
            LiveError::Journal(e) | LiveError::Breaker(BreakerError::Journal(e)) => {
                StorageFailure::of(e)
            }
            _ => None,
        }
    }

    /// The user-facing error, the journal at `journal` named for storage conditions: storage
    /// (6), the exchange (4), the data (3), the user's settings or state folder (2); anything
    /// else is a bug in rustybt (5).
    pub fn to_error(&self, journal: &Path) -> Error {
        if let Some(failure) = self.storage() {
            return failure.to_error(journal);
        }
        match self {
            LiveError::Venue { .. } => Error::Broker(self.to_string()),
            LiveError::Feed(message) => Error::Market(message.clone()),
            LiveError::UnlistedSymbol { .. } | LiveError::Settings(_) => {
                Error::usage(self.to_string())
            }
            LiveError::Breaker(BreakerError::Config(_) | BreakerError::HaltFilePresent(_)) => {
                Error::usage(self.to_string())
            }
            _ => Error::Internal(self.to_string()),
        }
    }
}
