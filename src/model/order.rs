//! Orders as the engine tracks them: every type the matcher knows, time in force, and the state
//! machine whose transitions are reported to the algorithm (`on_order`) and to `orders.csv`.

use rust_decimal::Decimal;
use std::fmt;

use super::{SymbolId, TimestampNs};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct OrderId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    /// +1 for buys, -1 for sells: the sign a fill gives the position change.
    pub fn sign(self) -> Decimal {
        match self {
            OrderSide::Buy => Decimal::ONE,
            OrderSide::Sell => Decimal::NEGATIVE_ONE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }

    pub fn opposite(self) -> Self {
        match self {
            OrderSide::Buy => OrderSide::Sell,
            OrderSide::Sell => OrderSide::Buy,
        }
    }
}

impl fmt::Display for OrderSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a trailing stop stays behind the best price since it became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trail {
    Amount(Decimal),
    /// A fraction: 0.02 trails 2% behind.
    Percent(Decimal),
}

/// What the order does when the price path reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Market,
    Limit {
        limit: Decimal,
    },
    Stop {
        stop: Decimal,
    },
    StopLimit {
        stop: Decimal,
        limit: Decimal,
    },
    TrailingStop {
        trail: Trail,
    },
    /// Fills at the open of the first bar that opens after it is active.
    MarketOnOpen,
    /// Fills at the close of the first bar it is active in.
    MarketOnClose,
}

impl OrderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderKind::Market => "market",
            OrderKind::Limit { .. } => "limit",
            OrderKind::Stop { .. } => "stop",
            OrderKind::StopLimit { .. } => "stop_limit",
            OrderKind::TrailingStop { .. } => "trailing_stop",
            OrderKind::MarketOnOpen => "market_on_open",
            OrderKind::MarketOnClose => "market_on_close",
        }
    }

    /// The limit price, for limit and stop-limit orders.
    pub fn limit(&self) -> Option<Decimal> {
        match *self {
            OrderKind::Limit { limit } | OrderKind::StopLimit { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// The stop (trigger) price, for stop and stop-limit orders.
    pub fn stop(&self) -> Option<Decimal> {
        match *self {
            OrderKind::Stop { stop } | OrderKind::StopLimit { stop, .. } => Some(stop),
            _ => None,
        }
    }
}

/// How long an order may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Until the end of the UTC day it was placed on.
    Day,
    /// Immediate or cancel: what fills on its first active bar, the rest expires.
    Ioc,
    /// Fill or kill: all on its first active bar, or nothing.
    Fok,
    /// Good till this time (exclusive).
    Gtd(TimestampNs),
}

impl TimeInForce {
    pub fn as_str(&self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Day => "day",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
            TimeInForce::Gtd(_) => "gtd",
        }
    }
}

/// The order state machine:
///
/// ```text
/// new ──> accepted ──> (triggered) ──> partially_filled ──> filled
///  │          │              │                 │
///  └> rejected └──────────────┴─> cancelled / expired (what is unfilled)
/// ```
///
/// `new` is also where a bracket's exits wait until their entry fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    New,
    Accepted,
    /// A stop or stop-limit whose trigger was reached (a stop-limit then rests as a limit).
    Triggered,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    Expired,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Triggered => "triggered",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Expired => "expired",
        }
    }

    /// Still able to fill (or to become able, for a bracket exit waiting in `new`).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderStatus::New
                | OrderStatus::Accepted
                | OrderStatus::Triggered
                | OrderStatus::PartiallyFilled
        )
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub symbol: SymbolId,
    pub side: OrderSide,
    /// Always positive; the side carries the direction.
    pub quantity: Decimal,
    pub kind: OrderKind,
    pub tif: TimeInForce,
    /// `ctx.time` of the tick that placed it.
    pub submitted_at: TimestampNs,
    /// When it reaches the market: `submitted_at` plus the broker's latency. It never matches
    /// price action from before this instant.
    pub active_from: TimestampNs,
    pub status: OrderStatus,
    pub filled_quantity: Decimal,
    /// Σ price × quantity of its fills, exact; the average price is this / filled_quantity.
    pub filled_notional: Decimal,
    pub fees: Decimal,
    /// Time of the last fill.
    pub filled_at: Option<TimestampNs>,
    /// Why the order ended without (a full) fill: cancelled, rejected, expired.
    pub reason: Option<String>,
    /// A trailing stop's current stop price, once active.
    pub trail_stop: Option<Decimal>,
    /// Orders that cancel each other when one fills (OCO, a bracket's exits).
    pub oco_group: Option<u64>,
    /// A bracket exit: waits in `new` until this entry fills.
    pub parent: Option<OrderId>,
    /// A limit order that was not marketable when it became active rests on the book: its
    /// fills are maker fills.
    pub resting: bool,
}

impl Order {
    pub fn remaining(&self) -> Decimal {
        self.quantity - self.filled_quantity
    }

    /// When its time in force expires it (a bar opening at or after it no longer matches it).
    pub fn deadline(&self) -> Option<TimestampNs> {
        match self.tif {
            TimeInForce::Day => Some(
                (self.submitted_at.div_euclid(super::time::NANOS_PER_DAY) + 1)
                    * super::time::NANOS_PER_DAY,
            ),
            TimeInForce::Gtd(until) => Some(until),
            _ => None,
        }
    }

    /// Average fill price, None before the first fill.
    pub fn average_price(&self) -> Option<Decimal> {
        if self.filled_quantity.is_zero() {
            None
        } else {
            self.filled_notional.checked_div(self.filled_quantity)
        }
    }
}

/// One transition of an order, as reported to `on_order` and written to `orders.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    pub time: TimestampNs,
    pub order_id: OrderId,
    pub symbol: SymbolId,
    pub status: OrderStatus,
    /// For fills: the quantity and price of this fill.
    pub fill_quantity: Option<Decimal>,
    pub fill_price: Option<Decimal>,
    pub reason: Option<String>,
}
