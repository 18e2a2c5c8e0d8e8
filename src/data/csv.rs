//! CSV reader: one reused `ByteRecord`, fields parsed straight from the bytes (no per-row
//! `String`s), every row handed to the shared checks in `validate`.
//!
//! The file's [`Format`] picks the delimiter (or it is detected from the first line), whether
//! the first line is a header, which column is which and how times are read. Rows with
//! missing values are refused, skipped or forward-filled; a newest-first file is read whole
//! and appended oldest first.
//!
//! A large file is parsed on every core: the main thread reads it in blocks cut at line ends
//! and workers parse the blocks into per-block series, which are appended in file order. That
//! is only sound when a line end is always a record end, so a file with any `"` (a quoted field
//! may hold a line break) is parsed by one thread, as is any file the parallel pass rejects: the
//! single-threaded pass is the one that finds and words the error, with its line number.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::{Mutex, mpsc};

use ::csv::{ByteRecord, ReaderBuilder};

use super::decimal::{Value, parse_value};
use super::format::{
    ColumnMap, Format, Header, OnMissing, TimeParser, detect_delimiter, guess_date_formats,
    is_missing, other_delimiter, show_delimiter,
};
use super::timestamp::parse_bytes;
use super::validate::{Columns, Field, ResolveError, Router, RowError};
use super::{BarSeries, DataError, Location};

/// Bytes per block handed to a parsing worker (small in tests, so small files span many).
const BLOCK_BYTES: usize = if cfg!(test) { 4 << 10 } else { 4 << 20 };
/// Files smaller than this are parsed by one thread (starting workers would not pay).
const PARALLEL_MIN_BYTES: u64 = 2 * BLOCK_BYTES as u64;
/// Rows read ahead to tell an oldest-first file from a newest-first one.
const ORDER_PEEK_ROWS: usize = 64;

/// Reads a whole CSV file into one series per symbol (before any time-range filtering).
pub(super) fn read(
    path: &Path,
    default_symbol: &str,
    format: &Format,
) -> Result<Vec<BarSeries>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    // Forward-filling and zone conversion look at the previous row, which a block's first row
    // does not have: those files are parsed by one thread.
    let stateless = format.on_missing != OnMissing::Ffill && format.tz.is_none();
    if size >= PARALLEL_MIN_BYTES && workers > 1 && stateless {
        match read_parallel(path, file, default_symbol, format, workers) {
            Ok(Some(series)) => return Ok(series),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        return read_from(path, file, default_symbol, format);
    }
    read_from(path, file, default_symbol, format)
}

fn reader<R: Read>(input: R, delimiter: u8) -> ::csv::Reader<R> {
    // Header read as a plain record so its line is counted like any other; `flexible` so a
    // short or long row is reported by us with its line rather than as a bare csv error.
    ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(1 << 16)
        .from_reader(input)
}

/// How to read a file, decided from its first line.
struct Layout {
    columns: Columns,
    delimiter: u8,
    /// Whether the first line is a header (and not a bar).
    header: bool,
}

/// The first line of `bytes` (without its line end).
fn first_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The delimiter, header and columns of a file whose first line is `line`.
fn layout(path: &Path, line: &[u8], format: &Format) -> Result<Layout, DataError> {
    let delimiter = format.delimiter.unwrap_or_else(|| detect_delimiter(line));
    let mut record = ByteRecord::new();
    let read = reader(line, delimiter)
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?;
    if !read || line.trim_ascii().is_empty() {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: the file is empty",
        ));
    }
    let fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let standard = ColumnMap::standard();
    let positional = format.columns.as_ref().unwrap_or(&standard);
    let header = match format.header {
        Header::Yes => true,
        Header::No => false,
        // A header unless the first line's time field reads as a time.
        Header::Auto => match Columns::resolve_with(&fields, Some(positional), false) {
            Ok(columns) => {
                let field = |i: usize| record.get(i).unwrap_or_default();
                TimeParser::new(format)
                    .parse(field(columns.timestamp), columns.time_of_day.map(field))
                    .is_err()
            }
            Err(_) => true,
        },
    };
    let map = if header {
        format.columns.as_ref()
    } else {
        Some(positional)
    };
    let columns = Columns::resolve_with(&fields, map, header).map_err(|e| {
        let hint = layout_hint(&fields, delimiter, header, format, &e);
        DataError::invalid(path, Some(Location::Line(1)), None, e.message).with_hint(hint)
    })?;
    Ok(Layout {
        columns,
        delimiter,
        header,
    })
}

/// The option that would read a file whose first line could not be resolved.
fn layout_hint(
    fields: &[String],
    delimiter: u8,
    header: bool,
    format: &Format,
    error: &ResolveError,
) -> Option<String> {
    if let [only] = fields
        && let Some(d) = other_delimiter(only, delimiter)
    {
        let shown = if d == b'\t' {
            "\\t".to_owned()
        } else {
            (d as char).to_string()
        };
        return Some(format!(
            "looks `{shown}`-separated: try `--delimiter {}`",
            show_delimiter(d)
        ));
    }
    let field = |i: usize| fields.get(i).map_or("", |f| f.trim());
    let is_time = |i: usize| parse_bytes(field(i).as_bytes()).is_ok();
    let numbers = fields
        .iter()
        .filter(|f| parse_value(f.as_bytes()).is_ok())
        .count();
    if header && format.columns.is_none() {
        let epoch = field(0).len() >= 12 && field(0).bytes().all(|b| b.is_ascii_digit());
        if epoch && fields.len() >= 12 {
            return Some(
                "this looks like a Binance klines file (no header, epoch times): try \
                 `--preset binance`"
                    .to_owned(),
            );
        }
        if guess_date_formats(field(0)).iter().any(|f| f == "%Y.%m.%d") && field(1).contains(':') {
            return Some(
                "this looks like a MetaTrader export (date, time, open, high, low, close, \
                 volume): try `--preset metatrader`"
                    .to_owned(),
            );
        }
        if is_time(0) || numbers >= 4 {
            return Some(
                "the first line looks like data, not column names: try `--no-header` (the \
                 columns are then timestamp,open,high,low,close,volume in that order; \
                 `--columns` gives another order)"
                    .to_owned(),
            );
        }
    }
    let role = error.missing.first()?;
    Some(if header {
        format!(
            "say which column holds the {}: `--columns {}=NAME` (or a 0-based position)",
            role.name(),
            role.name()
        )
    } else {
        format!(
            "give the columns' order with `--columns`, e.g. `--columns timestamp,open,high,low,close,volume` \
             (the file has {} columns)",
            fields.len()
        )
    })
}

