//! Circuit breakers: a trip stops new orders, says why, and is persisted in the journal so a
//! restart stays halted until someone calls [`Breakers::reset`].
//!
//! Boundaries (each tested exactly):
//! - drawdown: trips when `(peak − equity) / peak ≥ max_drawdown` (peak = highest equity seen);
//! - daily loss: trips when `day_start − equity ≥ daily_loss_amount`, or
//!   `≥ daily_loss_fraction × day_start`; the day is the calendar day in `daily_timezone`
//!   (UTC by default) and `day_start` the first equity seen that day;
//! - order rate: at most `max_orders_per_minute` orders in any rolling 60 s window `(t − 60 s, t]`;
//!   the order that would exceed it is refused (not sent) and trips;
//! - error rate: trips when the errors in the rolling `error_window` exceed `max_errors`, or
//!   when `errors ≥ max_error_fraction × requests` with at least `error_min_requests` requests
//!   in the window;
//! - manual: [`Breakers::halt`] (e.g. on SIGUSR1) or the presence of `halt_file`
//!   ([`Breakers::check_halt_file`]).
//!
//! Only the first trip is kept: it is the reason trading stopped.

use std::collections::VecDeque;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use super::journal::{Journal, JournalError, TripRecord};
use crate::model::time::NANOS_PER_MINUTE;
use crate::model::{TimestampNs, format_timestamp};

/// Journal mark names for the baselines that survive a restart.
pub const MARK_PEAK_EQUITY: &str = "peak_equity";
pub const MARK_DAY_START_EQUITY: &str = "day_start_equity";

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Fraction of the peak equity, in (0, 1].
    pub max_drawdown: Option<Decimal>,
    /// Loss within one day, in the book's currency (> 0).
    pub daily_loss_amount: Option<Decimal>,
    /// Loss within one day as a fraction of the day's first equity, in (0, 1].
    pub daily_loss_fraction: Option<Decimal>,
    pub daily_timezone: Tz,
    /// Orders in any rolling minute (≥ 1).
    pub max_orders_per_minute: Option<u32>,
    /// Errors tolerated within `error_window_ns`; one more trips.
    pub max_errors: Option<u32>,
    /// Errors / requests within the window at which it trips, in (0, 1].
    pub max_error_fraction: Option<Decimal>,
    /// The fraction is only judged with at least this many requests in the window.
    pub error_min_requests: u32,
    pub error_window_ns: i64,
    /// Trading halts while this file exists.
    pub halt_file: Option<PathBuf>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_drawdown: None,
            daily_loss_amount: None,
            daily_loss_fraction: None,
            daily_timezone: Tz::UTC,
            max_orders_per_minute: None,
            max_errors: None,
            max_error_fraction: None,
            error_min_requests: 10,
            error_window_ns: 5 * NANOS_PER_MINUTE,
            halt_file: None,
        }
    }
}

fn in_unit_interval(value: Decimal) -> bool {
    value > Decimal::ZERO && value <= Decimal::ONE
}

impl BreakerConfig {
    /// Checks the ranges; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(v) = self.max_drawdown.filter(|&v| !in_unit_interval(v)) {
            return Err(format!("breakers.max_drawdown must be in (0, 1], got {v}"));
        }
        if let Some(v) = self.daily_loss_amount.filter(|&v| v <= Decimal::ZERO) {
            return Err(format!("breakers.daily_loss must be positive, got {v}"));
        }
        if let Some(v) = self.daily_loss_fraction.filter(|&v| !in_unit_interval(v)) {
            return Err(format!(
                "breakers.daily_loss_fraction must be in (0, 1], got {v}"
            ));
        }
        if self.max_orders_per_minute == Some(0) {
            return Err("breakers.max_orders_per_minute must be at least 1".into());
        }
        if let Some(v) = self.max_error_fraction.filter(|&v| !in_unit_interval(v)) {
            return Err(format!(
                "breakers.max_error_fraction must be in (0, 1], got {v}"
            ));
        }
        if self.error_window_ns <= 0 {
            return Err("breakers.error_window must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerKind {
    Drawdown,
    DailyLoss,
    OrderRate,
    ErrorRate,
    Manual,
    HaltFile,
    Reconciliation,
}

impl BreakerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerKind::Drawdown => "drawdown",
            BreakerKind::DailyLoss => "daily_loss",
            BreakerKind::OrderRate => "order_rate",
            BreakerKind::ErrorRate => "error_rate",
            BreakerKind::Manual => "manual",
            BreakerKind::HaltFile => "halt_file",
            BreakerKind::Reconciliation => "reconciliation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "drawdown" => BreakerKind::Drawdown,
            "daily_loss" => BreakerKind::DailyLoss,
            "order_rate" => BreakerKind::OrderRate,
            "error_rate" => BreakerKind::ErrorRate,
            "manual" => BreakerKind::Manual,
            "halt_file" => BreakerKind::HaltFile,
            "reconciliation" => BreakerKind::Reconciliation,
            _ => return None,
        })
    }
}

