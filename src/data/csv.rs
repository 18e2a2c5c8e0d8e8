//! CSV reader: one reused `ByteRecord`, fields parsed straight from the bytes (no per-row
//! `String`s), every row handed to the shared checks in `validate`.

use std::fs::File;
use std::path::Path;

use ::csv::{ByteRecord, ReaderBuilder};

use super::decimal::parse_value;
use super::timestamp::parse_bytes;
use super::validate::{Columns, Field, Router, RowError};
use super::{BarSeries, DataError, Location};

/// Reads a whole CSV file into one series per symbol (before any time-range filtering).
pub(super) fn read(path: &Path, default_symbol: &str) -> Result<Vec<BarSeries>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    read_from(path, file, default_symbol)
}

fn read_from(
    path: &Path,
    input: impl std::io::Read,
    default_symbol: &str,
) -> Result<Vec<BarSeries>, DataError> {
    // Header read as a plain record so its line is counted like any other; `flexible` so a
    // short or long row is reported by us with its line rather than as a bare csv error.
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(input);
    let mut record = ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: the file is empty",
        ));
    }
    let header: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let columns = Columns::resolve(&header).map_err(|m| DataError::invalid(path, None, None, m))?;
    let n_fields = header.len();

    let mut router = Router::new(columns.symbol.is_none().then_some(default_symbol));
    let mut rows = 0usize;

    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let loc = Location::Line(record.position().map_or(0, |p| p.line() as usize));
        let located = |e: RowError| {
            DataError::invalid(
                path,
                Some(loc),
                Some(columns.header_name(e.field)),
                e.message,
            )
        };
        if record.len() != n_fields {
            return Err(DataError::invalid(
                path,
                Some(loc),
                None,
                format!("has {} fields but the header has {n_fields}", record.len()),
            ));
        }
        // Lengths were checked above, so `get` always succeeds; no indexing panics regardless.
        let field = |i: usize| record.get(i).unwrap_or_default();

        let series = router
            .series(columns.symbol.map(field))
            .map_err(|m| located(RowError::new(Field::Symbol, m)))?;
        let time = parse_bytes(field(columns.timestamp))
            .map_err(|m| located(RowError::new(Field::Timestamp, m)))?;
        let value = |k: usize| {
            parse_value(field(columns.values[k]))
                .map_err(|m| located(RowError::new(Field::VALUES[k], m)))
        };
        let values = [value(0)?, value(1)?, value(2)?, value(3)?, value(4)?];
        series.push(loc, time, values).map_err(located)?;
        rows += 1;
    }

    if rows == 0 {
        return Err(DataError::invalid(
            path,
            None,
            None,
            "contains no bars: the header has no rows after it",
        ));
    }
    Ok(router.finish(path))
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
                "2019-12-31T23:59:00Z,10,11,9,10,1\n",
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
            let _ = read_from(Path::new("p.csv"), &bytes[..], "P");
            let mut with_header = HEADER.as_bytes().to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = read_from(Path::new("p.csv"), &with_header[..], "P");
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
            let s = read_from(Path::new("p.csv"), text.as_bytes(), "P").map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let s = &s[0];
            for (i, t) in texts.iter().enumerate() {
                for c in [&s.open, &s.high, &s.low, &s.close, &s.volume] {
                    proptest::prop_assert_eq!(c.exact.get(i), Decimal::from_str_exact(t).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?);
                    proptest::prop_assert_eq!(c.values[i].to_bits(), t.parse::<f64>().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?.to_bits());
                }
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
