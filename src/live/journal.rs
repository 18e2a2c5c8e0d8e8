//! The crash-safe journal of a live session: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Every write that must survive a crash is one transaction committed before the function
//! returns, so after `kill -9` the file holds every call that returned and nothing of the one
//! that did not. A grouped journal ([`Journal::set_grouped`], paper sessions only) instead
//! keeps one transaction open across calls and commits it at [`Journal::commit_group`]: after
//! `kill -9` the file holds every group committed and nothing of the open one. Money is `rust_decimal::Decimal` stored as TEXT (never REAL).
//!
//! Order life in the journal (`intents.state`):
//!
//! ```text
//! intent ──> sent ──> acknowledged ──> final
//!    │         │                         ▲
//!    └─────────┴── (status or fill) ─────┘
//! ```
//!
//! - `intent`: recorded before anything goes to the broker (the order may or may not exist).
//! - `sent`: the send is being attempted now (`sent_at` is what `resume(sent_at_ms=...)` needs).
//! - `acknowledged`: the broker answered with its exchange order id.
//! - `final`: filled, cancelled, rejected or expired.
//!
//! An `intent`/`sent` row after a restart is *unresolved*: the caller must look it up at the
//! broker by client order id (the Python client's `resume()`) before sending anything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, Row, Savepoint, params};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{OrderSide, OrderStatus, TimestampNs};

/// Written to `meta.application`; a database without it is not a rustybt journal.
pub const APPLICATION_ID: &str = "rustybt-journal";
/// The schema this build writes. Older journals are migrated; newer ones are refused.
pub const SCHEMA_VERSION: i64 = 8;
/// Longest client order id Binance accepts.
pub const MAX_CLIENT_ORDER_ID_LEN: usize = 36;
/// How many algorithm state snapshots are kept (the newest).
pub const KEPT_ALGO_STATES: i64 = 10;
/// Prepared statements kept per connection (the journal has fewer distinct ones).
const STATEMENT_CACHE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the journal {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path} is not a rustybt journal ({detail})")]
    NotAJournal { path: PathBuf, detail: String },
    #[error(
        "the journal {path} has schema version {found}, newer than this rustybt supports ({supported}); use a newer rustybt"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("journal database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("invalid order intent {client_order_id}: {reason}")]
    InvalidIntent {
        client_order_id: String,
        reason: String,
    },
    #[error("client order id {0} is already in the journal; ids are never reused")]
    DuplicateClientOrderId(String),
    #[error("unknown client order id {0}")]
    UnknownOrder(String),
    #[error("order {client_order_id}: {reason}")]
    InvalidTransition {
        client_order_id: String,
        reason: String,
    },
    #[error("invalid fill {trade_id} of order {client_order_id}: {reason}")]
    InvalidFill {
        client_order_id: String,
        trade_id: String,
        reason: String,
    },
    #[error(
        "fill {trade_id} of order {client_order_id} was replayed with different values (journal: {journal}; now: {replayed})"
    )]
    FillConflict {
        client_order_id: String,
        trade_id: String,
        journal: String,
        replayed: String,
    },
    #[error(
        "invalid prefix `{0}`: use 1 or more of A-Z a-z 0-9 _ - (the whole id must fit 36 characters)"
    )]
    InvalidPrefix(String),
    #[error(
        "a position difference in {0} cannot be adopted: no strategy of the book holds {0}, so it \
         is no strategy's drift (sell or move it at the exchange, or hand it to a strategy)"
    )]
    Unattributable(String),
    #[error("invalid run: {0}")]
    InvalidRun(String),
    #[error("decimal overflow while {0}")]
    Overflow(&'static str),
    #[error("corrupt journal row: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// How the order is priced at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::Stop => "stop",
            OrderType::StopLimit => "stop_limit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "market" => OrderType::Market,
            "limit" => OrderType::Limit,
            "stop" => OrderType::Stop,
            "stop_limit" => OrderType::StopLimit,
            _ => return None,
        })
    }
}

/// Time in force as sent to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
    Day,
}

impl TimeInForce {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
            TimeInForce::Day => "day",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "gtc" => TimeInForce::Gtc,
            "ioc" => TimeInForce::Ioc,
            "fok" => TimeInForce::Fok,
            "day" => TimeInForce::Day,
            _ => return None,
        })
    }
}

/// Where an order is in the journal's own life cycle (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    Intent,
    Sent,
    Acknowledged,
    Final,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Intent => "intent",
            IntentState::Sent => "sent",
            IntentState::Acknowledged => "acknowledged",
            IntentState::Final => "final",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "intent" => IntentState::Intent,
            "sent" => IntentState::Sent,
            "acknowledged" => IntentState::Acknowledged,
            "final" => IntentState::Final,
            _ => return None,
        })
    }
}

/// Parses the engine's status words (`OrderStatus::as_str`).
pub fn parse_status(text: &str) -> Option<OrderStatus> {
    Some(match text {
        "new" => OrderStatus::New,
        "accepted" => OrderStatus::Accepted,
        "triggered" => OrderStatus::Triggered,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "filled" => OrderStatus::Filled,
        "cancelled" => OrderStatus::Cancelled,
        "rejected" => OrderStatus::Rejected,
        "expired" => OrderStatus::Expired,
        _ => return None,
    })
}

pub fn parse_side(text: &str) -> Option<OrderSide> {
    match text {
        "buy" => Some(OrderSide::Buy),
        "sell" => Some(OrderSide::Sell),
        _ => None,
    }
}

const FEED_MARK: &str = "feed_last_close";

/// What the algorithm asked for, written before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderIntent {
    /// From [`Journal::next_client_order_id`]; `^[A-Za-z0-9_-]{1,36}$`.
    pub client_order_id: String,
    /// The broker's symbol, e.g. `BTC/USDT`.
    pub symbol: String,
    pub side: OrderSide,
    /// Positive; the side carries the direction.
    pub quantity: Decimal,
    pub order_type: OrderType,
    /// Required for limit and stop-limit orders, absent otherwise.
    pub limit_price: Option<Decimal>,
    /// Required for stop and stop-limit orders, absent otherwise.
    pub stop_price: Option<Decimal>,
    pub time_in_force: TimeInForce,
    pub created_at: TimestampNs,
}

