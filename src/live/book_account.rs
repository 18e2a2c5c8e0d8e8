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

use crate::engine::{SharedSession, lock};
use crate::execution::OrderRequest;
use crate::live::broker::Broker;
use crate::live::broker::exchange::{Execution, adopt, book_execution, shift_position};
use crate::live::error::LiveError;
use crate::live::journal::{AdjustmentShare, AdjustmentTarget, FillRecord, JournaledOrder};
use crate::live::recovery::State;
use crate::live::session::journal_intent;
use crate::live::venue::MarketRules;
use crate::model::{Fill, Order, OrderId, OrderKind, OrderSide, OrderStatus, TimestampNs};
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
    /// The strategies' new orders, not journaled yet (see [`AccountDesk::flush`]).
    pending: Vec<Pending>,
    /// Orders the book filled inside and booked itself (a hand-over): their journaled fills
    /// are not handed to the strategies again.
    inside: std::collections::HashSet<String>,
    /// The last adjustment whose shares reached the strategies and the reserve.
    adjusted: i64,
}

/// A strategy's order waiting for [`AccountDesk::flush`].
struct Pending {
    i: usize,
    order: Order,
    symbol: String,
    last_close: Option<Decimal>,
}

/// The exchange order of a group: side, quantity, and its legs (order of the group, quantity).
type NetOrder = (OrderSide, Decimal, Vec<(usize, Decimal)>);

/// Per strategy: the orders taken back at a start (order, client id).
pub type Adopted = Vec<Vec<(OrderId, String)>>;

/// What a group of orders becomes.
#[derive(Debug, PartialEq)]
struct Plan {
    /// By order of the group: the quantity crossed inside the book.
    crossed: Vec<Decimal>,
    /// The price crossed quantities fill at.
    price: Decimal,
    /// The exchange order: side, quantity, and its legs (order of the group, quantity).
    net: Option<NetOrder>,
}

/// Whether a staged order may cross inside the book, and its group's limit (`None`: market).
/// The backtest's rule ([`crate::portfolio::netting`]) with the last close in place of the
/// next bar's open (the price an exchange book crosses at): market orders cross there; limit
/// orders cross at their limit only when it is that price, where both sides would be
/// marketable alone. At any other price one side would fill alone better than the limit and
/// the other later or never, so they go out alone.
fn nettable(p: &Pending) -> Option<Option<Decimal>> {
    let close = p.last_close?;
    match p.order.kind {
        OrderKind::Market => Some(None),
        OrderKind::Limit { limit } if limit == close => Some(Some(limit)),
        _ => None,
    }
}

/// The staged orders in groups: with `netting`, nettable orders ([`nettable`]) of one symbol,
/// time in force and limit with both sides present form one group (they are netted, see
/// [`net`]); every other order is a group of its own. Groups keep the staging order of their
/// first order.
fn groups(pending: Vec<Pending>, netting: bool) -> Vec<Vec<Pending>> {
    type Key = (String, crate::model::TimeInForce, Option<Decimal>);
    let mut out: Vec<Vec<Pending>> = Vec::new();
    let mut keyed: Vec<(Key, usize)> = Vec::new();
    for p in pending {
        let key = match (netting, nettable(&p)) {
            (true, Some(limit)) => Some((p.symbol.clone(), p.order.tif, limit)),
            _ => None,
        };
        if let Some(key) = &key
            && let Some(&(_, g)) = keyed.iter().find(|(k, _)| k == key)
        {
            out[g].push(p);
            continue;
        }
        if let Some(key) = key {
            keyed.push((key, out.len()));
        }
        out.push(vec![p]);
    }
    // A group on one side only is not netted: each order goes out alone.
    let mut split = Vec::with_capacity(out.len());
    for group in out {
        let buys = group.iter().any(|p| p.order.side == OrderSide::Buy);
        let sells = group.iter().any(|p| p.order.side == OrderSide::Sell);
        if buys && sells {
            split.push(group);
        } else {
            split.extend(group.into_iter().map(|p| vec![p]));
        }
    }
    split
}

