//! What both readers share: finding the columns in a header, and the per-row rules (OHLC
//! consistency, non-negative volume, strictly increasing time per symbol) applied as each bar
//! is appended, so CSV and Parquet files are judged identically.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use super::decimal::{Value, rescale};
use super::format::{ColumnMap, Role, Source};
use super::{BarSeries, Column, DecimalColumn, Location};
use crate::market::BarColumn;
use crate::model::format_timestamp;

/// The columns the loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Timestamp,
    Open,
    High,
    Low,
    Close,
    Volume,
    Symbol,
}

impl Field {
    /// Price and volume fields, in the order readers pass their values.
    pub const VALUES: [Field; 5] = [
        Field::Open,
        Field::High,
        Field::Low,
        Field::Close,
        Field::Volume,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::Volume => "volume",
            Field::Symbol => "symbol",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Field::Timestamp => Role::Timestamp,
            Field::Open => Role::Open,
            Field::High => Role::High,
            Field::Low => Role::Low,
            Field::Close => Role::Close,
            Field::Volume => Role::Volume,
            Field::Symbol => Role::Symbol,
        }
    }
}

/// A row failure, located by the reader (which knows the file and the line or row).
#[derive(Debug)]
pub(crate) struct RowError {
    pub field: Field,
    pub message: String,
}

