//! Timestamp text → i64 UTC nanoseconds.
//!
//! A hand-written fast path handles the shape nearly every file uses
//! (`YYYY-MM-DD[T ]HH:MM:SS[.f+][Z|±HH:MM]`, or a bare date) without allocating; anything
//! else falls back to chrono's parsers.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Parses one timestamp into UTC nanoseconds since the Unix epoch.
///
/// Accepted forms (surrounding whitespace ignored):
/// - ISO 8601 / RFC 3339 with `Z` or a numeric offset: `2020-01-01T09:30:00Z`,
///   `2020-01-01T09:30:00-05:00`, `2020-01-01 09:30:00.250+0000`. Fractional seconds are kept
///   to the nanosecond; further digits are truncated.
/// - Without a zone, taken as UTC: `2020-01-01T09:30:00`, `2020-01-01 09:30:00`,
///   `2020-01-01 09:30`.
/// - A date alone, taken as midnight UTC: `2020-01-01`.
/// - An integer epoch (optional sign, digits only), its unit chosen by magnitude:
///   `|v| < 1e11` → seconds, `< 1e14` → milliseconds, `< 1e17` → microseconds, else
///   nanoseconds. Each boundary falls on 1973-03-03 in the next unit, so any epoch from then
///   to 2262 is read correctly whatever its unit; earlier ms/µs/ns epochs would be misread.
///   Note that `20200101` is an epoch (seconds), not a date.
///
/// The result must fit an `i64` of nanoseconds (years 1677 to 2262).
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    parse_bytes(text.as_bytes())
}

/// [`parse_timestamp`] on raw CSV bytes, so the fast path needs no UTF-8 check.
pub(crate) fn parse_bytes(text: &[u8]) -> Result<i64, String> {
    let b = text.trim_ascii();
    if b.is_empty() {
        return Err("empty value".to_owned());
    }
    if let Some(ns) = fast_iso(b) {
        return Ok(ns);
    }
    if let Some(v) = parse_int(b) {
        return v.and_then(epoch_to_ns);
    }
    let s =
        std::str::from_utf8(b).map_err(|_| format!("cannot parse {} as a timestamp", show(b)))?;
    slow_iso(s)
}

/// Converts an integer epoch to nanoseconds with the magnitude rule of [`parse_timestamp`].
pub(crate) fn epoch_to_ns(v: i64) -> Result<i64, String> {
    let a = v.unsigned_abs();
    let (factor, unit) = if a < 100_000_000_000 {
        (NANOS_PER_SEC, "seconds")
    } else if a < 100_000_000_000_000 {
        (1_000_000, "milliseconds")
    } else if a < 100_000_000_000_000_000 {
        (1_000, "microseconds")
    } else {
        (1, "nanoseconds")
    };
    v.checked_mul(factor)
        .ok_or_else(|| format!("epoch {v} (read as {unit}) is outside the years 1677 to 2262"))
}

/// `Some(Ok(v))` for `[+-]?digits`, `Some(Err)` if such a text overflows, `None` otherwise.
fn parse_int(b: &[u8]) -> Option<Result<i64, String>> {
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = i64::from(c - b'0');
        let next = v.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(d)
            } else {
                v.checked_add(d)
            }
        });
        match next {
            Some(n) => v = n,
            None => return Some(Err(format!("epoch {} does not fit in 64 bits", show(b)))),
        }
    }
    Some(Ok(v))
}

#[inline]
fn two_digits(b: &[u8], i: usize) -> Option<i64> {
    let hi = b.get(i)?.wrapping_sub(b'0');
    let lo = b.get(i + 1)?.wrapping_sub(b'0');
    (hi < 10 && lo < 10).then(|| i64::from(hi) * 10 + i64::from(lo))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common shapes, parsed by hand. `None` means "not this shape or not valid": the caller
/// then tries chrono, which also produces the error message.
fn fast_iso(b: &[u8]) -> Option<i64> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let month = two_digits(b, 5)?;
    let day = two_digits(b, 8)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * SECS_PER_DAY;
    let mut nanos: i64 = 0;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, m, s) = (two_digits(b, 11)?, two_digits(b, 14)?, two_digits(b, 17)?);
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            if n < 9 {
                nanos *= 10i64.pow((9 - n) as u32);
            }
        }
        match &b[i..] {
            [] | [b'Z' | b'z'] => {}
            [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
                let (oh, om) = (two_digits(rest, 0)?, two_digits(rest, 3)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = oh * 3600 + om * 60;
                // Local time = UTC + offset, so UTC = local - offset.
                secs += if *sign == b'+' { -offset } else { offset };
            }
            _ => return None,
        }
    }
    // Borrow a second before multiplying so the earliest representable instant does not
    // overflow on the way (the same trick as chrono's `timestamp_nanos_opt`).
    if secs < 0 && nanos > 0 {
        secs += 1;
        nanos -= NANOS_PER_SEC;
    }
    secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)
}

const WITH_ZONE: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M%z",
];
const WITHOUT_ZONE: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