/// Why trading stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    pub kind: BreakerKind,
    pub time: TimestampNs,
    pub reason: String,
    /// The values that tripped it.
    pub detail: serde_json::Value,
}

impl Trip {
    pub fn to_record(&self) -> TripRecord {
        TripRecord {
            time: self.time,
            breaker: self.kind.as_str().to_string(),
            reason: self.reason.clone(),
            detail: self.detail.clone(),
        }
    }

    fn from_record(record: &TripRecord) -> Trip {
        Trip {
            // A breaker name this build does not know is still a halt: treat it as manual.
            kind: BreakerKind::parse(&record.breaker).unwrap_or(BreakerKind::Manual),
            time: record.time,
            reason: record.reason.clone(),
            detail: record.detail.clone(),
        }
    }
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} breaker tripped at {}: {}",
            self.kind.as_str(),
            format_timestamp(self.time),
            self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    /// Trading is halted: the order must not be sent.
    #[error("trading halted: {0}")]
    Halted(Box<Trip>),
    #[error("invalid equity {0}: it must not be negative")]
    InvalidEquity(Decimal),
    #[error("cannot reset: the halt file {0} still exists; remove it first")]
    HaltFilePresent(PathBuf),
    #[error("invalid breaker settings: {0}")]
    Config(String),
    #[error("decimal overflow while {0}")]
    Overflow(&'static str),
    #[error("breaker state could not be persisted: {0}")]
    Journal(#[from] JournalError),
}

/// A view for status lines and results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerState {
    pub tripped: Option<Trip>,
    pub peak_equity: Option<Decimal>,
    /// The current trading day (`YYYY-MM-DD` in the configured time zone).
    pub day: Option<String>,
    pub day_start_equity: Option<Decimal>,
    pub last_equity: Option<Decimal>,
    pub orders_in_window: usize,
    pub errors_in_window: usize,
    pub requests_in_window: usize,
}

/// A breaker write held back for the session's own journal connection (see
/// [`Breakers::defer_writes`]).
#[derive(Debug, Clone, PartialEq)]
pub enum BreakerWrite {
    Trip(TripRecord),
    Mark {
        name: &'static str,
        time: TimestampNs,
        value: Decimal,
    },
    Reset {
        time: TimestampNs,
        by: String,
    },
}

impl BreakerWrite {
    /// Writes it through `journal` (inside its open group, if any).
    pub fn apply(&self, journal: &mut Journal) -> Result<(), JournalError> {
        match self {
            BreakerWrite::Trip(trip) => journal.record_breaker_trip(trip),
            BreakerWrite::Mark { name, time, value } => {
                journal.set_breaker_mark(name, *time, *value)
            }
            BreakerWrite::Reset { time, by } => journal.record_breaker_reset(*time, by),
        }
    }
}

#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    journal: Option<Journal>,
    /// While `Some`, writes wait here for the session's connection instead of going through
    /// `journal` (a grouped session journal holds the write lock between its commits).
    deferred: Option<Vec<BreakerWrite>>,
    tripped: Option<Trip>,
    peak: Option<Decimal>,
    day: Option<(NaiveDate, Decimal)>,
    last_equity: Option<Decimal>,
    orders: VecDeque<TimestampNs>,
    errors: VecDeque<TimestampNs>,
    requests: VecDeque<TimestampNs>,
}

const ORDER_WINDOW_NS: i64 = NANOS_PER_MINUTE;

/// Keeps the times in `(now − window, now]`.
fn evict(times: &mut VecDeque<TimestampNs>, now: TimestampNs, window: i64) {
    let cutoff = now.saturating_sub(window);
    while times.front().is_some_and(|&t| t <= cutoff) {
        times.pop_front();
    }
}

