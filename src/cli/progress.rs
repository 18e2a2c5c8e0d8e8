//! A progress bar that appears only on a terminal and only once a run has lasted a while.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const SHOW_AFTER: Duration = Duration::from_secs(2);

pub struct Progress {
    total_bars: u64,
    started: Instant,
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total_bars: u64, allowed: bool) -> Self {
        Progress {
            total_bars,
            started: Instant::now(),
            enabled: allowed && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    pub fn update(&mut self, bars_done: u64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() >= SHOW_AFTER {
            let bar = ProgressBar::new(self.total_bars).with_elapsed(self.started.elapsed());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} bars ({percent}%)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(bars_done);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
