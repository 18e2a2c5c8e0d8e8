//! Bar data loading: CSV and Parquet files into per-symbol columnar series.
//!
//! Every price and volume is kept twice: as an exact decimal (for accounting and for the
//! validation checks, which compare exact values) and as the `f64` parse of the same text (for
//! indicators and for handing to Python). Both readers feed the same row checks in the
//! `validate` module, so a file is accepted or rejected the same way whatever its format.

mod csv;
pub(crate) mod decimal;
mod format;
pub mod noise;
mod parquet;
mod timestamp;
mod validate;

use rust_decimal::Decimal;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::market::BarColumn;
use crate::model::TimestampNs;

pub use format::{ColumnMap, DateFormat, Format, FormatSpec, Header, OnMissing, Preset};
pub use timestamp::parse_timestamp;

/// Decimal values of one column, stored as `i64` mantissas at one shared scale.
///
/// The scale is the largest number of decimal places seen in the column; every value is
/// rescaled to it, so the column is a plain integer array (value = mantissa × 10^-scale).
/// Shared on clone (a run clones the loaded series for each market it builds) and copied
/// only if a shared column is appended to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecimalColumn {
    mantissas: Arc<Vec<i64>>,
    scale: u32,
}

impl DecimalColumn {
    /// Largest scale a column can have (the limit of `rust_decimal`).
    pub const MAX_SCALE: u32 = decimal::MAX_SCALE;

    /// A column from raw parts; `None` if `scale` exceeds [`Self::MAX_SCALE`].
    pub fn from_parts(mantissas: Vec<i64>, scale: u32) -> Option<Self> {
        (scale <= Self::MAX_SCALE).then_some(Self {
            mantissas: Arc::new(mantissas),
            scale,
        })
    }

    /// Value `i` as an exact decimal, at the column's scale. Panics if `i` is out of bounds,
    /// like slice indexing.
    pub fn get(&self, i: usize) -> Decimal {
        Decimal::new(self.mantissas[i], self.scale)
    }

    pub fn len(&self) -> usize {
        self.mantissas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mantissas.is_empty()
    }

    /// Number of decimal places shared by every value of the column.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The raw mantissas (value = mantissa × 10^-scale).
    pub fn mantissas(&self) -> &[i64] {
        &self.mantissas
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Decimal> + '_ {
        let scale = self.scale;
        self.mantissas.iter().map(move |&m| Decimal::new(m, scale))
    }

    fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            mantissas: Arc::new(self.mantissas[start..end].to_vec()),
            scale: self.scale,
        }
    }

    /// The mantissa and column scale `v` would be stored at, or why it cannot be stored. More
    /// decimal places than the column has rescale every stored value (checked here, in O(n):
    /// rare, a feed's precision seldom changes).
    fn fit(&self, v: decimal::Value) -> Result<(i64, u32), String> {
        if v.scale <= self.scale {
            let m = decimal::rescale(v.mantissa, self.scale - v.scale).ok_or_else(|| {
                format!(
                    "{} cannot be stored with the column's {} decimal places in a 64-bit mantissa",
                    v.decimal(),
                    self.scale
                )
            })?;
            return Ok((m, self.scale));
        }
        let k = v.scale - self.scale;
        if let Some(&m) = self
            .mantissas
            .iter()
            .find(|&&m| decimal::rescale(m, k).is_none())
        {
            return Err(format!(
                "{} has {} decimal places, and at that scale the column's value {} no longer \
                 fits a 64-bit mantissa",
                v.decimal(),
                v.scale,
                Decimal::new(m, self.scale)
            ));
        }
        Ok((v.mantissa, v.scale))
    }

    /// Appends a value [`Self::fit`] accepted.
    fn push_fitted(&mut self, (mantissa, scale): (i64, u32)) {
        if scale > self.scale {
            let k = scale - self.scale;
            for m in Arc::make_mut(&mut self.mantissas) {
                // Cannot fail: `fit` checked every stored value at this scale.
                *m = decimal::rescale(*m, k).unwrap_or(*m);
            }
            self.scale = scale;
        }
        Arc::make_mut(&mut self.mantissas).push(mantissa);
    }
}

