//! Order netting between the strategies of a book: market orders on one symbol placed at the
//! same tick on opposite sides (and with the same time in force) cross inside the book
//! instead of both going to the market. 100 bought by A and 60 sold by B: 60 of each cross,
//! A's remaining 40 goes to the market.
//!
//! The crossed quantities fill at the open of the symbol's next bar (the price a market order
//! meets before slippage) with no commission and no slippage; the rest of each order then
//! matches as usual on the same bar. So every strategy gets exactly the quantity it asked for
//! at the same bar as on its own, and the book pays costs on the net quantity only.
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

/// One crossing waiting for its symbol's next bar.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// The book's symbol.
    pub symbol: SymbolId,
    /// (strategy index, order id in its session, quantity crossed).
    pub legs: Vec<(usize, OrderId, Decimal)>,
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
    /// Crossings dropped because an order was cancelled before its bar.
    pub dropped: u64,
}

/// A market order that may cross: (strategy, order, side, quantity, time in force).
type Candidate = (usize, OrderId, OrderSide, Decimal, TimeInForce);

/// The crossings among the market orders the running strategies placed at `now`. `seen[i]`
/// is how many orders strategy `i` had at the previous call: only orders placed since are
/// looked at, so a tick without new orders costs one length check per strategy.
pub fn find<S>(
    members: &[Member<S>],
    now: TimestampNs,
    symbols: usize,
    seen: &mut [usize],
) -> Vec<Crossing> {
    // Per book symbol: (strategy, order, side, quantity, time in force).
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
            if order.kind == OrderKind::Market
                && order.status == OrderStatus::Accepted
                && order.submitted_at == now
                && order.filled_quantity.is_zero()
                && order.parent.is_none()
                && order.oco_group.is_none()
            {
                if candidates.is_empty() {
                    candidates = vec![Vec::new(); symbols];
                }
                candidates[m.global[order.symbol.index()].index()].push((
                    i,
                    order.id,
                    order.side,
                    order.quantity,
                    order.tif,
                ));
            }
        }
    }
    let mut crossings = Vec::new();
    for (symbol, orders) in candidates.into_iter().enumerate() {
        if orders.len() < 2 {
            continue;
        }
        let mut tifs: Vec<TimeInForce> = Vec::new();
        for o in &orders {
            if !tifs.contains(&o.4) {
                tifs.push(o.4);
            }
        }
        for tif in tifs {
            let group: Vec<_> = orders.iter().filter(|o| o.4 == tif).collect();
            let (buys, sells): (Vec<&Candidate>, Vec<&Candidate>) =
                group.iter().copied().partition(|o| o.2 == OrderSide::Buy);
            let bought: Decimal = buys.iter().map(|o| o.3).sum();
            let sold: Decimal = sells.iter().map(|o| o.3).sum();
            let crossed = bought.min(sold);
            if crossed.is_zero() {
                continue;
            }
            let dp = group.iter().map(|o| o.3.scale()).max().unwrap_or(0);
            let mut legs = Vec::new();
            for side in [&buys, &sells] {
                let quantities: Vec<Decimal> = side.iter().map(|o| o.3).collect();
                let shares = allocate(&quantities, crossed, dp);
                for (o, share) in side.iter().zip(shares) {
                    if share > Decimal::ZERO {
                        legs.push((o.0, o.1, share));
                    }
                }
            }
            crossings.push(Crossing {
                symbol: SymbolId(symbol as u32),
                legs,
            });
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
    let exact: Vec<Decimal> = quantities.iter().map(|q| *q * total / sum).collect();
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
        if shares[i] + unit <= quantities[i] {
            shares[i] += unit;
            left -= unit;
        }
    }
    shares
}

/// Fills the crossings due on the bars of `tick_symbols` (book ids) at each bar's open, into
/// the strategies' books and ledgers; `crossed[i]` gets strategy `i`'s fills. A crossing
/// whose orders are no longer all open for their share (one was cancelled) is dropped: each
/// order then matches on its own. Crossings on other symbols stay pending.
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
        let valid = crossing.legs.iter().all(|(i, id, quantity)| {
            let s = lock(&members[*i].session);
            s.orders
                .get(*id)
                .is_some_and(|o| o.status == OrderStatus::Accepted && o.remaining() >= *quantity)
        });
        if !valid {
            report.dropped += 1;
            continue;
        }
        let index = market.closed_count(crossing.symbol);
        let series = market.series(crossing.symbol);
        let (price, time) = (series.open.exact.get(index), series.time[index]);
        report.crossings += 1;
        for (i, id, quantity) in &crossing.legs {
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

    proptest! {
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
