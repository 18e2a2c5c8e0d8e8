//! Several strategies in one run (`rustybt run --portfolio`): the portfolio file, capital
//! allocators and the book that steps them over one market. No pyo3 here: the Python side
//! (algorithms, a custom allocator) comes in through the `Strategy` and `Allocator` traits.

pub mod allocator;
pub mod book;
pub mod change;
pub mod config;
pub mod netting;
pub mod results;
pub mod risk;

pub use allocator::{AllocationInput, Allocator};
pub use book::{
    AllocationRow, BookOutcome, BookRules, BookStepper, Member, SavedBook, initial_capitals,
    run_book,
};
pub use change::{AddRequest, Disposition, Refused, StopRequest, Stopped};
pub use config::{PortfolioSpec, StrategySpec};
