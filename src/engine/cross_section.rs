//! The latest bar of every symbol side by side: one array per field, indexed like
//! `ctx.symbols`, so a portfolio strategy ranks or scores all symbols with one NumPy operation.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::data::BarSeries;
use crate::market::SharedColumn;
use crate::model::SymbolId;

/// Engine-owned, fixed-length columns (one cell per symbol) that the clock overwrites as bars
/// close. Unlike history columns they change in place: a view shows the latest values at the
/// moment it is read, and a symbol without a bar yet is NaN (time: `i64::MIN`).
#[derive(Debug)]
pub struct CrossSection {
    pub time: Arc<SharedColumn>,
    pub open: Arc<SharedColumn>,
    pub high: Arc<SharedColumn>,
    pub low: Arc<SharedColumn>,
    pub close: Arc<SharedColumn>,
    pub volume: Arc<SharedColumn>,
    /// Bars closed so far, per symbol (an int64 column).
    pub bars: Arc<SharedColumn>,
}

impl CrossSection {
    pub fn new(symbols: usize) -> Self {
        let written = Arc::new(AtomicUsize::new(symbols));
        let column = || Arc::new(SharedColumn::new(symbols, written.clone()));
        let section = CrossSection {
            time: column(),
            open: column(),
            high: column(),
            low: column(),
            close: column(),
            volume: column(),
            bars: column(),
        };
        for i in 0..symbols {
            section.time.set_i64(i, i64::MIN);
            section.bars.set_i64(i, 0);
        }
        section
    }

    /// Bar `index` of `symbol` just closed.
    pub fn on_bar(&self, symbol: SymbolId, series: &BarSeries, index: usize) {
        let i = symbol.index();
        self.time.set_i64(i, series.time[index]);
        self.open.set(i, series.open.values[index]);
        self.high.set(i, series.high.values[index]);
        self.low.set(i, series.low.values[index]);
        self.close.set(i, series.close.values[index]);
        self.volume.set(i, series.volume.values[index]);
        self.bars.set_i64(i, index as i64 + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Column;
    use std::path::PathBuf;

    #[test]
    fn holds_the_latest_bar_of_each_symbol_in_place() {
        let column = |p: &[&str]| Column::parse_texts(p).unwrap();
        let series = BarSeries {
            symbol: "B".into(),
            source: PathBuf::from("B.csv"),
            time: vec![10, 20].into(),
            open: column(&["1", "2"]),
            high: column(&["3", "4"]),
            low: column(&["0.5", "1.5"]),
            close: column(&["2", "3"]),
            volume: column(&["7", "8"]),
        };
        let section = CrossSection::new(2);
        let pointer = section.close.as_ptr();
        assert!(section.close.get(0).is_nan() && section.close.get(1).is_nan());
        assert_eq!(section.time.get_i64(1), i64::MIN);
        section.on_bar(SymbolId(1), &series, 0);
        section.on_bar(SymbolId(1), &series, 1);
        assert_eq!(section.close.get(1), 3.0);
        assert_eq!(section.volume.get(1), 8.0);
        assert_eq!(section.time.get_i64(1), 20);
        assert_eq!(section.bars.get_i64(1), 2);
        assert!(section.close.get(0).is_nan(), "symbol 0 has no bar yet");
        assert_eq!(section.close.len(), 2);
        assert_eq!(section.close.as_ptr(), pointer);
    }
}
