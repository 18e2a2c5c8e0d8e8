//! Time is i64 nanoseconds since the Unix epoch, UTC, everywhere inside the engine.

use chrono::{DateTime, SecondsFormat};

/// Nanoseconds since 1970-01-01T00:00:00Z.
pub type TimestampNs = i64;

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
pub const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SECOND;

/// RFC 3339 in UTC with a `Z`, with fractional seconds only when there are any.
pub fn format_timestamp(ns: TimestampNs) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_and_fractional_seconds() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }
}
