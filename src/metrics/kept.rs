//! What a backtest keeps of its equity curve and its fills: everything, or only what the
//! metrics read.
//!
//! A plain run keeps every point and fill (it writes `equity.csv` and `fills.csv`). An
//! optimizer's trial needs only its metrics, and a point per tick is 40 bytes: 40 MB for a
//! million bars, the largest part of a worker's memory. So a record can also be *summarized*:
//! each point goes straight into an [`EquitySummary`] and is dropped (each fill into the
//! [`FillTotals`]). A plain run reduces its kept points with the same [`EquitySummary::push`],
//! so a trial's metrics equal a plain run's to the last bit.

use std::borrow::Cow;

use rust_decimal::Decimal;

use super::EquityPoint;
use super::daily::{DailySeries, MetricsOptions};
use super::stats::{Drawdown, point_drawdown};
use crate::model::{Fill, TimestampNs};

/// A summary that takes the items of a record one at a time, in order.
pub trait Summary<T> {
    fn take(&mut self, item: &T);
}

/// The items a run records (`T`): all of them, or only their summary `S`. It reads as the list
/// of its items, which is empty when only summarized: what may read a summarized record asks
/// for its summary ([`EquityCurve::summary`], [`FillLog::totals`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Kept<T, S> {
    items: Vec<T>,
    summary: Option<S>,
}

/// The equity curve of a run: a point per tick, or their [`EquitySummary`].
pub type EquityCurve = Kept<EquityPoint, EquitySummary>;
/// The fills of a run, or their [`FillTotals`].
pub type FillLog = Kept<Fill, FillTotals>;

impl<T, S> Default for Kept<T, S> {
    fn default() -> Self {
        Kept {
            items: Vec::new(),
            summary: None,
        }
    }
}

impl<T: Clone, S: Summary<T>> Kept<T, S> {
    /// A record that keeps no item, only `summary` of them.
    pub fn summarized(summary: S) -> Self {
        Kept {
            items: Vec::new(),
            summary: Some(summary),
        }
    }

    #[inline]
    pub fn push(&mut self, item: T) {
        match &mut self.summary {
            None => self.items.push(item),
            Some(summary) => summary.take(&item),
        }
    }

    #[inline]
    pub fn extend_from_slice(&mut self, items: &[T]) {
        match &mut self.summary {
            None => self.items.extend_from_slice(items),
            Some(summary) => items.iter().for_each(|item| summary.take(item)),
        }
    }

    /// Puts `items` before the item at `index` (a portfolio's fills crossed at the open); a
    /// summary takes them now.
    pub fn insert(&mut self, index: usize, items: impl IntoIterator<Item = T>) {
        match &mut self.summary {
            None => {
                self.items.splice(index..index, items);
            }
            Some(summary) => items.into_iter().for_each(|item| summary.take(&item)),
        }
    }

    /// Room for `additional` items (nothing for a summarized record).
    pub fn reserve(&mut self, additional: usize) {
        if self.summary.is_none() {
            self.items.reserve(additional);
        }
    }

    pub fn is_summarized(&self) -> bool {
        self.summary.is_some()
    }
}

impl<T, S> From<Vec<T>> for Kept<T, S> {
    fn from(items: Vec<T>) -> Self {
        Kept {
            items,
            summary: None,
        }
    }
}

impl<T, S> std::ops::Deref for Kept<T, S> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<'a, T, S> IntoIterator for &'a Kept<T, S> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl EquityCurve {
    /// How many points the run recorded (kept or not).
    pub fn count(&self) -> usize {
        self.summary.as_ref().map_or(self.items.len(), |s| s.count)
    }

    /// The summary the metrics are computed from: the one kept while the run went (which must
    /// be for the same `initial_cash` and options), or one computed from the points.
    pub fn summary(
        &self,
        initial_cash: Decimal,
        options: &MetricsOptions,
    ) -> Cow<'_, EquitySummary> {
        match &self.summary {
            Some(summary) => {
                debug_assert!(
                    summary.initial_cash == initial_cash && summary.options == *options,
                    "invariant: a summarized curve is read with the settings it was made for"
                );
                Cow::Borrowed(summary)
            }
            None => Cow::Owned(EquitySummary::of(&self.items, initial_cash, options)),
        }
    }
}

impl FillLog {
    /// The totals the metrics read: the ones kept, or those of the kept fills.
    pub fn totals(&self) -> FillTotals {
        self.summary.unwrap_or_else(|| FillTotals::of(&self.items))
    }
}

