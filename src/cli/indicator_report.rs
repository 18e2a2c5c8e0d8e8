//! Per-indicator cost at the end of a run: a table on stderr that names slow indicators, and
//! `indicators.csv` in the results.

use std::path::Path;

use crate::engine::IndicatorTiming;
use crate::error::Error;

/// A Python indicator is named slow past this mean per call...
const SLOW_MEAN_NS: f64 = 1_000_000.0;
/// ...or when it takes this share of the run's wall time.
const SLOW_SHARE: f64 = 0.10;

/// Why an indicator is slow, or None.
pub fn slow_reason(timing: &IndicatorTiming, wall_seconds: f64) -> Option<String> {
    if timing.calls == 0 {
        return None;
    }
    let share = timing.total_ns as f64 / 1e9 / wall_seconds.max(1e-9);
    if timing.mean_ns() > SLOW_MEAN_NS {
        Some(format!("{:.2} ms per call", timing.mean_ns() / 1e6))
    } else if share > SLOW_SHARE {
        Some(format!("{:.0}% of the run's time", share * 100.0))
    } else {
        None
    }
}

/// The table printed after a run (only when there are indicators).
pub fn print(timings: &[IndicatorTiming], wall_seconds: f64) {
    if timings.is_empty() {
        return;
    }
    errln!(
        "{:<44} {:>8} {:>10} {:>10} {:>11} {:>11}",
        "indicator",
        "kind",
        "calls",
        "total s",
        "mean µs",
        "max µs"
    );
    for t in timings {
        errln!(
            "{:<44} {:>8} {:>10} {:>10.3} {:>11.2} {:>11.1}",
            truncate(&t.label, 44),
            t.kind,
            t.calls,
            t.total_ns as f64 / 1e9,
            t.mean_ns() / 1e3,
            t.max_ns as f64 / 1e3
        );
    }
    for t in timings {
        if let Some(reason) = slow_reason(t, wall_seconds) {
            // More bars than calls means calculate() over windows; else the time is per bar.
            let hint = if t.kind == "python" && t.bars > t.calls {
                "; define update(self, bar), or set a smaller `window`"
            } else if t.kind == "python" {
                "; the time is spent in its own code, once per bar"
            } else {
                ""
            };
            errln!("slow indicator: {} ({reason}{hint})", t.label);
        }
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let kept: String = text.chars().take(width - 1).collect();
        format!("{kept}…")
    }
}

/// `indicators.csv`: one row per indicator with its calls and times.
pub fn write(path: &Path, timings: &[IndicatorTiming], wall_seconds: f64) -> Result<(), Error> {
    let io_error = |e: csv::Error| Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut writer = csv::Writer::from_path(path).map_err(io_error)?;
    writer
        .write_record([
            "indicator",
            "kind",
            "symbol",
            "timeframe",
            "calls",
            "bars",
            "total_ms",
            "mean_us",
            "max_us",
            "slow",
        ])
        .map_err(io_error)?;
    for t in timings {
        writer
            .write_record([
                t.label.clone(),
                t.kind.to_string(),
                t.symbol.clone(),
                t.timeframe.clone(),
                t.calls.to_string(),
                t.bars.to_string(),
                format!("{:.3}", t.total_ns as f64 / 1e6),
                format!("{:.3}", t.mean_ns() / 1e3),
                format!("{:.3}", t.max_ns as f64 / 1e3),
                slow_reason(t, wall_seconds).unwrap_or_default(),
            ])
            .map_err(io_error)?;
    }
    writer.flush().map_err(|e| io_error(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(calls: u64, total_ns: u128) -> IndicatorTiming {
        IndicatorTiming {
            label: "X on A".into(),
            kind: "python",
            calls,
            total_ns,
            ..Default::default()
        }
    }

    #[test]
    fn slow_means_a_long_call_or_a_large_share_of_the_run() {
        assert_eq!(slow_reason(&timing(0, 0), 1.0), None);
        assert_eq!(slow_reason(&timing(1000, 1_000_000), 1.0), None);
        assert_eq!(
            slow_reason(&timing(2, 5_000_000), 100.0).as_deref(),
            Some("2.50 ms per call")
        );
        assert_eq!(
            slow_reason(&timing(1_000_000, 500_000_000), 1.0).as_deref(),
            Some("50% of the run's time")
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
