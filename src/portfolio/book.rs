//! A book of strategies over one market and one clock (ARCHITECTURE §10): each strategy has
//! its own session (sub-ledger, order book, indicators) over the symbols of its universe; the
//! account is their exact sum. At each close time the engine half of the step runs for every
//! strategy, then the account point is recorded and capital rebalanced if due, then the
//! algorithms run in the book's order.

use std::collections::VecDeque;

use rust_decimal::{Decimal, MathematicalOps};

use super::allocator::{
    AllocationInput, Allocator, correlation_scaled, covariance, enough_history, portfolio_variance,
    settle,
};
use super::config::{OnError, OnStop, PortfolioSpec};
use super::risk::{BookRisk, MemberRisk, own_quantities};
use crate::engine::{BacktestOutcome, SharedSession, Stop, Strategy, advance, lock, react};
use crate::market::{Clock, Market, Tick};
use crate::metrics::EquityPoint;
use crate::model::time::NANOS_PER_DAY;
use crate::model::{Fill, SymbolId, TimestampNs};

/// One strategy of the book.
pub struct Member<S> {
    pub id: String,
    pub session: SharedSession,
    pub strategy: S,
    /// By the book's symbol index: the strategy's own id of that symbol, if in its universe.
    pub local: Vec<Option<SymbolId>>,
    /// By the strategy's symbol index: the book's id.
    pub global: Vec<SymbolId>,
    pub outcome: BacktestOutcome,
    /// When and why the strategy stopped before the end.
    pub stopped: Option<(TimestampNs, String)>,
    /// The engine stop that ended the strategy (kept for the report).
    pub stop: Option<Stop>,
    pub initial_capital: Decimal,
    pub(super) units: Units,
}

impl<S> Member<S> {
    pub fn new(
        id: String,
        session: SharedSession,
        strategy: S,
        global: Vec<SymbolId>,
        book_symbols: usize,
    ) -> Self {
        let mut local = vec![None; book_symbols];
        for (i, g) in global.iter().enumerate() {
            local[g.index()] = Some(SymbolId(i as u32));
        }
        let initial_capital = lock(&session).ledger.initial_cash();
        Member {
            id,
            session,
            strategy,
            local,
            global,
            outcome: BacktestOutcome::default(),
            stopped: None,
            stop: None,
            initial_capital,
            units: Units::new(initial_capital),
        }
    }

    /// The strategy's equity curve with the rebalancing flows taken out: what its equity
    /// would have been on its initial capital alone (the base of its returns and risk
    /// metrics).
    pub fn flow_adjusted_equity(&self) -> Vec<EquityPoint> {
        let base = self.return_base();
        let mut changes = self.units.history.iter().peekable();
        let mut units = self.initial_capital;
        let mut last = base;
        self.outcome
            .equity
            .iter()
            .map(|p| {
                // A move at `T` follows the point recorded at `T` (before the move).
                while let Some((time, u)) = changes.peek() {
                    if *time >= p.time {
                        break;
                    }
                    units = *u;
                    changes.next();
                }
                // Everything handed over (units all redeemed): the curve stays where the
                // last unit value left it instead of falling to zero.
                let equity = if units > Decimal::ZERO {
                    p.equity * (base / units)
                } else {
                    last
                };
                last = equity;
                EquityPoint {
                    time: p.time,
                    cash: p.cash,
                    equity,
                }
            })
            .collect()
    }

    /// Completed daily returns with flows removed (oldest first), by UTC day.
    /// The capital the strategy's returns are measured on: its initial capital, or, for one
    /// added by weight alone (no capital until a rebalance funds it), the first funding. Until
    /// then its flow-adjusted curve stays flat at that base: no capital, no return.
    pub fn return_base(&self) -> Decimal {
        if self.initial_capital > Decimal::ZERO {
            return self.initial_capital;
        }
        self.units
            .history
            .iter()
            .map(|(_, units)| *units)
            .find(|units| *units > Decimal::ZERO)
            .unwrap_or(Decimal::ZERO)
    }

    pub fn daily_returns(&self) -> &[(i64, Decimal)] {
        &self.units.daily
    }
}

/// Time-weighted accounting of one strategy's capital: units are issued and redeemed at the
/// unit value when capital moves in or out, so the unit value moves with performance only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Units {
    units: Decimal,
    /// (time, units after a flow at that time).
    history: Vec<(TimestampNs, Decimal)>,
    /// Unit value at the last completed day's close, and the peak of those closes.
    last_close: Decimal,
    peak: Decimal,
    /// (UTC day number, return) per completed day.
    daily: Vec<(i64, Decimal)>,
    /// The latest `lookback` of them, for the allocator.
    window: VecDeque<Decimal>,
}

impl Units {
    fn new(capital: Decimal) -> Self {
        Units {
            units: capital,
            history: Vec::new(),
            last_close: Decimal::ONE,
            peak: Decimal::ONE,
            daily: Vec::new(),
            window: VecDeque::new(),
        }
    }

    fn value(&self, equity: Decimal) -> Decimal {
        if self.units > Decimal::ZERO {
            equity / self.units
        } else {
            Decimal::ZERO
        }
    }

    /// A day closed with the strategy at `equity`.
    fn close_day(&mut self, day: i64, equity: Decimal, lookback: usize) {
        if self.units <= Decimal::ZERO {
            return; // everything handed over: no capital, no return
        }
        let value = self.value(equity);
        let r = if self.last_close > Decimal::ZERO {
            value / self.last_close - Decimal::ONE
        } else {
            Decimal::ZERO
        };
        self.daily.push((day, r));
        self.window.push_back(r);
        while self.window.len() > lookback {
            self.window.pop_front();
        }
        self.last_close = value;
        self.peak = self.peak.max(value);
    }

    fn drawdown(&self, equity: Decimal) -> Decimal {
        if self.units <= Decimal::ZERO {
            return Decimal::ZERO; // no capital (not funded yet, or handed over): no drawdown
        }
        let value = self.value(equity);
        let peak = self.peak.max(value);
        if peak > Decimal::ZERO {
            (Decimal::ONE - value / peak).max(Decimal::ZERO)
        } else {
            Decimal::ZERO
        }
    }

    /// `flow` moved in (negative: out) at `time`, with the strategy at `equity` before it.
    pub(super) fn flow(&mut self, time: TimestampNs, equity: Decimal, flow: Decimal) {
        let value = self.value(equity);
        if value > Decimal::ZERO {
            self.units += flow / value;
        } else if self.units <= Decimal::ZERO && flow > Decimal::ZERO {
            // First capital of a strategy added with none: units issued at the last unit
            // value (1 for one never funded), so its returns start here.
            self.units = flow / self.last_close;
        }
        self.history.push((time, self.units));
    }
}

/// A capital move at a rebalance (or the initial allocation, with `equity_before` 0).
#[derive(Debug, Clone)]
pub struct AllocationRow {
    pub time: TimestampNs,
    /// `None`: the book's reserve (cash held outside the strategies by volatility targeting).
    pub strategy: Option<usize>,
    pub weight: Decimal,
    pub equity_before: Decimal,
    pub transfer: Decimal,
    /// A strategy's initial capital (at the start, or when an operator added it), not a move.
    pub initial: bool,
}

#[derive(Debug, Default)]
pub struct BookOutcome {
    /// The account: the sum of the strategies at every close time.
    pub equity: Vec<EquityPoint>,
    pub allocations: Vec<AllocationRow>,
    pub ticks: u64,
    pub bars: u64,
    /// Why the whole book stopped before the end of the data.
    pub stop: Option<Stop>,
    /// Rebalances the allocator could not do, with why.
    pub notices: Vec<String>,
    /// When and why the risk limits halted the book.
    pub halted: Option<(TimestampNs, String)>,
    /// Orders the risk limits refused.
    pub risk_rejections: u64,
    /// What crossing orders between the strategies did.
    pub netting: super::netting::NettingReport,
    /// Whether orders were netted (off by configuration, or with order latency).
    pub netting_on: bool,
}

/// How the book runs: the allocation rules and the money's precision.
pub struct BookRules<'a> {
    pub spec: &'a PortfolioSpec,
    pub allocator: Box<dyn Allocator + 'a>,
    /// Decimal places of a capital amount (the account currency's).
    pub money_dp: u32,
    /// The cross-section shared by the strategies over the book's whole universe (see
    /// [`share_engine_work`]).
    pub cross_section: Option<std::sync::Arc<crate::engine::CrossSection>>,
    /// Strategies an operator added to a live book, after the file's (book order).
    pub added: Vec<super::config::StrategySpec>,
}

impl BookRules<'_> {
    /// The configuration of strategy `i` (book order: the file's, then the added ones).
    pub fn strategy(&self, i: usize) -> &super::config::StrategySpec {
        match self.spec.strategies.get(i) {
            Some(s) => s,
            None => &self.added[i - self.spec.strategies.len()],
        }
    }

    /// The portfolio with the added strategies in it (for the results).
    pub fn full_spec(&self) -> PortfolioSpec {
        let mut spec = self.spec.clone();
        spec.strategies.extend(self.added.iter().cloned());
        spec
    }
}

/// Sets the sessions of a book up so that the per-bar work they have in common is done once:
/// the book closes every session's bars, and the sessions whose universe is the book's whole
/// `symbols` (in the same order) share one cross-section that the book feeds. Call before the
/// algorithms attach (they hold the cross-section). Returns the shared cross-section.
pub fn share_engine_work(
    sessions: &[SharedSession],
    symbols: &[String],
) -> std::sync::Arc<crate::engine::CrossSection> {
    let shared = std::sync::Arc::new(crate::engine::CrossSection::new(symbols.len()));
    for session in sessions {
        let mut s = lock(session);
        s.in_book = true;
        if s.market.symbol_names() == symbols {
            s.cross_section = shared.clone();
            s.shared_cross_section = true;
        }
    }
    shared
}

