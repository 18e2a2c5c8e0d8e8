//! Higher timeframes built by the engine from the base bars of a symbol.
//!
//! An aggregated bar is open first, high max, low min, close last, volume sum of the base bars
//! that open in its bucket. It becomes visible only once closed: when a base bar closing at or
//! after the bucket's end is processed, or when the clock passes the end (a symbol whose bars
//! stopped). Missing base bars are not invented: each aggregated bar records how many base bars
//! it holds (`count`), so a gap shows as a smaller count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::column::SharedColumn;
use super::timeframe::Timeframe;
use crate::data::BarSeries;
use crate::model::{SymbolId, TimestampNs};

/// The bar being built, not yet visible through history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormingBar {
    pub start: TimestampNs,
    pub end: TimestampNs,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub count: i64,
}

/// The closed bars of one (symbol, timeframe), in engine-owned columns that never move.
#[derive(Debug)]
pub struct Aggregation {
    pub symbol: SymbolId,
    pub timeframe: Timeframe,
    pub written: Arc<AtomicUsize>,
    /// Bucket start (the bar's open time), i64 ns.
    pub time: Arc<SharedColumn>,
    pub open: Arc<SharedColumn>,
    pub high: Arc<SharedColumn>,
    pub low: Arc<SharedColumn>,
    pub close: Arc<SharedColumn>,
    pub volume: Arc<SharedColumn>,
    /// Base bars in each aggregated bar, i64.
    pub count: Arc<SharedColumn>,
    forming: Option<FormingBar>,
}

impl Aggregation {
    /// Columns sized to the number of buckets the symbol's bars fall into.
    pub fn new(symbol: SymbolId, timeframe: Timeframe, series: &BarSeries) -> Self {
        let mut buckets = 0;
        let mut last = None;
        for &t in series.time.iter() {
            let start = timeframe.bucket_start(t);
            if last != Some(start) {
                buckets += 1;
                last = Some(start);
            }
        }
        let written = Arc::new(AtomicUsize::new(0));
        let column = || Arc::new(SharedColumn::new(buckets, written.clone()));
        Aggregation {
            symbol,
            timeframe,
            time: column(),
            open: column(),
            high: column(),
            low: column(),
            close: column(),
            volume: column(),
            count: column(),
            written,
            forming: None,
        }
    }

