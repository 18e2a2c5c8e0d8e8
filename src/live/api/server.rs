//! The HTTP side of the control API: tiny_http worker threads, bearer-token authentication, a
//! per-client rate limit, JSON endpoints, Prometheus text and the WebSocket event stream
//! (tungstenite over tiny_http's upgraded connection). Nothing here touches the session:
//! reads come from the published [`Snapshot`], actions go to the session as [`Command`]s.

use std::fmt::Write as _;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, StatusCode};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use super::auth::{RateLimiter, Tokens};
use super::{Action, Command, Counters, OPENAPI, Reply, SessionLink, Shared, Snapshot};
use crate::live::audit::audit_time;
use crate::live::wall_ns;

/// Every path the API serves (the OpenAPI document names exactly these).
pub const ROUTES: &[&str] = &[
    "/health",
    "/ready",
    "/status",
    "/orders",
    "/fills",
    "/metrics",
    "/halt",
    "/resume",
    "/reconcile",
    "/flatten",
    "/events",
    "/openapi.json",
    "/strategies",
    "/strategies/{id}",
    "/strategies/{id}/stop",
];

/// The route of `path` (one of [`ROUTES`]) and its `{id}`, if any.
fn route_of(path: &str) -> Option<(&'static str, Option<String>)> {
    if let Some(&route) = ROUTES.iter().find(|r| **r == path) {
        return Some((route, None));
    }
    let rest = path.strip_prefix("/strategies/")?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some(("/strategies/{id}", Some(rest.to_string()))),
        Some((id, "stop")) if !id.is_empty() => {
            Some(("/strategies/{id}/stop", Some(id.to_string())))
        }
        _ => None,
    }
}

/// Threads answering requests. An action waits for the session (up to [`ACTION_WAIT`]), so
/// a few, for the reads to go on meanwhile.
const WORKERS: usize = 4;
/// WebSocket clients at once (each has a thread).
const MAX_STREAMS: usize = 32;
/// How long an action waits for the session to apply it before answering 202 (queued).
const ACTION_WAIT: Duration = Duration::from_secs(10);
/// Largest request body read.
const MAX_BODY: u64 = 64 * 1024;
/// A WebSocket ping after this long without an event (finds dead clients).
const PING_EVERY: Duration = Duration::from_secs(15);

pub struct ApiConfig {
    pub addr: SocketAddr,
    pub tokens: Tokens,
    /// Requests a second per client address (bursts of as many).
    pub rate_limit: u32,
}

struct Context {
    shared: Arc<Shared>,
    tokens: Tokens,
    limiter: Mutex<RateLimiter>,
    commands: Sender<Command>,
    streams: Mutex<Vec<JoinHandle<()>>>,
}

/// The running server. [`ApiServer::finish`] closes the event streams (after they sent what
/// was queued) and stops the threads.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    context: Arc<Context>,
    workers: Vec<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl ApiServer {
    /// Binds `config.addr` and starts serving `snapshot` (until the session publishes).
    pub fn start(
        config: ApiConfig,
        snapshot: Snapshot,
    ) -> Result<(ApiServer, SessionLink), String> {
        let server = tiny_http::Server::http(config.addr)
            .map_err(|e| format!("the API cannot listen on {}: {e}", config.addr))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| "the API's listening address is not an IP address".to_string())?;
        let server = Arc::new(server);
        let shared = Shared::new(snapshot);
        let (tx, rx) = mpsc::channel();
        let context = Arc::new(Context {
            shared: shared.clone(),
            tokens: config.tokens,
            limiter: Mutex::new(RateLimiter::new(config.rate_limit)),
            commands: tx,
            streams: Mutex::new(Vec::new()),
        });
        let mut workers = Vec::new();
        for i in 0..WORKERS {
            let server = server.clone();
            let context = context.clone();
            let worker = std::thread::Builder::new()
                .name(format!("rustybt-api-{i}"))
                .spawn(move || {
                    for request in server.incoming_requests() {
                        handle(&context, request);
                    }
                })
                .map_err(|e| format!("starting the API's threads: {e}"))?;
            workers.push(worker);
        }
        let link = SessionLink {
            commands: rx,
            shared,
            last_publish: None,
        };
        Ok((
            ApiServer {
                server,
                context,
                workers,
                addr,
            },
            link,
        ))
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.context.shared.clone()
    }

    /// The session has ended: event streams send what is queued and close (waiting at most
    /// `grace` for slow clients), then the server stops.
    pub fn finish(self, grace: Duration) {
        self.context.shared.hub().close();
        let deadline = Instant::now() + grace;
        let streams = std::mem::take(
            &mut *self
                .context
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for stream in streams {
            while !stream.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if stream.is_finished() {
                let _ = stream.join();
            }
        }
        self.server.unblock();
        for _ in 1..WORKERS {
            self.server.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|_| {
        Header::from_bytes(&b"X-Invalid-Header"[..], &b"1"[..]).expect("a valid header")
    })
}

fn json_response(status: u16, body: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    Response::from_string(text)
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "application/json"))
}

