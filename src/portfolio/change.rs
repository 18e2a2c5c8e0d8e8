//! Changes an operator makes to a running book (a live book's control API; docs/live.md,
//! "Changing a running book"): a strategy stopped, its positions closed by market orders or
//! handed over with its cash, and a strategy added. No pyo3: the caller builds an added
//! strategy's algorithm and session.
//!
//! Every move keeps the account exact: the sub-ledgers plus the unallocated cash (the book's
//! reserve) hold the same Decimal before and after. A hand-over books each position into the
//! receiving strategy at the symbol's last close, as a pair of internal orders filled at once
//! with no costs (the giver realizes its PnL up to that price, the receiver's PnL starts
//! there, as a desk's internal transfer does), then moves the cash. The receiver's
//! time-weighted units take the value in as capital, not as return.

use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::book::{AllocationRow, BookRules, BookStepper, Member, refresh};
use super::config::StrategySpec;
use super::risk::MemberRisk;
use crate::engine::{Strategy, lock};
use crate::execution::OrderRequest;

use crate::market::Market;
use crate::model::{Fill, OrderId, OrderSide, SymbolId, TimestampNs, format_timestamp};

/// What happens to the positions of a strategy an operator stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Market orders close them at the next bar, through the normal checks; the proceeds
    /// stay in the strategy's sub-ledger (hand them over later with `HandOver`).
    Close,
    /// They move at once, at the last close, with the cash, to another strategy; a strategy
    /// without positions can hand its cash to the unallocated cash.
    HandOver,
}

/// `POST /strategies/{id}/stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRequest {
    pub positions: Disposition,
    /// Hand-over: the strategy that receives; `None`: the unallocated cash (cash only).
    #[serde(default)]
    pub to: Option<String>,
}

/// `POST /strategies`: a strategy to add to a running book (journaled as resolved: its
/// weight and capital as applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddRequest {
    pub id: String,
    pub algo: PathBuf,
    #[serde(default)]
    pub class: Option<String>,
    /// `(name, value text)`, as `--param` gives them.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// Its universe; `None`: every symbol of the session.
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
    /// Its configured weight at rebalances; `None`: its capital's share of the book's equity.
    #[serde(default)]
    pub weight: Option<Decimal>,
    /// Capital moved to it now; zero (or absent) with a `weight`: none until the next
    /// rebalance funds it by that weight.
    #[serde(default)]
    pub capital: Decimal,
    /// Where the capital comes from: a strategy's cash; `None`: the unallocated cash.
    #[serde(default)]
    pub from: Option<String>,
}

/// A change refused: the HTTP status it answers with (404 unknown strategy, 409 not
/// possible now, 422 a request that can never work) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