impl Breakers {
    /// Breakers with the given settings. With a journal (its own connection to the session's
    /// journal file is fine), trips, resets and baselines are persisted, and an active trip and
    /// the peak/day-start equity are restored from it.
    pub fn new(config: BreakerConfig, journal: Option<Journal>) -> Result<Breakers, BreakerError> {
        config.validate().map_err(BreakerError::Config)?;
        let mut breakers = Breakers {
            config,
            journal,
            deferred: None,
            tripped: None,
            peak: None,
            day: None,
            last_equity: None,
            orders: VecDeque::new(),
            errors: VecDeque::new(),
            requests: VecDeque::new(),
        };
        if let Some(journal) = &breakers.journal {
            breakers.tripped = journal.active_trip()?.as_ref().map(Trip::from_record);
            let marks = journal.breaker_marks()?;
            breakers.peak = marks.get(MARK_PEAK_EQUITY).map(|&(_, v)| v);
            if let Some(&(time, value)) = marks.get(MARK_DAY_START_EQUITY) {
                breakers.day = Some((breakers.local_date(time), value));
            }
        }
        Ok(breakers)
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// From now on, trips, resets and marks are kept for [`Breakers::take_writes`] instead of
    /// being written through the breakers' own connection: the session writes them with its
    /// grouped journal, in the same commit as the checkpoint they belong to.
    pub fn defer_writes(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// The writes held back since the last call (none unless deferring).
    pub fn take_writes(&mut self) -> Vec<BreakerWrite> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn persist(&mut self, write: BreakerWrite) -> Result<(), BreakerError> {
        match (&mut self.deferred, &mut self.journal) {
            (Some(queue), _) => queue.push(write),
            (None, Some(journal)) => write.apply(journal)?,
            (None, None) => {}
        }
        Ok(())
    }

    fn local_date(&self, time: TimestampNs) -> NaiveDate {
        DateTime::from_timestamp_nanos(time)
            .with_timezone(&self.config.daily_timezone)
            .date_naive()
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped.is_some()
    }

    pub fn trip(&self) -> Option<&Trip> {
        self.tripped.as_ref()
    }

    /// `Err(Halted)` while tripped: call before anything that would trade.
    pub fn check(&self) -> Result<(), BreakerError> {
        match &self.tripped {
            Some(trip) => Err(BreakerError::Halted(Box::new(trip.clone()))),
            None => Ok(()),
        }
    }

    pub fn state(&self) -> BreakerState {
        BreakerState {
            tripped: self.tripped.clone(),
            peak_equity: self.peak,
            day: self.day.map(|(d, _)| d.to_string()),
            day_start_equity: self.day.map(|(_, v)| v),
            last_equity: self.last_equity,
            orders_in_window: self.orders.len(),
            errors_in_window: self.errors.len(),
            requests_in_window: self.requests.len(),
        }
    }

    /// Records a trip (if none is active) and persists it. Returns the new trip, or `None`
    /// when one was already active.
    fn trip_now(
        &mut self,
        kind: BreakerKind,
        time: TimestampNs,
        reason: String,
        detail: serde_json::Value,
    ) -> Result<Option<Trip>, BreakerError> {
        if self.tripped.is_some() {
            return Ok(None);
        }
        let trip = Trip {
            kind,
            time,
            reason,
            detail,
        };
        // In memory first: even if persisting fails, trading stays halted in this process.
        self.tripped = Some(trip.clone());
        self.persist(BreakerWrite::Trip(trip.to_record()))?;
        Ok(Some(trip))
    }

    fn set_mark(
        &mut self,
        name: &'static str,
        time: TimestampNs,
        value: Decimal,
    ) -> Result<(), BreakerError> {
        self.persist(BreakerWrite::Mark { name, time, value })
    }

    /// A new equity value (after marking to market). Returns a trip when the drawdown or the
    /// daily loss limit is reached now.
    pub fn on_equity(
        &mut self,
        time: TimestampNs,
        equity: Decimal,
    ) -> Result<Option<Trip>, BreakerError> {
        if equity < Decimal::ZERO {
            return Err(BreakerError::InvalidEquity(equity));
        }
        self.last_equity = Some(equity);
        if self.peak.is_none_or(|peak| equity > peak) {
            self.peak = Some(equity);
            self.set_mark(MARK_PEAK_EQUITY, time, equity)?;
        }
        let today = self.local_date(time);
        if self.day.is_none_or(|(day, _)| day != today) {
            self.day = Some((today, equity));
            self.set_mark(MARK_DAY_START_EQUITY, time, equity)?;
        }
        let peak = self.peak.unwrap_or(equity);
        if let Some(max) = self.config.max_drawdown.filter(|_| peak > Decimal::ZERO) {
            let drop = peak - equity;
            let limit = peak
                .checked_mul(max)
                .ok_or(BreakerError::Overflow("computing the drawdown limit"))?;
            if drop >= limit {
                let fraction = drop
                    .checked_div(peak)
                    .map(|f| f.round_dp(6).normalize().to_string())
                    .unwrap_or_default();
                return self.trip_now(
                    BreakerKind::Drawdown,
                    time,
                    format!(
                        "drawdown {fraction} from peak equity {peak} (equity {equity}) reached the limit {max}"
                    ),
                    json!({"peak": peak, "equity": equity, "drawdown": drop, "limit": max}),
                );
            }
        }
        let (day, start) = self.day.unwrap_or((today, equity));
        let loss = start - equity;
        if let Some(amount) = self
            .config
            .daily_loss_amount
            .filter(|&amount| loss >= amount)
        {
            return self.trip_now(
                BreakerKind::DailyLoss,
                time,
                format!("daily loss {loss} on {day} (from {start} to {equity}) reached the limit {amount}"),
                json!({"day": day.to_string(), "day_start_equity": start, "equity": equity, "loss": loss, "limit": amount}),
            );
        }
        if let Some(fraction) = self
            .config
            .daily_loss_fraction
            .filter(|_| start > Decimal::ZERO)
        {
            let limit = start
                .checked_mul(fraction)
                .ok_or(BreakerError::Overflow("computing the daily loss limit"))?;
            if loss >= limit {
                return self.trip_now(
                    BreakerKind::DailyLoss,
                    time,
                    format!(
                        "daily loss {loss} on {day} (from {start} to {equity}) reached {fraction} of the day's start"
                    ),
                    json!({"day": day.to_string(), "day_start_equity": start, "equity": equity, "loss": loss, "limit_fraction": fraction}),
                );
            }
        }
        Ok(None)
    }

    /// Call before sending each order. `Err(Halted)` when trading is halted or when this order
    /// would exceed the order rate (which trips): the order must not be sent. `Ok` counts it.
    pub fn on_order(&mut self, time: TimestampNs) -> Result<(), BreakerError> {
        self.check()?;
        evict(&mut self.orders, time, ORDER_WINDOW_NS);
        if let Some(max) = self
            .config
            .max_orders_per_minute
            .filter(|&max| self.orders.len() >= max as usize)
        {
            let trip = self.trip_now(
                BreakerKind::OrderRate,
                time,
                format!(
                    "order rate: this order would be number {} within a minute, the limit is {max}",
                    self.orders.len() + 1
                ),
                json!({"orders_in_window": self.orders.len() + 1, "limit": max, "window_s": 60}),
            )?;
            let trip = trip
                .or_else(|| self.tripped.clone())
                .ok_or(BreakerError::Overflow("tripping"))?;
            return Err(BreakerError::Halted(Box::new(trip)));
        }
        self.orders.push_back(time);
        Ok(())
    }

    /// Counts one broker request (for the error fraction).
    pub fn on_request(&mut self, time: TimestampNs) -> Result<Option<Trip>, BreakerError> {
        let window = self.config.error_window_ns;
        evict(&mut self.requests, time, window);
        self.requests.push_back(time);
        self.judge_errors(time)
    }

    /// Counts one failed broker request (call `on_request` for it too).
    pub fn on_error(&mut self, time: TimestampNs) -> Result<Option<Trip>, BreakerError> {
        let window = self.config.error_window_ns;
        evict(&mut self.errors, time, window);
        self.errors.push_back(time);
        self.judge_errors(time)
    }

    fn judge_errors(&mut self, time: TimestampNs) -> Result<Option<Trip>, BreakerError> {
        let window = self.config.error_window_ns;
        evict(&mut self.errors, time, window);
        evict(&mut self.requests, time, window);
        let errors = self.errors.len();
        let requests = self.requests.len();
        let window_s = window / 1_000_000_000;
        if let Some(max) = self.config.max_errors.filter(|&max| errors > max as usize) {
            return self.trip_now(
                BreakerKind::ErrorRate,
                time,
                format!("{errors} errors within {window_s} s, more than the {max} tolerated"),
                json!({"errors": errors, "requests": requests, "limit": max, "window_s": window_s}),
            );
        }
        let judged = requests >= self.config.error_min_requests as usize && requests > 0;
        if let Some(fraction) = self.config.max_error_fraction.filter(|_| judged) {
            let limit = Decimal::from(requests)
                .checked_mul(fraction)
                .ok_or(BreakerError::Overflow("computing the error fraction"))?;
            if Decimal::from(errors) >= limit {
                return self.trip_now(
                    BreakerKind::ErrorRate,
                    time,
                    format!(
                        "{errors} of {requests} requests within {window_s} s failed, the limit is {fraction}"
                    ),
                    json!({"errors": errors, "requests": requests, "limit_fraction": fraction, "window_s": window_s}),
                );
            }
        }
        Ok(None)
    }

    /// Trips when the configured halt file exists; its first line (if any) is the reason.
    pub fn check_halt_file(&mut self, time: TimestampNs) -> Result<Option<Trip>, BreakerError> {
        let Some(path) = self.config.halt_file.clone() else {
            return Ok(None);
        };
        if !path.exists() {
            return Ok(None);
        }
        let note: String = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .map(|l| l.trim().chars().take(200).collect())
            })
            .unwrap_or_default();
        let reason = if note.is_empty() {
            format!("halt file {} exists", path.display())
        } else {
            format!("halt file {} exists: {note}", path.display())
        };
        self.trip_now(
            BreakerKind::HaltFile,
            time,
            reason,
            json!({"path": path.display().to_string()}),
        )
    }

