//! Orders and how they fill against bars: every order type, time in force, the intrabar path,
//! partial fills by volume share and latency (`book`, `matching`), and the cost models the
//! matcher prices fills with (slippage, commission schedules, carry, broker profiles).

mod book;
pub mod carry;
pub mod commission;
pub mod costs;
mod fees;
mod instrument;
pub mod matching;
pub mod profile;
pub mod slippage;

pub use book::{BarToMatch, FillCostModel, MatchSettings, OrderBook, OrderRejected, OrderRequest};
pub use carry::{
    CostBreakdown, DayCount, FinancingTerms, MarginOrder, MarginTerms, borrow_cost,
    check_buying_power, financing, format_amount, maintenance_requirement, margin_requirement,
};
pub use commission::{
    CommissionSchedule, FeeInput, MakerTaker, OrderFees, PerShare, Percentage, Tier, Tiered,
};
pub use costs::{FillCosts, PricedFill};
pub use fees::CommissionModel;
pub use instrument::Instrument;
pub use matching::{BarPrices, PathMode};
pub use profile::{BorrowTerms, BrokerProfile, Latency, LatencySampler};
pub use slippage::{
    Composite, FixedBps, HalfSpread, NoSlippage, SlippageInput, SlippageModel, SlippageSpec,
    VolumeShare, executed_price, never_favourable, round_to_tick, slippage_cost,
};
