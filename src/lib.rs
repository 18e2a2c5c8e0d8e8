//! rustybt: a trading-algorithm host. Rust owns market data, bar state, order matching and
//! Decimal accounting; an embedded CPython runs the user's `Algorithm`.
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
pub mod console;
pub mod accounting;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod execution;
pub mod indicators;
pub mod live;
pub mod market;
pub mod metrics;
pub mod model;
pub mod optimize;
pub mod pipeline;
pub mod portfolio;
pub mod python;
pub mod watch;

pub use cli::{Cli, execute};
