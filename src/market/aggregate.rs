//! Higher timeframes built by the engine from the base bars of a symbol.
//!
//! An aggregated bar is open first, high max, low min, close last, volume sum of the base bars
//! that open in its bucket. It becomes visible only once closed: when a base bar closing at or
//! after the bucket's end is processed, or when the clock passes the end (a symbol whose bars
//! stopped). Missing base bars are not invented: each aggregated bar records how many base bars
//! it holds (`count`), so a gap shows as a smaller count.
//!
//! Buckets come from the run's [`SessionCalendar`]: UTC by default, or an exchange's time zone
//! and hours. A base bar that opens outside the session is in no aggregated bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::calendar::{BucketCursor, SessionCalendar};
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
    /// The bucket of the last base bar, so most bars need no calendar arithmetic.
    cursor: BucketCursor,
}

impl Aggregation {
    /// UTC buckets; see [`Aggregation::with_calendar`].
    pub fn new(symbol: SymbolId, timeframe: Timeframe, series: &BarSeries) -> Self {
        Self::with_calendar(symbol, timeframe, series, SessionCalendar::default())
    }

    /// Columns sized to the number of buckets the symbol's bars fall into.
    pub fn with_calendar(
        symbol: SymbolId,
        timeframe: Timeframe,
        series: &BarSeries,
        calendar: SessionCalendar,
    ) -> Self {
        let buckets = buckets(&series.time, calendar, timeframe).count();
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
            cursor: BucketCursor::new(calendar, timeframe),
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
        let Some((start, end)) = self.cursor.bucket(open_time) else {
            // Outside the session: in no bucket, but it shows how far time has gone.
            self.close_due(open_time.saturating_add(interval_ns));
            return;
        };
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
            end,
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

/// The base bars of one bucket: what [`Aggregation`] folds into one bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: TimestampNs,
    /// Exclusive.
    pub end: TimestampNs,
    /// From its first base bar to its last. Bars in between that open outside the session are
    /// in no bucket (only buckets of several sessions, with a close, have such bars).
    pub bars: std::ops::Range<usize>,
}

/// The buckets of `timeframe` under `calendar` that the base bars opening at `times`
/// (ascending) fall into, in order; bars outside the session are in none. The engine sizes its
/// aggregations with this, and `rustybt data resample` builds its stored bars from it, so both
/// cut the same buckets.
pub fn buckets(
    times: &[TimestampNs],
    calendar: SessionCalendar,
    timeframe: Timeframe,
) -> impl Iterator<Item = Bucket> + '_ {
    let mut cursor = BucketCursor::new(calendar, timeframe);
    let mut i = 0;
    std::iter::from_fn(move || {
        let (first, (start, end)) = loop {
            let at = i;
            i += 1;
            if let Some(bucket) = cursor.bucket(*times.get(at)?) {
                break (at, bucket);
            }
        };
        let mut last = first;
        while let Some(&t) = times.get(i) {
            match cursor.bucket(t) {
                Some(b) if b == (start, end) => last = i,
                Some(_) => break,
                None => {} // outside the session: the bucket may go on after it
            }
            i += 1;
        }
        Some(Bucket {
            start,
            end,
            bars: first..last + 1,
        })
    })
}

/// Every aggregation of a run; created on first use and caught up on the bars already closed.
/// All of them follow the run's calendar (UTC by default).
#[derive(Debug, Default)]
pub struct Aggregations {
    calendar: SessionCalendar,
    items: Vec<Aggregation>,
}

impl Aggregations {
    pub fn new(calendar: SessionCalendar) -> Self {
        Aggregations {
            calendar,
            items: Vec::new(),
        }
    }

    pub fn calendar(&self) -> SessionCalendar {
        self.calendar
    }

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
        let mut aggregation = Aggregation::with_calendar(symbol, timeframe, series, self.calendar);
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

