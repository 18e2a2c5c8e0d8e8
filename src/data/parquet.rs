//! Parquet reader: only the needed columns are decoded (projection), each Arrow column is
//! turned into a per-row accessor chosen once per batch by its type, and every row goes
//! through the same checks as CSV rows.
//!
//! Value columns may be text (parsed like CSV), decimals and integers (exact), or floats.
//! Float columns are taken at their shortest decimal representation: `101.25_f64` becomes
//! exactly `101.25` (the text `format!("{v}")` prints), not the binary value's long expansion.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

use super::decimal::{Value, from_float, from_mantissa, parse_value};
use super::format::{Format, OnMissing, Role, Source, TimeParser};
use super::timestamp::epoch_to_ns;
use super::validate::{Columns, Field, Router, RowError};
use super::{BarSeries, DataError, Location};

const BATCH_SIZE: usize = 64 * 1024;

/// Rows per batch when a catalog partition is decoded into its stretch. The decoder's batch
/// buffers are copied out at once, so small ones (64 KiB a column) are reused from the
/// allocator's free lists and stay in cache; at [`BATCH_SIZE`] each was a fresh mapping whose
/// pages the kernel faulted in and zeroed (about a sixth of a 1M-bar load's CPU time).
const DECODE_BATCH: usize = 8 * 1024;

/// Reads a whole Parquet file into one series per symbol (before any time-range filtering).
pub(super) fn read(
    path: &Path,
    default_symbol: &str,
    format: &Format,
) -> Result<Vec<BarSeries>, DataError> {
    read_with(path, default_symbol, format, BATCH_SIZE)
}

fn read_with(
    path: &Path,
    default_symbol: &str,
    format: &Format,
    batch_size: usize,
) -> Result<Vec<BarSeries>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    // The decoder is third-party code fed untrusted bytes, and it does panic on some corrupt
    // metadata (parquet 60: "column start and length should not be negative"). Such a panic
    // becomes an error for this file instead of the end of the process, and the host's panic
    // hook stays quiet about it. (A `panic = "abort"` profile would defeat this.)
    let mut router = None;
    guarded(path, || {
        read_file(path, file, default_symbol, format, batch_size, &mut router)
    })?;
    Ok(router.map_or_else(Vec::new, |r| r.finish(path)))
}

/// Several Parquet files of one symbol, each after the last, into one series (a catalog
/// dataset's partitions). Every row gets the checks of a single file's rows.
pub(super) fn read_parts(
    paths: &[std::path::PathBuf],
    symbol: &str,
) -> Result<BarSeries, DataError> {
    let mut router = Some(Router::new(Some(symbol)));
    for path in paths {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        guarded(path, || {
            read_file(
                path,
                file,
                symbol,
                &Format::default(),
                BATCH_SIZE,
                &mut router,
            )
        })?;
    }
    let source = paths.first().map_or(Path::new(""), |p| p.as_path());
    Ok(router
        .and_then(|r| r.finish(source).into_iter().next())
        .unwrap_or_else(|| BarSeries::empty(symbol, source)))
}

/// The catalog's own partitions (`time` as UTC ns, then `open`..`volume` as decimals at one
/// scale per column in every file, no nulls), read column by column. `None` when a file is not
/// in that shape or a check fails: the caller then reads them with [`read_parts`], which words
/// any problem with its row.
///
/// Two passes on up to [`READ_THREADS`] threads: each file is read into memory whole (one read,
/// instead of a seek, a read and a duplicated handle per page) and its footer parsed, which
/// gives every file's rows; then one allocation per column holds all rows, and each file is
/// decoded straight into its own stretch of it, rows checked and floats derived there (no
/// merge copy). Mantissas stored as Parquet `INT64` (precision up to 18) are decoded as 64-bit
/// decimals, so the values are copied as they are, never widened to 128 bits and back.
pub(super) fn read_parts_columnar(
    paths: &[std::path::PathBuf],
    symbol: &str,
) -> Result<Option<BarSeries>, DataError> {
    let mut opened = Vec::with_capacity(paths.len());
    for file in on_threads(paths.iter().collect(), |path| open_columnar_file(path)) {
        match file? {
            Some(file) => opened.push(file),
            None => return Ok(None),
        }
    }
    let Some(scales) = opened.first().map(|f| f.scales) else {
        return Ok(None);
    };
    if opened.iter().any(|f| f.scales != scales) {
        return Ok(None);
    }
    let rows: usize = opened.iter().map(|f| f.rows).sum();
    let mut time: Vec<i64> = zeroed_column(rows);
    let mut mantissas: [Vec<i64>; 5] = std::array::from_fn(|_| zeroed_column(rows));
    let mut floats: [Vec<f64>; 5] = std::array::from_fn(|_| zeroed_column(rows));
    let mut jobs = Vec::with_capacity(opened.len());
    {
        let mut rest = Stretch {
            time: &mut time,
            mantissas: mantissas.each_mut().map(|v| v.as_mut_slice()),
            floats: floats.each_mut().map(|v| v.as_mut_slice()),
        };
        for (file, path) in opened.iter().zip(paths) {
            let (mine, others) = rest.split(file.rows);
            jobs.push((path.as_path(), file, mine));
            rest = others;
        }
    }
    for decoded in on_threads(jobs, |(path, file, out)| {
        decode_columnar_file(path, file, out)
    }) {
        if !decoded? {
            return Ok(None);
        }
    }
    // Each file's times ascend (checked while decoding); so must they across files.
    let mut at = 0;
    for file in &opened[..opened.len() - 1] {
        at += file.rows;
        if at > 0 && at < rows && time[at] <= time[at - 1] {
            return Ok(None);
        }
    }
    let source = paths.first().map_or(Path::new(""), |p| p.as_path());
    let [open, high, low, close, volume] = std::array::from_fn(|k| super::Column {
        values: crate::market::BarColumn::from_vec(std::mem::take(&mut floats[k])),
        exact: super::DecimalColumn {
            mantissas: std::sync::Arc::new(std::mem::take(&mut mantissas[k])),
            scale: scales[k],
        },
    });
    Ok(Some(BarSeries {
        symbol: symbol.to_owned(),
        source: source.to_path_buf(),
        time: crate::market::BarColumn::from_vec(time),
        open,
        high,
        low,
        close,
        volume,
    }))
}

