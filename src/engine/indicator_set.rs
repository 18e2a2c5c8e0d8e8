//! Built-in indicators attached to symbols: updated by the engine once per closed bar (step 4
//! of the clock), their outputs kept in engine-owned columns that Python views without copying.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::data::BarSeries;
use crate::indicators::{BarInput, Indicator, IndicatorError, create};
use crate::market::{Aggregation, Aggregations, SharedColumn};
use crate::model::SymbolId;

/// Calls, bars and time spent in one indicator, for the end-of-run report and `indicators.csv`.
#[derive(Debug, Clone, Default)]
pub struct IndicatorTiming {
    pub label: String,
    pub symbol: String,
    /// `base` or the higher timeframe it runs on.
    pub timeframe: String,
    /// `builtin` (Rust) or `python` (a custom class or `talib.<FUNC>`).
    pub kind: &'static str,
    pub calls: u64,
    pub bars: u64,
    /// Built-ins time one call in [`SAMPLE_EVERY`] and scale up (timing each 20 ns update
    /// would double its cost); Python indicators time every call.
    pub total_ns: u128,
    pub max_ns: u64,
}

impl IndicatorTiming {
    pub fn mean_ns(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.calls as f64
        }
    }
}

/// One built-in update in this many is timed.
pub const SAMPLE_EVERY: u64 = 64;

/// An indicator on one symbol, with its output columns.
pub struct AttachedIndicator {
    pub symbol: SymbolId,
    /// The output `Indicator::value` reports (BBANDS: the middle band; otherwise the first).
    pub primary: usize,
    pub name: String,
    pub output_names: Vec<&'static str>,
    pub outputs: Vec<Arc<SharedColumn>>,
    pub warm_up_period: usize,
    pub written: Arc<AtomicUsize>,
    indicator: Box<dyn Indicator>,
    symbol_name: String,
    timeframe: String,
    calls: u64,
    sampled_calls: u64,
    sampled_ns: u128,
    max_ns: u64,
}

impl std::fmt::Debug for AttachedIndicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedIndicator")
            .field("symbol", &self.symbol)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AttachedIndicator {
    fn feed(&mut self, series: &BarSeries, index: usize) {
        let bar = BarInput {
            open: series.open.values[index],
            high: series.high.values[index],
            low: series.low.values[index],
            close: series.close.values[index],
            volume: series.volume.values[index],
        };
        self.push(&bar, index);
    }

    fn feed_aggregated(&mut self, bars: &Aggregation, index: usize) {
        let bar = BarInput {
            open: bars.open.get(index),
            high: bars.high.get(index),
            low: bars.low.get(index),
            close: bars.close.get(index),
            volume: bars.volume.get(index),
        };
        self.push(&bar, index);
    }

    fn push(&mut self, bar: &BarInput, index: usize) {
        if self.calls % SAMPLE_EVERY == 0 {
            let started = std::time::Instant::now();
            self.indicator.update(bar);
            let elapsed = started.elapsed().as_nanos();
            self.sampled_calls += 1;
            self.sampled_ns += elapsed;
            self.max_ns = self.max_ns.max(elapsed as u64);
        } else {
            self.indicator.update(bar);
        }
        self.calls += 1;
        for (column, value) in self.outputs.iter().zip(self.indicator.outputs()) {
            column.set(index, *value);
        }
        self.written.store(index + 1, Ordering::Release);
    }
}

/// Every indicator of a run, by id, and which ones each symbol's bars update.
#[derive(Debug, Default)]
pub struct IndicatorSet {
    items: Vec<AttachedIndicator>,
    /// Indicator ids by symbol index (a Vec, not a map: this is read once per bar).
    by_symbol: Vec<Vec<usize>>,
    by_key: HashMap<(SymbolId, String), usize>,
    /// Indicators on a higher timeframe: (indicator id, aggregation id).
    on_timeframes: Vec<(usize, usize)>,
}

