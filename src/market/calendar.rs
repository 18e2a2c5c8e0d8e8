//! Session calendars: the exchange time zone and trading hours that higher-timeframe buckets
//! follow. The default (UTC, open 00:00, no close) gives exactly the UTC buckets of
//! [`Timeframe::bucket_start`] and [`Timeframe::bucket_end`].
//!
//! Every boundary is a local wall-clock time, kept as local nanoseconds (nanoseconds since
//! 1970-01-01 00:00 on the local clock) and turned into an instant by
//! `SessionCalendar::instant`: a local time shown twice (clocks going back) is its first
//! instant, and a local time that never shows (clocks going forward) is the instant of the
//! jump. That mapping never goes backwards, so buckets cut at ascending local boundaries are
//! contiguous and never overlap; boundaries that land on the same instant make no bucket.
//!
//! The trading date of a session is the local date of its open, or the date of its close when
//! the session crosses midnight: a futures session from Sunday 18:00 to Monday 17:00 is
//! Monday's, so it starts Monday's day bar, the week and, on the 1st, the month.

use std::fmt;

use chrono::{
    DateTime, Datelike, MappedLocalTime, NaiveDate, NaiveTime, Offset, TimeZone, Timelike,
};
use chrono_tz::Tz;

use super::timeframe::Timeframe;
use crate::model::TimestampNs;
use crate::model::time::{NANOS_PER_DAY, NANOS_PER_SECOND};

const DAY: i64 = NANOS_PER_DAY;
/// Day number of 1970-01-01 counted from 0001-01-01 (chrono's `num_days_from_ce` is 1 there).
const EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// 1969-12-29, the Monday before the epoch, as a day index: weeks are counted from it.
const FIRST_MONDAY_DAY: i64 = -3;

/// Where higher-timeframe buckets start and end: a time zone, the local time the session
/// opens and, optionally, the local time it closes.
///
/// - `Nd`, `Nw` and `NM` buckets start at the session open of their first trading date
///   (`Nd` groups days from 1970-01-01; weeks start on Monday; `NM` groups calendar months from
///   January of year 0, so `3M` is a quarter). Without a close a bucket ends where the next
///   one starts; with a close it ends at the close of its last trading date.
/// - `Ns`, `Nm` and `Nh` buckets restart at every session open and are cut at the session end
///   (the close, or the next open): with 09:30–16:00, `1h` gives 09:30, 10:30, … 15:30–16:00.
///   The default calendar keeps them aligned to the Unix epoch, which is the same whenever the
///   length divides a day.
/// - With a close, a base bar that opens outside [open, close) belongs to no bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionCalendar {
    timezone: Tz,
    open: NaiveTime,
    close: Option<NaiveTime>,
    /// Local ns from the midnight that starts the trading date to the open; negative when the
    /// session crosses midnight (it opened the evening before).
    open_ns: i64,
    /// Session length in local wall-clock ns, in (0, 1 day]; a whole day without a close.
    length_ns: i64,
}

/// Where `t` falls: its bucket, if any, and the interval around `t` with that same answer.
/// `from <= t < to`; callers cache a slot and ask again only once a time leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub from: TimestampNs,
    pub to: TimestampNs,
    /// `(start, end)`, end exclusive; `None` outside the session.
    pub bucket: Option<(TimestampNs, TimestampNs)>,
}

/// One session, as cursors cache it: every time from `start` to `next_open` shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionSpan {
    /// Trading date, in days since 1970-01-01.
    day: i64,
    start: TimestampNs,
    /// The close, or `next_open` without one.
    end: TimestampNs,
    next_open: TimestampNs,
    /// Local minus UTC time in ns when it holds for the whole session.
    uniform_offset: Option<i64>,
}

fn utc_slot(timeframe: Timeframe, t: TimestampNs) -> Slot {
    let start = timeframe.bucket_start(t);
    let end = timeframe.bucket_end(start);
    Slot {
        from: start,
        to: end,
        bucket: Some((start, end)),
    }
}

/// Only at the ends of the i64 range (years 1677 and 2262) can saturated arithmetic break a
/// slot; such a time is then in no bucket rather than in a wrong one.
fn guarded(slot: Slot, t: TimestampNs) -> Slot {
    let valid = slot.from <= t
        && t < slot.to
        && slot.bucket.is_none_or(|(start, end)| start <= t && t < end);
    if valid {
        slot
    } else {
        Slot {
            from: t,
            to: t.saturating_add(1),
            bucket: None,
        }
    }
}

impl Default for SessionCalendar {
    fn default() -> Self {
        SessionCalendar::UTC
    }
}

impl SessionCalendar {
    /// UTC days from midnight, no close: the plain UTC buckets.
    pub const UTC: SessionCalendar = SessionCalendar {
        timezone: Tz::UTC,
        open: NaiveTime::MIN,
        close: None,
        open_ns: 0,
        length_ns: DAY,
    };

