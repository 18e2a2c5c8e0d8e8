//! The live session's control and monitoring API (`rustybt live --api ADDR`): health,
//! readiness, status, orders, fills and Prometheus metrics; halt, resume, reconcile and
//! flatten; a WebSocket stream of the audit events. See docs/live.md, "The control API", and
//! docs/architecture.md, "The live control API".
//!
//! Thread model: the HTTP server ([`server`]) runs on its own threads and never touches the
//! session. The session publishes a [`Snapshot`] (an `Arc` swapped under a lock: after each
//! action, every [`PUBLISH_EVERY`] while the API reads them, else every [`PUBLISH_UNREAD`])
//! and every audit event into the [`Hub`]; the server reads those. Actions travel the other way as [`Command`]s on a channel the session
//! drains at its safe points (between bars and at every wait slice), and are applied by the
//! session's own thread, which answers each on its reply channel.

pub mod auth;
pub mod server;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use super::breakers::BreakerState;

/// The OpenAPI document, as checked into docs/ (served at `/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/live-api.openapi.json");

/// Shortest time between two snapshots while the API is read (a fast replay steps thousands
/// of bars a second; the API needs no more than this).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Longest time between two snapshots while nobody reads them.
pub const PUBLISH_UNREAD: Duration = Duration::from_secs(1);

/// Events kept for clients that connect late or reconnect (`/events?from=SEQ`).
pub const BACKLOG: usize = 20_000;

/// Events queued for one WebSocket client before it is dropped as too slow.
pub const CLIENT_QUEUE: usize = 4_096;

/// Whether an order's status (as the API writes it) is an open one.
pub fn is_open_status(status: &str) -> bool {
    matches!(status, "new" | "accepted" | "partially_filled")
}

/// An operator's action, applied by the session loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Halt {
        reason: String,
        cancel_open_orders: bool,
    },
    Resume,
    Reconcile,
    Flatten {
        symbol: Option<String>,
    },
    /// A book's strategy stopped (`POST /strategies/{id}/stop`).
    StopStrategy {
        id: String,
        request: crate::portfolio::StopRequest,
    },
    /// A strategy added to a book (`POST /strategies`).
    AddStrategy(Box<crate::portfolio::AddRequest>),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Halt { .. } => "halt",
            Action::Resume => "resume",
            Action::Reconcile => "reconcile",
            Action::Flatten { .. } => "flatten",
            Action::StopStrategy { .. } => "stop_strategy",
            Action::AddStrategy(_) => "add_strategy",
        }
    }

    /// The action's parameters, as the journal and the audit log record them.
    pub fn params(&self) -> Value {
        match self {
            Action::Halt {
                reason,
                cancel_open_orders,
            } => serde_json::json!({"reason": reason, "cancel_open_orders": cancel_open_orders}),
            Action::Flatten { symbol } => serde_json::json!({"symbol": symbol}),
            Action::Resume | Action::Reconcile => serde_json::json!({}),
            Action::StopStrategy { id, request } => {
                serde_json::json!({"id": id, "positions": request.positions, "to": request.to})
            }
            Action::AddStrategy(request) => serde_json::to_value(request).unwrap_or_default(),
        }
    }
}

/// An action's answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    pub fn conflict(message: impl Into<String>) -> Reply {
        Reply::error(409, message)
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: serde_json::json!({"error": message.into()}),
        }
    }
}

