//! Engine-owned bar state: the loaded series, how many bars of each are closed, and the clock
//! that walks their close times in order.

pub mod aggregate;
pub mod calendar;
mod clock;
mod column;
mod store;
pub mod timeframe;

pub use aggregate::{Aggregation, Aggregations, FormingBar};
pub use calendar::{BucketCursor, SessionCalendar, Slot};
pub use clock::{Clock, Tick};
pub use column::{BarColumn, CellValue, SharedColumn};
pub use store::{Market, MarketError, infer_interval};
pub use timeframe::Timeframe;