/// `rows` zeros (of an integer or float type), in memory the kernel may back with huge pages:
/// the eleven columns of a 1M-bar load are 88 MB of fresh memory, and faulting them in 4 KiB
/// at a time (a lock, a cgroup charge and a zeroed page each) cost about as much CPU as the
/// decoding. Where transparent huge pages are off, this is `vec![0; rows]`.
fn zeroed_column<T: ZeroBits>(rows: usize) -> Vec<T> {
    let Ok(layout) = std::alloc::Layout::array::<T>(rows) else {
        return vec![T::default(); rows];
    };
    if layout.size() < 2 << 20 {
        return vec![T::default(); rows];
    }
    // SAFETY: `layout` has a non-zero size; the memory is zeroed, a valid `T` (`ZeroBits`),
    // and it is handed to a Vec with the same allocator, layout, length and capacity.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        advise_huge_pages(ptr, layout.size());
        Vec::from_raw_parts(ptr.cast::<T>(), rows, rows)
    }
}

/// Asks the kernel to back the whole huge pages of a fresh allocation with huge pages (advice
/// only: a kernel without them, or out of them, uses small pages).
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, size: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside one live allocation of this process; MADV_HUGEPAGE
        // changes how its pages are backed, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _size: usize) {}

/// Types whose all-zero bits are the value zero (what [`zeroed_column`] may hand out).
trait ZeroBits: Copy + Default {}
impl ZeroBits for i64 {}
impl ZeroBits for f64 {}

/// Most threads that decode a dataset's partitions at once.
const READ_THREADS: usize = 4;

/// `f` of every item, in order, on up to [`READ_THREADS`] threads (contiguous runs of items).
fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, READ_THREADS)
        .min(items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let run: Vec<T> = items.by_ref().take(chunk).collect();
        if run.is_empty() {
            break;
        }
        runs.push(run);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            // The decoder's panics are caught per file (`guarded`); a thread cannot fail
            // otherwise, and if it did the process should not go on with half the bars.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// One catalog partition read into memory, its footer parsed.
struct OpenedFile {
    bytes: bytes::Bytes,
    /// The footer, with the schema to decode it as (64-bit decimals where stored as `INT64`).
    metadata: ::parquet::arrow::arrow_reader::ArrowReaderMetadata,
    rows: usize,
    scales: [u32; 5],
}

/// Where one file's rows go: its stretch of every output column.
struct Stretch<'a> {
    time: &'a mut [i64],
    mantissas: [&'a mut [i64]; 5],
    floats: [&'a mut [f64]; 5],
}

impl<'a> Stretch<'a> {
    /// The first `rows` rows, and the rest.
    fn split(self, rows: usize) -> (Stretch<'a>, Stretch<'a>) {
        let (time, time_rest) = self.time.split_at_mut(rows);
        let (mantissas, mantissas_rest) = unzip(self.mantissas.map(|m| m.split_at_mut(rows)));
        let (floats, floats_rest) = unzip(self.floats.map(|f| f.split_at_mut(rows)));
        (
            Stretch {
                time,
                mantissas,
                floats,
            },
            Stretch {
                time: time_rest,
                mantissas: mantissas_rest,
                floats: floats_rest,
            },
        )
    }
}

fn unzip<T: Default, const N: usize>(pairs: [(T, T); N]) -> ([T; N], [T; N]) {
    let mut firsts: [T; N] = std::array::from_fn(|_| T::default());
    let mut seconds: [T; N] = std::array::from_fn(|_| T::default());
    for (k, (a, b)) in pairs.into_iter().enumerate() {
        firsts[k] = a;
        seconds[k] = b;
    }
    (firsts, seconds)
}

/// Reads a partition and parses its footer; `None` when it is not in the catalog's shape.
fn open_columnar_file(path: &Path) -> Result<Option<OpenedFile>, DataError> {
    use ::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use ::parquet::basic::Type as PhysicalType;
    const NAMES: [&str; 5] = ["open", "high", "low", "close", "volume"];
    let bytes = bytes::Bytes::from(std::fs::read(path).map_err(|e| DataError::io(path, e))?);
    let mut opened = None;
    guarded(path, || {
        let footer = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())
            .map_err(|e| decoder_error(path, e))?;
        let fields = footer.schema().fields().clone();
        let leaves = footer.parquet_schema();
        let time_ok = fields.len() == 6
            && leaves.num_columns() == 6
            && fields[0].name() == "time"
            && matches!(
                fields[0].data_type(),
                DataType::Timestamp(TimeUnit::Nanosecond, _)
            );
        if !time_ok {
            return Ok(0);
        }
        let mut scales = [0u32; 5];
        let mut decoded_as = vec![fields[0].as_ref().clone()];
        for (k, slot) in scales.iter_mut().enumerate() {
            let field = &fields[k + 1];
            match field.data_type() {
                DataType::Decimal128(precision, scale)
                    if field.name() == NAMES[k] && *scale >= 0 =>
                {
                    *slot = *scale as u32;
                    let int64 = leaves.column(k + 1).physical_type() == PhysicalType::INT64;
                    let as_type = if int64 {
                        DataType::Decimal64(*precision, *scale)
                    } else {
                        DataType::Decimal128(*precision, *scale)
                    };
                    decoded_as.push(field.as_ref().clone().with_data_type(as_type));
                }
                _ => return Ok(0),
            }
        }
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(decoded_as));
        let Ok(metadata) = ArrowReaderMetadata::try_new(
            footer.metadata().clone(),
            ArrowReaderOptions::new().with_schema(schema),
        ) else {
            return Ok(0);
        };
        let rows = usize::try_from(metadata.metadata().file_metadata().num_rows()).unwrap_or(0);
        opened = Some(OpenedFile {
            bytes: bytes.clone(),
            metadata,
            rows,
            scales,
        });
        Ok(0)
    })?;
    Ok(opened)
}

/// Decodes an opened partition into `out`, checks its rows (times ascending, the row rules)
/// and derives the floats. `false` when it does not match its footer or a check fails.
fn decode_columnar_file(
    path: &Path,
    file: &OpenedFile,
    out: Stretch<'_>,
) -> Result<bool, DataError> {
    let Stretch {
        time,
        mut mantissas,
        floats,
    } = out;
    let mut filled = 0usize;
    let ok = guarded(path, || {
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            file.bytes.clone(),
            file.metadata.clone(),
        )
        .with_batch_size(DECODE_BATCH)
        .build()
        .map_err(|e| decoder_error(path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| decoder_error(path, e))?;
            let columns = batch.columns();
            let n = batch.num_rows();
            if columns.iter().any(|c| c.null_count() > 0) || filled + n > time.len() {
                return Ok(0);
            }
            let Some(t) = columns[0].as_primitive_opt::<TimestampNanosecondType>() else {
                return Ok(0);
            };
            time[filled..filled + n].copy_from_slice(t.values());
            for (k, out) in mantissas.iter_mut().enumerate() {
                let out = &mut out[filled..filled + n];
                if let Some(a) = columns[k + 1].as_primitive_opt::<Decimal64Type>() {
                    out.copy_from_slice(a.values());
                } else if let Some(a) = columns[k + 1].as_primitive_opt::<Decimal128Type>() {
                    for (o, &v) in out.iter_mut().zip(a.values()) {
                        match i64::try_from(v) {
                            Ok(m) => *o = m,
                            Err(_) => return Ok(0),
                        }
                    }
                } else {
                    return Ok(0);
                }
            }
            filled += n;
        }
        Ok(1)
    })?;
    if ok == 0 || filled != time.len() || time.windows(2).any(|w| w[1] <= w[0]) {
        return Ok(false);
    }
    if !rows_pass(&mantissas, file.scales) {
        return Ok(false);
    }
    for ((m, f), &scale) in mantissas.iter().zip(floats).zip(&file.scales) {
        super::decimal::to_floats(m, scale, f);
    }
    Ok(true)
}