impl OrderIntent {
    /// Checks the intent on its own: id, quantity, prices against the order type.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| JournalError::InvalidIntent {
            client_order_id: self.client_order_id.clone(),
            reason: reason.to_string(),
        };
        if !is_valid_client_id(&self.client_order_id) {
            return Err(invalid(
                "the client order id must be 1 to 36 characters of A-Z a-z 0-9 _ -",
            ));
        }
        if self.symbol.trim().is_empty() {
            return Err(invalid("the symbol is empty"));
        }
        if self.quantity <= Decimal::ZERO {
            return Err(invalid(&format!(
                "quantity must be positive, got {}",
                self.quantity
            )));
        }
        let needs_limit = matches!(self.order_type, OrderType::Limit | OrderType::StopLimit);
        let needs_stop = matches!(self.order_type, OrderType::Stop | OrderType::StopLimit);
        let kind = self.order_type.as_str();
        for (needed, price, name) in [
            (needs_limit, self.limit_price, "limit"),
            (needs_stop, self.stop_price, "stop"),
        ] {
            match (needed, price) {
                (true, None) => {
                    return Err(invalid(&format!("a {kind} order needs a {name} price")));
                }
                (false, Some(_)) => {
                    return Err(invalid(&format!("a {kind} order has no {name} price")));
                }
                (true, Some(price)) if price <= Decimal::ZERO => {
                    return Err(invalid(&format!(
                        "{name} price must be positive, got {price}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_valid_strategy_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ORDER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An order as the journal knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournaledOrder {
    pub client_order_id: String,
    pub run_id: i64,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub order_type: OrderType,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub time_in_force: TimeInForce,
    pub created_at: TimestampNs,
    pub state: IntentState,
    /// When the send was (last) attempted: the `sent_at_ms` for `resume()`.
    pub sent_at: Option<TimestampNs>,
    pub exchange_id: Option<String>,
    pub acked_at: Option<TimestampNs>,
    /// The last status the broker reported (`OrderStatus::as_str`).
    pub status: Option<String>,
    /// Cumulative filled quantity as the broker last reported it.
    pub reported_filled: Decimal,
    /// Σ of the journaled fills of this order.
    pub fills_quantity: Decimal,
    pub reason: Option<String>,
    pub updated_at: TimestampNs,
    /// The book's strategy that placed it; None in a single-algorithm session.
    pub strategy: Option<String>,
}

impl JournaledOrder {
    pub fn order_side(&self) -> OrderSide {
        if self.side == "buy" {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        }
    }

    /// Filled so far: the larger of what the broker reported and what the fills add up to.
    pub fn filled(&self) -> Decimal {
        self.reported_filled.max(self.fills_quantity)
    }

    /// Quantity still able to fill (0 once final).
    pub fn remaining(&self) -> Decimal {
        if self.state == IntentState::Final {
            Decimal::ZERO
        } else {
            (self.quantity - self.filled()).max(Decimal::ZERO)
        }
    }

    /// The time to give `resume(sent_at_ms=...)`: the send attempt, or the intent's creation
    /// when the process died before marking it sent (the order may still have gone out).
    pub fn resume_from(&self) -> TimestampNs {
        self.sent_at.unwrap_or(self.created_at)
    }
}

/// A status report from the broker for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdate {
    pub client_order_id: String,
    pub time: TimestampNs,
    pub status: OrderStatus,
    /// Cumulative filled quantity (never decreases).
    pub filled_quantity: Decimal,
    /// The exchange's id; acknowledges the order if it was not yet.
    pub exchange_id: Option<String>,
    pub reason: Option<String>,
}

/// One execution reported by the broker.
/// A journaled fill with its row id and the book's strategy whose order it filled (`None`:
/// one algorithm's, or an order no strategy placed).
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledFill {
    pub id: i64,
    pub strategy: Option<String>,
    pub symbol: String,
    pub side: OrderSide,
    pub record: FillRecord,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillRecord {
    pub client_order_id: String,
    /// The exchange's trade id; (client_order_id, trade_id) is unique.
    pub trade_id: String,
    pub quantity: Decimal,
    pub price: Decimal,
    /// Never negative.
    pub fee: Decimal,
    /// The asset the fee was charged in; `None` means the book's cash currency.
    pub fee_asset: Option<String>,
    pub time: TimestampNs,
}

/// What a session starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    pub started_at: TimestampNs,
    pub algorithm: String,
    pub broker: String,
    pub symbols: Vec<String>,
    /// The currency of the book's cash, e.g. `USDT`. Must stay the same across runs.
    pub cash_currency: String,
    /// Cash of the book at its very first run; later runs continue from the journal and
    /// ignore it (reconciliation syncs with the broker).
    pub initial_cash: Decimal,
    /// The strategy ids of a book (`--portfolio`); `None` for one algorithm.
    pub strategies: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub started_at: TimestampNs,
    pub algorithm: String,
    pub broker: String,
    pub symbols: Vec<String>,
    pub stopped_at: Option<TimestampNs>,
    pub stop_reason: Option<String>,
    /// The strategy ids of a book (schema v5); `None` for one algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategies: Option<Vec<String>>,
}

/// Positions and cash derived from the journal: genesis cash, then every fill and every
/// reconciliation adjustment in order.
///
/// - A buy adds `quantity` to the symbol's position and takes `quantity × price` from cash; a
///   sell the opposite.
/// - A fee in the cash currency (or with no asset) is taken from cash; a fee in the symbol's
///   base asset (`BTC` of `BTC/USDT`, as Binance charges buys) is taken from the position;
///   any other asset is summed in `other_fees`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Book {
    pub cash_currency: String,
    pub cash: Decimal,
    pub positions: BTreeMap<String, Decimal>,
    pub other_fees: BTreeMap<String, Decimal>,
}

impl Book {
    pub fn new(cash_currency: &str, cash: Decimal) -> Self {
        Book {
            cash_currency: cash_currency.to_string(),
            cash,
            positions: BTreeMap::new(),
            other_fees: BTreeMap::new(),
        }
    }

    pub fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Applies one fill with checked arithmetic.
    pub fn apply_fill(
        &mut self,
        symbol: &str,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        fee_asset: Option<&str>,
    ) -> Result<()> {
        let value = quantity
            .checked_mul(price)
            .ok_or(JournalError::Overflow("valuing a fill"))?;
        let (delta_position, delta_cash) = match side {
            OrderSide::Buy => (quantity, -value),
            OrderSide::Sell => (-quantity, value),
        };
        self.add_position(symbol, delta_position)?;
        self.cash = self
            .cash
            .checked_add(delta_cash)
            .ok_or(JournalError::Overflow("moving cash"))?;
        if fee.is_zero() {
            return Ok(());
        }
        let base = symbol.split('/').next().unwrap_or(symbol);
        match fee_asset {
            None => self.pay_cash_fee(fee)?,
            Some(asset) if asset == self.cash_currency => self.pay_cash_fee(fee)?,
            Some(asset) if symbol.contains('/') && asset == base => {
                self.add_position(symbol, -fee)?
            }
            Some(asset) => {
                let entry = self.other_fees.entry(asset.to_string()).or_default();
                *entry = entry
                    .checked_add(fee)
                    .ok_or(JournalError::Overflow("summing fees"))?;
            }
        }
        Ok(())
    }

    fn pay_cash_fee(&mut self, fee: Decimal) -> Result<()> {
        self.cash = self
            .cash
            .checked_sub(fee)
            .ok_or(JournalError::Overflow("paying a fee"))?;
        Ok(())
    }

    fn add_position(&mut self, symbol: &str, delta: Decimal) -> Result<()> {
        let entry = self.positions.entry(symbol.to_string()).or_default();
        *entry = entry
            .checked_add(delta)
            .ok_or(JournalError::Overflow("changing a position"))?;
        if entry.is_zero() {
            self.positions.remove(symbol);
        }
        Ok(())
    }

    /// Applies a reconciliation adjustment.
    pub fn apply_adjustment(&mut self, adjustment: &BookAdjustment) -> Result<()> {
        match &adjustment.target {
            AdjustmentTarget::Position(symbol) => self.add_position(symbol, adjustment.delta),
            AdjustmentTarget::Cash => {
                self.cash = self
                    .cash
                    .checked_add(adjustment.delta)
                    .ok_or(JournalError::Overflow("adjusting cash"))?;
                Ok(())
            }
        }
    }

    /// Positions with `0` dropped and decimals normalized, for comparisons.
    fn normalized(&self) -> Book {
        Book {
            cash_currency: self.cash_currency.clone(),
            cash: self.cash.normalize(),
            positions: self
                .positions
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(s, q)| (s.clone(), q.normalize()))
                .collect(),
            other_fees: self
                .other_fees
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(s, q)| (s.clone(), q.normalize()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum AdjustmentTarget {
    Position(String),
    Cash,
}

/// One part of an adopted adjustment in a book on one exchange account (schema v8): a
/// strategy's (`Some`) or the book's reserve (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdjustmentShare {
    pub adjustment_id: i64,
    pub strategy: Option<String>,
    pub target: AdjustmentTarget,
    pub delta: Decimal,
    /// The last fill row journaled before the adjustment (its place among the fills).
    pub after_fill_id: i64,
}

/// Who gets an adopted adjustment in a book, by a rule of the journal's facts alone:
/// - a cash difference goes to the book's reserve (its unallocated cash): cash no order of any
///   strategy explains (a deposit, a withdrawal, a fee charged outside an order) is no
///   strategy's profit or loss;
/// - a position difference in a symbol is split between the strategies holding it, in
///   proportion to their positions (`holders`, non-zero), by the netting rule
///   ([`crate::portfolio::netting::apportion`]: rounded down to the finest decimals of the
///   positions and the difference, leftover units to the largest remainders, first among
///   equals);
/// - a position difference in a symbol no strategy holds has no owner: `None` (the caller
///   refuses to adopt it).
pub fn attribute(
    adjustment: &BookAdjustment,
    holders: &BTreeMap<String, Decimal>,
) -> Option<Vec<(Option<String>, Decimal)>> {
    match &adjustment.target {
        AdjustmentTarget::Cash => Some(vec![(None, adjustment.delta)]),
        AdjustmentTarget::Position(_) => {
            let held: Vec<(&String, Decimal)> = holders
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(s, q)| (s, q.abs()))
                .collect();
            if held.is_empty() {
                return None;
            }
            let weights: Vec<Decimal> = held.iter().map(|(_, q)| *q).collect();
            let dp = weights
                .iter()
                .map(|q| q.scale())
                .chain([adjustment.delta.scale()])
                .max()
                .unwrap_or(0);
            let shares = crate::portfolio::netting::apportion(&weights, adjustment.delta.abs(), dp);
            Some(
                held.iter()
                    .zip(shares)
                    .filter(|(_, share)| !share.is_zero())
                    .map(|((s, _), share)| {
                        let signed = match adjustment.delta.is_sign_negative() {
                            true => -share,
                            false => share,
                        };
                        (Some((*s).clone()), signed)
                    })
                    .collect(),
            )
        }
    }
}

/// A correction of the book adopted from the broker (reconciliation policy `sync`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookAdjustment {
    pub target: AdjustmentTarget,
    /// Added to the position or cash (broker − engine).
    pub delta: Decimal,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SnapshotCheck {
    /// No snapshot yet.
    NoSnapshot,
    /// The fills and adjustments up to the snapshot give the snapshot's book.
    Matches,
    /// They do not: the engine's book and the journal disagreed when the snapshot was taken.
    Mismatch { snapshot: Book, derived: Book },
}

/// The algorithm's state as the bridge serialized it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlgoState {
    pub time: TimestampNs,
    /// e.g. `pickle`, `json`.
    pub format: String,
    pub data: Vec<u8>,
    /// `now − time` at recovery.
    pub age_ns: i64,
    /// Older than the maximum age given to `recover`: warn before using it.
    pub stale: bool,
}

/// A breaker trip as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TripRecord {
    pub time: TimestampNs,
    /// `drawdown`, `daily_loss`, `order_rate`, `error_rate`, `manual`, `halt_file`, `reconciliation`.
    pub breaker: String,
    pub reason: String,
    /// The values that tripped it (JSON object).
    pub detail: serde_json::Value,
}

/// Everything a restart needs.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub last_run: Option<RunInfo>,
    /// State `intent` or `sent`: look each up at the broker by client order id (`resume()`)
    /// before sending anything else. Oldest first.
    pub unresolved: Vec<JournaledOrder>,
    /// Acknowledged and not final. Oldest first.
    pub open_orders: Vec<JournaledOrder>,
    /// Every journaled fill, per client order id, in journal order.
    pub fills: BTreeMap<String, Vec<FillRecord>>,
    /// Genesis + fills + adjustments.
    pub book: Book,
    pub snapshot: SnapshotCheck,
    pub algo_state: Option<AlgoState>,
    /// The active trip (a tripped breaker stays tripped until reset).
    pub breaker_trip: Option<TripRecord>,
    /// Breaker baselines (e.g. peak equity) by name.
    pub breaker_marks: BTreeMap<String, (TimestampNs, Decimal)>,
    /// Id of the last journaled trade, per symbol (continue `fetch_fills` after it).
    pub last_trade_ids: BTreeMap<String, String>,
}

/// One row of `control_actions`.
pub struct ControlRecord<'a> {
    pub time: TimestampNs,
    pub run_id: i64,
    pub token: &'a str,
    pub action: &'a str,
    pub params: &'a serde_json::Value,
    pub status: u16,
    pub result: &'a serde_json::Value,
}

const SCHEMA_V1: &str = r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    broker TEXT NOT NULL,
    symbols TEXT NOT NULL,              -- JSON array
    stopped_at INTEGER,
    stop_reason TEXT
);
CREATE TABLE sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next INTEGER NOT NULL
);
INSERT INTO sequence (id, next) VALUES (1, 1);
CREATE TABLE intents (
    client_order_id TEXT PRIMARY KEY,   -- UNIQUE: never reused
    run_id INTEGER NOT NULL REFERENCES runs(id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity TEXT NOT NULL,             -- Decimal
    order_type TEXT NOT NULL,
    limit_price TEXT,
    stop_price TEXT,
    tif TEXT NOT NULL,
    created_at INTEGER NOT NULL,        -- ns UTC
    state TEXT NOT NULL CHECK (state IN ('intent', 'sent', 'acknowledged', 'final')),
    sent_at INTEGER,
    exchange_id TEXT,
    acked_at INTEGER,
    status TEXT,
    reported_filled TEXT NOT NULL DEFAULT '0',
    reason TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX intents_state ON intents(state);
CREATE TABLE order_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL REFERENCES intents(client_order_id),
    time INTEGER NOT NULL,
    event TEXT NOT NULL,                -- sent | ack | status
    status TEXT,
    filled_quantity TEXT,
    exchange_id TEXT,
    reason TEXT
);
CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL REFERENCES intents(client_order_id),
    trade_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT NOT NULL,
    fee TEXT NOT NULL,
    fee_asset TEXT,
    time INTEGER NOT NULL,
    UNIQUE (client_order_id, trade_id)
);
CREATE TABLE adjustments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    target TEXT NOT NULL CHECK (target IN ('position', 'cash')),
    name TEXT NOT NULL,                 -- symbol, or the cash currency
    delta TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE book_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    book TEXT NOT NULL,                 -- JSON, decimals as strings
    last_fill_id INTEGER NOT NULL,
    last_adjustment_id INTEGER NOT NULL
);
CREATE TABLE algo_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    format TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE breaker_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('trip', 'reset')),
    breaker TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL                -- JSON
);
CREATE TABLE breaker_marks (
    name TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE reconciliations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    report TEXT NOT NULL                -- JSON
);
"#;