    /// Whether a higher timeframe of `symbol` is attached.
    #[inline]
    pub fn builds_on(&self, symbol: SymbolId) -> bool {
        self.items.iter().any(|a| a.symbol == symbol)
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

    fn new_york_regular_hours() -> SessionCalendar {
        use super::super::calendar::{parse_time_of_day, parse_timezone};
        SessionCalendar::new(
            parse_timezone("America/New_York").unwrap(),
            parse_time_of_day("09:30").unwrap(),
            Some(parse_time_of_day("16:00").unwrap()),
        )
    }

    #[test]
    fn session_hours_cut_the_last_hour_and_leave_out_the_rest() {
        // Every minute of Tuesday 2 January 2024 (UTC); New York trades 14:30Z to 21:00Z.
        let first = crate::data::parse_timestamp("2024-01-02T00:00:00Z").unwrap() / MIN;
        let minutes: Vec<i64> = (first..first + 1440).collect();
        let closes: Vec<f64> = (0..1440).map(|m| 100.0 + m as f64).collect();
        let s = series(&minutes, &closes, &[1.0; 1440]);
        let hour = Timeframe::parse("1h").unwrap();
        let mut a = Aggregation::with_calendar(SymbolId(0), hour, &s, new_york_regular_hours());
        assert_eq!(a.capacity(), 7);
        let open_index = 14 * 60 + 30;
        for i in 0..open_index {
            a.on_bar(&s, i, MIN);
            assert!(a.forming().is_none(), "nothing forms before the open");
        }
        for i in open_index..21 * 60 {
            a.on_bar(&s, i, MIN);
        }
        // The 15:59 bar closes at 16:00, the end of the cut last hour: all seven are visible.
        assert_eq!(a.len(), 7);
        let hour_ns = 60 * MIN;
        for k in 0..7 {
            let start = (first + open_index as i64) * MIN + k as i64 * hour_ns;
            assert_eq!(a.time.get_i64(k), start);
            assert_eq!(a.count.get_i64(k), if k == 6 { 30 } else { 60 });
        }
        assert_eq!(a.open.get(0), closes[open_index]);
        assert_eq!(a.close.get(6), closes[21 * 60 - 1]);
        for i in 21 * 60..1440 {
            a.on_bar(&s, i, MIN);
        }
        assert_eq!(a.len(), 7, "bars after the close are in no hourly bar");
        assert!(a.forming().is_none());
        let volume: f64 = (0..7).map(|k| a.volume.get(k)).sum();
        assert_eq!(volume, 390.0);
    }

    #[test]
    fn a_bar_outside_the_session_closes_the_last_bucket() {
        // 14:30Z to 14:59Z, then nothing until 21:30Z (after the close).
        let first = crate::data::parse_timestamp("2024-01-02T14:30:00Z").unwrap() / MIN;
        let mut minutes: Vec<i64> = (first..first + 30).collect();
        minutes.push(first + 7 * 60);
        let s = series(&minutes, &[1.0; 31], &[1.0; 31]);
        let mut a = Aggregation::with_calendar(
            SymbolId(0),
            Timeframe::parse("1d").unwrap(),
            &s,
            new_york_regular_hours(),
        );
        for i in 0..30 {
            a.on_bar(&s, i, MIN);
        }
        assert_eq!(a.len(), 0);
        assert_eq!(a.forming().unwrap().end, (first + 390) * MIN);
        a.on_bar(&s, 30, MIN);
        assert_eq!(a.len(), 1);
        assert_eq!(a.count.get_i64(0), 30);
    }

    proptest! {
        /// With any calendar, every base bar in the session is in exactly one aggregated bar,
        /// the bars ascend without overlapping, none is shown before its end, and volume adds up.
        #[test]
        fn session_aggregation_invariants(
            zone in 0usize..4,
            open_minute in 0u32..1440,
            close_minute in prop::option::of(0u32..1440),
            which in 0usize..7,
            start_day in 0i64..3650,
            gaps in prop::collection::vec(1i64..120, 1..400),
        ) {
            use super::super::calendar::parse_timezone;
            const ZONES: [&str; 4] =
                ["America/New_York", "Asia/Tokyo", "Europe/London", "Australia/Lord_Howe"];
            const FRAMES: [&str; 7] = ["5m", "1h", "4h", "7h", "1d", "1w", "1M"];
            let time = |m: u32| chrono::NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
            let calendar = SessionCalendar::new(
                parse_timezone(ZONES[zone]).unwrap(),
                time(open_minute),
                close_minute.map(time),
            );
            let tf = Timeframe::parse(FRAMES[which]).unwrap();
            // From 2020-01-01 on, so some runs cross a clock change.
            let mut t = 26_297_280 + start_day * 1440;
            let minutes: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let n = minutes.len();
            let closes: Vec<f64> = (0..n).map(|i| (i * 37 % 101) as f64 + 1.0).collect();
            let volumes: Vec<f64> = (0..n).map(|i| (i % 7 + 1) as f64).collect();
            let s = series(&minutes, &closes, &volumes);
            let mut a = Aggregation::with_calendar(SymbolId(0), tf, &s, calendar);
            for (i, minute) in minutes.iter().enumerate() {
                a.on_bar(&s, i, MIN);
                let now = minute * MIN + MIN;
                for k in 0..a.len() {
                    let (_, end) = calendar.bucket(tf, a.time.get_i64(k)).unwrap();
                    prop_assert!(end <= now);
                }
            }
            a.close_due(i64::MAX);
            prop_assert_eq!(a.len(), a.capacity());
            let buckets: Vec<Option<(i64, i64)>> =
                minutes.iter().map(|m| calendar.bucket(tf, m * MIN)).collect();
            let inside: Vec<usize> = (0..n).filter(|&i| buckets[i].is_some()).collect();
            let total: i64 = (0..a.len()).map(|k| a.count.get_i64(k)).sum();
            prop_assert_eq!(total, inside.len() as i64);
            let volume: f64 = (0..a.len()).map(|k| a.volume.get(k)).sum();
            prop_assert_eq!(volume, inside.iter().map(|&i| volumes[i]).sum::<f64>());
            let mut previous_end = i64::MIN;
            for k in 0..a.len() {
                let start = a.time.get_i64(k);
                let (bucket_start, end) = calendar.bucket(tf, start).unwrap();
                prop_assert_eq!(bucket_start, start);
                prop_assert!(previous_end <= start);
                previous_end = end;
                let members: Vec<usize> = inside
                    .iter()
                    .copied()
                    .filter(|&i| buckets[i] == Some((start, end)))
                    .collect();
                prop_assert_eq!(members.len() as i64, a.count.get_i64(k));
                prop_assert_eq!(a.open.get(k), closes[members[0]]);
                prop_assert_eq!(a.close.get(k), closes[*members.last().unwrap()]);
            }
        }

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