fn error(status: u16, message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(status, &json!({"error": message}))
}

fn header_value<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// `path?a=1&b=2` → (`path`, [(a, 1), (b, 2)]).
fn split_url(url: &str) -> (&str, Vec<(&str, &str)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    (path, params)
}

fn handle(context: &Context, mut request: Request) {
    Counters::bump(&context.shared.counters.requests);
    let client = request
        .remote_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let limited = context
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take(client, Instant::now());
    if let Err(retry_after) = limited {
        Counters::bump(&context.shared.counters.rate_limited);
        let response = error(429, "too many requests: slow down")
            .with_header(header("Retry-After", &retry_after.to_string()));
        let _ = request.respond(response);
        return;
    }
    let url = request.url().to_string();
    let (path, params) = split_url(&url);
    let method = request.method().clone();
    let Some((route, id)) = route_of(path) else {
        let _ = request.respond(error(404, &format!("no such endpoint: {path}")));
        return;
    };
    // `/strategies` lists a book's strategies (GET) and adds one (POST).
    let methods: &[Method] = match route {
        "/halt" | "/resume" | "/reconcile" | "/flatten" | "/strategies/{id}/stop" => {
            &[Method::Post]
        }
        "/strategies" => &[Method::Get, Method::Post],
        _ => &[Method::Get],
    };
    let post = method == Method::Post && methods.contains(&Method::Post);
    let head = method == Method::Head && methods.contains(&Method::Get);
    if !methods.contains(&method) && !head {
        let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        let response = error(405, &format!("{path} takes {}", names.join(" or ")))
            .with_header(header("Allow", &names.join(", ")));
        let _ = request.respond(response);
        return;
    }
    // /health answers without a token: liveness probes carry no credentials, and it tells
    // nothing but that the process is alive.
    let by = if route == "/health" {
        String::new()
    } else {
        let presented = header_value(&request, "Authorization").and_then(Tokens::bearer);
        match presented.and_then(|t| context.tokens.authenticate(t.as_bytes())) {
            Some(name) => name.to_string(),
            None => {
                Counters::bump(&context.shared.counters.unauthorized);
                let message = if presented.is_some() {
                    "the bearer token is not valid"
                } else {
                    "authentication required: send `Authorization: Bearer <token>`"
                };
                let response =
                    error(401, message).with_header(header("WWW-Authenticate", "Bearer"));
                let _ = request.respond(response);
                return;
            }
        }
    };
    if route == "/events" {
        stream_events(context, request, &params);
        return;
    }
    let response = if post {
        match read_action(route, id, &mut request) {
            Ok(action) => {
                let reply = act(context, action, by);
                json_response(reply.status, &reply.body)
            }
            Err(response) => response,
        }
    } else {
        read(context, route, id.as_deref(), &params)
    };
    let _ = request.respond(response);
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HaltBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    cancel_open_orders: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FlattenBody {
    #[serde(default)]
    symbol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    positions: crate::portfolio::Disposition,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: String,
    algo: String,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    params: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default)]
    weight: Option<Value>,
    /// Absent: none now, the next rebalance funds it by `weight`.
    #[serde(default)]
    capital: Option<Value>,
    #[serde(default)]
    from: Option<String>,
}

