//! `equity.csv` and `equity.parquet` written on another thread while a backtest runs.
//!
//! The equity curve has a point per tick (a million for a million bars) and was the largest
//! part of writing a run's results after its loop. The loop runs on one core; this writer
//! takes the curve in pieces as it grows ([`EquityStream::offer`], a copy of each new piece)
//! and writes them on the other, so at the end only the last piece is left. The files are the
//! ones [`super::write_equity`] writes: the CSV byte for byte, the Parquet with the same
//! schema and rows (its pages may be cut at other rows). When a later piece does not fit the Parquet layout taken from the first (a value
//! with more decimals or digits), the Parquet is written again, whole, at the end.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::columnar::EquityParquet;
use super::output::{EQUITY_CSV, EQUITY_PARQUET, EquityCsv};
use super::{EquityPoint, MetricsError};

/// Points per piece: about 2.6 MB copied at a time, a few hundred pieces for a long run.
const PIECE: usize = 1 << 16;

/// Pieces in flight before the run waits for the writer (it never has so far: writing a piece
/// is several times faster than computing it).
const IN_FLIGHT: usize = 4;

pub struct EquityStream {
    dir: PathBuf,
    /// Points of the curve already handed over.
    sent: usize,
    pieces: Option<SyncSender<Vec<EquityPoint>>>,
    /// Returns whether the Parquet file is complete (else it is rewritten whole).
    writer: Option<JoinHandle<Result<bool, MetricsError>>>,
}

impl EquityStream {
    /// Creates `dir` and starts the writer.
    pub fn start(dir: &Path) -> Result<Self, MetricsError> {
        super::output::create_dir(dir)?;
        let (pieces, received) = sync_channel(IN_FLIGHT);
        let (csv, parquet) = (dir.join(EQUITY_CSV), dir.join(EQUITY_PARQUET));
        let writer = std::thread::Builder::new()
            .name("equity-writer".into())
            .spawn(move || write_pieces(&csv, &parquet, received))
            .map_err(|source| MetricsError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(EquityStream {
            dir: dir.to_path_buf(),
            sent: 0,
            pieces: Some(pieces),
            writer: Some(writer),
        })
    }

    /// The curve so far: a piece's worth of new points goes to the writer.
    pub fn offer(&mut self, equity: &[EquityPoint]) {
        if equity.len() >= self.sent + PIECE {
            self.send(equity);
        }
    }

    fn send(&mut self, equity: &[EquityPoint]) {
        let piece = equity[self.sent.min(equity.len())..].to_vec();
        self.sent = equity.len();
        // A writer that stopped (an error) is heard from in `finish`.
        if let Some(pieces) = &self.pieces
            && pieces.send(piece).is_err()
        {
            self.pieces = None;
        }
    }

    /// The whole curve: the rest is written and the files closed; returns their paths.
    pub fn finish(mut self, equity: &[EquityPoint]) -> Result<Vec<PathBuf>, MetricsError> {
        self.send(equity);
        self.pieces = None;
        let complete = match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            None => false,
        };
        let parquet = self.dir.join(EQUITY_PARQUET);
        if !complete {
            super::columnar::write_equity(&parquet, equity)?;
        }
        Ok(vec![self.dir.join(EQUITY_CSV), parquet])
    }
}

impl Drop for EquityStream {
    /// A run abandoned without `finish` (an error before its results): the writer stops.
    fn drop(&mut self) {
        self.pieces = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: each piece into the CSV, and into the Parquet while they fit its layout.
fn write_pieces(
    csv_path: &Path,
    parquet_path: &Path,
    pieces: Receiver<Vec<EquityPoint>>,
) -> Result<bool, MetricsError> {
    let mut csv = EquityCsv::create(csv_path)?;
    // `None` before the first piece; `Some(None)` once a piece did not fit.
    let mut parquet: Option<Option<EquityParquet>> = None;
    for piece in pieces {
        if piece.is_empty() {
            continue;
        }
        csv.rows(&piece)?;
        match &mut parquet {
            None => {
                parquet = Some(match EquityParquet::layout_of(&piece) {
                    Some(layout) => {
                        let mut file = EquityParquet::create(parquet_path, layout)?;
                        file.write(&piece)?;
                        Some(file)
                    }
                    None => None,
                });
            }
            Some(Some(file)) if file.admit(&piece) => file.write(&piece)?,
            Some(open) => *open = None,
        }
    }
    csv.finish()?;
    match parquet {
        Some(Some(file)) => file.finish().map(|()| true),
        // No point at all: the whole-curve writer writes the empty file.
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn curve(n: usize, odd: Option<usize>) -> Vec<EquityPoint> {
        (0..n)
            .map(|i| {
                let cents = Decimal::new(10_000_000 + (i as i64 * 37) % 9_999, 2);
                EquityPoint {
                    time: 1_700_000_000_000_000_000 + i as i64 * 60_000_000_000,
                    cash: cents,
                    // A value with more decimals than the first piece's, late in the curve.
                    equity: match odd == Some(i) {
                        true => Decimal::new(123_456_789, 6),
                        false => cents,
                    },
                }
            })
            .collect()
    }

    /// Streams `equity` in growing prefixes, as the backtest loop offers it.
    fn streamed(dir: &Path, equity: &[EquityPoint]) {
        let mut stream = EquityStream::start(dir).unwrap();
        for end in (0..equity.len()).step_by(1000) {
            stream.offer(&equity[..end]);
        }
        stream.finish(equity).unwrap();
    }

    /// A Parquet file's schema and rows (pages may be cut elsewhere; the content is the same).
    fn parquet_content(path: &Path) -> (String, Vec<(i64, i128, i128)>) {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Decimal128Type, TimestampNanosecondType};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
        let schema = format!("{:?}", reader.schema());
        let mut rows = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let t = batch.column(0).as_primitive::<TimestampNanosecondType>();
            let c = batch.column(1).as_primitive::<Decimal128Type>();
            let e = batch.column(2).as_primitive::<Decimal128Type>();
            rows.extend((0..batch.num_rows()).map(|i| (t.value(i), c.value(i), e.value(i))));
        }
        (schema, rows)
    }

    #[test]
    fn streamed_files_equal_the_whole_curve_writers() {
        let n = 3 * PIECE + 123;
        for odd in [None, Some(PIECE + 5), Some(n - 1)] {
            let equity = curve(n, odd);
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            streamed(a.path(), &equity);
            super::super::write_equity(b.path(), &equity).unwrap();
            let (x, y) = (
                std::fs::read(a.path().join(EQUITY_CSV)).unwrap(),
                std::fs::read(b.path().join(EQUITY_CSV)).unwrap(),
            );
            assert!(x == y, "equity.csv differs with the odd value at {odd:?}");
            let (x, y) = (
                parquet_content(&a.path().join(EQUITY_PARQUET)),
                parquet_content(&b.path().join(EQUITY_PARQUET)),
            );
            assert_eq!(x.1.len(), n);
            assert!(
                x == y,
                "equity.parquet differs with the odd value at {odd:?}"
            );
        }
    }

    #[test]
    fn an_empty_curve_still_writes_both_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        streamed(a.path(), &[]);
        super::super::write_equity(b.path(), &[]).unwrap();
        assert_eq!(
            std::fs::read(a.path().join(EQUITY_CSV)).unwrap(),
            std::fs::read(b.path().join(EQUITY_CSV)).unwrap()
        );
        assert_eq!(
            parquet_content(&a.path().join(EQUITY_PARQUET)),
            parquet_content(&b.path().join(EQUITY_PARQUET))
        );
    }
}
