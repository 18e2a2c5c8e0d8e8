//! Scheduled callbacks: when an algorithm's `every=`, `at=` and `cron=` rules come due.
//!
//! Times are i64 UTC nanoseconds. A rule is due at a tick when one of its occurrences lies at or
//! before the tick's time and after the previous tick's; occurrences missed between two ticks
//! (bars sparser than the rule, a live pause) fire once, with the count of those skipped, so a
//! callback never runs in a burst of stale calls. In a backtest a tick is a bar close, so a
//! callback sees exactly the bars closed at or before the time it runs: no lookahead.

use std::str::FromStr;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::TimestampNs;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

#[derive(Debug, Clone)]
pub enum Rule {
    /// Every `period_ns`, at the multiples of the period since the Unix epoch (UTC): `15m`
    /// fires at :00, :15, :30 and :45, `1h` on the hour, `1d` at UTC midnight.
    Every { period_ns: i64 },
    /// Daily at a local time of day in `tz`. A time skipped by a daylight-saving jump fires at
    /// the first instant after the jump; a repeated one fires once, at its first occurrence.
    At { time: NaiveTime, tz: Tz },
    /// A five-field POSIX cron pattern (minute hour day-of-month month day-of-week, 0 = Sunday)
    /// evaluated in `tz`.
    Cron { cron: Box<croner::Cron>, tz: Tz },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("give exactly one of `every`, `at` or `cron`")]
    NotOneRule,
    #[error("`every` must be a positive duration such as `30s`, `15m`, `4h` or `1d`, got `{0}`")]
    Every(String),
    #[error("`at` must be a local time `HH:MM` or `HH:MM:SS`, got `{0}`")]
    At(String),
    #[error("`cron` pattern `{pattern}` is invalid: {reason}")]
    Cron { pattern: String, reason: String },
    #[error("unknown time zone `{0}`: use an IANA name such as `America/New_York`")]
    TimeZone(String),
}

impl Rule {
    /// Builds the rule from the keyword arguments of `Algorithm.schedule`.
    pub fn parse(
        every: Option<&str>,
        at: Option<&str>,
        cron: Option<&str>,
        tz: Option<&str>,
        default_tz: Tz,
    ) -> Result<Rule, ScheduleError> {
        let tz = match tz {
            Some(name) => {
                Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?
            }
            None => default_tz,
        };
        match (every, at, cron) {
            (Some(text), None, None) => {
                let period_ns = crate::config::parse_duration(text)
                    .ok()
                    .filter(|ns| *ns > 0)
                    .ok_or_else(|| ScheduleError::Every(text.to_string()))?;
                Ok(Rule::Every { period_ns })
            }
            (None, Some(text), None) => {
                let time = NaiveTime::parse_from_str(text.trim(), "%H:%M")
                    .or_else(|_| NaiveTime::parse_from_str(text.trim(), "%H:%M:%S"))
                    .map_err(|_| ScheduleError::At(text.to_string()))?;
                Ok(Rule::At { time, tz })
            }
            (None, None, Some(pattern)) => {
                // Five fields only: a seconds field would fire between bars, which a bar
                // engine cannot honour, and six-field patterns read ambiguously.
                let fields = pattern.split_whitespace().count();
                if fields != 5 {
                    return Err(ScheduleError::Cron {
                        pattern: pattern.to_string(),
                        reason: format!(
                            "expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
                        ),
                    });
                }
                let cron = croner::Cron::new(pattern)
                    .parse()
                    .map_err(|e| ScheduleError::Cron {
                        pattern: pattern.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Rule::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
            _ => Err(ScheduleError::NotOneRule),
        }
    }

    /// The first occurrence strictly after `t`, or `None` when there is none (a cron pattern
    /// that never matches again).
    pub fn next_after(&self, t: TimestampNs) -> Option<TimestampNs> {
        match self {
            Rule::Every { period_ns } => {
                let next = t.div_euclid(*period_ns).checked_add(1)? * period_ns;
                Some(next)
            }
            Rule::At { time, tz } => {
                let local_day = utc(t)?.with_timezone(tz).date_naive();
                // Today's occurrence, else tomorrow's (two days cover a DST-skipped time).
                (0..3).find_map(|offset| {
                    let day = local_day.checked_add_days(chrono::Days::new(offset))?;
                    let at = local_instant(tz, day.and_time(*time))?;
                    (at > t).then_some(at)
                })
            }
            Rule::Cron { cron, tz } => {
                let from = utc(t)?.with_timezone(tz);
                let next = cron.find_next_occurrence(&from, false).ok()?;
                next.with_timezone(&Utc)
                    .timestamp_nanos_opt()
                    .filter(|ns| *ns > t)
            }
        }
    }
}

fn utc(t: TimestampNs) -> Option<DateTime<Utc>> {
    Some(DateTime::from_timestamp_nanos(t))
}

/// A local wall time as UTC nanoseconds: the earlier instant when the time repeats, the first
/// instant after the gap when it was skipped.
fn local_instant(tz: &Tz, local: chrono::NaiveDateTime) -> Option<TimestampNs> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.timestamp_nanos_opt(),
        LocalResult::None => {
            // The first valid local time after the gap is the transition instant itself.
            (1..=24 * 60).find_map(|minutes| {
                let later = local + chrono::Duration::minutes(minutes);
                match tz.from_local_datetime(&later) {
                    LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                        at.timestamp_nanos_opt()
                    }
                    LocalResult::None => None,
                }
            })
        }
    }
}

