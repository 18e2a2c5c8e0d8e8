//! Values an algorithm records with `self.record(name, value)`: one named float series per
//! name, stamped with the simulated time, written as `records.csv` (`time,name,value`) and
//! `records.parquet` (`Timestamp(Nanosecond, "UTC")`, `Utf8`, `Float64`) in the results folder.
//!
//! A recorded value is something the algorithm watches (a signal, a z-score, an indicator
//! value), not money: it is a float, and the report draws it under the symbol's price.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Float64Array, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::MetricsError;
use super::columnar::{timestamp_type, timestamps, write_parquet};
use crate::model::{TimestampNs, format_timestamp};

pub const RECORDS_CSV: &str = "records.csv";
pub const RECORDS_PARQUET: &str = "records.parquet";

/// One recorded value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub time: TimestampNs,
    /// Index into [`RecordLog::names`].
    pub name: u32,
    pub value: f64,
}

/// Every value recorded in a run, in the order recorded.
#[derive(Debug, Default, Clone)]
pub struct RecordLog {
    names: Vec<String>,
    index: HashMap<String, u32>,
    rows: Vec<Record>,
}

impl RecordLog {
    /// Appends `value` under `name` at `time`. A name is interned once: a series recorded every
    /// tick costs one row, not one string.
    pub fn record(&mut self, time: TimestampNs, name: &str, value: f64) {
        let id = match self.index.get(name) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.names.len()).expect("invariant: < 2^32 record names");
                self.names.push(name.to_string());
                self.index.insert(name.to_string(), id);
                id
            }
        };
        self.rows.push(Record {
            time,
            name: id,
            value,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[Record] {
        &self.rows
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// `records.csv` and `records.parquet` in `dir`; nothing when no value was recorded (the
/// folder of a run that never called `record` has no such files). Returns the paths written.
pub fn write_record_files(dir: &Path, log: &RecordLog) -> Result<Vec<PathBuf>, MetricsError> {
    if log.is_empty() {
        return Ok(Vec::new());
    }
    let csv = dir.join(RECORDS_CSV);
    write_csv(&csv, log).map_err(|source| MetricsError::Io {
        path: csv.clone(),
        source,
    })?;
    let parquet = dir.join(RECORDS_PARQUET);
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    write_parquet(&parquet, schema, log.rows.len(), |range| {
        let rows = &log.rows[range];
        Ok(vec![
            timestamps(rows.iter().map(|r| r.time)),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| log.names[r.name as usize].as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        ])
    })?;
    Ok(vec![csv, parquet])
}

fn write_csv(path: &Path, log: &RecordLog) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "time,name,value")?;
    for r in &log.rows {
        let name = &log.names[r.name as usize];
        // A name is free text: quote it when CSV needs it.
        let name = if name.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.clone()
        };
        // `{}` of an f64 prints the shortest text that reads back to the same float.
        writeln!(out, "{},{name},{}", format_timestamp(r.time), r.value)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_and_rows_kept_in_order() {
        let mut log = RecordLog::default();
        log.record(1, "z", 0.5);
        log.record(2, "signal", -1.0);
        log.record(3, "z", 0.25);
        assert_eq!(log.names(), ["z", "signal"]);
        let names: Vec<u32> = log.rows().iter().map(|r| r.name).collect();
        assert_eq!(names, [0, 1, 0]);
    }

    #[test]
    fn files_hold_every_value_and_quote_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::default();
        log.record(60_000_000_000, "a,b", 0.1);
        log.record(120_000_000_000, "plain", f64::NAN);
        let written = write_record_files(dir.path(), &log).unwrap();
        assert_eq!(written.len(), 2);
        let text = std::fs::read_to_string(dir.path().join(RECORDS_CSV)).unwrap();
        assert_eq!(
            text,
            "time,name,value\n1970-01-01T00:01:00Z,\"a,b\",0.1\n1970-01-01T00:02:00Z,plain,NaN\n"
        );
    }

    #[test]
    fn an_empty_log_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            write_record_files(dir.path(), &RecordLog::default())
                .unwrap()
                .is_empty()
        );
        assert!(!dir.path().join(RECORDS_CSV).exists());
    }
}
