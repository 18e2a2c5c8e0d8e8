//! `rustybt data resample`: a dataset of a higher timeframe built from a stored one and stored
//! beside it. Buckets are aligned to the UTC epoch (`1h` bars open on the hour, `1d` bars at
//! 00:00 UTC); a bucket is built only if the source dataset covers it whole, so a partly known
//! bucket (the end of the data, a span never fetched) never becomes a bar. Values are exact:
//! open of the first bar, close of the last, highest high, lowest low, summed volume.

use rust_decimal::Decimal;

use super::{Catalog, CatalogError, DatasetInfo, ImportReport};
use crate::data::BarSeries;

/// Builds and stores `dataset` at `to_ns` (a multiple of its interval) as timeframe `to_label`.
pub fn resample(
    catalog: &mut Catalog,
    dataset: &DatasetInfo,
    to_label: &str,
    to_ns: i64,
) -> Result<ImportReport, CatalogError> {
    if to_ns <= dataset.interval_ns || to_ns % dataset.interval_ns != 0 {
        return Err(CatalogError::Invalid(format!(
            "`{to_label}` is not a multiple of {}'s timeframe `{}`: resampling builds higher timeframes from whole bars",
            dataset.symbol, dataset.timeframe
        )));
    }
    let bars = catalog.load(dataset, None, None)?;
    let out = aggregate(&bars, to_ns, &dataset.intervals)?;
    if out.is_empty() {
        return Err(CatalogError::Invalid(format!(
            "{} covers no whole `{to_label}` bar",
            dataset.label()
        )));
    }
    let origin = format!("resampled from {}", dataset.label());
    catalog.import(&dataset.source, to_label, to_ns, &out, &origin)
}

/// The bars of `bars` aggregated into buckets of `to_ns`, keeping only buckets that lie whole
/// inside one of the `covered` intervals.
fn aggregate(
    bars: &BarSeries,
    to_ns: i64,
    covered: &[(i64, i64)],
) -> Result<BarSeries, CatalogError> {
    let mut out = BarSeries::empty(bars.symbol.clone(), bars.source.clone());
    let mut i = 0;
    while i < bars.len() {
        let start = bars.time[i].div_euclid(to_ns) * to_ns;
        let end = start + to_ns;
        let mut j = i;
        let (mut high, mut low, mut volume) =
            (bars.high.exact.get(i), bars.low.exact.get(i), Decimal::ZERO);
        while j < bars.len() && bars.time[j] < end {
            high = high.max(bars.high.exact.get(j));
            low = low.min(bars.low.exact.get(j));
            volume = volume
                .checked_add(bars.volume.exact.get(j))
                .ok_or_else(|| {
                    CatalogError::Invalid(format!("{}: volume overflows", bars.symbol))
                })?;
            j += 1;
        }
        if covered.iter().any(|&(s, e)| s <= start && end <= e) {
            let texts = [
                bars.open.exact.get(i).to_string(),
                high.to_string(),
                low.to_string(),
                bars.close.exact.get(j - 1).to_string(),
                volume.to_string(),
            ];
            out.append(start, std::array::from_fn(|k| texts[k].as_str()))
                .map_err(CatalogError::Invalid)?;
        }
        i = j;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Column;
    use crate::market::BarColumn;
    use std::path::PathBuf;

    const MIN: i64 = 60_000_000_000;

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
        let out = aggregate(&bars, 60 * MIN, &[(0, 150 * MIN)]).expect("aggregate");
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
}
