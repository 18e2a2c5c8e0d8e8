use std::collections::HashMap;

use crate::data::BarSeries;
use crate::model::{SymbolId, TimestampNs};

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("symbol `{symbol}` appears in both `{first}` and `{second}`")]
    DuplicateSymbol {
        symbol: String,
        first: String,
        second: String,
    },
    #[error("no bars to run on (after the --start/--end filter)")]
    NoBars,
}

/// The loaded bar series of a run, one per symbol, with the number of bars closed so far.
///
/// Columns are append-only (a backtest loads them once, a live feed appends closed bars): a
/// history view is a prefix of the closed bars, so handing one out is O(1) and cannot show a
/// bar that has not closed yet.
#[derive(Debug)]
pub struct Market {
    series: Vec<BarSeries>,
    /// Bar duration per symbol; a bar opening at `t` closes at `t + interval`.
    interval_ns: Vec<i64>,
    /// Bars of each symbol closed at the current tick.
    closed: Vec<usize>,
    by_name: HashMap<String, SymbolId>,
}

impl Market {
    /// `default_interval_ns` applies to a symbol with a single bar (nothing to infer from) or to
    /// every symbol when `force_interval` is set.
    pub fn new(
        series: Vec<BarSeries>,
        default_interval_ns: i64,
        force_interval: bool,
    ) -> Result<Self, MarketError> {
        let mut by_name = HashMap::new();
        for (index, s) in series.iter().enumerate() {
            if let Some(previous) = by_name.insert(s.symbol.clone(), SymbolId(index as u32)) {
                return Err(MarketError::DuplicateSymbol {
                    symbol: s.symbol.clone(),
                    first: series[previous.index()].source.display().to_string(),
                    second: s.source.display().to_string(),
                });
            }
        }
        if series.iter().all(|s| s.is_empty()) {
            return Err(MarketError::NoBars);
        }
        let interval_ns = series
            .iter()
            .map(|s| {
                if force_interval {
                    default_interval_ns
                } else {
                    infer_interval(&s.time).unwrap_or(default_interval_ns)
                }
            })
            .collect();
        let closed = vec![0; series.len()];
        Ok(Market {
            series,
            interval_ns,
            closed,
            by_name,
        })
    }

    /// A market for a live feed: every symbol at `interval_ns`, possibly without bars yet;
    /// bars arrive with [`Market::append_bar`].
    pub fn live(series: Vec<BarSeries>, interval_ns: i64) -> Result<Self, MarketError> {
        let mut by_name = HashMap::new();
        for (index, s) in series.iter().enumerate() {
            if by_name
                .insert(s.symbol.clone(), SymbolId(index as u32))
                .is_some()
            {
                return Err(MarketError::DuplicateSymbol {
                    symbol: s.symbol.clone(),
                    first: s.source.display().to_string(),
                    second: s.source.display().to_string(),
                });
            }
        }
        Ok(Market {
            interval_ns: vec![interval_ns; series.len()],
            closed: vec![0; series.len()],
            series,
            by_name,
        })
    }

    /// Appends a bar that closed in the outside world (a feed's closed candle); it becomes
    /// visible to the algorithm only when the clock closes it. Open time must be after the
    /// last bar's, on the symbol's interval grid is not required (gaps are allowed).
    pub fn append_bar(
        &mut self,
        id: SymbolId,
        open_time: TimestampNs,
        texts: [&str; 5],
    ) -> Result<(), String> {
        self.series[id.index()].append(open_time, texts)
    }

    /// Bars of `id` in the market, closed or not.
    pub fn bar_count(&self, id: SymbolId) -> usize {
        self.series[id.index()].len()
    }

    pub fn symbol_count(&self) -> usize {
        self.series.len()
    }

    pub fn symbol_id(&self, name: &str) -> Option<SymbolId> {
        self.by_name.get(name).copied()
    }

    pub fn symbol_name(&self, id: SymbolId) -> &str {
        &self.series[id.index()].symbol
    }

    pub fn symbol_names(&self) -> Vec<String> {
        self.series.iter().map(|s| s.symbol.clone()).collect()
    }

    pub fn series(&self, id: SymbolId) -> &BarSeries {
        &self.series[id.index()]
    }

    pub fn interval_ns(&self, id: SymbolId) -> i64 {
        self.interval_ns[id.index()]
    }

    /// Bars of `id` closed so far.
    pub fn closed_count(&self, id: SymbolId) -> usize {
        self.closed[id.index()]
    }

    /// Marks the next bar of `id` as closed and returns its index.
    pub(crate) fn close_next_bar(&mut self, id: SymbolId) -> usize {
        let index = self.closed[id.index()];
        self.closed[id.index()] = index + 1;
        index
    }

    /// Close time of bar `index` of `id`.
    pub fn close_time(&self, id: SymbolId, index: usize) -> TimestampNs {
        self.series[id.index()].time[index] + self.interval_ns[id.index()]
    }

    pub fn total_bars(&self) -> u64 {
        self.series.iter().map(|s| s.len() as u64).sum()
    }
}

/// The smallest gap between consecutive open times: the bar duration for regular data, and
/// still right when bars are missing (gaps are wider, never narrower).
pub fn infer_interval(times: &[i64]) -> Option<i64> {
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_the_smallest_gap() {
        assert_eq!(infer_interval(&[0, 60, 120, 300]), Some(60));
        assert_eq!(infer_interval(&[5]), None);
    }

    #[test]
    fn a_live_market_starts_empty_and_grows() {
        let series = vec![BarSeries::empty("A", "feed"), BarSeries::empty("B", "feed")];
        let mut market = Market::live(series, 60).unwrap();
        let a = market.symbol_id("A").unwrap();
        assert_eq!(market.bar_count(a), 0);
        market.append_bar(a, 0, ["1", "1", "1", "1", "1"]).unwrap();
        market.append_bar(a, 60, ["2", "2", "2", "2", "1"]).unwrap();
        assert_eq!(market.bar_count(a), 2);
        assert_eq!(market.closed_count(a), 0, "appended is not closed");
        assert_eq!(market.close_time(a, 1), 120);
        assert!(
            Market::live(
                vec![BarSeries::empty("A", "f"), BarSeries::empty("A", "g")],
                60
            )
            .is_err()
        );
    }
}