fn read_from(
    path: &Path,
    input: impl Read,
    default_symbol: &str,
    format: &Format,
) -> Result<Vec<BarSeries>, DataError> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let head = input.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.is_empty() {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: the file is empty",
        ));
    }
    let layout = layout(path, first_line(head), format)?;
    let mut reader = reader(input, layout.delimiter);
    let mut record = ByteRecord::new();
    if layout.header {
        reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(path, e))?;
    }
    let mut router = Router::new(layout.columns.symbol.is_none().then_some(default_symbol));
    let mut rows = RowReader::new(path, &layout, format);
    // Read ahead to see which way the file is sorted.
    let mut peeked = Vec::new();
    while peeked.len() < ORDER_PEEK_ROWS
        && reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(path, e))?
    {
        peeked.push(record.clone());
    }
    if rows.newest_first(&peeked) {
        rows.pending = Some(Vec::new());
    }
    for record in &peeked {
        rows.row(record, &mut router)?;
    }
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        rows.row(&record, &mut router)?;
    }
    let n = rows.finish(&mut router)?;
    if n == 0 {
        return Err(no_rows(path, &layout, !peeked.is_empty()));
    }
    Ok(router.finish(path))
}

fn no_rows(path: &Path, layout: &Layout, had_rows: bool) -> DataError {
    let message = if had_rows {
        "contains no bars: every row has a missing value and was skipped"
    } else if layout.header {
        "contains no bars: the header has no rows after it"
    } else {
        "contains no bars: the file has no rows"
    };
    DataError::invalid(path, None, None, message)
}

/// A row of a newest-first file, kept until the whole file is read.
struct Pending {
    loc: Location,
    symbol: Option<Box<[u8]>>,
    time: i64,
    values: Result<[Value; 5], Field>,
}

const ZERO: Value = Value {
    mantissa: 0,
    scale: 0,
    float: 0.0,
};

/// Parses records into a [`Router`] under one file's layout.
struct RowReader<'a> {
    path: &'a Path,
    columns: &'a Columns,
    format: &'a Format,
    time: TimeParser,
    /// `Some` for a newest-first file: rows wait here and are appended in reverse at the end.
    pending: Option<Vec<Pending>>,
    rows: usize,
    /// Whether the file's first line was a header (for messages).
    header: bool,
}

impl<'a> RowReader<'a> {
    fn new(path: &'a Path, layout: &'a Layout, format: &'a Format) -> Self {
        Self {
            path,
            columns: &layout.columns,
            format,
            time: TimeParser::new(format),
            pending: None,
            rows: 0,
            header: layout.header,
        }
    }

    /// Whether the file is newest-first: the rows of the first symbol among the `peeked` ones
    /// (the first rows of the file) strictly decrease in time, and there are at least two. A
    /// file in any other order is read as written (and refused where it goes back).
    fn newest_first(&self, peeked: &[ByteRecord]) -> bool {
        let at = self.columns.symbol;
        let symbol = move |r: &ByteRecord| -> Option<Vec<u8>> {
            at.and_then(|i| r.get(i)).map(<[u8]>::to_vec)
        };
        let Some(first) = peeked.first() else {
            return false;
        };
        let mut parser = TimeParser::new(self.format);
        let mut times = Vec::new();
        for r in peeked.iter().filter(|r| symbol(r) == symbol(first)) {
            let field = |i: usize| r.get(i).unwrap_or_default();
            match parser.parse(
                field(self.columns.timestamp),
                self.columns.time_of_day.map(field),
            ) {
                Ok(t) => times.push(t),
                Err(_) => return false,
            }
        }
        times.len() >= 2 && times.windows(2).all(|w| w[1] < w[0])
    }

    fn located(&self, loc: Location, e: RowError) -> DataError {
        DataError::invalid(
            self.path,
            Some(loc),
            Some(self.columns.header_name(e.field)),
            e.message,
        )
    }