/// Version 2: the operators' actions through the control API (who, what, the answer).
const SCHEMA_V2: &str = r#"
CREATE TABLE control_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    run_id INTEGER REFERENCES runs(id),
    token TEXT NOT NULL,                -- the API token's name
    action TEXT NOT NULL,               -- halt | resume | reconcile | flatten
    params TEXT NOT NULL,               -- JSON
    status INTEGER NOT NULL,            -- the HTTP status answered
    result TEXT NOT NULL                -- JSON
);
"#;

/// Version 3: a paper session's open orders as the engine held them at the last checkpoint,
/// so a restart after a kill takes them back instead of losing them with the process.
const SCHEMA_V3: &str = r#"
CREATE TABLE paper_orders (
    client_order_id TEXT PRIMARY KEY REFERENCES intents(client_order_id),
    engine_order TEXT NOT NULL          -- JSON, decimals as strings
);
"#;

/// Version 4: the strategy of a book (`--portfolio`) each order and fill belongs to; NULL in a
/// single-algorithm session and in every row written before the migration.
const SCHEMA_V4: &str = r#"
ALTER TABLE intents ADD COLUMN strategy TEXT;
ALTER TABLE fills ADD COLUMN strategy TEXT;
CREATE INDEX fills_strategy ON fills(strategy);
"#;

/// Version 5: a book's checkpoint. Each strategy's book snapshot, algorithm state and open
/// paper orders carry its id (NULL: the account's snapshot, or one algorithm's); the book's
/// own state (rebalancing, units, limits) in `book_states`; a run names the strategies it
/// hosted (NULL: one algorithm), so a state folder is never reopened by the other kind.
const SCHEMA_V5: &str = r#"
ALTER TABLE runs ADD COLUMN strategies TEXT;
ALTER TABLE book_snapshots ADD COLUMN strategy TEXT;
ALTER TABLE algo_states ADD COLUMN strategy TEXT;
ALTER TABLE paper_orders ADD COLUMN strategy TEXT;
CREATE TABLE book_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    state TEXT NOT NULL                 -- JSON, decimals as strings
);
"#;

/// Version 6: the changes an operator made to a running book through the control API
/// (strategies added and stopped), in order, so a restart rebuilds the book as changed.
const SCHEMA_V6: &str = r#"
CREATE TABLE strategy_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    run_id INTEGER REFERENCES runs(id),
    action TEXT NOT NULL CHECK (action IN ('add', 'stop')),
    strategy TEXT NOT NULL,
    request TEXT NOT NULL,              -- JSON, decimals as strings, as applied
    token TEXT NOT NULL                 -- the API token's name
);
"#;

/// Version 7: a book on one exchange account nets the orders of several strategies into one
/// exchange order: its legs (the strategies that asked, and how much each still wanted from
/// the exchange), and each fill of it split between them (`crate::portfolio::netting`'s rule,
/// applied once when the fill is journaled: the journal is the truth of who got what).
const SCHEMA_V7: &str = r#"
CREATE TABLE order_legs (
    client_order_id TEXT NOT NULL REFERENCES intents(client_order_id),
    strategy TEXT NOT NULL,
    quantity TEXT NOT NULL,             -- Decimal
    PRIMARY KEY (client_order_id, strategy)
);
CREATE TABLE fill_shares (
    fill_id INTEGER NOT NULL REFERENCES fills(id),
    strategy TEXT NOT NULL,
    quantity TEXT NOT NULL,             -- Decimal
    fee TEXT NOT NULL,                  -- Decimal, in the fill's fee asset
    PRIMARY KEY (fill_id, strategy)
);
"#;

/// Version 8: who got each reconciliation adjustment a book on one exchange account adopted
/// (`sync`): a strategy, or the book's reserve (`strategy` NULL). Written in the adjustment's
/// own transaction ([`Journal::record_adjustments`]), so the account stays the sum of the
/// strategies and the reserve across any crash.
const SCHEMA_V8: &str = r#"
CREATE TABLE adjustment_shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    adjustment_id INTEGER NOT NULL REFERENCES adjustments(id),
    strategy TEXT,                      -- NULL: the book's reserve (unallocated cash)
    delta TEXT NOT NULL,                -- Decimal, in the adjustment's unit
    after_fill_id INTEGER NOT NULL      -- the last fill journaled before it
);
"#;

/// What versions 2, 3, 4… add, in order.
const LATER_SCHEMAS: [&str; 7] = [
    SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
];

/// The journal: one SQLite connection. Several `Journal`s may be open on the same file (WAL
/// lets them; writes wait up to 10 s for each other).
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    /// Writes join one open transaction until [`Journal::commit_group`] (see `set_grouped`).
    grouped: bool,
}

/// Statements prepared once per connection: a session runs the same few thousands of times,
/// and parsing them again was a quarter of a paper replay's time.
trait Cached {
    fn cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'_>>;
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.cached(sql)?.execute(params)
    }
    fn row<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.cached(sql)?.query_row(params, f)
    }
}

impl Cached for Connection {
    fn cached(&self, sql: &str) -> rusqlite::Result<CachedStatement<'_>> {
        self.prepare_cached(sql)
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

fn dec_text(value: Decimal) -> String {
    value.to_string()
}

fn dec_opt(value: Option<Decimal>) -> Option<String> {
    value.map(dec_text)
}

fn parse_dec(text: &str, what: &str) -> Result<Decimal> {
    text.parse::<Decimal>()
        .map_err(|e| JournalError::Corrupt(format!("{what} `{text}` is not a decimal: {e}")))
}

impl Journal {
    /// Opens (creating or migrating) the journal at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|source| JournalError::Open {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, path)
    }

