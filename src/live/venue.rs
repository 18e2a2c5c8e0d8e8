//! The boundary between the live loop and an exchange: the [`Venue`] trait and the plain data
//! that crosses it. No pyo3 here: `python::venue::PyVenue` implements the trait over the Python
//! facade `rustybt_api._live.host`, which answers in JSON text (money as decimal strings, times
//! as integer milliseconds). Decimals are parsed from those strings by rust_decimal's `serde-str`
//! deserializer, which refuses JSON numbers: no amount ever passes through an `f64`.
//!
//! `tests/fixtures/venue/*.json` are real outputs of the facade (against the fake exchange); the
//! unit tests below parse them, and `tests/python/test_live_host.py` checks the facade still
//! produces that shape. See docs/live-exchange-testing.md, "The venue boundary".

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use super::config::Secret;
use super::journal::{self, FillRecord, OrderIntent, OrderUpdate};
use super::reconcile::{AccountView, Lookup};
use crate::model::{OrderSide, OrderStatus, TimestampNs};

const NANOS_PER_MS: i64 = 1_000_000;

/// Milliseconds (the exchange's unit) to the engine's nanoseconds.
pub fn ms_to_ns(ms: i64) -> TimestampNs {
    ms.saturating_mul(NANOS_PER_MS)
}

/// A market's trading rules, exact (`None`: the exchange states no such rule).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MarketRules {
    /// The exchange's own id, e.g. `BTCUSDT` for `BTC/USDT`.
    pub exchange_symbol: String,
    pub base: String,
    pub quote: String,
    pub active: bool,
    pub tick_size: Option<Decimal>,
    pub lot_step: Option<Decimal>,
    pub min_qty: Option<Decimal>,
    pub max_qty: Option<Decimal>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    pub min_notional: Option<Decimal>,
    pub max_notional: Option<Decimal>,
}

/// One closed candle. On the wire: `[open_ms, "o", "h", "l", "c", "v"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "CandleRow")]
pub struct Candle {
    pub open_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

#[derive(Deserialize)]
struct CandleRow(i64, Decimal, Decimal, Decimal, Decimal, Decimal);

impl From<CandleRow> for Candle {
    fn from(CandleRow(open_time_ms, open, high, low, close, volume): CandleRow) -> Self {
        Candle {
            open_time_ms,
            open,
            high,
            low,
            close,
            volume,
        }
    }
}

/// A fee charged on an order, in the asset the exchange charged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Fee {
    pub asset: String,
    pub amount: Decimal,
}

/// An order as the exchange reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VenueOrder {
    /// The journal's id; an order placed elsewhere without one is `exchange:<exchange id>`
    /// (':' is not allowed in client ids, so it cannot collide with the journal's).
    pub client_order_id: String,
    pub exchange_order_id: String,
    pub symbol: String,
    #[serde(deserialize_with = "side_word")]
    pub side: OrderSide,
    /// `market` or `limit`.
    pub order_type: String,
    /// The engine's word (mapped by the client layer; an unknown exchange word is an error there).
    #[serde(deserialize_with = "status_word")]
    pub status: OrderStatus,
    /// The exchange's own word, e.g. `EXPIRED_IN_MATCH`.
    pub raw_status: String,
    pub quantity: Decimal,
    /// Cumulative.
    pub filled: Decimal,
    pub limit_price: Option<Decimal>,
    pub average_price: Option<Decimal>,
    /// Empty for the states of `open_orders()` (the exchange lists no fees with them).
    pub fees: Vec<Fee>,
    pub reason: Option<String>,
    /// The exchange's last update time of the order.
    pub time_ms: Option<i64>,
}

impl VenueOrder {
    pub fn remaining(&self) -> Decimal {
        (self.quantity - self.filled).max(Decimal::ZERO)
    }

    /// The journal's status record of this state, at `time` (ns).
    pub fn to_update(&self, time: TimestampNs) -> OrderUpdate {
        OrderUpdate {
            client_order_id: self.client_order_id.clone(),
            time,
            status: self.status,
            filled_quantity: self.filled,
            exchange_id: Some(self.exchange_order_id.clone()),
            reason: self.reason.clone(),
        }
    }
}