    #[inline]
    fn row(&mut self, record: &ByteRecord, router: &mut Router) -> Result<(), DataError> {
        let loc = Location::Line(record.position().map_or(0, |p| p.line() as usize));
        let columns = self.columns;
        let n_fields = columns.width();
        if record.len() != n_fields {
            let what = if self.header {
                "the header has"
            } else {
                "the first line has"
            };
            return Err(DataError::invalid(
                self.path,
                Some(loc),
                None,
                format!("has {} fields but {what} {n_fields}", record.len()),
            ));
        }
        // Lengths were checked above, so `get` always succeeds; no indexing panics regardless.
        let field = |i: usize| record.get(i).unwrap_or_default();
        let ts = field(columns.timestamp);
        let time = match self.time.parse(ts, columns.time_of_day.map(field)) {
            Ok(t) => t,
            Err(m) => {
                // A bad symbol is reported before a bad time, as rows are checked in order.
                router
                    .series(columns.symbol.map(field))
                    .map_err(|m| self.located(loc, RowError::new(Field::Symbol, m)))?;
                let hint = self.time_hint(ts);
                return Err(self
                    .located(loc, RowError::new(Field::Timestamp, m))
                    .with_hint(hint));
            }
        };
        let mut values = [ZERO; 5];
        let mut missing = None;
        for (k, slot) in values.iter_mut().enumerate() {
            let text = field(columns.values[k]);
            match parse_value(text) {
                Ok(v) => *slot = v,
                Err(m) if is_missing(text) && self.format.on_missing != OnMissing::Fail => {
                    let _ = m;
                    missing.get_or_insert(Field::VALUES[k]);
                }
                Err(m) => {
                    let hint = is_missing(text).then(|| {
                        "rows with missing values: try `--on-missing skip` to leave them out \
                         or `--on-missing ffill` to repeat the previous close"
                            .to_owned()
                    });
                    return Err(self
                        .located(loc, RowError::new(Field::VALUES[k], m))
                        .with_hint(hint));
                }
            }
        }
        let values = missing.map_or(Ok(values), Err);
        let symbol = columns.symbol.map(field);
        match &mut self.pending {
            Some(pending) => {
                pending.push(Pending {
                    loc,
                    symbol: symbol.map(Box::from),
                    time,
                    values,
                });
                Ok(())
            }
            None => self.emit(router, loc, symbol, time, values),
        }
    }

    /// Appends one parsed row (or what `--on-missing` makes of it) to its series.
    #[inline]
    fn emit(
        &mut self,
        router: &mut Router,
        loc: Location,
        symbol: Option<&[u8]>,
        time: i64,
        values: Result<[Value; 5], Field>,
    ) -> Result<(), DataError> {
        let series = router
            .series(symbol)
            .map_err(|m| self.located(loc, RowError::new(Field::Symbol, m)))?;
        let values = match values {
            Ok(values) => values,
            Err(_) => match (self.format.on_missing, series.last_close()) {
                (OnMissing::Ffill, Some(close)) => [close, close, close, close, ZERO],
                _ => return Ok(()),
            },
        };
        series
            .push(loc, time, values)
            .map_err(|e| self.located(loc, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Appends the rows of a newest-first file, oldest first; returns the number of bars.
    fn finish(mut self, router: &mut Router) -> Result<usize, DataError> {
        if let Some(pending) = self.pending.take() {
            for row in pending.into_iter().rev() {
                self.emit(router, row.loc, row.symbol.as_deref(), row.time, row.values)?;
            }
        }
        Ok(self.rows)
    }

    fn time_hint(&self, text: &[u8]) -> Option<String> {
        if self.format.date_format.is_some() {
            return None;
        }
        let text = String::from_utf8_lossy(text);
        match &guess_date_formats(&text)[..] {
            [] => None,
            [one] => Some(format!("try `--date-format '{one}'`")),
            [one, two, ..] => Some(format!(
                "try `--date-format '{one}'` (or `--date-format '{two}'` if that is the order)"
            )),
        }
    }
}

/// The file parsed by `workers` threads, block by block. `Ok(None)` when the parallel pass
/// cannot be trusted with this file (a `"` in it) or found a problem: the caller then parses it
/// with one thread, which reports the problem exactly as it always has.
fn read_parallel(
    path: &Path,
    mut file: File,
    default_symbol: &str,
    format: &Format,
    workers: usize,
) -> Result<Option<Vec<BarSeries>>, DataError> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut pending = Vec::with_capacity(BLOCK_BYTES);
    let header_end = loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            break end + 1;
        }
        if !fill(path, &mut file, &mut pending)? {
            return Ok(None); // no line end at all: one line, nothing to split
        }
    };
    if pending.contains(&b'"') {
        return Ok(None);
    }
    let layout = layout(path, first_line(&pending), format)?;
    if layout.header {
        pending.drain(..header_end);
    }
    let default_symbol = layout.columns.symbol.is_none().then_some(default_symbol);

