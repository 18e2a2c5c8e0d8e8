//! Order netting between the strategies of a book: compatible orders on one symbol placed at
//! the same tick on opposite sides cross inside the book instead of both going to the market.
//! 100 bought by A and 60 sold by B: 60 of each cross, A's remaining 40 goes to the market.
//!
//! Compatible: plain orders (no bracket, no OCO) with the same time in force that are both
//! market orders, or both limit orders at the same limit price. A crossing fills only what each
//! order would have filled on its own, at the same bar and the same price before costs, so no
//! strategy's fills change except for the costs it saves:
//! - market orders cross at the open of the symbol's next bar (the price they meet there);
//! - limit orders cross at their limit, and only when that bar opens exactly at it: there both
//!   are marketable at the open and fill there in full. At any other open one of them fills on
//!   its own at the open, better than the limit, and the other at the limit later or never: no
//!   single crossing price matches both, so they are left to fill on their own.
//!
//! The crossed quantities fill with no commission and no slippage; the rest of each order (the
//! net quantity, split over the larger side's orders in proportion) then matches as usual, on
//! the same bar, as the order it is: its handle reports its status and its filled quantity,
//! crossed and matched together. The group is re-formed on its bar from the orders still open
//! there (one a strategy cancelled, or one its time in force expired, leaves it): the others
//! cross among themselves.
//!
//! Allocation on the larger side is in proportion to the orders' quantities, rounded down to
//! the group's quantity precision (the most decimals of its orders), the units left over going
//! one each to the largest remainders (earlier strategy first among equals): the crossed
//! quantities of both sides sum to the same exact Decimal.

use rust_decimal::Decimal;

use super::book::Member;
use crate::engine::lock;
use crate::market::Market;
use crate::model::{
    Fill, OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimeInForce, TimestampNs,
};

/// A group of compatible orders on opposite sides, waiting for its symbol's next bar.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// The book's symbol.
    pub symbol: SymbolId,
    /// None: market orders; the limit price of limit orders.
    pub limit: Option<Decimal>,
    /// (strategy index, order id in its session), in the book's order.
    pub orders: Vec<(usize, OrderId)>,
}

/// What netting did over a run.
#[derive(Debug, Default, Clone)]
pub struct NettingReport {
    pub crossings: u64,
    /// Quantity crossed on each side, summed over crossings.
    pub quantity: Decimal,
    pub notional: Decimal,
    /// The commission the crossed quantities would have paid at each strategy's commission
    /// rate (minimums left out).
    pub commission_saved: Decimal,
    /// Groups that crossed nothing on their bar: orders cancelled or expired before it left
    /// one side empty, or limit orders whose bar did not open at their limit.
    pub dropped: u64,
}

/// A plain market or limit order that may cross: (strategy, order, side, time in force, limit).
type Candidate = (usize, OrderId, OrderSide, TimeInForce, Option<Decimal>);

/// The groups of compatible orders the running strategies placed at `now` on opposite sides
/// of a symbol. `seen[i]` is how many orders strategy `i` had at the previous call: only orders
/// placed since are looked at, so a tick without new orders costs one length check per
/// strategy.
pub fn find<S>(
    members: &[Member<S>],
    now: TimestampNs,
    symbols: usize,
    seen: &mut [usize],
) -> Vec<Crossing> {
    let mut candidates: Vec<Vec<Candidate>> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let s = lock(&m.session);
        let all = s.orders.all();
        let new = all.get(seen[i]..).unwrap_or_default();
        seen[i] = all.len();
        if m.stopped.is_some() {
            continue;
        }
        for order in new {
            let limit = match order.kind {
                OrderKind::Market => None,
                OrderKind::Limit { limit } => Some(limit),
                _ => continue,
            };
            if order.status == OrderStatus::Accepted
                && order.submitted_at == now
                && order.filled_quantity.is_zero()
                && order.parent.is_none()
                && order.oco_group.is_none()
            {
                if candidates.is_empty() {
                    candidates = vec![Vec::new(); symbols];
                }
                candidates[m.global[order.symbol.index()].index()]
                    .push((i, order.id, order.side, order.tif, limit));
            }
        }
    }
    let mut crossings = Vec::new();
    for (symbol, orders) in candidates.into_iter().enumerate() {
        if orders.len() < 2 {
            continue;
        }
        // One group per (time in force, limit), in the order they first appear.
        let mut keys: Vec<(TimeInForce, Option<Decimal>)> = Vec::new();
        for o in &orders {
            if !keys.contains(&(o.3, o.4)) {
                keys.push((o.3, o.4));
            }
        }
        for key in keys {
            let group: Vec<&Candidate> = orders.iter().filter(|o| (o.3, o.4) == key).collect();
            let both_sides = group.iter().any(|o| o.2 == OrderSide::Buy)
                && group.iter().any(|o| o.2 == OrderSide::Sell);
            if both_sides {
                crossings.push(Crossing {
                    symbol: SymbolId(symbol as u32),
                    limit: key.1,
                    orders: group.iter().map(|o| (o.0, o.1)).collect(),
                });
            }
        }
    }
    crossings
}

