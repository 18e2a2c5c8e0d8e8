use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Market;
use crate::model::{SymbolId, TimestampNs};

/// One step of the clock: every symbol whose next bar closes at `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub time: TimestampNs,
    pub symbols: Vec<SymbolId>,
}

/// Walks the close times of all symbols in order, merging them with a heap so a run over many
/// symbols costs O(log symbols) per bar.
#[derive(Debug)]
pub struct Clock {
    heap: BinaryHeap<Reverse<(TimestampNs, SymbolId)>>,
    next_index: Vec<usize>,
}

impl Clock {
    pub fn new(market: &Market) -> Self {
        let mut heap = BinaryHeap::with_capacity(market.symbol_count());
        for index in 0..market.symbol_count() {
            let id = SymbolId(index as u32);
            if !market.series(id).is_empty() {
                heap.push(Reverse((market.close_time(id, 0), id)));
            }
        }
        Clock {
            heap,
            next_index: vec![0; market.symbol_count()],
        }
    }

    /// Fills `tick` with the next close time and the symbols closing then (in symbol order).
    /// Returns false when every series is exhausted.
    pub fn next_into(&mut self, market: &Market, tick: &mut Tick) -> bool {
        let Some(Reverse((time, _))) = self.heap.peek().copied() else {
            return false;
        };
        tick.time = time;
        tick.symbols.clear();
        while let Some(Reverse((t, id))) = self.heap.peek().copied() {
            if t != time {
                break;
            }
            self.heap.pop();
            tick.symbols.push(id);
            let next = self.next_index[id.index()] + 1;
            self.next_index[id.index()] = next;
            if next < market.series(id).len() {
                self.heap.push(Reverse((market.close_time(id, next), id)));
            }
        }
        true
    }
}
