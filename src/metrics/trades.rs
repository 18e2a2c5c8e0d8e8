//! Money and statistics of the closed trades: exact Decimal sums and the shape of the
//! trading (streaks, holding periods, long/short and per-symbol splits, exposure).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::output::{SymbolNames, direction_name};
use crate::model::{ClosedTrade, TimestampNs};

/// Decimal places kept by averages of money.
const AVERAGE_DP: u32 = 12;

fn average(total: Decimal, count: usize) -> Option<Decimal> {
    total
        .checked_div(Decimal::from(count))
        .filter(|_| count > 0)
        .map(|a| a.round_dp(AVERAGE_DP).normalize())
}

/// Per-trade money, flattened into `metrics.json`; every amount is a sum or extreme of
/// `trades.csv` values (averages rounded to 12 places), `null` without such trades.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TradeMoney {
    /// Mean PnL per closed trade (the same number as `avg_trade_pnl`).
    pub expectancy: Option<Decimal>,
    pub avg_win: Option<Decimal>,
    pub avg_loss: Option<Decimal>,
    pub largest_win: Option<Decimal>,
    pub smallest_win: Option<Decimal>,
    /// The most negative PnL.
    pub largest_loss: Option<Decimal>,
    /// The loss closest to zero.
    pub smallest_loss: Option<Decimal>,
    /// Mean and extreme maximum adverse / favourable excursions, in the account currency.
    pub avg_mae: Option<Decimal>,
    pub worst_mae: Option<Decimal>,
    pub avg_mfe: Option<Decimal>,
    pub best_mfe: Option<Decimal>,
}

impl TradeMoney {
    pub fn from_trades(trades: &[ClosedTrade]) -> Self {
        let wins: Vec<Decimal> = trades
            .iter()
            .map(|t| t.pnl)
            .filter(|p| p.is_sign_positive() && !p.is_zero())
            .collect();
        let losses: Vec<Decimal> = trades
            .iter()
            .map(|t| t.pnl)
            .filter(|p| *p < Decimal::ZERO)
            .collect();
        let sum = |v: &[Decimal]| v.iter().copied().sum::<Decimal>();
        TradeMoney {
            expectancy: average(trades.iter().map(|t| t.pnl).sum(), trades.len()),
            avg_win: average(sum(&wins), wins.len()),
            avg_loss: average(sum(&losses), losses.len()),
            largest_win: wins.iter().copied().max(),
            smallest_win: wins.iter().copied().min(),
            largest_loss: losses.iter().copied().min(),
            smallest_loss: losses.iter().copied().max(),
            avg_mae: average(trades.iter().map(|t| t.mae).sum(), trades.len()),
            worst_mae: trades.iter().map(|t| t.mae).min(),
            avg_mfe: average(trades.iter().map(|t| t.mfe).sum(), trades.len()),
            best_mfe: trades.iter().map(|t| t.mfe).max(),
        }
    }
}

/// Trades, wins and money of one group (a direction or a symbol).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TradeGroup {
    pub trades: usize,
    pub wins: usize,
    pub losses: usize,
    pub win_rate: Option<f64>,
    pub net_pnl: Decimal,
    pub gross_profit: Decimal,
    pub gross_loss: Decimal,
    pub fees: Decimal,
}

impl TradeGroup {
    pub(crate) fn add(&mut self, t: &ClosedTrade) {
        self.trades += 1;
        self.net_pnl += t.pnl;
        self.fees += t.fees;
        if t.pnl > Decimal::ZERO {
            self.wins += 1;
            self.gross_profit += t.pnl;
        } else if t.pnl < Decimal::ZERO {
            self.losses += 1;
            self.gross_loss += t.pnl;
        }
        self.win_rate = Some(self.wins as f64 / self.trades as f64);
    }
}

/// Holding periods of the closed trades, in nanoseconds (percentiles interpolated linearly).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HoldingPeriods {
    pub min_ns: i64,
    pub p25_ns: i64,
    pub median_ns: i64,
    pub p75_ns: i64,
    pub max_ns: i64,
    pub mean_ns: i64,
}

/// `metrics.json`'s `trade_stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TradeStatistics {
    /// Longest runs of consecutive winning and losing trades, in exit order (a trade with
    /// PnL 0 ends both).
    pub max_consecutive_wins: usize,
    pub max_consecutive_losses: usize,
    pub holding: Option<HoldingPeriods>,
    /// Fraction of the run (first to last equity point) with at least one closed trade
    /// open (0.25 = a quarter of the time).
    pub exposure: Option<f64>,
    pub by_direction: BTreeMap<String, TradeGroup>,
    pub by_symbol: BTreeMap<String, TradeGroup>,
}