/// `total` (at most the sum of `quantities`) split in proportion to `quantities`, rounded down
/// to `dp` decimals, the leftover units to the largest remainders (first among equals).
pub fn allocate(quantities: &[Decimal], total: Decimal, dp: u32) -> Vec<Decimal> {
    let sum: Decimal = quantities.iter().copied().sum();
    if sum.is_zero() {
        return vec![Decimal::ZERO; quantities.len()];
    }
    if total >= sum {
        return quantities.to_vec();
    }
    largest_remainders(quantities, sum, total, dp, true)
}

/// `total` (any amount: a fee) split in proportion to `weights` by the rule of [`allocate`],
/// without its cap: a share may exceed its weight. All zero weights: all to the first.
pub fn apportion(weights: &[Decimal], total: Decimal, dp: u32) -> Vec<Decimal> {
    let sum: Decimal = weights.iter().copied().sum();
    if sum.is_zero() {
        let mut shares = vec![Decimal::ZERO; weights.len()];
        if let Some(first) = shares.first_mut() {
            *first = total;
        }
        return shares;
    }
    largest_remainders(weights, sum, total, dp, false)
}

/// Hamilton's method: each share `weight × total / sum` rounded down to `dp` decimals, then
/// one unit each to the largest remainders (earlier first among equals) until `total` is
/// reached; `capped`: never past a share's own weight.
fn largest_remainders(
    weights: &[Decimal],
    sum: Decimal,
    total: Decimal,
    dp: u32,
    capped: bool,
) -> Vec<Decimal> {
    let exact: Vec<Decimal> = weights.iter().map(|q| *q * total / sum).collect();
    let mut shares: Vec<Decimal> = exact
        .iter()
        .map(|e| e.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::ToZero))
        .collect();
    let unit = Decimal::new(1, dp);
    let mut left = total - shares.iter().copied().sum::<Decimal>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - shares[b])
            .cmp(&(exact[a] - shares[a]))
            .then(a.cmp(&b))
    });
    for i in order {
        if left < unit {
            break;
        }
        if !capped || shares[i] + unit <= weights[i] {
            shares[i] += unit;
            left -= unit;
        }
    }
    shares
}

/// Fills the crossings due on the bars of `tick_symbols` (book ids) at each bar's open, into
/// the strategies' books and ledgers; `crossed[i]` gets strategy `i`'s fills. Each group is
/// re-formed from its orders still open, untouched and not expiring at the bar. Crossings on
/// other symbols stay pending.
pub fn apply_due<S>(
    pending: &mut Vec<Crossing>,
    tick_symbols: &[SymbolId],
    market: &Market,
    members: &[Member<S>],
    crossed: &mut [Vec<Fill>],
    report: &mut NettingReport,
) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let (due, rest): (Vec<Crossing>, Vec<Crossing>) = std::mem::take(pending)
        .into_iter()
        .partition(|c| tick_symbols.contains(&c.symbol));
    *pending = rest;
    for crossing in due {
        let index = market.closed_count(crossing.symbol);
        let series = market.series(crossing.symbol);
        let (price, time) = (series.open.exact.get(index), series.time[index]);
        let legs = legs(&crossing, members, time);
        if legs.is_empty() || crossing.limit.is_some_and(|limit| limit != price) {
            report.dropped += 1;
            continue;
        }
        report.crossings += 1;
        for (i, id, quantity) in &legs {
            let mut s = lock(&members[*i].session);
            let fill = s
                .orders
                .apply_venue_fill(*id, *quantity, price, Decimal::ZERO, time)
                .ok_or_else(|| format!("crossing order {} failed", id.0))?;
            s.ledger.apply_fill(&fill).map_err(|e| e.to_string())?;
            s.costs.record_fill(&fill).map_err(|e| e.to_string())?;
            let notional = *quantity * price;
            if fill.side == OrderSide::Buy {
                report.quantity += *quantity;
                report.notional += notional;
            }
            report.commission_saved += notional * s.commission.rate;
            crossed[*i].push(fill);
        }
    }
    Ok(())
}