/// A decimal amount from JSON: a string (`"25000.50"`, exact) or a number.
fn decimal_of(key: &str, value: &Value) -> Result<rust_decimal::Decimal, String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => {
            return Err(format!(
                "`{key}` must be a decimal string such as \"25000\", not {other}"
            ));
        }
    };
    text.trim()
        .parse()
        .map_err(|_| format!("`{key}`: `{text}` is not a decimal number"))
}

fn add_request(body: AddBody) -> Result<crate::portfolio::AddRequest, String> {
    Ok(crate::portfolio::AddRequest {
        id: body.id,
        algo: body.algo.into(),
        class: body.class.filter(|c| !c.is_empty()),
        params: body
            .params
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        symbols: body.symbols,
        weight: body
            .weight
            .as_ref()
            .map(|w| decimal_of("weight", w))
            .transpose()?,
        capital: body
            .capital
            .as_ref()
            .map(|c| decimal_of("capital", c))
            .transpose()?
            .unwrap_or_default(),
        from: body.from.filter(|f| !f.is_empty()),
    })
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(text).map_err(|e| format!("the request body: {e}"))
}

fn read_action(
    route: &str,
    id: Option<String>,
    request: &mut Request,
) -> Result<Action, Response<std::io::Cursor<Vec<u8>>>> {
    let mut bytes = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut bytes);
    if read.is_err() {
        return Err(error(400, "the request body could not be read"));
    }
    if bytes.len() as u64 > MAX_BODY {
        return Err(error(413, "the request body is larger than 64 KiB"));
    }
    let text = String::from_utf8(bytes).map_err(|_| error(400, "the request body is not UTF-8"))?;
    let bad = |message: String| error(400, &message);
    Ok(match route {
        "/halt" => {
            let body: HaltBody = parse_body(&text).map_err(bad)?;
            let reason = body.reason.unwrap_or_default();
            if reason.chars().count() > 500 {
                return Err(error(400, "the reason is longer than 500 characters"));
            }
            Action::Halt {
                reason,
                cancel_open_orders: body.cancel_open_orders,
            }
        }
        "/flatten" => {
            let body: FlattenBody = parse_body(&text).map_err(bad)?;
            Action::Flatten {
                symbol: body.symbol.filter(|s| !s.is_empty()),
            }
        }
        "/resume" => {
            parse_body::<EmptyBody>(&text).map_err(bad)?;
            Action::Resume
        }
        "/strategies/{id}/stop" => {
            let body: StopBody = serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "the request body: {e} (send {{\"positions\": \"close\"}} or {{\"positions\": \"hand_over\", \"to\": \"<id>\"}})"
                ))
            })?;
            Action::StopStrategy {
                id: id.unwrap_or_default(),
                request: crate::portfolio::StopRequest {
                    positions: body.positions,
                    to: body.to.filter(|t| !t.is_empty()),
                },
            }
        }
        "/strategies" => {
            let body: AddBody =
                serde_json::from_str(&text).map_err(|e| bad(format!("the request body: {e}")))?;
            Action::AddStrategy(Box::new(add_request(body).map_err(bad)?))
        }
        _ => {
            parse_body::<EmptyBody>(&text).map_err(bad)?;
            Action::Reconcile
        }
    })
}

/// Hands the action to the session and waits for its answer.
fn act(context: &Context, action: Action, by: String) -> Reply {
    Counters::bump(&context.shared.counters.actions);
    let name = action.name();
    let (tx, rx) = mpsc::sync_channel(1);
    let command = Command {
        action,
        by,
        reply: tx,
    };
    if context.commands.send(command).is_err() || context.shared.snapshot().end.is_some() {
        return Reply::conflict("the session has ended; it takes no more actions");
    }
    match rx.recv_timeout(ACTION_WAIT) {
        Ok(reply) => reply,
        Err(RecvTimeoutError::Timeout) => Reply {
            status: 202,
            body: json!({"action": name, "status": "queued", "message": "the session is busy; the action is applied at its next safe point"}),
        },
        Err(RecvTimeoutError::Disconnected) => {
            Reply::conflict("the session ended before applying the action")
        }
    }
}

