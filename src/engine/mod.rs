//! The clock step of ARCHITECTURE §2, shared state the algorithm reads, and the backtest loop.

mod backtest;
pub mod carry;
pub mod cross_section;
pub mod external;
pub mod indicator_set;
pub mod margin;
pub mod schedule;
mod session;

pub use backtest::{BacktestOptions, BacktestOutcome, Stop, Strategy, run_backtest};
pub use cross_section::CrossSection;
pub use indicator_set::IndicatorTiming;
pub use session::{ExecutionSettings, Session, SessionCosts, SharedSession, lock};
