//! A session's start from its state folder: the journal opened and recovered (a run that
//! died closed as such, the paper orders it left open taken back, the breakers restored), the new
//! run started, and what the session needs to continue where the last one stopped (earlier
//! fills, the feed mark, the algorithm's state, the exchange orders to resolve and adopt).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rust_decimal::Decimal;

use super::audit::{AuditKind, AuditLog};
use super::breakers::{BreakerError, Breakers};
use super::config::{LiveSettings, Secret};
use super::error::LiveError;
use super::journal::{
    self, Book, FillRecord, Journal, JournaledOrder, OrderUpdate, RunStart, SnapshotCheck,
};
use super::storage::journal_error;
use super::wall_ns;
use crate::accounting::Ledger;
use crate::engine::{SharedSession, lock};
use crate::error::Error;
use crate::market::Market;
use crate::model::{Fill, OrderId, OrderSide, OrderStatus, TimestampNs};

/// What a session says about itself in the journal's run record and the audit log.
pub struct SessionStart<'a> {
    pub algorithm: String,
    /// `paper` or `ccxt:<id>`.
    pub broker: &'a str,
    pub paper: bool,
    pub symbols: &'a [String],
    pub timeframe: &'a str,
    pub cash_currency: &'a str,
    pub initial_cash: Decimal,
    pub reset_breaker: bool,
    pub secrets: Vec<Secret>,
    /// Where every audit event also goes from the first (the control API's event stream).
    pub audit_tap: Option<crate::live::audit::Tap>,
    /// The strategy ids of a book (`--portfolio`); `None` for one algorithm.
    pub strategies: Option<&'a [String]>,
}

/// The crash-safe side of a session: journal, audit log, breakers, and what was recovered.
pub struct State {
    pub journal: Journal,
    pub journal_path: PathBuf,
    pub audit: AuditLog,
    pub breakers: Breakers,
    pub state_dir: PathBuf,
    pub run_id: i64,
    /// Client order ids of this run start with it (`r<run>-…`).
    pub prefix: String,
    pub cash_currency: String,
    /// Restored from the journal at start, applied after `initialize`.
    pub algo_state: Option<journal::AlgoState>,
    /// Bars closing at or before this were traded by an earlier session of this journal.
    pub resume_after: Option<TimestampNs>,
    /// Fills of earlier sessions, replayed into the paper ledger at start.
    pub earlier_fills: Vec<(String, String, FillRecord)>,
    pub initial_cash: Option<Decimal>,
    /// From the recovery, for an exchange broker: orders to resolve and to adopt.
    pub unresolved: Vec<JournaledOrder>,
    pub open_orders: Vec<JournaledOrder>,
    pub last_trade_ids: BTreeMap<String, String>,
    /// For a paper broker: the open orders of the last checkpoint (client order id, the
    /// engine's order as JSON), to take back.
    pub paper_orders: Vec<(String, String)>,
    /// A book's: each strategy's open paper orders, algorithm state and last book snapshot,
    /// and the book's own state (JSON), from the last checkpoint.
    pub strategy_orders: BTreeMap<String, Vec<(String, String)>>,
    pub strategy_states: BTreeMap<String, journal::AlgoState>,
    pub book_state: Option<String>,
    /// A book's strategies added by operators in earlier sessions: (id, request JSON), in
    /// the order they were added (after the file's in the book).
    pub added: Vec<(String, String)>,
}

