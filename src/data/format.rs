//! How to read a file whose layout is not rustybt's own: delimiter, header, which column is
//! which, how its times are written and in what zone, what to do with missing values, and
//! presets for the layouts traders meet most (Binance klines, Yahoo, MetaTrader, TradingView).
//!
//! The default [`Format`] reads the layout the loaders always read, on the same fast path;
//! every option costs only in files that use it.

use std::fmt;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::timestamp::parse_bytes;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Whether the first line names the columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    #[default]
    Yes,
    No,
    /// A header if the first line's time field is not a time (presets whose vendors write
    /// both kinds of file).
    Auto,
}

/// What a row with a missing price or volume (`null`, `NaN`, empty) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMissing {
    /// Refuse the file, naming the row.
    #[default]
    Fail,
    /// Leave the row out.
    Skip,
    /// A flat bar at the previous close with zero volume (dropped before the first bar).
    Ffill,
}

impl OnMissing {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            "ffill" => Ok(Self::Ffill),
            other => Err(format!(
                "`--on-missing {other}` is not a choice; use skip, fail or ffill"
            )),
        }
    }
}

/// A column's role in a bar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A whole timestamp, or the date when a separate `Time` column holds the time of day.
    Timestamp,
    /// The date part of a split date/time pair.
    Date,
    /// The time of day of a split pair, or the whole timestamp when there is no `Date`.
    Time,
    Open,
    High,
    Low,
    Close,
    Volume,
    Symbol,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Timestamp => "timestamp",
            Role::Date => "date",
            Role::Time => "time",
            Role::Open => "open",
            Role::High => "high",
            Role::Low => "low",
            Role::Close => "close",
            Role::Volume => "volume",
            Role::Symbol => "symbol",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "timestamp" | "datetime" => Role::Timestamp,
            "date" => Role::Date,
            "time" => Role::Time,
            "open" => Role::Open,
            "high" => Role::High,
            "low" => Role::Low,
            "close" => Role::Close,
            "volume" => Role::Volume,
            "symbol" => Role::Symbol,
            _ => return None,
        })
    }
}

/// Where a role's values are: a header name or a 0-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Name(String),
    Position(usize),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Name(n) => write!(f, "`{n}`"),
            Source::Position(p) => write!(f, "position {p}"),
        }
    }
}

/// `--columns`: either the file's columns in order by role (`date,time,open,high,low,close,
/// volume`, an unknown name such as `_` skips a column), or `role=NAME` / `role=POSITION`
/// entries (`close=Adj Close`, `timestamp=0`); both may be mixed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnMap {
    pub entries: Vec<(Role, Source)>,
}

impl ColumnMap {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (position, item) in text.split(',').enumerate() {
            match item.split_once('=') {
                Some((role, source)) => {
                    let role = Role::parse(role).ok_or_else(|| {
                        format!(
                            "`--columns`: `{}` is not a column role; roles are timestamp, date, \
                             time, open, high, low, close, volume, symbol",
                            role.trim()
                        )
                    })?;
                    let source = source.trim();
                    let source = match source.parse::<usize>() {
                        Ok(p) => Source::Position(p),
                        Err(_) => Source::Name(source.to_owned()),
                    };
                    entries.push((role, source));
                }
                None => {
                    if let Some(role) = Role::parse(item) {
                        entries.push((role, Source::Position(position)));
                    }
                }
            }
        }
        for (i, (role, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(r, _)| r == role) {
                return Err(format!(
                    "`--columns` gives the {} column twice",
                    role.name()
                ));
            }
        }
        Ok(Self { entries })
    }

    /// The standard order `timestamp,open,high,low,close,volume`, for files without a header.
    pub fn standard() -> Self {
        Self::parse("timestamp,open,high,low,close,volume").expect("invariant: a valid map")
    }
}

/// How the time column is written, when not ISO 8601 or an epoch of plausible magnitude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    /// A chrono `strftime` pattern; `kind` says which parser it needs.
    Pattern { pattern: String, kind: PatternKind },
    /// An integer epoch in this many nanoseconds per unit.
    Epoch(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    DateOnly,
    DateTime,
    WithZone,
}