/// The row rules (`validate::check_bar`) on columns of mantissas. With one scale for the four
/// prices (the usual case) they are integer comparisons, folded without branches so the loop
/// vectorizes; otherwise row by row through `check_bar`.
fn rows_pass(columns: &[&mut [i64]; 5], scales: [u32; 5]) -> bool {
    let [open, high, low, close, volume] = columns;
    if scales[..4].iter().all(|&s| s == scales[0]) {
        let mut bad = false;
        for i in 0..open.len().min(high.len()).min(low.len()).min(close.len()) {
            let (o, h, l, c) = (open[i], high[i], low[i], close[i]);
            bad |= (h < l) | (h < o) | (h < c) | (l > o) | (l > c);
        }
        return !bad && volume.iter().all(|&v| v >= 0);
    }
    (0..open.len()).all(|i| {
        let values: [Value; 5] = std::array::from_fn(|k| Value {
            mantissa: columns[k][i],
            scale: scales[k],
            float: 0.0,
        });
        super::validate::check_bar(&values).is_ok()
    })
}

/// Runs the decoder, turning its panics on corrupt input into an error for this file.
fn guarded(
    path: &Path,
    read: impl FnOnce() -> Result<usize, DataError>,
) -> Result<usize, DataError> {
    crate::error::quiet_panics(|| catch_unwind(AssertUnwindSafe(read))).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DataError::Parquet {
            path: path.to_path_buf(),
            message: format!("the decoder failed on corrupt data: {detail}"),
        })
    })
}

fn decoder_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The first index column pandas recorded in the file's metadata (`__index_level_0__` for an
/// unnamed index, else its name), when it is stored as a column.
fn pandas_index(schema: &arrow_schema::Schema) -> Option<String> {
    let meta: serde_json::Value = serde_json::from_str(schema.metadata().get("pandas")?).ok()?;
    let name = meta.get("index_columns")?.as_array()?.first()?.as_str()?;
    schema
        .field_with_name(name)
        .is_ok()
        .then(|| name.to_owned())
}

fn read_file(
    path: &Path,
    file: File,
    default_symbol: &str,
    format: &Format,
    batch_size: usize,
    router: &mut Option<Router>,
) -> Result<usize, DataError> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| decoder_error(path, e))?;
    let schema = builder.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut columns = Columns::resolve_with(&names, format.columns.as_ref(), true);
    // A pandas frame indexed by time keeps the index as a column of its own name.
    if let Err(e) = &columns
        && e.missing.contains(&Role::Timestamp)
        && let Some(index) = pandas_index(&schema)
    {
        let mut map = format.columns.clone().unwrap_or_default();
        map.entries.push((Role::Timestamp, Source::Name(index)));
        columns = Columns::resolve_with(&names, Some(&map), true);
    }
    let columns = columns.map_err(|e| {
        let hint = e.missing.first().map(|role| {
            format!(
                "say which column holds the {0}: `--columns {0}=NAME` (or a 0-based position)",
                role.name()
            )
        });
        DataError::invalid(path, None, None, e.message).with_hint(hint)
    })?;
    let mut times = TimeParser::new(format);

    // Decode only the columns we use; batches then hold them in file order.
    let mut wanted: Vec<usize> = columns.values.to_vec();
    wanted.push(columns.timestamp);
    wanted.extend(columns.time_of_day);
    wanted.extend(columns.symbol);
    wanted.sort_unstable();
    wanted.dedup();
    let position = |i: usize| wanted.binary_search(&i).unwrap_or(0);
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size.max(1))
        .build()
        .map_err(|e| decoder_error(path, e))?;

    let router = router
        .get_or_insert_with(|| Router::new(columns.symbol.is_none().then_some(default_symbol)));
    let mut row = 0usize;
    let mut pushed = 0usize;

    for batch in reader {
        let batch = batch.map_err(|e| decoder_error(path, e))?;
        let type_error = |field: Field, message: String| {
            DataError::invalid(path, None, Some(columns.header_name(field)), message)
        };
        let column = |i: usize| batch.columns().get(position(i));
        let missing = || decoder_error(path, "a projected column is missing from a batch");

        let ts_array = column(columns.timestamp).ok_or_else(missing)?;
        let ts_nulls = ts_array.logical_nulls();
        let mut time_at = time_reader(ts_array, &mut times, columns.time_of_day.is_some())
            .map_err(|m| type_error(Field::Timestamp, m))?;
        let time_of_day = match columns.time_of_day {
            Some(i) => Some(
                symbol_reader(column(i).ok_or_else(missing)?)
                    .map_err(|m| type_error(Field::Timestamp, m))?,
            ),
            None => None,
        };
        let mut value_readers = Vec::with_capacity(5);
        for (&i, field) in columns.values.iter().zip(Field::VALUES) {
            let array = column(i).ok_or_else(missing)?;
            let reader = value_reader(array).map_err(|m| type_error(field, m))?;
            value_readers.push((array.logical_nulls(), reader));
        }
        let symbols = match columns.symbol {
            Some(i) => {
                let array = column(i).ok_or_else(missing)?;
                let reader = symbol_reader(array).map_err(|m| type_error(Field::Symbol, m))?;
                Some((array.logical_nulls(), reader))
            }
            None => None,
        };

        for i in 0..batch.num_rows() {
            row += 1;
            let loc = Location::Row(row);
            let located = |e: RowError| {
                DataError::invalid(
                    path,
                    Some(loc),
                    Some(columns.header_name(e.field)),
                    e.message,
                )
            };
            let null = |field: Field| located(RowError::new(field, "empty value (null)"));

            let symbol = match &symbols {
                Some((nulls, _)) if nulls.as_ref().is_some_and(|n| n.is_null(i)) => {
                    return Err(null(Field::Symbol));
                }
                Some((_, symbol_at)) => Some(symbol_at(i).as_bytes()),
                None => None,
            };
            let series = router
                .series(symbol)
                .map_err(|m| located(RowError::new(Field::Symbol, m)))?;

            if ts_nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                return Err(null(Field::Timestamp));
            }
            let time = time_at(i, time_of_day.as_ref().map(|t| t(i)))
                .map_err(|m| located(RowError::new(Field::Timestamp, m)))?;
            let mut values = [ZERO; 5];
            let mut missing_value = false;
            for ((slot, (nulls, value_at)), field) in
                values.iter_mut().zip(&mut value_readers).zip(Field::VALUES)
            {
                let value = if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    Err("empty value (null)".to_owned())
                } else {
                    value_at(i)
                };
                match value {
                    Ok(v) => *slot = v,
                    Err(m) if m.starts_with("empty value") || m.starts_with("`NaN`") => {
                        if format.on_missing == OnMissing::Fail {
                            return Err(located(RowError::new(field, m)).with_hint(Some(
                                "rows with missing values: try `--on-missing skip` to leave \
                                 them out or `--on-missing ffill` to repeat the previous close"
                                    .to_owned(),
                            )));
                        }
                        missing_value = true;
                    }
                    Err(m) => return Err(located(RowError::new(field, m))),
                }
            }
            if missing_value {
                match (format.on_missing, series.last_close()) {
                    (OnMissing::Ffill, Some(c)) => values = [c, c, c, c, ZERO],
                    _ => continue,
                }
            }
            series.push(loc, time, values).map_err(located)?;
            pushed += 1;
        }
    }

    if row == 0 {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: the file has no rows",
        ));
    }
    if pushed == 0 {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: every row has a missing value and was skipped",
        ));
    }
    Ok(pushed)
}