impl State {
    pub fn open(settings: &LiveSettings, start: SessionStart<'_>) -> Result<State, Error> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|source| Error::Io {
            context: "cannot create the state folder",
            path: settings.state_dir.clone(),
            source,
        })?;
        let journal_path = settings.journal_path();
        let mut audit = AuditLog::open(settings.audit_path(), start.secrets)
            .map_err(|e| Error::usage(e.to_string()))?;
        if let Some(tap) = start.audit_tap {
            audit.set_tap(tap);
        }
        // A storage condition (locked, I/O, full, read-only…) is reported as such; other
        // journal errors at start are the user's (not a rustybt journal, a newer schema).
        let failed = |e: journal::JournalError| journal_error(e, &journal_path, Error::usage);
        let mut journal = Journal::open(&journal_path).map_err(failed)?;
        // A book is its file's strategies, then those operators added (in order).
        let added = match start.strategies {
            Some(_) => journal.added_strategies().map_err(failed)?,
            None => Vec::new(),
        };
        let strategies: Option<Vec<String>> = start.strategies.map(|ids| {
            ids.iter()
                .cloned()
                .chain(added.iter().map(|(id, _)| id.clone()))
                .collect()
        });
        refuse_other_kind(&journal, strategies.as_deref(), &settings.state_dir).map_err(
            |e| match e {
                Refusal::Journal(e) => failed(e),
                Refusal::Usage(e) => e,
            },
        )?;
        // Only a paper session may group commits (see `Journal::set_durable`).
        journal.set_durable(!start.paper).map_err(failed)?;
        let now = wall_ns();
        let recovery = journal
            .recover(now, settings.max_state_age_ns)
            .map_err(failed)?;
        let mut paper_orders = Vec::new();
        let mut strategy_orders: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        if start.paper {
            let saved = journal.paper_orders_by_strategy().map_err(failed)?;
            let kept: std::collections::HashSet<String> =
                saved.iter().map(|(_, id, _)| id.clone()).collect();
            for (strategy, id, order) in saved {
                match strategy {
                    Some(strategy) => strategy_orders
                        .entry(strategy)
                        .or_default()
                        .push((id, order)),
                    None => paper_orders.push((id, order)),
                }
            }
            cancel_paper_orders(
                &mut journal,
                recovery
                    .unresolved
                    .iter()
                    .chain(&recovery.open_orders)
                    .filter(|o| !kept.contains(&o.client_order_id)),
                now,
            )
            .map_err(failed)?;
        }
        let mut breaker_journal = Journal::open(&journal_path).map_err(failed)?;
        breaker_journal.set_durable(!start.paper).map_err(failed)?;
        let breaker_failed = |e: BreakerError| match e {
            BreakerError::Journal(e) => failed(e),
            other => Error::usage(other.to_string()),
        };
        let mut breakers = Breakers::new(settings.breakers.clone(), Some(breaker_journal))
            .map_err(breaker_failed)?;
        if start.reset_breaker {
            match breakers.reset(now, "rustybt live --reset-breaker") {
                Ok(Some(trip)) => errln!("breaker reset: {trip}"),
                Ok(None) => errln!("no breaker was tripped"),
                Err(e) => return Err(breaker_failed(e)),
            }
        }
        // A session that died without a clean stop (kill -9, power loss) says so.
        if let Some(last) = recovery
            .last_run
            .as_ref()
            .filter(|r| r.stopped_at.is_none())
        {
            journal
                .end_run(
                    last.id,
                    now,
                    "ended without a clean stop (killed or crashed)",
                )
                .map_err(failed)?;
            errln!(
                "the previous session (run {}) ended without a clean stop; recovering from the journal",
                last.id
            );
        }
        let run_id = journal
            .start_run(&RunStart {
                started_at: now,
                algorithm: start.algorithm.clone(),
                broker: start.broker.to_string(),
                symbols: start.symbols.to_vec(),
                cash_currency: start.cash_currency.to_string(),
                initial_cash: start.initial_cash,
                strategies: strategies.clone(),
            })
            .map_err(failed)?;
        let _ = audit.record(
            now,
            AuditKind::Start,
            serde_json::json!({
                "run": run_id,
                "algorithm": start.algorithm,
                "broker": start.broker,
                "symbols": start.symbols,
                "timeframe": start.timeframe,
            }),
        );
        let earlier_fills = journal.fills().map_err(failed)?;
        let initial_cash = journal.initial_cash().map_err(failed)?;
        let resume_after = journal.feed_mark().map_err(failed)?;
        let mut strategy_states = BTreeMap::new();
        for id in strategies.as_deref().unwrap_or_default() {
            if let Some(state) = journal
                .algo_state_of(id, now, settings.max_state_age_ns)
                .map_err(failed)?
            {
                strategy_states.insert(id.clone(), state);
            }
        }
        let book_state = match start.strategies {
            Some(_) => journal.book_state().map_err(failed)?,
            None => None,
        };
        if let Some(state) = &recovery.algo_state
            && state.stale
        {
            errln!(
                "warning: the saved algorithm state is {} old (older than [live] max_state_age); restoring it anyway",
                format_duration(state.age_ns)
            );
        }
        if let SnapshotCheck::Mismatch { .. } = recovery.snapshot {
            errln!(
                "warning: the engine's last book snapshot differs from the journal's fills; the journal wins"
            );
        }
        Ok(State {
            state_dir: settings.state_dir.clone(),
            unresolved: recovery.unresolved,
            open_orders: recovery.open_orders,
            last_trade_ids: recovery.last_trade_ids,
            paper_orders,
            strategy_orders,
            strategy_states,
            book_state,
            added,
            journal,
            journal_path,
            audit,
            breakers,
            run_id,
            prefix: format!("r{run_id}"),
            cash_currency: start.cash_currency.to_string(),
            algo_state: recovery.algo_state,
            resume_after,
            earlier_fills,
            initial_cash,
        })
    }

    pub fn finish(&mut self, reason: &str) -> Result<(), Error> {
        let now = wall_ns();
        self.journal
            .end_run(self.run_id, now, reason)
            .map_err(|e| {
                journal_error(e, &self.journal_path, |m| {
                    Error::Internal(format!("journaling the end of the run: {m}"))
                })
            })?;
        let _ = self.audit.record(
            now,
            AuditKind::Stop,
            serde_json::json!({"run": self.run_id, "reason": reason}),
        );
        Ok(())
    }

    /// An order's new status, into the journal and the audit log.
    pub fn record_status(&mut self, update: &OrderUpdate) -> Result<(), LiveError> {
        self.journal.record_status(update)?;
        audit_status(&mut self.audit, update.time, update);
        Ok(())
    }
}