impl DateFormat {
    /// A `strftime` pattern (`%d.%m.%Y`, `%Y.%m.%d %H:%M`) or `epoch_s`/`epoch_ms`/`epoch_us`/
    /// `epoch_ns`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let factor = match text.trim() {
            "epoch_s" | "s" => Some(NANOS_PER_SEC),
            "epoch_ms" | "ms" => Some(1_000_000),
            "epoch_us" | "us" => Some(1_000),
            "epoch_ns" | "ns" => Some(1),
            _ => None,
        };
        if let Some(factor) = factor {
            return Ok(DateFormat::Epoch(factor));
        }
        if StrftimeItems::new(text).any(|item| matches!(item, Item::Error)) {
            return Err(format!(
                "`--date-format {text}` is not a valid strftime pattern (for example `%d.%m.%Y %H:%M`)"
            ));
        }
        let has = |specs: &[&str]| specs.iter().any(|s| text.contains(s));
        let kind = if has(&["%z", "%:z", "%#z", "%::z", "%s"]) {
            PatternKind::WithZone
        } else if has(&["%H", "%I", "%k", "%l", "%T", "%R", "%X", "%c", "%+"]) {
            PatternKind::DateTime
        } else {
            PatternKind::DateOnly
        };
        if kind == PatternKind::DateOnly && !has(&["%d", "%e", "%j", "%F", "%D", "%x", "%v"]) {
            return Err(format!(
                "`--date-format {text}` has no day (`%d`); a date needs a year, month and day"
            ));
        }
        Ok(DateFormat::Pattern {
            pattern: text.to_owned(),
            kind,
        })
    }
}

/// Named layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// data.binance.vision klines: no header (or `open_time,...`), epoch ms or µs.
    Binance,
    /// A Yahoo Finance download: `Date,Open,High,Low,Close,Adj Close,Volume` with `null` rows.
    Yahoo,
    /// A MetaTrader export: `2024.01.02,09:30,o,h,l,c,tickvol[,vol,spread]`, with or without
    /// its `<DATE>\t<TIME>...` header.
    MetaTrader,
    /// A TradingView chart export: `time,open,high,low,close[,Volume,...]`, epoch seconds or
    /// ISO 8601 with an offset.
    TradingView,
}

impl Preset {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "binance" => Ok(Self::Binance),
            "yahoo" => Ok(Self::Yahoo),
            "metatrader" | "mt4" | "mt5" => Ok(Self::MetaTrader),
            "tradingview" => Ok(Self::TradingView),
            other => Err(format!(
                "`--preset {other}` is not a preset; use binance, yahoo, metatrader or tradingview"
            )),
        }
    }
}

/// Everything about a file's layout. `Default` is rustybt's own layout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Format {
    /// Field separator; `None` detects comma, semicolon, tab or pipe from the first line.
    pub delimiter: Option<u8>,
    pub header: Header,
    pub columns: Option<ColumnMap>,
    pub date_format: Option<DateFormat>,
    /// Zone of times written without an offset (converted to UTC); `None` means UTC.
    pub tz: Option<Tz>,
    pub on_missing: OnMissing,
}

/// The format options as the user wrote them (command line or run config), before checking.
#[derive(Debug, Clone, Default)]
pub struct FormatSpec {
    pub preset: Option<String>,
    pub delimiter: Option<String>,
    pub no_header: bool,
    pub columns: Option<String>,
    pub date_format: Option<String>,
    pub tz: Option<String>,
    pub on_missing: Option<String>,
}

