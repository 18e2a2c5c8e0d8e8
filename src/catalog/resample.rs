//! `rustybt data resample`: a dataset of a higher timeframe built from a stored one and stored
//! beside it. Buckets are the engine's own (`crate::market::aggregate::buckets` under the
//! run's [`SessionCalendar`]: UTC by default, or an exchange's time zone and session hours), so
//! a stored `1h` or `1d` dataset holds exactly the bars a run with the same `--timezone` and
//! session builds from the base bars. A bucket is built only if the source dataset covers it
//! whole, so a partly known bucket (the end of the data, a span never fetched) never becomes a
//! bar. Values are exact: open of the first bar, close of the last, highest high, lowest low,
//! summed volume.

use rust_decimal::Decimal;

use super::{Catalog, CatalogError, DatasetInfo, ImportReport, Selector};
use crate::data::BarSeries;
use crate::market::aggregate::buckets;
use crate::market::timeframe::Timeframe;
use crate::market::{BucketCursor, SessionCalendar};
use crate::model::format_timestamp;

/// What to build: the timeframe (`label` as the user wrote it names the stored dataset) and
/// the calendar its buckets follow.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub label: &'a str,
    pub timeframe: Timeframe,
    pub calendar: SessionCalendar,
}

impl Target<'_> {
    /// `resampled from <dataset>`, and the calendar unless it is plain UTC: a dataset is built
    /// with one calendar only.
    fn origin(&self, dataset: &DatasetInfo) -> String {
        if self.calendar.is_utc_default() {
            format!("resampled from {}", dataset.label())
        } else {
            format!("resampled from {} in {}", dataset.label(), self.calendar)
        }
    }
}

/// Builds `dataset` at `target` (a multiple of its interval) and stores it.
pub fn resample(
    catalog: &mut Catalog,
    dataset: &DatasetInfo,
    target: &Target,
) -> Result<ImportReport, CatalogError> {
    let label = target.label;
    let Timeframe::Fixed { nanos: to_ns, .. } = target.timeframe else {
        return Err(CatalogError::Invalid(format!(
            "`{label}`: weeks and months cannot be stored; resample to days"
        )));
    };
    if to_ns <= dataset.interval_ns || to_ns % dataset.interval_ns != 0 {
        return Err(CatalogError::Invalid(format!(
            "`{label}` is not a multiple of {}'s timeframe `{}`: resampling builds higher timeframes from whole bars",
            dataset.symbol, dataset.timeframe
        )));
    }
    let origin = target.origin(dataset);
    let stored = catalog.select(&Selector {
        symbol: Some(dataset.symbol.clone()),
        timeframe: Some(label.to_owned()),
        source: Some(dataset.source.clone()),
    })?;
    if let Some(other) = stored.first()
        && other.origin.starts_with("resampled from")
        && other.origin != origin
    {
        return Err(CatalogError::Invalid(format!(
            "{} is stored already, {}: bars of two calendars would mix in one dataset; remove it first (`rustybt data rm {} --timeframe {label} --source {}`)",
            other.label(),
            other.origin,
            dataset.symbol,
            dataset.source
        )));
    }
    let bars = catalog.load(dataset, None, None)?;
    let out = aggregate(
        &bars,
        dataset.interval_ns,
        target,
        to_ns,
        &dataset.intervals,
    )?;
    if out.is_empty() {
        return Err(CatalogError::Invalid(format!(
            "{} covers no whole `{label}` bar{}",
            dataset.label(),
            if target.calendar.is_utc_default() {
                String::new()
            } else {
                format!(" of {}", target.calendar)
            }
        )));
    }
    catalog.import(&dataset.source, label, to_ns, &out, &origin)
}

