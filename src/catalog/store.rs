//! Partition files: one Parquet file per dataset and calendar month (UTC), prices and volumes
//! as `Decimal128` at the dataset's scale per column (so pandas reads `decimal.Decimal`s and
//! polars `Decimal`s, exactly), times as UTC nanoseconds, zstd-compressed. A column whose
//! values all fit in 18 digits has precision 18 (Parquet `INT64`: eight bytes a value, cheap to
//! write and to read); others precision 38.
//!
//! A file is written under a hidden temporary name, synced, and renamed to a name no other
//! version has used; the metadata then points at it. A crash before the metadata commit leaves
//! a file nothing refers to (removed by the next writer), never a half-written referenced one.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Decimal128Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Datelike};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::CatalogError;
use crate::data::BarSeries;

/// Names of the value columns, in the order of `Bars::columns`.
pub const VALUE_COLUMNS: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// Bars as plain columns: times and, per value column, mantissas at the dataset's scale.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bars {
    pub time: Vec<i64>,
    pub columns: [Vec<i64>; 5],
}

impl Bars {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// The bars of a series with every column rescaled to `scales`, which must be at least the
    /// series' own (a larger scale only appends zeros; it fails if a value no longer fits).
    pub fn from_series(series: &BarSeries, scales: [u32; 5]) -> Result<Self, CatalogError> {
        let sources = [
            &series.open.exact,
            &series.high.exact,
            &series.low.exact,
            &series.close.exact,
            &series.volume.exact,
        ];
        let mut columns: [Vec<i64>; 5] = Default::default();
        for ((out, column), (scale, name)) in columns
            .iter_mut()
            .zip(sources)
            .zip(scales.iter().zip(VALUE_COLUMNS))
        {
            let k = scale.checked_sub(column.scale()).ok_or_else(|| {
                CatalogError::Invalid(format!("{name}: cannot store at fewer decimal places"))
            })?;
            let factor = 10i64.checked_pow(k).ok_or_else(|| too_fine(name))?;
            *out = column
                .mantissas()
                .iter()
                .map(|&m| m.checked_mul(factor).ok_or_else(|| too_fine(name)))
                .collect::<Result<_, _>>()?;
        }
        Ok(Bars {
            time: series.time.to_vec(),
            columns,
        })
    }

    pub fn view(&self) -> BarsRef<'_> {
        BarsRef {
            time: &self.time,
            columns: std::array::from_fn(|k| self.columns[k].as_slice()),
        }
    }

    /// Rows `lo..hi`.
    pub fn slice(&self, lo: usize, hi: usize) -> Bars {
        Bars {
            time: self.time[lo..hi].to_vec(),
            columns: std::array::from_fn(|k| self.columns[k][lo..hi].to_vec()),
        }
    }

    /// `self` with the bars of `newer` replacing those in `newer`'s time span.
    pub fn merged(&self, newer: BarsRef<'_>) -> Bars {
        let (Some(&first), Some(&last)) = (newer.time.first(), newer.time.last()) else {
            return self.clone();
        };
        let before = self.time.partition_point(|&t| t < first);
        let after = self.time.partition_point(|&t| t <= last);
        let mut out = self.slice(0, before);
        let tail = self.slice(after, self.len());
        for part in [newer, tail.view()] {
            out.time.extend_from_slice(part.time);
            for (o, c) in out.columns.iter_mut().zip(part.columns) {
                o.extend_from_slice(c);
            }
        }
        out
    }
}

/// Bars borrowed from a series or from [`Bars`]: what a partition is written from, so an import
/// whose scales are the dataset's writes straight from the parsed columns, without a copy.
#[derive(Debug, Clone, Copy)]
pub struct BarsRef<'a> {
    pub time: &'a [i64],
    pub columns: [&'a [i64]; 5],
}

impl<'a> BarsRef<'a> {
    /// The columns of `series` as they are (its own scales).
    pub fn of_series(series: &'a BarSeries) -> Self {
        BarsRef {
            time: &series.time,
            columns: [
                series.open.exact.mantissas(),
                series.high.exact.mantissas(),
                series.low.exact.mantissas(),
                series.close.exact.mantissas(),
                series.volume.exact.mantissas(),
            ],
        }
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Rows `lo..hi`.
    pub fn slice(&self, lo: usize, hi: usize) -> BarsRef<'a> {
        BarsRef {
            time: &self.time[lo..hi],
            columns: self.columns.map(|c| &c[lo..hi]),
        }
    }

    /// Number of steps between consecutive bars longer than `interval_ns`.
    pub fn gaps(&self, interval_ns: i64) -> usize {
        self.time
            .windows(2)
            .filter(|w| w[1] - w[0] > interval_ns)
            .count()
    }
}

impl<'a> From<&'a Bars> for BarsRef<'a> {
    fn from(bars: &'a Bars) -> Self {
        bars.view()
    }
}

fn too_fine(name: &str) -> CatalogError {
    CatalogError::Invalid(format!(
        "{name}: a value does not fit a 64-bit mantissa at the dataset's decimal places"
    ))
}

/// The partition (UTC calendar month, `2024-01`) a bar time belongs to.
pub fn month_key(t: i64) -> String {
    let dt = DateTime::from_timestamp_nanos(t);
    format!("{:04}-{:02}", dt.year(), dt.month())
}

