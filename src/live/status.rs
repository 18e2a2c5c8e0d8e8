//! The live session's status line: one line at the bottom of the terminal, rewritten after
//! each bar, with every other line printed above it.
//!
//! It is an indicatif bar with only a message. Anything else written to the terminal while it
//! is shown must go through [`suspend`] (the [`above_status!`](crate::above_status) macro for
//! `eprintln!`), which clears the line, runs the write and draws it again, so a log line never
//! lands on the status line's row. It is drawn only when both stdout and stderr are terminals:
//! output redirected to a file or a pipe never holds it.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The status line being shown (at most one per process), for [`suspend`].
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `write` with the status line (if one is shown) cleared, then draws it again.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// `eprintln!` above the status line (see [`suspend`]).
#[macro_export]
macro_rules! above_status {
    ($($arg:tt)*) => {
        $crate::live::status::suspend(|| $crate::errln!($($arg)*))
    };
}

/// Whether a status line may be drawn: asked for, and both stdout and stderr are terminals.
pub fn wanted(enabled: bool) -> bool {
    enabled && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// The status line; shown from the first [`StatusLine::set`], cleared by [`StatusLine::clear`]
/// or when dropped.
pub struct StatusLine {
    bar: Option<ProgressBar>,
    enabled: bool,
}

impl StatusLine {
    /// A status line that draws only if `enabled` and [`wanted`].
    pub fn new(enabled: bool) -> Self {
        StatusLine {
            bar: None,
            enabled: wanted(enabled),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Shows `line` (drawing the status line if it is not shown yet).
    pub fn set(&mut self, line: String) {
        if !self.enabled {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
            bar
        });
        bar.set_message(line);
    }

    /// Removes the status line from the terminal (it comes back with the next `set`).
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
            *active = None;
            drop(active);
            bar.finish_and_clear();
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_status_line_draws_nothing_and_suspend_just_writes() {
        let mut status = StatusLine::new(false);
        assert!(!status.enabled());
        status.set("equity 1".into());
        assert!(ACTIVE.lock().unwrap().is_none());
        assert_eq!(suspend(|| 7), 7);
        assert!(!wanted(false));
    }
}