fn read(
    context: &Context,
    route: &str,
    id: Option<&str>,
    params: &[(&str, &str)],
) -> Response<std::io::Cursor<Vec<u8>>> {
    let snapshot = context.shared.snapshot();
    let not_a_book = || {
        let reply = crate::live::session::session_api::not_a_book();
        json_response(reply.status, &reply.body)
    };
    match route {
        "/strategies" => match &snapshot.book {
            Some(book) => json_response(
                200,
                &json!({
                    "strategies": book.strategies,
                    "unallocated": book.unallocated,
                    "equity": snapshot.equity,
                    "cash": snapshot.cash,
                }),
            ),
            None => not_a_book(),
        },
        "/strategies/{id}" => match &snapshot.book {
            Some(book) => match book
                .details
                .iter()
                .find(|d| Some(d.summary.id.as_str()) == id)
            {
                Some(detail) => json_response(200, &json!(detail)),
                None => error(
                    404,
                    &format!(
                        "the book has no strategy `{}` (it has {})",
                        id.unwrap_or_default(),
                        book.strategies
                            .iter()
                            .map(|s| s.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            },
            None => not_a_book(),
        },
        "/health" => json_response(
            200,
            &json!({"status": "alive", "uptime_seconds": context.shared.started.elapsed().as_secs_f64()}),
        ),
        "/ready" => {
            let reasons = not_ready(&snapshot);
            let status = if reasons.is_empty() { 200 } else { 503 };
            json_response(
                status,
                &json!({"ready": reasons.is_empty(), "reasons": reasons}),
            )
        }
        "/status" => match serde_json::to_value(&*snapshot) {
            Ok(mut value) => {
                if let (Some(bar), Some(map)) = (&snapshot.last_bar, value.as_object_mut()) {
                    let age = (wall_ns() - bar.received_ns) as f64 / 1e9;
                    if let Some(last) = map.get_mut("last_bar").and_then(Value::as_object_mut) {
                        last.insert("age_seconds".into(), json!(age));
                    }
                }
                json_response(200, &value)
            }
            Err(e) => error(500, &format!("the status could not be written: {e}")),
        },
        "/orders" => {
            let which = params.iter().find(|(k, _)| *k == "status").map(|(_, v)| *v);
            let orders: Vec<&super::OrderView> = match which {
                None | Some("all") => snapshot.orders.iter().collect(),
                Some("open") => snapshot.open_orders.iter().collect(),
                Some(other) => {
                    return error(
                        400,
                        &format!("status must be `open` or `all`, not `{other}`"),
                    );
                }
            };
            json_response(
                200,
                &json!({"orders": orders, "total": snapshot.orders_total}),
            )
        }
        "/fills" => json_response(
            200,
            &json!({"fills": &*snapshot.fills, "total": snapshot.fills_total}),
        ),
        "/metrics" => Response::from_string(metrics(&snapshot, &context.shared)).with_header(
            header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
        ),
        _ => Response::from_string(OPENAPI).with_header(header("Content-Type", "application/json")),
    }
}

/// Why the session is not ready (empty: ready).
pub fn not_ready(snapshot: &Snapshot) -> Vec<String> {
    let mut reasons = Vec::new();
    match snapshot.phase {
        super::Phase::Starting => reasons.push("the session is starting".to_string()),
        super::Phase::Stopped => reasons.push(format!(
            "the session has ended ({})",
            snapshot.end.as_deref().unwrap_or("stopped")
        )),
        super::Phase::Running => {}
    }
    if !snapshot.feed_connected {
        reasons.push("the feed is not connected (its last request failed)".into());
    }
    if !snapshot.reconciled {
        reasons.push(match &snapshot.reconciliation {
            Some(r) => format!("the last reconciliation ({}) ended `{}`", r.time, r.outcome),
            None => "not reconciled yet".into(),
        });
    }
    if let Some(halted) = &snapshot.halted {
        reasons.push(format!("trading is halted: {halted}"));
    }
    reasons
}

/// A label value in the text exposition format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition format (version 0.0.4). Money is written from its
/// decimal text, never through a float.
pub fn metrics(snapshot: &Snapshot, shared: &Shared) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: String| vec![(String::new(), value)];
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    family(
        "rustybt_live_up",
        "gauge",
        "1 while the session process runs.",
        &one("1".into()),
    );
    family(
        "rustybt_live_ready",
        "gauge",
        "1 when running, the feed connected, reconciled and not halted.",
        &one(flag(snapshot.ready())),
    );
    family(
        "rustybt_live_halted",
        "gauge",
        "1 while new orders are refused (a breaker tripped).",
        &one(flag(snapshot.halted.is_some())),
    );
    let tripped: Vec<(String, String)> = snapshot
        .breakers
        .tripped
        .iter()
        .map(|t| {
            (
                format!("{{breaker=\"{}\"}}", t.kind.as_str()),
                "1".to_string(),
            )
        })
        .collect();
    family(
        "rustybt_live_breaker_tripped",
        "gauge",
        "The tripped breaker (absent when none is).",
        &tripped,
    );
    let currency = label(&snapshot.cash_currency);
    if let Some(equity) = snapshot.equity {
        family(
            "rustybt_live_equity",
            "gauge",
            "Equity in the cash currency, marked at the last close.",
            &[(
                format!("{{currency=\"{currency}\"}}"),
                equity.normalize().to_string(),
            )],
        );
    }
    if let Some(cash) = snapshot.cash {
        family(
            "rustybt_live_cash",
            "gauge",
            "Cash in the cash currency.",
            &[(
                format!("{{currency=\"{currency}\"}}"),
                cash.normalize().to_string(),
            )],
        );
    }
    let positions: Vec<(String, String)> = snapshot
        .positions
        .iter()
        .map(|p| {
            (
                format!("{{symbol=\"{}\"}}", label(&p.symbol)),
                p.quantity.normalize().to_string(),
            )
        })
        .collect();
    family(
        "rustybt_live_position",
        "gauge",
        "Position quantity per symbol.",
        &positions,
    );
    if let Some(book) = &snapshot.book {
        let per = |value: fn(&super::StrategySummary) -> String| -> Vec<(String, String)> {
            book.strategies
                .iter()
                .map(|s| (format!("{{strategy=\"{}\"}}", label(&s.id)), value(s)))
                .collect()
        };
        family(
            "rustybt_live_strategy_equity",
            "gauge",
            "A book's strategy's equity in the cash currency.",
            &per(|s| s.equity.normalize().to_string()),
        );
        family(
            "rustybt_live_strategy_running",
            "gauge",
            "1 while a book's strategy runs (0: stopped or failed).",
            &per(|s| u8::from(matches!(s.state, "running" | "halted")).to_string()),
        );
        family(
            "rustybt_live_unallocated_cash",
            "gauge",
            "A book's cash held outside its strategies.",
            &one(book.unallocated.normalize().to_string()),
        );
    }
    family(
        "rustybt_live_open_orders",
        "gauge",
        "Orders open now.",
        &one(snapshot.open_orders.len().to_string()),
    );
    family(
        "rustybt_live_orders_total",
        "counter",
        "Orders placed this session.",
        &one(snapshot.orders_total.to_string()),
    );
    family(
        "rustybt_live_fills_total",
        "counter",
        "Fills this session.",
        &one(snapshot.fills_total.to_string()),
    );
    family(
        "rustybt_live_bars_total",
        "counter",
        "Bars processed this session.",
        &one(snapshot.bars.to_string()),
    );
    if let Some(bar) = &snapshot.last_bar {
        family(
            "rustybt_live_last_bar_close_timestamp_seconds",
            "gauge",
            "Close time of the last bar processed (Unix seconds).",
            &one(format!("{}", bar.close_ns as f64 / 1e9)),
        );
        family(
            "rustybt_live_last_bar_lag_seconds",
            "gauge",
            "From the last bar's close to its arrival in the session.",
            &one(format!("{}", bar.lag_seconds)),
        );
        family(
            "rustybt_live_last_bar_age_seconds",
            "gauge",
            "Since the last bar arrived.",
            &one(format!("{}", (wall_ns() - bar.received_ns) as f64 / 1e9)),
        );
    }
    family(
        "rustybt_live_feed_connected",
        "gauge",
        "1 while the feed's last request succeeded.",
        &one(flag(snapshot.feed_connected)),
    );
    family(
        "rustybt_live_reconciled",
        "gauge",
        "1 when the last reconciliation was clean or synced (paper: always).",
        &one(flag(snapshot.reconciled)),
    );
    let counters = &shared.counters;
    let load =
        |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed).to_string();
    family(
        "rustybt_live_api_requests_total",
        "counter",
        "Requests the API received.",
        &one(load(&counters.requests)),
    );
    family(
        "rustybt_live_api_unauthorized_total",
        "counter",
        "Requests refused for a missing or wrong token.",
        &one(load(&counters.unauthorized)),
    );
    family(
        "rustybt_live_api_rate_limited_total",
        "counter",
        "Requests refused by the rate limit.",
        &one(load(&counters.rate_limited)),
    );
    family(
        "rustybt_live_api_actions_total",
        "counter",
        "Actions (halt, resume, reconcile, flatten) asked for.",
        &one(load(&counters.actions)),
    );
    let hub = shared.hub();
    let (events, clients) = (hub.next_seq(), hub.clients());
    drop(hub);
    family(
        "rustybt_live_audit_events_total",
        "counter",
        "Audit events this session.",
        &one(events.to_string()),
    );
    family(
        "rustybt_live_event_stream_clients",
        "gauge",
        "WebSocket clients of /events.",
        &one(clients.to_string()),
    );
    out
}

/// `/events`: the audit events as WebSocket text messages, one JSON object each.
fn stream_events(context: &Context, request: Request, params: &[(&str, &str)]) {
    let key = header_value(&request, "Sec-WebSocket-Key").map(str::to_string);
    let upgrade =
        header_value(&request, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let Some(key) = key.filter(|_| upgrade) else {
        // (tiny_http drops an `Upgrade` header from ordinary responses.)
        let response = error(
            426,
            "/events is a WebSocket: connect with a WebSocket client",
        );
        let _ = request.respond(response);
        return;
    };
    let from = match params
        .iter()
        .find(|(k, _)| *k == "from")
        .map(|(_, v)| v.parse::<u64>())
    {
        None => None,
        Some(Ok(from)) => Some(from),
        Some(Err(_)) => {
            let _ = request.respond(error(400, "from must be an event number (0 or more)"));
            return;
        }
    };
    let mut streams = context.streams.lock().unwrap_or_else(|p| p.into_inner());
    streams.retain(|s| !s.is_finished());
    if streams.len() >= MAX_STREAMS {
        let _ = request
            .respond(error(429, "too many event streams").with_header(header("Retry-After", "5")));
        return;
    }
    let Some(events) = context.shared.hub().subscribe(from) else {
        let _ = request.respond(error(409, "the session has ended"));
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = Response::empty(StatusCode(101))
        .with_header(header("Upgrade", "websocket"))
        .with_header(header("Connection", "Upgrade"))
        .with_header(header("Sec-WebSocket-Accept", &accept));
    let stream = request.upgrade("websocket", response);
    let thread = std::thread::Builder::new()
        .name("rustybt-api-events".into())
        .spawn(move || {
            let mut socket = WebSocket::from_raw_socket(stream, Role::Server, None);
            loop {
                match events.recv_timeout(PING_EVERY) {
                    Ok(event) => {
                        if socket.send(Message::text(event.to_string())).is_err() {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if socket.send(Message::Ping(Default::default())).is_err() {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let _ = socket.close(None);
            let _ = socket.flush();
        });
    if let Ok(thread) = thread {
        streams.push(thread);
    }
}

/// When the session published last (for `/status`'s `updated_at`).
pub fn now_text() -> String {
    audit_time(wall_ns())
}