    /// Manual halt (a signal, a command). Returns the active trip (this one, or the earlier one
    /// if trading was already halted).
    pub fn halt(&mut self, time: TimestampNs, reason: &str) -> Result<Trip, BreakerError> {
        self.trip_external(time, BreakerKind::Manual, reason, json!({}))
    }

    /// A trip decided elsewhere (e.g. reconciliation policy `halt`). Returns the active trip.
    pub fn trip_external(
        &mut self,
        time: TimestampNs,
        kind: BreakerKind,
        reason: &str,
        detail: serde_json::Value,
    ) -> Result<Trip, BreakerError> {
        let reason = if reason.trim().is_empty() {
            "no reason given".to_string()
        } else {
            reason.to_string()
        };
        self.trip_now(kind, time, reason, detail)?;
        self.tripped
            .clone()
            .ok_or(BreakerError::Overflow("tripping"))
    }

    /// Clears the trip (persisted with who did it). Peak and day-start equity restart from the
    /// last equity seen, and the rolling windows are emptied. Returns the cleared trip.
    pub fn reset(&mut self, time: TimestampNs, by: &str) -> Result<Option<Trip>, BreakerError> {
        if let Some(path) = self.config.halt_file.as_ref().filter(|path| path.exists()) {
            return Err(BreakerError::HaltFilePresent(path.clone()));
        }
        let cleared = self.tripped.take();
        self.persist(BreakerWrite::Reset {
            time,
            by: by.to_string(),
        })?;
        if let Some(equity) = self.last_equity {
            self.peak = Some(equity);
            self.set_mark(MARK_PEAK_EQUITY, time, equity)?;
            self.day = Some((self.local_date(time), equity));
            self.set_mark(MARK_DAY_START_EQUITY, time, equity)?;
        }
        self.orders.clear();
        self.errors.clear();
        self.requests.clear();
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    const S: i64 = 1_000_000_000;
    /// 2026-11-23T00:00:00Z
    const DAY0: i64 = 1_795_392_000 * S;

    fn breakers(config: BreakerConfig) -> Breakers {
        Breakers::new(config, None).unwrap()
    }

    fn tripped_kind(b: &Breakers) -> Option<BreakerKind> {
        b.trip().map(|t| t.kind)
    }

    #[test]
    fn settings_out_of_range_are_refused_naming_the_setting() {
        let cases = [
            (
                BreakerConfig {
                    max_drawdown: Some(dec!(0)),
                    ..Default::default()
                },
                "max_drawdown",
            ),
            (
                BreakerConfig {
                    max_drawdown: Some(dec!(1.5)),
                    ..Default::default()
                },
                "max_drawdown",
            ),
            (
                BreakerConfig {
                    daily_loss_amount: Some(dec!(-5)),
                    ..Default::default()
                },
                "daily_loss must be positive",
            ),
            (
                BreakerConfig {
                    daily_loss_fraction: Some(dec!(2)),
                    ..Default::default()
                },
                "daily_loss_fraction",
            ),
            (
                BreakerConfig {
                    max_orders_per_minute: Some(0),
                    ..Default::default()
                },
                "max_orders_per_minute",
            ),
            (
                BreakerConfig {
                    max_error_fraction: Some(dec!(0)),
                    ..Default::default()
                },
                "max_error_fraction",
            ),
            (
                BreakerConfig {
                    error_window_ns: 0,
                    ..Default::default()
                },
                "error_window",
            ),
        ];
        for (config, name) in cases {
            let err = Breakers::new(config, None).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn drawdown_trips_at_the_limit_not_just_below() {
        let mut b = breakers(BreakerConfig {
            max_drawdown: Some(dec!(0.1)),
            ..Default::default()
        });
        assert_eq!(b.on_equity(DAY0, dec!(900)).unwrap(), None);
        assert_eq!(
            b.on_equity(DAY0 + S, dec!(1000)).unwrap(),
            None,
            "a new peak"
        );
        assert_eq!(
            b.on_equity(DAY0 + 2 * S, dec!(900.01)).unwrap(),
            None,
            "just below 10%"
        );
        let trip = b
            .on_equity(DAY0 + 3 * S, dec!(900))
            .unwrap()
            .expect("at 10%");
        assert_eq!(trip.kind, BreakerKind::Drawdown);
        assert!(
            trip.reason.contains("peak equity 1000") && trip.reason.contains("0.1"),
            "{}",
            trip.reason
        );
        assert_eq!(trip.detail["peak"], "1000");
        assert_eq!(b.state().peak_equity, Some(dec!(1000)));
        // Already tripped: no second trip, the first reason stays.
        assert_eq!(b.on_equity(DAY0 + 4 * S, dec!(500)).unwrap(), None);
        assert_eq!(b.trip().unwrap().time, DAY0 + 3 * S);
        assert!(
            matches!(b.on_order(DAY0 + 5 * S), Err(BreakerError::Halted(t)) if t.kind == BreakerKind::Drawdown)
        );
    }

    #[test]
    fn over_the_drawdown_limit_trips_too() {
        let mut b = breakers(BreakerConfig {
            max_drawdown: Some(dec!(0.1)),
            ..Default::default()
        });
        b.on_equity(DAY0, dec!(1000)).unwrap();
        assert!(b.on_equity(DAY0 + S, dec!(10)).unwrap().is_some());
    }

    #[test]
    fn daily_loss_amount_trips_at_the_limit_and_a_new_day_restarts() {
        let mut b = breakers(BreakerConfig {
            daily_loss_amount: Some(dec!(100)),
            ..Default::default()
        });
        b.on_equity(DAY0 + S, dec!(1000)).unwrap();
        assert_eq!(b.on_equity(DAY0 + 2 * S, dec!(900.01)).unwrap(), None);
        // Next UTC day: the day starts at 950, a loss of 90 is fine.
        let day1 = DAY0 + 86_400 * S;
        assert_eq!(b.on_equity(day1, dec!(950)).unwrap(), None);
        assert_eq!(b.state().day_start_equity, Some(dec!(950)));
        assert_eq!(b.on_equity(day1 + S, dec!(860)).unwrap(), None);
        let trip = b
            .on_equity(day1 + 2 * S, dec!(850))
            .unwrap()
            .expect("loss of 100");
        assert_eq!(trip.kind, BreakerKind::DailyLoss);
        assert!(
            trip.reason.contains("daily loss 100 on 2026-11-24"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn daily_loss_fraction_trips_at_the_limit() {
        let mut b = breakers(BreakerConfig {
            daily_loss_fraction: Some(dec!(0.05)),
            ..Default::default()
        });
        b.on_equity(DAY0, dec!(2000)).unwrap();
        assert_eq!(b.on_equity(DAY0 + S, dec!(1900.01)).unwrap(), None);
        assert_eq!(tripped_kind(&b), None);
        let trip = b.on_equity(DAY0 + 2 * S, dec!(1900)).unwrap().unwrap();
        assert_eq!(trip.kind, BreakerKind::DailyLoss);
        assert_eq!(trip.detail["limit_fraction"], "0.05");
    }

    #[test]
    fn the_trading_day_follows_the_configured_time_zone() {
        let mut b = breakers(BreakerConfig {
            daily_loss_amount: Some(dec!(100)),
            daily_timezone: "America/New_York".parse().unwrap(),
            ..Default::default()
        });
        // 23:00 UTC and 01:00 UTC the next day are both 2026-11-23 in New York.
        b.on_equity(DAY0 + 23 * 3600 * S, dec!(1000)).unwrap();
        let trip = b.on_equity(DAY0 + 25 * 3600 * S, dec!(900)).unwrap();
        assert!(trip.is_some(), "same New York day: the loss counts");

        let mut utc = breakers(BreakerConfig {
            daily_loss_amount: Some(dec!(100)),
            ..Default::default()
        });
        utc.on_equity(DAY0 + 23 * 3600 * S, dec!(1000)).unwrap();
        assert_eq!(
            utc.on_equity(DAY0 + 25 * 3600 * S, dec!(900)).unwrap(),
            None,
            "a new UTC day"
        );
    }

    #[test]
    fn negative_equity_is_an_error() {
        let mut b = breakers(BreakerConfig::default());
        let err = b.on_equity(DAY0, dec!(-1)).unwrap_err();
        assert!(err.to_string().contains("-1"), "{err}");
    }

    #[test]
    fn the_order_that_would_exceed_the_rate_is_refused_and_trips() {
        let mut b = breakers(BreakerConfig {
            max_orders_per_minute: Some(3),
            ..Default::default()
        });
        for i in 0..3 {
            b.on_order(DAY0 + i * S).unwrap();
        }
        assert_eq!(b.state().orders_in_window, 3);
        let err = b.on_order(DAY0 + 60 * S - 1).unwrap_err();
        match err {
            BreakerError::Halted(trip) => {
                assert_eq!(trip.kind, BreakerKind::OrderRate);
                assert!(
                    trip.reason.contains("number 4") && trip.reason.contains("limit is 3"),
                    "{}",
                    trip.reason
                );
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            b.state().orders_in_window,
            3,
            "the refused order is not counted"
        );
        // Even after the window moved on, a tripped breaker refuses.
        assert!(b.on_order(DAY0 + 600 * S).is_err());
    }

    #[test]
    fn the_order_window_rolls() {
        let mut b = breakers(BreakerConfig {
            max_orders_per_minute: Some(3),
            ..Default::default()
        });
        for i in 0..3 {
            b.on_order(DAY0 + i * S).unwrap();
        }
        // Exactly 60 s after the first order it has left the window (t − 60 s, t].
        b.on_order(DAY0 + 60 * S).unwrap();
        assert!(
            b.on_order(DAY0 + 60 * S + 1).is_err(),
            "orders at 1 s, 2 s, 60 s and now: 4"
        );
    }

    #[test]
    fn errors_beyond_the_count_trip_and_the_window_rolls() {
        let config = BreakerConfig {
            max_errors: Some(2),
            error_window_ns: 60 * S,
            ..Default::default()
        };
        let mut b = breakers(config.clone());
        assert_eq!(b.on_error(DAY0).unwrap(), None);
        assert_eq!(
            b.on_error(DAY0 + 10 * S).unwrap(),
            None,
            "2 errors are tolerated"
        );
        let trip = b.on_error(DAY0 + 20 * S).unwrap().expect("the third");
        assert_eq!(trip.kind, BreakerKind::ErrorRate);
        assert!(
            trip.reason.contains("3 errors within 60 s"),
            "{}",
            trip.reason
        );

        let mut rolling = breakers(config);
        rolling.on_error(DAY0).unwrap();
        rolling.on_error(DAY0 + 10 * S).unwrap();
        assert_eq!(
            rolling.on_error(DAY0 + 60 * S).unwrap(),
            None,
            "the first left the window"
        );
        assert_eq!(rolling.state().errors_in_window, 2);
    }

    #[test]
    fn the_error_fraction_trips_at_the_limit_with_enough_requests() {
        let config = BreakerConfig {
            max_error_fraction: Some(dec!(0.5)),
            error_min_requests: 4,
            error_window_ns: 60 * S,
            ..Default::default()
        };
        let mut b = breakers(config.clone());
        for i in 0..3 {
            b.on_request(DAY0 + i * S).unwrap();
            b.on_error(DAY0 + i * S).unwrap();
        }
        assert_eq!(
            tripped_kind(&b),
            None,
            "3 of 3 failed, but fewer than 4 requests"
        );
        let trip = b.on_request(DAY0 + 3 * S).unwrap().expect("3 of 4 ≥ 0.5");
        assert!(trip.reason.contains("3 of 4 requests"), "{}", trip.reason);

        let mut b = breakers(config);
        for i in 0..4 {
            b.on_request(DAY0 + i * S).unwrap();
        }
        assert_eq!(
            b.on_error(DAY0 + 4 * S).unwrap(),
            None,
            "1 of 4 is below 0.5"
        );
        assert!(
            b.on_error(DAY0 + 5 * S).unwrap().is_some(),
            "2 of 4 is at 0.5"
        );
    }

    #[test]
    fn the_halt_file_trips_with_its_note_and_blocks_the_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("HALT");
        let mut b = breakers(BreakerConfig {
            halt_file: Some(path.clone()),
            ..Default::default()
        });
        assert_eq!(b.check_halt_file(DAY0).unwrap(), None);
        std::fs::write(&path, "exchange maintenance\nsecond line").unwrap();
        let trip = b.check_halt_file(DAY0 + S).unwrap().unwrap();
        assert_eq!(trip.kind, BreakerKind::HaltFile);
        assert!(
            trip.reason.ends_with("exists: exchange maintenance"),
            "{}",
            trip.reason
        );
        let err = b.reset(DAY0 + 2 * S, "operator").unwrap_err();
        assert!(matches!(err, BreakerError::HaltFilePresent(_)));
        assert!(err.to_string().contains("HALT"), "{err}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            b.reset(DAY0 + 3 * S, "operator").unwrap().unwrap().kind,
            BreakerKind::HaltFile
        );
        assert!(!b.is_tripped());
        assert_eq!(
            breakers(BreakerConfig::default())
                .check_halt_file(DAY0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn an_empty_halt_file_trips_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("HALT");
        std::fs::write(&path, "").unwrap();
        let mut b = breakers(BreakerConfig {
            halt_file: Some(path.clone()),
            ..Default::default()
        });
        let trip = b.check_halt_file(DAY0).unwrap().unwrap();
        assert_eq!(trip.reason, format!("halt file {} exists", path.display()));
    }

    #[test]
    fn a_manual_halt_says_why_and_keeps_the_first_reason() {
        let mut b = breakers(BreakerConfig::default());
        b.check().unwrap();
        let trip = b.halt(DAY0, "SIGUSR1 from the operator").unwrap();
        assert_eq!(
            (trip.kind, trip.reason.as_str()),
            (BreakerKind::Manual, "SIGUSR1 from the operator")
        );
        let again = b
            .trip_external(
                DAY0 + S,
                BreakerKind::Reconciliation,
                "critical",
                serde_json::json!({}),
            )
            .unwrap();
        assert_eq!(again.reason, "SIGUSR1 from the operator");
        let err = b.check().unwrap_err();
        assert!(
            err.to_string().contains("manual breaker tripped")
                && err.to_string().contains("SIGUSR1"),
            "{err}"
        );
        let mut b = breakers(BreakerConfig::default());
        assert_eq!(b.halt(DAY0, "  ").unwrap().reason, "no reason given");
    }

    #[test]
    fn a_reset_rebases_peak_and_day_start_and_clears_windows() {
        let mut b = breakers(BreakerConfig {
            max_drawdown: Some(dec!(0.1)),
            max_orders_per_minute: Some(1),
            ..Default::default()
        });
        b.on_equity(DAY0, dec!(1000)).unwrap();
        b.on_order(DAY0).unwrap();
        b.on_equity(DAY0 + S, dec!(850)).unwrap().unwrap();
        assert_eq!(
            b.reset(DAY0 + 2 * S, "ops").unwrap().unwrap().kind,
            BreakerKind::Drawdown
        );
        assert_eq!(b.state().peak_equity, Some(dec!(850)));
        assert_eq!(
            b.on_equity(DAY0 + 3 * S, dec!(849)).unwrap(),
            None,
            "measured from 850 now"
        );
        b.on_order(DAY0 + 4 * S).unwrap();
        assert_eq!(
            b.reset(DAY0 + 5 * S, "ops").unwrap(),
            None,
            "nothing to clear"
        );
    }

    #[test]
    fn a_trip_and_the_peak_survive_a_restart_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let config = BreakerConfig {
            max_drawdown: Some(dec!(0.2)),
            ..Default::default()
        };
        {
            let mut b = Breakers::new(config.clone(), Some(Journal::open(&path).unwrap())).unwrap();
            b.on_equity(DAY0, dec!(1000)).unwrap();
            b.on_equity(DAY0 + S, dec!(1200)).unwrap();
            b.on_equity(DAY0 + 2 * S, dec!(960)).unwrap().unwrap();
        }
        {
            let mut b = Breakers::new(config.clone(), Some(Journal::open(&path).unwrap())).unwrap();
            let trip = b.trip().unwrap().clone();
            assert_eq!(
                (trip.kind, trip.time),
                (BreakerKind::Drawdown, DAY0 + 2 * S)
            );
            assert!(trip.reason.contains("peak equity 1200"), "{}", trip.reason);
            assert_eq!(trip.detail["equity"], "960");
            assert_eq!(b.state().peak_equity, Some(dec!(1200)));
            assert_eq!(b.state().day_start_equity, Some(dec!(1000)));
            assert!(matches!(
                b.on_order(DAY0 + 3 * S),
                Err(BreakerError::Halted(_))
            ));
            b.on_equity(DAY0 + 4 * S, dec!(970)).unwrap();
            b.reset(DAY0 + 5 * S, "operator alice").unwrap();
        }
        let b = Breakers::new(config, Some(Journal::open(&path).unwrap())).unwrap();
        assert!(!b.is_tripped());
        assert_eq!(b.state().peak_equity, Some(dec!(970)));
        let journal = Journal::open(&path).unwrap();
        let resets: i64 = journal
            .conn_for_tests()
            .query_row(
                "SELECT COUNT(*) FROM breaker_events WHERE reason = 'reset by operator alice'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(resets, 1);
    }

    #[test]
    fn deferred_writes_wait_for_the_session_journal_and_then_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let config = BreakerConfig {
            max_drawdown: Some(dec!(0.2)),
            ..Default::default()
        };
        let mut session = Journal::open(&path).unwrap();
        let mut b = Breakers::new(config.clone(), Some(Journal::open(&path).unwrap())).unwrap();
        b.defer_writes();
        // The session holds its group's write lock meanwhile: a write through the breakers'
        // own connection would wait for it.
        session.set_grouped(true).unwrap();
        session.set_feed_mark(DAY0).unwrap();
        b.on_equity(DAY0, dec!(1000)).unwrap();
        b.on_equity(DAY0 + S, dec!(1200)).unwrap();
        b.on_equity(DAY0 + 2 * S, dec!(960)).unwrap().unwrap();
        let writes = b.take_writes();
        assert!(
            matches!(writes.last(), Some(BreakerWrite::Trip(t)) if t.breaker == "drawdown"),
            "{writes:?}"
        );
        assert!(b.take_writes().is_empty(), "taken once");
        for write in &writes {
            write.apply(&mut session).unwrap();
        }
        session.commit_group().unwrap();
        drop(b);
        let b = Breakers::new(config, Some(Journal::open(&path).unwrap())).unwrap();
        assert_eq!(b.trip().map(|t| t.kind), Some(BreakerKind::Drawdown));
        assert_eq!(b.state().peak_equity, Some(dec!(1200)));
        assert_eq!(b.state().day_start_equity, Some(dec!(1000)));
    }
}
