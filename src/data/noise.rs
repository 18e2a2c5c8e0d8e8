//! Price noise for Monte Carlo reruns: the same bars with every price moved a little, seeded,
//! each bar kept valid. The model is `rustybt_api.study.montecarlo.noisy_ohlc`'s: each price
//! times `exp(scale × z)` (z standard normal, one draw per price), then the high raised to the
//! largest and the low lowered to the smallest of the bar's four prices; prices stay at the
//! column's decimal places, so they remain exact decimals the engine reads like any other.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};

use super::{BarSeries, Column, DecimalColumn};
use crate::market::BarColumn;

/// A copy of `series` with noisy prices (volumes and times unchanged).
pub fn noisy(series: &BarSeries, scale: f64, seed: u64) -> BarSeries {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).expect("a standard normal is valid");
    let n = series.len();
    let scales = [
        series.open.exact.scale(),
        series.high.exact.scale(),
        series.low.exact.scale(),
        series.close.exact.scale(),
    ];
    // One common scale, so the four prices of a bar compare as integers.
    let common = *scales.iter().max().unwrap_or(&0);
    let lift = |m: i64, s: u32| m.saturating_mul(10_i64.pow(common - s));
    let mut out: [Vec<i64>; 4] = std::array::from_fn(|_| Vec::with_capacity(n));
    let columns = [&series.open, &series.high, &series.low, &series.close];
    for i in 0..n {
        let mut bar = [0_i64; 4];
        for (k, column) in columns.iter().enumerate() {
            let m = lift(column.exact.mantissas()[i], scales[k]) as f64;
            let moved = (m * (scale * normal.sample(&mut rng)).exp()).round();
            bar[k] = (moved as i64).max(1);
        }
        let (o, c) = (bar[0], bar[3]);
        let high = bar[1].max(o).max(c).max(bar[2]);
        let low = bar[2].min(o).min(c).min(bar[1]);
        for (k, v) in [o, high, low, c].into_iter().enumerate() {
            out[k].push(v);
        }
    }
    let column = |mantissas: Vec<i64>| {
        let values = mantissas
            .iter()
            // m / 10^s of two exactly representable numbers: correctly rounded, as parsing the
            // decimal text would give.
            .map(|&m| m as f64 / 10f64.powi(common as i32))
            .collect();
        Column {
            values: BarColumn::from_vec(values),
            exact: DecimalColumn::from_parts(mantissas, common)
                .expect("invariant: a column's own scale is valid"),
        }
    };
    let [open, high, low, close] = out;
    BarSeries {
        symbol: series.symbol.clone(),
        source: series.source.clone(),
        time: series.time.clone(),
        open: column(open),
        high: column(high),
        low: column(low),
        close: column(close),
        volume: series.volume.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series(rows: &[[&str; 4]]) -> BarSeries {
        let col =
            |k: usize| Column::parse_texts(&rows.iter().map(|r| r[k]).collect::<Vec<_>>()).unwrap();
        BarSeries {
            symbol: "X".into(),
            source: "x.csv".into(),
            time: BarColumn::from_vec((0..rows.len() as i64).map(|i| i * 60_000_000_000).collect()),
            open: col(0),
            high: col(1),
            low: col(2),
            close: col(3),
            volume: Column::parse_texts(&vec!["1"; rows.len()]).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn noisy_bars_stay_valid_exact_and_repeatable(
            bars in prop::collection::vec((1u32..100_000, 0u32..500, 0u32..500, 0u32..1000), 1..60),
            seed in 0u64..1000,
            scale in 0.0f64..0.2,
        ) {
            let texts: Vec<[String; 4]> = bars
                .iter()
                .map(|&(low, up, down, span)| {
                    let low = low as f64 / 100.0 + 0.01;
                    let high = low + span as f64 / 100.0;
                    let open = (low + up as f64 / 100.0).min(high);
                    let close = (low + down as f64 / 100.0).min(high);
                    [format!("{open:.2}"), format!("{high:.2}"), format!("{low:.2}"), format!("{close:.2}")]
                })
                .collect();
            let rows: Vec<[&str; 4]> = texts.iter().map(|r| [&*r[0], &*r[1], &*r[2], &*r[3]]).collect();
            let original = series(&rows);
            let noisy_once = noisy(&original, scale, seed);
            let again = noisy(&original, scale, seed);
            for i in 0..original.len() {
                let (o, h, l, c) = (
                    noisy_once.open.exact.get(i),
                    noisy_once.high.exact.get(i),
                    noisy_once.low.exact.get(i),
                    noisy_once.close.exact.get(i),
                );
                prop_assert!(l > rust_decimal::Decimal::ZERO);
                prop_assert!(l <= o && l <= c && o <= h && c <= h);
                // The float column is the decimal's correctly rounded value.
                prop_assert_eq!(noisy_once.close.values[i], c.to_string().parse::<f64>().unwrap());
                prop_assert_eq!(again.close.exact.get(i), c);
            }
            prop_assert_eq!(noisy_once.close.exact.scale(), 2);
        }
    }

    #[test]
    fn zero_noise_keeps_the_prices_and_a_seed_changes_them() {
        let original = series(&[
            ["10.00", "10.50", "9.90", "10.20"],
            ["10.20", "10.30", "10.00", "10.10"],
        ]);
        let same = noisy(&original, 0.0, 1);
        assert_eq!(same.close.exact.get(1), original.close.exact.get(1));
        let moved = noisy(&original, 0.01, 1);
        let other = noisy(&original, 0.01, 2);
        assert_ne!(
            (0..2).map(|i| moved.close.exact.get(i)).collect::<Vec<_>>(),
            (0..2).map(|i| other.close.exact.get(i)).collect::<Vec<_>>()
        );
    }
}
