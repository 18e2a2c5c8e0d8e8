use rust_decimal::Decimal;

use super::position::{OpenTrade, Position};
use crate::model::{ClosedTrade, Fill, SymbolId, TimestampNs};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("decimal overflow while {0}")]
    Overflow(&'static str),
    #[error("unknown symbol index {0}")]
    UnknownSymbol(u32),
    #[error("invalid fill: {0}")]
    InvalidFill(&'static str),
}

/// Exact books of one account. Every operation uses checked Decimal arithmetic, so an amount
/// that does not fit is an error, never a panic or a silent rounding.
///
/// Invariants (property-tested below):
/// - `equity == cash + Σ quantity × mark`
/// - `equity == initial_cash + Σ realized + Σ unrealized − fees_paid − carry_paid`
/// - closing a whole position realizes exactly the unrealized PnL it showed at the fill price.
#[derive(Debug, Clone)]
pub struct Ledger {
    initial_cash: Decimal,
    cash: Decimal,
    fees_paid: Decimal,
    /// Net borrow and financing debited (negative when credit interest exceeded them).
    carry_paid: Decimal,
    positions: Vec<Position>,
    /// Symbols with a non-zero quantity, so marking to market is O(open positions).
    open: Vec<SymbolId>,
    closed_trades: Vec<ClosedTrade>,
}

fn overflow(what: &'static str) -> LedgerError {
    LedgerError::Overflow(what)
}

impl Ledger {
    pub fn new(initial_cash: Decimal, symbol_count: usize) -> Self {
        Ledger {
            initial_cash,
            cash: initial_cash,
            fees_paid: Decimal::ZERO,
            carry_paid: Decimal::ZERO,
            positions: vec![Position::default(); symbol_count],
            open: Vec::new(),
            closed_trades: Vec::new(),
        }
    }

    pub fn initial_cash(&self) -> Decimal {
        self.initial_cash
    }

    pub fn cash(&self) -> Decimal {
        self.cash
    }

    pub fn fees_paid(&self) -> Decimal {
        self.fees_paid
    }

    /// Net borrow and financing debited so far (see [`Ledger::apply_carry`]).
    pub fn carry_paid(&self) -> Decimal {
        self.carry_paid
    }

    /// Debits a holding cost from cash: `amount` > 0 is a cost (borrow, debit interest),
    /// < 0 income (credit interest). Positions are untouched; all or nothing on overflow.
    pub fn apply_carry(&mut self, amount: Decimal) -> Result<(), LedgerError> {
        let cash = self
            .cash
            .checked_sub(amount)
            .ok_or(overflow("debiting carry"))?;
        let carry_paid = self
            .carry_paid
            .checked_add(amount)
            .ok_or(overflow("adding carry"))?;
        self.cash = cash;
        self.carry_paid = carry_paid;
        Ok(())
    }

    /// Cash moved by something outside trading (a live broker's balance adopted at
    /// reconciliation, a deposit): not a cost, not PnL. All or nothing on overflow.
    pub fn adjust_cash(&mut self, delta: Decimal) -> Result<(), LedgerError> {
        self.cash = self
            .cash
            .checked_add(delta)
            .ok_or(overflow("adjusting cash"))?;
        Ok(())
    }

    /// A split of `symbol` at its ex-date: `new_shares` for every `old_shares`. The position's
    /// quantity is multiplied by the ratio and its mark and the open trade's price extremes
    /// divided by it; the cost basis stays, so the average price is divided too and equity does
    /// not move. A fractional new quantity is rounded toward zero to `unit` (the lot size, or
    /// one share) and the fraction is paid in cash at the new mark ("cash in lieu", realized
    /// against its share of the cost basis). Returns the quantity before, after, and the cash.
    pub fn split(
        &mut self,
        symbol: SymbolId,
        new_shares: Decimal,
        old_shares: Decimal,
        unit: Decimal,
    ) -> Result<(Decimal, Decimal, Decimal), LedgerError> {
        let ratio = |v: Decimal| {
            v.checked_mul(new_shares)
                .and_then(|x| x.checked_div(old_shares))
        };
        let unratio = |v: Decimal| {
            v.checked_mul(old_shares)
                .and_then(|x| x.checked_div(new_shares))
        };
        let position = self
            .positions
            .get_mut(symbol.index())
            .ok_or(LedgerError::UnknownSymbol(symbol.0))?;
        let before = position.quantity;
        let mark = unratio(position.mark).ok_or(overflow("splitting a mark"))?;
        position.mark = mark;
        if before.is_zero() {
            return Ok((before, before, Decimal::ZERO));
        }
        let exact = ratio(before).ok_or(overflow("splitting a position"))?;
        let kept = if unit > Decimal::ZERO {
            (exact / unit).trunc() * unit
        } else {
            exact
        };
        let fraction = exact - kept;
        // The fraction leaves at the new mark with its share of the cost basis.
        let (cash, basis) = if fraction.is_zero() {
            (Decimal::ZERO, Decimal::ZERO)
        } else {
            let basis = position
                .cost_basis
                .checked_mul(fraction)
                .and_then(|b| b.checked_div(exact))
                .ok_or(overflow("cash in lieu"))?;
            (
                fraction.checked_mul(mark).ok_or(overflow("cash in lieu"))?,
                basis,
            )
        };
        position.cost_basis -= basis;
        position.realized_pnl += cash - basis;
        position.quantity = kept;
        if let Some(trade) = position.open_trade.as_mut() {
            trade.max_quantity = ratio(trade.max_quantity).unwrap_or(trade.max_quantity);
            trade.low = unratio(trade.low).unwrap_or(trade.low);
            trade.high = unratio(trade.high).unwrap_or(trade.high);
            trade.realized += cash - basis;
        }
        self.cash = self
            .cash
            .checked_add(cash)
            .ok_or(overflow("cash in lieu"))?;
        if kept.is_zero() {
            self.open.retain(|s| *s != symbol);
        }
        Ok((before, kept, cash))
    }

    /// A cash dividend of `per_share` on `symbol` at its ex-date: a long position receives
    /// quantity × amount, a short one pays it. Returns the cash moved.
    pub fn dividend(
        &mut self,
        symbol: SymbolId,
        per_share: Decimal,
    ) -> Result<Decimal, LedgerError> {
        let quantity = self
            .positions
            .get(symbol.index())
            .ok_or(LedgerError::UnknownSymbol(symbol.0))?
            .quantity;
        let cash = quantity
            .checked_mul(per_share)
            .ok_or(overflow("a dividend"))?;
        self.cash = self.cash.checked_add(cash).ok_or(overflow("a dividend"))?;
        Ok(cash)
    }

    pub fn position(&self, symbol: SymbolId) -> Option<&Position> {
        self.positions.get(symbol.index())
    }

    /// Symbols currently holding a non-zero quantity.
    pub fn open_symbols(&self) -> &[SymbolId] {
        &self.open
    }

    pub fn closed_trades(&self) -> &[ClosedTrade] {
        &self.closed_trades
    }

    /// Forgets the trades closed so far: a live session that rebuilt its book from earlier
    /// sessions' fills reports only the trades it closes itself.
    pub fn forget_closed_trades(&mut self) {
        self.closed_trades.clear();
    }

    /// Sets the mark (last close) of a symbol.
    pub fn mark(&mut self, symbol: SymbolId, price: Decimal) -> Result<(), LedgerError> {
        self.mark_bar(symbol, price, || (price, price))
    }

    /// Marks `symbol` at a bar's close after its fills; an open trade's excursions also see
    /// the bar's `(low, high)` (MAE/MFE use the intrabar range, not just closes). `range` is
    /// read only when a trade is open, so a flat symbol's bar costs no more than a mark.
    pub fn mark_bar(
        &mut self,
        symbol: SymbolId,
        close: Decimal,
        range: impl FnOnce() -> (Decimal, Decimal),
    ) -> Result<(), LedgerError> {
        let position = self
            .positions
            .get_mut(symbol.index())
            .ok_or(LedgerError::UnknownSymbol(symbol.0))?;
        position.mark = close;
        if let Some(trade) = position.open_trade.as_mut() {
            let (low, high) = range();
            trade.seen(low.min(close), high.max(close));
        }
        Ok(())
    }

    /// `cash + Σ quantity × mark` over the open positions.
    pub fn equity(&self) -> Result<Decimal, LedgerError> {
        let mut equity = self.cash;
        for symbol in &self.open {
            let value = self.positions[symbol.index()]
                .market_value()
                .ok_or(overflow("valuing a position"))?;
            equity = equity
                .checked_add(value)
                .ok_or(overflow("summing equity"))?;
        }
        Ok(equity)
    }

    /// Total realized price PnL over all symbols (fees not included).
    pub fn realized_pnl(&self) -> Decimal {
        self.positions.iter().map(|p| p.realized_pnl).sum()
    }

    /// Applies one execution: cash moves by the exact fill value plus the fee, the position
    /// grows, shrinks or flips, and a round trip that returns to flat is recorded as a trade.
    pub fn apply_fill(&mut self, fill: &Fill) -> Result<(), LedgerError> {
        if fill.quantity <= Decimal::ZERO {
            return Err(LedgerError::InvalidFill("quantity must be positive"));
        }
        if fill.fee < Decimal::ZERO {
            return Err(LedgerError::InvalidFill("fee must not be negative"));
        }
        let index = fill.symbol.index();
        if index >= self.positions.len() {
            return Err(LedgerError::UnknownSymbol(fill.symbol.0));
        }
        let delta = fill.signed_quantity();
        let value = delta
            .checked_mul(fill.price)
            .ok_or(overflow("computing a fill's value"))?;
        let cash = self
            .cash
            .checked_sub(value)
            .and_then(|c| c.checked_sub(fill.fee))
            .ok_or(overflow("updating cash"))?;
        let fees_paid = self
            .fees_paid
            .checked_add(fill.fee)
            .ok_or(overflow("adding fees"))?;

        // Work on a copy so a failure leaves the books untouched.
        let mut position = self.positions[index].clone();
        let mut closed = Vec::new();
        apply_to_position(&mut position, fill, delta, &mut closed)?;

        self.cash = cash;
        self.fees_paid = fees_paid;
        let was_open = !self.positions[index].quantity.is_zero();
        let is_open = !position.quantity.is_zero();
        self.positions[index] = position;
        match (was_open, is_open) {
            (false, true) => self.open.push(fill.symbol),
            (true, false) => self.open.retain(|s| *s != fill.symbol),
            _ => {}
        }
        self.closed_trades.extend(closed);
        Ok(())
    }
}

fn apply_to_position(
    position: &mut Position,
    fill: &Fill,
    delta: Decimal,
    closed: &mut Vec<ClosedTrade>,
) -> Result<(), LedgerError> {
    let quantity = position.quantity;
    if let Some(trade) = position.open_trade.as_mut() {
        trade.flush(quantity, position.cost_basis);
    }
    let mut fee_left = fill.fee;
    let mut remaining = delta;

    // Part of the fill that reduces an existing position of the opposite sign.
    if !quantity.is_zero() && quantity.is_sign_negative() != delta.is_sign_negative() {
        let closing = if delta.abs() >= quantity.abs() {
            -quantity
        } else {
            delta
        };
        // Cost allocated to the closed part. A whole close takes the whole basis exactly. A
        // partial close divides; the share is rounded (banker's) to the scale the basis is
        // kept in, so amounts never grow 28-digit tails that later sums would have to round.
        // Whatever the rounding, the same amount leaves the basis and enters realized PnL, so
        // equity = initial + realized + unrealized − fees stays exact.
        let allocated = if closing == -quantity {
            position.cost_basis
        } else {
            let scale = position
                .cost_basis
                .scale()
                .max(fill.price.scale() + closing.scale());
            position
                .cost_basis
                .checked_mul(closing.abs())
                .and_then(|v| v.checked_div(quantity.abs()))
                .ok_or(overflow("allocating cost basis"))?
                .round_dp(scale)
        };
        let proceeds = (-closing)
            .checked_mul(fill.price)
            .ok_or(overflow("computing proceeds"))?;
        let realized = proceeds
            .checked_sub(allocated)
            .ok_or(overflow("computing realized PnL"))?;
        position.cost_basis = position
            .cost_basis
            .checked_sub(allocated)
            .ok_or(overflow("reducing cost basis"))?;
        position.quantity = quantity
            .checked_add(closing)
            .ok_or(overflow("reducing a position"))?;
        position.realized_pnl = position
            .realized_pnl
            .checked_add(realized)
            .ok_or(overflow("adding realized PnL"))?;

        // The closing part carries the fee share of its quantity (all of it if nothing is left).
        let closing_fee = if closing == delta {
            fee_left
        } else {
            fill.fee
                .checked_mul(closing.abs())
                .and_then(|v| v.checked_div(delta.abs()))
                .ok_or(overflow("splitting a fee"))?
                .round_dp(fill.fee.scale().max(12))
        };
        fee_left -= closing_fee;
        if let Some(trade) = position.open_trade.as_mut() {
            trade.realized = trade
                .realized
                .checked_add(realized)
                .ok_or(overflow("adding trade PnL"))?;
            trade.fees = trade
                .fees
                .checked_add(closing_fee)
                .ok_or(overflow("adding trade fees"))?;
        }
        if position.quantity.is_zero() {
            position.cost_basis = Decimal::ZERO;
            if let Some(mut trade) = position.open_trade.take() {
                trade.note(trade.realized);
                closed.push(close_trade(trade, fill.symbol, fill.time)?);
            }
        } else if let Some(trade) = position.open_trade.as_mut() {
            trade.observe_fill(position.quantity, position.cost_basis, fill.price);
        }
        remaining = delta - closing;
    }

    // Part of the fill that opens or grows a position.
    if !remaining.is_zero() {
        let cost = remaining
            .checked_mul(fill.price)
            .ok_or(overflow("computing cost"))?;
        position.cost_basis = position
            .cost_basis
            .checked_add(cost)
            .ok_or(overflow("growing cost basis"))?;
        position.quantity = position
            .quantity
            .checked_add(remaining)
            .ok_or(overflow("growing a position"))?;
        let trade = position.open_trade.get_or_insert_with(|| OpenTrade {
            entry_time: fill.time,
            direction: if remaining.is_sign_negative() { -1 } else { 1 },
            max_quantity: Decimal::ZERO,
            realized: Decimal::ZERO,
            fees: Decimal::ZERO,
            mae: Decimal::ZERO,
            mfe: Decimal::ZERO,
            low: fill.price,
            high: fill.price,
        });
        trade.fees = trade
            .fees
            .checked_add(fee_left)
            .ok_or(overflow("adding trade fees"))?;
        trade.max_quantity = trade.max_quantity.max(position.quantity.abs());
        trade.observe_fill(position.quantity, position.cost_basis, fill.price);
    }
    Ok(())
}

fn close_trade(
    trade: OpenTrade,
    symbol: SymbolId,
    exit_time: TimestampNs,
) -> Result<ClosedTrade, LedgerError> {
    Ok(ClosedTrade {
        symbol,
        direction: trade.direction,
        max_quantity: trade.max_quantity,
        entry_time: trade.entry_time,
        exit_time,
        pnl: trade
            .realized
            .checked_sub(trade.fees)
            .ok_or(overflow("computing trade PnL"))?,
        fees: trade.fees,
        mae: trade.mae,
        mfe: trade.mfe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderId, OrderSide};
    use proptest::prelude::*;
    use rust_decimal::dec;

    fn fill(side: OrderSide, quantity: Decimal, price: Decimal, fee: Decimal, time: i64) -> Fill {
        Fill {
            order_id: OrderId(time as u64),
            symbol: SymbolId(0),
            side,
            quantity,
            price,
            fee,
            slippage: Decimal::ZERO,
            time,
        }
    }

    #[test]
    fn trades_record_their_adverse_and_favourable_excursions() {
        let mut ledger = Ledger::new(dec!(1000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(2), dec!(10), dec!(0.1), 1))
            .unwrap();
        for mark in [dec!(9), dec!(8.5), dec!(11), dec!(13), dec!(12)] {
            ledger.mark(SymbolId(0), mark).unwrap();
        }
        // Half closed at 12.5 (+2.5 realized), the rest marked at 7 (-3): PnL -0.5.
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(1), dec!(12.5), dec!(0), 2))
            .unwrap();
        ledger.mark(SymbolId(0), dec!(7)).unwrap();
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(1), dec!(11), dec!(0), 3))
            .unwrap();
        let t = &ledger.closed_trades()[0];
        // Lowest: 2 × (8.5 - 10) = -3; highest: 2 × (13 - 10) = 6; fees are not in them.
        assert_eq!((t.mae, t.mfe), (dec!(-3), dec!(6)));
        assert_eq!(t.pnl, dec!(2.5) + dec!(1) - dec!(0.1));
        // A trade that only gains never shows an adverse excursion.
        let mut ledger = Ledger::new(dec!(1000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(1), dec!(10), dec!(0), 1))
            .unwrap();
        ledger.mark(SymbolId(0), dec!(9)).unwrap();
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(1), dec!(8), dec!(0), 2))
            .unwrap();
        let t = &ledger.closed_trades()[0];
        assert_eq!((t.mae, t.mfe), (dec!(0), dec!(2)));
    }

    #[test]
    fn excursions_see_the_intrabar_range_not_only_closes() {
        let mut ledger = Ledger::new(dec!(1000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(2), dec!(10), dec!(0), 1))
            .unwrap();
        // Closes stay within 9.5..11, but the bars traded down to 8 and up to 14.
        ledger
            .mark_bar(SymbolId(0), dec!(9.5), || (dec!(8), dec!(10.5)))
            .unwrap();
        ledger
            .mark_bar(SymbolId(0), dec!(11), || (dec!(9.5), dec!(14)))
            .unwrap();
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(2), dec!(11), dec!(0), 2))
            .unwrap();
        let t = &ledger.closed_trades()[0];
        assert_eq!((t.mae, t.mfe), (dec!(-4), dec!(8)));
        // A bar after the close does not touch the closed trade.
        ledger
            .mark_bar(SymbolId(0), dec!(50), || (dec!(1), dec!(100)))
            .unwrap();
        assert_eq!(ledger.closed_trades()[0].mae, dec!(-4));
    }

    #[test]
    fn long_round_trip_realizes_exact_pnl_and_records_a_trade() {
        let mut ledger = Ledger::new(dec!(1000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(10), dec!(12.34), dec!(0.5), 1))
            .unwrap();
        assert_eq!(ledger.cash(), dec!(1000) - dec!(123.4) - dec!(0.5));
        ledger.mark(SymbolId(0), dec!(13)).unwrap();
        assert_eq!(ledger.equity().unwrap(), dec!(876.1) + dec!(130));
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(10), dec!(13.01), dec!(0.25), 2))
            .unwrap();
        let position = ledger.position(SymbolId(0)).unwrap();
        assert!(position.is_flat());
        assert_eq!(position.realized_pnl, dec!(6.7));
        assert_eq!(ledger.cash(), dec!(1000) + dec!(6.7) - dec!(0.75));
        let trades = ledger.closed_trades();
        assert_eq!(trades.len(), 1);
        assert_eq!(trades[0].pnl, dec!(5.95));
        assert_eq!(trades[0].direction, 1);
        assert_eq!((trades[0].entry_time, trades[0].exit_time), (1, 2));
    }

    #[test]
    fn short_profits_when_price_falls() {
        let mut ledger = Ledger::new(dec!(0), 1);
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(3), dec!(100), dec!(0), 1))
            .unwrap();
        assert_eq!(ledger.position(SymbolId(0)).unwrap().quantity, dec!(-3));
        assert_eq!(ledger.cash(), dec!(300));
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(3), dec!(90), dec!(0), 2))
            .unwrap();
        assert_eq!(ledger.position(SymbolId(0)).unwrap().realized_pnl, dec!(30));
        assert_eq!(ledger.closed_trades()[0].direction, -1);
    }

    #[test]
    fn flip_closes_one_trade_and_opens_the_next() {
        let mut ledger = Ledger::new(dec!(1000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(2), dec!(10), dec!(0), 1))
            .unwrap();
        ledger
            .apply_fill(&fill(OrderSide::Sell, dec!(5), dec!(11), dec!(0.5), 2))
            .unwrap();
        let position = ledger.position(SymbolId(0)).unwrap();
        assert_eq!(position.quantity, dec!(-3));
        assert_eq!(position.cost_basis, dec!(-33));
        assert_eq!(position.average_price(), Some(dec!(11)));
        let trades = ledger.closed_trades();
        assert_eq!(trades.len(), 1);
        // 2/5 of the fee belongs to the closing part.
        assert_eq!(trades[0].fees, dec!(0.2));
        assert_eq!(trades[0].pnl, dec!(1.8));
    }

    #[test]
    fn rejects_bad_fills_without_touching_the_books() {
        let mut ledger = Ledger::new(dec!(1000), 1);
        let before = ledger.cash();
        assert!(
            ledger
                .apply_fill(&fill(OrderSide::Buy, dec!(0), dec!(10), dec!(0), 1))
                .is_err()
        );
        assert!(
            ledger
                .apply_fill(&fill(OrderSide::Buy, dec!(1), dec!(10), dec!(-1), 1))
                .is_err()
        );
        let mut huge = fill(OrderSide::Buy, Decimal::MAX, Decimal::MAX, dec!(0), 1);
        assert_eq!(
            ledger.apply_fill(&huge),
            Err(LedgerError::Overflow("computing a fill's value"))
        );
        huge.symbol = SymbolId(7);
        assert!(matches!(
            ledger.apply_fill(&huge),
            Err(LedgerError::UnknownSymbol(7))
        ));
        assert_eq!(ledger.cash(), before);
        assert_eq!(
            ledger.apply_carry(Decimal::MIN),
            Err(LedgerError::Overflow("debiting carry"))
        );
        assert_eq!((ledger.cash(), ledger.carry_paid()), (before, dec!(0)));
    }

    fn price() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000).prop_map(|cents| Decimal::new(cents, 2))
    }

    fn quantity() -> impl Strategy<Value = Decimal> {
        (1i64..100_000).prop_map(|milli| Decimal::new(milli, 3))
    }

    proptest! {
        #[test]
        fn ledger_invariants_hold_through_any_fill_sequence(
            steps in prop::collection::vec(
                (0u32..3, any::<bool>(), quantity(), price(), 0i64..500, price()), 1..60),
            carries in prop::collection::vec(-100_000i64..100_000, 60),
        ) {
            let initial = dec!(1000000);
            let mut ledger = Ledger::new(initial, 3);
            for (i, (symbol, buy, qty, px, fee_cents, mark)) in steps.into_iter().enumerate() {
                let side = if buy { OrderSide::Buy } else { OrderSide::Sell };
                let f = Fill { order_id: OrderId(i as u64), symbol: SymbolId(symbol), side,
                    quantity: qty, price: px, fee: Decimal::new(fee_cents, 2), slippage: Decimal::ZERO, time: i as i64 };
                let before = ledger.position(f.symbol).unwrap().quantity;
                let unrealized_at_fill = {
                    let p = ledger.position(f.symbol).unwrap();
                    p.quantity * px - p.cost_basis
                };
                let realized_before = ledger.position(f.symbol).unwrap().realized_pnl;
                ledger.apply_fill(&f).unwrap();
                // Fill value is exact.
                prop_assert_eq!(f.price * f.quantity, px * qty);
                let after = ledger.position(f.symbol).unwrap();
                prop_assert_eq!(after.quantity, before + f.signed_quantity());
                // Closing a whole position realizes exactly what it showed at the fill price.
                if after.quantity.is_zero() && !before.is_zero() {
                    prop_assert_eq!(after.realized_pnl - realized_before, unrealized_at_fill);
                }
                ledger.mark(SymbolId(symbol), mark).unwrap();
                // A day's borrow/financing between fills: cash only, exactly.
                let cash_before = ledger.cash();
                let carry = Decimal::new(carries[i], 4);
                ledger.apply_carry(carry).unwrap();
                prop_assert_eq!(ledger.cash(), cash_before - carry);
                let equity = ledger.equity().unwrap();
                let mut by_positions = ledger.cash();
                let mut pnl = Decimal::ZERO;
                for s in 0..3 {
                    let p = ledger.position(SymbolId(s)).unwrap();
                    by_positions += p.quantity * p.mark;
                    pnl += p.realized_pnl + p.unrealized_pnl().unwrap();
                }
                prop_assert_eq!(equity, by_positions);
                prop_assert_eq!(equity, initial + pnl - ledger.fees_paid() - ledger.carry_paid());
                prop_assert!(ledger.fees_paid() >= Decimal::ZERO);
            }
            let trades_fees: Decimal = ledger.closed_trades().iter().map(|t| t.fees).sum();
            prop_assert!(trades_fees <= ledger.fees_paid());
        }
    }

    #[test]
    fn a_split_keeps_equity_and_divides_the_average_price() {
        let mut ledger = Ledger::new(dec!(100000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(10), dec!(400), dec!(0), 1))
            .unwrap();
        ledger.mark(SymbolId(0), dec!(420)).unwrap();
        let equity = ledger.equity().unwrap();
        let (before, after, cash) = ledger
            .split(SymbolId(0), dec!(4), dec!(1), dec!(1))
            .unwrap();
        assert_eq!((before, after, cash), (dec!(10), dec!(40), dec!(0)));
        let p = ledger.position(SymbolId(0)).unwrap();
        assert_eq!(p.average_price(), Some(dec!(100)));
        assert_eq!(p.mark, dec!(105));
        assert_eq!(ledger.equity().unwrap(), equity);
    }

    #[test]
    fn a_reverse_split_pays_the_fraction_in_cash() {
        let mut ledger = Ledger::new(dec!(10000), 1);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(100), dec!(2), dec!(0), 1))
            .unwrap();
        ledger.mark(SymbolId(0), dec!(3)).unwrap();
        // 1 new share for 3 old: 33 shares at 9, the third of a share paid at 9: 3.
        let (_, after, cash) = ledger
            .split(SymbolId(0), dec!(1), dec!(3), dec!(1))
            .unwrap();
        assert_eq!(after, dec!(33));
        assert_eq!((cash * dec!(1000)).round() / dec!(1000), dec!(3));
        let p = ledger.position(SymbolId(0)).unwrap();
        // The basis of the fraction (200 × 1/100) leaves with it: 2 realized on it.
        assert_eq!(p.cost_basis.round_dp(20), dec!(198));
        assert_eq!(p.realized_pnl.round_dp(20), dec!(1));
        assert_eq!(ledger.equity().unwrap().round_dp(20), dec!(10100));
    }

    #[test]
    fn dividends_credit_longs_and_charge_shorts() {
        let mut ledger = Ledger::new(dec!(1000), 2);
        ledger
            .apply_fill(&fill(OrderSide::Buy, dec!(10), dec!(5), dec!(0), 1))
            .unwrap();
        assert_eq!(
            ledger.dividend(SymbolId(0), dec!(0.24)).unwrap(),
            dec!(2.40)
        );
        assert_eq!(ledger.cash(), dec!(952.40));
        let mut short = Ledger::new(dec!(1000), 1);
        short
            .apply_fill(&fill(OrderSide::Sell, dec!(10), dec!(5), dec!(0), 1))
            .unwrap();
        assert_eq!(
            short.dividend(SymbolId(0), dec!(0.24)).unwrap(),
            dec!(-2.40)
        );
        assert_eq!(short.cash(), dec!(1047.60));
        assert_eq!(ledger.dividend(SymbolId(1), dec!(1)).unwrap(), dec!(0));
    }
}
