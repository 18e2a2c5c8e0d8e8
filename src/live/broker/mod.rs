//! Where a live session's orders go: one [`Broker`] trait, two brokers.
//!
//! - [`paper::PaperBroker`]: the engine's own matcher and costs fill the orders (exactly as a
//!   backtest would); the broker journals what the engine did after each step.
//! - [`exchange::ExchangeBroker`]: orders go to an exchange through a [`crate::live::venue::Venue`]
//!   and its statuses and fills come back by polling, into the journal, the engine and the
//!   algorithm; the journal is reconciled against the exchange's account.
//!
//! The session (`crate::live::session`) never asks which broker it has: where the two differ
//! (restoring the book, what happens after a step, polling, the end of the session) the trait
//! says so. Every order is journaled as an intent and marked sent by the session before
//! [`Broker::send`] is called.

pub mod exchange;
pub mod paper;

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::breakers::Trip;
use super::error::LiveError;
use super::journal::OrderIntent;
use super::recovery::State;
use crate::engine::SharedSession;
use crate::model::{Fill, OrderId, SymbolId};

/// What a broker has to tell the session: fills for the algorithm (`on_fill`), breaker trips
/// to act on, and lines for the operator.
#[derive(Debug, Default)]
pub struct News {
    pub fills: Vec<Fill>,
    pub trips: Vec<Trip>,
    pub notices: Vec<String>,
}

pub trait Broker {
    /// The engine's book at the session's start, from the journal; an exchange broker also
    /// resolves what an earlier session left unresolved and reconciles.
    fn open_book(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError>;

    /// Positions of the book not yet in the ledger: they enter it at the first close of their
    /// symbol ([`Broker::on_bar`]).
    fn unseeded(&self) -> &BTreeMap<String, Decimal>;

    /// A bar closed (`closes`: each symbol's close): positions waiting for a price enter the
    /// ledger.
    fn on_bar(
        &mut self,
        session: &SharedSession,
        closes: &[(SymbolId, Decimal)],
    ) -> Result<(), LiveError>;

    /// Why this broker cannot take an order linked to others (a bracket, an OCO group).
    fn refuses_linked(&self) -> Option<&'static str>;

    /// Whether a sent order is out of the process's hands (an exchange's): the algorithm's
    /// state that decided it is checkpointed before it is sent.
    fn sends_irrevocably(&self) -> bool;

    /// Sends one order; its intent is journaled and marked sent.
    fn send(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        order: OrderId,
        intent: &OrderIntent,
        reference_price: Option<Decimal>,
    ) -> Result<(), LiveError>;

    /// After an engine step (`fills`: the step's fills): what the engine did to this broker's
    /// orders, into the journal. Returns whether anything was journaled.
    fn after_step(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        fills: &[Fill],
    ) -> Result<bool, LiveError>;

    /// Whether a poll between bars is due (an exchange's every few seconds; paper never).
    fn poll_due(&self) -> bool;

    /// What the broker reported since the last look.
    fn poll(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError>;

    /// Client id → engine order of the orders this broker tracks (to re-bind saved handles).
    fn client_ids(&self) -> Vec<(String, OrderId)>;

    /// The open orders a checkpoint saves, to be taken back by a restart after a kill (client
    /// order id, the order as JSON); `None`: this broker's orders live elsewhere (an
    /// exchange's), and the saved ones are left as they are.
    fn open_orders_to_save(
        &self,
        _session: &SharedSession,
    ) -> Result<Option<Vec<(String, String)>>, LiveError> {
        Ok(None)
    }

    /// When the last reconciliation ran and how it ended (`clean`, `synced`, `halted`);
    /// `None` before the first, and always for a broker with no account to reconcile.
    fn last_reconciliation(&self) -> Option<(crate::model::TimestampNs, &'static str)> {
        None
    }

    /// Reconciles now (the control API's `/reconcile`); `None`: this broker has no account
    /// to reconcile against (paper).
    fn reconcile_now(
        &mut self,
        _state: &mut State,
        _session: &SharedSession,
    ) -> Result<Option<News>, LiveError> {
        Ok(None)
    }

    /// The end of the session: open orders cancelled (paper always; an exchange when the
    /// settings say so). Returns a line for the operator.
    fn close(
        &mut self,
        state: &mut State,
        session: &SharedSession,
    ) -> Result<Option<String>, LiveError>;
}

/// Test seam for the end-to-end crash tests: `RUSTYBT_LIVE_CRASH=<point>` kills the process
/// with SIGKILL at that point (no cleanup, no flush, exactly like `kill -9`). Points:
/// `before_send` (intent journaled and marked sent, nothing sent), `after_send` (the exchange
/// has the order, the acknowledgement is not journaled), `after_fill` (a fill journaled, the
/// checkpoint not yet written), `after_adjustment` (adopted reconciliation adjustments, their
/// attribution and report journaled, nothing applied in memory or checkpointed).
pub fn crash_point(point: &str) {
    if std::env::var("RUSTYBT_LIVE_CRASH").is_ok_and(|p| p == point) {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Test seam for ordering tests: `RUSTYBT_LIVE_PAUSE=<point>` sleeps 300 ms at that point, to
/// widen a window another thread could otherwise slip through only under load. Points:
/// `before_publish` (an operator's actions applied, the API's snapshot not yet published).
pub fn pause_point(point: &str) {
    if std::env::var("RUSTYBT_LIVE_PAUSE").is_ok_and(|p| p == point) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
