use std::sync::{Arc, Mutex, MutexGuard};

use rust_decimal::Decimal;

use super::carry::CarryRates;
use super::cross_section::CrossSection;
use super::external::{ExternalSlippage, SlippageQuery, adjusted_price};
use super::indicator_set::IndicatorSet;
use super::margin::{Maintenance, OnMarginCall};
use crate::accounting::{CostLog, Ledger};
use crate::execution::{
    BrokerProfile, CommissionModel, CommissionSchedule, DayCount, FeeInput, FillCostModel,
    FinancingTerms, Instrument, LatencySampler, MatchSettings, OrderBook, OrderFees, OrderRejected,
    OrderRequest, SlippageInput, SlippageModel, executed_price,
};
use crate::market::{Aggregations, Market, SessionCalendar, Timeframe};
use crate::model::{OrderId, OrderSide, SymbolId, TimestampNs};

/// Everything the algorithm can observe or act on, owned by the engine. Python reaches it
/// only through the bridge, which holds the lock for the duration of one call and never
/// while the engine steps.
#[derive(Debug)]
pub struct Session {
    pub market: Market,
    pub ledger: Ledger,
    pub orders: OrderBook,
    pub commission: CommissionModel,
    pub execution: ExecutionSettings,
    /// Built from `execution.profile` by [`Session::set_execution`].
    pub profile_costs: Option<ProfileCosts>,
    pub indicators: IndicatorSet,
    pub aggregations: Aggregations,
    /// The latest bar of every symbol, for `ctx.latest(field)`.
    pub cross_section: Arc<CrossSection>,
    /// `ctx.time`: close time of the bar(s) just completed; before the first tick, the first
    /// bar's open time.
    pub now: TimestampNs,
    /// Time of the last tick processed; `None` before the first (no carry accrues then).
    pub last_tick: Option<TimestampNs>,
    /// Every commission, slippage, borrow and financing charge of the run.
    pub costs: CostLog,
    /// Borrow and financing terms, resolved by [`Session::set_execution`].
    pub carry: CarryRates,
    /// Maintenance fractions (long, short) per symbol; `None`: not checked.
    pub maintenance: Vec<Maintenance>,
    /// Whether any symbol has a maintenance fraction.
    pub maintenance_checked: bool,
    /// The orders of a liquidation under way.
    pub liquidation: Vec<OrderId>,
    /// The user's slippage model (Python), installed after `initialize`; replaces the
    /// built-in slippage when set.
    pub external_slippage: Option<Box<dyn ExternalSlippage>>,
    /// Set once a user model tried to improve a price (it is warned about once).
    pub warned_favourable: bool,
    /// Engine lines for the run's log, drained after each tick.
    pub notices: Vec<String>,
    /// Why new orders are refused (a live session's tripped circuit breaker): every order
    /// submitted meanwhile becomes `rejected` with this reason.
    pub halted: Option<String>,
    /// Orders are executed by an outside venue (a live exchange): the engine never matches
    /// them against bars; the live loop applies the venue's fills and statuses.
    pub external_execution: bool,
    /// Orders accepted before their symbol had a price (placed in `initialize`): their
    /// notional and buying-power checks run on the bar they would first fill on, before it
    /// matches, so no order path skips them.
    pub unpriced: Vec<OrderId>,
    /// Values the algorithm recorded (`self.record`), written to `records.parquet`.
    pub records: crate::metrics::RecordLog,
    /// Checks beyond this session's own (a portfolio's risk limits), run on every order
    /// that passed them.
    pub pre_trade: Option<std::sync::Arc<dyn PreTradeCheck>>,
    /// Splits and dividends still to apply, and those applied.
    pub actions: super::actions::Actions,
    /// A strategy of a portfolio's book: the book closes this session's bars after every
    /// strategy's engine step (`Market::close_next_bar`), and flat symbols are not marked.
    pub in_book: bool,
    /// `cross_section` is the book's, fed by the book once per bar for every strategy over
    /// the book's whole universe.
    pub shared_cross_section: bool,
}