/// The crossed quantity of each order of `crossing` still able to cross at a bar opening at
/// `open_time`: (strategy, order, quantity), empty when a side has none.
fn legs<S>(
    crossing: &Crossing,
    members: &[Member<S>],
    open_time: TimestampNs,
) -> Vec<(usize, OrderId, Decimal)> {
    let mut sides: [Vec<(usize, OrderId, Decimal)>; 2] = [Vec::new(), Vec::new()];
    for &(i, id) in &crossing.orders {
        let s = lock(&members[i].session);
        if members[i].stopped.is_some() {
            continue;
        }
        if let Some(o) = s.orders.get(id)
            && o.status == OrderStatus::Accepted
            && o.filled_quantity.is_zero()
            && o.deadline().is_none_or(|deadline| open_time < deadline)
        {
            sides[usize::from(o.side == OrderSide::Sell)].push((i, id, o.quantity));
        }
    }
    let total = |side: &[(usize, OrderId, Decimal)]| side.iter().map(|o| o.2).sum::<Decimal>();
    let quantity = total(&sides[0]).min(total(&sides[1]));
    if quantity.is_zero() {
        return Vec::new();
    }
    let dp = sides
        .iter()
        .flatten()
        .map(|o| o.2.scale())
        .max()
        .unwrap_or(0);
    let mut legs = Vec::new();
    for side in &sides {
        let quantities: Vec<Decimal> = side.iter().map(|o| o.2).collect();
        for (o, share) in side.iter().zip(allocate(&quantities, quantity, dp)) {
            if share > Decimal::ZERO {
                legs.push((o.0, o.1, share));
            }
        }
    }
    legs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::dec;

    #[test]
    fn larger_side_shares_in_proportion_with_remainders_to_the_largest() {
        assert_eq!(allocate(&[dec!(100)], dec!(60), 0), vec![dec!(60)]);
        // 60 over 50 + 25 + 25: 30, 15, 15.
        assert_eq!(
            allocate(&[dec!(50), dec!(25), dec!(25)], dec!(60), 0),
            vec![dec!(30), dec!(15), dec!(15)]
        );
        // 10 over three equal orders: 3.33… each, the leftover unit to the first.
        assert_eq!(
            allocate(&[dec!(7), dec!(7), dec!(7)], dec!(10), 0),
            vec![dec!(4), dec!(3), dec!(3)]
        );
        // 0.75 and 0.25 at one decimal: 0.7 and 0.2, the tenth left to the first of equals.
        assert_eq!(
            allocate(&[dec!(1.5), dec!(0.5)], dec!(1), 1),
            vec![dec!(0.8), dec!(0.2)]
        );
    }

    #[test]
    fn a_fee_is_apportioned_by_the_same_rule_without_the_cap() {
        // 0.000005 over shares 0.004 and 0.001: 0.000004 and 0.000001.
        assert_eq!(
            apportion(&[dec!(0.004), dec!(0.001)], dec!(0.000005), 6),
            vec![dec!(0.000004), dec!(0.000001)]
        );
        // More than the weights (a fee in cash on quantities of a coin): no cap.
        assert_eq!(
            apportion(&[dec!(0.001), dec!(0.002)], dec!(1.00), 2),
            vec![dec!(0.33), dec!(0.67)]
        );
        // 1 cent over three equal shares: to the first.
        assert_eq!(
            apportion(&[dec!(1), dec!(1), dec!(1)], dec!(0.01), 2),
            vec![dec!(0.01), dec!(0), dec!(0)]
        );
        assert_eq!(
            apportion(&[dec!(0), dec!(0)], dec!(0.5), 1),
            vec![dec!(0.5), dec!(0)]
        );
    }

    proptest! {
        #[test]
        fn apportioned_amounts_sum_exactly(
            weights in proptest::collection::vec(0u32..10_000, 1..6),
            total in 0i64..1_000_000,
            dp in 0u32..6,
        ) {
            let weights: Vec<Decimal> = weights.into_iter().map(|w| Decimal::new(w as i64, 3)).collect();
            let total = Decimal::new(total, dp);
            let shares = apportion(&weights, total, dp);
            prop_assert_eq!(shares.iter().copied().sum::<Decimal>(), total);
            prop_assert!(shares.iter().all(|s| *s >= Decimal::ZERO));
        }

        #[test]
        fn shares_sum_exactly_and_never_exceed_an_order(
            quantities in proptest::collection::vec(1u32..10_000, 1..6),
            fraction in 0u32..=100,
            dp in 0u32..3,
        ) {
            let quantities: Vec<Decimal> = quantities.into_iter().map(|q| Decimal::new(q as i64, dp)).collect();
            let sum: Decimal = quantities.iter().copied().sum();
            let total = (sum * Decimal::from(fraction) / Decimal::from(100)).round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::ToZero);
            let shares = allocate(&quantities, total, dp);
            prop_assert_eq!(shares.iter().copied().sum::<Decimal>(), total);
            for (s, q) in shares.iter().zip(&quantities) {
                prop_assert!(*s >= Decimal::ZERO && s <= q);
            }
        }
    }
}
