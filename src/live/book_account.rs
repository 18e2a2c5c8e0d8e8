//! A live book on one exchange account (`rustybt live --portfolio FILE --broker ccxt:<id>`):
//! the account's side of [`super::LiveBook`].
//!
//! One [`Broker`] (the exchange's) trades the account through an *account session*: an engine
//! session over every symbol of the book that only mirrors the orders sent to the exchange
//! (one per client order id) and the account's own book as the exchange broker keeps it.
//! Each strategy keeps its own session (sub-ledger, order book), with its orders executed
//! outside (`external_execution`). The desk's routing table says which strategy order(s) each
//! client order id stands for; fills go back to the strategies from the journal (each fill
//! row carries the strategy of its order), so a fill made while no process ran reaches its
//! strategy exactly as one polled live.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::live::broker::Broker;
use crate::live::broker::exchange::{Execution, adopt, book_execution};
use crate::live::error::LiveError;
use crate::live::journal::{FillRecord, JournalError, JournaledOrder, OrderIntent, parse_side};
use crate::live::recovery::State;
use crate::live::session::journal_intent;
use crate::live::venue::MarketRules;
use crate::engine::{SharedSession, lock};
use crate::execution::OrderRequest;
use crate::model::{Fill, Order, OrderId, OrderStatus, TimestampNs};
use crate::portfolio::Member;

/// Why the account refuses an order linked to others (the exchange broker's reason).
pub const LINKED: &str = "brackets and OCO groups are paper-only: an exchange broker sends \
                          single market and limit orders";

/// The strategy orders one client order id stands for.
#[derive(Debug, Clone)]
struct Route {
    /// The order in the account session.
    account: OrderId,
    /// (strategy index, its order).
    legs: Vec<(usize, OrderId)>,
}

/// One exchange account for a whole book.
pub struct AccountDesk {
    broker: Box<dyn Broker>,
    session: SharedSession,
    cash_asset: String,
    /// Symbol → its base asset (a fee charged in it shrinks the position).
    bases: BTreeMap<String, String>,
    routes: HashMap<String, Route>,
    /// The last journal fill row handed to the strategies.
    cursor: i64,
    /// Journaled, not sent yet: (account order, intent, reference price).
    staged: Vec<(OrderId, OrderIntent, Option<Decimal>)>,
}

/// What the account reported since the last look, by strategy.
#[derive(Default)]
pub struct AccountNews {
    /// (strategy index, fill), in journal order.
    pub fills: Vec<(usize, Fill)>,
    pub trips: Vec<crate::live::breakers::Trip>,
    pub notices: Vec<String>,
}

impl AccountDesk {
    /// `broker` trades the account; `session` is the account session (every symbol of the
    /// book, `external_execution`).
    pub fn new(
        broker: Box<dyn Broker>,
        session: SharedSession,
        cash_asset: String,
        rules: &BTreeMap<String, MarketRules>,
    ) -> Self {
        lock(&session).external_execution = true;
        AccountDesk {
            broker,
            session,
            cash_asset,
            bases: rules
                .iter()
                .map(|(symbol, r)| (symbol.clone(), r.base.clone()))
                .collect(),
            routes: HashMap::new(),
            cursor: 0,
            staged: Vec::new(),
        }
    }

