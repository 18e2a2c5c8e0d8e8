//! Back-adjusted prices (`rustybt run --adjust split|all`, data issue §5): the catalog keeps
//! bars raw and splits and dividends as events; on request a run gets series in which every
//! bar before an event is scaled so the series has no jump at it, and the events it folded in
//! are not applied to the books again.
//!
//! - `split`: before a split of `new` for `old` shares, prices are multiplied by `old/new` and
//!   volumes by `new/old`. Dividends stay events, their cash per share scaled by the splits
//!   after them (a share before the split is `new/old` shares of the adjusted series).
//! - `all`: splits as above, and before each dividend's ex-date prices are multiplied by
//!   `1 − dividend / close`, the close of the last bar before the ex-date (the usual
//!   total-return adjustment); no event is left to apply.
//!
//! Adjusted prices embed events announced after the bars they change (later knowledge in past
//! prices), which is why the raw series is the default. Values are exact decimals rounded
//! (half to even) to the column's decimal places plus [`EXTRA_DIGITS`] (at most
//! [`MAX_SCALE`]); the f64 columns are parsed from the same rounded text, as for any file.

use rust_decimal::{Decimal, RoundingStrategy};

use super::actions::{ActionKind, CorporateAction};
use crate::data::{BarSeries, Column};

/// Decimal places an adjusted value keeps beyond its column's.
pub const EXTRA_DIGITS: u32 = 6;
/// Most decimal places of an adjusted column.
pub const MAX_SCALE: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjust {
    Split,
    All,
}

