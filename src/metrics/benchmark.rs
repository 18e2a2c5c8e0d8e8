//! The benchmark a run is measured against: buy and hold of one of the run's symbols, or of
//! all of them in equal parts (the default), valued at the same day ends as the strategy.

use serde::Serialize;

use crate::market::Market;
use crate::model::{SymbolId, TimestampNs};

/// Which benchmark: `metrics.benchmark` in the config, `--benchmark` on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BenchmarkChoice {
    /// Buy and hold of every symbol of the run, equally weighted (not rebalanced).
    #[default]
    EqualWeight,
    /// Buy and hold of this symbol.
    Symbol(String),
}

impl BenchmarkChoice {
    /// `None`/empty text is the default; any other text names a symbol.
    pub fn parse(text: Option<&str>) -> Self {
        match text.map(str::trim) {
            None | Some("") => BenchmarkChoice::EqualWeight,
            Some(symbol) => BenchmarkChoice::Symbol(symbol.to_string()),
        }
    }

    /// A named symbol that the run does not have, as a message with the symbols it has.
    pub fn check(&self, symbols: &[String]) -> Result<(), String> {
        match self {
            BenchmarkChoice::Symbol(name) if !symbols.contains(name) => Err(format!(
                "benchmark `{name}` is not one of the run's symbols ({})",
                symbols.join(", ")
            )),
            _ => Ok(()),
        }
    }
}

/// Close prices of the benchmark's symbols: `(close time, close)` per symbol, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchmarkPrices {
    /// `"SPY"`, or `"equal weight: A, B"`.
    pub name: String,
    pub symbols: Vec<String>,
    pub closes: Vec<Vec<(TimestampNs, f64)>>,
}

impl BenchmarkPrices {
    /// The closed bars of the chosen symbols of `market` (all bars closed by the run).
    pub fn from_market(market: &Market, choice: &BenchmarkChoice) -> Result<Self, String> {
        Self::collect(market, choice, true, |closes, point| closes.push(point))
    }

    /// [`BenchmarkPrices::from_market`] keeping of each symbol only the first close and the
    /// last close of each day (`day_of` as given to [`BenchmarkPrices::daily_returns`], which
    /// reads no other): the same returns from a close per day instead of one per bar.
    pub fn from_market_daily(
        market: &Market,
        choice: &BenchmarkChoice,
        day_of: impl Fn(TimestampNs) -> i64,
    ) -> Result<Self, String> {
        Self::collect(market, choice, false, |closes, point| {
            match closes.as_slice() {
                [_, .., last] if day_of(last.0) == day_of(point.0) => {
                    *closes.last_mut().expect("not empty") = point;
                }
                _ => closes.push(point),
            }
        })
    }

    fn collect(
        market: &Market,
        choice: &BenchmarkChoice,
        every_bar: bool,
        mut keep: impl FnMut(&mut Vec<(TimestampNs, f64)>, (TimestampNs, f64)),
    ) -> Result<Self, String> {
        let names = market.symbol_names();
        choice.check(&names)?;
        let ids: Vec<SymbolId> = match choice {
            BenchmarkChoice::EqualWeight => (0..names.len()).map(|i| SymbolId(i as u32)).collect(),
            BenchmarkChoice::Symbol(name) => {
                vec![market.symbol_id(name).expect("invariant: checked above")]
            }
        };
        let closes = ids
            .iter()
            .map(|&id| {
                let series = market.series(id);
                let count = market.closed_count(id);
                let mut closes = Vec::with_capacity(if every_bar { count } else { 0 });
                for i in 0..count {
                    keep(
                        &mut closes,
                        (market.close_time(id, i), series.close.values[i]),
                    );
                }
                closes
            })
            .collect();
        let symbols: Vec<String> = ids.iter().map(|&id| names[id.index()].clone()).collect();
        let name = match choice {
            BenchmarkChoice::EqualWeight => {
                format!("equal weight: {}", super::summary::short_list(&symbols))
            }
            BenchmarkChoice::Symbol(name) => name.clone(),
        };
        Ok(BenchmarkPrices {
            name,
            symbols,
            closes,
        })
    }

    /// Daily returns of the benchmark over the strategy's `days` (from [`super::daily`]):
    /// the value before the first day is 1; on each day it is the mean over the symbols of
    /// `last close up to that day / first close` (1 for a symbol with no close yet).
    pub fn daily_returns(&self, days: &[i64], day_of: impl Fn(TimestampNs) -> i64) -> Vec<f64> {
        let mut cursor = vec![0usize; self.closes.len()];
        let mut growth = vec![1.0f64; self.closes.len()];
        let mut previous = 1.0;
        let mut out = Vec::with_capacity(days.len());
        for &day in days {
            for (k, closes) in self.closes.iter().enumerate() {
                while cursor[k] < closes.len() && day_of(closes[cursor[k]].0) <= day {
                    cursor[k] += 1;
                }
                if cursor[k] > 0 {
                    growth[k] = closes[cursor[k] - 1].1 / closes[0].1;
                }
            }
            let value = growth.iter().sum::<f64>() / growth.len().max(1) as f64;
            out.push(value / previous - 1.0);
            previous = value;
        }
        out
    }
}