/// The bars of `bars` (each `interval_ns` long) aggregated into the buckets of `target`,
/// keeping only buckets that lie whole inside one of the `covered` intervals. Refuses what a
/// stored bar could not represent honestly: a base bar reaching across a bucket's edge or the
/// session's (its prices would count where they did not happen), and a bucket longer than the
/// timeframe (clocks going back inside it): a run reading the stored dataset takes a bar to
/// close one timeframe after it opens, and would show it before its end.
fn aggregate(
    bars: &BarSeries,
    interval_ns: i64,
    target: &Target,
    to_ns: i64,
    covered: &[(i64, i64)],
) -> Result<BarSeries, CatalogError> {
    let label = target.label;
    let (calendar, timeframe) = (target.calendar, target.timeframe);
    let mut out = BarSeries::empty(bars.symbol.clone(), bars.source.clone());
    let time = &bars.time;
    // Where each bar opens and where its last instant is: the same bucket (or both outside
    // the session) for a bar that fits.
    let mut opens = BucketCursor::new(calendar, timeframe);
    let mut lasts = BucketCursor::new(calendar, timeframe);
    for bucket in buckets(time, calendar, timeframe) {
        let (start, end) = (bucket.start, bucket.end);
        if !covered.iter().any(|&(s, e)| s <= start && end <= e) {
            continue;
        }
        if end - start > to_ns {
            return Err(CatalogError::Invalid(format!(
                "the `{label}` bucket of {calendar} from {} to {} is longer than `{label}` (the clocks go back in it): a run reading the stored bars would show it before it closed; give session hours that leave out the repeated hour (e.g. `--session-open 09:30 --session-close 16:00`), or resample in UTC",
                format_timestamp(start),
                format_timestamp(end)
            )));
        }
        let mut folded: Option<[Decimal; 5]> = None;
        let mut last = bucket.bars.start;
        // From the bar before the bucket: one that runs into it would be missing from it.
        for j in bucket.bars.start.saturating_sub(1)..bucket.bars.end {
            let opens_in = opens.bucket(time[j]);
            if lasts.bucket(time[j].saturating_add(interval_ns - 1)) != opens_in {
                return Err(CatalogError::Invalid(format!(
                    "the bar of {} at {} reaches across an edge of the `{label}` buckets of {calendar} (a bucket's start or end, or the session's open or close): its prices would count in the wrong bar; resample from a timeframe that divides the session (e.g. `1m`), or choose session hours on its bars' boundaries",
                    bars.symbol,
                    format_timestamp(time[j])
                )));
            }
            if opens_in != Some((start, end)) {
                continue;
            }
            let (high, low, volume) = (
                bars.high.exact.get(j),
                bars.low.exact.get(j),
                bars.volume.exact.get(j),
            );
            folded = Some(match folded {
                None => [bars.open.exact.get(j), high, low, Decimal::ZERO, volume],
                Some([open, h, l, c, v]) => [
                    open,
                    h.max(high),
                    l.min(low),
                    c,
                    v.checked_add(volume).ok_or_else(|| {
                        CatalogError::Invalid(format!("{}: volume overflows", bars.symbol))
                    })?,
                ],
            });
            last = j;
        }
        let Some([open, high, low, _, volume]) = folded else {
            continue;
        };
        let texts = [
            open.to_string(),
            high.to_string(),
            low.to_string(),
            bars.close.exact.get(last).to_string(),
            volume.to_string(),
        ];
        out.append(start, std::array::from_fn(|k| texts[k].as_str()))
            .map_err(CatalogError::Invalid)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Column, parse_timestamp};
    use crate::market::aggregate::Aggregation;
    use crate::market::calendar::{parse_time_of_day, parse_timezone};
    use crate::market::{BarColumn, SessionCalendar};
    use crate::model::SymbolId;
    use proptest::prelude::*;
    use std::path::PathBuf;

    const MIN: i64 = 60_000_000_000;

    /// Bars at `times` (ns) with prices from `price(i)` in cents and whole volumes, so the
    /// engine's float sums are exact too.
    fn series(times: &[i64], price: impl Fn(usize) -> i64) -> BarSeries {
        let column = |f: &dyn Fn(usize) -> String| -> Column {
            let t: Vec<String> = (0..times.len()).map(f).collect();
            Column::parse_texts(&t).expect("column")
        };
        let cents = |c: i64| format!("{}.{:02}", c / 100, c % 100);
        BarSeries {
            symbol: "X".into(),
            source: PathBuf::from("t"),
            time: BarColumn::from_vec(times.to_vec()),
            open: column(&|i| cents(price(i))),
            high: column(&|i| cents(price(i) + 7)),
            low: column(&|i| cents(price(i) - 5)),
            close: column(&|i| cents(price(i) + 1)),
            volume: column(&|i| format!("{}", i % 13 + 1)),
        }
    }

    fn target<'a>(label: &'a str, calendar: SessionCalendar) -> Target<'a> {
        Target {
            label,
            timeframe: Timeframe::parse(label).unwrap(),
            calendar,
        }
    }

    fn calendar(zone: &str, session: Option<(&str, &str)>) -> SessionCalendar {
        let tz = parse_timezone(zone).unwrap();
        match session {
            Some((open, close)) => SessionCalendar::new(
                tz,
                parse_time_of_day(open).unwrap(),
                Some(parse_time_of_day(close).unwrap()),
            ),
            None => SessionCalendar::new(tz, chrono::NaiveTime::MIN, None),
        }
    }

    fn stored(bars: &BarSeries, interval: i64, t: &Target) -> Result<BarSeries, CatalogError> {
        let Timeframe::Fixed { nanos, .. } = t.timeframe else {
            unreachable!()
        };
        let last = *bars.time.last().unwrap();
        aggregate(bars, interval, t, nanos, &[(bars.time[0], last + interval)])
    }

    /// A bar as (start, open, high, low, close, volume).
    type Row = (i64, f64, f64, f64, f64, f64);

    /// The bars the engine builds from `bars` in a run with `calendar`, with each bucket's end.
    fn engine_bars(bars: &BarSeries, interval: i64, t: &Target) -> Vec<(Row, i64)> {
        let mut a = Aggregation::with_calendar(SymbolId(0), t.timeframe, bars, t.calendar);
        for i in 0..bars.len() {
            a.on_bar(bars, i, interval);
        }
        a.close_due(i64::MAX);
        (0..a.len())
            .map(|k| {
                let start = a.time.get_i64(k);
                let (_, end) = t.calendar.bucket(t.timeframe, start).unwrap();
                let row = (
                    start,
                    a.open.get(k),
                    a.high.get(k),
                    a.low.get(k),
                    a.close.get(k),
                    a.volume.get(k),
                );
                (row, end)
            })
            .collect()
    }

    fn rows(out: &BarSeries) -> Vec<Row> {
        (0..out.len())
            .map(|k| {
                (
                    out.time[k],
                    out.open.values[k],
                    out.high.values[k],
                    out.low.values[k],
                    out.close.values[k],
                    out.volume.values[k],
                )
            })
            .collect()
    }

    #[test]
    fn whole_covered_buckets_only_exact_values() {
        // 1m bars 00:00..02:29 with a missing minute at 01:10; covered 00:00..02:30.
        let times: Vec<i64> = (0..150).filter(|&m| m != 70).map(|m| m * MIN).collect();
        let text = |f: &dyn Fn(i64) -> String| -> Column {
            let t: Vec<String> = times.iter().map(|&t| f(t / MIN)).collect();
            Column::parse_texts(&t).expect("column")
        };
        let bars = BarSeries {
            symbol: "X".into(),
            source: PathBuf::from("t"),
            time: BarColumn::from_vec(times.clone()),
            open: text(&|m| format!("{}.10", 100 + m)),
            high: text(&|m| format!("{}.50", 100 + m)),
            low: text(&|m| format!("{}.05", 100 + m)),
            close: text(&|m| format!("{}.20", 100 + m)),
            volume: text(&|m| format!("0.{:03}", m + 1)),
        };
        let hour = target("1h", SessionCalendar::UTC);
        let out = aggregate(&bars, MIN, &hour, 60 * MIN, &[(0, 150 * MIN)]).expect("aggregate");
        assert_eq!(out.len(), 2, "02:00..03:00 is not covered whole");
        assert_eq!(out.time[1], 60 * MIN);
        assert_eq!(out.open.exact.get(1).to_string(), "160.10");
        assert_eq!(out.high.exact.get(1).to_string(), "219.50");
        assert_eq!(out.low.exact.get(1).to_string(), "160.05");
        assert_eq!(out.close.exact.get(1).to_string(), "219.20");
        // minutes 61..120 without 71: sum of 61..=120 minus 71, in thousandths
        let want: i64 = (61..=120).sum::<i64>() - 71;
        assert_eq!(out.volume.exact.get(1), Decimal::new(want, 3));
    }

    /// Every minute from `from` for `days` days.
    fn minutes(from: &str, days: i64) -> Vec<i64> {
        let first = parse_timestamp(from).unwrap();
        (0..days * 1440).map(|m| first + m * MIN).collect()
    }

    #[test]
    fn new_york_session_bars_move_with_the_clock_change() {
        // Every minute of Friday 8 to Tuesday 12 March 2024 (UTC): New York springs forward
        // early on Sunday the 10th. (The calendar has sessions every day; weekends are simply
        // days without bars in real data.)
        let bars = series(&minutes("2024-03-08T00:00:00Z", 5), |i| {
            10_000 + i as i64 % 500
        });
        let ny = calendar("America/New_York", Some(("09:30", "16:00")));
        let hours = stored(&bars, MIN, &target("1h", ny)).unwrap();
        let days = stored(&bars, MIN, &target("1d", ny)).unwrap();
        // Seven hourly bars a day, the last a half hour.
        assert_eq!(hours.len(), 35);
        let ts = |t: &str| parse_timestamp(t).unwrap();
        assert_eq!(hours.time[0], ts("2024-03-08T14:30:00Z"));
        assert_eq!(hours.time[6], ts("2024-03-08T20:30:00Z"));
        assert_eq!(hours.time[7], ts("2024-03-09T14:30:00Z"));
        assert_eq!(hours.time[14], ts("2024-03-10T13:30:00Z"));
        assert_eq!(hours.time[20], ts("2024-03-10T19:30:00Z"));
        let want: Vec<i64> = [
            "2024-03-08T14:30:00Z",
            "2024-03-09T14:30:00Z",
            "2024-03-10T13:30:00Z",
            "2024-03-11T13:30:00Z",
            "2024-03-12T13:30:00Z",
        ]
        .iter()
        .map(|t| ts(t))
        .collect();
        assert_eq!(days.time.to_vec(), want);
        // The Sunday day bar: that session's minutes, exactly.
        let sunday = ts("2024-03-10T13:30:00Z");
        let inside: Vec<usize> = (0..bars.len())
            .filter(|&i| bars.time[i] >= sunday && bars.time[i] < sunday + 390 * MIN)
            .collect();
        let volume: Decimal = inside.iter().map(|&i| bars.volume.exact.get(i)).sum();
        assert_eq!(days.volume.exact.get(2), volume);
        assert_eq!(days.open.exact.get(2), bars.open.exact.get(inside[0]));
        assert_eq!(
            days.close.exact.get(2),
            bars.close.exact.get(*inside.last().unwrap())
        );
        let high = inside
            .iter()
            .map(|&i| bars.high.exact.get(i))
            .max()
            .unwrap();
        assert_eq!(days.high.exact.get(2), high);
    }

    #[test]
    fn a_bucket_longer_than_the_timeframe_is_refused() {
        // Berlin falls back on Sunday 27 October 2024: that local day lasts 25 hours.
        let bars = series(&minutes("2024-10-25T00:00:00Z", 4), |i| {
            10_000 + i as i64 % 300
        });
        let berlin = calendar("Europe/Berlin", None);
        for label in ["1d", "1h", "4h"] {
            let error = stored(&bars, MIN, &target(label, berlin))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is longer than"), "{label}: {error}");
            assert!(
                error.contains("2024-10-26T22:00:00Z") || label != "1d",
                "{error}"
            );
        }
        // A session that leaves out the night keeps every day within a day.
        let xetra = calendar("Europe/Berlin", Some(("09:00", "17:30")));
        let days = stored(&bars, MIN, &target("1d", xetra)).unwrap();
        assert_eq!(days.len(), 4, "Friday to Monday");
        assert_eq!(
            days.time[0],
            parse_timestamp("2024-10-25T07:00:00Z").unwrap()
        );
        assert_eq!(
            days.time[3],
            parse_timestamp("2024-10-28T08:00:00Z").unwrap()
        );
    }

    #[test]
    fn bars_across_a_bucket_edge_are_refused() {
        // Hourly bars on the UTC hour; Kolkata's hours start at half past.
        let hours: Vec<i64> = (0..72)
            .map(|h| 1_700_000_000 / 3600 * 3600 * 1_000_000_000 + h * 60 * MIN)
            .collect();
        let bars = series(&hours, |i| 10_000 + i as i64);
        let error = stored(
            &bars,
            60 * MIN,
            &target("4h", calendar("Asia/Kolkata", None)),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("reaches across"), "{error}");
        // A session opening between two base bars: the bar before the open runs into it.
        let error = stored(
            &bars,
            60 * MIN,
            &target("1d", calendar("UTC", Some(("09:30", "16:00")))),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("reaches across"), "{error}");
        assert!(stored(&bars, 60 * MIN, &target("1d", calendar("Asia/Tokyo", None))).is_ok());
    }

    #[test]
    fn the_target_must_be_a_stored_multiple() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(dir.path()).unwrap();
        let bars = series(&minutes("2024-01-02T00:00:00Z", 1), |i| 10_000 + i as i64);
        let dataset = cat
            .import("file", "1m", MIN, &bars, "test")
            .unwrap()
            .dataset;
        let utc = SessionCalendar::UTC;
        for (label, want) in [
            ("90s", "is not a multiple"),
            ("1m", "is not a multiple"),
            ("1w", "weeks and months cannot be stored"),
        ] {
            let error = resample(&mut cat, &dataset, &target(label, utc)).unwrap_err();
            assert!(error.to_string().contains(want), "{label}: {error}");
        }
        let ny = calendar("America/New_York", Some(("09:30", "16:00")));
        resample(&mut cat, &dataset, &target("1h", ny)).unwrap();
        let error = resample(&mut cat, &dataset, &target("1h", utc)).unwrap_err();
        assert!(error.to_string().contains("would mix"), "{error}");
        // The same calendar again updates it.
        resample(&mut cat, &dataset, &target("1h", ny)).unwrap();
    }

    /// Clock changes of 2024: New York's spring-forward and fall-back Sundays, Berlin's.
    const CHANGES: [&str; 4] = [
        "2024-03-10T00:00:00Z",
        "2024-11-03T00:00:00Z",
        "2024-03-31T00:00:00Z",
        "2024-10-27T00:00:00Z",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Oracle: over a clock change, the stored resample is exactly the engine's
        /// higher-timeframe bars of a run with the same calendar, less the buckets the data
        /// does not cover whole; or it is refused because a bucket is longer than the
        /// timeframe, and the engine has such a bucket.
        #[test]
        fn stored_resample_equals_the_engines_bars(
            change in 0usize..4,
            zone in 0usize..3,
            session in 0usize..4,
            frame in 0usize..5,
            five in any::<bool>(),
            days_before in 0i64..3,
            hour_offset in 0i64..24,
            length_hours in 30i64..120,
            holes in prop::collection::vec(0usize..100_000, 0..30),
        ) {
            const ZONES: [&str; 3] = ["America/New_York", "Europe/Berlin", "UTC"];
            const SESSIONS: [Option<(&str, &str)>; 4] = [
                None,
                Some(("09:30", "16:00")),
                Some(("18:00", "17:00")),
                Some(("08:00", "22:00")),
            ];
            // `2d` with a session holds bars outside it between its sessions.
            const FRAMES: [&str; 5] = ["1h", "4h", "1d", "15m", "2d"];
            let interval = if five { 5 * MIN } else { MIN };
            let first = parse_timestamp(CHANGES[change]).unwrap()
                - days_before * 1440 * MIN + hour_offset * 60 * MIN;
            let mut times: Vec<i64> =
                (0..length_hours * 60 * MIN / interval).map(|k| first + k * interval).collect();
            for h in holes {
                if times.len() > 2 {
                    let at = 1 + h % (times.len() - 2);
                    times.remove(at);
                }
            }
            let bars = series(&times, |i| 20_000 + ((i * 37) % 997) as i64);
            let cal = calendar(ZONES[zone], SESSIONS[session]);
            let t = target(FRAMES[frame], cal);
            let Timeframe::Fixed { nanos: to_ns, .. } = t.timeframe else { unreachable!() };
            let covered = (times[0], *times.last().unwrap() + interval);
            let want: Vec<_> = engine_bars(&bars, interval, &t)
                .into_iter()
                .filter(|&((start, ..), end)| covered.0 <= start && end <= covered.1)
                .collect();
            match aggregate(&bars, interval, &t, to_ns, &[covered]) {
                Ok(out) => {
                    prop_assert!(want.iter().all(|&((start, ..), end)| end - start <= to_ns));
                    let want: Vec<_> = want.into_iter().map(|(row, _)| row).collect();
                    prop_assert_eq!(rows(&out), want);
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.contains("is longer than"), "{}", message);
                    prop_assert!(want.iter().any(|&((start, ..), end)| end - start > to_ns));
                }
            }
        }
    }
}
