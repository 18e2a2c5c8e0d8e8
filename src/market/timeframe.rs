//! Bar timeframes and their UTC buckets: `1s` … `1M`.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate};

use crate::model::TimestampNs;
use crate::model::time::{NANOS_PER_DAY, NANOS_PER_SECOND};

/// A bar length. Seconds to days are fixed lengths aligned to the Unix epoch (UTC midnight
/// for days); weeks start on Monday 00:00 UTC; months are calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timeframe {
    Fixed {
        nanos: i64,
        label_count: i64,
        unit: char,
    },
    Weeks(i64),
    Months(i64),
}

/// 1970-01-01 was a Thursday: Monday 1969-12-29 is the first week boundary before the epoch.
const FIRST_MONDAY_NS: i64 = -3 * NANOS_PER_DAY;

impl Timeframe {
    /// `30s`, `1m`, `5m`, `1h`, `4h`, `1d`, `1w`, `1M` (months are a capital `M`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let count: i64 = if number.is_empty() {
            1
        } else {
            number
                .parse()
                .map_err(|_| format!("`{text}` is not a timeframe"))?
        };
        if count <= 0 || count > 100_000 {
            return Err(format!(
                "timeframe `{text}` must have a count from 1 to 100000"
            ));
        }
        let fixed = |unit_ns: i64, unit: char| Timeframe::Fixed {
            nanos: count * unit_ns,
            label_count: count,
            unit,
        };
        match unit {
            "s" => Ok(fixed(NANOS_PER_SECOND, 's')),
            "m" | "min" => Ok(fixed(60 * NANOS_PER_SECOND, 'm')),
            "h" => Ok(fixed(3600 * NANOS_PER_SECOND, 'h')),
            "d" => Ok(fixed(NANOS_PER_DAY, 'd')),
            "w" => Ok(Timeframe::Weeks(count)),
            "M" | "mo" => Ok(Timeframe::Months(count)),
            _ => Err(format!(
                "`{text}` has an unknown unit; use s, m, h, d, w or M (month), e.g. 5m, 1h, 1d, 1M"
            )),
        }
    }

    /// Start of the bucket holding `t`.
    pub fn bucket_start(&self, t: TimestampNs) -> TimestampNs {
        match *self {
            Timeframe::Fixed { nanos, .. } => t.div_euclid(nanos) * nanos,
            Timeframe::Weeks(n) => {
                let week = 7 * NANOS_PER_DAY * n;
                FIRST_MONDAY_NS + (t - FIRST_MONDAY_NS).div_euclid(week) * week
            }
            Timeframe::Months(n) => {
                let date = DateTime::from_timestamp_nanos(t).date_naive();
                let index = date.year() as i64 * 12 + date.month0() as i64;
                month_start(index - index.rem_euclid(n))
            }
        }
    }

    /// The longest a bucket can last (a month: 31 days): how many base bars a warm-up needs
    /// per bar of this timeframe.
    pub fn max_nanos(&self) -> i64 {
        match *self {
            Timeframe::Fixed { nanos, .. } => nanos,
            Timeframe::Weeks(n) => 7 * NANOS_PER_DAY * n,
            Timeframe::Months(n) => 31 * NANOS_PER_DAY * n,
        }
    }

    /// End (exclusive) of the bucket starting at `start`.
    pub fn bucket_end(&self, start: TimestampNs) -> TimestampNs {
        match *self {
            Timeframe::Fixed { nanos, .. } => start + nanos,
            Timeframe::Weeks(n) => start + 7 * NANOS_PER_DAY * n,
            Timeframe::Months(n) => {
                let date = DateTime::from_timestamp_nanos(start).date_naive();
                month_start(date.year() as i64 * 12 + date.month0() as i64 + n)
            }
        }
    }
}

fn month_start(month_index: i64) -> TimestampNs {
    let year = month_index.div_euclid(12) as i32;
    let month = month_index.rem_euclid(12) as u32 + 1;
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_utc().timestamp_nanos_opt())
        .unwrap_or(i64::MAX)
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeframe::Fixed {
                label_count, unit, ..
            } => write!(f, "{label_count}{unit}"),
            Timeframe::Weeks(n) => write!(f, "{n}w"),
            Timeframe::Months(n) => write!(f, "{n}M"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_timestamp;

    fn ts(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn buckets_follow_the_calendar_in_utc() {
        let h4 = Timeframe::parse("4h").unwrap();
        assert_eq!(
            h4.bucket_start(ts("2024-01-01T05:59:00Z")),
            ts("2024-01-01T04:00:00Z")
        );
        assert_eq!(
            h4.bucket_end(ts("2024-01-01T04:00:00Z")),
            ts("2024-01-01T08:00:00Z")
        );
        let week = Timeframe::parse("1w").unwrap();
        // 2024-01-03 is a Wednesday; its week starts Monday 2024-01-01.
        assert_eq!(
            week.bucket_start(ts("2024-01-03T12:00:00Z")),
            ts("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            week.bucket_start(ts("2024-01-07T23:59:00Z")),
            ts("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            week.bucket_start(ts("2024-01-08T00:00:00Z")),
            ts("2024-01-08T00:00:00Z")
        );
        let month = Timeframe::parse("1M").unwrap();
        assert_eq!(
            month.bucket_start(ts("2024-02-29T23:00:00Z")),
            ts("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            month.bucket_end(ts("2024-02-01T00:00:00Z")),
            ts("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            month.bucket_end(ts("2024-12-01T00:00:00Z")),
            ts("2025-01-01T00:00:00Z")
        );
        let quarter = Timeframe::parse("3M").unwrap();
        assert_eq!(
            quarter.bucket_start(ts("2024-05-10T00:00:00Z")),
            ts("2024-04-01T00:00:00Z")
        );
        assert_eq!(Timeframe::parse("15m").unwrap().to_string(), "15m");
        assert!(Timeframe::parse("0m").is_err());
        assert!(Timeframe::parse("5y").is_err());
    }
}
