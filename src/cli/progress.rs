//! A progress bar that appears only on a terminal and only once a run has lasted a while.
//! With `RUSTYBT_PROGRESS=lines` (set by `rustybt_api.results.run`, which draws the bar in a
//! notebook) it prints `progress DONE TOTAL` lines on stderr instead, at most ten a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const SHOW_AFTER: Duration = Duration::from_secs(2);
const LINE_EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    template: &'static str,
    total_bars: u64,
    started: Instant,
    enabled: bool,
    bar: Option<ProgressBar>,
    /// `Some(last line's time)` in lines mode.
    lines: Option<Instant>,
}

impl Progress {
    pub fn new(total_bars: u64, allowed: bool) -> Self {
        let lines = allowed && std::env::var("RUSTYBT_PROGRESS").is_ok_and(|v| v == "lines");
        Progress {
            template: "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} bars ({percent}%)",
            total_bars,
            started: Instant::now(),
            enabled: allowed && !lines && std::io::stderr().is_terminal(),
            bar: None,
            lines: lines.then(|| Instant::now() - LINE_EVERY),
        }
    }

    /// A bar for `rustybt data fetch`: bars fetched of those the missing spans can hold, with
    /// the rate and the time left.
    pub fn for_fetch(total_bars: u64, allowed: bool) -> Self {
        Progress {
            template: "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} bars fetched ({per_sec}, {eta} left)",
            ..Progress::new(total_bars, allowed)
        }
    }

    pub fn update(&mut self, bars_done: u64) {
        if let Some(last) = &mut self.lines {
            if last.elapsed() >= LINE_EVERY {
                *last = Instant::now();
                eprintln!("progress {bars_done} {}", self.total_bars);
            }
            return;
        }
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() >= SHOW_AFTER {
            let bar = ProgressBar::new(self.total_bars).with_elapsed(self.started.elapsed());
            bar.set_style(
                ProgressStyle::with_template(self.template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(bars_done);
        }
    }

    pub fn finish(&mut self) {
        if self.lines.is_some() {
            eprintln!("progress {0} {0}", self.total_bars);
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
