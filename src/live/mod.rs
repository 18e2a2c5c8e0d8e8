//! The crash-safety and risk core of `rustybt live` (no pyo3 here; the bridge and the live loop
//! in `src/cli/` and `src/python/` build on it). See docs/architecture.md, "Live: journal,
//! breakers, reconciliation", for the order of operations the loop must follow.
//!
//! - [`journal`]: SQLite (WAL) journal of runs, order intents, acks, statuses, fills, book
//!   snapshots and adjustments, algorithm state, breaker trips, reconciliation reports;
//!   `recover()` for restarts.
//! - [`breakers`]: circuit breakers (drawdown, daily loss, order rate, error rate, manual halt).
//! - [`reconcile`]: engine view vs broker snapshot, classified discrepancies, sync/halt policy.
//! - [`config`]: `LiveSettings` from `config/live.toml`, credentials, [`config::Secret`], `mask`.
//! - [`audit`]: append-only JSON Lines audit log with secrets masked.
//! - [`feed`]: where a session's closed bars come from (a replay file, an exchange).
//! - [`lock`]: one session per state folder (an OS lock on `<state>/lock` naming its holder).
//! - [`storage`]: journal failures that are storage conditions (locked, I/O, full, read-only).
//! - [`report`]: the history of a state folder across sessions, from the journal.
//! - [`status`]: the terminal's status line, with every other line printed above it.
//! - [`api`]: the control and monitoring API (`--api`): HTTP and WebSocket threads beside the
//!   loop, which applies their actions between bars (`session_api.rs`).
//! - [`venue`]: the [`venue::Venue`] trait the loop talks to an exchange through, and the data
//!   (orders, fills, candles, rules, events, errors) that crosses it.

pub mod api;
pub mod audit;
pub mod book;
pub mod breakers;
pub mod broker;
pub mod config;
pub mod error;
pub mod feed;
pub mod journal;
pub mod lock;
pub mod reconcile;
pub mod recovery;
pub mod report;
pub mod session;
pub mod status;
pub mod storage;
pub mod venue;
pub mod warmup;

/// Wall-clock time (UTC ns) for the journal, the audit log and the exchange's clock.
pub fn wall_ns() -> crate::model::TimestampNs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
