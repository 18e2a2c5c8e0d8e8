//! Parquet twins of the CSV files, written with `parquet::arrow::ArrowWriter` (snappy).
//!
//! Times are `Timestamp(Nanosecond, "UTC")`; money is `Decimal128(p, s)` with `s` the largest
//! scale present in the column, so the values are exact, and `p` 18 when every value fits in 18
//! digits (stored as Parquet `INT64`), else 38 (see [`DecimalColumn`]).

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow_array::types::Decimal128Type;
use arrow_array::{
    ArrayRef, PrimitiveArray, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rust_decimal::Decimal;

use super::output::{Labels, SymbolNames, direction_name};
use super::{EquityPoint, MetricsError};
use crate::model::{ClosedTrade, Fill};

/// Rows per record batch handed to the writer.
const BATCH_ROWS: usize = 1 << 17;
/// Largest precision of `Decimal128`.
const MAX_PRECISION: u8 = 38;
/// Largest precision Parquet stores as an `INT64`: eight bytes a value, written and read
/// without a byte array per value (a million-row equity curve writes several times faster).
const INT64_PRECISION: u8 = 18;
/// Largest scale a `rust_decimal::Decimal` can have.
const MAX_DECIMAL_SCALE: u32 = 28;
/// 10^38 - 1: the largest unscaled value of precision 38.
const MAX_UNSCALED: u128 = 10u128.pow(MAX_PRECISION as u32) - 1;

pub(super) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The `Decimal128(precision, scale)` layout of one money column.
///
/// `scale` is the largest scale among the column's values (at most 28), which stores every
/// value exactly as long as each fits in 38 digits at that scale. Only when some value would
/// not (a column mixing, say, 13 integer digits with 28 decimals) is the scale lowered until
/// all fit, and the values with more decimals are rounded (banker's rounding). `precision` is
/// 18 when every value fits in 18 digits at that scale (Parquet stores it as `INT64`), else 38;
/// readers get the same decimals either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecimalColumn {
    pub scale: u32,
    pub precision: u8,
}

impl DecimalColumn {
    pub fn for_values<I: Iterator<Item = Decimal>>(values: impl Fn() -> I) -> Self {
        // The largest magnitude per scale (a million values share a few scales): one digit
        // count per scale instead of one per value.
        let mut largest_at = [None::<u128>; MAX_DECIMAL_SCALE as usize + 1];
        for v in values() {
            let m = &mut largest_at[v.scale() as usize];
            *m = Some(m.unwrap_or(0).max(v.mantissa().unsigned_abs()));
        }
        let mut scale = 0;
        // Digits left of the scale: value digits at scale S = int_digits + S.
        let mut int_digits = i64::MIN;
        for (s, m) in (0u32..).zip(largest_at) {
            let Some(m) = m else { continue };
            scale = s;
            if m != 0 {
                int_digits = int_digits.max(i64::from(m.ilog10() + 1) - i64::from(s));
            }
        }
        let room = i64::from(MAX_PRECISION) - int_digits.max(0);
        let largest = scale;
        let mut scale = scale.min(MAX_DECIMAL_SCALE).min(room.max(0) as u32);
        // At the largest scale present nothing rounds, and `room` leaves every value its
        // digits: all fit, no need for another pass over a million values. Below it, rounding
        // can carry into one more digit (9.99 -> 10.0); step down until all fit.
        while scale > 0 && scale < largest && values().any(|v| scaled(v, scale).is_none()) {
            scale -= 1;
        }
        // Digits of the widest value at `scale`; below the largest scale, rounding may carry
        // into one more.
        let digits = int_digits.max(0) + i64::from(scale) + i64::from(scale < largest);
        let precision = match digits <= i64::from(INT64_PRECISION) {
            true => INT64_PRECISION,
            false => MAX_PRECISION,
        };
        DecimalColumn { scale, precision }
    }

    pub fn data_type(self) -> DataType {
        DataType::Decimal128(self.precision, self.scale as i8)
    }

    pub fn array(self, values: impl Iterator<Item = Decimal>) -> Result<ArrayRef, ArrowError> {
        let array = PrimitiveArray::<Decimal128Type>::from_iter_values(
            // `for_values` checked every value fits, except at scale 0 where nothing is left
            // to lower; saturate there rather than write an invalid number.
            values.map(|v| {
                scaled(v, self.scale).unwrap_or(if v.is_sign_negative() {
                    -(MAX_UNSCALED as i128)
                } else {
                    MAX_UNSCALED as i128
                })
            }),
        )
        .with_precision_and_scale(self.precision, self.scale as i8)?;
        Ok(Arc::new(array))
    }
}

