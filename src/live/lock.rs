//! One session per state folder: an exclusive OS advisory lock on `<state>/lock` (also one
//! `rustybt optimize` per study folder: `crate::optimize::lock_study`).
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on an open file held for the whole session. The
//! kernel releases it when the process ends however it ends (`kill -9` included), so "the lock
//! is held" always means "a live process holds it": there is no pid guessing and no lock that
//! outlives its owner. The holder writes its pid, start time and command line into the file so
//! a refused session can name it. A file that still has a holder's text when the lock is free
//! belongs to a session that died without releasing it cleanly: stale, taken over, and said so.
//!
//! Caveats: an NFS mount may not honour `flock` between machines (keep state folders on a local
//! disk); a child process forked without `exec` inherits the lock and keeps it while it lives.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name inside the state folder.
pub const LOCK_FILE: &str = "lock";

/// Who holds (or held) a state folder, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// UTC, `2026-01-02T03:04:05Z`.
    pub started_at: String,
    /// The holder's command line.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (started {}: `{}`)",
            self.pid, self.started_at, self.command
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the folder.
    #[error("the state folder `{}` is in use by another rustybt session: {}", dir.display(), describe(holder))]
    Held {
        dir: PathBuf,
        /// `None` while the holder has not written its details yet (it just started).
        holder: Option<Holder>,
    },
    #[error("cannot lock the state folder: `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<LockError> for crate::error::Error {
    fn from(error: LockError) -> Self {
        match &error {
            LockError::Held { .. } => crate::error::Error::usage_with_hint(
                error.to_string(),
                "one session per state folder: stop that session first (Ctrl-C, or `kill` its \
                 pid), or give this one another --state",
            ),
            LockError::Io { path, .. } => crate::error::Error::usage_with_hint(
                format!(
                    "{error}: {}",
                    std::error::Error::source(&error)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ),
                format!(
                    "the state folder must be a folder you can write to (`{}`)",
                    path.display()
                ),
            ),
        }
    }
}

/// Who holds a lock, for a refusal's message.
pub fn describe(holder: &Option<Holder>) -> String {
    match holder {
        Some(holder) => holder.to_string(),
        None => "a process that is starting (its pid is not written yet)".into(),
    }
}

/// The held lock of a state folder; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    /// The earlier holder whose lock was found stale (it died without releasing it).
    pub stale: Option<Holder>,
}

impl StateLock {
    /// Takes the lock of `dir` (created if missing) for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<StateLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if !try_lock_exclusive(&file).map_err(io)? {
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                holder: read_holder(&mut file),
            });
        }
        // Ours now: text left in the file is a holder that died without a clean release.
        let stale = read_holder(&mut file);
        let holder = Holder {
            pid: std::process::id(),
            started_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            command: command.to_string(),
        };
        let text = serde_json::to_string(&holder).expect("invariant: a Holder serializes");
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(StateLock { file, path, stale })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock of `dir` now, as far as its file and the process table say (for
    /// `rustybt live report`; informational: it never takes the lock, so it cannot get in the
    /// way of a session that is starting).
    pub fn holder_of(dir: &Path) -> Option<Holder> {
        let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
        read_holder(&mut file).filter(|h| process_alive(h.pid))
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A clean release empties the file first, so the next session sees no stale holder;
        // the kernel drops the lock itself when the file is closed.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// `Ok(false)` when another open file description holds it.
#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a file descriptor this `File` owns and keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_a_released_lock_is_not_stale() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state, "rustybt live --one").unwrap();
        assert_eq!(first.stale, None);
        // A second open file description: refused, as another process would be.
        match StateLock::acquire(&state, "rustybt live --two") {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => {
                assert_eq!(h.pid, std::process::id());
                assert_eq!(h.command, "rustybt live --one");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(
            StateLock::holder_of(&state).map(|h| h.command),
            Some("rustybt live --one".into())
        );
        drop(first);
        assert_eq!(
            StateLock::holder_of(&state),
            None,
            "a clean release empties the file"
        );
        let again = StateLock::acquire(&state, "rustybt live --three").unwrap();
        assert_eq!(again.stale, None, "a clean release leaves nothing stale");
    }

    #[test]
    fn a_lock_file_left_with_a_holder_is_stale_and_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let dead = Holder {
            pid: 999_999,
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "rustybt live --dead".into(),
        };
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let lock = StateLock::acquire(dir.path(), "rustybt live --new").unwrap();
        assert_eq!(lock.stale, Some(dead));
        let text = std::fs::read_to_string(lock.path()).unwrap();
        let now: Holder = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            (now.pid, now.command.as_str()),
            (std::process::id(), "rustybt live --new")
        );
    }

    #[test]
    fn the_refusal_names_pid_start_and_command() {
        let error = LockError::Held {
            dir: "st".into(),
            holder: Some(Holder {
                pid: 42,
                started_at: "2026-01-01T00:00:00Z".into(),
                command: "rustybt live --algo a.py".into(),
            }),
        };
        assert_eq!(
            error.to_string(),
            "the state folder `st` is in use by another rustybt session: pid 42 \
             (started 2026-01-01T00:00:00Z: `rustybt live --algo a.py`)"
        );
    }
}