/// A group netted by `crate::portfolio::netting`'s rule: the smaller side's total crosses,
/// split over each side's orders in proportion to their quantities (`netting::allocate`);
/// what the larger side's orders still want goes to the exchange as one order (a limit
/// group's at its limit). The crossed quantities fill at the last close (the price the
/// orders were placed against, as a hand-over's; a limit group's limit). A group of one
/// order is that order.
fn net(group: &[Pending]) -> Plan {
    let price = group[0].last_close.unwrap_or_default();
    if group.len() == 1 {
        let p = &group[0];
        return Plan {
            crossed: vec![Decimal::ZERO],
            price,
            net: Some((p.order.side, p.order.quantity, vec![(0, p.order.quantity)])),
        };
    }
    let side_of = |side: OrderSide| -> Vec<usize> {
        (0..group.len())
            .filter(|&k| group[k].order.side == side)
            .collect()
    };
    let sides = [side_of(OrderSide::Buy), side_of(OrderSide::Sell)];
    let total = |side: &[usize]| {
        side.iter()
            .map(|&k| group[k].order.quantity)
            .sum::<Decimal>()
    };
    let crossing = total(&sides[0]).min(total(&sides[1]));
    let dp = group
        .iter()
        .map(|p| p.order.quantity.scale())
        .max()
        .unwrap_or(0);
    let mut crossed = vec![Decimal::ZERO; group.len()];
    for side in &sides {
        let quantities: Vec<Decimal> = side.iter().map(|&k| group[k].order.quantity).collect();
        for (&k, share) in side.iter().zip(crate::portfolio::netting::allocate(
            &quantities,
            crossing,
            dp,
        )) {
            crossed[k] = share;
        }
    }
    let larger = match total(&sides[0]) >= total(&sides[1]) {
        true => (OrderSide::Buy, &sides[0]),
        false => (OrderSide::Sell, &sides[1]),
    };
    let legs: Vec<(usize, Decimal)> = larger
        .1
        .iter()
        .map(|&k| (k, group[k].order.quantity - crossed[k]))
        .filter(|(_, q)| *q > Decimal::ZERO)
        .collect();
    let quantity: Decimal = legs.iter().map(|(_, q)| *q).sum();
    Plan {
        crossed,
        price,
        net: (quantity > Decimal::ZERO).then_some((larger.0, quantity, legs)),
    }
}