fn slow_iso(s: &str) -> Result<i64, String> {
    let out_of_range = || format!("timestamp `{s}` is outside the years 1677 to 2262");
    let with_zone = DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| {
            WITH_ZONE
                .iter()
                .find_map(|f| DateTime::parse_from_str(s, f).ok())
        })
        .or_else(|| {
            // A trailing `Z` after a zone-less shape chrono's `%z` will not take (`09:30Z`).
            let bare = s.strip_suffix(['Z', 'z'])?;
            WITHOUT_ZONE
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(bare, f).ok())
                .map(|n| n.and_utc().fixed_offset())
        });
    if let Some(dt) = with_zone {
        return dt.timestamp_nanos_opt().ok_or_else(out_of_range);
    }
    let naive = WITHOUT_ZONE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        });
    match naive {
        Some(n) => n.and_utc().timestamp_nanos_opt().ok_or_else(out_of_range),
        None => Err(format!(
            "cannot parse {} as a timestamp (expected ISO 8601 such as \
             2020-01-01T09:30:00Z, 2020-01-01 09:30:00 or 2020-01-01, or an integer epoch)",
            show(s.as_bytes())
        )),
    }
}

fn show(b: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&b[..b.len().min(MAX)]);
    let dots = if b.len() > MAX { "..." } else { "" };
    format!("`{text}{dots}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_577_836_800_000_000_000; // 2020-01-01T00:00:00Z
    const H: i64 = 3_600_000_000_000;
    const M: i64 = 60_000_000_000;

    #[test]
    fn iso_formats() {
        let cases: &[(&str, i64)] = &[
            ("2020-01-01T00:00:00Z", T0),
            ("2020-01-01t00:00:00z", T0),
            ("2020-01-01T00:00:00+00:00", T0),
            ("2020-01-01T09:30:00-05:00", T0 + 14 * H + 30 * M),
            ("2020-01-01T09:30:00+05:30", T0 + 4 * H),
            ("2020-01-01T09:30:00.5Z", T0 + 9 * H + 30 * M + 500_000_000),
            ("2020-01-01T00:00:00.123456789Z", T0 + 123_456_789),
            ("2020-01-01T00:00:00.1234567891Z", T0 + 123_456_789),
            ("2020-01-01T00:00:00.000001-01:00", T0 + H + 1_000),
            ("2020-01-01T00:00:00", T0),
            ("2020-01-01 00:00:00", T0),
            ("2020-01-01 09:30:00.25", T0 + 9 * H + 30 * M + 250_000_000),
            ("2020-01-01 09:30:00+0000", T0 + 9 * H + 30 * M),
            ("2020-01-01 09:30:00-0500", T0 + 14 * H + 30 * M),
            ("2020-01-01T09:30", T0 + 9 * H + 30 * M),
            ("2020-01-01 09:30", T0 + 9 * H + 30 * M),
            ("2020-01-01T09:30Z", T0 + 9 * H + 30 * M),
            ("2020-01-01", T0),
            ("  2020-01-01  ", T0),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.5Z", -500_000_000),
            ("2000-02-29T00:00:00Z", 951_782_400 * NANOS_PER_SEC),
            ("2262-04-11T23:47:16.854775807Z", i64::MAX),
            ("1677-09-21T00:12:43.145224192Z", i64::MIN),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_timestamp(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn epoch_units_by_magnitude() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("1577836800", T0),
            ("+1577836800", T0),
            ("-86400", -86_400 * NANOS_PER_SEC),
            ("9000000000", 9_000_000_000 * NANOS_PER_SEC),
            ("1577836800000", T0),
            ("100000000000", 100_000_000_000 * 1_000_000),
            ("1577836800000000", T0),
            ("1577836800000000000", T0),
            ("-1577836800000", -T0),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_timestamp(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejected() {
        let cases: &[(&str, &str)] = &[
            ("", "empty value"),
            ("garbage", "cannot parse"),
            ("2020-13-01", "cannot parse"),
            ("2020-02-30", "cannot parse"),
            ("2019-02-29T00:00:00Z", "cannot parse"),
            ("2020-01-01T24:00:00Z", "cannot parse"),
            ("2020-01-01T00:00:00.Z", "cannot parse"),
            ("2020-01-01T00:00:00+25:00", "cannot parse"),
            ("2020-01-01X00:00:00", "cannot parse"),
            ("2020/01/01", "cannot parse"),
            ("1.5", "cannot parse"),
            ("9999999999", "outside the years"),
            ("99999999999999999999", "does not fit"),
            ("2300-01-01T00:00:00Z", "outside the years"),
            ("1600-01-01", "outside the years"),
        ];
        for &(text, want) in cases {
            let err = parse_timestamp(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for text in [
            "2020-01-01T00:00:00Z",
            "2024-02-29 23:59:59.999999999-11:30",
            "1999-12-31T12:00:00.1+14:00",
            "2021-07-04",
            "1970-01-01T00:00:00",
            "1800-03-01T00:00:00Z",
        ] {
            let fast = fast_iso(text.as_bytes()).expect(text);
            assert_eq!(Ok(fast), slow_iso(text), "{text}");
        }
    }

    proptest! {
        #[test]
        fn fast_path_matches_chrono_on_random_times(
            secs in -9_000_000_000i64..9_000_000_000, nanos in 0u32..1_000_000_000,
            off_min in -1439i32..=1439, sep in prop::sample::select(vec!['T', ' ']),
        ) {
            let offset = chrono::FixedOffset::east_opt(off_min * 60).ok_or_else(|| TestCaseError::fail("offset"))?;
            let dt = DateTime::from_timestamp(secs, nanos).ok_or_else(|| TestCaseError::fail("dt"))?.with_timezone(&offset);
            let text = dt.format(&format!("%Y-%m-%d{sep}%H:%M:%S%.9f%:z")).to_string();
            prop_assert_eq!(fast_iso(text.as_bytes()), dt.timestamp_nanos_opt());
            prop_assert_eq!(parse_timestamp(&text), Ok(secs * NANOS_PER_SEC + i64::from(nanos)));
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn garbage_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_bytes(&b);
        }
    }
}