/// One trade of the account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VenueFill {
    pub trade_id: String,
    /// `None` when the exchange order is unknown even after looking it up (placed elsewhere and
    /// gone from the exchange's order history).
    pub client_order_id: Option<String>,
    pub exchange_order_id: String,
    pub symbol: String,
    #[serde(deserialize_with = "side_word")]
    pub side: OrderSide,
    pub price: Decimal,
    pub quantity: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    pub time_ms: i64,
    pub is_maker: bool,
}

impl VenueFill {
    /// The journal's record of this trade for the order `client_order_id` (normally
    /// `self.client_order_id`; the caller resolves it when that is `None`).
    pub fn to_record(&self, client_order_id: &str) -> FillRecord {
        FillRecord {
            client_order_id: client_order_id.to_string(),
            trade_id: self.trade_id.clone(),
            quantity: self.quantity,
            price: self.price,
            fee: self.fee,
            fee_asset: (!self.fee_asset.is_empty()).then(|| self.fee_asset.clone()),
            time: ms_to_ns(self.time_ms),
        }
    }
}

/// How one HTTP request to the exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    Ok,
    /// A definitive "no" (order not found, order rejected, bad request): the exchange works.
    Refused,
    /// Network error, timeout, 429/418, 5xx, bad credentials: what the error breaker counts.
    Failed,
}

/// What happened inside the venue since the last [`Venue::take_events`]: for the log and the
/// breakers (`on_request` for every request, `on_error` for the failed ones).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VenueEvent {
    Request {
        time_ms: i64,
        method: String,
        /// The URL path, e.g. `/api/v3/order` (no query: it would carry the signature).
        endpoint: String,
        outcome: RequestOutcome,
        /// The ccxt exception class when not `ok`.
        error: Option<String>,
    },
    /// A wait before a retry.
    Backoff {
        time_ms: i64,
        operation: String,
        attempt: u32,
        wait_s: f64,
        retry_after_s: Option<f64>,
        /// The ccxt exception class that caused it.
        reason: String,
    },
    /// More events piled up than the facade keeps; this many of the oldest were dropped.
    Dropped { count: u64 },
    /// Made on the Rust side when the events themselves could not be read (never sent by the
    /// facade): the log must say so rather than lose it silently.
    Unreadable { error: String },
}

impl VenueEvent {
    pub fn is_failed_request(&self) -> bool {
        matches!(
            self,
            VenueEvent::Request {
                outcome: RequestOutcome::Failed,
                ..
            }
        )
    }
}

/// What went wrong, as the facade classifies it; the kind tells the loop what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueErrorKind {
    /// The exchange refused (insufficient balance, filter failure): no order exists.
    Rejected,
    /// Breaks the market's rules or is malformed; nothing was sent.
    RuleViolation,
    /// Retries exhausted and the order may exist: reconcile by client id, never resend blindly.
    OutcomeUnknown,
    /// Transient failures outlasted the retries (for a submit: it was not placed).
    Unavailable,
    /// The exchange wants a longer pause than the retry policy allows (`retry_after_s`).
    RateLimited,
    Authentication,
    /// The client id is used on the exchange by a different order.
    ClientIdConflict,
    /// Cancel of a final order; `state` is its final state.
    NotCancellable,
    UnknownOrder,
    /// No such market; the message names close matches.
    UnknownSymbol,
    /// A bug or an unexpected failure (with the Python traceback when there is one).
    Internal,
}

