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

fn allocate(capacity: usize) -> Box<[AtomicU64]> {
    (0..capacity)
        .map(|_| AtomicU64::new(f64::NAN.to_bits()))
        .collect()
}

/// A column the engine writes while Python views its written prefix (bar columns, indicator
/// outputs, higher-timeframe bars). Values are stored as 8-byte bits in atomics so the column
/// can be shared (`Sync`) with the views; the layout of a chunk is that of a plain `[f64]`.
///
/// One writer (the engine): a cell below `len()` is written once, before `len()` counts it, and
/// never again (cross-section columns, which overwrite in place, are the documented exception).
///
/// Reads cost two independent atomic loads (plain loads on x86): the cells pointer and the
/// capacity, or the pointer and the written count. A grow stores the new pointer before the
/// new capacity, and a reader loads the capacity (or the count) before the pointer, so any
/// capacity or count a reader sees is covered by the chunk it then finds.
#[derive(Debug)]
pub struct SharedColumn {
    /// First cell of the current chunk: always the last of `chunks`.
    cells: AtomicPtr<AtomicU64>,
    /// Cells in the current chunk.
    capacity: AtomicUsize,
    /// Every allocation this column made, owned until it drops: views into retired chunks stay
    /// valid (a boxed slice's cells do not move when the list reallocates). Locked only to grow.
    chunks: Mutex<Vec<Box<[AtomicU64]>>>,
    /// Values written so far (shared by all outputs of one indicator).
    written: Arc<AtomicUsize>,
}

impl SharedColumn {
    pub fn new(capacity: usize, written: Arc<AtomicUsize>) -> Self {
        let first = allocate(capacity);
        let cells = AtomicPtr::new(first.as_ptr().cast_mut());
        SharedColumn {
            cells,
            capacity: AtomicUsize::new(capacity),
            chunks: Mutex::new(vec![first]),
            written,
        }
    }

    /// A column holding `values` (their bits), all counted as written. The cells are made in
    /// one pass (no filler first, no store per cell): a catalog load builds millions of them.
    pub fn from_bits(values: impl ExactSizeIterator<Item = u64>) -> Self {
        let n = values.len();
        let first: Box<[AtomicU64]> = values.map(AtomicU64::new).collect();
        let cells = AtomicPtr::new(first.as_ptr().cast_mut());
        SharedColumn {
            cells,
            capacity: AtomicUsize::new(n),
            chunks: Mutex::new(vec![first]),
            written: Arc::new(AtomicUsize::new(n)),
        }
    }

    /// Cell `index` of the current chunk; panics past its capacity, like slice indexing.
    #[inline]
    fn cell(&self, index: usize) -> &AtomicU64 {
        let capacity = self.capacity.load(Ordering::Acquire);
        assert!(
            index < capacity,
            "index {index} out of a column of capacity {capacity}"
        );
        // SAFETY: the pointer loaded after the capacity addresses a chunk of at least that
        // capacity (see the type's comment), owned by `self.chunks` until the column drops.
        unsafe { &*self.cells.load(Ordering::Acquire).add(index) }
    }

    pub fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cells allocated now: values can be written up to here without growing.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    pub fn get(&self, index: usize) -> f64 {
        f64::from_bits(self.cell(index).load(Ordering::Relaxed))
    }

    /// The latest value, NaN before the first bar.
    pub fn last(&self) -> f64 {
        match self.len() {
            0 => f64::NAN,
            n => self.get(n - 1),
        }
    }

    /// Start of the `[f64]`-compatible storage of the current chunk (AtomicU64 has the size and
    /// alignment of u64), valid for as many cells as `len()` or `capacity()` read before this
    /// call said, for as long as the column lives.
    pub fn as_ptr(&self) -> *const f64 {
        self.cells.load(Ordering::Acquire).cast_const().cast()
    }

    pub fn set(&self, index: usize, value: f64) {
        self.set_bits(index, value.to_bits());
    }