    /// A close at or before the open means the session crosses midnight (open 18:00, close
    /// 17:00 the next day); a close equal to the open is a 24-hour session that belongs to the
    /// day it closes on (FX: 17:00 to 17:00 New York). A close of 00:00 is the midnight that
    /// ends the day of the open.
    pub fn new(timezone: Tz, open: NaiveTime, close: Option<NaiveTime>) -> Self {
        let open_of_day = time_of_day_ns(open);
        // 00:00 to 00:00 is every whole day: the same as no close.
        let close = close.filter(|c| open_of_day != 0 || time_of_day_ns(*c) != 0);
        let (open_ns, length_ns) = match close.map(time_of_day_ns) {
            None => (open_of_day, DAY),
            Some(0) => (open_of_day, DAY - open_of_day),
            Some(c) if c > open_of_day => (open_of_day, c - open_of_day),
            Some(c) => (open_of_day - DAY, c + DAY - open_of_day),
        };
        SessionCalendar {
            timezone,
            open,
            close,
            open_ns,
            length_ns,
        }
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    pub fn open(&self) -> NaiveTime {
        self.open
    }

    pub fn close(&self) -> Option<NaiveTime> {
        self.close
    }

    /// Whether a session opens on the evening before its trading date.
    pub fn crosses_midnight(&self) -> bool {
        self.open_ns < 0
    }

    /// UTC, 00:00, no close: today's plain UTC buckets.
    pub fn is_utc_default(&self) -> bool {
        self.timezone == Tz::UTC && self.open_ns == 0 && self.length_ns == DAY
    }

    /// Whether some times are outside every session (a close is set and sessions are shorter
    /// than a day).
    pub fn has_gaps(&self) -> bool {
        self.length_ns < DAY
    }

    /// The bucket of `timeframe` holding `t` as `(start, end)`, end exclusive, or `None` when
    /// `t` is outside the session.
    pub fn bucket(
        &self,
        timeframe: Timeframe,
        t: TimestampNs,
    ) -> Option<(TimestampNs, TimestampNs)> {
        self.locate(timeframe, t).bucket
    }

    /// [`bucket`](Self::bucket) and how long that answer holds.
    pub fn locate(&self, timeframe: Timeframe, t: TimestampNs) -> Slot {
        if self.is_utc_default() {
            return utc_slot(timeframe, t);
        }
        self.locate_in_session(timeframe, t, &self.session_at(t))
    }

    /// The session that opened last at or before `t` (`t` may be after its end, in the gap
    /// before the next one).
    fn session_at(&self, t: TimestampNs) -> SessionSpan {
        let local = self.local(t);
        let mut day = local.saturating_sub(self.open_ns).div_euclid(DAY);
        let mut start = self.instant(self.open_local(day));
        let mut next_open = self.instant(self.open_local(day + 1));
        // The local date can be one off near a clock change (an open in the repeated hour);
        // the bound only guards the ends of the i64 range.
        for _ in 0..3 {
            if start > t {
                day -= 1;
                next_open = start;
                start = self.instant(self.open_local(day));
            } else if next_open <= t {
                day += 1;
                start = next_open;
                next_open = self.instant(self.open_local(day + 1));
            } else {
                break;
            }
        }
        let open_local = self.open_local(day);
        let close_local = open_local.saturating_add(self.length_ns);
        let end = if self.has_gaps() {
            self.instant(close_local)
        } else {
            next_open
        };
        // Open and close both where the local clock puts them, and the same offset from the
        // first to the last instant: a session is at most a day, so it holds no clock change.
        let offset = open_local.saturating_sub(start);
        let uniform = end > start
            && close_local.saturating_sub(end) == offset
            && self.local(start).saturating_sub(start) == offset
            && self.local(end - 1).saturating_sub(end - 1) == offset;
        SessionSpan {
            day,
            start,
            end,
            next_open,
            uniform_offset: uniform.then_some(offset),
        }
    }

    /// [`locate`](Self::locate) for a time of `session`, the session-aware computation for any
    /// calendar (the default one included, which the tests check against the UTC buckets).
    fn locate_in_session(
        &self,
        timeframe: Timeframe,
        t: TimestampNs,
        session: &SessionSpan,
    ) -> Slot {
        let day = session.day;
        let outside = |from: TimestampNs, to: TimestampNs| Slot {
            from,
            to,
            bucket: None,
        };
        if t >= session.end {
            return guarded(outside(session.end, session.next_open), t);
        }
        let (start, end) = match timeframe {
            Timeframe::Fixed {
                nanos, unit: 'd', ..
            } => {
                let n = (nanos / DAY).max(1);
                let first = day.div_euclid(n) * n;
                self.days(first, first + n - 1)
            }
            Timeframe::Fixed { nanos, .. } => {
                let (start, end) = self.intraday(session, nanos, t);
                return guarded(
                    Slot {
                        from: start,
                        to: end,
                        bucket: Some((start, end)),
                    },
                    t,
                );
            }
            Timeframe::Weeks(n) => {
                let period = 7 * n;
                let first = (day - FIRST_MONDAY_DAY).div_euclid(period) * period + FIRST_MONDAY_DAY;
                self.days(first, first + period - 1)
            }
            Timeframe::Months(n) => {
                let Some(date) = date_of_day(day) else {
                    return outside(t, t.saturating_add(1));
                };
                let index = i64::from(date.year()) * 12 + i64::from(date.month0());
                let first_month = index - index.rem_euclid(n);
                match (
                    month_first_day(first_month),
                    month_first_day(first_month + n),
                ) {
                    (Some(first), Some(next)) => self.days(first, next - 1),
                    _ => return outside(t, t.saturating_add(1)),
                }
            }
        };
        // With gaps between sessions, the answer holds only until this session ends.
        let (from, to) = if self.has_gaps() {
            (session.start, session.end)
        } else {
            (start, end)
        };
        guarded(
            Slot {
                from,
                to,
                bucket: Some((start, end)),
            },
            t,
        )
    }

    /// From the open of trading date `first` to the end of the session of `last`.
    fn days(&self, first: i64, last: i64) -> (TimestampNs, TimestampNs) {
        (
            self.instant(self.open_local(first)),
            self.instant(self.open_local(last).saturating_add(self.length_ns)),
        )
    }

    /// The `len`-long bucket of `session` holding `t`: boundaries every `len` of local time
    /// from the open, the last one cut at the session end.
    fn intraday(
        &self,
        session: &SessionSpan,
        len: i64,
        t: TimestampNs,
    ) -> (TimestampNs, TimestampNs) {
        let base = self.open_local(session.day);
        let count = (self.length_ns + len - 1) / len;
        if let Some(offset) = session.uniform_offset {
            // One offset all session: local time is UTC shifted, no time-zone lookups.
            let k = t
                .saturating_add(offset)
                .saturating_sub(base)
                .div_euclid(len)
                .clamp(0, count - 1);
            let start = session.start.saturating_add(k * len);
            let end = if k + 1 >= count {
                session.end
            } else {
                start.saturating_add(len)
            };
            return (start, end);
        }
        let boundary = |k: i64| match k {
            0 => session.start,
            k if k >= count => session.end,
            k => self.instant(base.saturating_add(k * len)),
        };
        // The local clock says which bucket, except near a clock change: then search the
        // monotone boundaries for the last one at or before `t`.
        let guess = self
            .local(t)
            .saturating_sub(base)
            .div_euclid(len)
            .clamp(0, count - 1);
        let (start, end) = (boundary(guess), boundary(guess + 1));
        if start <= t && t < end {
            return (start, end);
        }
        let (mut lo, mut hi) = if start <= t {
            (guess + 1, count)
        } else {
            (0, guess)
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if boundary(mid) <= t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (boundary(lo), boundary(hi))
    }

    /// Local ns of the open of trading date `day`.
    fn open_local(&self, day: i64) -> i64 {
        day.saturating_mul(DAY).saturating_add(self.open_ns)
    }

    /// Local wall-clock ns at instant `t`.
    fn local(&self, t: TimestampNs) -> i64 {
        let utc = DateTime::from_timestamp_nanos(t).naive_utc();
        let offset = self.timezone.offset_from_utc_datetime(&utc).fix();
        t.saturating_add(i64::from(offset.local_minus_utc()) * NANOS_PER_SECOND)
    }

    /// The first instant the local clock shows `local`, or, for a time skipped when clocks
    /// go forward, the instant of the jump.
    fn instant(&self, local: i64) -> TimestampNs {
        let naive = DateTime::from_timestamp_nanos(local).naive_utc();
        let seconds = match self.timezone.offset_from_local_datetime(&naive) {
            MappedLocalTime::Single(o) => o.fix().local_minus_utc(),
            // Shown twice: the larger offset is the earlier instant.
            MappedLocalTime::Ambiguous(a, b) => {
                a.fix().local_minus_utc().max(b.fix().local_minus_utc())
            }
            MappedLocalTime::None => return self.jump_into(local),
        };
        local.saturating_sub(i64::from(seconds) * NANOS_PER_SECOND)
    }

    /// The instant the clock jumps over `local`: the first second whose local time is past
    /// it. Offsets stay within ±16 hours, which bounds the search.
    fn jump_into(&self, local: i64) -> TimestampNs {
        const WINDOW: i64 = 26 * 3600;
        let second = local.div_euclid(NANOS_PER_SECOND);
        let (mut lo, mut hi) = (second - WINDOW, second + WINDOW);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.local(mid.saturating_mul(NANOS_PER_SECOND)) >= local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi.saturating_mul(NANOS_PER_SECOND)
    }
}

impl fmt::Display for SessionCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.timezone.name(), clock(self.open))?;
        if let Some(close) = self.close {
            write!(f, " to {}", clock(close))?;
            if self.crosses_midnight() {
                write!(f, " the next day")?;
            }
        }
        Ok(())
    }
}