impl VenueErrorKind {
    pub const ALL: [VenueErrorKind; 11] = [
        VenueErrorKind::Rejected,
        VenueErrorKind::RuleViolation,
        VenueErrorKind::OutcomeUnknown,
        VenueErrorKind::Unavailable,
        VenueErrorKind::RateLimited,
        VenueErrorKind::Authentication,
        VenueErrorKind::ClientIdConflict,
        VenueErrorKind::NotCancellable,
        VenueErrorKind::UnknownOrder,
        VenueErrorKind::UnknownSymbol,
        VenueErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VenueErrorKind::Rejected => "rejected",
            VenueErrorKind::RuleViolation => "rule_violation",
            VenueErrorKind::OutcomeUnknown => "outcome_unknown",
            VenueErrorKind::Unavailable => "unavailable",
            VenueErrorKind::RateLimited => "rate_limited",
            VenueErrorKind::Authentication => "authentication",
            VenueErrorKind::ClientIdConflict => "client_id_conflict",
            VenueErrorKind::NotCancellable => "not_cancellable",
            VenueErrorKind::UnknownOrder => "unknown_order",
            VenueErrorKind::UnknownSymbol => "unknown_symbol",
            VenueErrorKind::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for VenueErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed venue call. `message` is free of credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct VenueError {
    pub kind: VenueErrorKind,
    pub message: String,
    pub retry_after_s: Option<f64>,
    /// For `not_cancellable`: the order's final state (boxed: keeps `Result`s small).
    pub state: Option<Box<VenueOrder>>,
}

impl VenueError {
    pub fn new(kind: VenueErrorKind, message: impl Into<String>) -> Self {
        VenueError {
            kind,
            message: message.into(),
            retry_after_s: None,
            state: None,
        }
    }

    /// From the facade's `VenueError` attributes. An unknown kind or an unreadable state is
    /// itself an `internal` error naming what was wrong (the two sides drifted).
    pub fn from_parts(
        kind: &str,
        message: String,
        retry_after_s: Option<f64>,
        state_json: Option<&str>,
    ) -> Self {
        let Some(kind) = VenueErrorKind::parse(kind) else {
            return VenueError::new(
                VenueErrorKind::Internal,
                format!("the venue raised an unknown error kind {kind:?}: {message}"),
            );
        };
        let state = match state_json.map(|text| parse_json::<VenueOrder>("an order state", text)) {
            Some(Err(err)) => return err,
            Some(Ok(order)) => Some(Box::new(order)),
            None => None,
        };
        VenueError {
            kind,
            message,
            retry_after_s,
            state,
        }
    }
}

/// Parses the facade's JSON; a mismatch is an `internal` error naming what was expected.
pub fn parse_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, VenueError> {
    serde_json::from_str(text).map_err(|err| {
        VenueError::new(
            VenueErrorKind::Internal,
            format!("the venue returned malformed JSON for {what}: {err}"),
        )
    })
}

/// The facade's order intent: the journal's intent plus the price the notional check of a
/// market order uses. Fails for what no spot venue here can place (stop orders, `day`): nothing
/// is sent then.
pub fn intent_json(
    intent: &OrderIntent,
    reference_price: Option<Decimal>,
) -> Result<String, VenueError> {
    use journal::{OrderType, TimeInForce};
    if !matches!(intent.order_type, OrderType::Market | OrderType::Limit) {
        return Err(VenueError::new(
            VenueErrorKind::RuleViolation,
            format!(
                "{}: {} orders are not supported by this venue (market and limit only)",
                intent.client_order_id,
                intent.order_type.as_str()
            ),
        ));
    }
    if intent.time_in_force == TimeInForce::Day {
        return Err(VenueError::new(
            VenueErrorKind::RuleViolation,
            format!(
                "{}: time in force `day` is not supported by this venue (gtc, ioc, fok)",
                intent.client_order_id
            ),
        ));
    }
    let text = |d: Option<Decimal>| d.map(|d| d.to_string());
    Ok(serde_json::json!({
        "client_order_id": intent.client_order_id,
        "symbol": intent.symbol,
        "side": intent.side.as_str(),
        "quantity": intent.quantity.to_string(),
        "order_type": intent.order_type.as_str(),
        "limit_price": text(intent.limit_price),
        "time_in_force": intent.time_in_force.as_str(),
        "reference_price": text(reference_price),
    })
    .to_string())
}

/// What a lookup by client id means to the reconciler, for an order the journal has open and
/// the broker's snapshot did not list. `None` when the order turns out to be still working (it
/// was listed a moment later: a race); leave it out of the lookups and reconcile again.
pub fn lookup_for_reconcile(found: Option<VenueOrder>) -> Option<Lookup> {
    match found {
        None => Some(Lookup::NotFound),
        Some(order) if order_is_final(order.status) => Some(Lookup::Closed {
            status: order.status.as_str().to_string(),
            filled_quantity: order.filled,
        }),
        Some(_) => None,
    }
}

fn order_is_final(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected | OrderStatus::Expired
    )
}

/// REST base URL(s): one for every API of the exchange, or ccxt API name → URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VenueUrls {
    One(String),
    Many(BTreeMap<String, String>),
}