/// `v` as an unscaled integer at `scale` (rounded if `v` has more decimals), if it fits in
/// precision 38.
pub(crate) fn scaled(v: Decimal, scale: u32) -> Option<i128> {
    if v.scale() == scale {
        // The common case (a value at the column's scale): its mantissa, which `Decimal`
        // keeps below 2^96, well inside precision 38.
        return Some(v.mantissa());
    }
    let v = if v.scale() > scale {
        v.round_dp(scale)
    } else {
        v
    };
    let unscaled = v
        .mantissa()
        .checked_mul(10i128.checked_pow(scale - v.scale())?)?;
    (unscaled.unsigned_abs() <= MAX_UNSCALED).then_some(unscaled)
}

pub(super) fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// Writes `rows` rows in batches; `columns` builds the arrays of one range of rows.
pub(super) fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    rows: usize,
    mut columns: impl FnMut(Range<usize>) -> Result<Vec<ArrayRef>, ArrowError>,
) -> Result<(), MetricsError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let parquet_err = |source| MetricsError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let arrow_err = |source| MetricsError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // ArrowWriter buffers its output itself.
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_err)?;
    let mut start = 0;
    while start < rows {
        let end = rows.min(start + BATCH_ROWS);
        let batch = RecordBatch::try_new(schema.clone(), columns(start..end).map_err(arrow_err)?)
            .map_err(arrow_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        start = end;
    }
    writer.close().map_err(parquet_err)?;
    Ok(())
}

pub(crate) fn write_equity(path: &Path, equity: &[EquityPoint]) -> Result<(), MetricsError> {
    let layout = [
        DecimalColumn::for_values(|| equity.iter().map(|p| p.cash)),
        DecimalColumn::for_values(|| equity.iter().map(|p| p.equity)),
    ];
    let mut file = EquityParquet::create(path, layout)?;
    for rows in equity.chunks(BATCH_ROWS) {
        file.write(rows)?;
    }
    file.finish()
}

impl DecimalColumn {
    /// Whether every value is stored exactly in this layout: no more decimals than `scale`,
    /// and no more digits than `precision`.
    fn admits(self, mut values: impl Iterator<Item = Decimal>) -> bool {
        let bound = 10i128.pow(u32::from(self.precision));
        values.all(|v| {
            v.scale() <= self.scale && scaled(v, self.scale).is_some_and(|u| u.abs() < bound)
        })
    }
}

/// `equity.parquet` written in pieces: whole ([`write_equity`]), or as a run goes
/// (`super::equity_stream`), where the layout comes from the first piece and a later piece it
/// cannot hold exactly is refused ([`EquityParquet::admit`]), so the file is then rewritten
/// whole. Either way the file is the one [`write_equity`] writes.
pub(crate) struct EquityParquet {
    path: std::path::PathBuf,
    schema: SchemaRef,
    /// Of the cash and equity columns.
    layout: [DecimalColumn; 2],
    writer: ArrowWriter<File>,
}

impl EquityParquet {
    pub(crate) fn create(path: &Path, layout: [DecimalColumn; 2]) -> Result<Self, MetricsError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", timestamp_type(), false),
            Field::new("cash", layout[0].data_type(), false),
            Field::new("equity", layout[1].data_type(), false),
        ]));
        // A row per tick: dictionaries (a million distinct times, amounts that rarely repeat
        // for long) and per-page min/max of decimals took half the writing time and buy a
        // reader little; the time column keeps its statistics for range filters.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(ColumnPath::from("time"), EnabledStatistics::Chunk)
            .build();
        let file = File::create(path).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            MetricsError::Parquet {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(EquityParquet {
            path: path.to_path_buf(),
            schema,
            layout,
            writer,
        })
    }

    /// The layout of a first piece of a curve, if the piece fits it exactly.
    pub(crate) fn layout_of(rows: &[EquityPoint]) -> Option<[DecimalColumn; 2]> {
        let layout = [
            DecimalColumn::for_values(|| rows.iter().map(|p| p.cash)),
            DecimalColumn::for_values(|| rows.iter().map(|p| p.equity)),
        ];
        layout[0]
            .admits(rows.iter().map(|p| p.cash))
            .then_some(layout)
            .filter(|l| l[1].admits(rows.iter().map(|p| p.equity)))
    }

    /// Whether `rows` fit this file's layout exactly (else the file must be written whole).
    pub(crate) fn admit(&self, rows: &[EquityPoint]) -> bool {
        self.layout[0].admits(rows.iter().map(|p| p.cash))
            && self.layout[1].admits(rows.iter().map(|p| p.equity))
    }

    pub(crate) fn write(&mut self, rows: &[EquityPoint]) -> Result<(), MetricsError> {
        let arrow_err = |source| MetricsError::Arrow {
            path: self.path.clone(),
            source,
        };
        let [cash, eq] = self.layout;
        let columns = vec![
            timestamps(rows.iter().map(|p| p.time)),
            cash.array(rows.iter().map(|p| p.cash)).map_err(arrow_err)?,
            eq.array(rows.iter().map(|p| p.equity)).map_err(arrow_err)?,
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_err)?;
        self.writer
            .write(&batch)
            .map_err(|source| MetricsError::Parquet {
                path: self.path.clone(),
                source,
            })
    }

    pub(crate) fn finish(self) -> Result<(), MetricsError> {
        self.writer
            .close()
            .map(|_| ())
            .map_err(|source| MetricsError::Parquet {
                path: self.path,
                source,
            })
    }
}