    let (blocks_tx, blocks_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let blocks_rx = Mutex::new(blocks_rx);
    let (parsed_tx, parsed_rx) = mpsc::channel::<(usize, Option<(Router, usize)>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let parsed_tx = parsed_tx.clone();
            let blocks_rx = &blocks_rx;
            let layout = &layout;
            scope.spawn(move || {
                loop {
                    // A poisoned lock means another worker panicked; stop taking blocks.
                    let next = match blocks_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, block)) = next else { return };
                    let mut router = Router::new(default_symbol);
                    let parsed = parse_block(path, &block, layout, format, &mut router)
                        .ok()
                        .map(|rows| (router, rows));
                    if parsed_tx.send((index, parsed)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(parsed_tx);
        let merged = feed_and_merge(
            path,
            &mut file,
            pending,
            &blocks_tx,
            &parsed_rx,
            default_symbol,
            size,
        );
        drop(blocks_tx); // workers finish the blocks they hold, then stop
        let (router, rows) = match merged? {
            Some(done) => done,
            None => return Ok(None),
        };
        Ok((rows > 0).then(|| router.finish(path)))
    })
}

/// One block's rows, oldest first only (a newest-first file fails here and goes to the
/// one-thread pass, which reverses it).
fn parse_block(
    path: &Path,
    block: &[u8],
    layout: &Layout,
    format: &Format,
    router: &mut Router,
) -> Result<usize, DataError> {
    let mut reader = reader(block, layout.delimiter);
    let mut rows = RowReader::new(path, layout, format);
    let mut record = ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        rows.row(&record, router)?;
    }
    rows.finish(router)
}

/// Reads the rest of the file in blocks cut after a line end, sends them to the workers, and
/// appends their results in file order. `None` when a block had a quote or failed to parse, or
/// two blocks do not join (the sequential pass then words the error).
fn feed_and_merge(
    path: &Path,
    file: &mut File,
    mut pending: Vec<u8>,
    blocks: &mpsc::SyncSender<(usize, Vec<u8>)>,
    parsed: &mpsc::Receiver<(usize, Option<(Router, usize)>)>,
    default_symbol: Option<&str>,
    file_bytes: u64,
) -> Result<Option<(Router, usize)>, DataError> {
    let mut merged = Router::new(default_symbol);
    let mut rows = 0usize;
    let mut sent = 0usize;
    let mut next = 0usize;
    let mut waiting = std::collections::BTreeMap::new();
    let mut sizes = Vec::new();
    let mut take = |done: (usize, Option<(Router, usize)>),
                    merged: &mut Router,
                    rows: &mut usize,
                    next: &mut usize,
                    sizes: &[usize]|
     -> bool {
        waiting.insert(done.0, done.1);
        while let Some(result) = waiting.remove(next) {
            let Some((router, n)) = result else {
                return false;
            };
            if merged.append(router).is_err() {
                return false;
            }
            if *next == 0 {
                // Size the columns for the whole file from the first block's rows per byte.
                let first = sizes.first().copied().unwrap_or(1).max(1) as f64;
                merged.reserve_scaled(file_bytes as f64 / first * 1.02);
            }
            *rows += n;
            *next += 1;
        }
        true
    };
    let mut at_end = false;
    while !at_end {
        // A whole block, or more when a line is longer than that.
        while !at_end && (pending.len() < BLOCK_BYTES || !pending.contains(&b'\n')) {
            at_end = !fill(path, file, &mut pending)?;
        }
        let cut = match pending.iter().rposition(|&b| b == b'\n') {
            Some(i) if !at_end => i + 1,
            _ => pending.len(),
        };
        let rest = pending.split_off(cut);
        let block = std::mem::replace(&mut pending, rest);
        if block.contains(&b'"') {
            return Ok(None);
        }
        if block.is_empty() {
            break;
        }
        sizes.push(block.len());
        if blocks.send((sent, block)).is_err() {
            return Ok(None);
        }
        sent += 1;
        // Merge what is ready while the workers parse.
        while let Ok(done) = parsed.try_recv() {
            if !take(done, &mut merged, &mut rows, &mut next, &sizes) {
                return Ok(None);
            }
        }
    }
    while next < sent {
        let Ok(done) = parsed.recv() else {
            return Ok(None);
        };
        if !take(done, &mut merged, &mut rows, &mut next, &sizes) {
            return Ok(None);
        }
    }
    Ok(Some((merged, rows)))
}

/// Appends up to one block of the file to `buf`; false at the end of the file.
fn fill(path: &Path, file: &mut File, buf: &mut Vec<u8>) -> Result<bool, DataError> {
    let len = buf.len();
    buf.resize(len + BLOCK_BYTES, 0);
    let read = loop {
        match file.read(&mut buf[len..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    };
    buf.truncate(len + read);
    Ok(read > 0)
}

fn csv_error(path: &Path, e: ::csv::Error) -> DataError {
    // With `flexible` byte records, the reader's only real failure is I/O.
    let loc = e.position().map(|p| Location::Line(p.line() as usize));
    let message = e.to_string();
    match e.into_kind() {
        ::csv::ErrorKind::Io(source) => DataError::io(path, source),
        _ => DataError::invalid(path, loc, None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LoadOptions, load};
    use super::*;
    use crate::data::Format;
    use rust_decimal::Decimal;
    use std::io::Write;
    use std::path::PathBuf;
    use std::str::FromStr;

    const T0: i64 = 1_577_836_800_000_000_000;
    const MIN: i64 = 60_000_000_000;
    const HEADER: &str = "timestamp,open,high,low,close,volume\n";

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        path
    }

    fn load_text(text: &str) -> Result<Vec<BarSeries>, DataError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "TEST.csv", text.as_bytes());
        load(&path, &LoadOptions::default())
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[test]
    fn basic_load() {
        let text = format!(
            "{HEADER}2020-01-01T00:00:00Z,100.5,101.25,99,100,1500\n\
             2020-01-01T00:01:00Z,100,100.75,99.5,100.125,0\n"
        );
        let s = load_text(&text).expect("load");
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.symbol, "TEST");
        assert_eq!(&s.time[..], &[T0, T0 + MIN]);
        assert_eq!(s.open.exact.scale(), 1);
        assert_eq!(s.open.exact.get(0), dec("100.5"));
        assert_eq!(s.open.exact.get(1), dec("100"));
        assert_eq!(s.high.exact.get(1), dec("100.75"));
        assert_eq!(s.close.exact.scale(), 3);
        assert_eq!(s.close.exact.get(1), dec("100.125"));
        assert_eq!(&s.close.values[..], &[100.0, 100.125]);
        assert_eq!(&s.volume.values[..], &[1500.0, 0.0]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn quoted_fields_whitespace_crlf_and_extra_columns() {
        let text = "Date , Open,High,Low,Close,Volume,Adj Close\r\n\
                    \"2020-01-01\", 1.5 ,2,1,\"1.75\",10,9.9\r\n\
                    2020-01-02,1.5,2,1,1.75,10,9.9\r\n";
        let s = load_text(text).expect("load");
        assert_eq!(&s[0].time[..], &[T0, T0 + 1440 * MIN]);
        assert_eq!(s[0].open.exact.get(0), dec("1.5"));
        assert_eq!(s[0].close.exact.get(0), dec("1.75"));
    }

    #[test]
    fn timestamp_aliases() {
        for name in ["timestamp", "Time", "DATETIME", "date", " datetime "] {
            let text =
                format!("{name},open,high,low,close,volume\n2020-01-01 00:00:00,1,1,1,1,1\n");
            let s = load_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s[0].time[..], &[T0], "{name}");
        }
    }

    #[test]
    fn epoch_timestamps() {
        let text = format!(
            "{HEADER}1577836800,1,1,1,1,1\n1577836860000,1,1,1,1,1\n1577836920000000,1,1,1,1,1\n\
             1577836980000000000,1,1,1,1,1\n"
        );
        let s = load_text(&text).expect("load");
        assert_eq!(&s[0].time[..], &[T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]);
    }

    #[test]
    fn symbol_column_splits_series_in_first_appearance_order() {
        let text = "symbol,timestamp,open,high,low,close,volume\n\
                    MSFT,2020-01-01T00:00:00Z,10,11,9,10,1\n\
                    AAPL,2020-01-01T00:00:00Z,20,21,19,20,2\n\
                    MSFT,2020-01-01T00:01:00Z,10.5,11,9,10,1\n\
                    AAPL,2020-01-01T00:01:00Z,20,21,19,20.25,2\n\
                    AAPL,2020-01-01T00:02:00Z,20,21,19,20,2\n";
        let s = load_text(text).expect("load");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].symbol, "MSFT");
        assert_eq!(s[1].symbol, "AAPL");
        assert_eq!(&s[0].time[..], &[T0, T0 + MIN]);
        assert_eq!(&s[1].time[..], &[T0, T0 + MIN, T0 + 2 * MIN]);
        assert_eq!(s[0].open.exact.get(1), dec("10.5"));
        assert_eq!(s[1].close.exact.get(1), dec("20.25"));
        assert_eq!(s[1].close.exact.scale(), 2);
        assert_eq!(s[0].close.exact.scale(), 0);
    }