/// Retry policy of the client layer (its defaults when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base_delay_s: f64,
    pub max_delay_s: f64,
    pub seed: Option<u64>,
}

/// How to connect. Debug and Serialize print the credentials as `***`; only
/// [`VenueConfig::to_host_json`] (for the facade) contains them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VenueConfig {
    pub api_key: Secret,
    pub secret: Secret,
    /// `None`: the exchange's real URLs.
    pub urls: Option<VenueUrls>,
    /// Websocket base URL of the candle stream (`None`: the exchange's own; with `urls` set,
    /// `None` means no stream: nothing may reach the real exchange by accident).
    pub ws_url: Option<String>,
    pub sandbox: bool,
    pub timeout_ms: u64,
    pub recv_window_ms: u64,
    /// `None`: the exchange's own rate limit.
    pub rate_limit_ms: Option<f64>,
    /// Clock-skew margin after the recvWindow before "not found" counts (`None`: 1000 ms).
    pub settle_margin_ms: Option<u64>,
    pub retry: Option<RetrySettings>,
}

impl VenueConfig {
    /// The client layer's defaults (10 s timeout, 5 s recvWindow, real URLs, no sandbox).
    pub fn new(api_key: Secret, secret: Secret) -> Self {
        VenueConfig {
            api_key,
            secret,
            urls: None,
            ws_url: None,
            sandbox: false,
            timeout_ms: 10_000,
            recv_window_ms: 5_000,
            rate_limit_ms: None,
            settle_margin_ms: None,
            retry: None,
        }
    }

    pub fn secrets(&self) -> Vec<Secret> {
        vec![self.api_key.clone(), self.secret.clone()]
    }

    /// `open_venue`'s config JSON, credentials included: hand it to the facade, never log it.
    pub fn to_host_json(&self) -> String {
        serde_json::json!({
            "api_key": self.api_key.expose(),
            "secret": self.secret.expose(),
            "urls": self.urls,
            "ws_url": self.ws_url,
            "sandbox": self.sandbox,
            "timeout_ms": self.timeout_ms,
            "recv_window_ms": self.recv_window_ms,
            "rate_limit_ms": self.rate_limit_ms,
            "settle_margin_ms": self.settle_margin_ms,
            "retry": self.retry,
        })
        .to_string()
    }
}

/// An exchange, as the live loop sees it. Calls block (retries and backoffs happen inside);
/// every `Err` is classified by [`VenueErrorKind`].
pub trait Venue {
    /// Rules of `symbols` (empty: every market). The symbols become the session's: the
    /// positions of [`Venue::account_view`]. An unknown symbol is `unknown_symbol`.
    fn markets(&mut self, symbols: &[String]) -> Result<BTreeMap<String, MarketRules>, VenueError>;
    /// Every candle with `since_ms <= open` that has closed by `now_ms`, oldest first.
    fn closed_candles(
        &mut self,
        symbol: &str,
        timeframe: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Candle>, VenueError>;
    /// Places the order once (idempotent per client id). `reference_price`: for the notional
    /// check of a market order.
    fn submit(
        &mut self,
        intent: &OrderIntent,
        reference_price: Option<Decimal>,
    ) -> Result<VenueOrder, VenueError>;
    /// For an intent journaled as sent but never acknowledged: the exchange's state if it has
    /// the order, else it is submitted (after the first send can no longer arrive).
    fn resume(&mut self, intent: &OrderIntent, sent_at_ms: i64) -> Result<VenueOrder, VenueError>;
    /// `None`: the exchange never had it.
    fn lookup(
        &mut self,
        client_order_id: &str,
        symbol: &str,
    ) -> Result<Option<VenueOrder>, VenueError>;
    /// The cancelled state (also when an earlier attempt cancelled it); `not_cancellable` with
    /// the final state otherwise.
    fn cancel(&mut self, client_order_id: &str, symbol: &str) -> Result<VenueOrder, VenueError>;
    fn open_orders(&mut self) -> Result<Vec<VenueOrder>, VenueError>;
    /// Trades from `from_trade_id` (inclusive: a replay is a no-op in the journal) or
    /// `since_ms`, oldest first.
    fn fills(
        &mut self,
        symbol: &str,
        from_trade_id: Option<&str>,
        since_ms: Option<i64>,
    ) -> Result<Vec<VenueFill>, VenueError>;
    /// The broker side of reconciliation: positions by symbol, the cash asset's balance, open
    /// orders by client id.
    fn account_view(&mut self, cash_asset: &str) -> Result<AccountView, VenueError>;
    /// Requests and backoffs since the last call, oldest first.
    fn take_events(&mut self) -> Vec<VenueEvent>;
    /// Starts the websocket stream of the closed bars of `symbols` from `source`;
    /// `unavailable` (naming why) when the venue has none.
    fn open_stream(
        &mut self,
        _symbols: &[String],
        _timeframe: &str,
        _source: StreamSource,
    ) -> Result<Box<dyn CandleStream>, VenueError> {
        Err(VenueError::new(
            VenueErrorKind::Unavailable,
            "this venue has no websocket stream",
        ))
    }
    /// Starts the websocket stream of the account's order updates; `unavailable` (naming why)
    /// when the venue has none.
    fn open_account_stream(&mut self) -> Result<Box<dyn AccountStream>, VenueError> {
        Err(VenueError::new(
            VenueErrorKind::Unavailable,
            "this venue has no websocket stream of orders",
        ))
    }
}

/// A running websocket subscription to the account's order updates: a wake-up for the
/// broker's poll (REST stays the source of states and fills).
pub trait AccountStream {
    fn take(&mut self) -> Result<AccountUpdate, VenueError>;
}

/// What an [`AccountStream`] received since the last `take`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AccountUpdate {
    /// Order updates received (their content is read through REST).
    pub updates: u64,
    pub events: Vec<StreamEvent>,
}