/// An order check from outside the session: a portfolio's limits on the whole account.
pub trait PreTradeCheck: Send + Sync + std::fmt::Debug {
    /// `Err(reason)` rejects `request`, valued at `reference`.
    /// `excluded`: open orders not to count (the order being rechecked, and later ones).
    fn check(
        &self,
        session: &Session,
        request: &OrderRequest,
        reference: Decimal,
        excluded: &[OrderId],
    ) -> Result<(), String>;
}

pub type SharedSession = Arc<Mutex<Session>>;

/// Locks the session. A poisoned lock only means a panic happened elsewhere while it was
/// held; the data is still consistent because every mutation is all-or-nothing.
pub fn lock(session: &SharedSession) -> MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Session {
    pub fn new(market: Market, initial_cash: Decimal, commission: CommissionModel) -> Self {
        let symbols = market.symbol_count();
        let now = (0..symbols)
            .filter_map(|i| {
                market
                    .series(crate::model::SymbolId(i as u32))
                    .time
                    .first()
                    .copied()
            })
            .min()
            .unwrap_or(0);
        Session {
            market,
            ledger: Ledger::new(initial_cash, symbols),
            orders: OrderBook::new(symbols),
            commission,
            execution: ExecutionSettings::default(),
            profile_costs: None,
            indicators: IndicatorSet::default(),
            aggregations: Aggregations::default(),
            cross_section: Arc::new(CrossSection::new(symbols)),
            now,
            last_tick: None,
            costs: CostLog::new(symbols),
            carry: CarryRates::default(),
            maintenance: Vec::new(),
            maintenance_checked: false,
            liquidation: Vec::new(),
            external_slippage: None,
            warned_favourable: false,
            notices: Vec::new(),
            halted: None,
            external_execution: false,
            unpriced: Vec::new(),
            records: crate::metrics::RecordLog::default(),
            pre_trade: None,
            actions: Default::default(),
            in_book: false,
            shared_cross_section: false,
        }
    }

    /// Builds higher timeframes on `calendar` instead of UTC; before any is attached.
    pub fn with_calendar(mut self, calendar: SessionCalendar) -> Self {
        self.aggregations = Aggregations::new(calendar);
        self
    }

    pub fn into_shared(self) -> SharedSession {
        Arc::new(Mutex::new(self))
    }

    /// The aggregation of `symbol` at `timeframe` (a higher timeframe), created and caught up
    /// on the bars already closed at first use.
    pub fn aggregation(&mut self, symbol: SymbolId, timeframe: Timeframe) -> usize {
        self.aggregations.get_or_attach(
            symbol,
            timeframe,
            self.market.series(symbol),
            self.market.closed_count(symbol),
            self.market.interval_ns(symbol),
            self.now,
        )
    }

    /// Submits an order at `ctx.time`. Malformed requests are errors; breaches of the
    /// instrument's rules or of buying power give a `rejected` order with the reason.
    pub fn submit(&mut self, request: OrderRequest) -> Result<OrderId, OrderRejected> {
        if let Some(reason) = &self.halted {
            let reason = format!("trading halted: {reason}");
            return Ok(self.orders.reject(&request, self.now, reason));
        }
        let priced = match self.check_rules(&request, None, &[]) {
            Ok(priced) => priced,
            Err(reason) => return Ok(self.orders.reject(&request, self.now, reason)),
        };
        let latency = match self.profile_costs.as_mut() {
            Some(costs) if self.execution.latency_ns == 0 => costs.latency.next_ns(),
            _ => self.execution.latency_ns,
        };
        let id = self.orders.submit(request, self.now, latency)?;
        if !priced && !self.external_execution {
            self.unpriced.push(id);
        }
        Ok(id)
    }

    /// Runs the checks skipped at submission on the open orders of `symbol` that had no
    /// price then, with `price` (the open of the bar they would first fill on) as reference,
    /// in submission order: an order counts the ones already passed, not the ones still to
    /// check. An order that fails is rejected before it can fill.
    pub fn check_unpriced(&mut self, symbol: SymbolId, price: Decimal, time: TimestampNs) {
        if self.unpriced.is_empty() {
            return;
        }
        let (due, rest): (Vec<OrderId>, Vec<OrderId>) = std::mem::take(&mut self.unpriced)
            .into_iter()
            .partition(|id| self.orders.get(*id).is_some_and(|o| o.symbol == symbol));
        self.unpriced = rest;
        for (i, &id) in due.iter().enumerate() {
            let Some(order) = self.orders.get(id).filter(|o| o.status.is_open()) else {
                continue;
            };
            let request = OrderRequest {
                symbol: order.symbol,
                side: order.side,
                quantity: order.remaining(),
                kind: order.kind,
                tif: order.tif,
                oco_group: order.oco_group,
                parent: order.parent,
            };
            if let Err(reason) = self.check_rules(&request, Some(price), &due[i..]) {
                self.orders.reject_open(id, time, reason);
            }
        }
    }

    pub fn submit_market_order(
        &mut self,
        symbol: &str,
        side: OrderSide,
        quantity: Decimal,
    ) -> Result<OrderId, OrderRejected> {
        let id = self
            .market
            .symbol_id(symbol)
            .ok_or_else(|| OrderRejected::UnknownSymbol(symbol.to_string()))?;
        self.submit(OrderRequest::market(id, side, quantity))
    }

    /// Installs the run's execution settings (and the cost models of its broker profile).
    pub fn set_execution(&mut self, execution: ExecutionSettings) {
        self.profile_costs = execution.profile.as_ref().map(ProfileCosts::new);
        self.execution = execution;
        self.resolve_carry();
        self.resolve_maintenance();
    }

    pub fn instrument(&self, symbol: SymbolId) -> &Instrument {
        self.execution
            .instruments
            .get(symbol.index())
            .unwrap_or(&self.execution.default_instrument)
    }

    /// The last closed price of `symbol`, exact; None before its first bar.
    fn last_close(&self, symbol: SymbolId) -> Option<Decimal> {
        let closed = self.market.closed_count(symbol);
        closed
            .checked_sub(1)
            .map(|i| self.market.series(symbol).close.exact.get(i))
    }

    /// The instrument's rules and buying power. Ok(false): passed what could be checked, but
    /// there was no price (neither the request's nor a closed bar, nor `price`) to value it.
    /// `excluded`: open orders not to count (the order being rechecked, and later ones).
    fn check_rules(
        &self,
        request: &OrderRequest,
        price: Option<Decimal>,
        excluded: &[OrderId],
    ) -> Result<bool, String> {
        if request.quantity <= Decimal::ZERO {
            return Ok(true); // malformed: the book refuses it with an error
        }
        let instrument = self.instrument(request.symbol);
        let mut prices = Vec::new();
        prices.extend(request.kind.limit());
        prices.extend(request.kind.stop());
        let reference = request
            .kind
            .limit()
            .or(request.kind.stop())
            .or(price)
            .or_else(|| self.last_close(request.symbol));
        instrument.check(request.quantity, &prices, reference)?;
        if request.parent.is_some() || request.oco_group.is_some() {
            return Ok(true); // exits reduce what the entry opened
        }
        self.check_buying_power(request, reference, excluded)?;
        if let (Some(check), Some(reference)) = (&self.pre_trade, reference) {
            check.check(self, request, reference, excluded)?;
        }
        Ok(reference.is_some())
    }

    /// Nothing of this session's depends on `symbol`'s next bar: no open or unpriced order,
    /// no position, no built-in indicator or higher timeframe, no pending corporate action.
    #[inline]
    pub fn quiet_on(&self, symbol: SymbolId) -> bool {
        !self.orders.has_open(symbol)
            && self.unpriced.is_empty()
            && self
                .ledger
                .position(symbol)
                .is_none_or(|p| p.quantity.is_zero())
            && !self.indicators.feeds_on(symbol)
            && !self.aggregations.builds_on(symbol)
            && !self.actions.pending_for(symbol)
    }

    /// The position in `symbol` plus its open entry orders (not exits: they reduce what
    /// their entry opened), signed, leaving out `excluded`: what buying power and portfolio
    /// limits count as held.
    pub fn committed_quantity(&self, symbol: SymbolId, excluded: &[OrderId]) -> Decimal {
        let mut quantity = self
            .ledger
            .position(symbol)
            .map(|p| p.quantity)
            .unwrap_or_default();
        for order in self.orders.open_orders(symbol) {
            if order.parent.is_none() && order.oco_group.is_none() && !excluded.contains(&order.id)
            {
                quantity += order.side.sign() * order.remaining();
            }
        }
        quantity
    }

    /// Σ |position + open orders + this order| × price × margin over all symbols must stay
    /// within equity. Unknown before a symbol's first bar (no price yet): checked later, by
    /// [`Session::check_unpriced`].
    fn check_buying_power(
        &self,
        request: &OrderRequest,
        reference: Option<Decimal>,
        excluded: &[OrderId],
    ) -> Result<(), String> {
        let Some(reference) = reference else {
            return Ok(());
        };
        let equity = self.ledger.equity().map_err(|e| e.to_string())?;
        let mut required = Decimal::ZERO;
        for index in 0..self.market.symbol_count() {
            let symbol = SymbolId(index as u32);
            // A symbol with no position and no open order adds nothing: skipping it keeps the
            // check O(symbols in use) rather than O(universe) per order (500 symbols cost
            // 25 µs an order before).
            if symbol != request.symbol
                && !self.orders.has_open(symbol)
                && self
                    .ledger
                    .position(symbol)
                    .is_none_or(|p| p.quantity.is_zero())
            {
                continue;
            }
            let mut quantity = self.committed_quantity(symbol, excluded);
            let price = if symbol == request.symbol {
                quantity += request.side.sign() * request.quantity;
                reference
            } else {
                match self.last_close(symbol) {
                    Some(price) => price,
                    None => continue,
                }
            };
            let value = quantity.abs() * price;
            let margin = self.instrument(symbol).margin;
            // A cash account's margin is 1: one multiplication per symbol instead of two.
            required += if margin == Decimal::ONE {
                value
            } else {
                value * margin
            };
        }
        if required > equity {
            return Err(format!(
                "insufficient buying power: the positions and orders would need {} of margin, equity is {}",
                required.round_dp(2),
                equity.round_dp(2)
            ));
        }
        Ok(())
    }
}

