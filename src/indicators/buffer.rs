//! Fixed-capacity windows shared by the indicators. Allocated once at construction; `push` never
//! allocates.

/// The last `capacity` values of a series, oldest overwritten first.
///
/// Values sit at physical slot `n % capacity` (`n` = how many were pushed before), which is where
/// TA-Lib's circular buffers put them: CCI sums its window in that physical order, and does so to
/// the last bit.
#[derive(Debug, Clone)]
pub(crate) struct RingBuffer<T> {
    slots: Box<[T]>,
    next: usize,
    len: usize,
}

impl<T: Copy + Default> RingBuffer<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "invariant: a window holds at least one value");
        Self {
            slots: vec![T::default(); capacity].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, value: T) {
        self.slots[self.next] = value;
        self.next += 1;
        if self.next == self.slots.len() {
            self.next = 0;
        }
        if self.len < self.slots.len() {
            self.len += 1;
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest value held (the next one to be overwritten once full).
    pub(crate) fn oldest(&self) -> T {
        debug_assert!(self.len > 0);
        if self.is_full() {
            self.slots[self.next]
        } else {
            self.slots[0]
        }
    }

    /// Every slot in physical order (meaningful once full).
    pub(crate) fn slots(&self) -> &[T] {
        &self.slots
    }

    /// The held values, oldest first.
    pub(crate) fn iter_oldest_first(&self) -> impl Iterator<Item = T> + '_ {
        let (older, newer) = if self.is_full() {
            (&self.slots[self.next..], &self.slots[..self.next])
        } else {
            (&self.slots[..self.len], &self.slots[..0])
        };
        older.iter().chain(newer).copied()
    }

    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }
}

/// The maximum (`MAX = true`) or minimum of the last `period` values in amortized O(1): a
/// monotonic deque of (bar number, value) in a preallocated ring. The value is exact (it is one
/// of the inputs), so it equals TA-Lib's rescanning min/max bit for bit.
#[derive(Debug, Clone)]
pub(crate) struct RollingExtreme<const MAX: bool> {
    period: u64,
    bars: u64,
    entries: Box<[(u64, f64)]>,
    head: usize,
    len: usize,
}

pub(crate) type RollingMax = RollingExtreme<true>;
pub(crate) type RollingMin = RollingExtreme<false>;

impl<const MAX: bool> RollingExtreme<MAX> {
    pub(crate) fn new(period: usize) -> Self {
        assert!(period > 0, "invariant: a window holds at least one value");
        Self {
            period: period as u64,
            bars: 0,
            entries: vec![(0, 0.0); period].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Slot `offset` places after the head, wrapped without a division.
    fn slot(&self, offset: usize) -> usize {
        let slot = self.head + offset;
        if slot >= self.entries.len() {
            slot - self.entries.len()
        } else {
            slot
        }
    }

    /// Adds the newest value and returns the extreme of the window ending with it.
    pub(crate) fn push(&mut self, value: f64) -> f64 {
        let bar = self.bars;
        self.bars += 1;
        // Drop the entry that left the window, then the ones the new value dominates.
        if self.len > 0 && self.entries[self.head].0 + self.period <= bar {
            self.head = self.slot(1);
            self.len -= 1;
        }
        while self.len > 0 {
            let back = self.entries[self.slot(self.len - 1)].1;
            let dominated = if MAX { back <= value } else { back >= value };
            if !dominated {
                break;
            }
            self.len -= 1;
        }
        let slot = self.slot(self.len);
        self.entries[slot] = (bar, value);
        self.len += 1;
        self.entries[self.head].1
    }

    pub(crate) fn clear(&mut self) {
        self.bars = 0;
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_the_last_values_in_physical_slots() {
        let mut ring = RingBuffer::new(3);
        ring.push(1.0);
        ring.push(2.0);
        assert!(!ring.is_full());
        assert_eq!(ring.oldest(), 1.0);
        assert_eq!(ring.iter_oldest_first().collect::<Vec<_>>(), [1.0, 2.0]);
        ring.push(3.0);
        ring.push(4.0);
        assert!(ring.is_full());
        assert_eq!(ring.oldest(), 2.0);
        assert_eq!(ring.slots(), [4.0, 2.0, 3.0]);
        assert_eq!(
            ring.iter_oldest_first().collect::<Vec<_>>(),
            [2.0, 3.0, 4.0]
        );
        ring.clear();
        ring.push(5.0);
        assert_eq!(ring.iter_oldest_first().collect::<Vec<_>>(), [5.0]);
    }

    #[test]
    fn rolling_extremes_equal_a_scan_of_the_window() {
        let values = [
            3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 5.0, 1.0,
        ];
        for period in 1..=5 {
            let mut max = RollingMax::new(period);
            let mut min = RollingMin::new(period);
            for (i, &v) in values.iter().enumerate() {
                let window = &values[(i + 1).saturating_sub(period)..=i];
                let want_max = window.iter().copied().fold(f64::MIN, f64::max);
                let want_min = window.iter().copied().fold(f64::MAX, f64::min);
                assert_eq!(max.push(v), want_max, "max period {period} bar {i}");
                assert_eq!(min.push(v), want_min, "min period {period} bar {i}");
            }
        }
    }
}