impl Refused {
    pub fn new(status: u16, message: impl Into<String>) -> Refused {
        Refused {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The configuration of an added strategy, as a portfolio file's (no weight bounds).
pub fn spec_of(request: &AddRequest, universe: &[String], weight: Decimal) -> StrategySpec {
    StrategySpec {
        id: request.id.clone(),
        algo: request.algo.clone(),
        class_name: request.class.clone(),
        weight,
        min_weight: Decimal::ZERO,
        max_weight: Decimal::ONE,
        symbols: request.symbols.as_ref().map(|_| universe.to_vec()),
        params: request.params.clone(),
    }
}

/// How an operator's stop starts its reason (a strategy that failed has its error instead).
pub const OPERATOR_STOP: &str = "stopped through the control API";

/// What a stop did.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Open orders of the strategy cancelled.
    pub cancelled: Vec<OrderId>,
    /// `Close`: the market orders placed (they fill at the next bar) …
    pub closing: Vec<OrderId>,
    /// … and the symbols whose closing order the checks refused, with why.
    pub refused: Vec<(String, String)>,
    /// `HandOver`: the internal fills booked now, by strategy index (giver's and receiver's).
    pub handed: Vec<(usize, Fill)>,
    /// `Close`: remainders below the lot step, left in the strategy.
    pub dust: Vec<(String, Decimal)>,
    /// The cash moved (to the receiver or the unallocated cash).
    pub cash: Decimal,
    /// Everything moved: the positions at the last close plus the cash.
    pub value: Decimal,
    /// `on_stop` raised (the strategy stops all the same).
    pub on_stop_error: Option<String>,
}

fn overflow(e: impl std::fmt::Display) -> Refused {
    Refused::new(409, format!("the books cannot make this move: {e}"))
}

/// A strategy's positions that are not flat: (its symbol id, the book's, quantity).
fn open_positions<S>(m: &Member<S>) -> Vec<(SymbolId, SymbolId, Decimal)> {
    let s = lock(&m.session);
    s.ledger
        .open_symbols()
        .iter()
        .filter_map(|&local| {
            let quantity = s.ledger.position(local)?.quantity;
            (!quantity.is_zero()).then(|| (local, m.global[local.index()], quantity))
        })
        .collect()
}

/// The last close of `symbol` in the book's market.
fn last_close(market: &Market, symbol: SymbolId) -> Option<Decimal> {
    let closed = market.closed_count(symbol);
    (closed > 0).then(|| market.series(symbol).close.exact.get(closed - 1))
}

/// An internal order of a hand-over, filled at once at `price` with no costs.
fn book_internal(
    m: &mut Member<impl Strategy>,
    local: SymbolId,
    side: OrderSide,
    quantity: Decimal,
    price: Decimal,
    time: TimestampNs,
    reason: &str,
) -> Result<Fill, Refused> {
    let mut s = lock(&m.session);
    let id = s
        .orders
        .submit_with_reason(OrderRequest::market(local, side, quantity), time, 0, reason)
        .map_err(|e| Refused::new(409, format!("the internal order was refused: {e}")))?;
    let fill = s
        .orders
        .apply_venue_fill(id, quantity, price, Decimal::ZERO, time)
        .ok_or_else(|| Refused::new(409, "the internal order could not be filled"))?;
    s.ledger.apply_fill(&fill).map_err(overflow)?;
    // A book's strategy marks only what it held: the receiver's mark may be old.
    s.ledger.mark(local, price).map_err(overflow)?;
    s.costs.record_fill(&fill).map_err(overflow)?;
    drop(s);
    m.outcome.fills.push(fill.clone());
    Ok(fill)
}

fn equity_of<S>(m: &Member<S>) -> Result<Decimal, Refused> {
    lock(&m.session).ledger.equity().map_err(overflow)
}

impl BookStepper {
    /// Stops strategy `i` for an operator, between two close times (`time`: the last one):
    /// `on_stop` runs, its open orders are cancelled, and its positions are closed or handed
    /// over (see [`Disposition`]). A strategy stopped before can only hand over what it
    /// still holds. Nothing changes when the request is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn stop_member<S: Strategy>(
        &mut self,
        market: &Market,
        members: &mut [Member<S>],
        rules: &BookRules<'_>,
        i: usize,
        request: &StopRequest,
        reason: &str,
        time: TimestampNs,
    ) -> Result<Stopped, Refused> {
        let id = members[i].id.clone();
        let to = match &request.to {
            None => None,
            Some(name) => {
                let Some(j) = members.iter().position(|m| &m.id == name) else {
                    return Err(Refused::new(
                        422,
                        format!("`to`: the book has no strategy `{name}`"),
                    ));
                };
                if j == i {
                    return Err(Refused::new(
                        422,
                        "`to`: a strategy cannot receive its own positions",
                    ));
                }
                if request.positions == Disposition::Close {
                    return Err(Refused::new(
                        422,
                        "`to` goes with `\"positions\": \"hand_over\"` (closed positions leave their cash with the strategy)",
                    ));
                }
                if let Some((at, _)) = &members[j].stopped {
                    return Err(Refused::new(
                        409,
                        format!(
                            "`{name}` stopped at {}: only a running strategy receives positions",
                            format_timestamp(*at)
                        ),
                    ));
                }
                Some(j)
            }
        };
        if let Some((at, _)) = &members[i].stopped
            && request.positions == Disposition::Close
        {
            return Err(Refused::new(
                409,
                format!(
                    "`{id}` stopped at {} already; to move what it still holds, stop it again with `\"positions\": \"hand_over\"`",
                    format_timestamp(*at)
                ),
            ));
        }
        let positions = open_positions(&members[i]);
        let mut priced = Vec::with_capacity(positions.len());
        if request.positions == Disposition::HandOver {
            for &(local, global, quantity) in &positions {
                let name = market.symbol_name(global);
                let Some(j) = to else {
                    return Err(Refused::new(
                        409,
                        format!(
                            "`{id}` holds {name}: the unallocated cash holds no positions; hand them to a running strategy (`\"to\": \"<id>\"`), or close them (`\"positions\": \"close\"`) and hand the cash over once they are closed"
                        ),
                    ));
                };
                let Some(receiver) = members[j].local[global.index()] else {
                    return Err(Refused::new(
                        422,
                        format!(
                            "`{}` does not trade {name}, which `{id}` holds",
                            members[j].id
                        ),
                    ));
                };
                let Some(price) = last_close(market, global) else {
                    return Err(Refused::new(
                        409,
                        format!(
                            "{name} has no closed bar in this session yet: try again after its first bar"
                        ),
                    ));
                };
                priced.push((local, receiver, global, quantity, price));
            }
        }
        // Checked: from here on the book changes.
        let mut done = Stopped::default();
        let m = &mut members[i];
        if m.stopped.is_none() {
            if let Err(stop) = m.strategy.on_stop() {
                done.on_stop_error = Some(super::book::stop_reason(&stop));
            }
            m.stopped = Some((time, reason.to_string()));
        }
        done.cancelled = lock(&m.session).orders.cancel_open(|_| true, reason, time);
        match request.positions {
            Disposition::Close => {
                let targets: Vec<SymbolId> = positions.iter().map(|p| p.0).collect();
                let mut s = lock(&m.session);
                let closing = s.close_positions(&targets);
                for id in closing.placed {
                    match s.orders.get(id) {
                        Some(o) if o.status.is_open() => done.closing.push(id),
                        Some(o) => done.refused.push((
                            s.market.symbol_name(o.symbol).to_string(),
                            o.reason.clone().unwrap_or_default(),
                        )),
                        None => {}
                    }
                }
                done.refused.extend(closing.refused);
                done.dust = closing.dust;
            }
            Disposition::HandOver => {
                self.hand_over(members, rules, i, to, &priced, time, &mut done)?
            }
        }
        refresh(&self.risk, &members[i], i);
        if let Some(j) = to {
            refresh(&self.risk, &members[j], j);
        }
        Ok(done)
    }

    /// Strategy `i`'s positions (each at its last close) and then its cash to `to`, or its
    /// cash to the unallocated cash.
    #[allow(clippy::too_many_arguments)]
    fn hand_over<S: Strategy>(
        &mut self,
        members: &mut [Member<S>],
        rules: &BookRules<'_>,
        i: usize,
        to: Option<usize>,
        priced: &[(SymbolId, SymbolId, SymbolId, Decimal, Decimal)],
        time: TimestampNs,
        done: &mut Stopped,
    ) -> Result<(), Refused> {
        let giver_id = members[i].id.clone();
        let value = equity_of(&members[i])?;
        let receiver_before = match to {
            Some(j) => equity_of(&members[j])?,
            None => self.risk.lock().reserve,
        };
        for &(local, receiver, _, quantity, price) in priced {
            let (give, take) = match quantity > Decimal::ZERO {
                true => (OrderSide::Sell, OrderSide::Buy),
                false => (OrderSide::Buy, OrderSide::Sell),
            };
            let j = to.expect("invariant: positions are handed to a strategy only");
            let receiver_id = members[j].id.clone();
            let fill = book_internal(
                &mut members[i],
                local,
                give,
                quantity.abs(),
                price,
                time,
                &format!("handed over to `{receiver_id}`"),
            )?;
            done.handed.push((i, fill));
            let fill = book_internal(
                &mut members[j],
                receiver,
                take,
                quantity.abs(),
                price,
                time,
                &format!("handed over from `{giver_id}`"),
            )?;
            done.handed.push((j, fill));
        }
        let cash = lock(&members[i].session).ledger.cash();
        lock(&members[i].session)
            .ledger
            .adjust_cash(-cash)
            .map_err(overflow)?;
        members[i].units.flow(time, value, -value);
        self.transferred[i] -= cash;
        self.outcome.allocations.push(AllocationRow {
            time,
            strategy: Some(i),
            weight: rules.strategy(i).weight,
            equity_before: value,
            transfer: -value,
            initial: false,
        });
        match to {
            Some(j) => {
                lock(&members[j].session)
                    .ledger
                    .adjust_cash(cash)
                    .map_err(overflow)?;
                members[j].units.flow(time, receiver_before, value);
                self.transferred[j] += cash;
                self.outcome.allocations.push(AllocationRow {
                    time,
                    strategy: Some(j),
                    weight: rules.strategy(j).weight,
                    equity_before: receiver_before,
                    transfer: value,
                    initial: false,
                });
            }
            None => {
                self.risk.lock().reserve += cash;
                self.outcome.allocations.push(AllocationRow {
                    time,
                    strategy: None,
                    weight: Decimal::ZERO,
                    equity_before: receiver_before,
                    transfer: cash,
                    initial: false,
                });
            }
        }
        for k in std::iter::once(i).chain(to) {
            let s = lock(&members[k].session);
            self.equity[k] = s.ledger.equity().map_err(overflow)?;
            self.cash[k] = s.ledger.cash();
        }
        done.cash = cash;
        done.value = value;
        Ok(())
    }

    /// Checks a strategy to add before its algorithm is loaded: a new plain id, symbols of
    /// the session, capital that is there. Returns its universe (in the book's symbol order)
    /// and its weight.
    pub fn check_add<S>(
        &self,
        members: &[Member<S>],
        market: &Market,
        request: &AddRequest,
    ) -> Result<(Vec<String>, Decimal), Refused> {
        let id = &request.id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Refused::new(
                422,
                format!(
                    "strategy id `{id}` is not a plain name: use 1 to 64 letters, digits, `_` and `-` (it names a results folder)"
                ),
            ));
        }
        if let Some(m) = members.iter().find(|m| &m.id == id) {
            let state = match &m.stopped {
                Some(_) => "stopped",
                None => "running",
            };
            return Err(Refused::new(
                409,
                format!(
                    "the book has a strategy `{id}` already ({state}): give the new one another id"
                ),
            ));
        }
        let names = market.symbol_names();
        let universe = match &request.symbols {
            None => names.clone(),
            Some(own) => {
                if own.is_empty() {
                    return Err(Refused::new(422, "`symbols` is empty"));
                }
                if let Some(missing) = own.iter().find(|s| !names.contains(s)) {
                    return Err(Refused::new(
                        422,
                        format!(
                            "`{missing}` is not a symbol of this session ({}): a strategy trades within the session's --symbols",
                            names.join(", ")
                        ),
                    ));
                }
                names.iter().filter(|n| own.contains(n)).cloned().collect()
            }
        };
        if request.capital < Decimal::ZERO {
            return Err(Refused::new(422, "`capital` must not be negative"));
        }
        if request.capital.is_zero() {
            self.check_funded_later(request)?;
        }
        let available = match &request.from {
            Some(from) => {
                let Some(m) = members.iter().find(|m| &m.id == from) else {
                    return Err(Refused::new(
                        422,
                        format!("`from`: the book has no strategy `{from}`"),
                    ));
                };
                (format!("`{from}`'s cash"), lock(&m.session).ledger.cash())
            }
            None => ("the unallocated cash".to_string(), self.risk.lock().reserve),
        };
        if request.capital > available.1 {
            return Err(Refused::new(
                409,
                format!(
                    "{} is {}, less than the {} asked for: take it from a strategy with `\"from\": \"<id>\"`, or hand a stopped strategy's cash to the unallocated cash first",
                    available.0,
                    available.1.normalize(),
                    request.capital.normalize()
                ),
            ));
        }
        let weight = match request.weight {
            Some(w) if w < Decimal::ZERO || w > Decimal::ONE => {
                return Err(Refused::new(
                    422,
                    format!("`weight` {w} is not between 0 and 1"),
                ));
            }
            Some(w) => w,
            None => {
                let mut total = self.risk.lock().reserve;
                for m in members {
                    total += equity_of(m)?;
                }
                match total > Decimal::ZERO {
                    true => (request.capital / total).round_dp(10).normalize(),
                    false => Decimal::ZERO,
                }
            }
        };
        Ok((universe, weight))
    }

    /// A strategy added with no capital is funded by its weight at the next rebalance: it
    /// needs a weight above zero, a book that rebalances, and no `from` (nothing moves now).
    fn check_funded_later(&self, request: &AddRequest) -> Result<(), Refused> {
        if request.weight.is_none_or(|w| w <= Decimal::ZERO) {
            return Err(Refused::new(
                422,
                "give `capital` (more than zero) to fund the strategy now, or a `weight` (more than zero) to have the next rebalance fund it",
            ));
        }
        if !self.rebalances {
            return Err(Refused::new(
                422,
                "this book never rebalances (its file has no `rebalance`), so a strategy added by `weight` alone would never be funded: give `capital`",
            ));
        }
        if request.from.is_some() {
            return Err(Refused::new(
                422,
                "`from` names where `capital` comes from, and no capital is given: drop `from`, or give `capital`",
            ));
        }
        Ok(())
    }

    /// Adds `member` (built from `request`, checked by [`BookStepper::check_add`], its
    /// `initialize` run) to the book as its last strategy; its capital moves from
    /// `request.from` or the unallocated cash. It trades from the next close time.
    pub fn add_member<S: Strategy>(
        &mut self,
        members: &mut Vec<Member<S>>,
        rules: &mut BookRules<'_>,
        request: &AddRequest,
        member: Member<S>,
        weight: Decimal,
        time: TimestampNs,
    ) -> Result<(), Refused> {
        let capital = request.capital;
        let n = members.len();
        match request.from.as_ref() {
            Some(from) => {
                let j = members
                    .iter()
                    .position(|m| &m.id == from)
                    .ok_or_else(|| Refused::new(422, format!("`from`: no strategy `{from}`")))?;
                let before = equity_of(&members[j])?;
                lock(&members[j].session)
                    .ledger
                    .adjust_cash(-capital)
                    .map_err(overflow)?;
                members[j].units.flow(time, before, -capital);
                self.transferred[j] -= capital;
                self.equity[j] -= capital;
                self.cash[j] -= capital;
                self.outcome.allocations.push(AllocationRow {
                    time,
                    strategy: Some(j),
                    weight: rules.strategy(j).weight,
                    equity_before: before,
                    transfer: -capital,
                    initial: false,
                });
            }
            None if capital.is_zero() => {} // funded by the next rebalance
            None => {
                let mut risk = self.risk.lock();
                let before = risk.reserve;
                risk.reserve -= capital;
                self.outcome.allocations.push(AllocationRow {
                    time,
                    strategy: None,
                    weight: Decimal::ZERO,
                    equity_before: before,
                    transfer: -capital,
                    initial: false,
                });
            }
        }
        self.outcome.allocations.push(AllocationRow {
            time,
            strategy: Some(n),
            weight,
            equity_before: Decimal::ZERO,
            transfer: capital,
            initial: true,
        });
        self.local_ticks.push(crate::market::Tick {
            time: 0,
            symbols: Vec::new(),
        });
        self.fills.push(Vec::new());
        self.equity.push(capital);
        self.cash.push(capital);
        self.crossed.push(Vec::new());
        // Orders its `initialize` placed are new to the netting.
        self.orders_seen.push(0);
        self.transferred.push(Decimal::ZERO);
        {
            let mut risk = self.risk.lock();
            let symbols = risk.price.len();
            risk.quantity.push(vec![Decimal::ZERO; symbols]);
            risk.equity.push(capital);
        }
        if rules.spec.risk.checks_orders() {
            lock(&member.session).pre_trade = Some(std::sync::Arc::new(MemberRisk {
                book: self.risk.clone(),
                strategy: n,
                global: member.global.clone(),
            }));
        }
        let universe = lock(&member.session).market.symbol_names();
        rules.added.push(spec_of(request, &universe, weight));
        members.push(member);
        refresh(&self.risk, &members[n], n);
        Ok(())
    }
}
