use rust_decimal::Decimal;

use super::{SymbolId, TimestampNs};

/// A round trip: a position opened from flat and brought back to flat (a flip closes one trade
/// and opens the next). `pnl` is realized price PnL minus the fees paid on the trade's fills.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedTrade {
    pub symbol: SymbolId,
    /// +1 for a long trade, -1 for a short one.
    pub direction: i8,
    /// Largest absolute position held during the trade.
    pub max_quantity: Decimal,
    pub entry_time: TimestampNs,
    pub exit_time: TimestampNs,
    pub pnl: Decimal,
    pub fees: Decimal,
    /// Maximum adverse excursion: the lowest price PnL (fees not included) the trade showed
    /// at any bar close or fill while open, ≤ 0.
    pub mae: Decimal,
    /// Maximum favourable excursion: the highest such price PnL, ≥ 0.
    pub mfe: Decimal,
}