impl IndicatorSet {
    /// Attaches `name(params)` to `symbol` (or returns the one already attached with the same
    /// settings) and feeds it the bars already closed, so its values always start at the
    /// first bar, as TA-Lib's would.
    pub fn attach(
        &mut self,
        symbol: SymbolId,
        name: &str,
        params: &[(String, f64)],
        series: &BarSeries,
        closed: usize,
    ) -> Result<usize, IndicatorError> {
        let indicator = create(name, params)?;
        let key = (symbol, indicator.name().to_string());
        if let Some(id) = self.by_key.get(&key) {
            return Ok(*id);
        }
        let mut attached = Self::build(symbol, indicator, series.len());
        attached.symbol_name = series.symbol.clone();
        for index in 0..closed {
            attached.feed(series, index);
        }
        let id = self.items.len();
        self.items.push(attached);
        if self.by_symbol.len() <= symbol.index() {
            self.by_symbol.resize(symbol.index() + 1, Vec::new());
        }
        self.by_symbol[symbol.index()].push(id);
        self.by_key.insert(key, id);
        Ok(id)
    }

    /// Attaches `name(params)` to the closed bars of an aggregation (a higher timeframe): it
    /// is fed once per closed aggregated bar, never the forming one.
    pub fn attach_on_timeframe(
        &mut self,
        symbol_name: &str,
        name: &str,
        params: &[(String, f64)],
        aggregation: &Aggregation,
        aggregation_id: usize,
    ) -> Result<usize, IndicatorError> {
        let indicator = create(name, params)?;
        let label = format!("{}@{}", indicator.name(), aggregation.timeframe);
        let key = (aggregation.symbol, label.clone());
        if let Some(id) = self.by_key.get(&key) {
            return Ok(*id);
        }
        let mut attached = Self::build(aggregation.symbol, indicator, aggregation.capacity());
        attached.name = label;
        attached.symbol_name = symbol_name.to_string();
        attached.timeframe = aggregation.timeframe.to_string();
        for index in 0..aggregation.len() {
            attached.feed_aggregated(aggregation, index);
        }
        let id = self.items.len();
        self.items.push(attached);
        self.on_timeframes.push((id, aggregation_id));
        self.by_key.insert(key, id);
        Ok(id)
    }

    fn build(
        symbol: SymbolId,
        indicator: Box<dyn Indicator>,
        capacity: usize,
    ) -> AttachedIndicator {
        let written = Arc::new(AtomicUsize::new(0));
        let outputs = indicator
            .output_names()
            .iter()
            .map(|_| Arc::new(SharedColumn::new(capacity, written.clone())))
            .collect();
        let primary = indicator
            .output_names()
            .iter()
            .position(|name| *name == "middleband")
            .unwrap_or(0);
        AttachedIndicator {
            symbol,
            primary,
            name: indicator.name().to_string(),
            output_names: indicator.output_names().to_vec(),
            outputs,
            warm_up_period: indicator.warm_up_period(),
            written,
            indicator,
            symbol_name: String::new(),
            timeframe: "base".to_string(),
            calls: 0,
            sampled_calls: 0,
            sampled_ns: 0,
            max_ns: 0,
        }
    }

    /// Feeds indicators on higher timeframes the aggregated bars closed since the last call.
    pub fn sync_timeframes(&mut self, aggregations: &Aggregations) {
        for &(id, aggregation_id) in &self.on_timeframes {
            let Some(aggregation) = aggregations.get(aggregation_id) else {
                continue;
            };
            let attached = &mut self.items[id];
            while attached.written.load(Ordering::Relaxed) < aggregation.len() {
                let index = attached.written.load(Ordering::Relaxed);
                attached.feed_aggregated(aggregation, index);
            }
        }
    }