    pub fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bars this aggregation can ever hold (the buckets of the symbol's data).
    pub fn capacity(&self) -> usize {
        self.time.capacity()
    }

    pub fn forming(&self) -> Option<FormingBar> {
        self.forming
    }

    /// Base bar `index` (duration `interval_ns`) just closed.
    pub fn on_bar(&mut self, series: &BarSeries, index: usize, interval_ns: i64) {
        let open_time = series.time[index];
        let start = self.timeframe.bucket_start(open_time);
        if self.forming.is_some_and(|f| f.start != start) {
            self.finish();
        }
        let (open, high, low, close, volume) = (
            series.open.values[index],
            series.high.values[index],
            series.low.values[index],
            series.close.values[index],
            series.volume.values[index],
        );
        let bar = self.forming.get_or_insert(FormingBar {
            start,
            end: self.timeframe.bucket_end(start),
            open,
            high,
            low,
            close,
            volume: 0.0,
            count: 0,
        });
        bar.high = bar.high.max(high);
        bar.low = bar.low.min(low);
        bar.close = close;
        bar.volume += volume;
        bar.count += 1;
        if open_time + interval_ns >= bar.end {
            self.finish();
        }
    }

    /// Closes the forming bar if the clock has reached its end.
    pub fn close_due(&mut self, now: TimestampNs) {
        if self.forming.is_some_and(|f| f.end <= now) {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let Some(bar) = self.forming.take() else {
            return;
        };
        let index = self.len();
        self.time.set_i64(index, bar.start);
        self.open.set(index, bar.open);
        self.high.set(index, bar.high);
        self.low.set(index, bar.low);
        self.close.set(index, bar.close);
        self.volume.set(index, bar.volume);
        self.count.set_i64(index, bar.count);
        self.written.store(index + 1, Ordering::Release);
    }
}

/// Every aggregation of a run; created on first use and caught up on the bars already closed.
#[derive(Debug, Default)]
pub struct Aggregations {
    items: Vec<Aggregation>,
}

impl Aggregations {
    pub fn get_or_attach(
        &mut self,
        symbol: SymbolId,
        timeframe: Timeframe,
        series: &BarSeries,
        closed: usize,
        interval_ns: i64,
        now: TimestampNs,
    ) -> usize {
        if let Some(id) = self
            .items
            .iter()
            .position(|a| a.symbol == symbol && a.timeframe == timeframe)
        {
            return id;
        }
        let mut aggregation = Aggregation::new(symbol, timeframe, series);
        for index in 0..closed {
            aggregation.on_bar(series, index, interval_ns);
        }
        aggregation.close_due(now);
        self.items.push(aggregation);
        self.items.len() - 1
    }

    pub fn get(&self, id: usize) -> Option<&Aggregation> {
        self.items.get(id)
    }

    pub fn on_bar(&mut self, symbol: SymbolId, series: &BarSeries, index: usize, interval_ns: i64) {
        for aggregation in self.items.iter_mut().filter(|a| a.symbol == symbol) {
            aggregation.on_bar(series, index, interval_ns);
        }
    }

    pub fn close_due(&mut self, now: TimestampNs) {
        for aggregation in &mut self.items {
            aggregation.close_due(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Column;
    use proptest::prelude::*;
    use std::path::PathBuf;

    const MIN: i64 = 60_000_000_000;

    fn series(minutes: &[i64], closes: &[f64], volumes: &[f64]) -> BarSeries {
        let text = |v: &[f64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>();
        let column = |v: &[f64]| Column::parse_texts(&text(v)).unwrap();
        let highs: Vec<f64> = closes.iter().map(|c| c + 1.0).collect();
        let lows: Vec<f64> = closes.iter().map(|c| c - 1.0).collect();
        BarSeries {
            symbol: "X".into(),
            source: PathBuf::from("X.csv"),
            time: minutes.iter().map(|m| m * MIN).collect::<Vec<_>>().into(),
            open: column(closes),
            high: column(&highs),
            low: column(&lows),
            close: column(closes),
            volume: column(volumes),
        }
    }

    #[test]
    fn a_bar_is_visible_only_once_its_bucket_has_closed() {
        let s = series(
            &[0, 1, 2, 3, 4, 5, 7],
            &[1., 2., 3., 4., 5., 6., 8.],
            &[1.; 7],
        );
        let mut a = Aggregation::new(SymbolId(0), Timeframe::parse("3m").unwrap(), &s);
        a.on_bar(&s, 0, MIN);
        a.on_bar(&s, 1, MIN);
        assert_eq!(a.len(), 0, "minutes 0-1 of a 3-minute bar: still forming");
        assert_eq!(a.forming().unwrap().count, 2);
        a.on_bar(&s, 2, MIN);
        assert_eq!(
            a.len(),
            1,
            "the bar closing at minute 3 is visible at minute 3"
        );
        assert_eq!(
            (a.open.get(0), a.high.get(0), a.low.get(0), a.close.get(0)),
            (1.0, 4.0, 0.0, 3.0)
        );
        for i in 3..6 {
            a.on_bar(&s, i, MIN);
        }
        assert_eq!(a.len(), 2);
        // Minute 6 is missing: the bucket 6-9 holds one base bar and closes at minute 9.
        a.on_bar(&s, 6, MIN);
        assert_eq!(a.len(), 2);
        a.close_due(9 * MIN - 1);
        assert_eq!(a.len(), 2);
        a.close_due(9 * MIN);
        assert_eq!(a.len(), 3);
        assert_eq!(a.count.get_i64(2), 1, "the gap shows as a short count");
        assert_eq!(a.time.get_i64(2), 6 * MIN);
    }

    proptest! {
        #[test]
        fn aggregation_invariants(
            gaps in prop::collection::vec(1i64..4, 1..200),
            closes in prop::collection::vec(1u32..10_000, 200),
            minutes_per_bar in 2i64..30,
        ) {
            let mut t = 0;
            let minutes: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let n = minutes.len();
            let closes: Vec<f64> = closes[..n].iter().map(|c| *c as f64).collect();
            let volumes: Vec<f64> = (0..n).map(|i| (i % 7 + 1) as f64).collect();
            let s = series(&minutes, &closes, &volumes);
            let tf = Timeframe::parse(&format!("{minutes_per_bar}m")).unwrap();
            let mut a = Aggregation::new(SymbolId(0), tf, &s);
            for (i, minute) in minutes.iter().enumerate() {
                a.on_bar(&s, i, MIN);
                // Never a bar whose bucket has not ended by the close of the last base bar.
                let now = minute * MIN + MIN;
                for k in 0..a.len() {
                    prop_assert!(tf.bucket_end(a.time.get_i64(k)) <= now);
                }
            }
            a.close_due(i64::MAX);
            // Every base bar lands in exactly one aggregated bar; sums and extremes agree.
            let total: i64 = (0..a.len()).map(|k| a.count.get_i64(k)).sum();
            prop_assert_eq!(total, n as i64);
            let volume: f64 = (0..a.len()).map(|k| a.volume.get(k)).sum();
            prop_assert_eq!(volume, volumes.iter().sum::<f64>());
            for k in 0..a.len() {
                let start = a.time.get_i64(k);
                let members: Vec<usize> = (0..n)
                    .filter(|&i| tf.bucket_start(minutes[i] * MIN) == start)
                    .collect();
                prop_assert_eq!(members.len() as i64, a.count.get_i64(k));
                let high = members.iter().map(|&i| closes[i] + 1.0).fold(f64::MIN, f64::max);
                let low = members.iter().map(|&i| closes[i] - 1.0).fold(f64::MAX, f64::min);
                prop_assert_eq!(a.high.get(k), high);
                prop_assert_eq!(a.low.get(k), low);
                prop_assert_eq!(a.open.get(k), closes[members[0]]);
                prop_assert_eq!(a.close.get(k), closes[*members.last().unwrap()]);
            }
        }
    }
}