/// One price or volume column in both representations.
#[derive(Debug, Clone)]
pub struct Column {
    /// `values[i]` is `text.parse::<f64>()` of the same text that gave `exact.get(i)`
    /// (correctly rounded), never a conversion from the decimal.
    pub values: BarColumn<f64>,
    pub exact: DecimalColumn,
}

impl Column {
    /// A column parsed from decimal texts, as the readers do (handy for building series in
    /// tests). Errors say `row N`, N being the 1-based position of the text.
    pub fn parse_texts<S: AsRef<str>>(texts: &[S]) -> Result<Column, String> {
        let mut builder = validate::ColumnBuilder::default();
        for (i, text) in texts.iter().enumerate() {
            let loc = Location::Row(i + 1);
            let value = decimal::parse_value(text.as_ref().as_bytes())
                .map_err(|e| format!("{loc}: {e}"))?;
            builder
                .push(value, loc)
                .map_err(|e| format!("{loc}: {e}"))?;
        }
        Ok(builder.finish())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            values: BarColumn::from_vec(self.values[start..end].to_vec()),
            exact: self.exact.slice(start, end),
        }
    }
}

/// The bars of one symbol from one file, in strictly increasing open time.
#[derive(Debug, Clone)]
pub struct BarSeries {
    pub symbol: String,
    pub source: PathBuf,
    /// Bar open time, UTC nanoseconds, strictly increasing.
    pub time: BarColumn<TimestampNs>,
    pub open: Column,
    pub high: Column,
    pub low: Column,
    pub close: Column,
    pub volume: Column,
}

impl BarSeries {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// A series with no bars yet, for a live feed to append to.
    pub fn empty(symbol: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        let column = || Column {
            values: BarColumn::from_vec(Vec::new()),
            exact: DecimalColumn::default(),
        };
        BarSeries {
            symbol: symbol.into(),
            source: source.into(),
            time: BarColumn::from_vec(Vec::new()),
            open: column(),
            high: column(),
            low: column(),
            close: column(),
            volume: column(),
        }
    }

    /// Appends one bar from its decimal texts (open, high, low, close, volume), with the checks
    /// a file's rows get: later than the last bar, high and low bounding the prices, volume not
    /// negative. All or nothing: on an error the series is unchanged.
    pub fn append(&mut self, open_time: TimestampNs, texts: [&str; 5]) -> Result<(), String> {
        if let Some(&last) = self.time.last()
            && open_time <= last
        {
            return Err(format!(
                "bar at {} is not after the last bar of {} at {}",
                crate::model::format_timestamp(open_time),
                self.symbol,
                crate::model::format_timestamp(last)
            ));
        }
        let mut values = [decimal::Value {
            mantissa: 0,
            scale: 0,
            float: 0.0,
        }; 5];
        for ((value, text), field) in values.iter_mut().zip(texts).zip(validate::Field::VALUES) {
            *value = decimal::parse_value(text.as_bytes())
                .map_err(|e| format!("{} `{text}`: {e}", field.name()))?;
        }
        validate::check_bar(&values).map_err(|e| e.message)?;
        let columns = [
            &mut self.open,
            &mut self.high,
            &mut self.low,
            &mut self.close,
            &mut self.volume,
        ];
        let mut fitted = [(0, 0); 5];
        for ((fit, column), (value, field)) in fitted
            .iter_mut()
            .zip(&columns)
            .zip(values.iter().zip(validate::Field::VALUES))
        {
            *fit = column
                .exact
                .fit(*value)
                .map_err(|e| format!("{}: {e}", field.name()))?;
        }
        for ((column, fit), value) in columns.into_iter().zip(fitted).zip(values) {
            column.exact.push_fitted(fit);
            column.values.push(value.float);
        }
        self.time.push(open_time);
        Ok(())
    }

