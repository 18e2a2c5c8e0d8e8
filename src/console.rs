//! Terminal output that never stops a run.
//!
//! `println!` panics when the reader of a pipe has gone (`rustybt run ... | head -5`), the
//! panic message then fails the same way and the process aborts, losing the results. The
//! macros here write a line and ignore failures; on a broken pipe they also point the stream
//! at `/dev/null`, so every later write to it (Rust's or the embedded Python's) succeeds
//! silently and the run goes on to write its results and return its own exit code.

use std::io::Write;

/// A line on stdout (data: the summary, reports). Never panics.
#[macro_export]
macro_rules! outln {
    () => { $crate::console::out_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::console::out_line(format_args!($($arg)*)) };
}

/// A line on stderr (diagnostics: logs, warnings, errors). Never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::console::err_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::console::err_line(format_args!($($arg)*)) };
}

#[doc(hidden)]
pub fn out_line(args: std::fmt::Arguments<'_>) {
    write_line(&mut std::io::stdout().lock(), libc::STDOUT_FILENO, args);
}

#[doc(hidden)]
pub fn err_line(args: std::fmt::Arguments<'_>) {
    write_line(&mut std::io::stderr().lock(), libc::STDERR_FILENO, args);
}

fn write_line(stream: &mut impl Write, fd: libc::c_int, args: std::fmt::Arguments<'_>) {
    let written = stream
        .write_fmt(args)
        .and_then(|()| stream.write_all(b"\n"))
        .and_then(|()| stream.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        discard(fd);
    }
}

/// Points `fd` at `/dev/null`: its reader is gone, and what would have gone there is dropped.
pub fn discard(fd: libc::c_int) {
    // SAFETY: open/dup2/close on a descriptor number; no memory is shared with Rust. The
    // descriptor stays open (now on /dev/null), so std's handle to it remains valid.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, fd);
            libc::close(null);
        }
    }
}

/// Severity of an algorithm's log line; lines below the run's level are not echoed to the
/// terminal (`log.txt` keeps every line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    #[default]
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    /// `debug`, `info`, `warning` (or `warn`), `error`; any case.
    pub fn parse(text: &str) -> Option<LogLevel> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warning" | "warn" => Some(LogLevel::Warning),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    /// `DEBUG`, `INFO`, `WARNING`, `ERROR`: as the log lines spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_order_by_severity() {
        assert_eq!(LogLevel::parse("WARN"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::parse(" Info "), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("verbose"), None);
        assert!(LogLevel::Debug < LogLevel::Info && LogLevel::Warning < LogLevel::Error);
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
        ] {
            assert_eq!(LogLevel::parse(level.as_str()), Some(level));
        }
    }
}