fn clock(time: NaiveTime) -> String {
    let format = if time.second() == 0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    time.format(format).to_string()
}

/// Caches the slot of the last lookup, so a run of base bars in one bucket (or one gap between
/// sessions) costs a comparison each instead of time-zone arithmetic, and the session around
/// it, so the next bucket of the same session usually needs none either.
#[derive(Debug, Clone, Copy)]
pub struct BucketCursor {
    calendar: SessionCalendar,
    timeframe: Timeframe,
    slot: Option<Slot>,
    session: Option<SessionSpan>,
}

impl BucketCursor {
    pub fn new(calendar: SessionCalendar, timeframe: Timeframe) -> Self {
        BucketCursor {
            calendar,
            timeframe,
            slot: None,
            session: None,
        }
    }

    /// Same answer as [`SessionCalendar::bucket`].
    #[inline]
    pub fn bucket(&mut self, t: TimestampNs) -> Option<(TimestampNs, TimestampNs)> {
        match self.slot {
            Some(slot) if slot.from <= t && t < slot.to => slot.bucket,
            _ => self.relocate(t),
        }
    }

    fn relocate(&mut self, t: TimestampNs) -> Option<(TimestampNs, TimestampNs)> {
        let calendar = &self.calendar;
        let slot = if calendar.is_utc_default() {
            utc_slot(self.timeframe, t)
        } else {
            let session = match self.session {
                Some(s) if s.start <= t && t < s.next_open => s,
                _ => {
                    let s = calendar.session_at(t);
                    self.session = Some(s);
                    s
                }
            };
            calendar.locate_in_session(self.timeframe, t, &session)
        };
        self.slot = Some(slot);
        slot.bucket
    }
}

/// A time zone or time of day that does not parse: what is wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.hint)
    }
}

impl std::error::Error for ParseError {}