/// Where the month holding `t` ends: the first instant of the next month (UTC ns).
pub fn month_end(t: i64) -> i64 {
    let dt = DateTime::from_timestamp_nanos(t);
    let (y, m) = if dt.month() == 12 {
        (dt.year() + 1, 1)
    } else {
        (dt.year(), dt.month() + 1)
    };
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_utc().timestamp_nanos_opt())
        .unwrap_or(i64::MAX)
}

/// A symbol, source or timeframe as a file name: anything but letters, digits and `._-=`
/// percent-encoded (`BTC/USDT` → `BTC%2FUSDT`), so no name can climb out of its folder.
pub fn file_name_part(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'=')
            || (b == b'.' && !out.is_empty())
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes `bars` as a partition file at `dir/name` (through a hidden temporary file), synced
/// to disk. Returns its size in bytes and checksum.
pub fn write_partition<'a>(
    dir: &Path,
    name: &str,
    bars: impl Into<BarsRef<'a>>,
    scales: [u32; 5],
    metadata: &[(&str, String)],
) -> Result<(u64, String), CatalogError> {
    let bars: BarsRef<'a> = bars.into();
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::io(dir, e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| CatalogError::io(&p, e)
    };
    let mut fields = vec![Field::new(
        "time",
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        false,
    )];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(
        TimestampNanosecondArray::from(bars.time.to_vec()).with_timezone("UTC"),
    )];
    for ((name, column), scale) in VALUE_COLUMNS.iter().zip(bars.columns).zip(scales) {
        let scale = i8::try_from(scale).map_err(|_| too_fine(name))?;
        let precision = match column.iter().all(|m| m.unsigned_abs() < 10u64.pow(18)) {
            true => 18,
            false => 38,
        };
        fields.push(Field::new(
            *name,
            DataType::Decimal128(precision, scale),
            false,
        ));
        let array = Decimal128Array::from_iter_values(column.iter().map(|&m| i128::from(m)))
            .with_precision_and_scale(precision, scale)
            .map_err(|e| CatalogError::Invalid(e.to_string()))?;
        arrays.push(Arc::new(array));
    }
    let metadata: std::collections::HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
    // Times are unique: a dictionary only costs; they step by the bar interval, so delta
    // encoding leaves next to nothing to compress or decompress. Min/max statistics are kept
    // for the time column (readers prune by time); on the decimal columns they cost a 16-byte
    // signed comparison per value and no reader uses them.
    let time = ColumnPath::from("time");
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time.clone(), Encoding::DELTA_BINARY_PACKED)
        .set_column_statistics_enabled(time, EnabledStatistics::Chunk);
    for name in VALUE_COLUMNS {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
    }
    let props = props.build();
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
    writer
        .write(&batch)
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
    let file = writer
        .into_inner()
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    super::crash_point("partition-written");
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    sync_dir(dir);
    let (bytes, sum) = checksum(&target)?;
    Ok((bytes, sum))
}

/// Size and XXH3-128 checksum (hex) of a file.
pub fn checksum(path: &Path) -> Result<(u64, String), CatalogError> {
    let mut file = File::open(path).map_err(|e| CatalogError::io(path, e))?;
    let mut hasher = twox_hash::XxHash3_128::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| CatalogError::io(path, e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.write(&buf[..n]);
    }
    Ok((bytes, format!("{:032x}", hasher.finish_128())))
}

/// XXH3-128 of several checksums in order: a dataset's checksum from its partitions'.
pub fn combine(sums: &[String]) -> String {
    let mut hasher = twox_hash::XxHash3_128::new();
    for s in sums {
        hasher.write(s.as_bytes());
        hasher.write(b"\n");
    }
    format!("{:032x}", hasher.finish_128())
}

/// Makes a rename durable (best effort: not every file system supports syncing a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads partition files back (oldest first) as one series.
pub fn read(
    paths: &[PathBuf],
    symbol: &str,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<BarSeries, CatalogError> {
    crate::data::load_parts(paths, symbol, start, end).map_err(CatalogError::Data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(times: &[i64]) -> Bars {
        Bars {
            time: times.to_vec(),
            columns: std::array::from_fn(|k| times.iter().map(|t| t * 10 + k as i64).collect()),
        }
    }

    #[test]
    fn merge_replaces_the_newer_span() {
        let old = bars(&[1, 2, 3, 4, 5]);
        let mut new = bars(&[3, 4]);
        new.columns[3] = vec![-1, -2];
        let m = old.merged(new.view());
        assert_eq!(m.time, vec![1, 2, 3, 4, 5]);
        assert_eq!(m.columns[3], vec![13, 23, -1, -2, 53]);
        let m = old.merged(bars(&[0, 7]).view());
        assert_eq!(m.time, vec![0, 7], "the span 0..=7 is replaced whole");
        assert_eq!(old.merged(bars(&[6]).view()).time, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn names_and_months() {
        assert_eq!(file_name_part("BTC/USDT"), "BTC%2FUSDT");
        assert_eq!(file_name_part("ccxt:binance"), "ccxt%3Abinance");
        assert_eq!(file_name_part("EURUSD=X"), "EURUSD=X");
        assert_eq!(file_name_part(".."), "%2E.");
        assert_eq!(month_key(1_577_836_800_000_000_000), "2020-01");
        assert_eq!(month_key(1_577_836_799_000_000_000), "2019-12");
        assert_eq!(
            month_end(1_577_836_799_000_000_000),
            1_577_836_800_000_000_000
        );
        assert_eq!(month_key(month_end(1_577_836_800_000_000_000)), "2020-02");
    }
}