/// What a websocket stream of bars is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSource {
    /// The exchange's candles where offered, else its trades.
    Any,
    /// The exchange's trades, aggregated into bars.
    Trades,
}

impl StreamSource {
    pub fn name(self) -> &'static str {
        match self {
            StreamSource::Any => "any",
            StreamSource::Trades => "trades",
        }
    }
}

/// A running websocket subscription to closed bars (the exchange's candles, or bars aggregated
/// from its trades). [`CandleStream::take`] returns at once with what arrived since the last
/// call (the stream runs on its own thread).
pub trait CandleStream {
    fn take(&mut self) -> Result<StreamUpdate, VenueError>;
    /// Where the bars come from, for the session's start message.
    fn describe(&self) -> String {
        "websocket stream".into()
    }
}

/// What a [`CandleStream`] received since the last `take`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StreamUpdate {
    pub candles: Vec<StreamCandle>,
    pub events: Vec<StreamEvent>,
}

/// A closed candle of one symbol. On the wire: `["BTC/USDT", open_ms, "o", "h", "l", "c", "v"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "StreamCandleRow")]
pub struct StreamCandle {
    pub symbol: String,
    pub candle: Candle,
}

#[derive(Deserialize)]
struct StreamCandleRow(String, i64, Decimal, Decimal, Decimal, Decimal, Decimal);

impl From<StreamCandleRow> for StreamCandle {
    fn from(StreamCandleRow(symbol, t, o, h, l, c, v): StreamCandleRow) -> Self {
        StreamCandle {
            symbol,
            candle: CandleRow(t, o, h, l, c, v).into(),
        }
    }
}

impl StreamEvent {
    /// Removes credentials from the reason (a URL or a server's reply might echo them).
    pub fn mask(&mut self, secrets: &[Secret]) {
        if let StreamEvent::Disconnected { reason, .. }
        | StreamEvent::Unavailable { reason, .. }
        | StreamEvent::Failed { reason, .. }
        | StreamEvent::Warning { reason, .. } = self
            && let Some(text) = reason
        {
            *text = super::config::mask(text, secrets);
        }
    }
}