/// An action with the name of the token that asked, and where to answer.
pub struct Command {
    pub action: Action,
    pub by: String,
    pub reply: SyncSender<Reply>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The algorithm is being set up (`initialize`, restore, the broker's book).
    #[default]
    Starting,
    Running,
    /// The session has ended; the process writes its results and exits.
    Stopped,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PositionView {
    pub symbol: String,
    pub quantity: Decimal,
    pub cost_basis: Decimal,
    /// The last close seen (zero before the symbol's first bar in this session).
    pub mark: Decimal,
    pub realized_pnl: Decimal,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrderView {
    /// The book's strategy that placed it (absent in a single-algorithm session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub id: u64,
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub kind: &'static str,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub status: &'static str,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
    pub fees: Decimal,
    pub reason: Option<String>,
    pub submitted_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FillView {
    /// The book's strategy whose order filled (absent in a single-algorithm session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub order_id: u64,
    pub client_order_id: Option<String>,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub time: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastBar {
    pub close_time: String,
    pub received_at: String,
    /// From the bar's close to the session receiving it (a replay's is its data's age).
    pub lag_seconds: f64,
    #[serde(skip)]
    pub close_ns: i64,
    #[serde(skip)]
    pub received_ns: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reconciliation {
    pub time: String,
    /// `clean`, `synced` or `halted`.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StrategyView {
    pub algorithm: String,
    pub class: String,
    /// `starting`, `running`, `halted` (new orders refused) or `stopped`.
    pub state: &'static str,
    pub reloads: usize,
    pub last_reload_ok: Option<bool>,
}

/// One strategy of a book (`GET /strategies`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StrategySummary {
    pub id: String,
    /// `running`, `halted` (new orders refused), `stopped` (by an operator) or `failed` (its
    /// algorithm raised).
    pub state: &'static str,
    pub algorithm: String,
    pub class: String,
    pub symbols: Vec<String>,
    /// Its configured weight at rebalances.
    pub weight: Decimal,
    /// Its initial capital (at the book's start, or when it was added).
    pub allocated_capital: Decimal,
    /// Cash moved to it since (rebalances, hand-overs; negative: moved out).
    pub transfers: Decimal,
    pub cash: Decimal,
    pub equity: Decimal,
    pub positions: Vec<PositionView>,
    pub open_orders: usize,
    pub orders_total: usize,
    pub fills_total: usize,
    /// When and why it stopped.
    pub stopped_at: Option<String>,
    pub stop_reason: Option<String>,
}

/// One strategy in detail (`GET /strategies/{id}`): its summary, open orders and recent fills.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StrategyDetail {
    #[serde(flatten)]
    pub summary: StrategySummary,
    pub orders: Vec<OrderView>,
    /// Its last [`STRATEGY_FILLS`] fills.
    pub fills: Vec<FillView>,
}

/// Fills `GET /strategies/{id}` lists (the most recent; `/fills` has more).
pub const STRATEGY_FILLS: usize = 100;

/// A book's side of the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookView {
    pub strategies: Vec<StrategySummary>,
    /// Cash held outside the strategies (handed over, or the reserve of volatility
    /// targeting).
    pub unallocated: Decimal,
    pub details: Vec<StrategyDetail>,
}

/// What the API shows of the session, as of `updated_at`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub phase: Phase,
    pub run_id: i64,
    pub broker: String,
    pub feed: String,
    pub feed_connected: bool,
    pub symbols: Vec<String>,
    pub cash_currency: String,
    pub equity: Option<Decimal>,
    pub cash: Option<Decimal>,
    pub positions: Vec<PositionView>,
    pub open_orders: Vec<OrderView>,
    pub breakers: BreakerState,
    /// Why new orders are refused, while they are.
    pub halted: Option<String>,
    /// `None`: nothing to reconcile (paper) or not yet.
    pub reconciliation: Option<Reconciliation>,
    /// A paper session has no account to reconcile: it counts as reconciled.
    pub reconciled: bool,
    pub last_bar: Option<LastBar>,
    pub bars: u64,
    pub strategy: StrategyView,
    /// How the session ended, once it has.
    pub end: Option<String>,
    pub updated_at: String,
    /// The session's orders and fills so far (the lists keep the most recent).
    pub orders_total: usize,
    pub fills_total: usize,
    /// The last 1,000 orders and every open one (`/orders`).
    #[serde(skip)]
    pub orders: Arc<Vec<OrderView>>,
    /// The last 1,000 fills (`/fills`).
    #[serde(skip)]
    pub fills: Arc<Vec<FillView>>,
    /// A book's strategies (`/strategies`); `None`: one algorithm.
    #[serde(skip)]
    pub book: Option<Arc<BookView>>,
}

impl Snapshot {
    /// The orders `/orders` lists (the most recent and every open one), the open ones among them, and how many the session has.
    pub fn set_orders(&mut self, orders: Vec<OrderView>, total: usize) {
        self.open_orders = orders
            .iter()
            .filter(|o| is_open_status(o.status))
            .cloned()
            .collect();
        self.orders = Arc::new(orders);
        self.orders_total = total;
    }

    /// Ready to trade: running, the feed connected, reconciled, not halted.
    pub fn ready(&self) -> bool {
        self.phase == Phase::Running
            && self.feed_connected
            && self.reconciled
            && self.halted.is_none()
    }

    pub fn empty(broker: &str, feed: &str, symbols: &[String], algorithm: &str) -> Snapshot {
        Snapshot {
            phase: Phase::Starting,
            run_id: 0,
            broker: broker.into(),
            feed: feed.into(),
            feed_connected: false,
            symbols: symbols.to_vec(),
            cash_currency: String::new(),
            equity: None,
            cash: None,
            positions: Vec::new(),
            open_orders: Vec::new(),
            breakers: BreakerState {
                tripped: None,
                peak_equity: None,
                day: None,
                day_start_equity: None,
                last_equity: None,
                orders_in_window: 0,
                errors_in_window: 0,
                requests_in_window: 0,
            },
            halted: None,
            reconciliation: None,
            reconciled: false,
            last_bar: None,
            bars: 0,
            strategy: StrategyView {
                algorithm: algorithm.into(),
                class: String::new(),
                state: "starting",
                reloads: 0,
                last_reload_ok: None,
            },
            end: None,
            updated_at: super::audit::audit_time(super::wall_ns()),
            orders_total: 0,
            fills_total: 0,
            orders: Arc::new(Vec::new()),
            fills: Arc::new(Vec::new()),
            book: None,
        }
    }
}

/// The audit events for the WebSocket clients: a numbered backlog and the clients' queues.
#[derive(Default)]
pub struct Hub {
    next_seq: u64,
    backlog: VecDeque<(u64, Arc<str>)>,
    clients: Vec<SyncSender<Arc<str>>>,
    closed: bool,
}

impl Hub {
    /// One audit line (a JSON object) as event number `seq`: `{"seq":N,<the line's fields>}`.
    pub fn publish(&mut self, line: &str) {
        let line = line.trim_end();
        let Some(rest) = line.strip_prefix('{') else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let event: Arc<str> = Arc::from(format!("{{\"seq\":{seq},{rest}"));
        if self.backlog.len() == BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back((seq, event.clone()));
        // A client that cannot keep up is dropped (it reconnects with `from`), never waited for.
        self.clients
            .retain(|client| match client.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            });
    }

    /// A new client: the backlog from `from` on (oldest kept first), then every new event.
    pub fn subscribe(&mut self, from: Option<u64>) -> Option<Receiver<Arc<str>>> {
        if self.closed {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(CLIENT_QUEUE + BACKLOG);
        if let Some(from) = from {
            for (_, event) in self.backlog.iter().filter(|(seq, _)| *seq >= from) {
                let _ = tx.try_send(event.clone());
            }
        }
        self.clients.push(tx);
        Some(rx)
    }

    /// The session has ended: clients get what is queued, then the stream closes.
    pub fn close(&mut self) {
        self.closed = true;
        self.clients.clear();
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub unauthorized: AtomicU64,
    pub rate_limited: AtomicU64,
    pub actions: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the session and the server share.
pub struct Shared {
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// The snapshot was read since it was published (so the next one is wanted soon).
    pub read: std::sync::atomic::AtomicBool,
    pub hub: Mutex<Hub>,
    pub counters: Counters,
    pub started: Instant,
}

impl Shared {
    pub fn new(snapshot: Snapshot) -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(snapshot)),
            read: std::sync::atomic::AtomicBool::new(false),
            hub: Mutex::new(Hub::default()),
            counters: Counters::default(),
            started: Instant::now(),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.read.store(true, Ordering::Relaxed);
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_snapshot(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        self.read.store(false, Ordering::Relaxed);
    }

    /// Whether a new snapshot is due `since` the last: every [`PUBLISH_EVERY`] while the API
    /// is read, else every [`PUBLISH_UNREAD`] (an unwatched session builds almost none).
    pub fn due(&self, since: Duration) -> bool {
        since >= PUBLISH_UNREAD || (since >= PUBLISH_EVERY && self.read.load(Ordering::Relaxed))
    }

    pub fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The session's end of the API: the commands to apply and where to publish.
pub struct SessionLink {
    pub commands: Receiver<Command>,
    pub shared: Arc<Shared>,
    pub last_publish: Option<Instant>,
}

impl SessionLink {
    /// Whether a snapshot is due (see [`Shared::due`]).
    pub fn publish_due(&self) -> bool {
        self.last_publish
            .is_none_or(|t| self.shared.due(t.elapsed()))
    }

    /// The session has ended: actions still queued are answered, too late.
    pub fn refuse_queued(&self) {
        for command in self.commands.try_iter() {
            let _ = command.reply.send(Reply::conflict(
                "the session has ended; it takes no more actions",
            ));
        }
    }
}

/// Answers the operator's actions of one safe point, after the snapshot that shows them is
/// published: a client that reads right after its answer sees its own change.
pub fn answer(answers: Vec<(std::sync::mpsc::SyncSender<Reply>, Reply)>) {
    for (to, reply) in answers {
        let _ = to.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_a_late_client_gets_the_backlog_from_its_number() {
        let mut hub = Hub::default();
        hub.publish("{\"kind\":\"start\"}\n");
        hub.publish("{\"kind\":\"fill\"}");
        let late = hub.subscribe(Some(1)).unwrap();
        let live = hub.subscribe(None).unwrap();
        hub.publish("{\"kind\":\"stop\"}");
        let got: Vec<String> = late.try_iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "{\"seq\":1,\"kind\":\"fill\"}",
                "{\"seq\":2,\"kind\":\"stop\"}"
            ]
        );
        let got: Vec<String> = live.try_iter().map(|e| e.to_string()).collect();
        assert_eq!(got, ["{\"seq\":2,\"kind\":\"stop\"}"]);
        hub.close();
        assert!(hub.subscribe(None).is_none());
        assert!(late.recv().is_err(), "closing ends every stream");
    }

    #[test]
    fn the_checked_in_openapi_document_is_json_naming_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in server::ROUTES {
            assert!(
                paths.contains_key(*route),
                "{route} is not in docs/live-api.openapi.json"
            );
        }
        assert_eq!(paths.len(), server::ROUTES.len());
    }
}