impl Adjust {
    pub fn parse(text: &str) -> Result<Adjust, String> {
        match text {
            "split" => Ok(Adjust::Split),
            "all" => Ok(Adjust::All),
            other => Err(format!(
                "`{other}` is not an adjustment: use `split` (splits) or `all` (splits and dividends)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Adjust::Split => "split",
            Adjust::All => "all",
        }
    }
}

/// What an adjustment gives a run: the series, and the events still to apply (by symbol).
#[derive(Debug)]
pub struct Adjusted {
    pub series: Vec<BarSeries>,
    pub actions: Vec<(String, CorporateAction)>,
}

/// The series of `series` adjusted for their symbols' `actions` (see the module documentation).
pub fn adjust(
    series: Vec<BarSeries>,
    actions: Vec<(String, CorporateAction)>,
    mode: Adjust,
) -> Result<Adjusted, String> {
    let mut remaining = Vec::new();
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let mut events: Vec<&CorporateAction> = actions
            .iter()
            .filter(|(symbol, _)| *symbol == s.symbol)
            .map(|(_, a)| a)
            .collect();
        events.sort_by_key(|a| a.time);
        let (factors, kept) = factors(&s, &events, mode)?;
        remaining.extend(kept.into_iter().map(|a| (s.symbol.clone(), a)));
        out.push(apply(&s, &factors)?);
    }
    Ok(Adjusted {
        series: out,
        actions: remaining,
    })
}

/// Per bar, the (price, volume) multipliers: the product of the factors of every event after
/// it. Also the events left to apply to the books (dividends under `split`, rescaled).
/// Per bar (price, volume) multipliers, and the events left for the books.
type Factors = (Vec<(Decimal, Decimal)>, Vec<CorporateAction>);

fn factors(s: &BarSeries, events: &[&CorporateAction], mode: Adjust) -> Result<Factors, String> {
    let n = s.len();
    let mut out = vec![(Decimal::ONE, Decimal::ONE); n];
    let mut kept = Vec::new();
    let (mut price, mut volume) = (Decimal::ONE, Decimal::ONE);
    // Walk back from the newest event; `end` is the first bar at or after the event.
    let mut end = n;
    for event in events.iter().rev() {
        let first = s.time.partition_point(|&t| t < event.time);
        for factor in &mut out[first..end] {
            *factor = (price, volume);
        }
        end = first;
        match &event.kind {
            ActionKind::Split {
                new_shares,
                old_shares,
            } => {
                price = checked(price.checked_mul(*old_shares / *new_shares))?;
                volume = checked(volume.checked_mul(*new_shares / *old_shares))?;
            }
            ActionKind::Dividend { per_share } => match mode {
                Adjust::Split => {
                    // `price` is the product of the later splits' old/new.
                    let per_share = checked(per_share.checked_mul(price))?;
                    kept.push(CorporateAction {
                        time: event.time,
                        kind: ActionKind::Dividend { per_share },
                        text: per_share.normalize().to_string(),
                    });
                }
                Adjust::All => {
                    let Some(before) = first.checked_sub(1) else {
                        continue; // no bar before it: nothing to adjust
                    };
                    let close = s.close.exact.get(before);
                    if *per_share >= close {
                        return Err(format!(
                            "{}: the dividend {} on {} is not below the close before it ({close}); \
                             it cannot be folded into the prices (run without --adjust all)",
                            s.symbol,
                            event.text,
                            crate::model::format_timestamp(event.time)
                        ));
                    }
                    price = checked(price.checked_mul(Decimal::ONE - *per_share / close))?;
                }
            },
        }
    }
    for factor in &mut out[..end] {
        *factor = (price, volume);
    }
    kept.reverse();
    Ok((out, kept))
}

fn checked(value: Option<Decimal>) -> Result<Decimal, String> {
    value.ok_or_else(|| "the adjustment factors overflow a decimal".to_string())
}

/// The series with each bar's prices and volume multiplied by its factors and rounded.
fn apply(s: &BarSeries, factors: &[(Decimal, Decimal)]) -> Result<BarSeries, String> {
    if factors.iter().all(|&f| f == (Decimal::ONE, Decimal::ONE)) {
        return Ok(s.clone());
    }
    let scale = |c: &Column| (c.exact.scale() + EXTRA_DIGITS).min(MAX_SCALE);
    let price_scale = [&s.open, &s.high, &s.low, &s.close]
        .iter()
        .map(|c| scale(c))
        .max()
        .unwrap_or(EXTRA_DIGITS);
    let volume_scale = scale(&s.volume);
    let round = |value: Decimal, factor: Decimal, dp: u32| -> Result<String, String> {
        let product = checked(value.checked_mul(factor))?;
        Ok(product
            .round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven)
            .normalize()
            .to_string())
    };
    let mut out = BarSeries::empty(s.symbol.clone(), s.source.clone());
    for (i, &(price, volume)) in factors.iter().enumerate() {
        let texts = [
            round(s.open.exact.get(i), price, price_scale)?,
            round(s.high.exact.get(i), price, price_scale)?,
            round(s.low.exact.get(i), price, price_scale)?,
            round(s.close.exact.get(i), price, price_scale)?,
            round(s.volume.exact.get(i), volume, volume_scale)?,
        ];
        out.append(s.time[i], texts.each_ref().map(String::as_str))
            .map_err(|e| format!("{}: adjusted bar {}: {e}", s.symbol, i + 1))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn series(closes: &[&str]) -> BarSeries {
        let mut s = BarSeries::empty("X", "x.csv");
        for (i, c) in closes.iter().enumerate() {
            s.append(i as i64 * 10, [c, c, c, c, "100"]).unwrap();
        }
        s
    }

    fn action(time: i64, kind: &str, value: &str) -> (String, CorporateAction) {
        (
            "X".into(),
            CorporateAction::parse(time, kind, value).unwrap(),
        )
    }

    fn closes(s: &BarSeries) -> Vec<Decimal> {
        s.close.exact.iter().map(|d| d.normalize()).collect()
    }

    #[test]
    fn a_split_scales_the_bars_before_it_and_leaves_no_event() {
        let s = series(&["400", "402", "101", "102"]);
        let adjusted = adjust(vec![s], vec![action(20, "split", "4")], Adjust::Split).unwrap();
        assert_eq!(
            closes(&adjusted.series[0]),
            [dec!(100), dec!(100.5), dec!(101), dec!(102)]
        );
        let volumes: Vec<Decimal> = adjusted.series[0].volume.exact.iter().collect();
        assert_eq!(volumes, [dec!(400), dec!(400), dec!(100), dec!(100)]);
        assert!(adjusted.actions.is_empty());
        // The f64 column comes from the same text.
        assert_eq!(adjusted.series[0].close.values[1], 100.5);
    }

    #[test]
    fn under_split_a_dividend_stays_an_event_scaled_by_the_later_splits() {
        let s = series(&["300", "301", "302", "101", "102"]);
        let events = vec![
            action(10, "dividend", "0.75"),
            action(30, "split", "3"),
            action(40, "dividend", "0.24"),
        ];
        let adjusted = adjust(vec![s], events, Adjust::Split).unwrap();
        let kept: Vec<(i64, String)> = adjusted
            .actions
            .iter()
            .map(|(_, a)| (a.time, a.text.clone()))
            .collect();
        assert_eq!(kept, [(10, "0.25".to_string()), (40, "0.24".to_string())]);
        // 301 / 3, rounded half to even at 0 + 6 places.
        assert_eq!(closes(&adjusted.series[0])[1], dec!(100.333333));
    }

    #[test]
    fn all_folds_dividends_into_the_prices_by_the_close_before_them() {
        let s = series(&["100", "100", "50"]);
        let events = vec![action(10, "dividend", "2"), action(20, "split", "2")];
        let adjusted = adjust(vec![s], events, Adjust::All).unwrap();
        // Bar 0: × (1 − 2/100) × 1/2 = 49; bar 1: × 1/2 = 50; bar 2: as is.
        assert_eq!(closes(&adjusted.series[0]), [dec!(49), dec!(50), dec!(50)]);
        assert!(adjusted.actions.is_empty());
    }

    #[test]
    fn a_dividend_not_below_the_close_before_it_is_refused() {
        let s = series(&["1", "1"]);
        let err = adjust(vec![s], vec![action(10, "dividend", "1")], Adjust::All).unwrap_err();
        assert!(err.contains("not below the close before it"), "{err}");
    }

    #[test]
    fn a_series_without_events_is_unchanged() {
        let s = series(&["1.5", "2.25"]);
        let adjusted = adjust(vec![s], Vec::new(), Adjust::All).unwrap();
        assert_eq!(closes(&adjusted.series[0]), [dec!(1.5), dec!(2.25)]);
        assert_eq!(adjusted.series[0].close.exact.scale(), 2);
    }
}