    /// Calls and (sampled) time per built-in indicator, in attach order.
    pub fn timings(&self) -> Vec<IndicatorTiming> {
        self.items
            .iter()
            .map(|a| {
                let total_ns = if a.sampled_calls == 0 {
                    0
                } else {
                    a.sampled_ns * a.calls as u128 / a.sampled_calls as u128
                };
                let label = match a.name.split_once('@') {
                    Some((name, timeframe)) => format!("{name} on {} @{timeframe}", a.symbol_name),
                    None => format!("{} on {}", a.name, a.symbol_name),
                };
                IndicatorTiming {
                    label,
                    symbol: a.symbol_name.clone(),
                    timeframe: a.timeframe.clone(),
                    kind: "builtin",
                    calls: a.calls,
                    bars: a.calls,
                    total_ns,
                    max_ns: a.max_ns,
                }
            })
            .collect()
    }

    pub fn get(&self, id: usize) -> Option<&AttachedIndicator> {
        self.items.get(id)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Step 4 of the clock: bar `index` of `symbol` just closed.
    /// Whether any built-in indicator is fed by `symbol`'s bars.
    #[inline]
    pub fn feeds_on(&self, symbol: SymbolId) -> bool {
        self.by_symbol
            .get(symbol.index())
            .is_some_and(|ids| !ids.is_empty())
    }

    /// Base bars (of `interval_ns`) each symbol needs before every attached indicator has a
    /// value: its warm-up period, in bars of its timeframe, plus one forming bucket.
    pub fn bars_needed(&self, aggregations: &Aggregations, interval_ns: i64) -> usize {
        let on_timeframe: HashMap<usize, usize> = self.on_timeframes.iter().copied().collect();
        self.items
            .iter()
            .enumerate()
            .map(
                |(id, item)| match on_timeframe.get(&id).and_then(|&a| aggregations.get(a)) {
                    None => item.warm_up_period,
                    Some(aggregation) => {
                        let per_bucket = (aggregation.timeframe.max_nanos() / interval_ns.max(1))
                            .max(1) as usize;
                        (item.warm_up_period + 1) * per_bucket
                    }
                },
            )
            .max()
            .unwrap_or(0)
    }

    pub fn on_bar(&mut self, symbol: SymbolId, series: &BarSeries, index: usize) {
        if let Some(ids) = self.by_symbol.get(symbol.index()) {
            for id in ids {
                self.items[*id].feed(series, index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Column;
    use std::path::PathBuf;

    fn series(closes: &[&str]) -> BarSeries {
        let column = |p: &[&str]| Column::parse_texts(p).unwrap();
        BarSeries {
            symbol: "X".into(),
            source: PathBuf::from("X.csv"),
            time: (0..closes.len() as i64).collect::<Vec<_>>().into(),
            open: column(closes),
            high: column(closes),
            low: column(closes),
            close: column(closes),
            volume: column(&vec!["1"; closes.len()]),
        }
    }

    #[test]
    fn attaching_catches_up_and_columns_never_move() {
        let s = series(&["1", "2", "3", "4", "5", "6"]);
        let mut set = IndicatorSet::default();
        let id = set
            .attach(SymbolId(0), "sma", &[("timeperiod".into(), 3.0)], &s, 4)
            .unwrap();
        let again = set
            .attach(SymbolId(0), "SMA", &[("timeperiod".into(), 3.0)], &s, 4)
            .unwrap();
        assert_eq!(
            id, again,
            "the same indicator is shared, not computed twice"
        );
        let attached = set.get(id).unwrap();
        let column = attached.outputs[0].clone();
        let pointer = column.as_ptr();
        assert_eq!(column.len(), 4);
        assert!(column.get(1).is_nan());
        assert_eq!(column.get(2), 2.0);
        assert_eq!(column.last(), 3.0);
        set.on_bar(SymbolId(0), &s, 4);
        set.on_bar(SymbolId(0), &s, 5);
        assert_eq!(column.len(), 6);
        assert_eq!(column.last(), 5.0);
        assert_eq!(column.as_ptr(), pointer);
        assert!(set.attach(SymbolId(0), "NOPE", &[], &s, 0).is_err());
    }
}