const CHECK_EVERY_TICKS: u64 = 1024;

/// The initial capital of each strategy: `cash × weight`, in the currency's precision, the
/// remainder on the largest weight, so the capitals sum to exactly `cash`.
pub fn initial_capitals(cash: Decimal, weights: &[Decimal], money_dp: u32) -> Vec<Decimal> {
    split(cash, weights, money_dp)
}

fn split(total: Decimal, weights: &[Decimal], money_dp: u32) -> Vec<Decimal> {
    let mut amounts: Vec<Decimal> = weights
        .iter()
        .map(|w| {
            (total * w).round_dp_with_strategy(money_dp, rust_decimal::RoundingStrategy::ToZero)
        })
        .collect();
    let rest = total - amounts.iter().copied().sum::<Decimal>();
    let mut largest = 0;
    for (i, w) in weights.iter().enumerate() {
        if *w > weights[largest] {
            largest = i;
        }
    }
    if let Some(a) = amounts.get_mut(largest) {
        *a += rest;
    }
    // `100000.0` (from `200000 × 0.5`) is written as `100000`, as a plain run's cash is.
    amounts.iter().map(|a| a.normalize()).collect()
}

/// Runs the book over `market` (every symbol of every strategy; its bars are closed as the
/// clock passes them): see the module comment. A live session steps the same
/// [`BookStepper`] bar by bar as its feed delivers them.
pub fn run_book<S: Strategy>(
    market: &mut Market,
    members: &mut [Member<S>],
    rules: &mut BookRules<'_>,
    progress: &mut dyn FnMut(u64),
) -> BookOutcome {
    let mut stepper = BookStepper::open(market, members, rules);
    if let Err(whole) = stepper.initialize(members, rules) {
        stepper.outcome.stop = Some(whole);
        return stepper.finish(members);
    }
    stepper.outcome.equity.reserve(market.total_bars() as usize);
    let mut clock = Clock::new(market);
    let mut tick = Tick {
        time: 0,
        symbols: Vec::new(),
    };
    let stop = loop {
        if !clock.next_into(market, &mut tick) {
            break None;
        }
        if let Err(stop) = stepper.step(market, members, rules, &tick) {
            break Some(stop);
        }
        let ticks = stepper.outcome.ticks;
        if ticks % CHECK_EVERY_TICKS == 0 {
            if let Some(m) = members.iter_mut().find(|m| m.stopped.is_none())
                && let Err(stop) = m.strategy.check_interrupt()
            {
                break Some(stop);
            }
            progress(stepper.outcome.bars);
        }
    };
    stepper.outcome.stop = stop;
    stepper.finish(members)
}

/// The book between two close times: what the backtest's loop and a live session's loop
/// both step, once per close time, so a live book trades exactly as `run --portfolio` does.
pub struct BookStepper {
    pub outcome: BookOutcome,
    pub risk: std::sync::Arc<BookRisk>,
    /// The account's peak equity (the drawdown limit).
    peak: Decimal,
    pub(super) local_ticks: Vec<Tick>,
    pub(super) fills: Vec<Vec<Fill>>,
    /// Each strategy's equity and cash at its last equity point.
    pub(super) equity: Vec<Decimal>,
    pub(super) cash: Vec<Decimal>,
    /// The UTC day of the last close time.
    day: Option<i64>,
    next_rebalance: Option<Option<TimestampNs>>,
    crossings: Vec<super::netting::Crossing>,
    pub(super) crossed: Vec<Vec<Fill>>,
    pub(super) orders_seen: Vec<usize>,
    /// Cash each strategy received at rebalances since the book began (negative: gave).
    pub transferred: Vec<Decimal>,
    /// Restored from a saved book: `initialize` keeps its equity and cash.
    restored: bool,
    /// The book has a rebalancing schedule (a strategy added by weight alone gets funded).
    pub(super) rebalances: bool,
}

impl BookStepper {
    /// The initial allocation and the risk limits, before any algorithm runs.
    pub fn open<S>(market: &Market, members: &[Member<S>], rules: &BookRules<'_>) -> Self {
        let mut outcome = BookOutcome::default();
        let first_time = members
            .iter()
            .map(|m| lock(&m.session).now)
            .min()
            .unwrap_or(0);
        for (i, m) in members.iter().enumerate() {
            outcome.allocations.push(AllocationRow {
                time: first_time,
                strategy: Some(i),
                weight: rules.strategy(i).weight,
                equity_before: Decimal::ZERO,
                transfer: m.initial_capital,
                initial: true,
            });
        }
        let risk = BookRisk::new(
            rules.spec.risk.clone(),
            members.len(),
            market.symbol_count(),
        );
        for (i, m) in members.iter().enumerate() {
            if rules.spec.risk.checks_orders() {
                lock(&m.session).pre_trade = Some(std::sync::Arc::new(MemberRisk {
                    book: risk.clone(),
                    strategy: i,
                    global: m.global.clone(),
                }));
            }
            risk.lock().equity[i] = m.initial_capital;
        }
        let n = members.len();
        BookStepper {
            outcome,
            risk,
            peak: Decimal::ZERO,
            local_ticks: (0..n)
                .map(|_| Tick {
                    time: 0,
                    symbols: Vec::new(),
                })
                .collect(),
            fills: vec![Vec::new(); n],
            equity: vec![Decimal::ZERO; n],
            cash: vec![Decimal::ZERO; n],
            day: None,
            next_rebalance: None,
            crossings: Vec::new(),
            crossed: vec![Vec::new(); n],
            orders_seen: vec![0; n],
            transferred: vec![Decimal::ZERO; n],
            restored: false,
            rebalances: rules.spec.rebalance.is_some(),
        }
    }

    /// `initialize` for every strategy in the book's order (one failing stops alone, or the
    /// whole book: `Err`), then whether orders are netted.
    pub fn initialize<S: Strategy>(
        &mut self,
        members: &mut [Member<S>],
        rules: &BookRules<'_>,
    ) -> Result<(), Stop> {
        for i in 0..members.len() {
            if members[i].stopped.is_some() {
                continue;
            }
            if let Err(stop) = members[i].strategy.initialize()
                && let Some(whole) = fail(members, i, stop, rules.spec)
            {
                return Err(whole);
            }
            refresh(&self.risk, &members[i], i);
        }
        // Crossed orders fill at a bar's open in full: with order latency they would not all
        // be active there, and with a volume cap they would not all fill there on their own.
        self.outcome.netting_on = rules.spec.netting
            && members.iter().all(|m| {
                let s = lock(&m.session);
                s.execution.latency_ns == 0
                    && s.execution.matching.volume_share.is_none()
                    && s.execution
                        .profile
                        .as_ref()
                        .is_none_or(|p| p.latency == crate::execution::Latency::None)
            });
        if rules.spec.netting && !self.outcome.netting_on && members.len() > 1 {
            self.outcome.notices.push(
                "orders are not netted: netting needs zero order latency and no volume cap".into(),
            );
        }
        for (i, m) in members.iter().enumerate() {
            let s = lock(&m.session);
            if !self.restored {
                self.cash[i] = s.ledger.cash();
                self.equity[i] = s.ledger.cash();
            }
            // Orders taken back after a restart are not new to the netting.
            self.orders_seen[i] = self.orders_seen[i].max(s.orders.all().len());
        }
        Ok(())
    }

    /// `on_stop` for the strategies still running (unless the book failed), then every open
    /// order is cancelled.
    pub fn finish<S: Strategy>(mut self, members: &mut [Member<S>]) -> BookOutcome {
        self.finish_with(members, "end of data")
    }

    /// [`BookStepper::finish`] with the open orders cancelled for `reason`; the stepper is
    /// left with an empty outcome (its state can still be saved).
    pub fn finish_with<S: Strategy>(
        &mut self,
        members: &mut [Member<S>],
        reason: &str,
    ) -> BookOutcome {
        let outcome = std::mem::take(&mut self.outcome);
        finish(members, outcome, &self.risk, reason)
    }

