//! Columns that grow while Python reads them.
//!
//! NumPy views handed to Python point straight into these columns, so their memory must never
//! move or change under a view. Columns are sized up front (a backtest knows its bar count), and
//! when a live feed outgrows one it grows by copy: the values move to a new, larger allocation
//! and the old one stays alive, unchanged, until the column itself is dropped. Views made before
//! the growth keep reading the old allocation (whose cells they cover are final); views made
//! after it read the new one. Growth doubles, so the copies cost O(1) per value amortized and
//! the retired allocations add up to less than the live one.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One allocation of cells. Boxed so its address is stable while the list of chunks grows.
#[derive(Debug)]
struct Chunk {
    cells: Box<[AtomicU64]>,
}

impl Chunk {
    fn new(capacity: usize) -> Box<Chunk> {
        let cells = (0..capacity)
            .map(|_| AtomicU64::new(f64::NAN.to_bits()))
            .collect();
        Box::new(Chunk { cells })
    }
}

/// A column the engine writes while Python views its written prefix (bar columns, indicator
/// outputs, higher-timeframe bars). Values are stored as 8-byte bits in atomics so the column
/// can be shared (`Sync`) with the views; the layout of a chunk is that of a plain `[f64]`.
///
/// One writer (the engine): a cell below `len()` is written once, before `len()` counts it, and
/// never again (cross-section columns, which overwrite in place, are the documented exception).
#[derive(Debug)]
pub struct SharedColumn {
    /// The chunk reads and writes go to: always the last of `chunks`.
    current: AtomicPtr<Chunk>,
    /// Every allocation this column made, owned until it drops: views into retired chunks stay
    /// valid. Locked only to grow. Boxed: `current` points at a chunk, which must not move
    /// when the list reallocates.
    #[allow(clippy::vec_box)]
    chunks: Mutex<Vec<Box<Chunk>>>,
    /// Values written so far (shared by all outputs of one indicator).
    written: Arc<AtomicUsize>,
}

impl SharedColumn {
    pub fn new(capacity: usize, written: Arc<AtomicUsize>) -> Self {
        let mut first = Chunk::new(capacity);
        let current = AtomicPtr::new(&mut *first as *mut Chunk);
        SharedColumn {
            current,
            chunks: Mutex::new(vec![first]),
            written,
        }
    }

    /// A column holding `values` (their bits), all counted as written.
    pub fn from_bits(values: impl ExactSizeIterator<Item = u64>) -> Self {
        let n = values.len();
        let column = SharedColumn::new(n, Arc::new(AtomicUsize::new(0)));
        for (i, bits) in values.enumerate() {
            column.chunk().cells[i].store(bits, Ordering::Relaxed);
        }
        column.written.store(n, Ordering::Release);
        column
    }

