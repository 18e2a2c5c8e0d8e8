//! Journal failures that are conditions of the storage, not bugs and not usage errors.
//!
//! SQLite says why a read or write failed (`SQLITE_BUSY`, `SQLITE_IOERR`, `SQLITE_FULL`, …).
//! Those conditions get their own message (what happened, which file, a hint) and their own
//! exit code ([`crate::error::ExitCode::Storage`]); any other journal error keeps its meaning.
//!
//! The session's errors ([`super::error::LiveError`]) keep the journal error, so the
//! session's end can report a storage failure as what it is.

use std::path::Path;

use rusqlite::ErrorCode;

use super::journal::JournalError;
use crate::error::Error;

/// What went wrong with the journal's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// SQLITE_BUSY / SQLITE_LOCKED: another connection holds the database.
    Locked,
    /// SQLITE_IOERR.
    Io,
    /// SQLITE_FULL.
    Full,
    /// SQLITE_READONLY / SQLITE_PERM.
    ReadOnly,
    /// SQLITE_CANTOPEN.
    CannotOpen,
    /// SQLITE_CORRUPT / SQLITE_NOTADB inside an open journal.
    Corrupt,
}

/// A classified storage failure and SQLite's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFailure {
    pub kind: StorageKind,
    pub detail: String,
}

impl StorageFailure {
    /// The failure of `error`, when it is a storage condition.
    pub fn of(error: &JournalError) -> Option<StorageFailure> {
        let sqlite = match error {
            JournalError::Open { source, .. } | JournalError::Sqlite(source) => source,
            _ => return None,
        };
        let rusqlite::Error::SqliteFailure(failure, message) = sqlite else {
            return None;
        };
        let kind = match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StorageKind::Locked,
            ErrorCode::SystemIoFailure => StorageKind::Io,
            ErrorCode::DiskFull => StorageKind::Full,
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => StorageKind::ReadOnly,
            ErrorCode::CannotOpen => StorageKind::CannotOpen,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StorageKind::Corrupt,
            _ => return None,
        };
        let detail = message.clone().unwrap_or_else(|| failure.to_string());
        Some(StorageFailure { kind, detail })
    }

    /// The user-facing error for the journal at `path`.
    pub fn to_error(&self, path: &Path) -> Error {
        let file = path.display();
        let (message, hint) = match self.kind {
            StorageKind::Locked => (
                format!("the journal `{file}` is locked by another program"),
                "another process holds the journal database (an sqlite3 shell, a backup or sync \
                 tool, a session on a copy of this folder): close it, then start again; \
                 everything committed is kept",
            ),
            StorageKind::Io => (
                format!("cannot read or write the journal `{file}`: a disk I/O error"),
                "check the disk (system log, a removed or remounted drive); the journal is \
                 crash-safe: start again once the disk works",
            ),
            StorageKind::Full => (
                format!("the disk holding the journal `{file}` is full"),
                "free some space, then start again; everything committed is kept",
            ),
            StorageKind::ReadOnly => (
                format!("the journal `{file}` is read-only"),
                "make the state folder and its journal.sqlite writable (permissions, a \
                 read-only mount)",
            ),
            StorageKind::CannotOpen => (
                format!("cannot open the journal `{file}`"),
                "the state folder must be a folder you can write to, and journal.sqlite in it \
                 a file",
            ),
            StorageKind::Corrupt => (
                format!("the journal `{file}` is corrupt"),
                "restore it from a backup; check the orders at the exchange before trading \
                 from a journal that lost some",
            ),
        };
        Error::Storage {
            message: format!("{message} ({})", self.detail),
            hint: Some(hint.into()),
        }
    }
}

/// A journal error at start-up as the user's error: a storage condition as such, anything
/// else as `otherwise` says.
pub fn journal_error(
    error: JournalError,
    path: &Path,
    otherwise: impl FnOnce(String) -> Error,
) -> Error {
    match StorageFailure::of(&error) {
        Some(failure) => failure.to_error(path),
        None => otherwise(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::live::journal::Journal;

    fn sqlite(code: std::ffi::c_int) -> JournalError {
        JournalError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("database is locked".into()),
        ))
    }

    #[test]
    fn locking_and_io_conditions_are_storage_failures_with_their_own_exit_code() {
        for (code, kind) in [
            (rusqlite::ffi::SQLITE_BUSY, StorageKind::Locked),
            (rusqlite::ffi::SQLITE_LOCKED, StorageKind::Locked),
            (rusqlite::ffi::SQLITE_IOERR, StorageKind::Io),
            (rusqlite::ffi::SQLITE_FULL, StorageKind::Full),
            (rusqlite::ffi::SQLITE_READONLY, StorageKind::ReadOnly),
            (rusqlite::ffi::SQLITE_CANTOPEN, StorageKind::CannotOpen),
            (rusqlite::ffi::SQLITE_CORRUPT, StorageKind::Corrupt),
        ] {
            let failure = StorageFailure::of(&sqlite(code)).expect("a storage failure");
            assert_eq!(failure.kind, kind);
            let error = failure.to_error(Path::new("st/journal.sqlite"));
            assert_eq!(error.exit_code(), ExitCode::Storage);
            assert!(error.to_string().contains("`st/journal.sqlite`"), "{error}");
            assert!(error.hint().is_some());
        }
    }

    #[test]
    fn other_journal_errors_are_not_storage_failures() {
        assert_eq!(
            StorageFailure::of(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)),
            None
        );
        assert_eq!(
            StorageFailure::of(&JournalError::UnknownOrder("x".into())),
            None
        );
        let error = journal_error(
            JournalError::UnknownOrder("x".into()),
            Path::new("j"),
            Error::usage,
        );
        assert_eq!(error.exit_code(), ExitCode::Usage);
    }

    #[test]
    fn a_journal_held_by_another_writer_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let mut journal = Journal::open(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        journal
            .conn_for_tests()
            .busy_timeout(std::time::Duration::from_millis(10))
            .unwrap();
        let error = journal.set_feed_mark(1).unwrap_err();
        assert!(error.to_string().contains("locked"));
        let failure = StorageFailure::of(&error).expect("a storage failure");
        assert_eq!(failure.kind, StorageKind::Locked);
    }

    #[test]
    fn a_folder_in_place_of_the_journal_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        std::fs::create_dir(&path).unwrap();
        let error = Journal::open(&path).unwrap_err();
        let error = journal_error(error, &path, Error::usage);
        assert_eq!(error.exit_code(), ExitCode::Storage, "{error}");
    }
}