/// A change of the stream's connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    Connected {
        time_ms: i64,
    },
    /// The connection dropped; the stream reconnects with backoff.
    Disconnected {
        time_ms: i64,
        reason: Option<String>,
    },
    /// A (re)connection attempt failed; the stream tries again.
    Unavailable {
        time_ms: i64,
        reason: Option<String>,
    },
    /// The stream gave up for good (not a connection problem).
    Failed {
        time_ms: i64,
        reason: Option<String>,
    },
    /// Bars aggregated from trades: this connection brings the bars opening at or after
    /// `from_ms` (it was not up for all of the earlier ones: REST has them).
    Covering {
        time_ms: i64,
        from_ms: i64,
    },
    /// Something the user should know that changes nothing (a trade that came after its bar
    /// was handed out).
    Warning {
        time_ms: i64,
        reason: Option<String>,
    },
}

fn side_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OrderSide, D::Error> {
    let word = String::deserialize(deserializer)?;
    journal::parse_side(&word)
        .ok_or_else(|| de::Error::custom(format!("unknown side {word:?} (buy or sell)")))
}

fn status_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OrderStatus, D::Error> {
    let word = String::deserialize(deserializer)?;
    journal::parse_status(&word)
        .ok_or_else(|| de::Error::custom(format!("unknown order status {word:?}")))
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;
    use crate::live::journal::{OrderType, TimeInForce};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/venue/", $name, ".json"))
        };
    }

    #[derive(Deserialize)]
    struct ErrorParts {
        kind: String,
        message: String,
        retry_after_s: Option<f64>,
        state_json: Option<String>,
    }

    fn errors() -> Vec<VenueError> {
        let parts: Vec<ErrorParts> = parse_json("errors", fixture!("errors")).unwrap();
        parts
            .into_iter()
            .map(|p| {
                VenueError::from_parts(&p.kind, p.message, p.retry_after_s, p.state_json.as_deref())
            })
            .collect()
    }

    #[test]
    fn markets_parse_exact() {
        let m: BTreeMap<String, MarketRules> = parse_json("markets", fixture!("markets")).unwrap();
        let btc = &m["BTC/USDT"];
        assert_eq!((btc.base.as_str(), btc.quote.as_str()), ("BTC", "USDT"));
        assert_eq!(btc.lot_step, Some(dec!(0.00001)));
        assert_eq!(btc.tick_size, Some(dec!(0.01)));
        assert_eq!(btc.min_notional, Some(dec!(5)));
        assert_eq!(m["ETH/USDT"].tick_size, Some(dec!(0.1)));
    }

    #[test]
    fn candles_parse_from_rows() {
        let c: Vec<Candle> = parse_json("candles", fixture!("candles")).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].open_time_ms - c[0].open_time_ms, 60_000);
        assert_eq!(
            (c[0].open, c[0].high, c[0].low, c[0].close, c[0].volume),
            (
                dec!(64000.10),
                dec!(64010),
                dec!(63990.5),
                dec!(64000.11),
                dec!(0.00001)
            )
        );
    }

    #[test]
    fn a_json_number_is_refused_where_a_decimal_string_belongs() {
        let err =
            parse_json::<Vec<Candle>>("candles", r#"[[0, 0.1, "1", "1", "1", "1"]]"#).unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::Internal);
        assert!(err.message.contains("malformed JSON for candles"), "{err}");
    }

    #[test]
    fn order_states_and_journal_updates() {
        let filled: VenueOrder = parse_json("order", fixture!("order_filled")).unwrap();
        assert_eq!(filled.status, OrderStatus::Filled);
        assert_eq!(filled.side, OrderSide::Buy);
        assert_eq!((filled.quantity, filled.filled), (dec!(0.001), dec!(0.001)));
        assert_eq!(filled.average_price, Some(dec!(64000.1)));
        assert_eq!(
            filled.fees,
            vec![Fee {
                asset: "BTC".into(),
                amount: dec!(0.000001)
            }]
        );
        let update = filled.to_update(7);
        assert_eq!(
            update,
            OrderUpdate {
                client_order_id: "rbt-fx-1".into(),
                time: 7,
                status: OrderStatus::Filled,
                filled_quantity: dec!(0.001),
                exchange_id: Some(filled.exchange_order_id.clone()),
                reason: None,
            }
        );
        let resting: VenueOrder = parse_json("order", fixture!("order_accepted")).unwrap();
        assert_eq!(resting.status, OrderStatus::Accepted);
        assert_eq!(resting.limit_price, Some(dec!(63000.10)));
        assert_eq!(resting.remaining(), dec!(0.001));
        let cancelled: VenueOrder = parse_json("order", fixture!("order_cancelled")).unwrap();
        assert_eq!(
            (cancelled.status, cancelled.raw_status.as_str()),
            (OrderStatus::Cancelled, "CANCELED")
        );
        let open: Vec<VenueOrder> = parse_json("open orders", fixture!("open_orders")).unwrap();
        assert_eq!(open, vec![resting]);
    }

    #[test]
    fn an_unknown_status_word_is_an_error() {
        let text = fixture!("order_filled").replace("\"filled\",", "\"done\",");
        let err = parse_json::<VenueOrder>("order", &text).unwrap_err();
        assert!(
            err.message.contains("unknown order status \"done\""),
            "{err}"
        );
    }

    #[test]
    fn lookups_for_the_reconciler() {
        let found: Option<VenueOrder> = parse_json("lookup", fixture!("lookup_found")).unwrap();
        assert!(found.is_some());
        assert_eq!(lookup_for_reconcile(found), None); // still working
        let missing: Option<VenueOrder> = parse_json("lookup", fixture!("lookup_missing")).unwrap();
        assert_eq!(lookup_for_reconcile(missing), Some(Lookup::NotFound));
        let filled: VenueOrder = parse_json("order", fixture!("order_filled")).unwrap();
        assert_eq!(
            lookup_for_reconcile(Some(filled)),
            Some(Lookup::Closed {
                status: "filled".into(),
                filled_quantity: dec!(0.001)
            })
        );
    }

    #[test]
    fn fills_become_journal_records() {
        let fills: Vec<VenueFill> = parse_json("fills", fixture!("fills")).unwrap();
        let f = &fills[0];
        assert_eq!(f.client_order_id.as_deref(), Some("rbt-fx-1"));
        assert!(!f.is_maker);
        let record = f.to_record("rbt-fx-1");
        assert_eq!(record.trade_id, "1");
        assert_eq!(
            (record.quantity, record.price),
            (dec!(0.001), dec!(64000.1))
        );
        assert_eq!(
            (record.fee, record.fee_asset.as_deref()),
            (dec!(0.000001), Some("BTC"))
        );
        assert_eq!(record.time, f.time_ms * 1_000_000);
    }

    #[test]
    fn account_view_is_the_reconcilers_type() {
        let view: AccountView = parse_json("account view", fixture!("account_view")).unwrap();
        assert_eq!(view.positions["BTC/USDT"], dec!(1.000999));
        assert_eq!(view.balances.keys().collect::<Vec<_>>(), ["USDT"]);
        let order = &view.open_orders["rbt-fx-2"];
        assert_eq!(
            (order.side.as_str(), order.remaining, order.filled),
            ("buy", dec!(0.001), dec!(0))
        );
        let balances: BTreeMap<String, Decimal> =
            parse_json("balances", fixture!("balances")).unwrap();
        assert_eq!(balances["USDT"], view.balances["USDT"]);
    }

    #[test]
    fn events_feed_the_breakers() {
        let events: Vec<VenueEvent> = parse_json("events", fixture!("events")).unwrap();
        assert_eq!(events.iter().filter(|e| e.is_failed_request()).count(), 1);
        let VenueEvent::Backoff {
            attempt,
            retry_after_s,
            wait_s,
            reason,
            ..
        } = &events[1]
        else {
            panic!("expected a backoff, got {:?}", events[1]);
        };
        assert_eq!((*attempt, *retry_after_s), (1, Some(0.01)));
        assert!(*wait_s >= 0.01 && reason == "DDoSProtection");
        assert!(matches!(
            &events[2],
            VenueEvent::Request { outcome: RequestOutcome::Ok, endpoint, .. } if endpoint == "/api/v3/account"
        ));
    }

    #[test]
    fn errors_keep_kind_retry_after_and_state() {
        let errors = errors();
        let kinds: Vec<&str> = errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "not_cancellable",
                "rate_limited",
                "rejected",
                "unknown_order",
                "unknown_symbol",
                "rule_violation"
            ]
        );
        let state = errors[0]
            .state
            .as_deref()
            .expect("not_cancellable carries the state");
        assert_eq!(
            (state.client_order_id.as_str(), state.status),
            ("rbt-fx-1", OrderStatus::Filled)
        );
        assert_eq!(errors[1].retry_after_s, Some(120.0));
        assert!(errors[4].to_string().starts_with("unknown_symbol: "));
        let odd = VenueError::from_parts("exploded", "boom".into(), None, None);
        assert_eq!(odd.kind, VenueErrorKind::Internal);
        assert!(odd.message.contains("unknown error kind \"exploded\""));
    }

    #[test]
    fn every_kind_of_the_facade_is_known_here() {
        let kinds: Vec<String> = parse_json("kinds", fixture!("kinds")).unwrap();
        let ours: Vec<&str> = VenueErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ours);
    }

    fn intent(order_type: OrderType, tif: TimeInForce) -> OrderIntent {
        OrderIntent {
            client_order_id: "rbt-fx-2".into(),
            symbol: "BTC/USDT".into(),
            side: OrderSide::Buy,
            quantity: dec!(0.001),
            order_type,
            limit_price: (order_type == OrderType::Limit).then_some(dec!(63000.10)),
            stop_price: None,
            time_in_force: tif,
            created_at: 0,
        }
    }

    #[test]
    fn intent_json_matches_the_facades_intent() {
        let ours: serde_json::Value = serde_json::from_str(
            &intent_json(&intent(OrderType::Limit, TimeInForce::Gtc), None).unwrap(),
        )
        .unwrap();
        let theirs: serde_json::Value = parse_json("intent", fixture!("intent")).unwrap();
        assert_eq!(ours, theirs);
        let market = intent_json(
            &intent(OrderType::Market, TimeInForce::Gtc),
            Some(dec!(64000.10)),
        )
        .unwrap();
        assert!(
            market.contains(r#""reference_price":"64000.10""#),
            "{market}"
        );
        for (t, tif) in [
            (OrderType::Stop, TimeInForce::Gtc),
            (OrderType::Limit, TimeInForce::Day),
        ] {
            let err = intent_json(&intent(t, tif), None).unwrap_err();
            assert_eq!(err.kind, VenueErrorKind::RuleViolation);
        }
    }

    #[test]
    fn config_never_prints_secrets_but_hands_them_to_the_facade() {
        let mut config = VenueConfig::new(Secret::new("key-AAAA"), Secret::new("sec-BBBB"));
        config.urls = Some(VenueUrls::One("http://127.0.0.1:1/api/v3".into()));
        let printed = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
        assert!(
            !printed.contains("key-AAAA") && !printed.contains("sec-BBBB"),
            "{printed}"
        );
        let host: serde_json::Value = serde_json::from_str(&config.to_host_json()).unwrap();
        assert_eq!(
            (host["api_key"].as_str(), host["secret"].as_str()),
            (Some("key-AAAA"), Some("sec-BBBB"))
        );
        assert_eq!(host["urls"], "http://127.0.0.1:1/api/v3");
        assert!(host["rate_limit_ms"].is_null() && host["retry"].is_null());
    }

    #[test]
    fn a_stream_update_keeps_the_exact_texts_and_refuses_numbers() {
        let text = r#"{"candles":[["BTC/USDT",1000,"64000.1","64010","63990.5","64005.25","0.00100000"]],
            "events":[{"type":"connected","time_ms":5,"reason":null},
                      {"type":"disconnected","time_ms":6,"reason":"closed key-AAAA"}]}"#;
        let mut update: StreamUpdate = parse_json("a stream update", text).unwrap();
        assert_eq!(update.candles[0].symbol, "BTC/USDT");
        assert_eq!(update.candles[0].candle.close, dec!(64005.25));
        assert_eq!(update.candles[0].candle.volume.to_string(), "0.00100000");
        update.events[1].mask(&[Secret::new("key-AAAA")]);
        assert_eq!(
            update.events,
            vec![
                StreamEvent::Connected { time_ms: 5 },
                StreamEvent::Disconnected {
                    time_ms: 6,
                    reason: Some("closed ***".into())
                }
            ]
        );
        let float = r#"{"candles":[["BTC/USDT",1000,64000.1,"1","1","1","1"]],"events":[]}"#;
        let err = parse_json::<StreamUpdate>("a stream update", float).unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::Internal);
    }
}