    pub fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    /// The start: the exchange broker opens the account (orders an earlier session left
    /// unresolved are resolved, fills made while no session ran are journaled, open orders
    /// are tracked again, the account is reconciled); then each strategy's ledger is its
    /// genesis capital, its journaled fills and the cash moved to it (`transferred`), and its
    /// orders still open at the exchange are its orders again. Returns the notices, and the
    /// trips to act on.
    pub fn open<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
        transferred: &[Decimal],
    ) -> Result<(AccountNews, Vec<Vec<(OrderId, String)>>), LiveError> {
        let open: Vec<JournaledOrder> = state.open_orders.clone();
        let news = self.broker.open_book(state, &self.session)?;
        let mut out = AccountNews {
            trips: news.trips,
            notices: news.notices,
            ..Default::default()
        };
        let account_ids: HashMap<String, OrderId> = self.broker.client_ids().into_iter().collect();
        let mut adopted = vec![Vec::new(); members.len()];
        for (i, m) in members.iter().enumerate() {
            let fills = state.journal.fills_of(Some(&m.id))?;
            {
                let mut s = lock(&m.session);
                let symbols = s.market.symbol_count();
                s.ledger = crate::accounting::Ledger::new(m.initial_capital, symbols);
                for (symbol, side, record) in &fills {
                    let side = parse_side(side).ok_or_else(|| {
                        JournalError::Corrupt(format!("fill side `{side}`"))
                    })?;
                    self.book(&mut s, None, symbol, side, record, &m.id)?;
                }
                s.ledger.forget_closed_trades();
                let moved = transferred.get(i).copied().unwrap_or_default();
                if !moved.is_zero() {
                    s.ledger.adjust_cash(moved)?;
                }
            }
            for order in open
                .iter()
                .filter(|o| o.strategy.as_deref() == Some(m.id.as_str()))
            {
                let Some(&account) = account_ids.get(&order.client_order_id) else {
                    continue;
                };
                if let Some(id) = adopt(&m.session, order)? {
                    self.routes.insert(
                        order.client_order_id.clone(),
                        Route {
                            account,
                            legs: vec![(i, id)],
                        },
                    );
                    adopted[i].push((id, order.client_order_id.clone()));
                }
            }
            if !fills.is_empty() {
                out.notices.push(format!(
                    "strategy `{}`: restored from {} journaled fills: cash {}",
                    m.id,
                    fills.len(),
                    lock(&m.session).ledger.cash()
                ));
            }
        }
        self.cursor = state.journal.last_fill_id()?;
        Ok((out, adopted))
    }

    /// One of strategy `i`'s orders: mirrored in the account session, its intent journaled
    /// with the strategy's id and marked sent, and queued for [`AccountDesk::flush`]. Every
    /// order of a bar is journaled before the first is sent, so a crash while sending leaves
    /// each either at the exchange or resolvable by client id (never decided and lost).
    /// Returns the client id, or `None` when it was refused before anything was journaled
    /// (an order linked to others).
    pub fn stage<S>(
        &mut self,
        state: &mut State,
        i: usize,
        m: &Member<S>,
        order: &Order,
        symbol: &str,
        last_close: Option<Decimal>,
    ) -> Result<Option<String>, LiveError> {
        if order.parent.is_some() || order.oco_group.is_some() {
            let mut s = lock(&m.session);
            let now = s.now;
            s.orders
                .apply_venue_status(order.id, OrderStatus::Rejected, Some(LINKED.into()), now);
            return Ok(None);
        }
        let account_order = {
            let mut s = lock(&self.session);
            let now = lock(&m.session).now;
            s.now = now;
            let Some(id) = s.market.symbol_id(symbol) else {
                return Err(LiveError::UnlistedSymbol {
                    symbol: symbol.to_string(),
                    what: format!("an order of strategy `{}`", m.id),
                });
            };
            let request = OrderRequest {
                symbol: id,
                side: order.side,
                quantity: order.quantity,
                kind: order.kind,
                tif: order.tif,
                oco_group: None,
                parent: None,
            };
            let account = s
                .orders
                .submit_with_reason(request, now, 0, &format!("strategy `{}`", m.id))
                .map_err(|e| LiveError::Engine(e.to_string()))?;
            s.orders
                .get(account)
                .cloned()
                .ok_or_else(|| LiveError::Engine("the account order vanished".into()))?
        };
        let intent = journal_intent(state, &account_order, symbol, Some(&m.id))?;
        let client_id = intent.client_order_id.clone();
        self.routes.insert(
            client_id.clone(),
            Route {
                account: account_order.id,
                legs: vec![(i, order.id)],
            },
        );
        let reference = order.kind.limit().or(last_close);
        self.staged.push((account_order.id, intent, reference));
        Ok(Some(client_id))
    }

    /// The staged orders to the exchange, in the order they were staged; one the exchange
    /// refuses at once is rejected in its strategy's order book too.
    pub fn flush<S>(&mut self, state: &mut State, members: &[Member<S>]) -> Result<(), LiveError> {
        for (account, intent, reference) in std::mem::take(&mut self.staged) {
            self.broker
                .send(state, &self.session, account, &intent, reference)?;
        }
        self.pass_statuses(members);
        Ok(())
    }

    pub fn poll_due(&self) -> bool {
        self.broker.poll_due()
    }

    /// What the exchange reported since the last look: cancels the strategies asked for go
    /// out, statuses and fills come in, each fill to the strategy whose order it filled.
    pub fn poll<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
        now: TimestampNs,
    ) -> Result<AccountNews, LiveError> {
        lock(&self.session).now = now;
        self.withdraw(members, now);
        let news = self.broker.poll(state, &self.session)?;
        let mut out = self.take_fills(state, members)?;
        out.trips = news.trips;
        out.notices = news.notices;
        self.pass_statuses(members);
        Ok(out)
    }

    /// Reconciles the account now (the control API's `/reconcile`).
    pub fn reconcile_now<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
    ) -> Result<AccountNews, LiveError> {
        let news = self
            .broker
            .reconcile_now(state, &self.session)?
            .unwrap_or_default();
        let mut out = self.take_fills(state, members)?;
        out.trips = news.trips;
        out.notices = news.notices;
        Ok(out)
    }

    /// The end of the session: the exchange broker's (open orders cancelled when the
    /// settings say so).
    pub fn close(&mut self, state: &mut State) -> Result<Option<String>, LiveError> {
        self.broker.close(state, &self.session)
    }

    /// Orders a strategy cancelled that are open at the exchange: cancelled in the account
    /// session, which the exchange broker's next poll cancels at the exchange.
    fn withdraw<S>(&mut self, members: &[Member<S>], now: TimestampNs) {
        let mut s = lock(&self.session);
        for route in self.routes.values() {
            let all_cancelled = route.legs.iter().all(|&(i, id)| {
                lock(&members[i].session)
                    .orders
                    .get(id)
                    .is_some_and(|o| o.status == OrderStatus::Cancelled)
            });
            if all_cancelled && s.orders.get(route.account).is_some_and(|o| o.status.is_open()) {
                s.orders.apply_venue_status(
                    route.account,
                    OrderStatus::Cancelled,
                    Some("cancelled by its strategy".into()),
                    now,
                );
            }
        }
    }

    /// A final status the exchange gave an order (other than filled) onto the strategy orders
    /// it stands for.
    fn pass_statuses<S>(&self, members: &[Member<S>]) {
        let s = lock(&self.session);
        for route in self.routes.values() {
            let Some(account) = s.orders.get(route.account) else {
                continue;
            };
            if account.status.is_open() || account.status == OrderStatus::Filled {
                continue;
            }
            for &(i, id) in &route.legs {
                let mut own = lock(&members[i].session);
                let now = own.now;
                if own.orders.get(id).is_some_and(|o| o.status.is_open()) {
                    own.orders
                        .apply_venue_status(id, account.status, account.reason.clone(), now);
                }
            }
        }
    }

    /// The journal's fills since the last look, each into the ledger and order book of the
    /// strategy whose order it filled.
    fn take_fills<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
    ) -> Result<AccountNews, LiveError> {
        let mut out = AccountNews::default();
        for row in state.journal.fills_after(self.cursor)? {
            self.cursor = row.id;
            let Some(strategy) = row.strategy.as_deref() else {
                continue;
            };
            let Some(i) = members.iter().position(|m| m.id == strategy) else {
                continue;
            };
            let order = self
                .routes
                .get(&row.record.client_order_id)
                .and_then(|r| r.legs.iter().find(|(k, _)| *k == i))
                .map(|&(_, id)| id);
            let mut s = lock(&members[i].session);
            let fill = self.book(&mut s, order, &row.symbol, row.side, &row.record, strategy)?;
            out.fills.push((i, fill));
        }
        Ok(out)
    }

    /// One journaled execution into a strategy's session.
    fn book(
        &self,
        s: &mut crate::engine::Session,
        order: Option<OrderId>,
        symbol: &str,
        side: crate::model::OrderSide,
        record: &FillRecord,
        strategy: &str,
    ) -> Result<Fill, LiveError> {
        let Some(id) = s.market.symbol_id(symbol) else {
            return Err(LiveError::UnlistedSymbol {
                symbol: symbol.to_string(),
                what: format!("fills of strategy `{strategy}`"),
            });
        };
        let execution = Execution {
            symbol: id,
            side,
            quantity: record.quantity,
            price: record.price,
            fee: record.fee,
            fee_asset: record.fee_asset.as_deref(),
            time: record.time,
        };
        book_execution(
            s,
            order,
            &execution,
            &self.cash_asset,
            self.bases.get(symbol).map(String::as_str),
        )
    }
}