/// How orders are executed in this run.
#[derive(Debug, Clone, Default)]
pub struct ExecutionSettings {
    pub matching: MatchSettings,
    pub latency_ns: i64,
    /// Basis points every taker fill pays (never improves a price).
    pub slippage_bps: Decimal,
    /// Per symbol (index = symbol id); symbols past the end use `default_instrument`.
    pub instruments: Vec<Instrument>,
    pub default_instrument: Instrument,
    /// A broker profile (`[execution] broker_profile`): its commission schedule, slippage
    /// models and latency replace the simple rate/bps settings above.
    pub profile: Option<BrokerProfile>,
    /// `[execution] day_count`: the basis of borrow and financing, over the profile's.
    pub day_count: Option<DayCount>,
    /// `[execution] financing_rate` / `financing_credit_rate`, over the profile's terms.
    pub financing: Option<FinancingTerms>,
    /// What a maintenance-margin breach does.
    pub on_margin_call: OnMarginCall,
    /// `[execution] slippage_model = "module:Class"`: a Python `SlippageModel` subclass.
    pub python_slippage: Option<String>,
}

/// The cost models built from a broker profile, with their running state (a tiered schedule's
/// rolling volume, the latency sampler's seed).
#[derive(Debug)]
pub struct ProfileCosts {
    pub commission: CommissionSchedule,
    pub slippage: Box<dyn SlippageModel>,
    pub latency: LatencySampler,
    /// Running fees of each order with fills, so a minimum or cap applies to the order's
    /// total rather than to each partial fill.
    pub order_fees: std::collections::HashMap<OrderId, OrderFees>,
}

