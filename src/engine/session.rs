use std::sync::{Arc, Mutex, MutexGuard};

use rust_decimal::Decimal;

use super::indicator_set::IndicatorSet;
use crate::accounting::Ledger;
use crate::execution::{CommissionModel, OrderBook, OrderRejected};
use crate::market::{Aggregations, Market, SessionCalendar};
use crate::model::{OrderId, OrderSide, TimestampNs};

/// Everything the algorithm can observe or act on, owned by the engine. Python reaches it
/// only through the bridge, which holds the lock for the duration of one call and never
/// while the engine steps.
#[derive(Debug)]
pub struct Session {
    pub market: Market,
    pub ledger: Ledger,
    pub orders: OrderBook,
    pub commission: CommissionModel,
    pub indicators: IndicatorSet,
    pub aggregations: Aggregations,
    /// `ctx.time`: close time of the bar(s) just completed; before the first tick, the first
    /// bar's open time.
    pub now: TimestampNs,
}

pub type SharedSession = Arc<Mutex<Session>>;

/// Locks the session. A poisoned lock only means a panic happened elsewhere while it was
/// held; the data is still consistent because every mutation is all-or-nothing.
pub fn lock(session: &SharedSession) -> MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Session {
    pub fn new(market: Market, initial_cash: Decimal, commission: CommissionModel) -> Self {
        let symbols = market.symbol_count();
        let now = (0..symbols)
            .filter_map(|i| {
                market
                    .series(crate::model::SymbolId(i as u32))
                    .time
                    .first()
                    .copied()
            })
            .min()
            .unwrap_or(0);
        Session {
            market,
            ledger: Ledger::new(initial_cash, symbols),
            orders: OrderBook::new(symbols),
            commission,
            indicators: IndicatorSet::default(),
            aggregations: Aggregations::default(),
            now,
        }
    }

    /// Builds higher timeframes on `calendar` instead of UTC; before any is attached.
    pub fn with_calendar(mut self, calendar: SessionCalendar) -> Self {
        self.aggregations = Aggregations::new(calendar);
        self
    }

    pub fn into_shared(self) -> SharedSession {
        Arc::new(Mutex::new(self))
    }

    pub fn submit_market_order(
        &mut self,
        symbol: &str,
        side: OrderSide,
        quantity: Decimal,
    ) -> Result<OrderId, OrderRejected> {
        let id = self
            .market
            .symbol_id(symbol)
            .ok_or_else(|| OrderRejected::UnknownSymbol(symbol.to_string()))?;
        self.orders.submit_market(id, side, quantity, self.now)
    }
}