/// What the metrics read from the fills: how many, their fees and their slippage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FillTotals {
    pub count: usize,
    pub fees: Decimal,
    pub slippage: Decimal,
}

impl FillTotals {
    pub fn of(fills: &[Fill]) -> Self {
        let mut totals = FillTotals::default();
        fills.iter().for_each(|fill| totals.take(fill));
        totals
    }
}

impl Summary<Fill> for FillTotals {
    #[inline]
    fn take(&mut self, fill: &Fill) {
        self.count += 1;
        self.fees += fill.fee;
        self.slippage += fill.slippage;
    }
}

/// Everything the metrics read from an equity curve, built one point at a time: the first and
/// last points, the count, whether a point falls on a weekend, the last equity of each day,
/// and the per-tick drawdown.
#[derive(Debug, Clone, PartialEq)]
pub struct EquitySummary {
    initial_cash: Decimal,
    options: MetricsOptions,
    pub count: usize,
    pub first_time: Option<TimestampNs>,
    pub last: Option<EquityPoint>,
    /// Some point belongs to a Saturday or Sunday (UTC): a 24/7 market.
    pub weekend: bool,
    daily: DailySeries,
    drawdown: DrawdownTracker,
}

impl EquitySummary {
    pub fn new(initial_cash: Decimal, options: &MetricsOptions) -> Self {
        EquitySummary {
            initial_cash,
            options: options.clone(),
            count: 0,
            first_time: None,
            last: None,
            weekend: false,
            daily: DailySeries::start(initial_cash),
            drawdown: DrawdownTracker::default(),
        }
    }

    pub fn of(points: &[EquityPoint], initial_cash: Decimal, options: &MetricsOptions) -> Self {
        let mut summary = EquitySummary::new(initial_cash, options);
        for &point in points {
            summary.push(point);
        }
        summary
    }

    /// The next point, in time order.
    #[inline]
    pub fn push(&mut self, point: EquityPoint) {
        self.take(&point);
    }

    /// The equity of the last point, or the initial cash before any.
    pub fn final_equity(&self) -> Decimal {
        self.last.map_or(self.initial_cash, |p| p.equity)
    }

    pub fn end_time(&self) -> Option<TimestampNs> {
        self.last.map(|p| p.time)
    }

    /// The initial cash, then the last equity of each day that has points.
    pub fn daily(&self) -> &DailySeries {
        &self.daily
    }

    pub fn drawdown(&self) -> Drawdown {
        self.drawdown.finish(self.end_time())
    }
}

impl Summary<EquityPoint> for EquitySummary {
    #[inline]
    fn take(&mut self, &point: &EquityPoint) {
        if self.first_time.is_none() {
            self.first_time = Some(point.time);
        }
        self.count += 1;
        self.last = Some(point);
        self.weekend = self.weekend || super::stats::is_weekend(point.time);
        self.daily
            .push(self.options.day_of(point.time), point.equity);
        self.drawdown.push(&point);
    }
}

/// Max drawdown, longest time under water, and where the deepest drawdown was, as the points
/// come (the definitions are in the `metrics` module's docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DrawdownTracker {
    /// The running peak and when it was reached; `None` before the first point.
    peak: Option<(Decimal, TimestampNs)>,
    under_water: bool,
    max: f64,
    duration_ns: i64,
    max_peak_time: Option<TimestampNs>,
    trough_time: Option<TimestampNs>,
}

impl DrawdownTracker {
    #[inline]
    pub(crate) fn push(&mut self, p: &EquityPoint) {
        let (mut peak, mut peak_time) = self.peak.unwrap_or((p.equity, p.time));
        if p.equity >= peak {
            if self.under_water {
                self.duration_ns = self.duration_ns.max(p.time - peak_time);
                self.under_water = false;
            }
            peak = p.equity;
            peak_time = p.time;
        } else {
            self.under_water = true;
        }
        self.peak = Some((peak, peak_time));
        let dd = point_drawdown(p.equity, peak);
        if dd > self.max {
            self.max = dd;
            self.max_peak_time = Some(peak_time);
            self.trough_time = Some(p.time);
        }
    }