const ZERO: Value = Value {
    mantissa: 0,
    scale: 0,
    float: 0.0,
};

type ValueAt<'a> = Box<dyn FnMut(usize) -> Result<Value, String> + 'a>;
type TimeAt<'a> = Box<dyn FnMut(usize, Option<&str>) -> Result<i64, String> + 'a>;
type SymbolAt<'a> = Box<dyn Fn(usize) -> &'a str + 'a>;

fn wrong_type(dt: &DataType, expected: &str) -> String {
    format!("column has type {dt}; expected {expected}")
}

/// Downcasts that cannot fail after matching on the data type; an error all the same, so a
/// mismatch can never panic.
macro_rules! primitive {
    ($array:expr, $t:ty) => {
        $array
            .as_primitive_opt::<$t>()
            .ok_or_else(|| format!("column is not {}", stringify!($t)))?
    };
}

/// Integers are exact at scale 0; `v as f64` is correctly rounded, the same as parsing the
/// integer's text.
fn int_value(v: i64) -> Result<Value, String> {
    Ok(Value {
        mantissa: v,
        scale: 0,
        float: v as f64,
    })
}

fn value_reader(array: &ArrayRef) -> Result<ValueAt<'_>, String> {
    let mut buf = String::new();
    let expected = "text, decimal, integer or float numbers";
    Ok(match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string_opt::<i32>().ok_or("column is not Utf8")?;
            Box::new(move |i| parse_value(a.value(i).as_bytes()))
        }
        DataType::LargeUtf8 => {
            let a = array
                .as_string_opt::<i64>()
                .ok_or("column is not LargeUtf8")?;
            Box::new(move |i| parse_value(a.value(i).as_bytes()))
        }
        DataType::Utf8View => {
            let a = array.as_string_view_opt().ok_or("column is not Utf8View")?;
            Box::new(move |i| parse_value(a.value(i).as_bytes()))
        }
        DataType::Decimal32(_, s) => {
            let (a, s) = (primitive!(array, Decimal32Type), i32::from(*s));
            Box::new(move |i| from_mantissa(i128::from(a.value(i)), s, &mut buf))
        }
        DataType::Decimal64(_, s) => {
            let (a, s) = (primitive!(array, Decimal64Type), i32::from(*s));
            Box::new(move |i| from_mantissa(i128::from(a.value(i)), s, &mut buf))
        }
        DataType::Decimal128(_, s) => {
            let (a, s) = (primitive!(array, Decimal128Type), i32::from(*s));
            Box::new(move |i| from_mantissa(a.value(i), s, &mut buf))
        }
        DataType::Int8 => {
            let a = primitive!(array, Int8Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::Int16 => {
            let a = primitive!(array, Int16Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::Int32 => {
            let a = primitive!(array, Int32Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::Int64 => {
            let a = primitive!(array, Int64Type);
            Box::new(move |i| int_value(a.value(i)))
        }
        DataType::UInt8 => {
            let a = primitive!(array, UInt8Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::UInt16 => {
            let a = primitive!(array, UInt16Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::UInt32 => {
            let a = primitive!(array, UInt32Type);
            Box::new(move |i| int_value(a.value(i).into()))
        }
        DataType::UInt64 => {
            let a = primitive!(array, UInt64Type);
            Box::new(move |i| {
                let v = a.value(i);
                i64::try_from(v)
                    .map_err(|_| format!("{v} does not fit a 64-bit signed mantissa"))
                    .and_then(int_value)
            })
        }
        DataType::Float32 => {
            let a = primitive!(array, Float32Type);
            Box::new(move |i| from_float(a.value(i), &mut buf))
        }
        DataType::Float64 => {
            let a = primitive!(array, Float64Type);
            Box::new(move |i| from_float(a.value(i), &mut buf))
        }
        DataType::Dictionary(_, _) => {
            let (keys, mut inner) = dictionary(array, value_reader)?;
            Box::new(move |i| match keys.get(i) {
                Some(&k) => inner(k),
                None => Err("empty value (null)".to_owned()),
            })
        }
        other => return Err(wrong_type(other, expected)),
    })
}

/// Checked conversion of an integer time count to nanoseconds.
fn scaled(v: i64, factor: i64, unit: &str) -> Result<i64, String> {
    v.checked_mul(factor)
        .ok_or_else(|| format!("{v} {unit} is outside the years 1677 to 2262"))
}

/// Timestamps with a time zone are stored as UTC counts; zone-less ones are wall times, UTC
/// unless `--tz` says otherwise. Integer columns follow the epoch magnitude rule of
/// `parse_timestamp`; text goes through the format's time parser, as in a CSV file.
/// `split` means a separate time-of-day column follows (then only text dates are read).
fn time_reader<'a>(
    array: &'a ArrayRef,
    times: &'a mut TimeParser,
    split: bool,
) -> Result<TimeAt<'a>, String> {
    let expected = "a timestamp, date, integer epoch or text";
    macro_rules! counts {
        ($t:ty, $factor:expr, $unit:expr, $zone:expr) => {{
            let a = primitive!(array, $t);
            let naive = $zone.is_none();
            Box::new(move |i, _| {
                let ns = scaled(a.value(i), $factor, $unit)?;
                if naive {
                    times.localize_naive(ns)
                } else {
                    Ok(ns)
                }
            })
        }};
    }
    if split
        && !matches!(
            array.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    {
        return Err("a date column beside a time column must be text".to_owned());
    }
    Ok(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, zone) => {
            counts!(TimestampSecondType, 1_000_000_000, "seconds", zone)
        }
        DataType::Timestamp(TimeUnit::Millisecond, zone) => {
            counts!(TimestampMillisecondType, 1_000_000, "milliseconds", zone)
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            counts!(TimestampMicrosecondType, 1_000, "microseconds", zone)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => {
            counts!(TimestampNanosecondType, 1, "nanoseconds", zone)
        }
        DataType::Date32 => {
            let a = primitive!(array, Date32Type);
            Box::new(move |i, _| scaled(a.value(i).into(), 86_400_000_000_000, "days"))
        }
        DataType::Date64 => {
            let a = primitive!(array, Date64Type);
            Box::new(move |i, _| scaled(a.value(i), 1_000_000, "milliseconds"))
        }
        DataType::Int32 => {
            let a = primitive!(array, Int32Type);
            Box::new(move |i, _| epoch_to_ns(a.value(i).into()))
        }
        DataType::Int64 => {
            let a = primitive!(array, Int64Type);
            Box::new(move |i, _| epoch_to_ns(a.value(i)))
        }
        DataType::UInt32 => {
            let a = primitive!(array, UInt32Type);
            Box::new(move |i, _| epoch_to_ns(a.value(i).into()))
        }
        DataType::UInt64 => {
            let a = primitive!(array, UInt64Type);
            Box::new(move |i, _| {
                let v = a.value(i);
                i64::try_from(v)
                    .map_err(|_| format!("epoch {v} does not fit in 64 bits"))
                    .and_then(epoch_to_ns)
            })
        }
        DataType::Utf8 => {
            let a = array.as_string_opt::<i32>().ok_or("column is not Utf8")?;
            Box::new(move |i, tod| times.parse(a.value(i).as_bytes(), tod.map(str::as_bytes)))
        }
        DataType::LargeUtf8 => {
            let a = array
                .as_string_opt::<i64>()
                .ok_or("column is not LargeUtf8")?;
            Box::new(move |i, tod| times.parse(a.value(i).as_bytes(), tod.map(str::as_bytes)))
        }
        DataType::Utf8View => {
            let a = array.as_string_view_opt().ok_or("column is not Utf8View")?;
            Box::new(move |i, tod| times.parse(a.value(i).as_bytes(), tod.map(str::as_bytes)))
        }
        DataType::Dictionary(_, _) => {
            let dict = array
                .as_any_dictionary_opt()
                .ok_or("column is not a dictionary")?;
            let keys = if dict.values().is_empty() {
                Vec::new()
            } else {
                dict.normalized_keys()
            };
            let mut inner = time_reader(dict.values(), times, split)?;
            Box::new(move |i, tod| match keys.get(i) {
                Some(&k) => inner(k, tod),
                None => Err("empty value (null)".to_owned()),
            })
        }
        other => return Err(wrong_type(other, expected)),
    })
}

fn symbol_reader(array: &ArrayRef) -> Result<SymbolAt<'_>, String> {
    Ok(match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string_opt::<i32>().ok_or("column is not Utf8")?;
            Box::new(move |i| a.value(i))
        }
        DataType::LargeUtf8 => {
            let a = array
                .as_string_opt::<i64>()
                .ok_or("column is not LargeUtf8")?;
            Box::new(move |i| a.value(i))
        }
        DataType::Utf8View => {
            let a = array.as_string_view_opt().ok_or("column is not Utf8View")?;
            Box::new(move |i| a.value(i))
        }
        // pandas writes categorical columns, the usual type for symbols, as dictionaries.
        DataType::Dictionary(_, _) => {
            let (keys, inner) = dictionary(array, symbol_reader)?;
            Box::new(move |i| keys.get(i).map_or("", |&k| inner(k)))
        }
        other => return Err(wrong_type(other, "text")),
    })
}

/// Keys (as value indices) and an accessor over the values of a dictionary array. With no
/// values every key is null, which the callers' null checks report before using a key.
fn dictionary<'a, T>(
    array: &'a ArrayRef,
    inner: impl Fn(&'a ArrayRef) -> Result<T, String>,
) -> Result<(Vec<usize>, T), String> {
    let dict = array
        .as_any_dictionary_opt()
        .ok_or("column is not a dictionary")?;
    let values = dict.values();
    let keys = if values.is_empty() {
        Vec::new()
    } else {
        dict.normalized_keys()
    };
    Ok((keys, inner(values)?))
}

#[cfg(test)]
mod tests {
    /// The same times, exact values and floats in both series.
    fn assert_same_series(fast: &crate::data::BarSeries, slow: &crate::data::BarSeries) {
        assert_eq!(&fast.time[..], &slow.time[..]);
        for (f, s) in [
            (&fast.open, &slow.open),
            (&fast.high, &slow.high),
            (&fast.low, &slow.low),
            (&fast.close, &slow.close),
            (&fast.volume, &slow.volume),
        ] {
            assert_eq!(f.exact, s.exact);
            assert_eq!(&f.values[..], &s.values[..]);
        }
    }

    /// Columns from `zeroed_column` are zeros of the asked length on either side of the huge
    /// page size (below it a plain `vec!`, above it the advised allocation).
    #[test]
    fn zeroed_columns_are_zeros_of_their_length() {
        for rows in [0, 1, 262_143, 262_144, 300_001] {
            let ints: Vec<i64> = super::zeroed_column(rows);
            let floats: Vec<f64> = super::zeroed_column(rows);
            assert_eq!((ints.len(), floats.len()), (rows, rows));
            assert!(ints.iter().all(|&v| v == 0) && floats.iter().all(|&v| v == 0.0));
        }
    }

    /// Partitions longer than a decode batch, into columns above the huge page size: the
    /// columnar read still equals the general reader's, row for row.
    #[test]
    fn large_partitions_decode_in_batches_into_the_same_series() {
        use crate::catalog::store::{Bars, write_partition};
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 140_001i64; // not a multiple of the batch; two files make 2.2 MB columns
        let bars = |offset: i64| Bars {
            time: (0..n).map(|i| (offset + i) * 60_000_000_000).collect(),
            columns: [
                (0..n).map(|i| 10_000 + i % 977).collect(),
                (0..n).map(|i| 11_000 + i % 977).collect(),
                (0..n).map(|i| 9_000 + i % 977).collect(),
                (0..n).map(|i| 10_500 + i % 977).collect(),
                (0..n).map(|i| i % 13).collect(),
            ],
        };
        let paths: Vec<_> = (0..2)
            .map(|k| {
                let file = format!("{k}.parquet");
                write_partition(dir.path(), &file, &bars(k * n), [2, 2, 2, 2, 0], &[])
                    .expect("write");
                dir.path().join(file)
            })
            .collect();
        let fast = read_parts_columnar(&paths, "S")
            .expect("read")
            .expect("columnar");
        let slow = read_parts(&paths, "S").expect("read");
        assert_eq!(fast.len(), 2 * n as usize);
        assert_same_series(&fast, &slow);
    }

    /// The catalog's partitions read column by column give exactly what the general reader
    /// gives; a partition that breaks a row rule falls back to it (which words the error).
    #[test]
    fn columnar_catalog_read_equals_the_general_reader() {
        use crate::catalog::store::{Bars, write_partition};
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 1000i64;
        let bars = |offset: i64| Bars {
            time: (0..n).map(|i| (offset + i) * 60_000_000_000).collect(),
            columns: [
                (0..n).map(|i| 10_000 + i).collect(),
                (0..n).map(|i| 10_050 + i).collect(),
                (0..n).map(|i| 9_990 + i).collect(),
                (0..n).map(|i| 100_200 + 10 * i).collect(),
                (0..n).map(|i| i * 7).collect(),
            ],
        };
        let scales = [2, 2, 2, 3, 0];
        // Five partitions: decoded on several threads, put back in order.
        let names = ["a", "b", "c", "d", "e"];
        for (k, name) in names.iter().enumerate() {
            let file = format!("{name}.parquet");
            write_partition(dir.path(), &file, &bars(k as i64 * n), scales, &[]).expect("write");
        }
        let paths: Vec<_> = names
            .iter()
            .map(|name| dir.path().join(format!("{name}.parquet")))
            .collect();
        let fast = read_parts_columnar(&paths, "S")
            .expect("read")
            .expect("columnar");
        let slow = read_parts(&paths, "S").expect("read");
        assert_eq!(fast.len(), 5 * n as usize);
        assert_same_series(&fast, &slow);
        assert_eq!(fast.close.exact.get(1).to_string(), "100.210");
        // A partition at other scales: not columnar (the general reader rescales).
        write_partition(dir.path(), "e.parquet", &bars(4 * n), [3, 3, 3, 4, 0], &[])
            .expect("write");
        assert!(read_parts_columnar(&paths, "S").expect("read").is_none());
        let rescaled = read_parts(&paths, "S").expect("read");
        assert_eq!(rescaled.len(), 5 * n as usize);
        assert_eq!(
            rescaled.open.exact.get(4 * n as usize),
            rust_decimal::Decimal::new(10_000, 3)
        );
        // Each file ascends, but not one after the other: not columnar.
        let swapped = [paths[1].clone(), paths[0].clone()];
        assert!(read_parts_columnar(&swapped, "S").expect("read").is_none());
        // A volume of 19 digits is stored at precision 38 (not `INT64`); it still decodes.
        let mut big = bars(0);
        big.columns[4][3] = 5_000_000_000_000_000_000;
        write_partition(dir.path(), "a.parquet", &big, scales, &[]).expect("write");
        let fast = read_parts_columnar(&paths[..2], "S")
            .expect("read")
            .expect("columnar");
        let slow = read_parts(&paths[..2], "S").expect("read");
        assert_eq!(fast.volume.exact, slow.volume.exact);
        assert_eq!(fast.volume.exact.mantissas()[3], 5_000_000_000_000_000_000);
        assert_eq!(&fast.volume.values[..], &slow.volume.values[..]);
        let paths = &paths[..2];
        // High below low in the second file: not columnar, and the general reader says where.
        let mut bad = bars(n);
        bad.columns[1][5] = 1;
        write_partition(dir.path(), "b.parquet", &bad, scales, &[]).expect("write");
        assert!(read_parts_columnar(paths, "S").expect("read").is_none());
        let err = read_parts(paths, "S").expect_err("high below low");
        assert_eq!(err.line_or_row(), Some(6));
    }

    proptest::proptest! {
        /// The column checks and float derivation of a catalog load agree with the row by row
        /// ones (`check_bar`, `to_float`), at one scale and at several.
        #[test]
        fn column_checks_equal_the_row_checks(
            rows in proptest::collection::vec(
                (0i64..2000, 0i64..2000, 0i64..2000, 0i64..2000, -3i64..1_000_000), 1..40),
            mixed in proptest::bool::ANY,
            big in proptest::bool::ANY,
        ) {
            let scales = if mixed { [2, 3, 2, 2, 0] } else { [2, 2, 2, 2, 0] };
            let mut columns: [Vec<i64>; 5] = Default::default();
            for &(o, h, l, c, v) in &rows {
                for (k, x) in [o, h, l, c, v].into_iter().enumerate() {
                    columns[k].push(if big && k == 4 { x.saturating_mul(1 << 50) } else { x });
                }
            }
            let want = (0..rows.len()).all(|i| {
                let values: [Value; 5] = std::array::from_fn(|k| Value {
                    mantissa: columns[k][i],
                    scale: scales[k],
                    float: 0.0,
                });
                super::super::validate::check_bar(&values).is_ok()
            });
            let mut views = columns.clone();
            let views: [&mut [i64]; 5] = views.each_mut().map(|v| v.as_mut_slice());
            proptest::prop_assert_eq!(rows_pass(&views, scales), want);
            for (k, column) in columns.iter().enumerate() {
                let mut out = vec![0.0; column.len()];
                super::super::decimal::to_floats(column, scales[k], &mut out);
                for (o, &m) in out.iter().zip(column) {
                    let one = super::super::decimal::to_float(m, scales[k]);
                    proptest::prop_assert_eq!(o.to_bits(), one.to_bits());
                }
            }
        }
    }

    use super::super::{LoadOptions, load};
    use super::*;
    use ::parquet::arrow::ArrowWriter;
    use ::parquet::basic::{Compression, ZstdLevel};
    use ::parquet::file::properties::WriterProperties;
    use arrow_array::{
        BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array, Float64Array,
        Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use rust_decimal::Decimal;
    use std::io::Write;
    use std::path::PathBuf;
    use std::str::FromStr;
    use std::sync::Arc;

    const T0: i64 = 1_577_836_800_000_000_000;
    const MIN: i64 = 60_000_000_000;

    fn write_batch(
        dir: &tempfile::TempDir,
        name: &str,
        columns: Vec<(&str, ArrayRef)>,
        compression: Compression,
    ) -> PathBuf {
        let path = dir.path().join(name);
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(3))
            .build();
        let file = File::create(&path).expect("create");
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        path
    }

    fn strings(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn ns_utc(v: &[i64]) -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC"))
    }

    fn five_times() -> Vec<i64> {
        (0..5).map(|i| T0 + i * MIN).collect()
    }

    fn zstd() -> Compression {
        Compression::ZSTD(ZstdLevel::default())
    }

    fn load_default(path: &Path) -> Result<Vec<BarSeries>, DataError> {
        load(path, &LoadOptions::default())
    }

    #[test]
    fn string_prices_with_timestamp_ns_utc() {
        for (name, compression) in [("a.parquet", Compression::SNAPPY), ("a.pq", zstd())] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = write_batch(
                &dir,
                name,
                vec![
                    ("timestamp", ns_utc(&five_times())),
                    ("open", strings(&["1.5", "1.25", "1", "2", "2.125"])),
                    ("high", strings(&["2", "2", "2", "2", "3"])),
                    ("low", strings(&["1", "1", "1", "1", "1"])),
                    ("close", strings(&["1.75", "1.5", "1", "2", "2.5"])),
                    ("volume", strings(&["10", "20", "30", "40", "50.5"])),
                ],
                compression,
            );
            let s = load_default(&path).expect("load");
            assert_eq!(s.len(), 1);
            let s = &s[0];
            assert_eq!(s.symbol, "a");
            assert_eq!(&s.time[..], &five_times()[..]);
            assert_eq!(s.open.exact.scale(), 3);
            assert_eq!(s.open.exact.get(4), dec("2.125"));
            assert_eq!(s.open.exact.get(1), dec("1.25"));
            assert_eq!(&s.volume.values[..], &[10.0, 20.0, 30.0, 40.0, 50.5]);
        }
    }

    #[test]
    fn float64_prices_with_int64_ms_epochs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ms: Vec<i64> = five_times().iter().map(|t| t / 1_000_000).collect();
        let f = |v: &[f64]| -> ArrayRef { Arc::new(Float64Array::from(v.to_vec())) };
        let path = write_batch(
            &dir,
            "F.parquet",
            vec![
                ("Time", Arc::new(Int64Array::from(ms)) as ArrayRef),
                ("Open", f(&[0.1, 0.2, 0.3, 101.25, 1e-7])),
                ("High", f(&[0.3, 0.3, 0.3, 101.25, 1e-7])),
                ("Low", f(&[0.1, 0.1, 0.3, 101.25, 1e-7])),
                ("Close", f(&[0.2, 0.2, 0.3, 101.25, 1e-7])),
                ("Volume", f(&[1.0, 2.0, 0.1 + 0.2, 4.0, 5.0])),
            ],
            zstd(),
        );
        let s = load_default(&path).expect("load");
        let s = &s[0];
        assert_eq!(&s.time[..], &five_times()[..]);
        assert_eq!(s.open.exact.get(0), dec("0.1"));
        assert_eq!(s.open.exact.get(3), dec("101.25"));
        assert_eq!(s.open.exact.get(4), dec("0.0000001"));
        // Shortest round-trip text of 0.1 + 0.2.
        assert_eq!(s.volume.exact.get(2), dec("0.30000000000000004"));
        assert_eq!(s.volume.exact.scale(), 17);
        assert_eq!(s.volume.values[2], 0.1 + 0.2);
        assert_eq!(s.volume.exact.get(4), dec("5"));
        assert_eq!(&s.open.values[..], &[0.1, 0.2, 0.3, 101.25, 1e-7]);
    }

    #[test]
    fn float32_prices_take_their_shortest_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = |v: f32| -> ArrayRef { Arc::new(Float32Array::from(vec![v])) };
        let path = write_batch(
            &dir,
            "F.parquet",
            vec![
                ("timestamp", ns_utc(&[T0])),
                ("open", f(0.1)),
                ("high", f(0.1)),
                ("low", f(0.1)),
                ("close", f(0.1)),
                ("volume", f(7.0)),
            ],
            Compression::SNAPPY,
        );
        let s = load_default(&path).expect("load");
        assert_eq!(s[0].open.exact.get(0), dec("0.1"));
        assert_eq!(s[0].open.values[0], 0.1f64);
    }

    #[test]
    fn decimal128_prices_with_date32_and_dictionary_symbols() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = |v: &[i128]| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(v.to_vec())
                    .with_precision_and_scale(18, 4)
                    .expect("decimal type"),
            )
        };
        let days: Vec<i32> = vec![18262, 18262, 18263, 18263];
        let symbols: DictionaryArray<Int32Type> =
            vec!["SPY", "QQQ", "SPY", "QQQ"].into_iter().collect();
        let path = write_batch(
            &dir,
            "multi.parquet",
            vec![
                ("symbol", Arc::new(symbols) as ArrayRef),
                ("date", Arc::new(Date32Array::from(days)) as ArrayRef),
                ("open", d(&[3_000_000, 2_000_000, 3_010_000, 2_010_000])),
                ("high", d(&[3_100_000, 2_100_000, 3_110_500, 2_110_000])),
                ("low", d(&[2_900_000, 1_900_000, 2_910_000, 1_910_000])),
                ("close", d(&[3_050_000, 2_050_000, 3_060_000, 2_060_000])),
                (
                    "volume",
                    Arc::new(Int64Array::from(vec![100, 200, 300, 400])) as ArrayRef,
                ),
            ],
            Compression::SNAPPY,
        );
        let s = load_default(&path).expect("load");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].symbol.as_str(), s[1].symbol.as_str()), ("SPY", "QQQ"));
        let day = 86_400_000_000_000;
        assert_eq!(&s[0].time[..], &[T0, T0 + day]);
        assert_eq!(s[0].high.exact.scale(), 4);
        assert_eq!(s[0].high.exact.get(1), dec("311.0500"));
        assert_eq!(s[0].high.values[1], 311.05);
        assert_eq!(s[1].volume.exact.get(1), dec("400"));
        assert_eq!(s[1].volume.values[1], 400.0);
    }

    #[test]
    fn timestamp_ms_with_zone_and_string_timestamps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ms: Vec<i64> = five_times().iter().map(|t| t / 1_000_000).collect();
        let ones = || strings(&["1"; 5]);
        let path = write_batch(
            &dir,
            "x.parquet",
            vec![
                (
                    "timestamp",
                    Arc::new(TimestampMillisecondArray::from(ms).with_timezone("America/New_York"))
                        as ArrayRef,
                ),
                ("open", ones()),
                ("high", ones()),
                ("low", ones()),
                ("close", ones()),
                ("volume", ones()),
            ],
            Compression::UNCOMPRESSED,
        );
        assert_eq!(
            &load_default(&path).expect("load")[0].time[..],
            &five_times()[..]
        );

        let path = write_batch(
            &dir,
            "y.parquet",
            vec![
                (
                    "datetime",
                    strings(&[
                        "2020-01-01T00:00:00Z",
                        "2020-01-01 00:01:00",
                        "2020-01-01T00:02:00+00:00",
                        "1577836980",
                        "2020-01-01T00:04:00.000Z",
                    ]),
                ),
                ("open", ones()),
                ("high", ones()),
                ("low", ones()),
                ("close", ones()),
                ("volume", ones()),
            ],
            Compression::SNAPPY,
        );
        assert_eq!(
            &load_default(&path).expect("load")[0].time[..],
            &five_times()[..]
        );
    }

    fn ohlcv_with(open: ArrayRef) -> Vec<(&'static str, ArrayRef)> {
        let ones = || strings(&["1"; 5]);
        vec![
            ("timestamp", ns_utc(&five_times())),
            ("open", open),
            ("high", ones()),
            ("low", ones()),
            ("close", ones()),
            ("volume", ones()),
        ]
    }

    #[test]
    fn row_errors_name_row_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nan: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 1.0, 1.0, f64::NAN, 1.0]));
        let inf: ArrayRef = Arc::new(Float64Array::from(vec![1.0, f64::INFINITY, 1.0, 1.0, 1.0]));
        let null: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1"),
            Some("1"),
            None,
            Some("1"),
            Some("1"),
        ]));
        let text = strings(&["1", "1", "1", "1", "x"]);
        let high = strings(&["1", "1", "0.5", "1", "1"]);
        let cases: Vec<(ArrayRef, usize, &str)> = vec![
            (nan, 4, "not a finite number"),
            (inf, 2, "not a finite number"),
            (null, 3, "empty value"),
            (text, 5, "cannot parse `x`"),
            (high, 3, "low 1 is above open 0.5"),
        ];
        for (k, (array, row, want)) in cases.into_iter().enumerate() {
            let path = write_batch(
                &dir,
                &format!("e{k}.parquet"),
                ohlcv_with(array),
                Compression::SNAPPY,
            );
            let err = load_default(&path).expect_err(want);
            assert_eq!(err.line_or_row(), Some(row), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains(&format!("row {row}")),
                "{msg}"
            );
        }
    }

    #[test]
    fn time_errors_and_row_numbers_across_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut times = five_times();
        times[4] = times[2];
        let ones = || strings(&["1"; 5]);
        let path = write_batch(
            &dir,
            "t.parquet",
            vec![
                ("timestamp", ns_utc(&times)),
                ("open", ones()),
                ("high", ones()),
                ("low", ones()),
                ("close", ones()),
                ("volume", ones()),
            ],
            Compression::SNAPPY,
        );
        for batch_size in [1, 2, 3, 1000] {
            let err = read_with(&path, "T", &Format::default(), batch_size).expect_err("unsorted");
            assert_eq!(err.line_or_row(), Some(5));
            let msg = err.to_string();
            assert!(msg.contains("unsorted") && msg.contains("row 4"), "{msg}");
        }
    }

    #[test]
    fn schema_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true; 5]));
        let path = write_batch(&dir, "b.parquet", ohlcv_with(bools), Compression::SNAPPY);
        let err = load_default(&path).expect_err("bool prices");
        assert_eq!(err.column(), Some("open"));
        assert!(err.to_string().contains("has type Boolean"), "{err}");

        let path = write_batch(
            &dir,
            "m.parquet",
            vec![("ts", ns_utc(&[T0])), ("open", strings(&["1"]))],
            Compression::SNAPPY,
        );
        let msg = load_default(&path).expect_err("missing").to_string();
        assert!(msg.contains("missing columns `timestamp`"), "{msg}");
        assert!(msg.contains("columns found: `ts`, `open`"), "{msg}");

        let path = write_batch(
            &dir,
            "e.parquet",
            {
                let mut c = ohlcv_with(strings(&["1"; 5]));
                for (_, a) in &mut c {
                    *a = a.slice(0, 0);
                }
                c
            },
            Compression::SNAPPY,
        );
        let msg = load_default(&path).expect_err("empty").to_string();
        assert!(msg.contains("contains no bars"), "{msg}");
    }

    #[test]
    fn garbage_and_truncated_files_give_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write_batch(&dir, "g.parquet", ohlcv_with(strings(&["1"; 5])), zstd());
        let bytes = std::fs::read(&good).expect("read");
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let bad = dir.path().join("bad.parquet");
        for round in 0..300 {
            let data: Vec<u8> = match round % 3 {
                // Random bytes, sometimes with the magic at both ends.
                0 => {
                    let mut v: Vec<u8> = (0..(next() % 2000)).map(|_| next() as u8).collect();
                    if round % 2 == 0 {
                        v.splice(0..0, *b"PAR1");
                        v.extend_from_slice(b"PAR1");
                    }
                    v
                }
                // Truncated.
                1 => bytes[..(next() as usize % bytes.len())].to_vec(),
                // A valid file with a few bytes flipped.
                _ => {
                    let mut v = bytes.clone();
                    for _ in 0..4 {
                        let i = next() as usize % v.len();
                        v[i] ^= (next() as u8) | 1;
                    }
                    v
                }
            };
            let mut f = File::create(&bad).expect("create");
            f.write_all(&data).expect("write");
            drop(f);
            // Flipped bytes may land in data the checks accept; only a panic is a failure.
            let result = load_default(&bad);
            if round % 3 != 2 {
                assert!(result.is_err(), "round {round}");
            }
        }
    }

    /// 1M one-minute bars, Float64 prices and Timestamp(ns, UTC), written like pandas would.
    /// Run with `cargo test --release -- --ignored --nocapture load_one_million_rows`.
    #[test]
    #[ignore]
    fn load_one_million_rows_parquet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 1_000_000i64;
        let cents: Vec<i64> = (0..n).map(|i| 10_000 + (i * 7919) % 5_000).collect();
        let price = |d: i64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                cents.iter().map(|c| (c + d) as f64 / 100.0),
            ))
        };
        let times: Vec<i64> = (0..n).map(|i| T0 + i * MIN).collect();
        let path = dir.path().join("BIG.parquet");
        let batch = RecordBatch::try_from_iter(vec![
            ("timestamp", ns_utc(&times)),
            ("open", price(0)),
            ("high", price(25)),
            ("low", price(-30)),
            ("close", price(5)),
            (
                "volume",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| 1000 + i % 977))) as ArrayRef,
            ),
        ])
        .expect("batch");
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let file = File::create(&path).expect("create");
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");

        let start = std::time::Instant::now();
        let s = load_default(&path).expect("load");
        let elapsed = start.elapsed();
        assert_eq!(s[0].len(), 1_000_000);
        outln!(
            "loaded 1,000,000 Parquet rows (Float64 prices) in {:.3} s",
            elapsed.as_secs_f64()
        );
    }
}