    #[test]
    fn symbol_column_ignores_option_symbol() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "symbol,timestamp,open,high,low,close,volume\nX,2020-01-01,1,1,1,1,1\n";
        let path = write(&dir, "f.csv", text.as_bytes());
        let opts = LoadOptions {
            symbol: Some("Y".into()),
            ..Default::default()
        };
        assert_eq!(load(&path, &opts).expect("load")[0].symbol, "X");
    }

    #[test]
    fn ordering_is_checked_per_symbol() {
        let text = "symbol,timestamp,open,high,low,close,volume\n\
                    A,2020-01-01T00:01:00Z,1,1,1,1,1\n\
                    B,2020-01-01T00:00:00Z,1,1,1,1,1\n\
                    A,2020-01-01T00:02:00Z,1,1,1,1,1\n\
                    B,2020-01-01T00:00:00Z,1,1,1,1,1\n";
        let err = load_text(text).expect_err("B duplicate");
        assert_eq!(err.line_or_row(), Some(5));
        let msg = err.to_string();
        assert!(
            msg.contains("duplicate timestamp") && msg.contains("line 3"),
            "{msg}"
        );
        assert!(msg.contains("symbol B"), "{msg}");
    }

    /// Every validation failure, with the line and column it must name.
    #[test]
    fn validation_errors_name_line_and_column() {
        let ok = "2020-01-01T00:00:00Z,10,11,9,10,100\n";
        let cases: &[(&str, usize, Option<&str>, &str)] = &[
            (
                "2020-01-01T00:01:00Z,abc,11,9,10,100\n",
                3,
                Some("open"),
                "cannot parse `abc`",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,10,\n",
                3,
                Some("volume"),
                "empty value",
            ),
            (
                "2020-01-01T00:01:00Z,10,  ,9,10,1\n",
                3,
                Some("high"),
                "empty value",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,NaN,1\n",
                3,
                Some("close"),
                "not a finite number",
            ),
            (
                "yesterday,10,11,9,10,1\n",
                3,
                Some("timestamp"),
                "cannot parse `yesterday`",
            ),
            (",10,11,9,10,1\n", 3, Some("timestamp"), "empty value"),
            (
                "2020-01-01T00:01:00Z,10,10.5,11.0,10,1\n",
                3,
                Some("high"),
                "high 10.5 is below low 11.0",
            ),
            (
                "2020-01-01T00:01:00Z,12,11,9,10,1\n",
                3,
                Some("high"),
                "high 11 is below open 12",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,11.01,1\n",
                3,
                Some("high"),
                "high 11 is below close 11.01",
            ),
            (
                "2020-01-01T00:01:00Z,8.5,11,9,10,1\n",
                3,
                Some("low"),
                "low 9 is above open 8.5",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,8,1\n",
                3,
                Some("low"),
                "low 9 is above close 8",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,10,-1\n",
                3,
                Some("volume"),
                "volume -1 is negative",
            ),
            (
                "2020-01-01T00:00:00Z,10,11,9,10,1\n",
                3,
                Some("timestamp"),
                "duplicate timestamp 2020-01-01T00:00:00Z: line 2",
            ),
            (
                // A third row: two rows going back would be a newest-first file.
                "2019-12-31T23:59:00Z,10,11,9,10,1\n2020-01-01T00:05:00Z,10,11,9,10,1\n",
                3,
                Some("timestamp"),
                "unsorted timestamps: 2019-12-31T23:59:00Z is earlier than 2020-01-01T00:00:00Z at line 2",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,10\n",
                3,
                None,
                "has 5 fields but the header has 6",
            ),
            (
                "2020-01-01T00:01:00Z,10,11,9,10,1,7\n",
                3,
                None,
                "has 7 fields but the header has 6",
            ),
        ];
        for &(bad, line, column, want) in cases {
            let text = format!("{HEADER}{ok}{bad}");
            let err = load_text(&text).expect_err(bad);
            assert_eq!(err.line_or_row(), Some(line), "{bad}: {err}");
            assert_eq!(err.column(), column, "{bad}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(want), "{bad}: {msg}");
            assert!(msg.contains("TEST.csv"), "{msg}");
            assert!(msg.contains(&format!("line {line}")), "{msg}");
        }
    }

    #[test]
    fn error_line_counts_blank_and_multiline_rows() {
        // A quoted field spanning two lines moves every later line number by one.
        let text = format!(
            "{HEADER}2020-01-01T00:00:00Z,10,11,9,10,\"1\n\"\n2020-01-01T00:01:00Z,10,11,9,10,x\n"
        );
        let err = load_text(&text).expect_err("bad volume");
        assert!(err.to_string().contains("line 4"), "{err}");
        assert_eq!(err.line_or_row(), Some(4));
    }

    #[test]
    fn column_named_as_in_header() {
        let text = "Date,Open,High,Low,Close,Volume\n2020-01-01,10,10.5,11.0,10,1\n";
        let err = load_text(text).expect_err("high < low");
        assert_eq!(
            err.to_string().rsplit('/').next(),
            Some("TEST.csv line 2, column `High`: high 10.5 is below low 11.0")
        );
    }

    #[test]
    fn empty_files() {
        for (text, want) in [
            ("", "contains no bars"),
            (HEADER, "contains no bars"),
            ("timestamp,open,high,low,close,volume", "contains no bars"),
        ] {
            let err = load_text(text).expect_err("empty");
            assert!(err.to_string().contains(want), "{err}");
            assert_eq!(err.line_or_row(), None);
        }
    }

    #[test]
    fn missing_columns_listed_with_found() {
        let err = load_text("time,open,close\n2020-01-01,1,1\n").expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.contains("missing columns `high`, `low`, `volume`"),
            "{msg}"
        );
        assert!(
            msg.contains("columns found: `time`, `open`, `close`"),
            "{msg}"
        );
    }

    #[test]
    fn symbol_errors() {
        let text = "symbol,timestamp,open,high,low,close,volume\n ,2020-01-01,1,1,1,1,1\n";
        let err = load_text(text).expect_err("empty symbol");
        assert_eq!(err.line_or_row(), Some(2));
        assert_eq!(err.column(), Some("symbol"));
    }

    #[test]
    fn scale_overflow_names_row() {
        let text = format!(
            "{HEADER}2020-01-01T00:00:00Z,1,1,1,1,922337203685477581\n\
             2020-01-01T00:01:00Z,1,1,1,1,0.5\n"
        );
        let err = load_text(&text).expect_err("volume overflow");
        assert_eq!(err.line_or_row(), Some(3));
        assert_eq!(err.column(), Some("volume"));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn garbage_bytes_give_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..200 {
            let len = (round * 37) % 600;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            let path = write(&dir, "g.csv", &bytes);
            assert!(load(&path, &LoadOptions::default()).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = read_from(Path::new("p.csv"), &bytes[..], "P", &Format::default());
            let mut with_header = HEADER.as_bytes().to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = read_from(Path::new("p.csv"), &with_header[..], "P", &Format::default());
        }

        #[test]
        fn random_prices_round_trip(rows in proptest::collection::vec((1u64..100_000_000, 2usize..=6), 1..50)) {
            let mut text = String::from(HEADER);
            let mut texts = Vec::new();
            for (i, (m, places)) in rows.iter().enumerate() {
                let p = 10u64.pow(*places as u32);
                let price = format!("{}.{:0width$}", m / p, m % p, width = *places);
                text.push_str(&format!("{},{price},{price},{price},{price},{price}\n", 1_577_836_800 + 60 * i as i64));
                texts.push(price);
            }
            let s = read_from(Path::new("p.csv"), text.as_bytes(), "P", &Format::default()).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let s = &s[0];
            for (i, t) in texts.iter().enumerate() {
                for c in [&s.open, &s.high, &s.low, &s.close, &s.volume] {
                    proptest::prop_assert_eq!(c.exact.get(i), Decimal::from_str_exact(t).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?);
                    proptest::prop_assert_eq!(c.values[i].to_bits(), t.parse::<f64>().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?.to_bits());
                }
            }
        }
    }

    fn load_with(text: &str, spec: crate::data::FormatSpec) -> Result<Vec<BarSeries>, DataError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "TEST.csv", text.as_bytes());
        let format = Format::from_spec(&spec).expect("format");
        load(
            &path,
            &LoadOptions {
                format,
                ..Default::default()
            },
        )
    }

    /// Every layout option reads the same three bars.
    #[test]
    fn layouts() {
        use crate::data::FormatSpec;
        let want_times = [T0, T0 + MIN, T0 + 2 * MIN];
        let spec = |f: fn(&mut FormatSpec)| {
            let mut s = FormatSpec::default();
            f(&mut s);
            s
        };
        let cases: Vec<(&str, String, FormatSpec)> = vec![
            ("semicolon", "time;open;high;low;close;volume\n2020-01-01 00:00;1;2;0.5;1.5;7\n2020-01-01 00:01;1;2;0.5;1.5;7\n2020-01-01 00:02;1;2;0.5;1.5;7\n".into(), FormatSpec::default()),
            ("no header", "1577836800,1,2,0.5,1.5,7\n1577836860,1,2,0.5,1.5,7\n1577836920,1,2,0.5,1.5,7\n".into(), spec(|s| s.no_header = true)),
            ("date and time", "Date,Time,Open,High,Low,Close,Volume\n01.01.2020,00:00,1,2,0.5,1.5,7\n01.01.2020,00:01,1,2,0.5,1.5,7\n01.01.2020,00:02,1,2,0.5,1.5,7\n".into(), spec(|s| s.date_format = Some("%d.%m.%Y".into()))),
            ("columns", "x,1,2,0.5,1.5,7,2020-01-01T00:00:00Z\nx,1,2,0.5,1.5,7,2020-01-01T00:01:00Z\nx,1,2,0.5,1.5,7,2020-01-01T00:02:00Z\n".into(), spec(|s| { s.no_header = true; s.columns = Some("_,open,high,low,close,volume,timestamp".into()); })),
            ("tz", format!("{HEADER}2020-01-01 01:00:00,1,2,0.5,1.5,7\n2020-01-01 01:01:00,1,2,0.5,1.5,7\n2020-01-01 01:02:00,1,2,0.5,1.5,7\n"), spec(|s| s.tz = Some("Europe/Berlin".into()))),
            ("newest first", format!("{HEADER}1577836920,1,2,0.5,1.5,7\n1577836860,1,2,0.5,1.5,7\n1577836800,1,2,0.5,1.5,7\n"), FormatSpec::default()),
            ("skip", format!("{HEADER}1577836800,1,2,0.5,1.5,7\n1577836830,null,null,null,null,null\n1577836860,1,2,0.5,1.5,7\n1577836920,1,2,0.5,1.5,7\n"), spec(|s| s.on_missing = Some("skip".into()))),
            ("binance", "1577836800000,1,2,0.5,1.5,7,1577836859999,1,1,1,1,0\n1577836860000,1,2,0.5,1.5,7,0,1,1,1,1,0\n1577836920000,1,2,0.5,1.5,7,0,1,1,1,1,0\n".into(), spec(|s| s.preset = Some("binance".into()))),
            ("metatrader", "2020.01.01,00:00,1,2,0.5,1.5,7\n2020.01.01,00:01,1,2,0.5,1.5,7\n2020.01.01,00:02,1,2,0.5,1.5,7\n".into(), spec(|s| s.preset = Some("metatrader".into()))),
        ];
        for (name, text, spec) in cases {
            let s = load_with(&text, spec).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s[0].time[..], &want_times, "{name}");
            assert_eq!(s[0].close.exact.get(2), dec("1.5"), "{name}");
            assert_eq!(s[0].volume.exact.get(0), dec("7"), "{name}");
        }
        // ffill repeats the previous close, with zero volume.
        let text = format!("{HEADER}1577836800,1,2,0.5,1.5,7\n1577836860,,,,,\n");
        let s = load_with(
            &text,
            FormatSpec {
                on_missing: Some("ffill".into()),
                ..Default::default()
            },
        )
        .expect("ffill");
        assert_eq!(s[0].open.exact.get(1), dec("1.5"));
        assert_eq!(s[0].volume.exact.get(1), dec("0"));
    }

    #[test]
    fn refusals_suggest_the_option() {
        use crate::data::FormatSpec;
        let cases: Vec<(String, FormatSpec, &str)> = vec![
            (
                "Date;Open;High;Low;Close;Volume\n2020-01-01;1;2;0.5;1.5;7\n".into(),
                FormatSpec {
                    delimiter: Some(",".into()),
                    ..Default::default()
                },
                "looks `;`-separated: try `--delimiter ';'`",
            ),
            (
                "2020-01-01T00:00:00Z,1,2,0.5,1.5,7\n".into(),
                FormatSpec::default(),
                "try `--no-header`",
            ),
            (
                format!("{HEADER}31.01.2020,1,2,0.5,1.5,7\n"),
                FormatSpec::default(),
                "try `--date-format '%d.%m.%Y'`",
            ),
            (
                format!("{HEADER}2020-01-01,null,2,0.5,1.5,7\n"),
                FormatSpec::default(),
                "try `--on-missing skip`",
            ),
            (
                "When,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.5,7\n".into(),
                FormatSpec::default(),
                "`--columns timestamp=NAME`",
            ),
        ];
        for (text, spec, want) in cases {
            let err = load_with(&text, spec).expect_err(want);
            let hint = err.hint().unwrap_or_default();
            assert!(hint.contains(want), "{err}: hint {hint:?}");
            assert!(err.line_or_row().is_some(), "{err}");
        }
    }

    /// A file of `rows` one-minute bars (with a symbol column cycling through `symbols`
    /// symbols when `symbols > 0`), `edit` applied to row `i`'s text.
    fn big_text(rows: usize, symbols: usize, edit: impl Fn(usize, String) -> String) -> String {
        let mut text = String::from(if symbols > 0 {
            "symbol,timestamp,open,high,low,close,volume\n"
        } else {
            HEADER
        });
        for i in 0..rows {
            let (sym, minute) = if symbols > 0 {
                (format!("S{},", i % symbols), i / symbols)
            } else {
                (String::new(), i)
            };
            let cents = 10_000 + (i * 7919) % 5_000;
            let row = format!(
                "{sym}{},{}.{:02},{}.{:02},{}.{:02},{}.{:02},{}\n",
                1_577_836_800 + 60 * minute,
                cents / 100,
                cents % 100,
                (cents + 25) / 100,
                (cents + 25) % 100,
                (cents - 30) / 100,
                (cents - 30) % 100,
                (cents + 5) / 100,
                (cents + 5) % 100,
                1000 + i % 977
            );
            text.push_str(&edit(i, row));
        }
        text
    }

    /// The parallel pass gives what the one-thread pass gives: the same series, or the same
    /// error (line and column) wherever in the file it is.
    #[test]
    fn parallel_parse_equals_sequential() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = 6_000; // ~270 KB: about 65 blocks of 4 KiB in tests
        let same = |i: usize, row: String| -> String {
            let _ = i;
            row
        };
        let cases: Vec<(&str, String)> = vec![
            ("plain", big_text(rows, 0, same)),
            ("symbols", big_text(rows, 7, same)),
            // A finer price late in the file rescales every earlier block's column.
            (
                "scale change",
                big_text(rows, 0, |i, r| {
                    if i == rows - 10 {
                        r.replace('\n', ".5\n")
                    } else {
                        r
                    }
                }),
            ),
            ("crlf", big_text(rows, 3, |_, r| r.replace('\n', "\r\n"))),
            (
                "bad value late",
                big_text(rows, 0, |i, r| {
                    if i == rows - 3 {
                        r.replacen(".", "x", 1)
                    } else {
                        r
                    }
                }),
            ),
            (
                "bad value early",
                big_text(
                    rows,
                    0,
                    |i, r| if i == 2 { r.replacen(".", "x", 1) } else { r },
                ),
            ),
            (
                "duplicate time across blocks",
                big_text(rows, 0, |i, r| {
                    if i == 3000 {
                        r.replacen(
                            &format!("{},", 1_577_836_800 + 60 * 3000),
                            &format!("{},", 1_577_836_800 + 60 * 2999),
                            1,
                        )
                    } else {
                        r
                    }
                }),
            ),
            (
                "short row",
                big_text(
                    rows,
                    2,
                    |i, r| if i == 4000 { r.replacen(",", "", 1) } else { r },
                ),
            ),
            (
                "quoted field",
                big_text(rows, 0, |i, r| {
                    if i == 5000 {
                        format!("\"{r}").replacen(',', "\",", 1)
                    } else {
                        r
                    }
                }),
            ),
        ];
        for (name, text) in cases {
            let path = write(&dir, "PAR.csv", text.as_bytes());
            let sequential = read_from(&path, text.as_bytes(), "PAR", &Format::default());
            let parallel = read_parallel(
                &path,
                File::open(&path).expect("open"),
                "PAR",
                &Format::default(),
                2,
            )
            .expect("no I/O error");
            match (&sequential, parallel) {
                (Ok(want), Some(got)) => {
                    assert_eq!(got.len(), want.len(), "{name}");
                    for (g, w) in got.iter().zip(want) {
                        assert_eq!(g.symbol, w.symbol, "{name}");
                        assert_eq!(&g.time[..], &w.time[..], "{name}");
                        for (gc, wc) in [
                            (&g.open, &w.open),
                            (&g.high, &w.high),
                            (&g.low, &w.low),
                            (&g.close, &w.close),
                            (&g.volume, &w.volume),
                        ] {
                            assert_eq!(gc.exact, wc.exact, "{name}");
                            assert_eq!(&gc.values[..], &wc.values[..], "{name}");
                        }
                    }
                }
                // Declined: the one-thread pass runs and reports.
                (_, None) => assert!(
                    sequential.is_err() || name == "quoted field",
                    "{name}: declined a good file"
                ),
                (Err(e), Some(_)) => {
                    panic!("{name}: parallel accepted what sequential rejects: {e}")
                }
            }
            // And through the front door, errors are the one-thread pass's.
            let via_read = read(&path, "PAR", &Format::default());
            match (&sequential, via_read) {
                (Ok(_), Ok(_)) => {}
                (Err(want), Err(got)) => assert_eq!(got.to_string(), want.to_string(), "{name}"),
                (want, got) => panic!("{name}: {want:?} vs {got:?}"),
            }
        }
    }

    /// 1M one-minute bars with 2-decimal prices and ISO `Z` timestamps.
    /// Run with `cargo test --release -- --ignored --nocapture load_one_million_rows`.
    #[test]
    #[ignore]
    fn load_one_million_rows() {
        use std::fmt::Write as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::with_capacity(70_000_000);
        text.push_str(HEADER);
        for i in 0..1_000_000i64 {
            let t = chrono::DateTime::from_timestamp(1_577_836_800 + 60 * i, 0).expect("time");
            let base = 10_000 + (i * 7919) % 5_000; // cents
            let _ = writeln!(
                text,
                "{},{}.{:02},{}.{:02},{}.{:02},{}.{:02},{}",
                t.format("%Y-%m-%dT%H:%M:%SZ"),
                base / 100,
                base % 100,
                (base + 25) / 100,
                (base + 25) % 100,
                (base - 30) / 100,
                (base - 30) % 100,
                (base + 5) / 100,
                (base + 5) % 100,
                1000 + i % 977
            );
        }
        let path = write(&dir, "BIG.csv", text.as_bytes());
        let start = std::time::Instant::now();
        let s = load(&path, &LoadOptions::default()).expect("load");
        let elapsed = start.elapsed();
        assert_eq!(s[0].len(), 1_000_000);
        println!(
            "loaded 1,000,000 rows ({} MB) in {:.3} s",
            text.len() / 1_000_000,
            elapsed.as_secs_f64()
        );
    }
}
