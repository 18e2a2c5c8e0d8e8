//! Columns that grow while Python reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A column the engine appends to while Python views its written prefix (indicator outputs,
/// higher-timeframe bars): preallocated to the symbol's bar count and written once
/// per bar, so its memory never moves and a written value never changes. Values are stored as
/// f64 bits in atomics so the column can be shared (`Sync`) with the Python views that read
/// the written prefix; the layout is that of a plain `[f64]`.
#[derive(Debug)]
pub struct SharedColumn {
    cells: Box<[AtomicU64]>,
    /// Values written so far (shared by all outputs of one indicator).
    written: Arc<AtomicUsize>,
}

impl SharedColumn {
    pub fn new(capacity: usize, written: Arc<AtomicUsize>) -> Self {
        let cells = (0..capacity)
            .map(|_| AtomicU64::new(f64::NAN.to_bits()))
            .collect();
        SharedColumn { cells, written }
    }

    pub fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cells allocated: the most values this column will ever hold.
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }

    pub fn get(&self, index: usize) -> f64 {
        f64::from_bits(self.cells[index].load(Ordering::Relaxed))
    }

    /// The latest value, NaN before the first bar.
    pub fn last(&self) -> f64 {
        match self.len() {
            0 => f64::NAN,
            n => self.get(n - 1),
        }
    }

    /// Start of the `[f64]`-compatible storage (AtomicU64 has the size and alignment of u64).
    pub fn as_ptr(&self) -> *const f64 {
        self.cells.as_ptr().cast()
    }

    pub fn set(&self, index: usize, value: f64) {
        self.cells[index].store(value.to_bits(), Ordering::Relaxed);
    }
    /// For integer columns (times, counts): the i64 stored in the cell's bits.
    pub fn set_i64(&self, index: usize, value: i64) {
        self.cells[index].store(value as u64, Ordering::Relaxed);
    }

    pub fn get_i64(&self, index: usize) -> i64 {
        self.cells[index].load(Ordering::Relaxed) as i64
    }
}