    /// The strategies still running, by index.
    pub fn running<S>(members: &[Member<S>]) -> impl Iterator<Item = usize> + '_ {
        (0..members.len()).filter(|&i| members[i].stopped.is_none())
    }

    /// One close time `tick` (the book's symbol ids; their bars are in `market` and in each
    /// strategy's, not closed yet): crossings due fill, the engine half runs for every
    /// strategy with a bar, the bars close, the account point is recorded, limits and
    /// rebalancing apply, then the algorithms run in the book's order.
    pub fn step<S: Strategy>(
        &mut self,
        market: &mut Market,
        members: &mut [Member<S>],
        rules: &mut BookRules<'_>,
        tick: &Tick,
    ) -> Result<(), Stop> {
        let book = &mut self.outcome;
        let risk = &self.risk;
        let limits = &rules.spec.risk;
        let n = members.len();
        let today = tick.time.div_euclid(NANOS_PER_DAY);
        // A new day: the previous one closed at the last tick's equity.
        if let Some(previous) = self.day
            && previous != today
        {
            for (i, m) in members.iter_mut().enumerate() {
                m.units
                    .close_day(previous, self.equity[i], rules.spec.lookback_days);
            }
        }
        self.day = Some(today);
        // Crossings due on these bars fill at their opens, before the rest matches.
        super::netting::apply_due(
            &mut self.crossings,
            &tick.symbols,
            market,
            members,
            &mut self.crossed,
            &mut book.netting,
        )
        .map_err(|e| Stop::Engine(format!("netting: {e}")))?;
        // The engine half for every strategy with a bar closing now.
        let mut advanced = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for (i, m) in members.iter_mut().enumerate() {
            let local = &mut self.local_ticks[i];
            local.time = tick.time;
            local.symbols.clear();
            local
                .symbols
                .extend(tick.symbols.iter().filter_map(|g| m.local[g.index()]));
            if local.symbols.is_empty() {
                advanced.push(None);
                continue;
            }
            let before = m.outcome.fills.len();
            let fills = &mut self.fills[i];
            let step = advance(&mut lock(&m.session), local, fills, &mut m.outcome);
            if !self.crossed[i].is_empty() {
                // Crossed at the open: before the bar's own fills, in the books and for on_fill.
                m.outcome
                    .fills
                    .insert(before, self.crossed[i].iter().cloned());
                fills.splice(0..0, self.crossed[i].drain(..));
            }
            if let Some(point) = m.outcome.equity.last() {
                self.equity[i] = point.equity;
                self.cash[i] = point.cash;
            }
            match step {
                Ok(engine) => advanced.push(Some(engine)),
                Err(Stop::Engine(message)) => {
                    return Err(Stop::Engine(format!("strategy `{}`: {message}", m.id)));
                }
                Err(stop) => {
                    advanced.push(None);
                    failed.push((i, stop));
                }
            }
        }
        for (i, stop) in failed {
            if members[i].stopped.is_none()
                && let Some(whole) = fail(members, i, stop, rules.spec)
            {
                return Err(whole);
            }
        }
        book.bars += tick.symbols.len() as u64;
        // The work every strategy shares, once: the shared cross-section, then the bars close
        // in the book's market (the account's benchmark reads it) and in every session.
        for &symbol in &tick.symbols {
            if let Some(cross) = &rules.cross_section {
                cross.on_bar(symbol, market.series(symbol), market.closed_count(symbol));
            }
            market.close_next_bar(symbol);
        }
        for (i, m) in members.iter().enumerate() {
            if self.local_ticks[i].symbols.is_empty() {
                continue;
            }
            let mut s = lock(&m.session);
            if s.in_book {
                for &symbol in &self.local_ticks[i].symbols {
                    s.market.close_next_bar(symbol);
                }
            }
        }
        let reserve = risk.lock().reserve;
        let point = EquityPoint {
            time: tick.time,
            cash: checked_sum(&self.cash)? + reserve,
            equity: checked_sum(&self.equity)? + reserve,
        };
        book.equity.push(point);
        if limits.checks_orders() {
            {
                let mut state = risk.lock();
                for &symbol in &tick.symbols {
                    let series = market.series(symbol);
                    let closed = market.closed_count(symbol);
                    state.price[symbol.index()] = Some(series.close.exact.get(closed - 1));
                }
            }
            for (i, m) in members.iter().enumerate() {
                if !self.local_ticks[i].symbols.is_empty() {
                    refresh(risk, m, i);
                }
            }
        }
        self.peak = self.peak.max(point.equity);
        if let Some(limit) = limits.max_drawdown
            && self.peak > Decimal::ZERO
            && Decimal::ONE - point.equity / self.peak >= limit
        {
            let drawdown = Decimal::ONE - point.equity / self.peak;
            halt_book(
                members,
                limits,
                tick.time,
                &format!(
                    "the account's drawdown reached {} (limit {limit})",
                    drawdown.round_dp(4).normalize()
                ),
                book,
            );
        }
        if let Some(rebalance) = &rules.spec.rebalance {
            let due = *self
                .next_rebalance
                .get_or_insert_with(|| rebalance.rule.next_after(tick.time));
            if due.is_some_and(|due| tick.time >= due) {
                let moves = book.allocations.len();
                rebalance_book(
                    tick.time,
                    members,
                    rules,
                    &mut self.equity,
                    &mut self.cash,
                    book,
                    risk,
                )?;
                for row in &book.allocations[moves..] {
                    if let Some(i) = row.strategy {
                        self.transferred[i] += row.transfer;
                    }
                }
                self.next_rebalance = Some(rebalance.rule.next_after(tick.time));
            }
        }
        // The algorithms, in the book's order.
        for (i, engine) in advanced.into_iter().enumerate() {
            let Some(engine) = engine else { continue };
            if members[i].stopped.is_some() {
                continue;
            }
            let m = &mut members[i];
            if let Err(stop) = react(&mut m.strategy, &self.fills[i], engine, &mut m.outcome)
                && let Some(whole) = fail(members, i, stop, rules.spec)
            {
                return Err(whole);
            }
            refresh(risk, &members[i], i);
            let breach = risk.lock().halt.clone();
            if let Some(reason) = breach {
                halt_book(members, limits, tick.time, &reason, book);
            }
        }
        if book.netting_on {
            self.crossings.extend(super::netting::find(
                members,
                tick.time,
                market.symbol_count(),
                &mut self.orders_seen,
            ));
        }
        book.ticks += 1;
        Ok(())
    }

    /// The fills strategy `i` had at the last close time (for its broker's journal); none
    /// when it had no bar then.
    pub fn fills_of(&self, i: usize) -> &[Fill] {
        match self.local_ticks[i].symbols.is_empty() {
            true => &[],
            false => &self.fills[i],
        }
    }

    /// What a restarted live book needs to continue exactly where this one stands; open
    /// orders of pending crossings are named by `client_id` (strategy, order).
    pub fn saved<S>(
        &self,
        members: &[Member<S>],
        market: &Market,
        client_id: impl Fn(usize, crate::model::OrderId) -> Option<String>,
    ) -> SavedBook {
        let risk = self.risk.lock();
        SavedBook {
            equity: self.equity.clone(),
            cash: self.cash.clone(),
            peak: self.peak,
            day: self.day,
            next_rebalance: self.next_rebalance,
            transferred: self.transferred.clone(),
            reserve: risk.reserve,
            halted: self.outcome.halted.clone(),
            strategies: members
                .iter()
                .map(|m| SavedMember {
                    id: m.id.clone(),
                    units: m.units.clone(),
                    stopped: m.stopped.clone(),
                })
                .collect(),
            crossings: self
                .crossings
                .iter()
                .filter_map(|c| {
                    let orders = c
                        .orders
                        .iter()
                        .map(|&(i, id)| client_id(i, id).map(|cid| (i, cid)))
                        .collect::<Option<Vec<_>>>()?;
                    Some(SavedCrossing {
                        symbol: market.symbol_name(c.symbol).to_string(),
                        limit: c.limit,
                        orders,
                    })
                })
                .collect(),
        }
    }

    /// A saved book back (after [`BookStepper::open`], before [`BookStepper::initialize`]):
    /// the strategies' ledgers are already restored; `order_id` finds a taken-back order.
    pub fn restore<S>(
        &mut self,
        saved: SavedBook,
        members: &mut [Member<S>],
        market: &Market,
        order_id: impl Fn(usize, &str) -> Option<crate::model::OrderId>,
    ) -> Result<(), String> {
        if saved.strategies.len() != members.len()
            || saved
                .strategies
                .iter()
                .zip(members.iter())
                .any(|(s, m)| s.id != m.id)
        {
            return Err(format!(
                "the saved book's strategies are {}; this book's are {}",
                saved
                    .strategies
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                members
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if [
            saved.equity.len(),
            saved.cash.len(),
            saved.transferred.len(),
        ]
        .iter()
        .any(|&n| n != members.len())
        {
            return Err("the saved book has another number of strategies".into());
        }
        self.equity = saved.equity;
        self.cash = saved.cash;
        self.restored = true;
        self.peak = saved.peak;
        self.day = saved.day;
        self.next_rebalance = saved.next_rebalance;
        self.transferred = saved.transferred;
        self.risk.lock().reserve = saved.reserve;
        for (m, s) in members.iter_mut().zip(saved.strategies) {
            m.units = s.units;
            m.stopped = s.stopped;
        }
        if let Some((_, reason)) = &saved.halted {
            for m in members.iter() {
                lock(&m.session).halted = Some(reason.clone());
            }
        }
        self.outcome.halted = saved.halted;
        for c in saved.crossings {
            let Some(symbol) = market.symbol_id(&c.symbol) else {
                continue;
            };
            let orders = c
                .orders
                .iter()
                .map(|(i, cid)| order_id(*i, cid).map(|id| (*i, id)))
                .collect::<Option<Vec<_>>>();
            if let Some(orders) = orders {
                self.crossings.push(super::netting::Crossing {
                    symbol,
                    limit: c.limit,
                    orders,
                });
            }
        }
        Ok(())
    }
}

/// A live book's own state at a checkpoint (the journal's `book_states`, JSON): what the
/// strategies' ledgers, orders and algorithm states do not say.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedBook {
    /// Each strategy's equity and cash at its last equity point.
    pub equity: Vec<Decimal>,
    pub cash: Vec<Decimal>,
    pub peak: Decimal,
    pub day: Option<i64>,
    pub next_rebalance: Option<Option<TimestampNs>>,
    /// Cash each strategy received at rebalances (its ledger: capital + fills + this).
    pub transferred: Vec<Decimal>,
    pub reserve: Decimal,
    pub halted: Option<(TimestampNs, String)>,
    pub strategies: Vec<SavedMember>,
    pub crossings: Vec<SavedCrossing>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedMember {
    pub id: String,
    units: Units,
    pub stopped: Option<(TimestampNs, String)>,
}

/// A crossing found at the last close time, waiting for its bar: orders by client id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedCrossing {
    symbol: String,
    limit: Option<Decimal>,
    orders: Vec<(usize, String)>,
}

/// The risk snapshot of strategy `i` after it moved (an engine step, or its algorithm).
pub(super) fn refresh<S>(risk: &BookRisk, m: &Member<S>, i: usize) {
    if !risk.limits.checks_orders() {
        return;
    }
    let s = lock(&m.session);
    let mut state = risk.lock();
    let symbols = state.price.len();
    state.quantity[i] = own_quantities(&s, &m.global, symbols, &[]);
    if let Ok(equity) = s.ledger.equity() {
        state.equity[i] = equity;
    }
}

/// Stops all trading: every session refuses new orders with `reason`, open orders are
/// cancelled, and positions are closed from the next bar if the limits say so. The
/// algorithms keep running (their orders are rejected with the reason).
fn halt_book<S>(
    members: &[Member<S>],
    limits: &super::risk::RiskLimits,
    time: TimestampNs,
    reason: &str,
    book: &mut BookOutcome,
) {
    if book.halted.is_some() {
        return;
    }
    let reason = format!("portfolio halted: {reason}");
    for m in members {
        let mut s = lock(&m.session);
        if limits.close_on_halt {
            if let Err(e) = s.close_all(&reason) {
                book.notices
                    .push(format!("cannot close the positions of `{}`: {e}", m.id));
            }
        } else {
            let now = s.now;
            s.orders.cancel_all(&reason, now);
        }
        s.halted = Some(reason.clone());
    }
    book.halted = Some((time, reason));
}

/// `on_stop` for the strategies still running (unless the book failed), then every open
/// order is cancelled.
fn finish<S: Strategy>(
    members: &mut [Member<S>],
    mut book: BookOutcome,
    risk: &BookRisk,
    reason: &str,
) -> BookOutcome {
    book.risk_rejections = risk.lock().rejected;
    let failed = matches!(book.stop, Some(Stop::Failed(_) | Stop::Engine(_)));
    for m in members.iter_mut() {
        if m.stopped.is_none()
            && !failed
            && let Err(stop) = m.strategy.on_stop()
        {
            m.stopped = Some((lock(&m.session).now, stop_reason(&stop)));
            m.stop = Some(stop);
        }
        let mut s = lock(&m.session);
        let now = s.now;
        s.orders.cancel_all(reason, now);
    }
    if book.stop.is_none()
        && members
            .iter()
            .any(|m| matches!(m.stop, Some(Stop::Interrupted)))
    {
        book.stop = Some(Stop::Interrupted);
    }
    book
}

pub fn stop_reason(stop: &Stop) -> String {
    match stop {
        Stop::Interrupted => "interrupted".into(),
        Stop::Failed(e) if e.traceback.is_empty() => e.to_string(),
        Stop::Failed(e) => format!("{e}\n{}", e.traceback.trim_end()),
        Stop::Engine(message) => message.clone(),
    }
}

/// Strategy `i` stopped with `stop`: it stops alone (its orders cancelled, its positions held
/// or closed), or the whole book stops (the stop returned).
pub(crate) fn fail<S: Strategy>(
    members: &mut [Member<S>],
    i: usize,
    stop: Stop,
    spec: &PortfolioSpec,
) -> Option<Stop> {
    if matches!(stop, Stop::Interrupted | Stop::Engine(_)) || spec.on_error == OnError::StopAll {
        let m = &mut members[i];
        m.stopped = Some((lock(&m.session).now, stop_reason(&stop)));
        return Some(stop);
    }
    let m = &mut members[i];
    let reason = format!("strategy `{}` stopped: {}", m.id, stop_reason(&stop));
    let mut s = lock(&m.session);
    let now = s.now;
    match spec.on_stop {
        OnStop::Hold => s.orders.cancel_all(&reason, now),
        OnStop::Close => {
            if let Err(e) = s.close_all(&reason) {
                s.notices
                    .push(format!("cannot close the positions of `{}`: {e}", m.id));
            }
        }
    }
    drop(s);
    m.stopped = Some((now, stop_reason(&stop)));
    m.stop = Some(stop);
    None
}

fn checked_sum(values: &[Decimal]) -> Result<Decimal, Stop> {
    values
        .iter()
        .try_fold(Decimal::ZERO, |a, v| a.checked_add(*v))
        .ok_or_else(|| Stop::Engine("the account's equity overflows a Decimal".into()))
}

/// Moves cash between the running strategies so each holds `weight × their total equity`.
/// Positions are untouched: a strategy whose target is below what it holds goes below zero
/// cash, and its buying-power checks refuse new buys until it fits. Stopped strategies keep
/// their capital.
fn rebalance_book<S: Strategy>(
    time: TimestampNs,
    members: &mut [Member<S>],
    rules: &mut BookRules<'_>,
    equity: &mut [Decimal],
    cash: &mut [Decimal],
    book: &mut BookOutcome,
    risk: &BookRisk,
) -> Result<(), Stop> {
    let running: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].stopped.is_none())
        .collect();
    if running.is_empty() || book.halted.is_some() {
        return Ok(());
    }
    let reserve = risk.lock().reserve;
    let total = checked_sum(&running.iter().map(|&i| equity[i]).collect::<Vec<_>>())? + reserve;
    if total <= Decimal::ZERO {
        book.notices.push(format!(
            "{} rebalance skipped: the strategies' equity is {total}",
            crate::model::format_timestamp(time)
        ));
        return Ok(());
    }
    let spec = rules.spec;
    let ids: Vec<String> = running.iter().map(|&i| members[i].id.clone()).collect();
    let base: Vec<Decimal> = running.iter().map(|&i| rules.strategy(i).weight).collect();
    let returns: Vec<Vec<Decimal>> = running
        .iter()
        .map(|&i| members[i].units.window.iter().copied().collect())
        .collect();
    let drawdown: Vec<Decimal> = running
        .iter()
        .map(|&i| members[i].units.drawdown(equity[i]))
        .collect();
    let current: Vec<Decimal> = running.iter().map(|&i| equity[i]).collect();
    let input = AllocationInput {
        time,
        ids: &ids,
        base: &base,
        returns: &returns,
        drawdown: &drawdown,
        equity: &current,
    };
    let mut raw = rules.allocator.weights(&input).map_err(Stop::Failed)?;
    if raw.len() != running.len() || raw.iter().any(|w| *w < Decimal::ZERO) {
        return Err(Stop::Engine(format!(
            "the allocator gave {} weights for {} strategies (or a negative one)",
            raw.len(),
            running.len()
        )));
    }
    let history = enough_history(&returns);
    let cov = if history {
        covariance(&returns)
    } else {
        Vec::new()
    };
    if let (Some(threshold), true) = (spec.risk.correlation_threshold, history) {
        raw = correlation_scaled(&raw, &cov, threshold);
    }
    let min: Vec<Decimal> = running
        .iter()
        .map(|&i| rules.strategy(i).min_weight)
        .collect();
    let max: Vec<Decimal> = running
        .iter()
        .map(|&i| rules.strategy(i).max_weight)
        .collect();
    let weights = settle(&raw, &min, &max);
    // Volatility targeting: invest less than everything when the strategies' covariance says
    // the book would run above the target; the rest is held as reserve cash.
    let mut invested = total;
    if let (Some(target), true) = (spec.risk.volatility_target, history) {
        let days = Decimal::from(crate::metrics::days_per_year(&book.equity));
        if let Some(annual) = (portfolio_variance(&weights, &cov) * days).sqrt()
            && annual > target
        {
            invested = (total * target / annual)
                .round_dp_with_strategy(rules.money_dp, rust_decimal::RoundingStrategy::ToZero);
        }
    }
    let targets = split(invested, &weights, rules.money_dp);
    for (k, &i) in running.iter().enumerate() {
        let transfer = targets[k] - equity[i];
        let m = &mut members[i];
        lock(&m.session)
            .ledger
            .adjust_cash(transfer)
            .map_err(|e| Stop::Engine(e.to_string()))?;
        m.units.flow(time, equity[i], transfer);
        book.allocations.push(AllocationRow {
            time,
            strategy: Some(i),
            weight: weights[k],
            equity_before: equity[i],
            transfer,
            initial: false,
        });
        equity[i] = targets[k];
        cash[i] += transfer;
    }
    let reserve_after = total - invested;
    if reserve_after != reserve || reserve != Decimal::ZERO {
        book.allocations.push(AllocationRow {
            time,
            strategy: None,
            weight: Decimal::ZERO,
            equity_before: reserve,
            transfer: reserve_after - reserve,
            initial: false,
        });
    }
    risk.lock().reserve = reserve_after;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Ledger;
    use crate::model::{OrderId, OrderSide, OrderStatus};
    use proptest::prelude::*;

    #[test]
    fn capitals_sum_to_the_cash_exactly() {
        let w = super::super::allocator::normalize(&[Decimal::ONE; 3]);
        let c = initial_capitals(Decimal::from(100), &w, 2);
        assert_eq!(c.iter().copied().sum::<Decimal>(), Decimal::from(100));
        assert_eq!(c[1], Decimal::new(3333, 2));
        assert_eq!(c[0], Decimal::new(3334, 2));
    }

    #[test]
    fn units_take_flows_out_of_returns() {
        let mut u = Units::new(Decimal::from(100));
        u.close_day(0, Decimal::from(110), 10); // +10%
        // 110 in equity, 90 moved in: 200, still worth 1.1 a unit.
        u.flow(1, Decimal::from(110), Decimal::from(90));
        assert_eq!(u.value(Decimal::from(200)), Decimal::new(11, 1));
        u.close_day(1, Decimal::from(220), 10); // +10% on 200
        let r: Vec<Decimal> = u.daily.iter().map(|d| d.1).collect();
        assert_eq!(r, vec![Decimal::new(1, 1), Decimal::new(1, 1)]);
        assert_eq!(u.drawdown(Decimal::from(198)), Decimal::new(1, 1));
    }

    #[test]
    fn the_flow_adjusted_curve_scales_after_each_move_and_not_at_it() {
        use crate::engine::{Session, test_support::one_bar_market};
        use crate::execution::CommissionModel;
        let session = Session::new(
            one_bar_market(1, 60_000_000_000),
            Decimal::from(100),
            CommissionModel::default(),
        )
        .into_shared();
        let mut m = Member::new("a".into(), session, (), vec![SymbolId(0)], 1);
        let point = |time, equity: i64| EquityPoint {
            time,
            cash: Decimal::from(equity),
            equity: Decimal::from(equity),
        };
        // 100 → 110 (+10%), then 90 moves in at t=2 (recorded before the move), then +10%.
        m.outcome.equity = vec![point(1, 110), point(2, 110), point(3, 220)].into();
        m.units.flow(2, Decimal::from(110), Decimal::from(90));
        let adjusted: Vec<Decimal> = m.flow_adjusted_equity().iter().map(|p| p.equity).collect();
        assert_eq!(
            adjusted,
            vec![Decimal::from(110), Decimal::from(110), Decimal::from(121)]
        );
    }

    /// One scripted action: `(tick, symbol, buy?, quantity, what)`. `what`: 0 a market
    /// order; 1, 2, 3 a limit at the symbol's next open −0.30, at it, +0.30; 4 a limit 2.00
    /// inside the open (it rests); 5 an IOC limit at the next open; 6 a DAY market order;
    /// 7 cancels the strategy's oldest open order.
    type Step = (u64, u32, bool, u32, u8);

    struct Scripted {
        session: SharedSession,
        orders: Vec<Step>,
        tick: u64,
    }

    impl crate::engine::Strategy for Scripted {
        fn initialize(&mut self) -> Result<(), Stop> {
            Ok(())
        }
        fn on_fill(&mut self, _: &Fill) -> Result<(), Stop> {
            Ok(())
        }
        fn on_tick(&mut self) -> Result<(), Stop> {
            let mut s = lock(&self.session);
            for &(tick, symbol, buy, qty, what) in &self.orders {
                if tick != self.tick {
                    continue;
                }
                let symbol = SymbolId(symbol);
                if what == 7 {
                    let oldest = s
                        .orders
                        .all()
                        .iter()
                        .find(|o| o.status.is_open())
                        .map(|o| o.id);
                    let now = s.now;
                    if let Some(id) = oldest {
                        s.orders.cancel(id, "cancelled by the script", now);
                    }
                    continue;
                }
                // The test knows the next open (a script, not an algorithm).
                let next = s.market.closed_count(symbol);
                let series = s.market.series(symbol);
                if next >= series.time.len() {
                    continue;
                }
                let open = series.open.exact.get(next);
                let side = if buy { OrderSide::Buy } else { OrderSide::Sell };
                let mut request =
                    crate::execution::OrderRequest::market(symbol, side, Decimal::from(qty));
                let limit = |offset: i64| crate::model::OrderKind::Limit {
                    limit: open + Decimal::new(offset, 2),
                };
                let inside = if buy { -200 } else { 200 };
                match what {
                    1 => request.kind = limit(-30),
                    2 => request.kind = limit(0),
                    3 => request.kind = limit(30),
                    4 => request.kind = limit(inside),
                    5 => {
                        request.kind = limit(0);
                        request.tif = crate::model::TimeInForce::Ioc;
                    }
                    6 => request.tif = crate::model::TimeInForce::Day,
                    _ => {}
                }
                s.submit(request).unwrap();
            }
            self.tick += 1;
            Ok(())
        }
        fn on_stop(&mut self) -> Result<(), Stop> {
            Ok(())
        }
        fn check_interrupt(&mut self) -> Result<(), Stop> {
            Ok(())
        }
    }

    /// The first bar: 14 minutes before a UTC midnight (bar 14 opens at it).
    const START: i64 = crate::model::time::NANOS_PER_DAY - 14 * 60_000_000_000;

    /// S0 has a bar every minute, S1 none at minutes 1, 4, 7…: an order on S1 placed there
    /// waits a tick, when the strategies run again. Bars span open ± 0.50.
    fn two_symbol_market(bars: usize) -> Market {
        let series = (0..2)
            .map(|k| {
                let minutes: Vec<usize> = (0..bars).filter(|i| k == 0 || i % 3 != 1).collect();
                let texts = |shift: i64| -> crate::data::Column {
                    let prices: Vec<String> = minutes
                        .iter()
                        .map(|&i| {
                            let cents = (100 + k * 50 + (i * 7 % 13)) as i64 * 100
                                + (i * 31 % 100) as i64
                                + shift;
                            Decimal::new(cents, 2).to_string()
                        })
                        .collect();
                    crate::data::Column::parse_texts(&prices).unwrap()
                };
                crate::data::BarSeries {
                    symbol: format!("S{k}"),
                    source: "x.csv".into(),
                    time: minutes
                        .iter()
                        .map(|&i| START + i as i64 * 60_000_000_000)
                        .collect::<Vec<_>>()
                        .into(),
                    open: texts(0),
                    high: texts(50),
                    low: texts(-50),
                    close: texts(5),
                    volume: crate::data::Column::parse_texts(&vec!["1000"; minutes.len()]).unwrap(),
                }
            })
            .collect();
        Market::new(series, 60_000_000_000, false).unwrap()
    }

    /// What a scripted run gives each strategy.
    #[derive(Debug, PartialEq)]
    struct Ended {
        positions: [Decimal; 2],
        /// Fees and slippage.
        costs: Decimal,
        /// Cash before costs: what its fills came to at the prices they met.
        cash_before_costs: Decimal,
        /// Per order: its status and filled quantity, as its handle reports them.
        orders: Vec<(OrderStatus, Decimal)>,
        /// Per (order, time): quantity and value at the path price, over its fills.
        fills: std::collections::BTreeMap<(OrderId, i64), (Decimal, Decimal)>,
    }

    /// Three strategies on two symbols, each following its script.
    fn scripted_members(orders: &[Vec<Step>]) -> Vec<Member<Scripted>> {
        orders
            .iter()
            .enumerate()
            .map(|(i, script)| {
                let mut session = crate::engine::Session::new(
                    two_symbol_market(30),
                    Decimal::from(1_000_000),
                    crate::execution::CommissionModel {
                        rate: Decimal::new(1, 3),
                        minimum: Decimal::ONE,
                    },
                );
                session.set_execution(crate::engine::ExecutionSettings {
                    slippage_bps: Decimal::from(5),
                    ..Default::default()
                });
                let session = session.into_shared();
                let strategy = Scripted {
                    session: session.clone(),
                    orders: script.clone(),
                    tick: 0,
                };
                Member::new(
                    format!("s{i}"),
                    session,
                    strategy,
                    vec![SymbolId(0), SymbolId(1)],
                    2,
                )
            })
            .collect()
    }

    fn scripted_rules<'a>(spec: &'a PortfolioSpec, members: &[Member<Scripted>]) -> BookRules<'a> {
        let sessions: Vec<SharedSession> = members.iter().map(|m| m.session.clone()).collect();
        let shared = share_engine_work(&sessions, &["S0".to_string(), "S1".to_string()]);
        BookRules {
            spec,
            allocator: Box::new(super::super::allocator::Fixed),
            money_dp: 2,
            cross_section: Some(shared),
            added: Vec::new(),
        }
    }

    /// Runs a three-strategy book on scripted orders.
    fn run_scripted(
        orders: &[Vec<Step>],
        netting: bool,
    ) -> (Vec<Ended>, super::super::netting::NettingReport) {
        let mut spec =
            PortfolioSpec::from_algos(&["a.py".into(), "b.py".into(), "c.py".into()]).unwrap();
        spec.netting = netting;
        let mut market = two_symbol_market(30);
        let mut members = scripted_members(orders);
        let mut rules = scripted_rules(&spec, &members);
        let book = run_book(&mut market, &mut members, &mut rules, &mut |_| {});
        assert!(
            book.stop.is_none(),
            "{:?}",
            book.stop.map(|s| stop_reason(&s))
        );
        let ended = members
            .iter()
            .map(|m| {
                let s = lock(&m.session);
                let q = |k| {
                    s.ledger
                        .position(SymbolId(k))
                        .map(|p| p.quantity)
                        .unwrap_or_default()
                };
                let costs: Decimal = m.outcome.fills.iter().map(|f| f.fee + f.slippage).sum();
                let mut fills = std::collections::BTreeMap::new();
                for f in &m.outcome.fills {
                    // The slippage is in the price: take it out to get the price met.
                    let value = f.quantity * f.price - f.side.sign() * f.slippage;
                    let entry = fills
                        .entry((f.order_id, f.time))
                        .or_insert((Decimal::ZERO, Decimal::ZERO));
                    entry.0 += f.quantity;
                    entry.1 += value;
                }
                Ended {
                    positions: [q(0), q(1)],
                    costs,
                    cash_before_costs: s.ledger.cash() + costs,
                    orders: s
                        .orders
                        .all()
                        .iter()
                        .map(|o| (o.status, o.filled_quantity))
                        .collect(),
                    fills,
                }
            })
            .collect();
        (ended, book.netting)
    }

    #[test]
    fn crossing_100_against_60_sends_40_to_the_market() {
        let orders = vec![
            vec![(3, 0, true, 100, 0)],
            vec![(3, 0, false, 60, 0)],
            vec![],
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert_eq!(ended[0].positions[0], Decimal::from(100));
        assert_eq!(ended[1].positions[0], Decimal::from(-60));
        assert_eq!(report.crossings, 1);
        assert_eq!(report.quantity, Decimal::from(60));
        // The seller crossed everything: no fee, no slippage.
        assert_eq!(ended[1].costs, Decimal::ZERO);
        let (alone, _) = run_scripted(&orders, false);
        assert!(ended[0].costs < alone[0].costs && alone[1].costs > Decimal::ZERO);
    }

    /// Every strategy's fills, order by order, are those it has on its own (same bars, same
    /// quantities, same prices before costs), and it pays at most the costs it pays alone.
    fn assert_netting_changes_only_costs(with: &[Ended], without: &[Ended]) {
        for (w, wo) in with.iter().zip(without) {
            assert_eq!(w.positions, wo.positions);
            assert_eq!(w.orders, wo.orders);
            assert_eq!(w.fills, wo.fills);
            assert_eq!(w.cash_before_costs, wo.cash_before_costs);
            assert!(w.costs <= wo.costs, "{} > {}", w.costs, wo.costs);
        }
    }

    #[test]
    fn limit_orders_at_one_price_cross_when_the_bar_opens_there() {
        // Buy 100 and sell 60 + 30 at the next open of S0: 90 cross, 10 go to the market.
        let orders = vec![
            vec![(3, 0, true, 100, 2)],
            vec![(3, 0, false, 60, 2)],
            vec![(3, 0, false, 30, 2)],
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert_eq!((report.crossings, report.quantity), (1, Decimal::from(90)));
        assert_eq!(
            ended[0].orders,
            vec![(OrderStatus::Filled, Decimal::from(100))]
        );
        let buyer: Vec<_> = ended[0].fills.values().collect();
        assert_eq!(buyer.len(), 1, "crossed and matched at the same open");
        assert_eq!(
            (ended[1].costs, ended[2].costs),
            (Decimal::ZERO, Decimal::ZERO)
        );
        let (alone, none) = run_scripted(&orders, false);
        assert_eq!(none.crossings, 0);
        assert_netting_changes_only_costs(&ended, &alone);
        assert!(ended[0].costs < alone[0].costs);
    }

    #[test]
    fn limit_orders_away_from_the_open_are_left_to_fill_alone() {
        // At the open −0.30 the sell is marketable at the open and the buy fills at its limit
        // inside the bar: two prices, so nothing crosses. Different limits never group.
        let orders = vec![
            vec![(3, 0, true, 100, 1), (5, 0, true, 10, 2)],
            vec![(3, 0, false, 60, 1), (5, 0, false, 10, 3)],
            vec![],
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert_eq!((report.crossings, report.dropped), (0, 1));
        let (alone, _) = run_scripted(&orders, false);
        assert_eq!(ended, alone);
    }

    #[test]
    fn a_cancelled_order_leaves_its_group_and_the_rest_cross() {
        // S1 has no bar at minute 4: orders placed at tick 3 wait until tick 5, and at tick 4
        // the third strategy cancels its sell. The buyer and the first seller still cross.
        let orders = vec![
            vec![(3, 1, true, 100, 2)],
            vec![(3, 1, false, 60, 2)],
            vec![(3, 1, false, 30, 2), (4, 0, true, 1, 7)],
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert_eq!((report.crossings, report.quantity), (1, Decimal::from(60)));
        assert_eq!(
            ended[2].orders,
            vec![(OrderStatus::Cancelled, Decimal::ZERO)]
        );
        assert_eq!(ended[0].positions[1], Decimal::from(100));
        let (alone, _) = run_scripted(&orders, false);
        assert_netting_changes_only_costs(&ended, &alone);
    }

    #[test]
    fn a_resting_remainder_keeps_its_handle_right() {
        // Market orders: 40 of the buyer's 100 cross with the seller; the buyer's limit 2.00
        // under the open rests across bars on its own, never netted with the market orders.
        let orders = vec![
            vec![(3, 0, true, 100, 0), (3, 0, true, 50, 4)],
            vec![(3, 0, false, 40, 0), (3, 0, false, 50, 4)],
            vec![],
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert_eq!(report.crossings, 1);
        let (alone, _) = run_scripted(&orders, false);
        assert_netting_changes_only_costs(&ended, &alone);
    }

    #[test]
    fn day_orders_around_midnight_cross_only_if_they_live_to_their_bar() {
        // DAY orders on S1 placed at 23:59 (tick 12) wait for its bar 14 at midnight (it has
        // no bar 13) and expire at its open: they do not cross. Those placed later cross.
        let ticks = 12..17;
        let orders = vec![
            ticks.clone().map(|t| (t, 1, true, 10, 6)).collect(),
            ticks.clone().map(|t| (t, 1, false, 7, 6)).collect(),
            ticks.map(|t| (t, 0, false, 5, 6)).collect(),
        ];
        let (ended, report) = run_scripted(&orders, true);
        assert!(report.crossings > 0);
        let (alone, _) = run_scripted(&orders, false);
        assert!(
            alone[0].orders.iter().any(|o| o.0 == OrderStatus::Expired),
            "{:?}",
            alone[0].orders
        );
        assert_netting_changes_only_costs(&ended, &alone);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Netting never changes a strategy's fills (so neither its position), only its costs,
        /// which it never raises: market and limit orders, resting orders and cancellations.
        #[test]
        fn netting_keeps_positions_and_never_costs_more(
            scripts in proptest::collection::vec(
                proptest::collection::vec((0u64..25, 0u32..2, any::<bool>(), 1u32..300, 0u8..8), 0..12),
                3,
            )
        ) {
            let (with, _) = run_scripted(&scripts, true);
            let (without, _) = run_scripted(&scripts, false);
            for (w, wo) in with.iter().zip(&without) {
                prop_assert_eq!(&w.positions, &wo.positions);
                prop_assert_eq!(&w.orders, &wo.orders);
                prop_assert_eq!(&w.fills, &wo.fills);
                prop_assert_eq!(w.cash_before_costs, wo.cash_before_costs);
                prop_assert!(w.costs <= wo.costs, "{} > {}", w.costs, wo.costs);
            }
        }
    }

    /// The book's state at one close time, the account's curve and the strategies' ledgers.
    type Stepped = (
        Vec<EquityPoint>,
        Vec<(Option<usize>, Decimal)>,
        Vec<(Decimal, Decimal)>,
    );

    /// Steps a scripted book rebalanced every five minutes; with `split`, its stepper is
    /// saved (through JSON) after that many ticks and a new one restored from it steps on.
    fn step_scripted(orders: &[Vec<Step>], split: Option<u64>) -> Stepped {
        let mut spec =
            PortfolioSpec::from_algos(&["a.py".into(), "b.py".into(), "c.py".into()]).unwrap();
        spec.strategies[0].weight = Decimal::new(5, 1);
        spec.strategies[1].weight = Decimal::new(3, 1);
        spec.strategies[2].weight = Decimal::new(2, 1);
        spec.rebalance = Some(super::super::config::Rebalance {
            text: "*/5 * * * *".into(),
            rule: super::super::config::rebalance_rule("*/5 * * * *").unwrap(),
        });
        let mut market = two_symbol_market(30);
        let mut members = scripted_members(orders);
        let mut rules = scripted_rules(&spec, &members);
        let mut stepper = BookStepper::open(&market, &members, &rules);
        stepper.initialize(&mut members, &rules).unwrap();
        let mut clock = Clock::new(&market);
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        let mut curve = Vec::new();
        let mut moves = Vec::new();
        while clock.next_into(&market, &mut tick) {
            if split == Some(stepper.outcome.ticks) {
                let id = |i: usize, o: crate::model::OrderId| Some(format!("{i}-{}", o.0));
                let json = serde_json::to_string(&stepper.saved(&members, &market, id)).unwrap();
                let saved: SavedBook = serde_json::from_str(&json).unwrap();
                let ticks = stepper.outcome.ticks;
                curve.append(&mut stepper.outcome.equity);
                moves.extend(
                    stepper
                        .outcome
                        .allocations
                        .drain(members.len()..)
                        .map(|r| (r.strategy, r.transfer)),
                );
                stepper = BookStepper::open(&market, &members, &rules);
                let back = |_: usize, c: &str| {
                    c.split_once('-')
                        .map(|(_, n)| crate::model::OrderId(n.parse().unwrap()))
                };
                stepper.restore(saved, &mut members, &market, back).unwrap();
                assert_eq!(stepper.crossings.is_empty(), ticks != 10, "tick {ticks}");
                stepper.initialize(&mut members, &rules).unwrap();
                stepper.outcome.ticks = ticks;
            }
            stepper
                .step(&mut market, &mut members, &mut rules, &tick)
                .unwrap();
        }
        curve.append(&mut stepper.outcome.equity);
        moves.extend(
            stepper
                .outcome
                .allocations
                .drain(members.len()..)
                .map(|r| (r.strategy, r.transfer)),
        );
        let ledgers = members
            .iter()
            .map(|m| {
                let s = lock(&m.session);
                (
                    s.ledger.cash(),
                    m.flow_adjusted_equity().last().unwrap().equity,
                )
            })
            .collect();
        (curve, moves, ledgers)
    }

    /// Three strategies' scripts: market and limit orders on both symbols, a resting limit,
    /// and at tick 9 a buy of the third that crosses the first's sell (at the next open).
    fn three_scripts() -> Vec<Vec<Step>> {
        vec![
            vec![
                (2, 0, true, 100, 0),
                (9, 0, false, 100, 0),
                (16, 1, true, 30, 4),
            ],
            vec![(3, 1, false, 50, 0), (11, 1, true, 50, 2)],
            vec![
                (4, 0, true, 20, 1),
                (9, 0, true, 40, 0),
                (12, 0, true, 60, 0),
                (20, 0, false, 80, 0),
            ],
        ]
    }

    #[test]
    fn a_saved_and_restored_stepper_steps_on_as_one_that_never_stopped() {
        let orders = three_scripts();
        let straight = step_scripted(&orders, None);
        assert!(
            straight.1.iter().any(|(_, t)| !t.is_zero()),
            "cash moved at rebalances"
        );
        // At 10 the crossing found at tick 9 waits for its bar: saved and taken back.
        for split in [1, 7, 10, 13, 22] {
            assert_eq!(
                step_scripted(&orders, Some(split)),
                straight,
                "split at tick {split}"
            );
        }
        // A saved book of other strategies is refused.
        let spec =
            PortfolioSpec::from_algos(&["a.py".into(), "b.py".into(), "c.py".into()]).unwrap();
        let mut members = scripted_members(&orders);
        let rules = scripted_rules(&spec, &members);
        let market = two_symbol_market(30);
        let stepper = BookStepper::open(&market, &members, &rules);
        let mut saved = stepper.saved(&members, &market, |_, _| None);
        saved.strategies[1].id = "other".into();
        let mut again = BookStepper::open(&market, &members, &rules);
        let err = again
            .restore(saved, &mut members, &market, |_, _| None)
            .unwrap_err();
        assert!(err.contains("s0, other, s2"), "{err}");
    }

    /// A book rebalanced every five minutes on scripted orders (as `step_scripted`).
    fn changing_book() -> (PortfolioSpec, Market, Vec<Member<Scripted>>) {
        let orders = three_scripts();
        let mut spec =
            PortfolioSpec::from_algos(&["a.py".into(), "b.py".into(), "c.py".into()]).unwrap();
        spec.rebalance = Some(super::super::config::Rebalance {
            text: "*/5 * * * *".into(),
            rule: super::super::config::rebalance_rule("*/5 * * * *").unwrap(),
        });
        (spec, two_symbol_market(30), scripted_members(&orders))
    }

    /// Every sub-ledger's equity plus the unallocated cash.
    fn account_value(members: &[Member<Scripted>], stepper: &BookStepper) -> Decimal {
        let held: Decimal = members
            .iter()
            .map(|m| lock(&m.session).ledger.equity().unwrap())
            .sum();
        held + stepper.risk.lock().reserve
    }

    /// A strategy added at `time` with `capital`, on its own session whose bars are closed as
    /// far as the book's.
    fn added_member(market: &Market, capital: Decimal, id: &str) -> Member<Scripted> {
        let mut session = crate::engine::Session::new(
            two_symbol_market(30),
            capital,
            crate::execution::CommissionModel::default(),
        );
        for g in 0..2 {
            for _ in 0..market.closed_count(SymbolId(g)) {
                session.market.close_next_bar(SymbolId(g));
            }
        }
        let session = session.into_shared();
        let strategy = Scripted {
            session: session.clone(),
            orders: vec![(0, 0, true, 5, 0)],
            tick: 0,
        };
        Member::new(
            id.into(),
            session,
            strategy,
            vec![SymbolId(0), SymbolId(1)],
            2,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// An operator's stop (closing, or handing over to a strategy or the unallocated
        /// cash) and an added strategy (funded by a strategy or the unallocated cash) move
        /// value between sub-ledgers and never create or lose any: the account's value is the
        /// same Decimal just before and after each change, and at every later close time the
        /// account's point is the exact sum of the sub-ledgers and the unallocated cash.
        #[test]
        fn stops_and_adds_keep_the_account_exact(
            stop_at in 1u64..25,
            add_at in 1u64..25,
            who in 0usize..3,
            to in 0usize..4,
            hand_over in any::<bool>(),
            // 0: added by weight alone, funded at the next rebalance.
            capital in prop_oneof![Just(0i64), 1i64..600_000],
            from in 0usize..4,
        ) {
            use super::super::change::{AddRequest, Disposition, StopRequest};
            let (spec, mut market, mut members) = changing_book();
            let mut rules = scripted_rules(&spec, &members);
            let mut stepper = BookStepper::open(&market, &members, &rules);
            stepper.initialize(&mut members, &rules).unwrap();
            let mut clock = Clock::new(&market);
            let mut tick = Tick { time: 0, symbols: Vec::new() };
            let mut stopped = false;
            while clock.next_into(&market, &mut tick) {
                stepper.step(&mut market, &mut members, &mut rules, &tick).unwrap();
                let point = stepper.outcome.equity.last().unwrap().equity;
                prop_assert_eq!(point, account_value(&members, &stepper));
                let ticks = stepper.outcome.ticks;
                if ticks == stop_at {
                    let before = account_value(&members, &stepper);
                    let receiver = (to < 3 && to != who).then(|| format!("s{to}"));
                    let request = StopRequest {
                        positions: if hand_over { Disposition::HandOver } else { Disposition::Close },
                        to: receiver.clone().filter(|_| hand_over),
                    };
                    let giver_before = lock(&members[who].session).ledger.equity().unwrap();
                    let receiving = request.to.as_ref().map(|_| to);
                    let receiver_before = receiving
                        .map(|j| lock(&members[j].session).ledger.equity().unwrap());
                    let reason = "stopped through the control API by `ops`";
                    match stepper.stop_member(&market, &mut members, &rules, who, &request, reason, tick.time) {
                        Ok(done) => {
                            stopped = true;
                            prop_assert!(members[who].stopped.is_some());
                            if hand_over {
                                // Everything left the giver, exactly what it was worth.
                                prop_assert_eq!(lock(&members[who].session).ledger.equity().unwrap(), Decimal::ZERO);
                                prop_assert!(lock(&members[who].session).ledger.open_symbols().is_empty());
                                prop_assert_eq!(done.value, giver_before);
                                if let (Some(j), Some(b)) = (receiving, receiver_before) {
                                    prop_assert_eq!(lock(&members[j].session).ledger.equity().unwrap(), b + giver_before);
                                }
                            }
                        }
                        // Positions cannot go to the unallocated cash.
                        Err(refused) => {
                            prop_assert!(hand_over && request.to.is_none(), "{}", refused.message);
                            prop_assert_eq!(refused.status, 409);
                            prop_assert!(members[who].stopped.is_none());
                        }
                    }
                    prop_assert_eq!(before, account_value(&members, &stepper));
                }
                if ticks == add_at {
                    let before = account_value(&members, &stepper);
                    let request = AddRequest {
                        id: "added".into(),
                        algo: "x.py".into(),
                        class: None,
                        params: Vec::new(),
                        symbols: None,
                        weight: (capital == 0).then(|| Decimal::new(3, 1)),
                        capital: Decimal::new(capital, 0),
                        from: (from < 3 && capital > 0).then(|| format!("s{from}")),
                    };
                    match stepper.check_add(&members, &market, &request) {
                        Ok((universe, weight)) => {
                            prop_assert_eq!(universe, vec!["S0".to_string(), "S1".to_string()]);
                            let member = added_member(&market, request.capital, "added");
                            stepper.add_member(&mut members, &mut rules, &request, member, weight, tick.time).unwrap();
                            prop_assert_eq!(members.len(), 4);
                            prop_assert_eq!(rules.strategy(3).id.as_str(), "added");
                        }
                        Err(refused) => {
                            // Not that much cash where it was asked from.
                            prop_assert_eq!(refused.status, 409, "{}", refused.message);
                        }
                    }
                    prop_assert_eq!(before, account_value(&members, &stepper));
                }
            }
            let _ = stopped;
        }
    }

    /// A strategy added with a weight and no capital holds nothing (its orders are refused for
    /// buying power) until the next rebalance funds it with its normalized weight's share of
    /// the book; its returns start at that funding. Value never appears or vanishes.
    #[test]
    fn a_strategy_added_by_weight_alone_is_funded_at_the_next_rebalance() {
        use super::super::change::AddRequest;
        let (spec, mut market, mut members) = changing_book();
        let mut rules = scripted_rules(&spec, &members);
        let mut stepper = BookStepper::open(&market, &members, &rules);
        stepper.initialize(&mut members, &rules).unwrap();
        let mut clock = Clock::new(&market);
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        let mut funded_at = None;
        while clock.next_into(&market, &mut tick) {
            let rows = stepper.outcome.allocations.len();
            stepper
                .step(&mut market, &mut members, &mut rules, &tick)
                .unwrap();
            assert_eq!(
                stepper.outcome.equity.last().unwrap().equity,
                account_value(&members, &stepper)
            );
            if stepper.outcome.ticks == 2 {
                let before = account_value(&members, &stepper);
                let request = AddRequest {
                    id: "later".into(),
                    algo: "x.py".into(),
                    class: None,
                    params: Vec::new(),
                    symbols: None,
                    weight: Some(Decimal::new(5, 1)),
                    capital: Decimal::ZERO,
                    from: None,
                };
                let (_, weight) = stepper.check_add(&members, &market, &request).unwrap();
                assert_eq!(weight, Decimal::new(5, 1));
                let member = added_member(&market, Decimal::ZERO, "later");
                stepper
                    .add_member(
                        &mut members,
                        &mut rules,
                        &request,
                        member,
                        weight,
                        tick.time,
                    )
                    .unwrap();
                assert_eq!(before, account_value(&members, &stepper));
                assert_eq!(lock(&members[3].session).ledger.cash(), Decimal::ZERO);
            }
            if members.len() == 4 && funded_at.is_none() {
                let moved: Vec<&AllocationRow> = stepper.outcome.allocations[rows..]
                    .iter()
                    .filter(|r| r.strategy == Some(3) && !r.initial)
                    .collect();
                if let Some(row) = moved.first() {
                    // The configured weights (1/3 each and 0.5), normalized.
                    let base: Vec<Decimal> = (0..4).map(|i| rules.strategy(i).weight).collect();
                    let expected = super::super::allocator::normalize(&base)[3];
                    assert_eq!(row.weight, expected);
                    assert_eq!(row.equity_before, Decimal::ZERO);
                    assert!(row.transfer > Decimal::ZERO);
                    assert_eq!(lock(&members[3].session).ledger.cash(), row.transfer);
                    assert_eq!(members[3].return_base(), row.transfer);
                    funded_at = Some((tick.time, row.transfer));
                }
            }
        }
        let (time, capital) = funded_at.expect("a rebalance funded the strategy");
        // Its scripted buy came before the funding: refused for buying power, nothing held.
        let s = lock(&members[3].session);
        assert!(
            s.orders
                .all()
                .iter()
                .all(|o| o.status == OrderStatus::Rejected)
        );
        drop(s);
        // Flat at its base until funded, then the strategy's own equity (no flows since).
        for p in members[3].flow_adjusted_equity() {
            if p.time <= time {
                assert_eq!(p.equity, capital, "at {}", p.time);
            }
        }
    }

    #[test]
    fn bad_stops_and_adds_are_refused_and_change_nothing() {
        use super::super::change::{AddRequest, Disposition, StopRequest};
        let (spec, mut market, mut members) = changing_book();
        let mut rules = scripted_rules(&spec, &members);
        let mut stepper = BookStepper::open(&market, &members, &rules);
        stepper.initialize(&mut members, &rules).unwrap();
        let mut clock = Clock::new(&market);
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        for _ in 0..4 {
            clock.next_into(&market, &mut tick);
            stepper
                .step(&mut market, &mut members, &mut rules, &tick)
                .unwrap();
        }
        let before = account_value(&members, &stepper);
        let stop = |positions, to: Option<&str>| StopRequest {
            positions,
            to: to.map(str::to_string),
        };
        let reason = "stopped through the control API by `ops`";
        let cases = [
            (
                stop(Disposition::HandOver, Some("nobody")),
                422,
                "no strategy `nobody`",
            ),
            (
                stop(Disposition::HandOver, Some("s0")),
                422,
                "its own positions",
            ),
            (stop(Disposition::Close, Some("s1")), 422, "goes with"),
            // s0 holds S0 (bought at tick 2): positions cannot go to the unallocated cash.
            (
                stop(Disposition::HandOver, None),
                409,
                "unallocated cash holds no positions",
            ),
        ];
        for (request, status, text) in cases {
            let refused = stepper
                .stop_member(
                    &market,
                    &mut members,
                    &rules,
                    0,
                    &request,
                    reason,
                    tick.time,
                )
                .unwrap_err();
            assert_eq!(refused.status, status, "{}", refused.message);
            assert!(refused.message.contains(text), "{}", refused.message);
            assert!(members[0].stopped.is_none());
        }
        // Stopped once, closed: a second close is refused, a hand-over of what is left is not.
        stepper
            .stop_member(
                &market,
                &mut members,
                &rules,
                1,
                &stop(Disposition::Close, None),
                reason,
                tick.time,
            )
            .unwrap();
        let again = stepper
            .stop_member(
                &market,
                &mut members,
                &rules,
                1,
                &stop(Disposition::Close, None),
                reason,
                tick.time,
            )
            .unwrap_err();
        assert_eq!(again.status, 409, "{}", again.message);
        let receive = stepper
            .stop_member(
                &market,
                &mut members,
                &rules,
                2,
                &stop(Disposition::HandOver, Some("s1")),
                reason,
                tick.time,
            )
            .unwrap_err();
        assert_eq!(receive.status, 409, "{}", receive.message);
        assert!(
            receive.message.contains("only a running strategy"),
            "{}",
            receive.message
        );
        assert_eq!(before, account_value(&members, &stepper));

        let add =
            |id: &str, symbols: Option<Vec<&str>>, capital: i64, from: Option<&str>| AddRequest {
                id: id.into(),
                algo: "x.py".into(),
                class: None,
                params: Vec::new(),
                symbols: symbols.map(|s| s.into_iter().map(str::to_string).collect()),
                weight: None,
                capital: Decimal::from(capital),
                from: from.map(str::to_string),
            };
        let cases = [
            (add("s2", None, 10, Some("s0")), 409, "already (running)"),
            (add("s1", None, 10, Some("s0")), 409, "already (stopped)"),
            (
                add("no spaces", None, 10, Some("s0")),
                422,
                "not a plain name",
            ),
            (
                add("x", Some(vec!["S0", "BTC"]), 10, Some("s0")),
                422,
                "`BTC` is not a symbol of this session (S0, S1)",
            ),
            (add("x", Some(vec![]), 10, Some("s0")), 422, "empty"),
            (add("x", None, 0, Some("s0")), 422, "more than zero"),
            (add("x", None, -5, None), 422, "must not be negative"),
            (
                add("x", None, 10, Some("nobody")),
                422,
                "no strategy `nobody`",
            ),
            (add("x", None, 10, None), 409, "the unallocated cash is 0"),
            (add("x", None, 10_000_000, Some("s2")), 409, "`s2`'s cash"),
        ];
        for (request, status, text) in cases {
            let refused = stepper.check_add(&members, &market, &request).unwrap_err();
            assert_eq!(refused.status, status, "{}", refused.message);
            assert!(refused.message.contains(text), "{}", refused.message);
        }
        // By weight alone: with `from` (nothing moves now) is refused, and so is any in a book
        // that never rebalances.
        let by_weight = |from: Option<&str>| AddRequest {
            weight: Some(Decimal::new(2, 1)),
            ..add("x", None, 0, from)
        };
        let refused = stepper
            .check_add(&members, &market, &by_weight(Some("s0")))
            .unwrap_err();
        assert_eq!(refused.status, 422, "{}", refused.message);
        assert!(
            refused.message.contains("drop `from`"),
            "{}",
            refused.message
        );
        assert!(
            stepper
                .check_add(&members, &market, &by_weight(None))
                .is_ok()
        );
        let mut fixed = spec.clone();
        fixed.rebalance = None;
        let never = BookStepper::open(&market, &members, &scripted_rules(&fixed, &members));
        let refused = never
            .check_add(&members, &market, &by_weight(None))
            .unwrap_err();
        assert_eq!(refused.status, 422, "{}", refused.message);
        assert!(
            refused.message.contains("never rebalances"),
            "{}",
            refused.message
        );
        assert_eq!(members.len(), 3);
        assert_eq!(before, account_value(&members, &stepper));
    }

    fn fill(symbol: u32, buy: bool, qty: u32, price: u32) -> Fill {
        Fill {
            order_id: OrderId(1),
            symbol: SymbolId(symbol),
            side: if buy { OrderSide::Buy } else { OrderSide::Sell },
            quantity: Decimal::from(qty),
            price: Decimal::from(price),
            fee: Decimal::new(qty as i64, 2),
            slippage: Decimal::ZERO,
            time: 0,
        }
    }

    proptest! {
        /// The account is the exact sum of the sub-ledgers: an account ledger that applies
        /// every strategy's fills (and sees the rebalancing moves, which net to zero) has the
        /// sum of their cash, positions and equity after every step.
        #[test]
        fn account_is_the_sum_of_sub_ledgers(
            steps in proptest::collection::vec(
                (0usize..3, 0u32..2, any::<bool>(), 1u32..50, 50u32..150, -500i64..500),
                1..60,
            )
        ) {
            let capitals = [Decimal::from(3000), Decimal::from(5000), Decimal::from(2000)];
            let mut subs: Vec<Ledger> = capitals.iter().map(|c| Ledger::new(*c, 2)).collect();
            let mut account = Ledger::new(Decimal::from(10000), 2);
            for (who, symbol, buy, qty, price, moved) in steps {
                let f = fill(symbol, buy, qty, price);
                subs[who].apply_fill(&f).unwrap();
                account.apply_fill(&f).unwrap();
                // A rebalance moves cash from one strategy to the next: zero for the account.
                let moved = Decimal::new(moved, 1);
                subs[who].adjust_cash(-moved).unwrap();
                subs[(who + 1) % 3].adjust_cash(moved).unwrap();
                let mark = Decimal::from(price);
                for l in subs.iter_mut().chain(std::iter::once(&mut account)) {
                    l.mark(SymbolId(symbol), mark).unwrap();
                }
                let cash: Decimal = subs.iter().map(Ledger::cash).sum();
                prop_assert_eq!(cash, account.cash());
                let equity: Decimal = subs.iter().map(|l| l.equity().unwrap()).sum();
                prop_assert_eq!(equity, account.equity().unwrap());
                for s in 0..2 {
                    let q = |l: &Ledger| l.position(SymbolId(s)).map(|p| p.quantity).unwrap_or_default();
                    let sum: Decimal = subs.iter().map(q).sum();
                    prop_assert_eq!(sum, q(&account));
                }
            }
        }
    }
}