    /// Keeps bars with `start <= time < end`; times are sorted, so this is two binary searches.
    pub fn retain_range(self, start: Option<i64>, end: Option<i64>) -> Self {
        let lo = start.map_or(0, |s| self.time.partition_point(|&t| t < s));
        let hi = end.map_or(self.time.len(), |e| self.time.partition_point(|&t| t < e));
        if lo == 0 && hi == self.time.len() {
            return self;
        }
        let hi = hi.max(lo);
        Self {
            symbol: self.symbol,
            source: self.source,
            time: BarColumn::from_vec(self.time[lo..hi].to_vec()),
            open: self.open.slice(lo, hi),
            high: self.high.slice(lo, hi),
            low: self.low.slice(lo, hi),
            close: self.close.slice(lo, hi),
            volume: self.volume.slice(lo, hi),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Symbol for a file without a `symbol` column (default: the file stem, `SPY.csv` → `SPY`).
    /// Ignored when the file has a `symbol` column.
    pub symbol: Option<String>,
    /// Keep bars whose open time is at or after this (UTC ns).
    pub start_ns: Option<i64>,
    /// Keep bars whose open time is before this (UTC ns, exclusive).
    pub end_ns: Option<i64>,
    /// The file's layout (delimiter, header, columns, time format and zone, missing values).
    pub format: Format,
}

/// Where in a file a problem is: a CSV line (1-based, the header is line 1) or a Parquet data
/// row (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Line(usize),
    Row(usize),
}

impl Location {
    pub fn number(self) -> usize {
        match self {
            Location::Line(n) | Location::Row(n) => n,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Renders ` line 14, column `high`` (either part may be absent) after the file name.
struct Place<'a>(&'a Option<Location>, &'a Option<String>);

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(loc), Some(col)) => write!(f, " {loc}, column `{col}`"),
            (Some(loc), None) => write!(f, " {loc}"),
            (None, Some(col)) => write!(f, ", column `{col}`"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: unsupported data file type; supported formats are .csv (also .txt, .tsv), .parquet and .pq",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf },
    /// The Parquet decoder rejected the file (corrupt, truncated, not Parquet, ...).
    #[error("{}: not a readable Parquet file: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    /// The file was read but its content is not acceptable bar data.
    #[error("{}{}: {message}", path.display(), Place(location, column))]
    Invalid {
        path: PathBuf,
        location: Option<Location>,
        column: Option<String>,
        message: String,
        /// The option that would read the file, when one would.
        hint: Option<String>,
    },
}

impl DataError {
    pub fn path(&self) -> &Path {
        match self {
            DataError::Io { path, .. }
            | DataError::UnsupportedFormat { path }
            | DataError::Parquet { path, .. }
            | DataError::Invalid { path, .. } => path,
        }
    }

    /// CSV line (header = 1) or Parquet data row (first row = 1), where the error has one.
    pub fn line_or_row(&self) -> Option<usize> {
        self.location().map(Location::number)
    }

    pub fn location(&self) -> Option<Location> {
        match self {
            DataError::Invalid { location, .. } => *location,
            _ => None,
        }
    }

    /// What to try instead (an option that reads such a file), where there is one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            DataError::Invalid { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn with_hint(mut self, text: Option<String>) -> Self {
        if let DataError::Invalid { hint, .. } = &mut self {
            *hint = text;
        }
        self
    }

    /// The column as named in the file's header, where the error concerns one column.
    pub fn column(&self) -> Option<&str> {
        match self {
            DataError::Invalid { column, .. } => column.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        path: &Path,
        location: Option<Location>,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Invalid {
            path: path.to_path_buf(),
            location,
            column: column.map(str::to_owned),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Loads every series in a bar file: `.csv`, or `.parquet` / `.pq` (extension matched
/// case-insensitively).
///
/// The whole file is validated first; then bars outside `opts.start_ns..opts.end_ns` are
/// dropped. A series the range leaves without bars is returned empty, not as an error: the
/// caller decides whether that matters. A file with no bars at all is an error.
///
/// Files with a `symbol` column give one series per symbol, in order of first appearance.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Vec<BarSeries>, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let default_symbol = match &opts.symbol {
        Some(s) => s.clone(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let series = match ext.as_deref() {
        Some("csv" | "txt" | "tsv") => self::csv::read(path, &default_symbol, &opts.format)?,
        Some("parquet" | "pq") => self::parquet::read(path, &default_symbol, &opts.format)?,
        _ => {
            return Err(DataError::UnsupportedFormat {
                path: path.to_path_buf(),
            });
        }
    };
    Ok(series
        .into_iter()
        .map(|s| s.retain_range(opts.start_ns, opts.end_ns))
        .collect())
}

/// Parquet files of one symbol, each after the last (a catalog dataset's partitions), as one
/// series, keeping bars in `start_ns..end_ns`. Every row is checked as a file's rows are.
pub fn load_parts(
    paths: &[PathBuf],
    symbol: &str,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
) -> Result<BarSeries, DataError> {
    let series = match parquet::read_parts_columnar(paths, symbol)? {
        Some(series) => series,
        None => parquet::read_parts(paths, symbol)?,
    };
    Ok(series.retain_range(start_ns, end_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        path
    }

    const FIVE: &str = "timestamp,open,high,low,close,volume\n\
        2020-01-01T00:00:00Z,1,2,0.5,1.5,10\n\
        2020-01-01T00:01:00Z,1,2,0.5,1.5,10\n\
        2020-01-01T00:02:00Z,1,2,0.5,1.5,10\n\
        2020-01-01T00:03:00Z,1,2,0.5,1.5,10\n\
        2020-01-01T00:04:00Z,1,2,0.5,1.5,10\n";

    const T0: i64 = 1_577_836_800_000_000_000;
    const MIN: i64 = 60_000_000_000;

    #[test]
    fn range_filter_is_half_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "SPY.csv", FIVE);
        let opts = LoadOptions {
            start_ns: Some(T0 + MIN),
            end_ns: Some(T0 + 3 * MIN),
            ..Default::default()
        };
        let s = load(&path, &opts).expect("load");
        assert_eq!(s.len(), 1);
        assert_eq!(&s[0].time[..], &[T0 + MIN, T0 + 2 * MIN]);
        assert_eq!(s[0].close.len(), 2);
        assert_eq!(s[0].close.exact.len(), 2);
        assert_eq!(s[0].close.exact.get(1), Decimal::new(15, 1));
    }

    #[test]
    fn range_filter_leaving_nothing_returns_empty_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "SPY.csv", FIVE);
        for (start, end) in [
            (Some(T0 + 100 * MIN), None),
            (None, Some(T0)),
            (Some(T0 + 3 * MIN), Some(T0 + MIN)),
        ] {
            let opts = LoadOptions {
                start_ns: start,
                end_ns: end,
                ..Default::default()
            };
            let s = load(&path, &opts).expect("load");
            assert_eq!(s.len(), 1);
            assert!(s[0].is_empty());
            assert!(s[0].open.is_empty() && s[0].open.exact.is_empty());
        }
    }

    #[test]
    fn validation_covers_bars_outside_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{FIVE}2020-01-01T00:05:00Z,1,2,3,1.5,10\n");
        let path = write(&dir, "SPY.csv", &text);
        let opts = LoadOptions {
            end_ns: Some(T0 + MIN),
            ..Default::default()
        };
        let err = load(&path, &opts).expect_err("high < low after the range");
        assert_eq!(err.line_or_row(), Some(7));
    }

    #[test]
    fn file_stem_and_option_symbol() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "SPY.csv", FIVE);
        let s = load(&path, &LoadOptions::default()).expect("load");
        assert_eq!(s[0].symbol, "SPY");
        assert_eq!(s[0].source, path);
        let opts = LoadOptions {
            symbol: Some("QQQ".into()),
            ..Default::default()
        };
        assert_eq!(load(&path, &opts).expect("load")[0].symbol, "QQQ");
    }