/// One registered rule and where it stands.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub name: String,
    pub rule: Rule,
    /// The next occurrence not yet fired; `None` once the rule has no more.
    pub next: Option<TimestampNs>,
    pub fired: u64,
}

/// A callback that came due at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub id: u64,
    /// The latest occurrence at or before the tick: the time the callback stands for.
    pub scheduled: TimestampNs,
    /// Earlier occurrences since the previous tick that were folded into this call.
    pub skipped: u64,
}

#[derive(Debug, Default)]
pub struct Scheduler {
    entries: Vec<Entry>,
    next_id: u64,
}

impl Scheduler {
    /// Registers `rule` with its first occurrence after `now`; returns its id.
    pub fn add(&mut self, name: String, rule: Rule, now: TimestampNs) -> u64 {
        self.next_id += 1;
        let next = rule.next_after(now);
        self.entries.push(Entry {
            id: self.next_id,
            name,
            rule,
            next,
            fired: 0,
        });
        self.next_id
    }

    /// Removes a rule; `false` when it was not registered (or already removed).
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest pending occurrence (for a live loop that sleeps until then).
    pub fn next_due(&self) -> Option<TimestampNs> {
        self.entries.iter().filter_map(|e| e.next).min()
    }

    /// The rules due at `now`, in the order of their scheduled times (then of registration),
    /// each advanced past `now`.
    pub fn due(&mut self, now: TimestampNs) -> Vec<Due> {
        let mut due = Vec::new();
        for entry in &mut self.entries {
            let Some(first) = entry.next.filter(|next| *next <= now) else {
                continue;
            };
            let mut latest = first;
            let mut skipped = 0u64;
            let mut next = entry.rule.next_after(first);
            while let Some(at) = next.filter(|at| *at <= now) {
                latest = at;
                skipped += 1;
                next = if let Rule::Every { period_ns } = entry.rule {
                    // Jump straight past `now` rather than stepping through a long gap.
                    let remaining = (now - at) / period_ns;
                    skipped += remaining as u64;
                    latest = at + remaining * period_ns;
                    entry.rule.next_after(latest)
                } else {
                    entry.rule.next_after(at)
                };
            }
            entry.next = next;
            entry.fired += 1;
            due.push(Due {
                id: entry.id,
                scheduled: latest,
                skipped,
            });
        }
        due.sort_by_key(|d| (d.scheduled, d.id));
        due
    }
}

