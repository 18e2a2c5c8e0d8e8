//! Orders and how they fill against bars. Today: market orders filling at the next bar's open.
//! The cost models (slippage, commission schedules, carry, broker profiles) are self-contained
//! so the matcher can call them; `FillCosts` is the per-fill entry point.

mod book;
pub mod carry;
pub mod commission;
pub mod costs;
mod fees;
pub mod profile;
pub mod slippage;

pub use book::{OrderBook, OrderRejected};
pub use carry::{
    CostBreakdown, DayCount, FinancingTerms, MarginOrder, MarginTerms, borrow_cost,
    check_buying_power, financing, maintenance_requirement, margin_requirement,
};
pub use commission::{
    CommissionSchedule, FeeInput, MakerTaker, OrderFees, PerShare, Percentage, Tier, Tiered,
};
pub use costs::{FillCosts, PricedFill};
pub use fees::CommissionModel;
pub use profile::{BorrowTerms, BrokerProfile, Latency, LatencySampler};
pub use slippage::{
    Composite, FixedBps, HalfSpread, NoSlippage, SlippageInput, SlippageModel, SlippageSpec,
    VolumeShare, executed_price, never_favourable, round_to_tick, slippage_cost,
};