enum Refusal {
    Journal(journal::JournalError),
    Usage(Error),
}

/// A state folder belongs to one algorithm or to one book (its strategies): a book's journal
/// splits its orders, fills and states by strategy, one algorithm's does not, so neither can
/// continue the other's.
fn refuse_other_kind(
    journal: &Journal,
    strategies: Option<&[String]>,
    state_dir: &std::path::Path,
) -> Result<(), Refusal> {
    let Some(last) = journal.runs().map_err(Refusal::Journal)?.pop() else {
        return Ok(());
    };
    let describe = |s: Option<&[String]>| match s {
        None => "one algorithm".to_string(),
        Some(ids) => format!("a book of strategies {}", ids.join(", ")),
    };
    if last.strategies.as_deref() == strategies {
        return Ok(());
    }
    Err(Refusal::Usage(Error::usage_with_hint(
        format!(
            "the state folder `{}` was made by a session of {} (run {}); this session hosts {}",
            state_dir.display(),
            describe(last.strategies.as_deref()),
            last.id,
            describe(strategies)
        ),
        "start with the same algorithm or portfolio file as before, or give this session its own \
         --state folder",
    )))
}

/// A paper order lives in its process: one the journal holds open but the last checkpoint does
/// not (a journal written before paper orders were saved) is gone with the process that placed
/// it. (An exchange's orders are resolved and adopted by the exchange broker.)
fn cancel_paper_orders<'a>(
    journal: &mut Journal,
    orders: impl Iterator<Item = &'a JournaledOrder>,
    now: TimestampNs,
) -> Result<(), journal::JournalError> {
    for order in orders {
        journal.record_status(&OrderUpdate {
            client_order_id: order.client_order_id.clone(),
            time: now,
            status: OrderStatus::Cancelled,
            filled_quantity: order.filled(),
            exchange_id: order.exchange_id.clone(),
            reason: Some("the paper session that placed it ended".into()),
        })?;
    }
    Ok(())
}

/// The paper ledger a restart continues with: `initial` cash (the journal's genesis) and the
/// earlier sessions' `fills` (symbol, side, record) replayed in journal order. Trades they
/// closed belong to the earlier sessions' results, so they are forgotten here.
pub fn restore_ledger(
    market: &Market,
    initial: Decimal,
    fills: &[(String, String, FillRecord)],
) -> Result<Ledger, LiveError> {
    let mut ledger = Ledger::new(initial, market.symbol_count());
    for (symbol, side, record) in fills {
        let Some(id) = market.symbol_id(symbol) else {
            return Err(LiveError::UnlistedSymbol {
                symbol: symbol.clone(),
                what: "fills".into(),
            });
        };
        ledger.apply_fill(&Fill {
            order_id: OrderId(0),
            symbol: id,
            side: if side == "buy" {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            },
            quantity: record.quantity,
            price: record.price,
            fee: record.fee,
            slippage: Decimal::ZERO,
            time: record.time,
        })?;
    }
    ledger.forget_closed_trades();
    Ok(ledger)
}

/// An order's new status in the audit log (the journal has it too).
pub fn audit_status(audit: &mut AuditLog, wall: TimestampNs, update: &OrderUpdate) {
    let _ = audit.record(
        wall,
        AuditKind::OrderStatus,
        serde_json::json!({
            "client_order_id": update.client_order_id,
            "status": update.status.as_str(),
            "filled_quantity": update.filled_quantity.to_string(),
            "exchange_id": update.exchange_id,
            "reason": update.reason,
        }),
    );
}

/// The engine's book in the journal's terms (for snapshots and reconciliation).
pub fn engine_book(cash_currency: &str, session: &SharedSession) -> Book {
    let s = lock(session);
    let mut book = Book::new(cash_currency, s.ledger.cash());
    for &symbol in s.ledger.open_symbols() {
        if let Some(position) = s.ledger.position(symbol)
            && !position.quantity.is_zero()
        {
            book.positions
                .insert(s.market.symbol_name(symbol).to_string(), position.quantity);
        }
    }
    book
}

/// `90s` → `1m30s`: durations as a person writes them.
pub fn format_duration(ns: i64) -> String {
    let mut secs = ns / 1_000_000_000;
    if secs == 0 {
        return format!("{}ms", ns / 1_000_000);
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}