    /// For integer columns (times, counts): the i64 stored in the cell's bits.
    pub fn set_i64(&self, index: usize, value: i64) {
        self.set_bits(index, value as u64);
    }

    pub fn get_i64(&self, index: usize) -> i64 {
        self.cell(index).load(Ordering::Relaxed) as i64
    }

    #[inline]
    fn set_bits(&self, index: usize, bits: u64) {
        if index >= self.capacity.load(Ordering::Acquire) {
            self.grow(index + 1);
            return self.cell(index).store(bits, Ordering::Relaxed);
        }
        // SAFETY: `index` is below a capacity loaded before the pointer (see the type's
        // comment); the chunk lives as long as the column.
        unsafe { &*self.cells.load(Ordering::Acquire).add(index) }.store(bits, Ordering::Relaxed);
    }

    /// Moves the values to a chunk of at least `needed` cells (doubling). The old chunk is
    /// kept, unchanged, for the views that point into it.
    #[cold]
    fn grow(&self, needed: usize) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let old_capacity = self.capacity.load(Ordering::Acquire);
        if old_capacity >= needed {
            return;
        }
        let capacity = needed.max(old_capacity.saturating_mul(2)).max(16);
        let new = allocate(capacity);
        if let Some(old) = chunks.last() {
            for (to, from) in new.iter().zip(old.iter()) {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        let pointer = new.as_ptr().cast_mut();
        chunks.push(new);
        // Pointer first, capacity second: see the type's comment.
        self.cells.store(pointer, Ordering::Release);
        self.capacity.store(capacity, Ordering::Release);
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
/// slice of what was appended, at the cost of a slice: the handle caches the pointer and length
/// (the engine's hot loop reads bar columns many times per bar). Appending through the handle
/// updates them; a clone is a snapshot of the column as it was when cloned (its memory stays
/// valid: chunks live as long as the column). Python buffers share the live column through
/// [`BarColumn::shared`], which always shows every appended value.
#[derive(Debug)]
pub struct BarColumn<T: CellValue> {
    shared: Arc<SharedColumn>,
    ptr: *const T,
    len: usize,
    _type: PhantomData<T>,
}

// SAFETY: `ptr` points into a chunk owned by `shared` (kept alive by the Arc) whose first `len`
// cells are final; the handle only reads through it, like a `&[T]` of Send + Sync `T`.
unsafe impl<T: CellValue> Send for BarColumn<T> {}
// SAFETY: as for Send: shared reads of immutable memory.
unsafe impl<T: CellValue> Sync for BarColumn<T> {}

impl<T: CellValue> Clone for BarColumn<T> {
    fn clone(&self) -> Self {
        BarColumn {
            shared: self.shared.clone(),
            ptr: self.ptr,
            len: self.len,
            _type: PhantomData,
        }
    }
}

impl<T: CellValue> BarColumn<T> {
    pub fn from_vec(values: Vec<T>) -> Self {
        let shared = Arc::new(SharedColumn::from_bits(
            values.into_iter().map(CellValue::to_bits),
        ));
        BarColumn {
            len: shared.len(),
            ptr: shared.as_ptr().cast(),
            shared,
            _type: PhantomData,
        }
    }

    /// Appends one value: written first, then counted, so no reader sees it half-made.
    pub fn push(&mut self, value: T) {
        let n = self.shared.len();
        self.shared.set_bits(n, value.to_bits());
        self.shared.written.store(n + 1, Ordering::Release);
        self.len = n + 1;
        self.ptr = self.shared.as_ptr().cast();
    }

    /// The storage shared with Python views.
    pub fn shared(&self) -> &Arc<SharedColumn> {
        &self.shared
    }
}

impl<T: CellValue> Deref for BarColumn<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: T is 8 bytes with every bit pattern valid (CellValue), matching the cells;
        // `ptr` addresses a chunk (alive as long as `shared`) whose first `len` cells were
        // written before they were counted and are never written again.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
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