    /// The drawdown so far; `last` is the time of the last point (a run that ends under water
    /// has been there since its peak).
    pub(crate) fn finish(&self, last: Option<TimestampNs>) -> Drawdown {
        let mut duration_ns = self.duration_ns;
        if let (true, Some((_, peak_time)), Some(last)) = (self.under_water, self.peak, last) {
            duration_ns = duration_ns.max(last - peak_time);
        }
        Drawdown {
            max: self.max,
            duration_ns,
            peak_time: self.max_peak_time,
            trough_time: self.trough_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::NANOS_PER_DAY;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn curve(values: &[(i64, i64)]) -> Vec<EquityPoint> {
        values
            .iter()
            .map(|&(hours, cents)| EquityPoint {
                time: hours * HOUR,
                cash: Decimal::new(cents / 2, 2),
                equity: Decimal::new(cents, 2),
            })
            .collect()
    }

    #[test]
    fn a_summarized_curve_keeps_no_point_but_counts_them() {
        let options = MetricsOptions::default();
        let mut kept = EquityCurve::default();
        let mut summarized =
            EquityCurve::summarized(EquitySummary::new(Decimal::from(100), &options));
        for point in curve(&[(1, 10_000), (30, 9_000), (60, 11_000)]) {
            kept.push(point);
            summarized.push(point);
        }
        assert_eq!((kept.len(), kept.count()), (3, 3));
        assert_eq!((summarized.len(), summarized.count()), (0, 3));
        assert!(summarized.is_summarized() && !kept.is_summarized());
        let summary = summarized.summary(Decimal::from(100), &options);
        assert_eq!(summary.final_equity(), Decimal::from(110));
        assert_eq!(summary.daily().values.len(), 4);
    }

    #[test]
    fn totalled_fills_equal_the_totals_of_the_kept_fills() {
        use crate::model::{OrderId, OrderSide, SymbolId};
        let fill = |id: u64, fee: i64, slippage: i64| Fill {
            order_id: OrderId(id),
            symbol: SymbolId(0),
            side: OrderSide::Buy,
            quantity: Decimal::ONE,
            price: Decimal::TEN,
            fee: Decimal::new(fee, 2),
            slippage: Decimal::new(slippage, 3),
            time: id as i64,
        };
        let mut kept = FillLog::default();
        let mut totalled = FillLog::summarized(FillTotals::default());
        for log in [&mut kept, &mut totalled] {
            log.extend_from_slice(&[fill(1, 5, 1), fill(3, 7, 0)]);
            log.insert(1, [fill(2, 11, 4)]);
        }
        assert_eq!(
            kept.iter().map(|f| f.order_id.0).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(totalled.is_empty());
        let totals = FillTotals {
            count: 3,
            fees: Decimal::new(23, 2),
            slippage: Decimal::new(5, 3),
        };
        assert_eq!((kept.totals(), totalled.totals()), (totals, totals));
    }

    proptest! {
        /// Streaming the points gives the summary of the kept points, whose days, last
        /// equities and weekend flag are those found by grouping the points naively.
        #[test]
        fn streaming_equals_the_kept_curve(
            steps in proptest::collection::vec((1i64..30, -5_000i64..5_000), 0..200),
            day_end_hours in 0i64..24,
        ) {
            let options = MetricsOptions { day_end_ns: day_end_hours * HOUR, ..Default::default() };
            let mut hours = 0;
            let mut cents = 100_000i64;
            let mut points = Vec::new();
            for (dt, change) in steps {
                hours += dt;
                cents += change;
                points.push((hours, cents));
            }
            let points = curve(&points);
            let cash = Decimal::from(1000);
            let mut streamed = EquityCurve::summarized(EquitySummary::new(cash, &options));
            for &p in &points {
                streamed.push(p);
            }
            let kept = EquityCurve::from(points.clone());
            let (a, b) = (streamed.summary(cash, &options), kept.summary(cash, &options));
            prop_assert_eq!(a.as_ref(), b.as_ref());
            prop_assert_eq!(a.drawdown(), super::super::stats::drawdown(&points));
            // A point stamped exactly at the day end closes the day before.
            let day = |t: i64| (t - 1 - day_end_hours * HOUR).div_euclid(NANOS_PER_DAY);
            let mut days: Vec<i64> = points.iter().map(|p| day(p.time)).collect();
            days.dedup();
            let closes: Vec<Decimal> = days
                .iter()
                .map(|d| points.iter().rev().find(|p| day(p.time) == *d).unwrap().equity)
                .collect();
            prop_assert_eq!(&a.daily().days, &days);
            prop_assert_eq!(&a.daily().values[1..], &closes[..]);
            prop_assert_eq!(a.daily().values[0], cash);
            let weekend = points.iter().any(|p| {
                let weekday = ((p.time - 1).div_euclid(NANOS_PER_DAY) + 4).rem_euclid(7);
                weekday == 0 || weekday == 6
            });
            prop_assert_eq!(a.weekend, weekend);
            prop_assert_eq!((a.count, a.final_equity()), (points.len(), points.last().map_or(cash, |p| p.equity)));
        }
    }
}