/// Seconds as nanoseconds, for tests and callers that think in seconds.
pub const fn seconds(s: i64) -> i64 {
    s * NANOS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60 * NANOS_PER_SECOND;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn t(text: &str) -> TimestampNs {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn rule(every: Option<&str>, at: Option<&str>, cron: Option<&str>, tz: Option<&str>) -> Rule {
        Rule::parse(every, at, cron, tz, Tz::UTC).unwrap()
    }

    #[test]
    fn every_fires_at_multiples_of_the_period() {
        let r = rule(Some("15m"), None, None, None);
        assert_eq!(
            r.next_after(t("2024-03-01T10:07:00Z")),
            Some(t("2024-03-01T10:15:00Z"))
        );
        // Strictly after: an occurrence at `t` itself is not the next one.
        assert_eq!(
            r.next_after(t("2024-03-01T10:15:00Z")),
            Some(t("2024-03-01T10:30:00Z"))
        );
    }

    #[test]
    fn at_is_local_time_and_follows_daylight_saving() {
        let r = rule(None, Some("09:30"), None, Some("America/New_York"));
        // Winter: UTC-5; summer: UTC-4.
        assert_eq!(
            r.next_after(t("2024-03-08T12:00:00Z")),
            Some(t("2024-03-08T14:30:00Z"))
        );
        assert_eq!(
            r.next_after(t("2024-03-08T14:30:00Z")),
            Some(t("2024-03-09T14:30:00Z"))
        );
        assert_eq!(
            r.next_after(t("2024-03-11T00:00:00Z")),
            Some(t("2024-03-11T13:30:00Z"))
        );
    }

    #[test]
    fn a_time_skipped_by_daylight_saving_fires_when_the_clock_jumps() {
        // 2024-03-10 02:30 does not exist in New York: clocks go from 02:00 to 03:00 (07:00Z).
        let r = rule(None, Some("02:30"), None, Some("America/New_York"));
        assert_eq!(
            r.next_after(t("2024-03-10T05:00:00Z")),
            Some(t("2024-03-10T07:00:00Z"))
        );
        // A repeated time (01:30 on 2024-11-03) fires once, at its first occurrence (EDT).
        let r = rule(None, Some("01:30"), None, Some("America/New_York"));
        let first = r.next_after(t("2024-11-03T00:00:00Z")).unwrap();
        assert_eq!(first, t("2024-11-03T05:30:00Z"));
        assert_eq!(r.next_after(first), Some(t("2024-11-04T06:30:00Z")));
    }

    #[test]
    fn cron_is_posix_with_sunday_as_0_in_the_given_zone() {
        // Weekdays 1-5 are Monday to Friday: from Friday 16:00 the next is Monday 09:00.
        let r = rule(None, None, Some("0 9 * * 1-5"), Some("Europe/London"));
        assert_eq!(
            r.next_after(t("2024-06-07T15:00:00Z")),
            Some(t("2024-06-10T08:00:00Z"))
        );
        let r = rule(None, None, Some("*/20 * * * *"), None);
        assert_eq!(
            r.next_after(t("2024-06-07T15:00:00Z")),
            Some(t("2024-06-07T15:20:00Z"))
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let parse = |e, a, c, z| Rule::parse(e, a, c, z, Tz::UTC).unwrap_err();
        assert_eq!(parse(None, None, None, None), ScheduleError::NotOneRule);
        assert_eq!(
            parse(Some("1h"), Some("09:00"), None, None),
            ScheduleError::NotOneRule
        );
        assert_eq!(
            parse(Some("0m"), None, None, None),
            ScheduleError::Every("0m".into())
        );
        assert_eq!(
            parse(Some("often"), None, None, None),
            ScheduleError::Every("often".into())
        );
        assert_eq!(
            parse(None, Some("25:00"), None, None),
            ScheduleError::At("25:00".into())
        );
        assert!(matches!(
            parse(None, None, Some("0 9 * *"), None),
            ScheduleError::Cron { reason, .. } if reason.contains("expected 5 fields")
        ));
        assert!(matches!(
            parse(None, None, Some("0 25 * * *"), None),
            ScheduleError::Cron { .. }
        ));
        assert_eq!(
            parse(Some("1h"), None, None, Some("Mars/Olympus")),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn missed_occurrences_fire_once_with_the_count_skipped() {
        let mut s = Scheduler::default();
        let start = t("2024-01-01T00:00:00Z");
        let id = s.add("q".into(), rule(Some("15m"), None, None, None), start);
        assert!(s.due(start + 14 * MIN).is_empty());
        assert_eq!(
            s.due(start + 15 * MIN),
            vec![Due {
                id,
                scheduled: start + 15 * MIN,
                skipped: 0
            }]
        );
        // No tick from 00:15 to 02:05: seven occurrences (00:30 .. 02:00) make one call, for
        // the latest, with the six before it folded in.
        assert_eq!(
            s.due(start + 2 * HOUR + 5 * MIN),
            vec![Due {
                id,
                scheduled: start + 2 * HOUR,
                skipped: 6
            }]
        );
        assert_eq!(s.get(id).unwrap().next, Some(start + 2 * HOUR + 15 * MIN));
        assert_eq!(s.get(id).unwrap().fired, 2);
        assert!(s.cancel(id));
        assert!(!s.cancel(id));
        assert!(s.due(start + DAY).is_empty());
    }

    #[test]
    fn due_callbacks_come_in_time_order() {
        let mut s = Scheduler::default();
        let start = t("2024-01-01T00:00:00Z");
        let hourly = s.add("h".into(), rule(Some("1h"), None, None, None), start);
        let early = s.add("a".into(), rule(None, Some("00:10"), None, None), start);
        let due = s.due(start + HOUR);
        assert_eq!(
            due.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![early, hourly]
        );
        assert_eq!(s.next_due(), Some(start + 2 * HOUR));
    }

    proptest! {
        /// Over any sequence of tick times, a rule fires exactly when an occurrence lies in
        /// (previous tick, tick], and reports the latest such occurrence and the others skipped:
        /// checked against stepping through every occurrence one by one.
        #[test]
        fn firing_matches_a_step_by_step_reference(
            period_min in 1i64..180,
            gaps in proptest::collection::vec(1i64..600, 1..60),
        ) {
            let period = period_min * MIN;
            let start = t("2024-01-01T00:00:00Z");
            let r = Rule::Every { period_ns: period };
            let mut s = Scheduler::default();
            let id = s.add("x".into(), r.clone(), start);
            let mut reference_next = r.next_after(start).unwrap();
            let mut now = start;
            for gap in gaps {
                now += gap * MIN;
                let mut occurrences = Vec::new();
                while reference_next <= now {
                    occurrences.push(reference_next);
                    reference_next = r.next_after(reference_next).unwrap();
                }
                let due = s.due(now);
                match occurrences.last() {
                    None => prop_assert!(due.is_empty()),
                    Some(latest) => prop_assert_eq!(due, vec![Due {
                        id,
                        scheduled: *latest,
                        skipped: occurrences.len() as u64 - 1,
                    }]),
                }
                prop_assert_eq!(s.get(id).unwrap().next, Some(reference_next));
            }
        }
    }
}