    fn chunk(&self) -> &Chunk {
        // SAFETY: `current` always points at a chunk owned by `self.chunks`, and chunks are
        // freed only when the column drops.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    pub fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cells allocated now: values can be written up to here without growing.
    pub fn capacity(&self) -> usize {
        self.chunk().cells.len()
    }

    pub fn get(&self, index: usize) -> f64 {
        f64::from_bits(self.chunk().cells[index].load(Ordering::Relaxed))
    }

    /// The latest value, NaN before the first bar.
    pub fn last(&self) -> f64 {
        match self.len() {
            0 => f64::NAN,
            n => self.get(n - 1),
        }
    }

    /// Start of the `[f64]`-compatible storage of the current chunk (AtomicU64 has the size and
    /// alignment of u64), valid for `capacity()` cells for as long as the column lives.
    pub fn as_ptr(&self) -> *const f64 {
        self.chunk().cells.as_ptr().cast()
    }

    pub fn set(&self, index: usize, value: f64) {
        self.set_bits(index, value.to_bits());
    }

    /// For integer columns (times, counts): the i64 stored in the cell's bits.
    pub fn set_i64(&self, index: usize, value: i64) {
        self.set_bits(index, value as u64);
    }

    pub fn get_i64(&self, index: usize) -> i64 {
        self.chunk().cells[index].load(Ordering::Relaxed) as i64
    }

    fn set_bits(&self, index: usize, bits: u64) {
        let chunk = self.chunk();
        if let Some(cell) = chunk.cells.get(index) {
            cell.store(bits, Ordering::Relaxed);
        } else {
            self.grow(index + 1).cells[index].store(bits, Ordering::Relaxed);
        }
    }

    /// Moves the values to a chunk of at least `needed` cells (doubling) and returns it. The old
    /// chunk is kept, unchanged, for the views that point into it.
    #[cold]
    fn grow(&self, needed: usize) -> &Chunk {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.chunk();
        if old.cells.len() >= needed {
            return old;
        }
        let capacity = needed.max(old.cells.len().saturating_mul(2)).max(16);
        let mut new = Chunk::new(capacity);
        for (to, from) in new.cells.iter().zip(old.cells.iter()) {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let pointer = &mut *new as *mut Chunk;
        chunks.push(new);
        self.current.store(pointer, Ordering::Release);
        self.chunk()
    }

    /// Allocations made so far (1 until the column first grows).
    pub fn allocations(&self) -> usize {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Types a bar column can hold: 8 bytes, every bit pattern valid.
pub trait CellValue: Copy + Send + Sync + 'static {
    fn to_bits(self) -> u64;
}

impl CellValue for f64 {
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
}

impl CellValue for i64 {
    fn to_bits(self) -> u64 {
        self as u64
    }
}

/// An append-only column of bars (open times, or one price/volume field) that reads as a plain
/// slice of what was appended. Cloning shares it (the Python buffers hold clones); appending
/// through one handle shows in all.
#[derive(Debug, Clone)]
pub struct BarColumn<T: CellValue> {
    shared: Arc<SharedColumn>,
    _type: PhantomData<T>,
}

impl<T: CellValue> BarColumn<T> {
    pub fn from_vec(values: Vec<T>) -> Self {
        BarColumn {
            shared: Arc::new(SharedColumn::from_bits(
                values.into_iter().map(CellValue::to_bits),
            )),
            _type: PhantomData,
        }
    }

    /// Appends one value: written first, then counted, so no reader sees it half-made.
    pub fn push(&mut self, value: T) {
        let n = self.shared.len();
        self.shared.set_bits(n, value.to_bits());
        self.shared.written.store(n + 1, Ordering::Release);
    }

    /// The storage shared with Python views.
    pub fn shared(&self) -> &Arc<SharedColumn> {
        &self.shared
    }
}

impl<T: CellValue> Deref for BarColumn<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let len = self.shared.len();
        // SAFETY: T is 8 bytes with every bit pattern valid (CellValue), matching the cells; the
        // first `len` cells were written before `len` counted them and a bar column never
        // writes them again (`push` only writes at `len`), so the shared slice does not alias a
        // write. The chunk outlives `&self` (owned by the column behind our Arc).
        unsafe { std::slice::from_raw_parts(self.shared.as_ptr().cast::<T>(), len) }
    }
}

impl<T: CellValue> From<Vec<T>> for BarColumn<T> {
    fn from(values: Vec<T>) -> Self {
        BarColumn::from_vec(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_column_keeps_old_storage_unchanged_and_alive() {
        let mut column = BarColumn::from_vec(vec![1.0, 2.0]);
        let before = column.shared().as_ptr();
        // SAFETY: the first two cells of the first chunk are final and the chunk lives as long
        // as the column.
        let old_view = unsafe { std::slice::from_raw_parts(before, 2) };
        for v in 3..=100 {
            column.push(v as f64);
        }
        assert_ne!(
            column.shared().as_ptr(),
            before,
            "the column grew by moving"
        );
        assert!(column.shared().allocations() > 1);
        assert_eq!(old_view, &[1.0, 2.0]);
        assert_eq!(column.len(), 100);
        assert_eq!(column[99], 100.0);
        assert_eq!(column.iter().sum::<f64>(), 5050.0);
    }

    #[test]
    fn growth_doubles_so_appends_copy_linearly() {
        let mut column: BarColumn<i64> = BarColumn::from_vec(Vec::new());
        for v in 0..10_000 {
            column.push(v);
        }
        // 16, 32, ..., 16384: 11 allocations for 10k values.
        assert!(column.shared().allocations() <= 12);
        assert_eq!(&column[..3], &[0, 1, 2]);
    }

    #[test]
    fn shared_columns_grow_on_write_past_capacity() {
        let written = Arc::new(AtomicUsize::new(0));
        let column = SharedColumn::new(2, written.clone());
        for i in 0..40 {
            column.set(i, i as f64);
            written.store(i + 1, Ordering::Release);
        }
        assert!(column.capacity() >= 40);
        assert_eq!(column.last(), 39.0);
        assert_eq!(column.get(7), 7.0);
    }
}