impl RowError {
    pub fn new(field: Field, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Positions of the understood columns in a header (CSV field or Arrow schema index).
#[derive(Debug)]
pub(crate) struct Columns {
    /// The whole timestamp, or the date of a split date/time pair.
    pub timestamp: usize,
    /// The time-of-day column of a split date/time pair.
    pub time_of_day: Option<usize>,
    /// open, high, low, close, volume.
    pub values: [usize; 5],
    pub symbol: Option<usize>,
    /// Header names as written (trimmed), for error messages.
    names: Vec<String>,
}

/// Why a header could not be resolved, and the option that would help.
#[derive(Debug)]
pub(crate) struct ResolveError {
    pub message: String,
    /// The roles left without a column.
    pub missing: Vec<Role>,
}

impl Columns {
    /// Matches names case-insensitively after trimming; `time`, `datetime` and `date` stand for
    /// `timestamp`, and a `date` and a `time` column together give it. Other columns are
    /// ignored.
    #[cfg(test)]
    pub fn resolve<S: AsRef<str>>(header: &[S]) -> Result<Columns, String> {
        Self::resolve_with(header, None, true).map_err(|e| e.message)
    }

    /// [`Self::resolve`] with a `--columns` map over it; without a header (`has_header`
    /// false) only the map places columns, and `header` just gives their number.
    pub fn resolve_with<S: AsRef<str>>(
        header: &[S],
        map: Option<&ColumnMap>,
        has_header: bool,
    ) -> Result<Columns, ResolveError> {
        let fail = |message: String| ResolveError {
            message,
            missing: Vec::new(),
        };
        let mut names: Vec<String> = header
            .iter()
            .map(|n| n.as_ref().trim_start_matches('\u{feff}').trim().to_owned())
            .collect();
        // MetaTrader writes `<DATE>`, `<OPEN>`...
        let lower: Vec<String> = names
            .iter()
            .map(|n| {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix('<').and_then(|n| n.strip_suffix('>')) {
                    Some(inner) => inner.to_owned(),
                    None => n,
                }
            })
            .collect();
        let found = if !has_header || names.iter().all(String::is_empty) {
            format!("none (the file has {} columns and no header)", names.len())
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut placed: Vec<(Role, usize)> = Vec::new();
        for (role, source) in map.map_or(&[][..], |m| &m.entries[..]) {
            let at = match source {
                Source::Position(p) if *p < names.len() => *p,
                Source::Position(p) => {
                    return Err(fail(format!(
                        "`--columns` puts {} at position {p}, but the file has {} columns \
                         (positions count from 0)",
                        role.name(),
                        names.len()
                    )));
                }
                Source::Name(name) => {
                    let want = name.trim().to_ascii_lowercase();
                    match (0..lower.len())
                        .find(|&i| lower[i] == want || names[i].eq_ignore_ascii_case(name.trim()))
                    {
                        Some(i) if has_header => i,
                        _ => {
                            return Err(fail(format!(
                                "`--columns` names a column `{name}` for {}, but there is none; \
                                 columns found: {}",
                                role.name(),
                                found
                            )));
                        }
                    }
                }
            };
            placed.push((*role, at));
        }
        let positions =
            |want: &str| -> Vec<usize> { (0..lower.len()).filter(|&i| lower[i] == want).collect() };
        let unique = |want: &str| -> Result<Option<usize>, ResolveError> {
            if !has_header {
                return Ok(None);
            }
            match positions(want)[..] {
                [] => Ok(None),
                [i] => Ok(Some(i)),
                _ => Err(fail(format!("column `{want}` appears more than once"))),
            }
        };
        let mapped = |role: Role| placed.iter().find(|(r, _)| *r == role).map(|&(_, i)| i);
        let by = |role: Role, aliases: &[&str]| -> Result<Option<usize>, ResolveError> {
            if let Some(i) = mapped(role) {
                return Ok(Some(i));
            }
            for alias in aliases {
                if let Some(i) = unique(alias)? {
                    return Ok(Some(i));
                }
            }
            Ok(None)
        };

        // A full timestamp column wins over a date/time pair; either half alone is a timestamp.
        let (timestamp, time_of_day) = match by(Role::Timestamp, &["timestamp", "datetime"])? {
            Some(t) => (Some(t), None),
            None => match (by(Role::Date, &["date"])?, by(Role::Time, &["time"])?) {
                (Some(d), Some(t)) => (Some(d), Some(t)),
                (d, t) => (d.or(t), None),
            },
        };
        let mut missing = Vec::new();
        if timestamp.is_none() {
            missing.push(Role::Timestamp);
        }
        let mut values = [0usize; 5];
        for (slot, field) in values.iter_mut().zip(Field::VALUES) {
            let role = field.role();
            match by(role, &[field.name()])? {
                Some(i) => *slot = i,
                None => missing.push(role),
            }
        }
        let symbol = by(Role::Symbol, &["symbol"])?;
        if !has_header {
            for (i, name) in names.iter_mut().enumerate() {
                *name = format!("column {}", i + 1);
            }
            for &(role, at) in &placed {
                names[at] = role.name().to_owned();
            }
        }
        match timestamp {
            Some(timestamp) if missing.is_empty() => Ok(Columns {
                timestamp,
                time_of_day,
                values,
                symbol,
                names,
            }),
            _ => {
                let listed: Vec<String> = missing
                    .iter()
                    .map(|r| match r {
                        Role::Timestamp => "`timestamp` (or `time`, `datetime`, `date`)".to_owned(),
                        r => format!("`{}`", r.name()),
                    })
                    .collect();
                Err(ResolveError {
                    message: format!(
                        "missing column{} {}; columns found: {}",
                        if missing.len() > 1 { "s" } else { "" },
                        listed.join(", "),
                        found
                    ),
                    missing,
                })
            }
        }
    }

    /// The file's own name for a field's column.
    pub fn header_name(&self, field: Field) -> &str {
        let i = match field {
            Field::Timestamp => Some(self.timestamp),
            Field::Open => Some(self.values[0]),
            Field::High => Some(self.values[1]),
            Field::Low => Some(self.values[2]),
            Field::Close => Some(self.values[3]),
            Field::Volume => Some(self.values[4]),
            Field::Symbol => self.symbol,
        };
        i.and_then(|i| self.names.get(i))
            .map_or(field.name(), String::as_str)
    }

    /// Number of columns the header (or first row) has.
    pub fn width(&self) -> usize {
        self.names.len()
    }
}

/// Accumulates one column, keeping every mantissa at the largest scale seen so far.
#[derive(Debug, Default)]
pub(crate) struct ColumnBuilder {
    mantissas: Vec<i64>,
    floats: Vec<f64>,
    scale: u32,
    // Extremes (and where they were) so a scale increase can tell up front whether rescaling
    // the values already stored will overflow, and name the row that would.
    min: Option<(i64, Location)>,
    max: Option<(i64, Location)>,
}

impl ColumnBuilder {
    pub fn push(&mut self, v: Value, loc: Location) -> Result<(), String> {
        let m = match v.scale.cmp(&self.scale) {
            Ordering::Equal => v.mantissa,
            Ordering::Less => rescale(v.mantissa, self.scale - v.scale).ok_or_else(|| {
                format!(
                    "{} cannot be stored with the column's {} decimal places in a 64-bit mantissa",
                    v.decimal(),
                    self.scale
                )
            })?,
            Ordering::Greater => {
                let k = v.scale - self.scale;
                for (old, at) in [self.min, self.max].into_iter().flatten() {
                    if rescale(old, k).is_none() {
                        return Err(format!(
                            "{} has {} decimal places, and at that scale the column's value {} \
                             at {at} no longer fits a 64-bit mantissa",
                            v.decimal(),
                            v.scale,
                            rust_decimal::Decimal::new(old, self.scale)
                        ));
                    }
                }
                // Cannot fail: every stored value lies between the two extremes checked above.
                for m in &mut self.mantissas {
                    *m = rescale(*m, k).unwrap_or(*m);
                }
                self.min = self.min.map(|(m, at)| (rescale(m, k).unwrap_or(m), at));
                self.max = self.max.map(|(m, at)| (rescale(m, k).unwrap_or(m), at));
                self.scale = v.scale;
                v.mantissa
            }
        };
        if self.min.is_none_or(|(lo, _)| m < lo) {
            self.min = Some((m, loc));
        }
        if self.max.is_none_or(|(hi, _)| m > hi) {
            self.max = Some((m, loc));
        }
        self.mantissas.push(m);
        self.floats.push(v.float);
        Ok(())
    }

    /// Appends a column built from the rows that follow this one's, giving what pushing them
    /// one by one gives. `Err` when the values cannot share one scale (pushing them one by one
    /// fails too, with the message that names the row).
    pub fn append(&mut self, mut other: ColumnBuilder) -> Result<(), ()> {
        let scale = self.scale.max(other.scale);
        self.rescale(scale - self.scale)?;
        other.rescale(scale - other.scale)?;
        self.mantissas.append(&mut other.mantissas);
        self.floats.append(&mut other.floats);
        // Ties keep the earlier row, as pushing one by one does.
        if let Some((m, at)) = other.min
            && self.min.is_none_or(|(lo, _)| m < lo)
        {
            self.min = Some((m, at));
        }
        if let Some((m, at)) = other.max
            && self.max.is_none_or(|(hi, _)| m > hi)
        {
            self.max = Some((m, at));
        }
        Ok(())
    }

    fn reserve(&mut self, more: usize) {
        self.mantissas.reserve(more);
        self.floats.reserve(more);
    }

    /// Multiplies every value by 10^k, if all still fit.
    fn rescale(&mut self, k: u32) -> Result<(), ()> {
        if k == 0 {
            return Ok(());
        }
        for (m, _) in [self.min, self.max].into_iter().flatten() {
            rescale(m, k).ok_or(())?;
        }
        for m in &mut self.mantissas {
            *m = rescale(*m, k).unwrap_or(*m);
        }
        self.min = self.min.map(|(m, at)| (rescale(m, k).unwrap_or(m), at));
        self.max = self.max.map(|(m, at)| (rescale(m, k).unwrap_or(m), at));
        self.scale += k;
        Ok(())
    }

    pub fn finish(self) -> Column {
        Column {
            values: BarColumn::from_vec(self.floats),
            exact: DecimalColumn {
                mantissas: std::sync::Arc::new(self.mantissas),
                scale: self.scale,
            },
        }
    }
}

/// Exact comparison; integer compare when the scales agree (the usual case).
#[inline]
fn cmp(a: Value, b: Value) -> Ordering {
    if a.scale == b.scale {
        a.mantissa.cmp(&b.mantissa)
    } else {
        a.decimal().cmp(&b.decimal())
    }
}

/// The bars of one symbol, checked row by row as they arrive.
pub(crate) struct SeriesBuilder {
    symbol: String,
    /// Whether messages should say which symbol (files with a `symbol` column).
    name_symbol: bool,
    time: Vec<i64>,
    last: Option<(i64, Location)>,
    columns: [ColumnBuilder; 5],
}

impl SeriesBuilder {
    pub fn new(symbol: String, name_symbol: bool) -> Self {
        Self {
            symbol,
            name_symbol,
            time: Vec::new(),
            last: None,
            columns: Default::default(),
        }
    }

    /// Checks one bar (values: open, high, low, close, volume) and appends it.
    pub fn push(&mut self, loc: Location, time: i64, values: [Value; 5]) -> Result<(), RowError> {
        if let Some((prev, prev_loc)) = self.last {
            let sym = if self.name_symbol {
                format!(" for symbol {}", self.symbol)
            } else {
                String::new()
            };
            match time.cmp(&prev) {
                Ordering::Greater => {}
                Ordering::Equal => {
                    return Err(RowError::new(
                        Field::Timestamp,
                        format!(
                            "duplicate timestamp {}{sym}: {prev_loc} has the same time",
                            format_timestamp(time)
                        ),
                    ));
                }
                Ordering::Less => {
                    return Err(RowError::new(
                        Field::Timestamp,
                        format!(
                            "unsorted timestamps{sym}: {} is earlier than {} at {prev_loc}; \
                             bars must be in increasing time order",
                            format_timestamp(time),
                            format_timestamp(prev)
                        ),
                    ));
                }
            }
        }
        check_bar(&values)?;
        for ((column, value), field) in self.columns.iter_mut().zip(values).zip(Field::VALUES) {
            column
                .push(value, loc)
                .map_err(|message| RowError::new(field, message))?;
        }
        self.time.push(time);
        self.last = Some((time, loc));
        Ok(())
    }

    /// Appends the bars of the same symbol that follow in the file (checked row by row
    /// already); `Err` if they do not start after this series' last bar or cannot share its
    /// columns' scales.
    pub fn append(&mut self, other: SeriesBuilder) -> Result<(), ()> {
        let (Some((last, _)), Some(&first)) = (self.last, other.time.first()) else {
            if self.last.is_none() {
                *self = SeriesBuilder {
                    symbol: std::mem::take(&mut self.symbol),
                    name_symbol: self.name_symbol,
                    ..other
                };
            }
            return Ok(());
        };
        if first <= last {
            return Err(());
        }
        let SeriesBuilder {
            mut time,
            last,
            columns,
            ..
        } = other;
        for (column, more) in self.columns.iter_mut().zip(columns) {
            column.append(more)?;
        }
        self.time.append(&mut time);
        self.last = last;
        Ok(())
    }

    /// Room for `more` bars, so appending many blocks does not copy the columns as they grow.
    pub fn reserve(&mut self, more: usize) {
        self.time.reserve(more);
        for column in &mut self.columns {
            column.reserve(more);
        }
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// The close of the last bar, exactly as stored (for forward-filling a missing row).
    pub fn last_close(&self) -> Option<Value> {
        let close = &self.columns[3];
        Some(Value {
            mantissa: *close.mantissas.last()?,
            scale: close.scale,
            float: *close.floats.last()?,
        })
    }

    pub fn finish(self, source: &Path) -> BarSeries {
        let [open, high, low, close, volume] = self.columns.map(ColumnBuilder::finish);
        BarSeries {
            symbol: self.symbol,
            source: source.to_path_buf(),
            time: self.time.into(),
            open,
            high,
            low,
            close,
            volume,
        }
    }
}

/// The checks of one bar on its own (open, high, low, close, volume): high and low bound the
/// other prices, volume is not negative.
pub(crate) fn check_bar(values: &[Value; 5]) -> Result<(), RowError> {
    let [open, high, low, close, volume] = *values;
    let checks = [
        (Field::High, high, low, Ordering::Less, "below low"),
        (Field::High, high, open, Ordering::Less, "below open"),
        (Field::High, high, close, Ordering::Less, "below close"),
        (Field::Low, low, open, Ordering::Greater, "above open"),
        (Field::Low, low, close, Ordering::Greater, "above close"),
    ];
    for (field, a, b, bad, relation) in checks {
        if cmp(a, b) == bad {
            return Err(RowError::new(
                field,
                format!(
                    "{} {} is {relation} {}",
                    field.name(),
                    a.decimal(),
                    b.decimal()
                ),
            ));
        }
    }
    if volume.mantissa < 0 {
        return Err(RowError::new(
            Field::Volume,
            format!("volume {} is negative", volume.decimal()),
        ));
    }
    Ok(())
}

/// Routes rows to one `SeriesBuilder` per symbol, created in order of first appearance.
pub(crate) struct Router {
    series: Vec<SeriesBuilder>,
    by_symbol: HashMap<Vec<u8>, usize>,
    last: Option<usize>,
}

impl Router {
    /// With `default_symbol`, every row goes to that one series (files without a `symbol`
    /// column); without it, rows are split by the symbol passed to [`Router::series`].
    pub fn new(default_symbol: Option<&str>) -> Self {
        Self {
            series: default_symbol
                .map(|s| SeriesBuilder::new(s.to_owned(), false))
                .into_iter()
                .collect(),
            by_symbol: HashMap::new(),
            last: None,
        }
    }

    /// The series for a row; `symbol` (trimmed) is `None` for files without a symbol column.
    pub fn series(&mut self, symbol: Option<&[u8]>) -> Result<&mut SeriesBuilder, String> {
        let Some(sym) = symbol.map(<[u8]>::trim_ascii) else {
            return self
                .series
                .first_mut()
                .ok_or_else(|| "no symbol given".to_owned());
        };
        let k = match self.last {
            // Rows of one symbol usually come together: skip the map lookup.
            Some(k) if self.series[k].symbol.as_bytes() == sym => k,
            _ => {
                let k = match self.by_symbol.get(sym) {
                    Some(&k) => k,
                    None => {
                        if sym.is_empty() {
                            return Err("empty symbol".to_owned());
                        }
                        let name = std::str::from_utf8(sym)
                            .map_err(|_| "symbol is not valid UTF-8".to_owned())?;
                        self.by_symbol.insert(sym.to_vec(), self.series.len());
                        self.series.push(SeriesBuilder::new(name.to_owned(), true));
                        self.series.len() - 1
                    }
                };
                self.last = Some(k);
                k
            }
        };
        Ok(&mut self.series[k])
    }

    /// Appends the series of a router that parsed the rows following this one's, keeping
    /// the order of first appearance. `Err` where [`SeriesBuilder::append`] fails.
    pub fn append(&mut self, other: Router) -> Result<(), ()> {
        for series in other.series {
            let at = if series.name_symbol {
                self.by_symbol.get(series.symbol.as_bytes()).copied()
            } else {
                // A file without a symbol column: one series, always the first.
                (!self.series.is_empty()).then_some(0)
            };
            match at {
                Some(k) => self.series[k].append(series)?,
                None => {
                    if series.name_symbol {
                        self.by_symbol
                            .insert(series.symbol.as_bytes().to_vec(), self.series.len());
                    }
                    self.series.push(series);
                }
            }
        }
        self.last = None;
        Ok(())
    }

    /// Room for `factor` times the bars each series has now (an estimate of the whole file
    /// from its first block).
    pub fn reserve_scaled(&mut self, factor: f64) {
        for series in &mut self.series {
            series.reserve((series.len() as f64 * (factor - 1.0)).max(0.0) as usize);
        }
    }

    pub fn finish(self, source: &Path) -> Vec<BarSeries> {
        self.series.into_iter().map(|s| s.finish(source)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::decimal::parse_value;
    use super::*;

    fn v(text: &str) -> Value {
        parse_value(text.as_bytes()).expect(text)
    }

    fn bar(o: &str, h: &str, l: &str, c: &str, vol: &str) -> [Value; 5] {
        [v(o), v(h), v(l), v(c), v(vol)]
    }

    #[test]
    fn resolve_aliases_and_case() {
        for ts in [
            "timestamp",
            "Timestamp",
            " TIME ",
            "datetime",
            "Date",
            "\u{feff}date",
        ] {
            let header = [ts, "Open", "HIGH", " low", "close ", "Volume", "extra"];
            let c = Columns::resolve(&header).unwrap_or_else(|e| panic!("{ts}: {e}"));
            assert_eq!(c.timestamp, 0);
            assert_eq!(c.values, [1, 2, 3, 4, 5]);
            assert_eq!(c.symbol, None);
            assert_eq!(c.header_name(Field::High), "HIGH");
            assert_eq!(c.header_name(Field::Low), "low");
        }
        let c = Columns::resolve(&[
            "sym",
            "Symbol",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "ts",
            "date",
            "timestamp",
        ])
        .expect("resolve");
        assert_eq!((c.timestamp, c.symbol), (9, Some(1)));
    }

    #[test]
    fn resolve_errors() {
        let err = Columns::resolve(&["timestamp", "open", "close"]).expect_err("missing");
        assert!(
            err.contains("missing columns `high`, `low`, `volume`"),
            "{err}"
        );
        assert!(
            err.contains("columns found: `timestamp`, `open`, `close`"),
            "{err}"
        );
        let err = Columns::resolve(&["open", "high", "low", "close", "volume"]).expect_err("ts");
        assert!(err.contains("missing column `timestamp` (or"), "{err}");
        let c = Columns::resolve(&["Date", "Time", "open", "high", "low", "close", "volume"])
            .expect("date+time");
        assert_eq!((c.timestamp, c.time_of_day), (0, Some(1)));
        let err = Columns::resolve(&["time", "open", "open", "high", "low", "close", "volume"])
            .expect_err("dup");
        assert!(err.contains("`open` appears more than once"), "{err}");
    }

    #[test]
    fn ohlc_rules() {
        type Case<'a> = ([&'a str; 5], Option<(Field, &'a str)>);
        let cases: &[Case] = &[
            (["10", "11", "9", "10.5", "100"], None),
            (["10", "10", "10", "10", "0"], None),
            (["10.0", "10", "10.00", "10.000", "0"], None),
            (
                ["10", "10.5", "11.0", "10", "1"],
                Some((Field::High, "high 10.5 is below low 11.0")),
            ),
            (
                ["10.6", "10.5", "10", "10", "1"],
                Some((Field::High, "high 10.5 is below open 10.6")),
            ),
            (
                ["10", "10.5", "10", "10.51", "1"],
                Some((Field::High, "high 10.5 is below close 10.51")),
            ),
            (
                ["9.99", "10.5", "10", "10", "1"],
                Some((Field::Low, "low 10 is above open 9.99")),
            ),
            (
                ["10", "10.5", "10", "9", "1"],
                Some((Field::Low, "low 10 is above close 9")),
            ),
            (
                ["10", "10.5", "10", "10", "-0.5"],
                Some((Field::Volume, "volume -0.5 is negative")),
            ),
        ];
        for (i, (row, want)) in cases.iter().enumerate() {
            let mut b = SeriesBuilder::new("X".into(), false);
            let got = b.push(
                Location::Line(2),
                i as i64,
                bar(row[0], row[1], row[2], row[3], row[4]),
            );
            match (got, want) {
                (Ok(()), None) => {}
                (Err(e), Some((field, msg))) => {
                    assert_eq!(e.field, *field, "{row:?}");
                    assert_eq!(e.message, *msg, "{row:?}");
                }
                (got, want) => panic!("{row:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn time_order() {
        let mut b = SeriesBuilder::new("AAPL".into(), true);
        let ok = || bar("1", "1", "1", "1", "1");
        b.push(Location::Line(2), 100, ok()).expect("first");
        b.push(Location::Line(3), 200, ok()).expect("second");
        let e = b.push(Location::Line(4), 200, ok()).expect_err("dup");
        assert_eq!(e.field, Field::Timestamp);
        assert!(
            e.message.starts_with("duplicate timestamp"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("line 3") && e.message.contains("AAPL"),
            "{}",
            e.message
        );
        let e = b.push(Location::Line(4), 150, ok()).expect_err("unsorted");
        assert!(e.message.starts_with("unsorted"), "{}", e.message);
        assert!(e.message.contains("line 3"), "{}", e.message);
    }

    #[test]
    fn column_rescaling_and_overflow() {
        let mut c = ColumnBuilder::default();
        c.push(v("100"), Location::Row(1)).expect("a");
        c.push(v("1.25"), Location::Row(2)).expect("b");
        c.push(v("-3.5"), Location::Row(3)).expect("c");
        let col = c.finish();
        assert_eq!(col.exact.scale(), 2);
        assert_eq!(col.exact.mantissas(), &[10000, 125, -350]);

        let mut c = ColumnBuilder::default();
        c.push(v("-92233720368547758.1"), Location::Row(1))
            .expect("big");
        c.push(v("1.5"), Location::Row(2)).expect("same scale");
        let err = c
            .push(v("1.25"), Location::Row(3))
            .expect_err("scale 2 overflows row 1");
        assert!(err.contains("row 1"), "{err}");

        let mut c = ColumnBuilder::default();
        c.push(v("0.0000000001"), Location::Row(1)).expect("small");
        let err = c
            .push(v("1000000000"), Location::Row(2))
            .expect_err("too big at scale 10");
        assert!(err.contains("1000000000 cannot be stored"), "{err}");
    }
}