impl TradeStatistics {
    /// `span` is the run's first and last equity time.
    pub fn from_trades(
        trades: &[ClosedTrade],
        names: &[String],
        span: Option<(TimestampNs, TimestampNs)>,
    ) -> Self {
        let names = SymbolNames(names);
        let mut s = TradeStatistics::default();
        let (mut wins, mut losses) = (0, 0);
        for t in trades {
            if t.pnl > Decimal::ZERO {
                wins += 1;
                losses = 0;
            } else if t.pnl < Decimal::ZERO {
                losses += 1;
                wins = 0;
            } else {
                (wins, losses) = (0, 0);
            }
            s.max_consecutive_wins = s.max_consecutive_wins.max(wins);
            s.max_consecutive_losses = s.max_consecutive_losses.max(losses);
            s.by_direction
                .entry(direction_name(t.direction).to_string())
                .or_default()
                .add(t);
            s.by_symbol
                .entry(names.name(t.symbol).into_owned())
                .or_default()
                .add(t);
        }
        let mut held: Vec<i64> = trades.iter().map(|t| t.exit_time - t.entry_time).collect();
        held.sort_unstable();
        if let (Some(&min), Some(&max)) = (held.first(), held.last()) {
            let as_f64: Vec<f64> = held.iter().map(|&h| h as f64).collect();
            let pct = |q| super::returns::percentile(&as_f64, q).round() as i64;
            let total: i128 = held.iter().map(|&h| i128::from(h)).sum();
            s.holding = Some(HoldingPeriods {
                min_ns: min,
                p25_ns: pct(25.0),
                median_ns: pct(50.0),
                p75_ns: pct(75.0),
                max_ns: max,
                mean_ns: (total / held.len() as i128) as i64,
            });
        }
        s.exposure = span.and_then(|(start, end)| exposure(trades, start, end));
        s
    }
}

/// The time covered by the union of the trades' [entry, exit] intervals over `end - start`.
fn exposure(trades: &[ClosedTrade], start: TimestampNs, end: TimestampNs) -> Option<f64> {
    if end <= start {
        return None;
    }
    let mut spans: Vec<(i64, i64)> = trades
        .iter()
        .map(|t| (t.entry_time.max(start), t.exit_time.min(end)))
        .filter(|(a, b)| b > a)
        .collect();
    spans.sort_unstable();
    let (mut covered, mut reach) = (0i128, i64::MIN);
    for (a, b) in spans {
        let from = a.max(reach);
        if b > from {
            covered += i128::from(b - from);
        }
        reach = reach.max(b);
    }
    Some(covered as f64 / (end - start) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SymbolId;
    use rust_decimal::dec;

    fn trade(symbol: u32, direction: i8, pnl: Decimal, entry: i64, exit: i64) -> ClosedTrade {
        ClosedTrade {
            symbol: SymbolId(symbol),
            direction,
            max_quantity: Decimal::ONE,
            entry_time: entry,
            exit_time: exit,
            pnl,
            fees: dec!(0.5),
            mae: -pnl.abs(),
            mfe: pnl.abs() + Decimal::ONE,
        }
    }

    #[test]
    fn money_and_statistics_of_trades() {
        let trades = [
            trade(0, 1, dec!(10), 0, 10),
            trade(0, 1, dec!(5.5), 10, 20),
            trade(1, -1, dec!(-3), 30, 40),
            trade(1, 1, dec!(0), 40, 50),
            trade(0, -1, dec!(-7.25), 50, 90),
            trade(1, 1, dec!(-1), 60, 70),
        ];
        let m = TradeMoney::from_trades(&trades);
        assert_eq!(m.expectancy, Some(dec!(0.708333333333)));
        assert_eq!(m.avg_win, Some(dec!(7.75)));
        assert_eq!(m.avg_loss, Some(dec!(-3.75)));
        assert_eq!(
            (m.largest_win, m.smallest_win),
            (Some(dec!(10)), Some(dec!(5.5)))
        );
        assert_eq!(
            (m.largest_loss, m.smallest_loss),
            (Some(dec!(-7.25)), Some(dec!(-1)))
        );
        assert_eq!(m.worst_mae, Some(dec!(-10)));
        assert_eq!(m.best_mfe, Some(dec!(11)));
        let names = vec!["A".to_string(), "B".to_string()];
        let s = TradeStatistics::from_trades(&trades, &names, Some((0, 100)));
        assert_eq!((s.max_consecutive_wins, s.max_consecutive_losses), (2, 2));
        assert_eq!(s.by_direction["long"].trades, 4);
        assert_eq!(s.by_direction["short"].net_pnl, dec!(-10.25));
        assert_eq!(s.by_symbol["B"].losses, 2);
        assert_eq!(s.by_symbol["A"].fees, dec!(1.5));
        let h = s.holding.unwrap();
        assert_eq!(
            (h.min_ns, h.median_ns, h.max_ns, h.mean_ns),
            (10, 10, 40, 15)
        );
        // [0,20] ∪ [30,90]: 80 of 100.
        assert_eq!(s.exposure, Some(0.8));
        let empty = TradeStatistics::from_trades(&[], &names, Some((0, 100)));
        assert_eq!((empty.holding, empty.exposure), (None, Some(0.0)));
        assert_eq!(TradeMoney::from_trades(&[]), TradeMoney::default());
    }
}