/// What the account reported since the last look, by strategy.
#[derive(Default)]
pub struct AccountNews {
    /// (strategy index, fill), in journal order.
    pub fills: Vec<(usize, Fill)>,
    pub trips: Vec<crate::live::breakers::Trip>,
    pub notices: Vec<String>,
    /// Adopted reconciliation adjustments' cash for the book's reserve (see
    /// `journal::attribute`).
    pub reserve: Decimal,
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
            pending: Vec::new(),
            inside: Default::default(),
            adjusted: 0,
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
    ) -> Result<(AccountNews, Adopted), LiveError> {
        let open: Vec<JournaledOrder> = state.open_orders.clone();
        let news = self.broker.open_book(state, &self.session)?;
        let mut out = AccountNews {
            trips: news.trips,
            notices: news.notices,
            ..Default::default()
        };
        let account_ids: HashMap<String, OrderId> = self.broker.client_ids().into_iter().collect();
        let mut adopted = vec![Vec::new(); members.len()];
        let every = state.journal.fills_after(0)?;
        let shares = state.journal.adjustment_shares_after(0)?;
        // The reserve saved at the last checkpoint holds its shares up to that checkpoint.
        let saved_upto = state.journal.book_state_adjustment_id()?;
        out.reserve = shares
            .iter()
            .filter(|a| a.strategy.is_none() && a.adjustment_id > saved_upto)
            .map(|a| a.delta)
            .sum();
        self.adjusted = state.journal.last_adjustment_id()?;
        for (i, m) in members.iter().enumerate() {
            let fills: Vec<_> = every
                .iter()
                .filter(|f| f.strategy.as_deref() == Some(m.id.as_str()))
                .collect();
            let mut own = shares
                .iter()
                .filter(|a| a.strategy.as_deref() == Some(m.id.as_str()))
                .peekable();
            {
                let mut s = lock(&m.session);
                let symbols = s.market.symbol_count();
                s.ledger = crate::accounting::Ledger::new(m.initial_capital, symbols);
                // Fills and adjustment shares in journal order (a share after the fills
                // journaled before it), as they reached the ledger live.
                for f in &fills {
                    while let Some(share) = own.next_if(|a| a.after_fill_id < f.id) {
                        adjust_position(&mut s, share)?;
                    }
                    self.book(&mut s, None, &f.symbol, f.side, &f.record, &m.id)?;
                }
                for share in own {
                    adjust_position(&mut s, share)?;
                }
                s.ledger.forget_closed_trades();
                let moved = transferred.get(i).copied().unwrap_or_default();
                if !moved.is_zero() {
                    s.ledger.adjust_cash(moved)?;
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
        // Orders open at the exchange: each strategy's part of them is its order again.
        for order in &open {
            let Some(&account) = account_ids.get(&order.client_order_id) else {
                continue;
            };
            let legs: Vec<(String, Decimal, Decimal)> = match &order.strategy {
                Some(id) => vec![(id.clone(), order.quantity, order.fills_quantity)],
                None => state.journal.order_legs(&order.client_order_id)?,
            };
            let mut route = Route {
                account,
                legs: Vec::new(),
            };
            for (strategy, quantity, filled) in legs {
                let Some(i) = members.iter().position(|m| m.id == strategy) else {
                    continue;
                };
                let part = JournaledOrder {
                    quantity,
                    fills_quantity: filled,
                    reported_filled: Decimal::ZERO,
                    ..order.clone()
                };
                if let Some(id) = adopt(&members[i].session, &part)? {
                    route.legs.push((i, id));
                    adopted[i].push((id, order.client_order_id.clone()));
                }
            }
            if !route.legs.is_empty() {
                self.routes.insert(order.client_order_id.clone(), route);
            }
        }
        self.cursor = state.journal.last_fill_id()?;
        Ok((out, adopted))
    }

    /// One of strategy `i`'s orders, for [`AccountDesk::flush`]; one `linked` to others (a
    /// bracket's entry or exits, an OCO group) is rejected at once: the exchange takes single
    /// orders only.
    pub fn stage<S>(
        &mut self,
        i: usize,
        m: &Member<S>,
        order: &Order,
        symbol: &str,
        last_close: Option<Decimal>,
        linked: bool,
    ) {
        if linked || order.parent.is_some() || order.oco_group.is_some() {
            let mut s = lock(&m.session);
            let now = s.now;
            s.orders
                .apply_venue_status(order.id, OrderStatus::Rejected, Some(LINKED.into()), now);
            return;
        }
        self.pending.push(Pending {
            i,
            order: order.clone(),
            symbol: symbol.to_string(),
            last_close,
        });
    }

    /// The staged orders out: each journaled with its strategy's id (a netted group as one
    /// exchange order with its legs, and the crossed part of each order as an internal fill
    /// at the last close), every one of them before the first is sent, so a crash while
    /// sending leaves each either at the exchange or resolvable by client id (never decided
    /// and lost). Returns (strategy, its order, client id) of each, for its state saver.
    pub fn flush<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
        netting: bool,
    ) -> Result<Vec<(usize, OrderId, String)>, LiveError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut placed = Vec::new();
        let mut outbound = Vec::new();
        for group in groups(pending, netting) {
            let plan = net(&group);
            for (k, quantity) in plan.crossed.iter().enumerate() {
                if quantity.is_zero() {
                    continue;
                }
                let p = &group[k];
                let client_id = self.cross(state, members, p, *quantity, plan.price)?;
                placed.push((p.i, p.order.id, client_id));
            }
            let Some((side, quantity, legs)) = plan.net else {
                continue;
            };
            let first = &group[legs[0].0];
            let m = &members[first.i];
            let account_order = self.mirror(first, side, quantity, m)?;
            let (strategy, journal_legs): (Option<&str>, Vec<(String, Decimal)>) = match legs.len()
            {
                1 => (Some(m.id.as_str()), Vec::new()),
                _ => (
                    None,
                    legs.iter()
                        .map(|&(k, q)| (members[group[k].i].id.clone(), q))
                        .collect(),
                ),
            };
            let intent = journal_intent(
                state,
                &account_order,
                &first.symbol,
                strategy,
                &journal_legs,
            )?;
            let client_id = intent.client_order_id.clone();
            self.routes.insert(
                client_id.clone(),
                Route {
                    account: account_order.id,
                    legs: legs
                        .iter()
                        .map(|&(k, _)| (group[k].i, group[k].order.id))
                        .collect(),
                },
            );
            for &(k, _) in &legs {
                placed.push((group[k].i, group[k].order.id, client_id.clone()));
            }
            let reference = first.order.kind.limit().or(first.last_close);
            outbound.push((account_order.id, intent, reference));
        }
        for (account, intent, reference) in outbound {
            self.broker
                .send(state, &self.session, account, &intent, reference)?;
        }
        // What the exchange said at once (a rejection, an expiry) reaches the strategies at
        // the next poll, after the fills it made before.
        Ok(placed)
    }

    /// The order in the account session that stands for an exchange order.
    fn mirror<S>(
        &mut self,
        p: &Pending,
        side: OrderSide,
        quantity: Decimal,
        m: &Member<S>,
    ) -> Result<Order, LiveError> {
        let mut s = lock(&self.session);
        let now = lock(&m.session).now;
        s.now = now;
        let Some(id) = s.market.symbol_id(&p.symbol) else {
            return Err(LiveError::UnlistedSymbol {
                symbol: p.symbol.clone(),
                what: format!("an order of strategy `{}`", m.id),
            });
        };
        let request = OrderRequest {
            symbol: id,
            side,
            quantity,
            kind: p.order.kind,
            tif: p.order.tif,
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
            .ok_or_else(|| LiveError::Engine("the account order vanished".into()))
    }

    /// The crossed part of a netted order: an internal order of its strategy, journaled
    /// filled at `price` with no fee (the other side's strategies take the other side), never
    /// sent; the fill reaches the strategy from the journal as any other.
    fn cross<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
        p: &Pending,
        quantity: Decimal,
        price: Decimal,
    ) -> Result<String, LiveError> {
        let m = &members[p.i];
        let mut order = p.order.clone();
        order.quantity = quantity;
        // Intent, acknowledgement and fill in one commit: a crash never leaves an intent a
        // restart would resolve at the exchange.
        let grouped = state.journal.group_open();
        state.journal.set_grouped(true)?;
        let intent = journal_intent(state, &order, &p.symbol, Some(&m.id), &[])?;
        let client_id = intent.client_order_id.clone();
        let wall = crate::live::wall_ns();
        state
            .journal
            .record_ack(&client_id, &format!("crossed-{client_id}"), wall)?;
        let record = FillRecord {
            client_order_id: client_id.clone(),
            trade_id: format!("crossed-{client_id}"),
            quantity,
            price,
            fee: Decimal::ZERO,
            fee_asset: None,
            time: lock(&m.session).now,
        };
        state.journal.record_fill(&record)?;
        if !grouped {
            state.journal.set_grouped(false)?;
        }
        let _ = state.audit.fill(wall, &record);
        self.routes.insert(
            client_id.clone(),
            Route {
                account: OrderId(u64::MAX),
                legs: vec![(p.i, p.order.id)],
            },
        );
        Ok(client_id)
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

    /// An order the book filled inside and booked itself (see `inside`).
    pub fn booked_inside(&mut self, client_id: &str) {
        self.inside.insert(client_id.to_string());
    }

    /// The journal's fills not yet handed to the strategies (those the book made inside:
    /// crossed orders), without asking the exchange.
    pub fn journal_fills<S>(
        &mut self,
        state: &mut State,
        members: &[Member<S>],
    ) -> Result<AccountNews, LiveError> {
        self.take_fills(state, members)
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
            if all_cancelled
                && s.orders
                    .get(route.account)
                    .is_some_and(|o| o.status.is_open())
            {
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
        let mut shares = state
            .journal
            .adjustment_shares_after(self.adjusted)?
            .into_iter()
            .peekable();
        for row in state.journal.fills_after(self.cursor)? {
            while let Some(share) = shares.next_if(|a| a.after_fill_id < row.id) {
                self.adopt_share(members, share, &mut out)?;
            }
            self.cursor = row.id;
            let Some(strategy) = row.strategy.as_deref() else {
                continue;
            };
            if self.inside.contains(&row.record.client_order_id) {
                continue;
            }
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
        for share in shares {
            self.adopt_share(members, share, &mut out)?;
        }
        Ok(out)
    }

    /// One share of an adopted adjustment: a strategy's position share into its ledger, the
    /// reserve's cash into [`AccountNews::reserve`].
    fn adopt_share<S>(
        &mut self,
        members: &[Member<S>],
        share: AdjustmentShare,
        out: &mut AccountNews,
    ) -> Result<(), LiveError> {
        self.adjusted = self.adjusted.max(share.adjustment_id);
        match &share.strategy {
            None => out.reserve += share.delta,
            Some(id) => {
                if let Some(m) = members.iter().find(|m| &m.id == id) {
                    adjust_position(&mut lock(&m.session), &share)?;
                }
            }
        }
        Ok(())
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

/// A strategy's share of an adopted adjustment into its ledger. A position share moves units
/// at the strategy's average price with that cash given back: neither its cash nor its
/// realized PnL changes, the units' value shows at the next mark. (A cash share, which the
/// rule never gives a strategy, is its cash.)
fn adjust_position(
    s: &mut crate::engine::Session,
    share: &AdjustmentShare,
) -> Result<(), LiveError> {
    let symbol = match &share.target {
        AdjustmentTarget::Cash => return Ok(s.ledger.adjust_cash(share.delta)?),
        AdjustmentTarget::Position(symbol) => symbol,
    };
    let Some(id) = s.market.symbol_id(symbol) else {
        return Err(LiveError::UnlistedSymbol {
            symbol: symbol.clone(),
            what: "a reconciliation adjustment".into(),
        });
    };
    let price = s
        .ledger
        .position(id)
        .and_then(|p| p.average_price())
        .unwrap_or_default();
    let now = s.now;
    Ok(shift_position(&mut s.ledger, id, share.delta, price, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SymbolId, TimeInForce};
    use rust_decimal::dec;

    fn staged(i: usize, side: OrderSide, quantity: Decimal, limit: Option<Decimal>) -> Pending {
        // The order as an order book makes it.
        let mut book = crate::execution::OrderBook::new(1);
        let request = OrderRequest {
            symbol: SymbolId(0),
            side,
            quantity,
            kind: match limit {
                Some(limit) => OrderKind::Limit { limit },
                None => OrderKind::Market,
            },
            tif: TimeInForce::Gtc,
            oco_group: None,
            parent: None,
        };
        let id = book.submit(request, 0, 0).unwrap();
        Pending {
            i,
            order: book.get(id).unwrap().clone(),
            symbol: "BTC/USDT".into(),
            last_close: Some(dec!(100)),
        }
    }

    fn shape(groups: &[Vec<Pending>]) -> Vec<Vec<usize>> {
        groups
            .iter()
            .map(|g| g.iter().map(|p| p.i).collect())
            .collect()
    }

    #[test]
    fn limit_orders_at_the_last_close_net_and_others_go_out_alone() {
        use OrderSide::{Buy, Sell};
        let pending = vec![
            staged(0, Buy, dec!(0.009), Some(dec!(100))),
            staged(1, Buy, dec!(0.003), Some(dec!(100))),
            staged(2, Sell, dec!(0.004), Some(dec!(100))),
            // a market sell: another group (market orders net with market orders only)
            staged(3, Sell, dec!(0.001), None),
            // limits away from the last close: alone, even on opposite sides at one price
            staged(4, Buy, dec!(0.002), Some(dec!(99))),
            staged(5, Sell, dec!(0.002), Some(dec!(99))),
        ];
        let formed = groups(pending, true);
        assert_eq!(
            shape(&formed),
            vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]
        );
        let plan = net(&formed[0]);
        // netting's rule: 0.004 crosses (a 0.003, b 0.001 of the buys), at the limit; the
        // rest goes out as one limit buy of 0.008 with legs a 0.006, b 0.002
        assert_eq!(plan.crossed, vec![dec!(0.003), dec!(0.001), dec!(0.004)]);
        assert_eq!(plan.price, dec!(100));
        assert_eq!(
            plan.net,
            Some((Buy, dec!(0.008), vec![(0, dec!(0.006)), (1, dec!(0.002))]))
        );
        // limits at different prices or without netting: every order alone
        let apart = vec![
            staged(0, Buy, dec!(0.01), Some(dec!(100))),
            staged(1, Sell, dec!(0.01), Some(dec!(101))),
        ];
        assert_eq!(shape(&groups(apart, true)), vec![vec![0], vec![1]]);
        let off = vec![
            staged(0, Buy, dec!(0.01), Some(dec!(100))),
            staged(1, Sell, dec!(0.01), Some(dec!(100))),
        ];
        assert_eq!(shape(&groups(off, false)), vec![vec![0], vec![1]]);
    }
}