/// An IANA time zone name such as `America/New_York`, `Europe/London` or `UTC`.
pub fn parse_timezone(text: &str) -> Result<Tz, ParseError> {
    let name = text.trim();
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    // Suggest the name that differs only in case, spaces or underscores.
    let simplify = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != ' ')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = simplify(name);
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| simplify(tz.name()) == wanted)
        .map(|tz| format!("did you mean `{}`? ", tz.name()));
    let examples = "America/New_York, Europe/London, Asia/Tokyo or UTC";
    Err(ParseError {
        message: format!("`{text}` is not an IANA time zone"),
        hint: match suggestion {
            Some(question) => format!("{question}Names are like {examples}"),
            None => format!("use an IANA name such as {examples}"),
        },
    })
}

/// A local time of day, `HH:MM` or `HH:MM:SS` on the 24-hour clock.
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, ParseError> {
    let error = || ParseError {
        message: format!("`{text}` is not a time of day"),
        hint: "use HH:MM on the 24-hour clock, from 00:00 to 23:59, e.g. 09:30".into(),
    };
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(error());
    }
    let number = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<u32>());
    match (number(0), number(1), number(2)) {
        (Ok(h), Ok(m), Ok(s)) => NaiveTime::from_hms_opt(h, m, s).ok_or_else(error),
        _ => Err(error()),
    }
}

/// A calendar from the texts of its zone, open and close, each with the name it was given
/// under (`--timezone`, `market.timezone`), which an error starts with. Missing: UTC, 00:00,
/// no close.
pub fn calendar_from_texts(
    timezone: Option<(&str, &str)>,
    open: Option<(&str, &str)>,
    close: Option<(&str, &str)>,
) -> Result<SessionCalendar, ParseError> {
    let named = |source: &str, e: ParseError| ParseError {
        message: format!("{source}: {}", e.message),
        hint: e.hint,
    };
    let timezone = match timezone {
        Some((text, source)) => parse_timezone(text).map_err(|e| named(source, e))?,
        None => Tz::UTC,
    };
    let time = |picked: Option<(&str, &str)>| {
        picked
            .map(|(text, source)| parse_time_of_day(text).map_err(|e| named(source, e)))
            .transpose()
    };
    let open = time(open)?;
    let close = time(close)?;
    Ok(SessionCalendar::new(
        timezone,
        open.unwrap_or(NaiveTime::MIN),
        close,
    ))
}

fn time_of_day_ns(time: NaiveTime) -> i64 {
    // A leap second (nanosecond >= 1e9) counts as the last instant of its second.
    i64::from(time.num_seconds_from_midnight()) * NANOS_PER_SECOND
        + i64::from(time.nanosecond().min(999_999_999))
}

fn date_of_day(day: i64) -> Option<NaiveDate> {
    i32::try_from(day + EPOCH_DAYS_FROM_CE)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
}