pub(crate) fn write_fills(
    path: &Path,
    fills: &[Fill],
    names: &SymbolNames,
    labels: Option<&Labels<'_>>,
) -> Result<(), MetricsError> {
    let qty = DecimalColumn::for_values(|| fills.iter().map(|f| f.quantity));
    let price = DecimalColumn::for_values(|| fills.iter().map(|f| f.price));
    let fee = DecimalColumn::for_values(|| fills.iter().map(|f| f.fee));
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("qty", qty.data_type(), false),
        Field::new("price", price.data_type(), false),
        Field::new("fee", fee.data_type(), false),
        Field::new("order_id", DataType::UInt64, false),
    ]));
    let schema = labelled_schema(schema, labels);
    write_parquet(path, schema, fills.len(), |range| {
        let rows = &fills[range.clone()];
        labelled_columns(
            labels,
            range,
            vec![
                timestamps(rows.iter().map(|f| f.time)),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|f| names.name(f.symbol)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|f| f.side.as_str()),
                )),
                qty.array(rows.iter().map(|f| f.quantity))?,
                price.array(rows.iter().map(|f| f.price))?,
                fee.array(rows.iter().map(|f| f.fee))?,
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|f| f.order_id.0),
                )),
            ],
        )
    })
}

pub(crate) fn write_trades(
    path: &Path,
    trades: &[ClosedTrade],
    names: &SymbolNames,
    labels: Option<&Labels<'_>>,
) -> Result<(), MetricsError> {
    let qty = DecimalColumn::for_values(|| trades.iter().map(|t| t.max_quantity));
    let pnl = DecimalColumn::for_values(|| trades.iter().map(|t| t.pnl));
    let fees = DecimalColumn::for_values(|| trades.iter().map(|t| t.fees));
    let mae = DecimalColumn::for_values(|| trades.iter().map(|t| t.mae));
    let mfe = DecimalColumn::for_values(|| trades.iter().map(|t| t.mfe));
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("direction", DataType::Utf8, false),
        Field::new("max_qty", qty.data_type(), false),
        Field::new("entry_time", timestamp_type(), false),
        Field::new("exit_time", timestamp_type(), false),
        Field::new("pnl", pnl.data_type(), false),
        Field::new("fees", fees.data_type(), false),
        Field::new("mae", mae.data_type(), false),
        Field::new("mfe", mfe.data_type(), false),
    ]));
    let schema = labelled_schema(schema, labels);
    write_parquet(path, schema, trades.len(), |range| {
        let rows = &trades[range.clone()];
        labelled_columns(
            labels,
            range,
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|t| names.name(t.symbol)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|t| direction_name(t.direction)),
                )),
                qty.array(rows.iter().map(|t| t.max_quantity))?,
                timestamps(rows.iter().map(|t| t.entry_time)),
                timestamps(rows.iter().map(|t| t.exit_time)),
                pnl.array(rows.iter().map(|t| t.pnl))?,
                fees.array(rows.iter().map(|t| t.fees))?,
                mae.array(rows.iter().map(|t| t.mae))?,
                mfe.array(rows.iter().map(|t| t.mfe))?,
            ],
        )
    })
}

/// A `strategy` column in front of the others, for a portfolio's combined files.
fn labelled_schema(schema: SchemaRef, labels: Option<&Labels<'_>>) -> SchemaRef {
    match labels {
        None => schema,
        Some(_) => {
            let mut fields = vec![Arc::new(Field::new("strategy", DataType::Utf8, false))];
            fields.extend(schema.fields().iter().cloned());
            Arc::new(Schema::new(fields))
        }
    }
}