    #[test]
    fn unsupported_extension_names_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["x.json", "x", "x.csv.gz"] {
            let path = write(&dir, name, FIVE);
            let err = load(&path, &LoadOptions::default()).expect_err("unsupported");
            let msg = err.to_string();
            assert!(msg.contains(".csv") && msg.contains(".parquet"), "{msg}");
            assert_eq!(err.path(), path);
        }
    }

    #[test]
    fn extension_is_case_insensitive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "SPY.CSV", FIVE);
        assert_eq!(
            load(&path, &LoadOptions::default()).expect("load")[0].len(),
            5
        );
    }

    #[test]
    fn missing_file_is_io_error_naming_path() {
        let path = Path::new("/nonexistent/dir/SPY.csv");
        let err = load(path, &LoadOptions::default()).expect_err("missing");
        assert!(matches!(err, DataError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/dir/SPY.csv"));
    }

    #[test]
    fn error_display_format() {
        let e = DataError::invalid(
            Path::new("data/x.csv"),
            Some(Location::Line(14)),
            Some("high"),
            "high 10.5 is below low 11.0",
        );
        assert_eq!(
            e.to_string(),
            "data/x.csv line 14, column `high`: high 10.5 is below low 11.0"
        );
        assert_eq!(e.line_or_row(), Some(14));
        assert_eq!(e.column(), Some("high"));
        let e = DataError::invalid(Path::new("d.pq"), Some(Location::Row(3)), None, "m");
        assert_eq!(e.to_string(), "d.pq row 3: m");
        let e = DataError::invalid(Path::new("d.pq"), None, None, "contains no bars");
        assert_eq!(e.to_string(), "d.pq: contains no bars");
        assert_eq!(e.line_or_row(), None);
    }

    #[test]
    fn column_parse_texts_rescales() {
        let c = Column::parse_texts(&["1", "2.5", "3.125"]).expect("parse");
        assert_eq!(c.exact.scale(), 3);
        assert_eq!(c.exact.mantissas(), &[1000, 2500, 3125]);
        assert_eq!(&c.values[..], &[1.0, 2.5, 3.125]);
        assert!(Column::parse_texts(&["1", "x"]).is_err());
    }

    #[test]
    fn live_appends_are_checked_like_file_rows_and_all_or_nothing() {
        let mut s = BarSeries::empty("BTC/USDT", "ccxt:binance");
        s.append(60, ["100.5", "101", "100", "100.75", "3"])
            .unwrap();
        // Not after the last bar.
        let err = s.append(60, ["1", "1", "1", "1", "1"]).unwrap_err();
        assert!(err.contains("not after the last bar of BTC/USDT"), "{err}");
        // High below low, negative volume, text that is no number.
        assert!(
            s.append(120, ["1", "1", "2", "1", "1"])
                .unwrap_err()
                .contains("high 1 is below low 2")
        );
        assert!(
            s.append(120, ["1", "1", "1", "1", "-1"])
                .unwrap_err()
                .contains("volume -1 is negative")
        );
        assert!(
            s.append(120, ["1", "1", "1", "x", "1"])
                .unwrap_err()
                .starts_with("close `x`")
        );
        assert_eq!(s.len(), 1, "refused bars leave the series unchanged");
        // More decimal places than before rescale the column, exactly.
        s.append(120, ["100.75", "100.755", "100.7", "100.755", "0.001"])
            .unwrap();
        assert_eq!(s.close.exact.scale(), 3);
        assert_eq!(s.close.exact.get(0), rust_decimal::Decimal::new(100750, 3));
        assert_eq!(s.close.exact.get(1).to_string(), "100.755");
        assert_eq!(&s.close.values[..], &[100.75, 100.755]);
        assert_eq!(&s.time[..], &[60, 120]);
    }

    #[test]
    fn an_append_that_cannot_be_rescaled_is_refused_whole() {
        let mut s = BarSeries::empty("X", "feed");
        s.append(0, ["1", "1", "1", "1", "900000000000000000"])
            .unwrap();
        // 9e17 at 2 more places overflows a 64-bit mantissa: refused, nothing half-appended.
        let err = s.append(1, ["1", "1", "1", "1", "0.01"]).unwrap_err();
        assert!(err.starts_with("volume:"), "{err}");
        assert_eq!(
            (s.len(), s.open.exact.len(), s.volume.values.len()),
            (1, 1, 1)
        );
    }
}