impl Format {
    /// The preset's layout (if any) with the explicit options over it.
    pub fn from_spec(spec: &FormatSpec) -> Result<Self, String> {
        let mut format = match spec.preset.as_deref() {
            Some(p) => Self::preset(Preset::parse(p)?),
            None => Self::default(),
        };
        if let Some(d) = &spec.delimiter {
            format.delimiter = Some(parse_delimiter(d)?);
        }
        if spec.no_header {
            format.header = Header::No;
        }
        if let Some(c) = &spec.columns {
            format.columns = Some(ColumnMap::parse(c)?);
        }
        if let Some(d) = &spec.date_format {
            format.date_format = Some(DateFormat::parse(d)?);
        }
        if let Some(z) = &spec.tz {
            format.tz = Some(z.trim().parse::<Tz>().map_err(|_| {
                format!("`--tz {z}` is not an IANA time zone (for example `Europe/Berlin`, `America/New_York`)")
            })?);
        }
        if let Some(m) = &spec.on_missing {
            format.on_missing = OnMissing::parse(m)?;
        }
        Ok(format)
    }

    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Binance => Format {
                delimiter: Some(b','),
                header: Header::Auto,
                columns: Some(ColumnMap::standard()),
                ..Default::default()
            },
            Preset::Yahoo => Format {
                on_missing: OnMissing::Skip,
                ..Default::default()
            },
            Preset::MetaTrader => Format {
                header: Header::Auto,
                columns: Some(
                    ColumnMap::parse("date,time,open,high,low,close,volume")
                        .expect("invariant: a valid map"),
                ),
                date_format: Some(DateFormat::Pattern {
                    pattern: "%Y.%m.%d".to_owned(),
                    kind: PatternKind::DateOnly,
                }),
                ..Default::default()
            },
            Preset::TradingView => Format::default(),
        }
    }

    /// Whether times are read exactly as the default loader reads them.
    pub(crate) fn plain_times(&self) -> bool {
        self.date_format.is_none() && self.tz.is_none()
    }
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    let d = match text {
        "\\t" | "tab" | "\t" => b'\t',
        "comma" => b',',
        "semicolon" => b';',
        "pipe" => b'|',
        "space" => b' ',
        _ if text.len() == 1 && text.is_ascii() => text.as_bytes()[0],
        _ => {
            return Err(format!(
                "`--delimiter {text}` must be one character (`,`, `;`, `|`, `\\t` or `tab`)"
            ));
        }
    };
    if matches!(d, b'"' | b'\n' | b'\r') || d.is_ascii_alphanumeric() {
        return Err(format!("`--delimiter {text}` cannot separate fields"));
    }
    Ok(d)
}

/// The delimiter candidates in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The candidate that occurs most often outside quotes in `line` (comma when none does).
pub(crate) fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
            counts[i] += 1;
        }
    }
    let best = (0..4).max_by_key(|&i| (counts[i], 4 - i)).unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        DELIMITERS[best]
    }
}

/// A delimiter other than `used` that splits `field` (a whole line read as one column).
pub(crate) fn other_delimiter(field: &str, used: u8) -> Option<u8> {
    DELIMITERS
        .iter()
        .copied()
        .filter(|&d| d != used)
        .max_by_key(|&d| field.bytes().filter(|&b| b == d).count())
        .filter(|&d| field.as_bytes().contains(&d))
}

/// How to show a delimiter in a hint.
pub(crate) fn show_delimiter(d: u8) -> String {
    match d {
        b'\t' => "'\\t'".to_owned(),
        d => format!("'{}'", d as char),
    }
}

/// Texts that stand for "no value" in the files people export.
pub(crate) fn is_missing(text: &[u8]) -> bool {
    matches!(
        text.trim_ascii().to_ascii_lowercase().as_slice(),
        b"" | b"null" | b"nan" | b"na" | b"n/a" | b"none" | b"-" | b"#n/a"
    )
}

/// Turns one row's time field(s) into UTC nanoseconds under a [`Format`].
#[derive(Debug)]
pub(crate) struct TimeParser {
    plain: bool,
    date_format: Option<DateFormat>,
    tz: Option<Tz>,
    /// The last time produced, to pick the right side of an ambiguous local hour.
    last: Option<i64>,
}

impl TimeParser {
    pub fn new(format: &Format) -> Self {
        Self {
            plain: format.plain_times(),
            date_format: format.date_format.clone(),
            tz: format.tz,
            last: None,
        }
    }

    /// `date` is the timestamp field, or the date of a split pair whose time of day is `time`.
    #[inline]
    pub fn parse(&mut self, date: &[u8], time: Option<&[u8]>) -> Result<i64, String> {
        if self.plain && time.is_none() {
            return parse_bytes(date);
        }
        let t = self.parse_slow(date, time)?;
        self.last = Some(t);
        Ok(t)
    }