fn labelled_columns(
    labels: Option<&Labels<'_>>,
    range: Range<usize>,
    mut columns: Vec<ArrayRef>,
) -> Result<Vec<ArrayRef>, ArrowError> {
    if let Some(labels) = labels {
        let names =
            StringArray::from_iter_values(labels.of_rows[range].iter().map(|&i| labels.name(i)));
        columns.insert(0, Arc::new(names));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn col(values: &[&str]) -> DecimalColumn {
        let v: Vec<Decimal> = values.iter().map(|s| d(s)).collect();
        DecimalColumn::for_values(|| v.iter().copied())
    }

    #[test]
    fn scale_is_the_largest_present() {
        assert_eq!(col(&[]).scale, 0);
        assert_eq!(col(&["1", "2.5", "-0.125", "100.10"]).scale, 3);
        assert_eq!(col(&["0.0000000000000000000000000001"]).scale, 28);
        assert_eq!(scaled(d("2.5"), 3), Some(2500));
        assert_eq!(scaled(d("-0.125"), 3), Some(-125));
        assert_eq!(scaled(d("100.10"), 4), Some(1_001_000));
    }

    #[test]
    fn extreme_mixes_lower_the_scale_to_fit_38_digits() {
        // 29 integer digits + 28 decimals would need 57 digits.
        let big = "79228162514264337593543950335";
        let c = col(&[big, "0.0000000000000000000000000001"]);
        assert_eq!(c.scale, 9);
        assert_eq!(
            scaled(d(big), c.scale),
            Some(79_228_162_514_264_337_593_543_950_335_000_000_000)
        );
        // The finest value rounds (to 0 here).
        assert_eq!(
            scaled(d("0.0000000000000000000000000001"), c.scale),
            Some(0)
        );
        // 12 integer digits and 26 decimals: exactly 38, still exact.
        let c = col(&["123456789012", "0.12345678901234567890123456"]);
        assert_eq!(c.scale, 26);
    }

    #[test]
    fn precision_is_18_while_every_value_fits_in_18_digits() {
        // 9 integer digits + 9 decimals: 18 digits, an INT64 in Parquet.
        assert_eq!(col(&["123456789.123456789", "-1"]).precision, 18);
        assert_eq!(col(&[]).precision, 18);
        // 19 digits: a 16-byte decimal.
        assert_eq!(col(&["1234567890.123456789"]).precision, 38);
        assert_eq!(col(&["0.0000000000000000001"]).precision, 38);
        // A lowered scale may round up into one more digit, so it keeps a digit spare.
        let big = "79228162514264337593543950335";
        assert_eq!(col(&[big, "0.0000000000000000000000000001"]).precision, 38);
    }

    proptest::proptest! {
        #[test]
        fn every_value_fits_the_chosen_layout_exactly(
            values in proptest::collection::vec((proptest::num::i64::ANY, 0u32..=14), 0..40)
        ) {
            let v: Vec<Decimal> = values.iter().map(|&(m, s)| Decimal::new(m, s)).collect();
            let c = DecimalColumn::for_values(|| v.iter().copied());
            proptest::prop_assert_eq!(c.scale, v.iter().map(|d| d.scale()).max().unwrap_or(0));
            let bound = 10i128.pow(u32::from(c.precision));
            for d in &v {
                let u = scaled(*d, c.scale).unwrap();
                proptest::prop_assert!(u.abs() < bound);
                // Exact: the unscaled value is the mantissa times a power of ten.
                let p = 10i128.pow(c.scale - d.scale());
                proptest::prop_assert_eq!((u / p, u % p), (d.mantissa(), 0));
            }
        }
    }

    #[test]
    fn both_precisions_round_trip_through_parquet_exactly() {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().unwrap();
        for (values, precision) in [
            (vec!["100000", "99876.5432", "-0.0001"], 18),
            (vec!["123456789012345.123456", "-0.000001"], 38),
        ] {
            let v: Vec<Decimal> = values.iter().map(|s| d(s)).collect();
            let c = DecimalColumn::for_values(|| v.iter().copied());
            assert_eq!(c.precision, precision);
            let schema = Arc::new(Schema::new(vec![Field::new("x", c.data_type(), false)]));
            let path = dir.path().join(format!("p{precision}.parquet"));
            write_parquet(&path, schema, v.len(), |range| {
                Ok(vec![c.array(v[range].iter().copied())?])
            })
            .unwrap();
            let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            let a = batch.column(0).as_primitive::<Decimal128Type>();
            assert_eq!(a.precision(), precision);
            let back: Vec<Decimal> = (0..a.len())
                .map(|i| Decimal::from_i128_with_scale(a.value(i), c.scale))
                .collect();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn decimal_array_round_trips_exactly() {
        use arrow_array::cast::AsArray;
        let v = [d("42987.654321"), d("-0.5"), d("0"), d("0.000001")];
        let c = DecimalColumn::for_values(|| v.iter().copied());
        assert_eq!(c.scale, 6);
        let a = c.array(v.iter().copied()).unwrap();
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!(a.len(), 4);
        let back: Vec<Decimal> = (0..a.len())
            .map(|i| Decimal::from_i128_with_scale(a.value(i), c.scale))
            .collect();
        assert_eq!(back, v);
        assert_eq!(a.value_as_string(1), "-0.500000");
    }
}
