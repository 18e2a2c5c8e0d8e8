//! The audit log: `audit.jsonl`, append-only JSON Lines, one object per event:
//!
//! ```json
//! {"time":"2026-11-23T02:04:05.123456789Z","kind":"intent","fields":{"client_order_id":"rbt-7-42",...}}
//! ```
//!
//! `time` is UTC RFC 3339 with nanoseconds; `kind` one of [`AuditKind`]; `fields` an object.
//! Every string (keys and values) passes through [`mask`] before it is written, and the whole
//! line once more. Each event is one `write` on a file opened for appending, so a crash loses
//! at most the event being written; `set_sync(true)` also fsyncs each event.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::breakers::Trip;
use super::config::{Secret, mask};
use super::journal::{FillRecord, OrderIntent};
use super::reconcile::Report;
use crate::model::TimestampNs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Intent,
    Ack,
    Fill,
    OrderStatus,
    Log,
    Reload,
    Breaker,
    Reconcile,
    Error,
    Start,
    Stop,
    /// An operator's action through the control API (halt, resume, reconcile, flatten).
    Control,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit event fields must be a JSON object, got {0}")]
    NotAnObject(String),
    #[error("audit log {path} line {line} is not an audit event: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub time: String,
    pub kind: AuditKind,
    pub fields: Map<String, Value>,
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-23T02:04:05.000000001Z`.
pub fn audit_time(time: TimestampNs) -> String {
    DateTime::from_timestamp_nanos(time).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Where each written event also goes (the control API's event stream), as its masked line.
pub struct Tap(Box<dyn FnMut(&str) + Send>);

impl Tap {
    pub fn new(tap: impl FnMut(&str) + Send + 'static) -> Tap {
        Tap(Box::new(tap))
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    secrets: Vec<Secret>,
    sync: bool,
    tap: Option<Tap>,
}

fn mask_value(value: Value, secrets: &[Secret]) -> Value {
    match value {
        Value::String(s) => Value::String(mask(&s, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| mask_value(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (mask(&k, secrets), mask_value(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

impl AuditLog {
    /// Opens (creating) the log for appending. `secrets` are masked in every event.
    pub fn open(path: impl AsRef<Path>, secrets: Vec<Secret>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(AuditLog {
            file,
            path,
            secrets,
            sync: false,
            tap: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Also fsync after each event (survives power loss, costs a disk flush per event).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Hands every event written from now on (its masked line) to `tap` too.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Adds a secret to mask from now on (e.g. read after the log was opened).
    pub fn add_secret(&mut self, secret: Secret) {
        self.secrets.push(secret);
    }

    /// Appends one event. `fields` must be a JSON object.
    pub fn record(
        &mut self,
        time: TimestampNs,
        kind: AuditKind,
        fields: Value,
    ) -> Result<(), AuditError> {
        let Value::Object(fields) = mask_value(fields, &self.secrets) else {
            return Err(AuditError::NotAnObject(kind_name(kind)));
        };
        let event = AuditEvent {
            time: audit_time(time),
            kind,
            fields,
        };
        let line =
            serde_json::to_string(&event).map_err(|e| AuditError::NotAnObject(e.to_string()))?;
        // Belt and braces: a secret split by JSON escaping is caught above, a whole one here.
        let mut line = mask(&line, &self.secrets);
        line.push('\n');
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)?;
        if self.sync {
            self.file.sync_data().map_err(io)?;
        }
        if let Some(Tap(tap)) = &mut self.tap {
            tap(&line);
        }
        Ok(())
    }

    /// A log line of the algorithm (or the host).
    pub fn log(&mut self, time: TimestampNs, level: &str, message: &str) -> Result<(), AuditError> {
        self.record(
            time,
            AuditKind::Log,
            json!({"level": level, "message": message}),
        )
    }

    pub fn intent(&mut self, time: TimestampNs, intent: &OrderIntent) -> Result<(), AuditError> {
        self.record(
            time,
            AuditKind::Intent,
            json!({
                "client_order_id": intent.client_order_id,
                "symbol": intent.symbol,
                "side": intent.side.as_str(),
                "quantity": intent.quantity,
                "order_type": intent.order_type,
                "limit_price": intent.limit_price,
                "stop_price": intent.stop_price,
                "time_in_force": intent.time_in_force,
            }),
        )
    }

    pub fn ack(
        &mut self,
        time: TimestampNs,
        client_order_id: &str,
        exchange_id: &str,
    ) -> Result<(), AuditError> {
        self.record(
            time,
            AuditKind::Ack,
            json!({"client_order_id": client_order_id, "exchange_id": exchange_id}),
        )
    }

    pub fn fill(&mut self, time: TimestampNs, fill: &FillRecord) -> Result<(), AuditError> {
        let fields =
            serde_json::to_value(fill).map_err(|e| AuditError::NotAnObject(e.to_string()))?;
        self.record(time, AuditKind::Fill, fields)
    }

    pub fn breaker(&mut self, trip: &Trip) -> Result<(), AuditError> {
        self.record(
            trip.time,
            AuditKind::Breaker,
            json!({"breaker": trip.kind.as_str(), "reason": trip.reason, "detail": trip.detail}),
        )
    }

    pub fn reconcile(&mut self, report: &Report) -> Result<(), AuditError> {
        let fields =
            serde_json::to_value(report).map_err(|e| AuditError::NotAnObject(e.to_string()))?;
        self.record(report.time, AuditKind::Reconcile, fields)
    }
}

fn kind_name(kind: AuditKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Reads every event back (tests, `rustybt` tools). A torn last line (a crash mid-write) is
/// skipped; any other bad line is an error naming it.
pub fn read_events(path: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let file = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut events = Vec::new();
    let count = lines.len();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditEvent>(line) {
            Ok(event) => events.push(event),
            Err(_) if index + 1 == count && serde_json::from_str::<Value>(line).is_err() => {}
            Err(e) => {
                return Err(AuditError::BadLine {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::breakers::BreakerKind;
    use crate::live::journal::{OrderType, TimeInForce};
    use crate::live::reconcile::{AccountView, ReconcileConfig, Reconciler};
    use crate::model::OrderSide;
    use rust_decimal::dec;

    const KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    fn secrets() -> Vec<Secret> {
        vec![Secret::new(KEY), Secret::new(SECRET)]
    }

    #[test]
    fn every_kind_of_event_is_one_parseable_line_with_nanosecond_utc_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, secrets()).unwrap();
        log.set_sync(true);
        let t = 1_795_392_000_000_000_001;
        log.record(
            t,
            AuditKind::Start,
            json!({"algorithm": "algorithms/sma_cross.py", "broker": "ccxt:binance"}),
        )
        .unwrap();
        log.intent(
            t + 1,
            &OrderIntent {
                client_order_id: "rbt-7-1".into(),
                symbol: "BTC/USDT".into(),
                side: OrderSide::Buy,
                quantity: dec!(0.010),
                order_type: OrderType::Limit,
                limit_price: Some(dec!(64000.10)),
                stop_price: None,
                time_in_force: TimeInForce::Gtc,
                created_at: t,
            },
        )
        .unwrap();
        log.ack(t + 2, "rbt-7-1", "12345").unwrap();
        log.fill(
            t + 3,
            &FillRecord {
                client_order_id: "rbt-7-1".into(),
                trade_id: "99".into(),
                quantity: dec!(0.010),
                price: dec!(64000.10),
                fee: dec!(0.00001),
                fee_asset: Some("BTC".into()),
                time: t + 3,
            },
        )
        .unwrap();
        log.record(
            t + 4,
            AuditKind::OrderStatus,
            json!({"client_order_id": "rbt-7-1", "status": "filled"}),
        )
        .unwrap();
        log.log(t + 5, "info", "crossed up").unwrap();
        log.record(
            t + 6,
            AuditKind::Reload,
            json!({"file": "algorithms/sma_cross.py", "ok": true}),
        )
        .unwrap();
        log.breaker(&Trip {
            kind: BreakerKind::Manual,
            time: t + 7,
            reason: "operator".into(),
            detail: json!({}),
        })
        .unwrap();
        let report = Reconciler::new(ReconcileConfig::default())
            .unwrap()
            .reconcile(
                t + 8,
                &AccountView::default(),
                &AccountView::default(),
                &Default::default(),
            );
        log.reconcile(&report).unwrap();
        log.record(t + 9, AuditKind::Error, json!({"message": "timeout"}))
            .unwrap();
        log.record(t + 10, AuditKind::Stop, json!({"reason": "ctrl-c"}))
            .unwrap();
        drop(log);

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 11);
        assert!(text.ends_with('\n'));
        let events = read_events(&path).unwrap();
        let kinds: Vec<AuditKind> = events.iter().map(|e| e.kind).collect();
        use AuditKind::*;
        assert_eq!(
            kinds,
            vec![
                Start,
                Intent,
                Ack,
                Fill,
                OrderStatus,
                Log,
                Reload,
                Breaker,
                Reconcile,
                Error,
                Stop
            ]
        );
        assert_eq!(events[0].time, "2026-11-23T00:00:00.000000001Z");
        assert_eq!(events[1].fields["quantity"], "0.010");
        assert_eq!(events[1].fields["limit_price"], "64000.10");
        assert_eq!(events[1].fields["order_type"], "limit");
        assert_eq!(events[3].fields["fee"], "0.00001");
        assert_eq!(events[7].fields["breaker"], "manual");
        assert_eq!(events[8].fields["outcome"], "clean");

        // Appending after reopening keeps what was there.
        let mut log = AuditLog::open(&path, vec![]).unwrap();
        log.log(t + 11, "warn", "restarted").unwrap();
        assert_eq!(read_events(&path).unwrap().len(), 12);
    }

    #[test]
    fn secrets_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, vec![Secret::new(KEY)]).unwrap();
        log.add_secret(Secret::new(SECRET));
        log.log(
            1,
            "error",
            &format!("GET /api/v3/account?signature=x X-MBX-APIKEY: {KEY}"),
        )
        .unwrap();
        log.record(
            2,
            AuditKind::Error,
            json!({
                "nested": {"list": [format!("secret={SECRET}"), 5, null]},
                KEY: "a secret as a key",
                "escaped": format!("\"{SECRET}\"\n"),
            }),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(KEY) && !text.contains(SECRET), "{text}");
        assert!(!text.contains(&KEY[..40]) && !text.contains(&SECRET[..40]));
        let events = read_events(&path).unwrap();
        assert_eq!(
            events[0].fields["message"],
            "GET /api/v3/account?signature=x X-MBX-APIKEY: ***"
        );
        assert_eq!(events[1].fields["nested"]["list"][0], "secret=***");
        assert_eq!(events[1].fields["***"], "a secret as a key");
        assert_eq!(events[1].fields["escaped"], "\"***\"\n");
    }

    #[test]
    fn fields_must_be_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path().join("audit.jsonl"), vec![]).unwrap();
        let err = log
            .record(1, AuditKind::Log, json!(["not", "an", "object"]))
            .unwrap_err();
        assert!(
            err.to_string().contains("must be a JSON object") && err.to_string().contains("log"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(log.path()).unwrap(), "");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_other_bad_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, vec![]).unwrap();
        log.log(1, "info", "complete").unwrap();
        drop(log);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"time":"2026-11-23T00:00:00.000000002Z","kind":"lo"#)
            .unwrap();
        drop(file);
        assert_eq!(
            read_events(&path).unwrap().len(),
            1,
            "the torn event is the one lost"
        );

        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"time\":\"t\",\"kind\":\"nope\",\"fields\":{}}\n{\"time\":\"t\",\"kind\":\"log\",\"fields\":{}}\n").unwrap();
        let err = read_events(&bad).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = read_events(&dir.path().join("absent.jsonl")).unwrap_err();
        assert!(err.to_string().contains("absent.jsonl"), "{err}");
        let err = AuditLog::open(dir.path().join("no/such/dir/audit.jsonl"), vec![]).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