    /// An in-memory journal (tests, dry runs): not crash-safe.
    pub fn open_in_memory() -> Result<Journal> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, PathBuf::from(":memory:"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether each commit waits for the disk (`synchronous = FULL`, the default) or only
    /// for the operating system (`NORMAL`). Both survive a killed process (the commit is in
    /// the OS's hands before the call returns); under WAL, `NORMAL` loses at most the last
    /// commits to a power loss or an OS crash, never consistency (the WAL is replayed up to
    /// its last whole commit). A paper session takes `NORMAL`: what it could lose is re-derived
    /// from the feed on restart, nothing left the process. An exchange session keeps `FULL`:
    /// an order it sent must be journaled on the disk first.
    pub fn set_durable(&mut self, durable: bool) -> Result<()> {
        let mode = if durable { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", mode)?;
        Ok(())
    }

    /// Grouped: every write joins one transaction left open until [`Journal::commit_group`],
    /// instead of committing on its own. For a paper session only, which commits each group
    /// with a checkpoint: a killed process then loses the open group, and with it everything
    /// since the last checkpoint, which the restart re-derives from the feed (nothing left the
    /// process). Writes keep their atomicity inside the group (each is a savepoint).
    pub fn set_grouped(&mut self, grouped: bool) -> Result<()> {
        if !grouped {
            self.commit_group()?;
        }
        self.grouped = grouped;
        Ok(())
    }

    /// Commits the open group, if any.
    pub fn commit_group(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Drops the open group's writes (a session whose journal failed: the file keeps its last
    /// committed checkpoint, never writes past it).
    pub fn rollback_group(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Whether a group holds writes not yet committed.
    pub fn group_open(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// One write's transaction: its own, or a savepoint inside the open group.
    fn tx(&mut self) -> Result<Savepoint<'_>> {
        if self.grouped && self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
        }
        Ok(self.conn.savepoint()?)
    }

    #[cfg(test)]
    pub(crate) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Journal> {
        let named = path.clone();
        let not_a_journal = |detail: String| JournalError::NotAJournal {
            path: named.clone(),
            detail,
        };
        // A file that is not SQLite fails on the first read.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| not_a_journal(e.to_string()))?;
        let tables: Vec<String> = {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(|e| not_a_journal(e.to_string()))?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(|e| not_a_journal(e.to_string()))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(|e| not_a_journal(e.to_string()))?
        };
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(|e| not_a_journal(e.to_string()))?;
        if path.as_os_str() != ":memory:" && !mode.eq_ignore_ascii_case("wal") {
            return Err(not_a_journal(format!(
                "cannot switch to WAL mode (got `{mode}`)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut journal = Journal {
            conn,
            path,
            grouped: false,
        };
        if tables.is_empty() {
            journal.create_schema()?;
        } else if !tables.iter().any(|t| t == "meta") {
            return Err(not_a_journal(format!(
                "it has tables ({}) but no rustybt metadata",
                tables.join(", ")
            )));
        } else {
            let app: Option<String> = journal
                .conn
                .row(
                    "SELECT value FROM meta WHERE key = 'application'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if app.as_deref() != Some(APPLICATION_ID) {
                return Err(not_a_journal(format!(
                    "its application is {:?}, not `{APPLICATION_ID}`",
                    app.unwrap_or_default()
                )));
            }
            let version: String = journal
                .conn
                .row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| not_a_journal("it has no schema version".into()))?;
            let version: i64 = version.parse().map_err(|_| {
                not_a_journal(format!("schema version `{version}` is not a number"))
            })?;
            if version > SCHEMA_VERSION {
                return Err(JournalError::NewerSchema {
                    path: journal.path.clone(),
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            if version < 1 {
                return Err(not_a_journal(format!(
                    "schema version {version} is invalid"
                )));
            }
            journal.migrate(version)?;
        }
        Ok(journal)
    }

    fn create_schema(&mut self) -> Result<()> {
        let tx = self.tx()?;
        tx.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")?;
        tx.exec(
            "INSERT INTO meta (key, value) VALUES ('application', ?1), ('schema_version', ?2)",
            params![APPLICATION_ID, SCHEMA_VERSION.to_string()],
        )?;
        tx.execute_batch(SCHEMA_V1)?;
        for schema in LATER_SCHEMAS {
            tx.execute_batch(schema)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Brings an older schema up to [`SCHEMA_VERSION`], one version per transaction.
    fn migrate(&mut self, from: i64) -> Result<()> {
        debug_assert!(from <= SCHEMA_VERSION);
        for (version, schema) in (2..).zip(LATER_SCHEMAS) {
            if from < version {
                let tx = self.tx()?;
                tx.execute_batch(schema)?;
                tx.exec(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                    params![version.to_string()],
                )?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    /// Schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        let text: String = self.conn.row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        text.parse()
            .map_err(|_| JournalError::Corrupt(format!("schema version `{text}`")))
    }

    // ---- runs -------------------------------------------------------------------------

    /// Records the start of a session and returns its run id. The first run fixes the book's
    /// cash currency and initial cash.
    pub fn start_run(&mut self, run: &RunStart) -> Result<i64> {
        if run.cash_currency.trim().is_empty() {
            return Err(JournalError::InvalidRun(
                "the cash currency is empty".into(),
            ));
        }
        if run.algorithm.trim().is_empty() || run.broker.trim().is_empty() {
            return Err(JournalError::InvalidRun(
                "the algorithm path and the broker id must not be empty".into(),
            ));
        }
        let tx = self.tx()?;
        let currency: Option<String> = tx
            .row(
                "SELECT value FROM meta WHERE key = 'cash_currency'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match currency {
            None => {
                tx.exec(
                    "INSERT INTO meta (key, value) VALUES ('cash_currency', ?1), ('initial_cash', ?2)",
                    params![run.cash_currency, dec_text(run.initial_cash)],
                )?;
            }
            Some(existing) if existing != run.cash_currency => {
                return Err(JournalError::InvalidRun(format!(
                    "the journal's cash currency is {existing}, this run says {}; use a new state directory for another currency",
                    run.cash_currency
                )));
            }
            Some(_) => {}
        }
        let symbols = serde_json::to_string(&run.symbols)
            .map_err(|e| JournalError::InvalidRun(e.to_string()))?;
        let strategies = run
            .strategies
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| JournalError::InvalidRun(e.to_string()))?;
        tx.exec(
            "INSERT INTO runs (started_at, algorithm, broker, symbols, strategies)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                run.started_at,
                run.algorithm,
                run.broker,
                symbols,
                strategies
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Records the end of a session.
    pub fn end_run(&mut self, run_id: i64, time: TimestampNs, reason: &str) -> Result<()> {
        let changed = self.conn.exec(
            "UPDATE runs SET stopped_at = ?2, stop_reason = ?3 WHERE id = ?1",
            params![run_id, time, reason],
        )?;
        if changed == 0 {
            return Err(JournalError::InvalidRun(format!("no run with id {run_id}")));
        }
        Ok(())
    }

    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, started_at, algorithm, broker, symbols, stopped_at, stop_reason, strategies
             FROM runs ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (id, started_at, algorithm, broker, symbols, stopped_at, stop_reason, strategies) =
                row?;
            let symbols: Vec<String> = serde_json::from_str(&symbols)
                .map_err(|e| JournalError::Corrupt(format!("symbols of run {id}: {e}")))?;
            let strategies: Option<Vec<String>> = strategies
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| JournalError::Corrupt(format!("strategies of run {id}: {e}")))?;
            runs.push(RunInfo {
                id,
                started_at,
                algorithm,
                broker,
                symbols,
                stopped_at,
                stop_reason,
                strategies,
            });
        }
        Ok(runs)
    }

    fn current_run(tx: &Connection) -> Result<i64> {
        tx.row("SELECT MAX(id) FROM runs", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .ok_or_else(|| JournalError::InvalidRun("no run started: call start_run first".into()))
    }

    // ---- client order ids -------------------------------------------------------------

    /// The next client order id, `rbt-<prefix>-<seq>`. The sequence is one counter for the
    /// whole journal, committed before this returns: an id is never handed out twice, also
    /// across restarts and prefixes.
    pub fn next_client_order_id(&mut self, prefix: &str) -> Result<String> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(JournalError::InvalidPrefix(prefix.to_string()));
        }
        let tx = self.tx()?;
        let seq: i64 = tx.row("SELECT next FROM sequence WHERE id = 1", [], |r| r.get(0))?;
        let id = format!("rbt-{prefix}-{seq}");
        if id.len() > MAX_CLIENT_ORDER_ID_LEN {
            return Err(JournalError::InvalidPrefix(prefix.to_string()));
        }
        tx.exec(
            "UPDATE sequence SET next = ?1 WHERE id = 1",
            params![
                seq.checked_add(1)
                    .ok_or(JournalError::Overflow("the order sequence"))?
            ],
        )?;
        tx.commit()?;
        Ok(id)
    }

    // ---- orders -----------------------------------------------------------------------

    /// Writes the intent (state `intent`) and commits, before anything is sent.
    pub fn record_intent(&mut self, intent: &OrderIntent) -> Result<()> {
        self.record_intent_for(intent, None)
    }

    /// [`Journal::record_intent`] for the strategy `strategy` of a book: the order and its
    /// fills carry its id (`^[A-Za-z0-9_-]{1,64}$`, as in the portfolio file).
    pub fn record_intent_for(
        &mut self,
        intent: &OrderIntent,
        strategy: Option<&str>,
    ) -> Result<()> {
        self.record_intent_with_legs(intent, strategy, &[])
    }

    /// [`Journal::record_intent`] of one exchange order a book netted from the orders of
    /// several strategies: `legs` are (strategy, quantity), summing to the order's quantity;
    /// every fill of it is split between them when it is journaled ([`Journal::record_fill`]).
    pub fn record_intent_with_legs(
        &mut self,
        intent: &OrderIntent,
        strategy: Option<&str>,
        legs: &[(String, Decimal)],
    ) -> Result<()> {
        intent.validate()?;
        let invalid = |reason: String| JournalError::InvalidIntent {
            client_order_id: intent.client_order_id.clone(),
            reason,
        };
        if !legs.is_empty() && legs.iter().map(|(_, q)| *q).sum::<Decimal>() != intent.quantity {
            return Err(invalid(format!(
                "its legs sum to {}, not its quantity {}",
                legs.iter().map(|(_, q)| *q).sum::<Decimal>(),
                intent.quantity
            )));
        }
        if let Some(bad) = legs.iter().find(|(_, q)| *q <= Decimal::ZERO) {
            return Err(invalid(format!(
                "leg `{}` is not positive: {}",
                bad.0, bad.1
            )));
        }
        if let Some(id) = strategy
            .into_iter()
            .chain(legs.iter().map(|(id, _)| id.as_str()))
            .find(|id| !is_valid_strategy_id(id))
        {
            return Err(JournalError::InvalidIntent {
                client_order_id: intent.client_order_id.clone(),
                reason: format!(
                    "the strategy id `{id}` must be 1 to 64 characters of A-Z a-z 0-9 _ -"
                ),
            });
        }
        let tx = self.tx()?;
        let run_id = Self::current_run(&tx)?;
        let exists: bool = tx
            .row(
                "SELECT 1 FROM intents WHERE client_order_id = ?1",
                params![intent.client_order_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(JournalError::DuplicateClientOrderId(
                intent.client_order_id.clone(),
            ));
        }
        tx.exec(
            "INSERT INTO intents (client_order_id, run_id, symbol, side, quantity, order_type,
                limit_price, stop_price, tif, created_at, state, updated_at, strategy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'intent', ?10, ?11)",
            params![
                intent.client_order_id,
                run_id,
                intent.symbol,
                intent.side.as_str(),
                dec_text(intent.quantity),
                intent.order_type.as_str(),
                dec_opt(intent.limit_price),
                dec_opt(intent.stop_price),
                intent.time_in_force.as_str(),
                intent.created_at,
                strategy,
            ],
        )?;
        for (leg, quantity) in legs {
            tx.exec(
                "INSERT INTO order_legs (client_order_id, strategy, quantity) VALUES (?1, ?2, ?3)",
                params![intent.client_order_id, leg, dec_text(*quantity)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The legs of a netted order (strategy, quantity, filled so far), in the order they were
    /// journaled; empty for any other order.
    pub fn order_legs(&self, client_order_id: &str) -> Result<Vec<(String, Decimal, Decimal)>> {
        legs_of(&self.conn, client_order_id)
    }

    fn load_order_tx(tx: &Connection, client_order_id: &str) -> Result<JournaledOrder> {
        let mut stmt = tx.prepare_cached(ORDER_SELECT_ONE)?;
        let order = stmt
            .query_row(params![client_order_id], raw_order)
            .optional()?
            .ok_or_else(|| JournalError::UnknownOrder(client_order_id.to_string()))?;
        finish_order(tx, order)
    }

    /// One order by client id.
    pub fn order(&self, client_order_id: &str) -> Result<JournaledOrder> {
        Self::load_order_tx(&self.conn, client_order_id)
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> Result<Vec<JournaledOrder>> {
        self.orders_where("1 = 1")
    }

    /// Orders acknowledged and not final (open at the broker), oldest first; by the state index.
    pub fn acknowledged_orders(&self) -> Result<Vec<JournaledOrder>> {
        self.orders_where("state = 'acknowledged'")
    }

    fn orders_where(&self, condition: &str) -> Result<Vec<JournaledOrder>> {
        let sql = format!("{ORDER_SELECT} WHERE {condition} ORDER BY created_at, rowid");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let raws = stmt
            .query_map([], raw_order)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        raws.into_iter()
            .map(|raw| finish_order(&self.conn, raw))
            .collect()
    }

    /// Marks the send attempt (`intent` → `sent`); call right before the broker call. Calling
    /// it again (a resend under the same id) updates `sent_at`.
    pub fn mark_sent(&mut self, client_order_id: &str, time: TimestampNs) -> Result<()> {
        let tx = self.tx()?;
        let order = Self::load_order_tx(&tx, client_order_id)?;
        if !matches!(order.state, IntentState::Intent | IntentState::Sent) {
            return Err(JournalError::InvalidTransition {
                client_order_id: client_order_id.to_string(),
                reason: format!("cannot be sent: it is already {}", order.state.as_str()),
            });
        }
        tx.exec(
            "UPDATE intents SET state = 'sent', sent_at = ?2, updated_at = ?2 WHERE client_order_id = ?1",
            params![client_order_id, time],
        )?;
        tx.exec(
            "INSERT INTO order_updates (client_order_id, time, event) VALUES (?1, ?2, 'sent')",
            params![client_order_id, time],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The broker acknowledged the order with its exchange id. Repeating the same ack is a
    /// no-op; a different exchange id for the same client id is an error.
    pub fn record_ack(
        &mut self,
        client_order_id: &str,
        exchange_id: &str,
        time: TimestampNs,
    ) -> Result<()> {
        let tx = self.tx()?;
        let order = Self::load_order_tx(&tx, client_order_id)?;
        Self::ack_tx(&tx, &order, exchange_id, time)?;
        tx.commit()?;
        Ok(())
    }

    fn ack_tx(
        tx: &Connection,
        order: &JournaledOrder,
        exchange_id: &str,
        time: TimestampNs,
    ) -> Result<()> {
        if exchange_id.trim().is_empty() {
            return Err(JournalError::InvalidTransition {
                client_order_id: order.client_order_id.clone(),
                reason: "the exchange order id is empty".into(),
            });
        }
        if let Some(existing) = &order.exchange_id {
            if existing != exchange_id {
                return Err(JournalError::InvalidTransition {
                    client_order_id: order.client_order_id.clone(),
                    reason: format!(
                        "acknowledged as exchange order {existing}, now reported as {exchange_id}"
                    ),
                });
            }
            return Ok(());
        }
        let state = if order.state == IntentState::Final {
            "final"
        } else {
            "acknowledged"
        };
        tx.exec(
            "UPDATE intents SET state = ?2, exchange_id = ?3, acked_at = ?4, updated_at = ?4,
                status = COALESCE(status, 'accepted')
             WHERE client_order_id = ?1",
            params![order.client_order_id, state, exchange_id, time],
        )?;
        tx.exec(
            "INSERT INTO order_updates (client_order_id, time, event, exchange_id) VALUES (?1, ?2, 'ack', ?3)",
            params![order.client_order_id, time, exchange_id],
        )?;
        Ok(())
    }

    /// A status report from the broker. Terminal statuses make the order `final`; a final
    /// order cannot reopen and the filled quantity never decreases.
    pub fn record_status(&mut self, update: &OrderUpdate) -> Result<()> {
        let tx = self.tx()?;
        let order = Self::load_order_tx(&tx, &update.client_order_id)?;
        let bad = |reason: String| JournalError::InvalidTransition {
            client_order_id: update.client_order_id.clone(),
            reason,
        };
        if update.filled_quantity < Decimal::ZERO || update.filled_quantity > order.quantity {
            return Err(bad(format!(
                "reported filled quantity {} is outside 0..={}",
                update.filled_quantity, order.quantity
            )));
        }
        if update.filled_quantity < order.reported_filled {
            return Err(bad(format!(
                "reported filled quantity {} is below the {} reported before",
                update.filled_quantity, order.reported_filled
            )));
        }
        if order.state == IntentState::Final && update.status.is_open() {
            return Err(bad(format!(
                "it is final ({}) and cannot become {}",
                order.status.as_deref().unwrap_or("closed"),
                update.status.as_str()
            )));
        }
        if update.status == OrderStatus::Filled && update.filled_quantity != order.quantity {
            return Err(bad(format!(
                "reported filled with {} of {}",
                update.filled_quantity, order.quantity
            )));
        }
        if let Some(exchange_id) = &update.exchange_id {
            Self::ack_tx(&tx, &order, exchange_id, update.time)?;
        }
        let state = if update.status.is_open() {
            if update.exchange_id.is_some() || order.exchange_id.is_some() {
                "acknowledged"
            } else {
                // A status without an exchange id (e.g. a lookup that found nothing new).
                order.state.as_str()
            }
        } else {
            "final"
        };
        tx.exec(
            "UPDATE intents SET state = ?2, status = ?3, reported_filled = ?4, reason = COALESCE(?5, reason),
                updated_at = ?6 WHERE client_order_id = ?1",
            params![
                update.client_order_id,
                state,
                update.status.as_str(),
                dec_text(update.filled_quantity),
                update.reason,
                update.time
            ],
        )?;
        tx.exec(
            "INSERT INTO order_updates (client_order_id, time, event, status, filled_quantity, exchange_id, reason)
             VALUES (?1, ?2, 'status', ?3, ?4, ?5, ?6)",
            params![
                update.client_order_id,
                update.time,
                update.status.as_str(),
                dec_text(update.filled_quantity),
                update.exchange_id,
                update.reason
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records a fill. Returns `true` when it is new, `false` when the same trade was already
    /// journaled (replays are idempotent). A replay with different values, a fill on an
    /// unknown order, or fills beyond the order's quantity are errors.
    pub fn record_fill(&mut self, fill: &FillRecord) -> Result<bool> {
        let invalid = |reason: String| JournalError::InvalidFill {
            client_order_id: fill.client_order_id.clone(),
            trade_id: fill.trade_id.clone(),
            reason,
        };
        if fill.trade_id.trim().is_empty() {
            return Err(invalid("the trade id is empty".into()));
        }
        if fill.quantity <= Decimal::ZERO {
            return Err(invalid(format!(
                "quantity must be positive, got {}",
                fill.quantity
            )));
        }
        if fill.price <= Decimal::ZERO {
            return Err(invalid(format!(
                "price must be positive, got {}",
                fill.price
            )));
        }
        if fill.fee < Decimal::ZERO {
            return Err(invalid(format!(
                "fee must not be negative, got {}",
                fill.fee
            )));
        }
        let tx = self.tx()?;
        let order = Self::load_order_tx(&tx, &fill.client_order_id)?;
        let existing = tx
            .row(
                "SELECT quantity, price, fee, fee_asset FROM fills WHERE client_order_id = ?1 AND trade_id = ?2",
                params![fill.client_order_id, fill.trade_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        if let Some((quantity, price, fee, fee_asset)) = existing {
            let same = parse_dec(&quantity, "quantity")? == fill.quantity
                && parse_dec(&price, "price")? == fill.price
                && parse_dec(&fee, "fee")? == fill.fee
                && fee_asset == fill.fee_asset;
            if same {
                return Ok(false);
            }
            return Err(JournalError::FillConflict {
                client_order_id: fill.client_order_id.clone(),
                trade_id: fill.trade_id.clone(),
                journal: format!(
                    "{quantity} @ {price} fee {fee} {}",
                    fee_asset.unwrap_or_default()
                ),
                replayed: format!(
                    "{} @ {} fee {} {}",
                    fill.quantity,
                    fill.price,
                    fill.fee,
                    fill.fee_asset.clone().unwrap_or_default()
                ),
            });
        }
        let total = order
            .fills_quantity
            .checked_add(fill.quantity)
            .ok_or(JournalError::Overflow("summing fills"))?;
        if total > order.quantity {
            return Err(invalid(format!(
                "fills would total {total}, more than the order's {}",
                order.quantity
            )));
        }
        let legs = legs_of(&tx, &fill.client_order_id)?;
        tx.exec(
            "INSERT INTO fills (client_order_id, trade_id, symbol, side, quantity, price, fee, fee_asset, time, strategy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                fill.client_order_id,
                fill.trade_id,
                order.symbol,
                order.side,
                dec_text(fill.quantity),
                dec_text(fill.price),
                dec_text(fill.fee),
                fill.fee_asset,
                fill.time,
                order.strategy,
            ],
        )?;
        if !legs.is_empty() {
            let fill_id = tx.last_insert_rowid();
            let shares = split_fill(&legs, fill.quantity, fill.fee)
                .ok_or_else(|| invalid("it is more than its legs still want".into()))?;
            for ((strategy, _, _), (quantity, fee)) in legs.iter().zip(shares) {
                if quantity.is_zero() && fee.is_zero() {
                    continue;
                }
                tx.exec(
                    "INSERT INTO fill_shares (fill_id, strategy, quantity, fee) VALUES (?1, ?2, ?3, ?4)",
                    params![fill_id, strategy, dec_text(quantity), dec_text(fee)],
                )?;
            }
        }
        // A fill implies the order reached the book.
        let (state, status) = if total == order.quantity {
            ("final", "filled")
        } else if order.state == IntentState::Final {
            ("final", order.status.as_deref().unwrap_or("cancelled"))
        } else {
            ("acknowledged", "partially_filled")
        };
        // Keep the status of a final order (a fill of a cancelled order arriving late).
        let status = if order.state == IntentState::Final && total != order.quantity {
            order.status.clone().unwrap_or_else(|| status.to_string())
        } else {
            status.to_string()
        };
        tx.exec(
            "UPDATE intents SET state = ?2, status = ?3, updated_at = MAX(updated_at, ?4)
             WHERE client_order_id = ?1",
            params![fill.client_order_id, state, status, fill.time],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Every fill, in journal order.
    pub fn fills(&self) -> Result<Vec<(String, String, FillRecord)>> {
        self.fills_of(None)
    }

    /// [`Journal::fills`] of one strategy of a book (`Some(id)`), or of every order (`None`):
    /// its sub-ledger is its genesis capital plus these.
    pub fn fills_of(&self, strategy: Option<&str>) -> Result<Vec<(String, String, FillRecord)>> {
        // A strategy's shares of netted orders' fills are its fills too (their quantity and
        // fee its share).
        let rows = self.query_fills(
            "SELECT id, strategy, symbol, side, client_order_id, trade_id, quantity, price, fee,
                    fee_asset, time
             FROM fills WHERE ?1 IS NULL OR strategy = ?1
             UNION ALL
             SELECT f.id, s.strategy, f.symbol, f.side, f.client_order_id, f.trade_id, s.quantity,
                    f.price, s.fee, f.fee_asset, f.time
             FROM fill_shares s JOIN fills f ON f.id = s.fill_id WHERE s.strategy = ?1
             ORDER BY 1",
            params![strategy],
        )?;
        Ok(rows
            .into_iter()
            .map(|f| (f.symbol, f.side.as_str().to_string(), f.record))
            .collect())
    }

    /// The fills journaled after row `after` (`0`: all), in journal order, each with its row
    /// id and its strategy: a book on one exchange account hands each new fill to the
    /// strategy that placed it from here (the journal, not the process, is the truth).
    pub fn fills_after(&self, after: i64) -> Result<Vec<JournaledFill>> {
        self.query_fills(
            "SELECT id, strategy, symbol, side, client_order_id, trade_id, quantity, price, fee, \
             fee_asset, time FROM fills WHERE id > ?1 AND strategy IS NOT NULL \
             UNION ALL \
             SELECT f.id, s.strategy, f.symbol, f.side, f.client_order_id, f.trade_id, s.quantity, \
             f.price, s.fee, f.fee_asset, f.time \
             FROM fill_shares s JOIN fills f ON f.id = s.fill_id WHERE f.id > ?1 \
             ORDER BY 1",
            params![after],
        )
    }

    /// Fill rows of `sql` (see [`fill_rows`]).
    fn query_fills(&self, sql: &str, args: impl Params) -> Result<Vec<JournaledFill>> {
        fill_rows(&self.conn, sql, args)
    }

    /// The id of the last fill journaled (`0`: none).
    pub fn last_fill_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM fills", [], |r| r.get(0))?)
    }

    /// Every fill with the run that placed its order, in journal order (the state folder's
    /// history across sessions).
    pub fn fills_with_runs(&self) -> Result<Vec<(i64, String, String, FillRecord)>> {
        let runs: BTreeMap<String, i64> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT client_order_id, run_id FROM intents")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        Ok(self
            .fills()?
            .into_iter()
            .map(|(symbol, side, fill)| {
                let run = runs.get(&fill.client_order_id).copied().unwrap_or(0);
                (run, symbol, side, fill)
            })
            .collect())
    }

    // ---- book -------------------------------------------------------------------------

    /// Records reconciliation adjustments (all or none). In a book's journal each is attributed
    /// in the same transaction ([`attribute`], from the journaled fills and earlier shares);
    /// returns the shares. A position difference no strategy holds records nothing
    /// ([`JournalError::Unattributable`]).
    pub fn record_adjustments(
        &mut self,
        time: TimestampNs,
        adjustments: &[BookAdjustment],
    ) -> Result<Vec<AdjustmentShare>> {
        self.record_adopted(time, adjustments, |_| None)
    }

    /// [`Journal::record_adjustments`] with the reconciliation that adopted them: `report`
    /// gives its (outcome, report JSON) once the shares are known, and it is written in the
    /// same transaction, so the journal never has an adjustment without its report.
    pub fn record_adopted(
        &mut self,
        time: TimestampNs,
        adjustments: &[BookAdjustment],
        report: impl FnOnce(&[AdjustmentShare]) -> Option<(String, String)>,
    ) -> Result<Vec<AdjustmentShare>> {
        let tx = self.tx()?;
        let currency: Option<String> = tx
            .row(
                "SELECT value FROM meta WHERE key = 'cash_currency'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let currency = currency.ok_or_else(|| {
            JournalError::InvalidRun("no run started: call start_run first".into())
        })?;
        // A book's adjustments are attributed in the same transaction (see [`attribute`]).
        let book = is_book(&tx)?;
        let after_fill: i64 = tx.row("SELECT COALESCE(MAX(id), 0) FROM fills", [], |r| r.get(0))?;
        let mut recorded = Vec::new();
        for adjustment in adjustments {
            let (target, name) = match &adjustment.target {
                AdjustmentTarget::Position(symbol) => ("position", symbol.as_str()),
                AdjustmentTarget::Cash => ("cash", currency.as_str()),
            };
            let shares = match (book, &adjustment.target) {
                (false, _) => None,
                (true, AdjustmentTarget::Position(symbol)) => Some(
                    attribute(adjustment, &strategy_positions(&tx, &currency, symbol)?)
                        .ok_or_else(|| JournalError::Unattributable(symbol.clone()))?,
                ),
                (true, AdjustmentTarget::Cash) => attribute(adjustment, &BTreeMap::new()),
            };
            tx.exec(
                "INSERT INTO adjustments (time, target, name, delta, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![time, target, name, dec_text(adjustment.delta), adjustment.reason],
            )?;
            let adjustment_id = tx.last_insert_rowid();
            for (strategy, delta) in shares.unwrap_or_default() {
                tx.exec(
                    "INSERT INTO adjustment_shares (adjustment_id, strategy, delta, after_fill_id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![adjustment_id, strategy, dec_text(delta), after_fill],
                )?;
                recorded.push(AdjustmentShare {
                    adjustment_id,
                    strategy,
                    target: adjustment.target.clone(),
                    delta,
                    after_fill_id: after_fill,
                });
            }
        }
        if let Some((outcome, json)) = report(&recorded) {
            tx.exec(
                "INSERT INTO reconciliations (time, outcome, report) VALUES (?1, ?2, ?3)",
                params![time, outcome, json],
            )?;
        }
        tx.commit()?;
        Ok(recorded)
    }

    /// The adjustment shares of adjustments after row `after` (`0`: all), in journal order.
    pub fn adjustment_shares_after(&self, after: i64) -> Result<Vec<AdjustmentShare>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.adjustment_id, s.strategy, a.target, a.name, s.delta, s.after_fill_id
             FROM adjustment_shares s JOIN adjustments a ON a.id = s.adjustment_id
             WHERE s.adjustment_id > ?1 ORDER BY s.id",
        )?;
        let rows = stmt.query_map(params![after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (adjustment_id, strategy, target, name, delta, after_fill_id) = row?;
            out.push(AdjustmentShare {
                adjustment_id,
                strategy,
                target: match target.as_str() {
                    "position" => AdjustmentTarget::Position(name),
                    _ => AdjustmentTarget::Cash,
                },
                delta: parse_dec(&delta, "adjustment share")?,
                after_fill_id,
            });
        }
        Ok(out)
    }

    /// The last adjustment row (`0`: none).
    pub fn last_adjustment_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .row("SELECT COALESCE(MAX(id), 0) FROM adjustments", [], |r| {
                r.get(0)
            })?)
    }

    /// The book derived from genesis, fills and adjustments (optionally only those up to the
    /// given row ids).
    pub fn derive_book(&self) -> Result<Book> {
        self.derive_book_upto(i64::MAX, i64::MAX)
    }

    /// The book's cash at the very first run (the genesis every derivation starts from).
    pub fn initial_cash(&self) -> Result<Option<Decimal>> {
        let text: Option<String> = self
            .conn
            .row(
                "SELECT value FROM meta WHERE key = 'initial_cash'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| parse_dec(&t, "initial cash")).transpose()
    }

    /// Remembers the close time of the last bar the session traded on, so a restarted replay
    /// continues after it instead of trading the same bars twice. Kept with the breaker marks
    /// (same shape: a name, a time, a value), under a name the breakers never read.
    pub fn set_feed_mark(&mut self, bar_close: TimestampNs) -> Result<()> {
        self.set_breaker_mark(FEED_MARK, bar_close, Decimal::ZERO)
    }

    /// One atomic checkpoint of a live session: the engine's book, the close time of the
    /// bar it reflects (the feed mark) and the algorithm's state after that bar, in one
    /// transaction, so a restart never pairs a bar with another bar's state.
    pub fn record_checkpoint(
        &mut self,
        time: TimestampNs,
        book: &Book,
        bar_close: Option<TimestampNs>,
        algo_state: Option<(&str, &[u8])>,
        paper_orders: Option<&[(String, String)]>,
    ) -> Result<()> {
        let part = CheckpointPart {
            strategy: None,
            book,
            algo_state,
            paper_orders,
        };
        self.record_checkpoint_of(time, bar_close, &[part], None)
    }

    /// [`Journal::record_checkpoint`] of a book: the account's part (strategy `None`) and
    /// each strategy's, and the book's own state (JSON), in one transaction. The open paper
    /// orders of every part given replace all those of the last checkpoint.
    pub fn record_checkpoint_of(
        &mut self,
        time: TimestampNs,
        bar_close: Option<TimestampNs>,
        parts: &[CheckpointPart<'_>],
        book_state: Option<&str>,
    ) -> Result<()> {
        let mut books = Vec::with_capacity(parts.len());
        for part in parts {
            books.push(
                serde_json::to_string(part.book).map_err(|e| {
                    JournalError::Corrupt(format!("cannot serialize the book: {e}"))
                })?,
            );
            if let Some((format, _)) = part.algo_state
                && format.trim().is_empty()
            {
                return Err(JournalError::Corrupt(
                    "the algorithm state format tag is empty".into(),
                ));
            }
        }
        let tx = self.tx()?;
        let last_fill: i64 = tx.row("SELECT COALESCE(MAX(id), 0) FROM fills", [], |r| r.get(0))?;
        let last_adj: i64 = tx.row("SELECT COALESCE(MAX(id), 0) FROM adjustments", [], |r| {
            r.get(0)
        })?;
        if let Some(bar_close) = bar_close {
            tx.exec(
                "INSERT INTO breaker_marks (name, time, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET time = excluded.time, value = excluded.value",
                params![FEED_MARK, bar_close, dec_text(Decimal::ZERO)],
            )?;
        }
        if parts.iter().any(|p| p.paper_orders.is_some()) {
            tx.exec("DELETE FROM paper_orders", [])?;
        }
        for (part, json) in parts.iter().zip(books) {
            tx.exec(
                "INSERT INTO book_snapshots (time, book, last_fill_id, last_adjustment_id, strategy)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![time, json, last_fill, last_adj, part.strategy],
            )?;
            if let Some((format, data)) = part.algo_state {
                insert_algo_state(&tx, time, format, data, part.strategy)?;
            }
            for (client_order_id, engine_order) in part.paper_orders.unwrap_or_default() {
                tx.exec(
                    "INSERT INTO paper_orders (client_order_id, engine_order, strategy)
                     VALUES (?1, ?2, ?3)",
                    params![client_order_id, engine_order, part.strategy],
                )?;
            }
        }
        if let Some(state) = book_state {
            tx.exec(
                "INSERT INTO book_states (time, state) VALUES (?1, ?2)",
                params![time, state],
            )?;
            tx.exec(
                "DELETE FROM book_states WHERE id <= (SELECT MAX(id) FROM book_states) - ?1",
                params![KEPT_ALGO_STATES],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The book's own state at the last checkpoint of a book (JSON).
    pub fn book_state(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .row(
                "SELECT state FROM book_states ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The last adjustment row the book's own state at its last checkpoint includes (its
    /// reserve holds the reserve's shares up to it); `0` without a checkpoint.
    pub fn book_state_adjustment_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .row(
                "SELECT s.last_adjustment_id FROM book_snapshots s
                 WHERE s.strategy IS NULL
                   AND s.time = (SELECT time FROM book_states ORDER BY id DESC LIMIT 1)
                 ORDER BY s.id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// The last book snapshot of strategy `strategy` of a book.
    pub fn snapshot_of(&self, strategy: &str) -> Result<Option<Book>> {
        self.conn
            .row(
                "SELECT book FROM book_snapshots WHERE strategy = ?1 ORDER BY id DESC LIMIT 1",
                params![strategy],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|json| book_from_json(&json))
            .transpose()
    }

    /// The last algorithm state of strategy `strategy` of a book.
    pub fn algo_state_of(
        &self,
        strategy: &str,
        now: TimestampNs,
        max_age_ns: i64,
    ) -> Result<Option<AlgoState>> {
        self.last_algo_state_of(Some(strategy), now, max_age_ns)
    }

    /// The open paper orders of the last checkpoint (client order id, the engine's order as
    /// JSON), in the order the checkpoint listed them.
    pub fn paper_orders(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .paper_orders_by_strategy()?
            .into_iter()
            .map(|(_, id, order)| (id, order))
            .collect())
    }

    /// [`Journal::paper_orders`] with the strategy of a book each belongs to.
    pub fn paper_orders_by_strategy(&self) -> Result<Vec<(Option<String>, String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT strategy, client_order_id, engine_order FROM paper_orders ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The close time given to the last [`Journal::set_feed_mark`].
    pub fn feed_mark(&self) -> Result<Option<TimestampNs>> {
        Ok(self.breaker_marks()?.get(FEED_MARK).map(|&(time, _)| time))
    }

    fn derive_book_upto(&self, last_fill: i64, last_adjustment: i64) -> Result<Book> {
        let genesis: Option<(String, String)> = self
            .conn
            .row(
                "SELECT (SELECT value FROM meta WHERE key = 'cash_currency'),
                        (SELECT value FROM meta WHERE key = 'initial_cash')",
                [],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .map(|(c, i)| c.zip(i))?;
        let Some((currency, initial)) = genesis else {
            return Ok(Book::default());
        };
        let mut book = Book::new(&currency, parse_dec(&initial, "initial cash")?);
        // Fills and adjustments interleaved by time, fills first at equal times.
        let mut events: Vec<(i64, u8, i64, BookEvent)> = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, symbol, side, quantity, price, fee, fee_asset, time FROM fills WHERE id <= ?1",
            )?;
            let rows = stmt.query_map(params![last_fill], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })?;
            for row in rows {
                let (id, symbol, side, quantity, price, fee, fee_asset, time) = row?;
                let side = parse_side(&side)
                    .ok_or_else(|| JournalError::Corrupt(format!("fill {id} has side `{side}`")))?;
                events.push((
                    time,
                    0,
                    id,
                    BookEvent::Fill {
                        symbol,
                        side,
                        quantity: parse_dec(&quantity, "fill quantity")?,
                        price: parse_dec(&price, "fill price")?,
                        fee: parse_dec(&fee, "fill fee")?,
                        fee_asset,
                    },
                ));
            }
        }
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, target, name, delta, reason, time FROM adjustments WHERE id <= ?1",
            )?;
            let rows = stmt.query_map(params![last_adjustment], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            for row in rows {
                let (id, target, name, delta, reason, time) = row?;
                let target = match target.as_str() {
                    "position" => AdjustmentTarget::Position(name),
                    _ => AdjustmentTarget::Cash,
                };
                events.push((
                    time,
                    1,
                    id,
                    BookEvent::Adjust(BookAdjustment {
                        target,
                        delta: parse_dec(&delta, "adjustment")?,
                        reason,
                    }),
                ));
            }
        }
        // Addition commutes, so the order only matters for overflow; keep it deterministic.
        events.sort_by_key(|e| (e.0, e.1, e.2));
        for (_, _, _, event) in events {
            match event {
                BookEvent::Fill {
                    symbol,
                    side,
                    quantity,
                    price,
                    fee,
                    fee_asset,
                } => book.apply_fill(&symbol, side, quantity, price, fee, fee_asset.as_deref())?,
                BookEvent::Adjust(adjustment) => book.apply_adjustment(&adjustment)?,
            }
        }
        Ok(book)
    }

    /// Stores the engine's own view of the book; `recover` checks it against the journal.
    pub fn record_snapshot(&mut self, time: TimestampNs, book: &Book) -> Result<()> {
        self.record_checkpoint(time, book, None, None, None)
    }

    fn snapshot_check(&self) -> Result<SnapshotCheck> {
        let row = self
            .conn
            .row(
                "SELECT book, last_fill_id, last_adjustment_id FROM book_snapshots
                 WHERE strategy IS NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((json, last_fill, last_adj)) = row else {
            return Ok(SnapshotCheck::NoSnapshot);
        };
        let snapshot = book_from_json(&json)?;
        let derived = self.derive_book_upto(last_fill, last_adj)?;
        if snapshot.normalized() == derived.normalized() {
            Ok(SnapshotCheck::Matches)
        } else {
            Ok(SnapshotCheck::Mismatch { snapshot, derived })
        }
    }

    // ---- algorithm state --------------------------------------------------------------

    /// Stores a snapshot of the algorithm's state (opaque bytes, e.g. a pickle).
    pub fn record_algo_state(
        &mut self,
        time: TimestampNs,
        format: &str,
        data: &[u8],
    ) -> Result<()> {
        if format.trim().is_empty() {
            return Err(JournalError::Corrupt(
                "the algorithm state format tag is empty".into(),
            ));
        }
        let tx = self.tx()?;
        insert_algo_state(&tx, time, format, data, None)?;
        tx.commit()?;
        Ok(())
    }

    fn last_algo_state(&self, now: TimestampNs, max_age_ns: i64) -> Result<Option<AlgoState>> {
        self.last_algo_state_of(None, now, max_age_ns)
    }

    fn last_algo_state_of(
        &self,
        strategy: Option<&str>,
        now: TimestampNs,
        max_age_ns: i64,
    ) -> Result<Option<AlgoState>> {
        Ok(self
            .conn
            .row(
                "SELECT time, format, data FROM algo_states WHERE strategy IS ?1
                 ORDER BY id DESC LIMIT 1",
                params![strategy],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .optional()?
            .map(|(time, format, data)| {
                let age_ns = now.saturating_sub(time);
                AlgoState {
                    time,
                    format,
                    data,
                    age_ns,
                    stale: age_ns > max_age_ns,
                }
            }))
    }

    // ---- breakers ---------------------------------------------------------------------

    /// Persists a trip.
    pub fn record_breaker_trip(&mut self, trip: &TripRecord) -> Result<()> {
        self.conn.exec(
            "INSERT INTO breaker_events (time, event, breaker, reason, detail) VALUES (?1, 'trip', ?2, ?3, ?4)",
            params![trip.time, trip.breaker, trip.reason, trip.detail.to_string()],
        )?;
        Ok(())
    }

    /// Persists a reset (by whom).
    pub fn record_breaker_reset(&mut self, time: TimestampNs, by: &str) -> Result<()> {
        self.conn.exec(
            "INSERT INTO breaker_events (time, event, breaker, reason, detail) VALUES (?1, 'reset', NULL, ?2, '{}')",
            params![time, format!("reset by {by}")],
        )?;
        Ok(())
    }

    /// The active trip: the last trip with no reset after it.
    pub fn active_trip(&self) -> Result<Option<TripRecord>> {
        let row = self
            .conn
            .row(
                "SELECT event, time, breaker, reason, detail FROM breaker_events ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        match row {
            Some((event, time, breaker, reason, detail)) if event == "trip" => {
                Ok(Some(TripRecord {
                    time,
                    breaker: breaker.unwrap_or_default(),
                    reason,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| JournalError::Corrupt(format!("breaker detail: {e}")))?,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Stores a breaker baseline (peak equity, start-of-day equity).
    pub fn set_breaker_mark(
        &mut self,
        name: &str,
        time: TimestampNs,
        value: Decimal,
    ) -> Result<()> {
        self.conn.exec(
            "INSERT INTO breaker_marks (name, time, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET time = excluded.time, value = excluded.value",
            params![name, time, dec_text(value)],
        )?;
        Ok(())
    }

    pub fn breaker_marks(&self) -> Result<BTreeMap<String, (TimestampNs, Decimal)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, time, value FROM breaker_marks")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut marks = BTreeMap::new();
        for row in rows {
            let (name, time, value) = row?;
            let value = parse_dec(&value, "breaker mark")?;
            marks.insert(name, (time, value));
        }
        Ok(marks)
    }

    // ---- reconciliation ---------------------------------------------------------------

    /// Stores a reconciliation report (JSON) and its outcome (`clean`, `synced`, `halted`).
    /// An operator's action through the control API and what it answered.
    pub fn record_control(&mut self, action: &ControlRecord<'_>) -> Result<()> {
        self.conn.exec(
            "INSERT INTO control_actions (time, run_id, token, action, params, status, result) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                action.time,
                action.run_id,
                action.token,
                action.action,
                action.params.to_string(),
                action.status,
                action.result.to_string()
            ],
        )?;
        Ok(())
    }

    /// A change an operator made to a running book (`add` or `stop` of `strategy`, the
    /// request as applied in JSON), joining the open group: the checkpoint that follows
    /// commits it with the books it changed. An `add` also joins the run's strategies.
    pub fn record_strategy_change(&mut self, change: &StrategyChange<'_>) -> Result<()> {
        if !is_valid_strategy_id(change.strategy) {
            return Err(JournalError::InvalidRun(format!(
                "the strategy id `{}` must be 1 to 64 characters of A-Z a-z 0-9 _ -",
                change.strategy
            )));
        }
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO strategy_changes (time, run_id, action, strategy, request, token) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                change.time,
                change.run_id,
                change.action,
                change.strategy,
                change.request,
                change.token
            ],
        )?;
        if change.action == "add" {
            let listed: Option<String> = tx
                .query_row(
                    "SELECT strategies FROM runs WHERE id = ?1",
                    params![change.run_id],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let mut ids: Vec<String> = match listed {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    JournalError::Corrupt(format!("strategies of run {}: {e}", change.run_id))
                })?,
                None => Vec::new(),
            };
            ids.push(change.strategy.to_string());
            let text = serde_json::to_string(&ids)
                .map_err(|e| JournalError::Corrupt(format!("strategies: {e}")))?;
            tx.execute(
                "UPDATE runs SET strategies = ?1 WHERE id = ?2",
                params![text, change.run_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The strategies operators added to the book, in the order they were added: (id, the
    /// request as applied, JSON).
    pub fn added_strategies(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT strategy, request FROM strategy_changes WHERE action = 'add' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn record_reconciliation(
        &mut self,
        time: TimestampNs,
        outcome: &str,
        report_json: &str,
    ) -> Result<()> {
        self.conn.exec(
            "INSERT INTO reconciliations (time, outcome, report) VALUES (?1, ?2, ?3)",
            params![time, outcome, report_json],
        )?;
        Ok(())
    }

    /// (time, outcome, report JSON), oldest first.
    pub fn reconciliations(&self) -> Result<Vec<(TimestampNs, String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT time, outcome, report FROM reconciliations ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let all: Vec<(TimestampNs, String, String)> =
            rows.collect::<std::result::Result<_, rusqlite::Error>>()?;
        Ok(all)
    }

    // ---- recovery ---------------------------------------------------------------------

    /// The state to restart from. `max_state_age_ns`: an algorithm state older than this at
    /// `now` is flagged `stale`.
    pub fn recover(&self, now: TimestampNs, max_state_age_ns: i64) -> Result<Recovery> {
        let unresolved = self.orders_where("state IN ('intent', 'sent')")?;
        let open_orders = self.acknowledged_orders()?;
        let mut fills: BTreeMap<String, Vec<FillRecord>> = BTreeMap::new();
        let mut last_trade_ids = BTreeMap::new();
        // Fills a book made inside (crossed, handed over: never at the exchange) carry trade
        // ids of its own, which the exchange's fills query must not start from.
        let internal: std::collections::HashSet<String> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT client_order_id FROM intents
                 WHERE exchange_id LIKE 'paper-%' OR exchange_id LIKE 'crossed-%'",
            )?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<std::result::Result<_, rusqlite::Error>>()?
        };
        for (symbol, _side, fill) in self.fills()? {
            if !internal.contains(&fill.client_order_id) {
                last_trade_ids.insert(symbol, fill.trade_id.clone());
            }
            fills
                .entry(fill.client_order_id.clone())
                .or_default()
                .push(fill);
        }
        Ok(Recovery {
            last_run: self.runs()?.pop(),
            unresolved,
            open_orders,
            fills,
            book: self.derive_book()?,
            snapshot: self.snapshot_check()?,
            algo_state: self.last_algo_state(now, max_state_age_ns)?,
            breaker_trip: self.active_trip()?,
            breaker_marks: self.breaker_marks()?,
            last_trade_ids,
        })
    }
}

/// An operator's change to a running book (see [`Journal::record_strategy_change`]).
pub struct StrategyChange<'a> {
    pub time: TimestampNs,
    pub run_id: i64,
    /// `add` or `stop`.
    pub action: &'a str,
    pub strategy: &'a str,
    /// The request as applied (JSON).
    pub request: &'a str,
    /// The API token's name.
    pub token: &'a str,
}

/// One strategy's part of a checkpoint (`strategy` `None`: the account, or one algorithm).
pub struct CheckpointPart<'a> {
    pub strategy: Option<&'a str>,
    pub book: &'a Book,
    pub algo_state: Option<(&'a str, &'a [u8])>,
    pub paper_orders: Option<&'a [(String, String)]>,
}

/// An algorithm state, keeping the last [`KEPT_ALGO_STATES`] of its strategy (the blobs can
/// be large).
fn insert_algo_state(
    tx: &Connection,
    time: TimestampNs,
    format: &str,
    data: &[u8],
    strategy: Option<&str>,
) -> Result<()> {
    tx.exec(
        "INSERT INTO algo_states (time, format, data, strategy) VALUES (?1, ?2, ?3, ?4)",
        params![time, format, data, strategy],
    )?;
    tx.exec(
        "DELETE FROM algo_states WHERE strategy IS ?2
         AND id <= (SELECT MAX(id) FROM algo_states WHERE strategy IS ?2) - ?1",
        params![KEPT_ALGO_STATES, strategy],
    )?;
    Ok(())
}

enum BookEvent {
    Fill {
        symbol: String,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        fee_asset: Option<String>,
    },
    Adjust(BookAdjustment),
}

fn book_from_json(json: &str) -> Result<Book> {
    #[derive(serde::Deserialize)]
    struct Raw {
        cash_currency: String,
        cash: Decimal,
        positions: BTreeMap<String, Decimal>,
        other_fees: BTreeMap<String, Decimal>,
    }
    let raw: Raw = serde_json::from_str(json)
        .map_err(|e| JournalError::Corrupt(format!("book snapshot: {e}")))?;
    Ok(Book {
        cash_currency: raw.cash_currency,
        cash: raw.cash,
        positions: raw.positions,
        other_fees: raw.other_fees,
    })
}

const ORDER_SELECT: &str = "SELECT client_order_id, run_id, symbol, side, quantity, order_type, limit_price, \
    stop_price, tif, created_at, state, sent_at, exchange_id, acked_at, status, reported_filled, \
    reason, updated_at, strategy FROM intents";
const ORDER_SELECT_ONE: &str = "SELECT client_order_id, run_id, symbol, side, quantity, order_type, limit_price, \
    stop_price, tif, created_at, state, sent_at, exchange_id, acked_at, status, reported_filled, \
    reason, updated_at, strategy FROM intents WHERE client_order_id = ?1";

/// Row text before parsing (parsing errors are journal errors, not SQLite errors).
#[allow(clippy::type_complexity)]
struct RawOrder {
    cols: (
        String,
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        i64,
    ),
    rest: (
        String,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
        Option<String>,
        i64,
        Option<String>,
    ),
}

fn raw_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOrder> {
    Ok(RawOrder {
        cols: (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ),
        rest: (
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
            r.get(14)?,
            r.get(15)?,
            r.get(16)?,
            r.get(17)?,
            r.get(18)?,
        ),
    })
}

/// The legs of a netted order: (strategy, quantity, filled so far), in journal order.
fn legs_of(conn: &Connection, client_order_id: &str) -> Result<Vec<(String, Decimal, Decimal)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.strategy, l.quantity,
                (SELECT group_concat(s.quantity, ' ') FROM fill_shares s JOIN fills f ON f.id = s.fill_id
                 WHERE f.client_order_id = l.client_order_id AND s.strategy = l.strategy)
         FROM order_legs l WHERE l.client_order_id = ?1 ORDER BY l.rowid",
    )?;
    let rows = stmt.query_map(params![client_order_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut legs = Vec::new();
    for row in rows {
        let (strategy, quantity, shares) = row?;
        let mut filled = Decimal::ZERO;
        for share in shares.as_deref().unwrap_or_default().split_whitespace() {
            filled += parse_dec(share, "fill share")?;
        }
        legs.push((strategy, parse_dec(&quantity, "leg quantity")?, filled));
    }
    Ok(legs)
}

/// One fill of a netted order split between its `legs` (strategy, quantity, filled so far):
/// the quantity in proportion to what each leg still wants, the fee in proportion to the
/// shares, both by `crate::portfolio::netting`'s rule (rounded down to the most decimals
/// involved, the units left over to the largest remainders, earlier leg first among equals),
/// so they sum to the fill exactly. `None`: the fill is more than the legs still want.
/// Fill rows of `sql` (columns: id, strategy, symbol, side, client order id, trade id,
/// quantity, price, fee, fee asset, time).
fn fill_rows(conn: &Connection, sql: &str, args: impl Params) -> Result<Vec<JournaledFill>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, String>(8)?,
            r.get::<_, Option<String>>(9)?,
            r.get::<_, i64>(10)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, strategy, symbol, side, cid, trade_id, quantity, price, fee, fee_asset, time) =
            row?;
        out.push(JournaledFill {
            id,
            strategy,
            symbol,
            side: parse_side(&side)
                .ok_or_else(|| JournalError::Corrupt(format!("fill side `{side}`")))?,
            record: FillRecord {
                client_order_id: cid,
                trade_id,
                quantity: parse_dec(&quantity, "fill quantity")?,
                price: parse_dec(&price, "fill price")?,
                fee: parse_dec(&fee, "fill fee")?,
                fee_asset,
                time,
            },
        });
    }
    Ok(out)
}

/// Whether the journal's last run is a book's (it names strategies).
fn is_book(conn: &Connection) -> Result<bool> {
    let strategies: Option<Option<String>> = conn
        .row(
            "SELECT strategies FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(matches!(strategies, Some(Some(_))))
}

/// Each strategy's position in `symbol` from the journal alone: its own fills, its shares of
/// netted fills (a fee in the base asset taken from the position, as [`Book::apply_fill`]) and
/// its earlier adjustment shares.
fn strategy_positions(
    conn: &Connection,
    currency: &str,
    symbol: &str,
) -> Result<BTreeMap<String, Decimal>> {
    let rows = fill_rows(
        conn,
        "SELECT id, strategy, symbol, side, client_order_id, trade_id, quantity, price, fee,
                fee_asset, time FROM fills WHERE symbol = ?1 AND strategy IS NOT NULL
         UNION ALL
         SELECT f.id, s.strategy, f.symbol, f.side, f.client_order_id, f.trade_id, s.quantity,
                f.price, s.fee, f.fee_asset, f.time
         FROM fill_shares s JOIN fills f ON f.id = s.fill_id WHERE f.symbol = ?1
         ORDER BY 1",
        params![symbol],
    )?;
    let mut books: BTreeMap<String, Book> = BTreeMap::new();
    for f in rows {
        let Some(strategy) = f.strategy else {
            continue;
        };
        let r = &f.record;
        books
            .entry(strategy)
            .or_insert_with(|| Book::new(currency, Decimal::ZERO))
            .apply_fill(
                symbol,
                f.side,
                r.quantity,
                r.price,
                r.fee,
                r.fee_asset.as_deref(),
            )?;
    }
    let mut positions: BTreeMap<String, Decimal> = books
        .into_iter()
        .map(|(strategy, book)| (strategy, book.position(symbol)))
        .collect();
    let mut stmt = conn.prepare_cached(
        "SELECT s.strategy, s.delta FROM adjustment_shares s JOIN adjustments a
         ON a.id = s.adjustment_id
         WHERE a.target = 'position' AND a.name = ?1 AND s.strategy IS NOT NULL ORDER BY s.id",
    )?;
    let rows = stmt.query_map(params![symbol], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (strategy, delta) = row?;
        let entry = positions.entry(strategy).or_default();
        *entry = entry
            .checked_add(parse_dec(&delta, "adjustment share")?)
            .ok_or(JournalError::Overflow("changing a position"))?;
    }
    positions.retain(|_, q| !q.is_zero());
    Ok(positions)
}

pub fn split_fill(
    legs: &[(String, Decimal, Decimal)],
    quantity: Decimal,
    fee: Decimal,
) -> Option<Vec<(Decimal, Decimal)>> {
    let wanted: Vec<Decimal> = legs.iter().map(|(_, q, filled)| *q - *filled).collect();
    if wanted.iter().copied().sum::<Decimal>() < quantity {
        return None;
    }
    let dp = wanted
        .iter()
        .map(|q| q.scale())
        .chain([quantity.scale()])
        .max()
        .unwrap_or(0);
    let shares = crate::portfolio::netting::allocate(&wanted, quantity, dp);
    let fees = crate::portfolio::netting::apportion(&shares, fee, fee.scale());
    Some(shares.into_iter().zip(fees).collect())
}

fn finish_order(conn: &Connection, raw: RawOrder) -> Result<JournaledOrder> {
    let (cid, run_id, symbol, side, quantity, order_type, limit, stop, tif, created_at) = raw.cols;
    let (
        state,
        sent_at,
        exchange_id,
        acked_at,
        status,
        reported_filled,
        reason,
        updated_at,
        strategy,
    ) = raw.rest;
    let corrupt = |what: String| JournalError::Corrupt(format!("order {cid}: {what}"));
    let side = match side.as_str() {
        "buy" => "buy",
        "sell" => "sell",
        other => return Err(corrupt(format!("side `{other}`"))),
    };
    let fills_quantity: String = {
        let mut stmt =
            conn.prepare_cached("SELECT quantity FROM fills WHERE client_order_id = ?1")?;
        let quantities = stmt
            .query_map(params![cid], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut sum = Decimal::ZERO;
        for q in quantities {
            sum = sum
                .checked_add(parse_dec(&q, "fill quantity")?)
                .ok_or(JournalError::Overflow("summing fills"))?;
        }
        sum.to_string()
    };
    Ok(JournaledOrder {
        run_id,
        symbol,
        side,
        quantity: parse_dec(&quantity, "quantity")?,
        order_type: OrderType::parse(&order_type)
            .ok_or_else(|| corrupt(format!("order type `{order_type}`")))?,
        limit_price: limit
            .as_deref()
            .map(|t| parse_dec(t, "limit price"))
            .transpose()?,
        stop_price: stop
            .as_deref()
            .map(|t| parse_dec(t, "stop price"))
            .transpose()?,
        time_in_force: TimeInForce::parse(&tif).ok_or_else(|| corrupt(format!("tif `{tif}`")))?,
        created_at,
        state: IntentState::parse(&state).ok_or_else(|| corrupt(format!("state `{state}`")))?,
        sent_at,
        exchange_id,
        acked_at,
        status,
        reported_filled: parse_dec(&reported_filled, "reported filled")?,
        fills_quantity: parse_dec(&fills_quantity, "fills")?,
        reason,
        updated_at,
        strategy,
        client_order_id: cid,
    })
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