    /// A zone-less Parquet timestamp (wall time) → UTC under `--tz`.
    pub fn localize_naive(&mut self, ns: i64) -> Result<i64, String> {
        let Some(tz) = self.tz else { return Ok(ns) };
        let t = self.localize(tz, ns, "the time")?;
        self.last = Some(t);
        Ok(t)
    }

    fn parse_slow(&self, date: &[u8], time: Option<&[u8]>) -> Result<i64, String> {
        let text = std::str::from_utf8(date.trim_ascii())
            .map_err(|_| "the time is not valid UTF-8".to_owned())?;
        if text.is_empty() {
            return Err("empty value".to_owned());
        }
        let (ns, zoned) = match &self.date_format {
            Some(DateFormat::Epoch(factor)) => {
                let v: i64 = text
                    .parse()
                    .map_err(|_| format!("`{text}` is not an integer epoch"))?;
                let ns = v
                    .checked_mul(*factor)
                    .ok_or_else(|| format!("epoch {v} is outside the years 1677 to 2262"))?;
                (ns, true)
            }
            Some(DateFormat::Pattern { pattern, kind }) => (
                parse_pattern(text, pattern, *kind)?,
                *kind == PatternKind::WithZone,
            ),
            None if time.is_some() => (parse_date(text)?, false),
            None => (parse_bytes(text.as_bytes())?, has_zone_or_epoch(text)),
        };
        let ns = match time {
            Some(t) => ns
                .checked_add(parse_time_of_day(t)?)
                .ok_or("time outside the years 1677 to 2262")?,
            None => ns,
        };
        match self.tz {
            Some(tz) if !zoned => self.localize(tz, ns, text),
            _ => Ok(ns),
        }
    }

    /// A wall-clock time in `tz` (carried as if it were UTC) → UTC.
    fn localize(&self, tz: Tz, naive_ns: i64, text: &str) -> Result<i64, String> {
        let naive = DateTime::from_timestamp_nanos(naive_ns).naive_utc();
        let ns = |dt: DateTime<Tz>| {
            dt.timestamp_nanos_opt()
                .ok_or_else(|| format!("`{text}` is outside the years 1677 to 2262"))
        };
        match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(dt) => ns(dt),
            // The repeated hour when clocks go back: the earlier instant, unless the file has
            // already passed it (the second pass through that hour).
            chrono::LocalResult::Ambiguous(early, late) => {
                let early = ns(early)?;
                if self.last.is_some_and(|last| last >= early) {
                    ns(late)
                } else {
                    Ok(early)
                }
            }
            chrono::LocalResult::None => Err(format!(
                "{naive} does not exist in {tz}: clocks skipped that hour for daylight saving time"
            )),
        }
    }
}

/// A date alone: ISO `YYYY-MM-DD` or `YYYYMMDD`, as midnight.
fn parse_date(text: &str) -> Result<i64, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y%m%d"))
        .map_err(|_| format!("cannot parse `{text}` as a date (expected 2024-01-31)"))?;
    midnight_ns(date, text)
}

fn midnight_ns(date: NaiveDate, text: &str) -> Result<i64, String> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|dt| dt.and_utc().timestamp_nanos_opt())
        .ok_or_else(|| format!("`{text}` is outside the years 1677 to 2262"))
}

fn parse_pattern(text: &str, pattern: &str, kind: PatternKind) -> Result<i64, String> {
    let bad = || format!("cannot parse `{text}` with the date format `{pattern}`");
    let range = || format!("`{text}` is outside the years 1677 to 2262");
    match kind {
        PatternKind::WithZone => DateTime::parse_from_str(text, pattern)
            .map_err(|_| bad())?
            .timestamp_nanos_opt()
            .ok_or_else(range),
        PatternKind::DateTime => NaiveDateTime::parse_from_str(text, pattern)
            .map_err(|_| bad())?
            .and_utc()
            .timestamp_nanos_opt()
            .ok_or_else(range),
        PatternKind::DateOnly => midnight_ns(
            NaiveDate::parse_from_str(text, pattern).map_err(|_| bad())?,
            text,
        ),
    }
}