/// Day index of the 1st of month `index` (year × 12 + month − 1).
fn month_first_day(index: i64) -> Option<i64> {
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = index.rem_euclid(12) as u32 + 1;
    NaiveDate::from_ymd_opt(year, month, 1)
        .map(|d| i64::from(d.num_days_from_ce()) - EPOCH_DAYS_FROM_CE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_timestamp;
    use proptest::prelude::*;

    fn ts(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn tf(text: &str) -> Timeframe {
        Timeframe::parse(text).unwrap()
    }

    fn calendar(zone: &str, open: &str, close: Option<&str>) -> SessionCalendar {
        SessionCalendar::new(
            parse_timezone(zone).unwrap(),
            parse_time_of_day(open).unwrap(),
            close.map(|c| parse_time_of_day(c).unwrap()),
        )
    }

    /// `(start, end)` of the bucket holding `at`, as timestamps.
    fn bucket(c: &SessionCalendar, timeframe: &str, at: &str) -> Option<(i64, i64)> {
        c.bucket(tf(timeframe), ts(at))
    }

    fn span(start: &str, end: &str) -> Option<(i64, i64)> {
        Some((ts(start), ts(end)))
    }

    #[test]
    fn constants_match_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(i64::from(epoch.num_days_from_ce()), EPOCH_DAYS_FROM_CE);
        assert_eq!(
            date_of_day(FIRST_MONDAY_DAY).unwrap().weekday(),
            chrono::Weekday::Mon
        );
    }

    #[test]
    fn new_york_regular_hours_hourly_and_daily() {
        let nyse = calendar("America/New_York", "09:30", Some("16:00"));
        // Winter (EST, UTC-5): 09:30 is 14:30Z.
        assert_eq!(
            bucket(&nyse, "1h", "2024-01-02T14:30:00Z"),
            span("2024-01-02T14:30:00Z", "2024-01-02T15:30:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1h", "2024-01-02T15:29:59Z"),
            span("2024-01-02T14:30:00Z", "2024-01-02T15:30:00Z")
        );
        // The last hour is cut at the 16:00 close.
        assert_eq!(
            bucket(&nyse, "1h", "2024-01-02T20:59:00Z"),
            span("2024-01-02T20:30:00Z", "2024-01-02T21:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "4h", "2024-01-02T20:00:00Z"),
            span("2024-01-02T18:30:00Z", "2024-01-02T21:00:00Z")
        );
        // Outside [09:30, 16:00): no bucket.
        assert_eq!(bucket(&nyse, "1h", "2024-01-02T21:00:00Z"), None);
        assert_eq!(bucket(&nyse, "1h", "2024-01-02T14:29:00Z"), None);
        assert_eq!(bucket(&nyse, "1d", "2024-01-03T03:00:00Z"), None);
        // Summer (EDT, UTC-4): 09:30 is 13:30Z.
        assert_eq!(
            bucket(&nyse, "1h", "2024-07-01T13:31:00Z"),
            span("2024-07-01T13:30:00Z", "2024-07-01T14:30:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1d", "2024-01-02T15:00:00Z"),
            span("2024-01-02T14:30:00Z", "2024-01-02T21:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1d", "2024-07-01T19:59:00Z"),
            span("2024-07-01T13:30:00Z", "2024-07-01T20:00:00Z")
        );
        // The slot of a time outside the session runs from the close to the next open.
        assert_eq!(
            nyse.locate(tf("1h"), ts("2024-01-02T23:00:00Z")),
            Slot {
                from: ts("2024-01-02T21:00:00Z"),
                to: ts("2024-01-03T14:30:00Z"),
                bucket: None
            }
        );
    }

    #[test]
    fn daylight_saving_time_in_march_2024() {
        let nyse = calendar("America/New_York", "09:30", Some("16:00"));
        // Friday before the change in EST, Monday after it in EDT.
        assert_eq!(
            bucket(&nyse, "1d", "2024-03-08T16:00:00Z"),
            span("2024-03-08T14:30:00Z", "2024-03-08T21:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1d", "2024-03-11T16:00:00Z"),
            span("2024-03-11T13:30:00Z", "2024-03-11T20:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1h", "2024-03-11T13:30:00Z"),
            span("2024-03-11T13:30:00Z", "2024-03-11T14:30:00Z")
        );
        // Without a close a day runs from one 09:30 to the next: 23 hours across the change.
        let open_0930 = calendar("America/New_York", "09:30", None);
        assert_eq!(
            bucket(&open_0930, "1d", "2024-03-10T12:00:00Z"),
            span("2024-03-09T14:30:00Z", "2024-03-10T13:30:00Z")
        );
        assert_eq!(
            bucket(&open_0930, "1d", "2024-03-10T13:30:00Z"),
            span("2024-03-10T13:30:00Z", "2024-03-11T13:30:00Z")
        );
        // Midnight days: 10 March has 23 hours.
        let midnight = calendar("America/New_York", "00:00", None);
        assert_eq!(
            bucket(&midnight, "1d", "2024-03-10T12:00:00Z"),
            span("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z")
        );
        // 02:00 local never happens: the 01:00 hour ends at the jump, 03:00 EDT starts next.
        assert_eq!(
            bucket(&midnight, "1h", "2024-03-10T06:59:00Z"),
            span("2024-03-10T06:00:00Z", "2024-03-10T07:00:00Z")
        );
        assert_eq!(
            bucket(&midnight, "1h", "2024-03-10T07:00:00Z"),
            span("2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z")
        );
        // 4h by the local clock: 00:00-04:00 EDT is three hours long.
        assert_eq!(
            bucket(&midnight, "4h", "2024-03-10T07:30:00Z"),
            span("2024-03-10T05:00:00Z", "2024-03-10T08:00:00Z")
        );
        // An open inside the skipped hour starts at the jump.
        let open_0230 = calendar("America/New_York", "02:30", None);
        assert_eq!(
            bucket(&open_0230, "1d", "2024-03-10T06:59:00Z"),
            span("2024-03-09T07:30:00Z", "2024-03-10T07:00:00Z")
        );
        assert_eq!(
            bucket(&open_0230, "1d", "2024-03-10T07:00:00Z"),
            span("2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z")
        );
    }

    #[test]
    fn daylight_saving_time_in_november_2024() {
        let nyse = calendar("America/New_York", "09:30", Some("16:00"));
        assert_eq!(
            bucket(&nyse, "1d", "2024-11-01T15:00:00Z"),
            span("2024-11-01T13:30:00Z", "2024-11-01T20:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1d", "2024-11-04T15:00:00Z"),
            span("2024-11-04T14:30:00Z", "2024-11-04T21:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1h", "2024-11-04T14:30:00Z"),
            span("2024-11-04T14:30:00Z", "2024-11-04T15:30:00Z")
        );
        // Midnight days: 3 November has 25 hours.
        let midnight = calendar("America/New_York", "00:00", None);
        assert_eq!(
            bucket(&midnight, "1d", "2024-11-03T12:00:00Z"),
            span("2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z")
        );
        // 01:00 local happens twice; by the local clock both are in the 01:00 bar.
        assert_eq!(
            bucket(&midnight, "1h", "2024-11-03T05:30:00Z"),
            span("2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z")
        );
        assert_eq!(
            bucket(&midnight, "1h", "2024-11-03T06:30:00Z"),
            span("2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z")
        );
        // 15-minute boundaries in the repeated hour are their first instants.
        assert_eq!(
            bucket(&midnight, "15m", "2024-11-03T06:10:00Z"),
            span("2024-11-03T05:45:00Z", "2024-11-03T07:00:00Z")
        );
        // An open in the repeated hour is its first instant; 01:10 EST (the second 01:10) is
        // already in that day's session.
        let open_0130 = calendar("America/New_York", "01:30", None);
        assert_eq!(
            bucket(&open_0130, "1d", "2024-11-03T06:10:00Z"),
            span("2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z")
        );
        assert_eq!(
            bucket(&open_0130, "1d", "2024-11-03T05:29:00Z"),
            span("2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z")
        );
    }

    #[test]
    fn weeks_and_months_follow_the_local_calendar() {
        let nyse = calendar("America/New_York", "09:30", Some("16:00"));
        // The week of Wednesday 13 March: Monday's open to Sunday's close.
        assert_eq!(
            bucket(&nyse, "1w", "2024-03-13T15:00:00Z"),
            span("2024-03-11T13:30:00Z", "2024-03-17T20:00:00Z")
        );
        // A week across the change: opens in EST, ends in EDT.
        assert_eq!(
            bucket(&nyse, "1w", "2024-03-08T15:00:00Z"),
            span("2024-03-04T14:30:00Z", "2024-03-10T20:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "1M", "2024-11-15T15:00:00Z"),
            span("2024-11-01T13:30:00Z", "2024-11-30T21:00:00Z")
        );
        assert_eq!(
            bucket(&nyse, "3M", "2024-11-15T15:00:00Z"),
            span("2024-10-01T13:30:00Z", "2024-12-31T21:00:00Z")
        );
        // 22:00 EST on 29 February is still February in New York (1 March in UTC).
        let midnight = calendar("America/New_York", "00:00", None);
        assert_eq!(
            bucket(&midnight, "1M", "2024-03-01T03:00:00Z"),
            span("2024-02-01T05:00:00Z", "2024-03-01T05:00:00Z")
        );
        assert_eq!(
            bucket(&midnight, "1M", "2024-11-15T00:00:00Z"),
            span("2024-11-01T04:00:00Z", "2024-12-01T05:00:00Z")
        );
        // Sunday 23:00 EST is Monday 04:00Z but still the old week in New York.
        assert_eq!(
            bucket(&midnight, "1w", "2024-01-08T04:00:00Z"),
            span("2024-01-01T05:00:00Z", "2024-01-08T05:00:00Z")
        );
    }

    #[test]
    fn tokyo_has_no_daylight_saving_time() {
        let tse = calendar("Asia/Tokyo", "09:00", Some("15:30"));
        for date in ["2024-01-15", "2024-07-15"] {
            assert_eq!(
                bucket(&tse, "1h", &format!("{date}T06:10:00Z")),
                span(&format!("{date}T06:00:00Z"), &format!("{date}T06:30:00Z"))
            );
            assert_eq!(
                bucket(&tse, "1d", &format!("{date}T03:00:00Z")),
                span(&format!("{date}T00:00:00Z"), &format!("{date}T06:30:00Z"))
            );
        }
        assert_eq!(
            bucket(&tse, "1w", "2024-06-07T01:00:00Z"),
            span("2024-06-03T00:00:00Z", "2024-06-09T06:30:00Z")
        );
        // 08:59 JST on 1 July is before the open: outside.
        assert_eq!(bucket(&tse, "1M", "2024-06-30T23:59:00Z"), None);
        assert_eq!(
            bucket(&tse, "1M", "2024-07-01T00:00:00Z"),
            span("2024-07-01T00:00:00Z", "2024-07-31T06:30:00Z")
        );
    }

    #[test]
    fn sessions_that_cross_midnight_belong_to_the_day_they_close() {
        // CME-style: 18:00 to 17:00 the next day, New York time.
        let cme = calendar("America/New_York", "18:00", Some("17:00"));
        assert!(cme.crosses_midnight());
        // Sunday 7 January 19:30 EST is in Monday's session.
        assert_eq!(
            bucket(&cme, "1h", "2024-01-08T00:30:00Z"),
            span("2024-01-08T00:00:00Z", "2024-01-08T01:00:00Z")
        );
        assert_eq!(
            bucket(&cme, "1d", "2024-01-08T00:30:00Z"),
            span("2024-01-07T23:00:00Z", "2024-01-08T22:00:00Z")
        );
        assert_eq!(
            bucket(&cme, "1h", "2024-01-08T21:59:00Z"),
            span("2024-01-08T21:00:00Z", "2024-01-08T22:00:00Z")
        );
        // 4h from 18:00: 18, 22, 02, 06, 10, 14-17.
        assert_eq!(
            bucket(&cme, "4h", "2024-01-08T07:15:00Z"),
            span("2024-01-08T07:00:00Z", "2024-01-08T11:00:00Z")
        );
        assert_eq!(
            bucket(&cme, "4h", "2024-01-08T21:15:00Z"),
            span("2024-01-08T19:00:00Z", "2024-01-08T22:00:00Z")
        );
        // The 17:00-18:00 break is outside.
        assert_eq!(bucket(&cme, "1h", "2024-01-08T22:30:00Z"), None);
        assert_eq!(bucket(&cme, "1d", "2024-01-08T22:59:00Z"), None);
        // The week opens Sunday evening and ends at the close of its Sunday trading date.
        assert_eq!(
            bucket(&cme, "1w", "2024-01-10T15:00:00Z"),
            span("2024-01-07T23:00:00Z", "2024-01-14T22:00:00Z")
        );
        // The evening of 31 January is already February.
        assert_eq!(
            bucket(&cme, "1M", "2024-01-31T23:30:00Z"),
            span("2024-01-31T23:00:00Z", "2024-02-29T22:00:00Z")
        );
        // Across the March change (Sunday 10th): Monday's session opens 18:00 EDT.
        assert_eq!(
            bucket(&cme, "1d", "2024-03-10T22:30:00Z"),
            span("2024-03-10T22:00:00Z", "2024-03-11T21:00:00Z")
        );
        // FX: 17:00 to 17:00 New York, no break.
        let fx = calendar("America/New_York", "17:00", Some("17:00"));
        assert!(fx.crosses_midnight() && !fx.has_gaps());
        assert_eq!(
            bucket(&fx, "1d", "2024-01-08T22:00:00Z"),
            span("2024-01-08T22:00:00Z", "2024-01-09T22:00:00Z")
        );
        assert_eq!(
            bucket(&fx, "1w", "2024-01-07T22:00:00Z"),
            span("2024-01-07T22:00:00Z", "2024-01-14T22:00:00Z")
        );
    }

    #[test]
    fn a_close_at_midnight_ends_the_day_of_the_open() {
        let late = calendar("Europe/London", "08:00", Some("00:00"));
        assert!(!late.crosses_midnight() && late.has_gaps());
        assert_eq!(
            bucket(&late, "1d", "2024-01-02T23:59:00Z"),
            span("2024-01-02T08:00:00Z", "2024-01-03T00:00:00Z")
        );
        assert_eq!(bucket(&late, "1d", "2024-01-03T07:59:00Z"), None);
        // 00:00 to 00:00 is the default.
        assert!(calendar("UTC", "00:00", Some("00:00")).is_utc_default());
        assert!(!calendar("UTC", "00:00", Some("23:00")).is_utc_default());
    }

    #[test]
    fn parsing_and_display() {
        assert_eq!(parse_timezone(" Asia/Tokyo ").unwrap(), Tz::Asia__Tokyo);
        let error = parse_timezone("america/new york").unwrap_err();
        assert!(
            error.hint.starts_with("did you mean `America/New_York`?"),
            "{error}"
        );
        let error = parse_timezone("Mars/Olympus").unwrap_err();
        assert_eq!(error.message, "`Mars/Olympus` is not an IANA time zone");
        assert!(
            error
                .hint
                .starts_with("use an IANA name such as America/New_York"),
            "{error}"
        );
        assert_eq!(
            parse_time_of_day("9:30").unwrap(),
            NaiveTime::from_hms_opt(9, 30, 0).unwrap()
        );
        assert_eq!(
            parse_time_of_day("16:00:30").unwrap(),
            NaiveTime::from_hms_opt(16, 0, 30).unwrap()
        );
        for bad in [
            "24:00",
            "9",
            "09:60",
            "9.30",
            "09:30:00:00",
            "-1:00",
            "",
            "a:b",
            "009:30",
        ] {
            let error = parse_time_of_day(bad).unwrap_err();
            assert!(error.hint.contains("HH:MM"), "{bad}: {error}");
        }
        assert_eq!(
            calendar("America/New_York", "18:00", Some("17:00")).to_string(),
            "America/New_York from 18:00 to 17:00 the next day"
        );
        assert_eq!(SessionCalendar::default().to_string(), "UTC from 00:00");
    }

    #[test]
    fn the_cursor_gives_the_same_answers_with_fewer_lookups() {
        let nyse = calendar("America/New_York", "09:30", Some("16:00"));
        let mut cursor = BucketCursor::new(nyse, tf("1h"));
        let start = ts("2024-03-07T00:00:00Z");
        for minute in 0..(6 * 24 * 60) {
            let t = start + minute * 60 * NANOS_PER_SECOND;
            assert_eq!(cursor.bucket(t), nyse.bucket(tf("1h"), t), "{t}");
        }
    }

    /// A time is in a bucket or outside every session for every timeframe alike; the slot
    /// around it gives one answer; a bucket holds its start and its last instant, is followed
    /// by the next one or by the end of the session, and nests in the day, week and month.
    fn check_invariants(c: &SessionCalendar, frame: Timeframe, t: i64) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{c}, {frame}, t = {t}: {what}"));
        let got = c.bucket(frame, t);
        let day = c.bucket(tf("1d"), t);
        let week = c.bucket(tf("1w"), t);
        let month = c.bucket(tf("1M"), t);
        if got.is_some() != day.is_some()
            || week.is_some() != day.is_some()
            || month.is_some() != day.is_some()
        {
            return fail("in session for one timeframe, outside for another");
        }
        let slot = c.locate(frame, t);
        let session = c.session_at(t);
        let searched = SessionSpan {
            uniform_offset: None,
            ..session
        };
        if !c.is_utc_default() && c.locate_in_session(frame, t, &searched) != slot {
            return fail("plain arithmetic and the boundary search disagree");
        }
        if !(slot.from <= t && t < slot.to) {
            return fail("the slot does not hold t");
        }
        if c.bucket(frame, slot.from) != got || c.bucket(frame, slot.to - 1) != got {
            return fail("the slot does not give one answer");
        }
        let Some((start, end)) = got else {
            return if c.has_gaps() {
                Ok(())
            } else {
                fail("outside a session without gaps")
            };
        };
        if !(start <= t && t < end) {
            return fail("the bucket does not hold t");
        }
        if c.bucket(frame, start) != got || c.bucket(frame, end - 1) != got {
            return fail("the bucket does not hold its start and last instant");
        }
        if c.bucket(frame, end).is_some_and(|(next, _)| next != end) {
            return fail("the next bucket does not start at the end");
        }
        if c.bucket(frame, start - 1)
            .is_some_and(|(_, previous)| previous != start)
        {
            return fail("the previous bucket does not end at the start");
        }
        let ((day_start, day_end), (week_start, week_end), (month_start, month_end)) = (
            day.unwrap_or_default(),
            week.unwrap_or_default(),
            month.unwrap_or_default(),
        );
        // Epoch-aligned lengths that do not divide a day cross midnight by design.
        let intraday = matches!(frame, Timeframe::Fixed { unit, .. } if unit != 'd');
        let epoch_aligned = c.is_utc_default()
            && matches!(frame, Timeframe::Fixed { nanos, .. } if DAY % nanos != 0);
        let nested = if epoch_aligned {
            true
        } else if intraday {
            day_start <= start && end <= day_end
        } else {
            start <= day_start && day_end <= end
        };
        let in_week = week_start <= day_start && day_end <= week_end;
        let in_month = month_start <= day_start && day_end <= month_end;
        if !(nested && in_week && in_month) {
            return fail("buckets do not nest in the day, week and month");
        }
        Ok(())
    }

    #[test]
    fn every_five_minutes_across_clock_changes() {
        let changes = [
            ("America/New_York", "2024-03-10"),
            ("America/New_York", "2024-11-03"),
            ("Europe/London", "2024-03-31"),
            ("Europe/London", "2024-10-27"),
            // A half-hour change at 02:00.
            ("Australia/Lord_Howe", "2024-04-07"),
            ("Australia/Lord_Howe", "2024-10-06"),
            // Midnight itself was skipped and repeated.
            ("America/Sao_Paulo", "2018-11-04"),
            ("America/Sao_Paulo", "2019-02-17"),
        ];
        let sessions = [
            ("00:00", None),
            ("00:30", Some("23:30")),
            ("01:30", None),
            ("02:30", Some("16:00")),
            ("09:30", Some("16:00")),
            ("18:00", Some("17:00")),
            ("17:00", Some("17:00")),
            ("23:30", Some("00:30")),
        ];
        for (zone, date) in changes {
            let around = ts(&format!("{date}T00:00:00Z"));
            for (open, close) in sessions {
                let c = calendar(zone, open, close);
                for frame in ["5m", "15m", "1h", "4h", "7h", "1d", "1w", "1M"] {
                    let mut cursor = BucketCursor::new(c, tf(frame));
                    let mut t = around - 2 * DAY;
                    while t < around + 2 * DAY {
                        check_invariants(&c, tf(frame), t).unwrap();
                        assert_eq!(cursor.bucket(t), c.bucket(tf(frame), t));
                        t += 5 * 60 * NANOS_PER_SECOND;
                    }
                }
            }
        }
        // São Paulo, 4 November 2018: the day began at 01:00 (-02), 23 hours long.
        let midnight = calendar("America/Sao_Paulo", "00:00", None);
        assert_eq!(
            bucket(&midnight, "1d", "2018-11-04T12:00:00Z"),
            span("2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z")
        );
        assert_eq!(
            bucket(&midnight, "1d", "2018-11-04T02:59:00Z"),
            span("2018-11-03T03:00:00Z", "2018-11-04T03:00:00Z")
        );
    }

    const TIMEFRAMES: &[&str] = &[
        "1s", "13s", "1m", "5m", "7m", "15m", "90m", "1h", "4h", "7h", "24h", "1d", "2d", "5d",
        "1w", "2w", "1M", "3M", "12M",
    ];
    const ZONES: &[&str] = &[
        "UTC",
        "America/New_York",
        "Europe/London",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "America/Sao_Paulo",
        "Pacific/Chatham",
    ];

    proptest! {
        /// The default calendar is the old UTC code, bucket for bucket.
        #[test]
        fn the_utc_default_is_the_plain_utc_buckets(
            t in -2_000_000_000_000_000_000i64..4_000_000_000_000_000_000,
            which in 0..TIMEFRAMES.len(),
        ) {
            let frame = tf(TIMEFRAMES[which]);
            let start = frame.bucket_start(t);
            let old = Some((start, frame.bucket_end(start)));
            prop_assert_eq!(SessionCalendar::default().bucket(frame, t), old);
            // The time-zone path agrees too for every length that divides a day.
            let divides_a_day = match frame {
                Timeframe::Fixed { nanos, unit, .. } => unit == 'd' || DAY % nanos == 0,
                _ => true,
            };
            if divides_a_day {
                let c = SessionCalendar::UTC;
                prop_assert_eq!(c.locate_in_session(frame, t, &c.session_at(t)).bucket, old);
            }
        }

        /// Any calendar, any time: see `check_invariants`.
        #[test]
        fn buckets_are_contiguous_and_nested(
            zone in 0..ZONES.len(),
            open_minute in 0u32..1440,
            close_minute in prop::option::of(0u32..1440),
            which in 0..TIMEFRAMES.len(),
            t in 946_684_800i64..1_893_456_000,
            offset_seconds in 0i64..86_400,
        ) {
            let time = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
            let c = SessionCalendar::new(
                parse_timezone(ZONES[zone]).unwrap(),
                time(open_minute),
                close_minute.map(time),
            );
            let t = (t + offset_seconds) * NANOS_PER_SECOND;
            let checked = check_invariants(&c, tf(TIMEFRAMES[which]), t);
            prop_assert!(checked.is_ok(), "{}", checked.unwrap_err());
        }

        /// Away from clock changes, the session is [open, close) on the local clock.
        #[test]
        fn in_session_means_between_open_and_close_locally(
            zone in 0..ZONES.len(),
            open_minute in 0u32..1440,
            close_minute in 0u32..1440,
            t in 946_684_800i64..1_893_456_000,
        ) {
            let time = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
            let tz = parse_timezone(ZONES[zone]).unwrap();
            let c = SessionCalendar::new(tz, time(open_minute), Some(time(close_minute)));
            let t = t * NANOS_PER_SECOND;
            // Within two days of a clock change the local time of day is no simple oracle.
            let offset = |t: i64| c.local(t) - t;
            let settled = offset(t - 2 * DAY) == offset(t) && offset(t + 2 * DAY) == offset(t);
            let minute = (c.local(t).rem_euclid(DAY) / (60 * NANOS_PER_SECOND)) as u32;
            let inside = if open_minute == 0 && close_minute == 0 {
                true
            } else if close_minute == 0 {
                minute >= open_minute
            } else if close_minute > open_minute {
                open_minute <= minute && minute < close_minute
            } else {
                minute >= open_minute || minute < close_minute
            };
            if settled {
                prop_assert_eq!(c.bucket(tf("1h"), t).is_some(), inside);
            }
        }
    }
}