/// `metrics.json`'s `benchmark`: what it is and its return metrics, as the strategy's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchmarkMetrics {
    pub name: String,
    pub symbols: Vec<String>,
    #[serde(flatten)]
    pub returns: super::daily::ReturnMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weight_buy_and_hold() {
        let prices = BenchmarkPrices {
            name: "equal weight: A, B".into(),
            symbols: vec!["A".into(), "B".into()],
            closes: vec![
                vec![(10, 100.0), (20, 110.0), (30, 121.0)],
                vec![(20, 50.0), (30, 40.0)],
            ],
        };
        // Days 1, 2, 3 end at times 10, 20, 30.
        let r = prices.daily_returns(&[1, 2, 3], |t| t / 10);
        // Day 1: A bought at 100 (growth 1), B not started: value 1.
        // Day 2: A 1.1, B 1.0 -> 1.05. Day 3: A 1.21, B 0.8 -> 1.005.
        assert_eq!(r.len(), 3);
        assert!((r[0] - 0.0).abs() < 1e-15);
        assert!((r[1] - 0.05).abs() < 1e-12);
        assert!((r[2] - (1.005 / 1.05 - 1.0)).abs() < 1e-12);
    }

    proptest::proptest! {
        /// A close per day gives the returns of every close, whatever the day end.
        #[test]
        fn a_close_per_day_gives_the_same_returns(
            gaps in proptest::collection::vec(1i64..20, 1..120),
            day_end_hours in 0i64..24,
            choice in 0usize..3,
        ) {
            use crate::data::{BarSeries, Column};
            use crate::model::time::NANOS_PER_DAY;
            const HOUR: i64 = 3_600_000_000_000;
            let series = |symbol: &str, shift: i64| {
                let mut opens = Vec::new();
                let mut t = shift;
                for g in &gaps {
                    t += g;
                    opens.push(t * HOUR);
                }
                let prices: Vec<String> =
                    (0..opens.len()).map(|i| format!("{}.{}", 100 + (i * 7 + shift as usize) % 13, i % 10)).collect();
                let texts: Vec<&str> = prices.iter().map(String::as_str).collect();
                let column = Column::parse_texts(&texts).unwrap();
                BarSeries {
                    symbol: symbol.into(),
                    source: format!("{symbol}.csv").into(),
                    time: opens.into(),
                    open: column.clone(),
                    high: column.clone(),
                    low: column.clone(),
                    close: column,
                    volume: Column::parse_texts(&vec!["1"; texts.len()]).unwrap(),
                }
            };
            let mut market = Market::new(vec![series("A", 0), series("B", 5)], HOUR, true).unwrap();
            for id in [SymbolId(0), SymbolId(1)] {
                while market.closed_count(id) < market.bar_count(id) {
                    market.close_next_bar(id);
                }
            }
            let choice = [BenchmarkChoice::EqualWeight, BenchmarkChoice::Symbol("A".into()),
                          BenchmarkChoice::Symbol("B".into())][choice].clone();
            let day_of = |t: TimestampNs| (t - 1 - day_end_hours * HOUR).div_euclid(NANOS_PER_DAY);
            let every = BenchmarkPrices::from_market(&market, &choice).unwrap();
            let daily = BenchmarkPrices::from_market_daily(&market, &choice, day_of).unwrap();
            let last = every.closes.iter().flatten().map(|c| c.0).max().unwrap();
            let days: Vec<i64> = (day_of(0)..=day_of(last)).filter(|d| d % 3 != 1).collect();
            proptest::prop_assert_eq!(every.daily_returns(&days, day_of), daily.daily_returns(&days, day_of));
            // Per symbol: the first close and one a day.
            let span = (day_of(last) - day_of(0) + 1) as usize;
            for closes in &daily.closes {
                proptest::prop_assert!(closes.len() <= span + 1);
            }
        }
    }

    #[test]
    fn unknown_symbol_names_the_symbols() {
        let err = BenchmarkChoice::parse(Some("SPY"))
            .check(&["A".into(), "B".into()])
            .unwrap_err();
        assert_eq!(
            err,
            "benchmark `SPY` is not one of the run's symbols (A, B)"
        );
        assert_eq!(
            BenchmarkChoice::parse(Some(" ")),
            BenchmarkChoice::EqualWeight
        );
    }
}