/// `HH:MM`, `HH:MM:SS[.f]`, `HHMM` or `HHMMSS` → nanoseconds since midnight.
fn parse_time_of_day(b: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(b.trim_ascii()).unwrap_or("");
    let bad = || format!("cannot parse `{text}` as a time of day (expected 09:30 or 09:30:00)");
    let digits: String;
    let text_norm = if text.len() >= 4 && text.bytes().all(|c| c.is_ascii_digit()) {
        let (h, rest) = text.split_at(2);
        let (m, s) = rest.split_at(2);
        digits = if s.is_empty() {
            format!("{h}:{m}")
        } else {
            format!("{h}:{m}:{s}")
        };
        digits.as_str()
    } else {
        text
    };
    let time = chrono::NaiveTime::parse_from_str(text_norm, "%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveTime::parse_from_str(text_norm, "%H:%M"))
        .map_err(|_| bad())?;
    let since = time - chrono::NaiveTime::MIN;
    since.num_nanoseconds().ok_or_else(bad)
}

/// Whether a text the default parser read carries its own zone (an offset, `Z`, or an epoch),
/// so `--tz` does not apply to it.
fn has_zone_or_epoch(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    let epoch = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    epoch
        || matches!(b.last(), Some(b'Z' | b'z'))
        || (b.len() > 10 && b[10..].iter().any(|c| matches!(c, b'+' | b'-')))
}

/// Date formats worth suggesting for a time text the loader could not read.
const GUESSES: [&str; 9] = [
    "%d.%m.%Y", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%m-%d-%Y", "%Y%m%d",
    "%d.%m.%y",
];
const TIME_SUFFIXES: [&str; 4] = ["", " %H:%M", " %H:%M:%S", " %H:%M:%S%.f"];

/// The `--date-format` values that read `text`, for a hint (at most two: `01/02/2024` reads
/// both day-first and month-first).
pub(crate) fn guess_date_formats(text: &str) -> Vec<String> {
    let text = text.trim();
    let mut found = Vec::new();
    for date in GUESSES {
        for suffix in TIME_SUFFIXES {
            let pattern = format!("{date}{suffix}");
            let ok = if suffix.is_empty() {
                NaiveDate::parse_from_str(text, &pattern).is_ok()
            } else {
                NaiveDateTime::parse_from_str(text, &pattern).is_ok()
            };
            if ok && found.len() < 2 {
                found.push(pattern);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_577_836_800_000_000_000; // 2020-01-01T00:00:00Z
    const H: i64 = 3_600_000_000_000;

    fn parser(spec: FormatSpec) -> TimeParser {
        TimeParser::new(&Format::from_spec(&spec).expect("format"))
    }

    #[test]
    fn delimiter_detection() {
        assert_eq!(detect_delimiter(b"a,b,c"), b',');
        assert_eq!(detect_delimiter(b"Date;Open;High"), b';');
        assert_eq!(detect_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter(b"a|b|c"), b'|');
        assert_eq!(detect_delimiter(b"\"a;b\",c,d"), b',');
        assert_eq!(detect_delimiter(b"abc"), b',');
        assert_eq!(other_delimiter("Date;Open;High", b','), Some(b';'));
        assert_eq!(other_delimiter("Date", b','), None);
    }

    #[test]
    fn column_maps() {
        let m = ColumnMap::parse("date,time,open,high,low,close,_,volume").expect("map");
        assert_eq!(m.entries[0], (Role::Date, Source::Position(0)));
        assert_eq!(m.entries[6], (Role::Volume, Source::Position(7)));
        let m = ColumnMap::parse("timestamp=0,close=Adj Close").expect("map");
        assert_eq!(
            m.entries[1],
            (Role::Close, Source::Name("Adj Close".into()))
        );
        assert!(
            ColumnMap::parse("bogus=1")
                .unwrap_err()
                .contains("not a column role")
        );
        assert!(ColumnMap::parse("open,open").unwrap_err().contains("twice"));
    }

    #[test]
    fn options_are_checked() {
        let bad = |spec: FormatSpec, want: &str| {
            let e = Format::from_spec(&spec).expect_err(want);
            assert!(e.contains(want), "{e}");
        };
        bad(
            FormatSpec {
                delimiter: Some(";;".into()),
                ..Default::default()
            },
            "one character",
        );
        bad(
            FormatSpec {
                tz: Some("Mars/Base".into()),
                ..Default::default()
            },
            "IANA",
        );
        bad(
            FormatSpec {
                on_missing: Some("guess".into()),
                ..Default::default()
            },
            "skip, fail or ffill",
        );
        bad(
            FormatSpec {
                preset: Some("bloomberg".into()),
                ..Default::default()
            },
            "not a preset",
        );
        bad(
            FormatSpec {
                date_format: Some("%Q".into()),
                ..Default::default()
            },
            "strftime",
        );
        bad(
            FormatSpec {
                date_format: Some("%Y-%m".into()),
                ..Default::default()
            },
            "no day",
        );
        let f = Format::from_spec(&FormatSpec {
            delimiter: Some("\\t".into()),
            ..Default::default()
        })
        .expect("tab");
        assert_eq!(f.delimiter, Some(b'\t'));
    }

    #[test]
    fn date_formats_zones_and_split_columns() {
        let mut p = parser(FormatSpec {
            date_format: Some("%d.%m.%Y".into()),
            ..Default::default()
        });
        assert_eq!(p.parse(b"01.01.2020", None), Ok(T0));
        assert!(
            p.parse(b"2020-01-01", None)
                .unwrap_err()
                .contains("%d.%m.%Y")
        );
        let mut p = parser(FormatSpec {
            date_format: Some("%Y.%m.%d".into()),
            ..Default::default()
        });
        assert_eq!(
            p.parse(b"2020.01.01", Some(b"09:30")),
            Ok(T0 + 9 * H + 30 * 60_000_000_000)
        );
        let mut p = parser(FormatSpec::default());
        assert_eq!(
            p.parse(b"20200101", Some(b"093000")),
            Ok(T0 + 9 * H + 30 * 60_000_000_000)
        );
        // Berlin is UTC+1 in winter, +2 in summer; offsets and epochs are left alone.
        let mut p = parser(FormatSpec {
            tz: Some("Europe/Berlin".into()),
            ..Default::default()
        });
        assert_eq!(p.parse(b"2020-01-01 01:00:00", None), Ok(T0));
        assert_eq!(p.parse(b"2020-01-01T05:00:00Z", None), Ok(T0 + 5 * H));
        assert_eq!(p.parse(b"1577836800", None), Ok(T0));
        assert_eq!(
            p.parse(b"2020-07-01 02:00", None),
            Ok(1_593_561_600_000_000_000)
        );
        // Spring forward: 02:30 on 2020-03-29 never happened in Berlin.
        assert!(
            p.parse(b"2020-03-29 02:30", None)
                .unwrap_err()
                .contains("does not exist")
        );
        // Fall back: 02:30 on 2020-10-25 happens twice; the second one is an hour later.
        let first = p.parse(b"2020-10-25 02:30", None).expect("first");
        let second = p.parse(b"2020-10-25 02:30", None).expect("second");
        assert_eq!(second - first, H);
        let mut p = parser(FormatSpec {
            date_format: Some("epoch_ms".into()),
            ..Default::default()
        });
        assert_eq!(p.parse(b"1000", None), Ok(1_000_000_000));
    }

    #[test]
    fn guesses() {
        assert_eq!(guess_date_formats("31.01.2024"), vec!["%d.%m.%Y"]);
        assert_eq!(
            guess_date_formats("2024.01.31 09:30"),
            vec!["%Y.%m.%d %H:%M"]
        );
        assert_eq!(
            guess_date_formats("01/02/2024"),
            vec!["%d/%m/%Y", "%m/%d/%Y"]
        );
        assert!(guess_date_formats("yesterday").is_empty());
    }

    #[test]
    fn missing_tokens() {
        for t in ["", " null ", "NaN", "N/A", "None"] {
            assert!(is_missing(t.as_bytes()), "{t}");
        }
        assert!(!is_missing(b"0"));
    }
}