impl ProfileCosts {
    pub fn new(profile: &BrokerProfile) -> Self {
        ProfileCosts {
            commission: profile.commission.clone(),
            slippage: profile.slippage_model(),
            latency: profile.latency.sampler(),
            order_fees: std::collections::HashMap::new(),
        }
    }
}

/// The session's costs as the book sees them.
pub struct SessionCosts<'a> {
    pub commission: &'a CommissionModel,
    pub slippage_bps: Decimal,
    pub profile: Option<&'a mut ProfileCosts>,
    /// The instrument's tick: profile slippage rounds to it, never favourably.
    pub tick: Option<Decimal>,
    /// The user's model, asked per fill instead of the built-in slippage.
    pub external: Option<&'a mut (dyn ExternalSlippage + 'static)>,
    /// The bar being matched, for the user's model.
    pub symbol: SymbolId,
    pub bar: Option<(crate::execution::BarPrices, TimestampNs)>,
    /// The user's model failed: the run stops with this error.
    pub error: Option<Box<crate::error::AlgorithmError>>,
    /// A warning for the log (a model that tried to improve a price), once per run.
    pub warned_favourable: &'a mut bool,
    pub notices: &'a mut Vec<String>,
}

impl FillCostModel for SessionCosts<'_> {
    fn price(
        &mut self,
        order: &crate::model::Order,
        reference: Decimal,
        quantity: Decimal,
        bar_volume: Decimal,
        maker: bool,
    ) -> Option<Decimal> {
        let side = order.side;
        if let (Some(model), Some((bar, bar_open_time))) = (self.external.as_deref_mut(), self.bar)
        {
            let query = SlippageQuery {
                order,
                symbol: self.symbol,
                quantity,
                reference,
                maker,
                bar,
                bar_open_time,
            };
            let adjustment = match model.adjustment(&query) {
                Ok(adjustment) => adjustment,
                Err(error) => {
                    self.error = Some(error);
                    return None;
                }
            };
            let (price, clamped) = adjusted_price(side, reference, adjustment, self.tick)?;
            if clamped && !*self.warned_favourable {
                *self.warned_favourable = true;
                self.notices.push(format!(
                    "{} WARNING engine: slippage model {} returned {adjustment} for order {}, \
                     which would improve the price; slippage is never favourable, so it was \
                     clamped to 0 (this warning is shown once)",
                    crate::model::format_timestamp(bar_open_time),
                    model.name(),
                    order.id.0
                ));
            }
            return Some(price);
        }
        if let Some(profile) = &self.profile {
            let input = SlippageInput {
                side,
                reference_price: reference,
                quantity,
                bar_volume,
                is_maker: maker,
            };
            return executed_price(profile.slippage.as_ref(), &input, self.tick);
        }
        if maker || self.slippage_bps.is_zero() {
            return Some(reference);
        }
        let shift = reference
            .checked_mul(self.slippage_bps)?
            .checked_div(Decimal::from(10_000))?;
        match side {
            OrderSide::Buy => reference.checked_add(shift),
            OrderSide::Sell => reference.checked_sub(shift),
        }
    }

    fn fee(
        &mut self,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        maker: bool,
        time: crate::model::TimestampNs,
        order: OrderId,
        order_done: bool,
    ) -> Option<Decimal> {
        if let Some(profile) = self.profile.as_deref_mut() {
            // IBKR semantics: the minimum (and cap) apply to the order's total, charged
            // incrementally, so the fees of its fills sum to what it would pay filled at once.
            let mut so_far = profile.order_fees.remove(&order).unwrap_or_default();
            let fee = profile.commission.order_fee(
                &FeeInput {
                    quantity,
                    price,
                    side,
                    is_maker: maker,
                    time,
                },
                &mut so_far,
            )?;
            if !order_done {
                profile.order_fees.insert(order, so_far);
            }
            return Some(fee);
        }
        self.commission.fee(quantity, price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{hold, one_bar_market};
    use crate::model::{OrderKind, TimeInForce};
    use rust_decimal::dec;

    fn request(symbol: u32, side: OrderSide, quantity: i64) -> OrderRequest {
        OrderRequest {
            symbol: SymbolId(symbol),
            side,
            quantity: Decimal::from(quantity),
            kind: OrderKind::Market,
            tif: TimeInForce::Gtc,
            oco_group: None,
            parent: None,
        }
    }

    proptest::proptest! {
        /// Buying power skips symbols with no position and no open order: the requirement it
        /// compares with equity is the full sum over the universe all the same.
        #[test]
        fn buying_power_skipping_idle_symbols_equals_the_full_sum(
            held in proptest::collection::vec((0u32..6, proptest::bool::ANY, 1i64..50), 0..4),
            open in proptest::collection::vec((0u32..6, proptest::bool::ANY, 1i64..50), 0..4),
            asked in (0u32..6, proptest::bool::ANY, 1i64..400),
            margin in proptest::sample::select(vec![dec!(1), dec!(0.5), dec!(2)]),
        ) {
            let side = |buy: bool| if buy { OrderSide::Buy } else { OrderSide::Sell };
            let mut s = Session::new(one_bar_market(6, 60_000_000_000), dec!(300), CommissionModel::default());
            s.set_execution(ExecutionSettings {
                default_instrument: crate::execution::Instrument {
                    margin,
                    ..Default::default()
                },
                ..Default::default()
            });
            for i in 0..6 {
                s.market.close_next_bar(SymbolId(i));
            }
            for (symbol, buy, quantity) in &held {
                hold(&mut s, *symbol, side(*buy), Decimal::from(*quantity), dec!(1));
            }
            for (symbol, buy, quantity) in &open {
                s.orders.submit(request(*symbol, side(*buy), *quantity), 0, 0).unwrap();
            }
            let asked = request(asked.0, side(asked.1), asked.2);
            // Reference: every symbol of the universe, whether it is in use or not.
            let equity = s.ledger.equity().unwrap();
            let required: Decimal = (0..6u32)
                .map(|i| {
                    let mut quantity = s.committed_quantity(SymbolId(i), &[]);
                    if SymbolId(i) == asked.symbol {
                        quantity += asked.side.sign() * asked.quantity;
                    }
                    quantity.abs() * dec!(1) * s.instrument(SymbolId(i)).margin
                })
                .sum();
            let checked = s.check_buying_power(&asked, Some(dec!(1)), &[]);
            proptest::prop_assert_eq!(checked.is_ok(), required <= equity, "{:?}", checked);
            if let Err(reason) = checked {
                let needed = format!("would need {} of margin", required.round_dp(2));
                proptest::prop_assert!(reason.contains(&needed), "{} / {}", reason, needed);
            }
        }
    }

    #[test]
    fn a_profile_minimum_applies_once_per_order_across_partial_fills() {
        let profile = BrokerProfile::from_toml(
            "name = \"t\"\n[commission]\nmodel = \"per_share\"\nrate = \"0.005\"\nminimum = \"1\"\n",
        )
        .unwrap();
        let mut profile_costs = ProfileCosts::new(&profile);
        let commission = CommissionModel::default();
        let (mut warned, mut notices) = (false, Vec::new());
        let mut costs = SessionCosts {
            commission: &commission,
            slippage_bps: Decimal::ZERO,
            profile: Some(&mut profile_costs),
            tick: None,
            external: None,
            symbol: SymbolId(0),
            bar: None,
            error: None,
            warned_favourable: &mut warned,
            notices: &mut notices,
        };
        let mut fee = |order: u64, quantity: Decimal, done: bool| {
            costs
                .fee(
                    OrderSide::Buy,
                    quantity,
                    dec!(10),
                    false,
                    0,
                    OrderId(order),
                    done,
                )
                .unwrap()
        };
        // Order 1 fills 100 + 100 + 100: cumulative max(0.005 × filled, 1) = 1, 1, 1.5.
        assert_eq!(fee(1, dec!(100), false), dec!(1));
        // Another order in between has its own minimum.
        assert_eq!(fee(2, dec!(10), true), dec!(1));
        assert_eq!(fee(1, dec!(100), false), dec!(0));
        assert_eq!(fee(1, dec!(100), true), dec!(0.5));
        // A finished order's running total is dropped: its id starts afresh.
        assert!(profile_costs.order_fees.is_empty());
    }
}
