//! `algorithms/sma_cross.py` written in Rust: the per-bar benchmark of the Python bridge.
//!
//! The same strategy on the same engine: two built-in SMAs per symbol (attached exactly as the
//! Python `self.indicator("SMA", ...)` attaches them), a buy of `quantity` when the fast mean
//! crosses above the slow one while flat, a close when it crosses back below. Run on the same
//! data it gives the same orders, fills and equity as `rustybt run --algo
//! algorithms/sma_cross.py`; `benches/cross_section.py` times both.
//!
//!     cargo build --release --example rust_sma_cross
//!     target/release/examples/rust_sma_cross --data bars.csv --out results/ [--cash 1000000]
//!
//! See `examples/rust_momentum.rs` for how a Rust strategy plugs into the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rust_decimal::Decimal;

use rustybt::config::RunSettings;
use rustybt::data::{self, LoadOptions};
use rustybt::engine::{
    BacktestOptions, Session, SharedSession, Stop, Strategy, lock, run_backtest,
};
use rustybt::execution::{Instrument, OrderRequest};
use rustybt::market::{Market, SharedColumn};
use rustybt::metrics::{self, RunInfo, RunStatus};
use rustybt::model::time::NANOS_PER_MINUTE;
use rustybt::model::{Fill, OrderSide, SymbolId};

/// Means of 2-decimal prices differ by at least 1/3000 of a cent when they differ at all; a
/// smaller float difference is rounding noise and is treated as a tie (as in the Python file).
const TIE: f64 = 1e-9;

/// A built-in indicator's latest value, read as the Python `Indicator` handle reads it.
struct Average {
    values: Arc<SharedColumn>,
    written: Arc<AtomicUsize>,
    warm_up: usize,
}

impl Average {
    fn len(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    fn value(&self) -> f64 {
        self.len()
            .checked_sub(1)
            .map_or(f64::NAN, |i| self.values.get(i))
    }
}

struct Book {
    symbol: SymbolId,
    fast: Average,
    slow: Average,
    seen: usize,
    previous: Option<f64>,
    long: bool,
}

pub struct SmaCross {
    session: SharedSession,
    fast: usize,
    slow: usize,
    quantity: Decimal,
    books: Vec<Book>,
}

impl SmaCross {
    fn attach(&self, symbol: SymbolId, period: usize) -> Result<Average, Stop> {
        let mut guard = lock(&self.session);
        let s = &mut *guard;
        let closed = s.market.closed_count(symbol);
        let id = s
            .indicators
            .attach(
                symbol,
                "SMA",
                &[("timeperiod".to_string(), period as f64)],
                s.market.series(symbol),
                closed,
            )
            .map_err(|e| Stop::Engine(e.to_string()))?;
        let attached = s
            .indicators
            .get(id)
            .ok_or_else(|| Stop::Engine("attached indicator missing".into()))?;
        Ok(Average {
            values: attached.outputs[attached.primary].clone(),
            written: attached.written.clone(),
            warm_up: attached.warm_up_period,
        })
    }
}

impl Strategy for SmaCross {
    fn initialize(&mut self) -> Result<(), Stop> {
        let symbols = lock(&self.session).market.symbol_count();
        for i in 0..symbols {
            let symbol = SymbolId(i as u32);
            let book = Book {
                symbol,
                fast: self.attach(symbol, self.fast)?,
                slow: self.attach(symbol, self.slow)?,
                seen: 0,
                previous: None,
                long: false,
            };
            self.books.push(book);
        }
        Ok(())
    }

    fn on_fill(&mut self, _fill: &Fill) -> Result<(), Stop> {
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), Stop> {
        for book in &mut self.books {
            let n = book.slow.len();
            if n == book.seen {
                continue; // no new bar of this symbol at this tick
            }
            book.seen = n;
            if n < book.slow.warm_up {
                continue;
            }
            let mut diff = book.fast.value() - book.slow.value();
            if -TIE < diff && diff < TIE {
                diff = 0.0;
            }
            let previous = book.previous.replace(diff);
            let Some(previous) = previous else { continue };
            if diff > 0.0 && previous <= 0.0 && !book.long {
                let request = OrderRequest::market(book.symbol, OrderSide::Buy, self.quantity);
                lock(&self.session)
                    .submit(request)
                    .map_err(|e| Stop::Engine(e.to_string()))?;
                book.long = true;
            } else if diff < 0.0 && previous >= 0.0 && book.long {
                let mut s = lock(&self.session);
                let held = s
                    .ledger
                    .position(book.symbol)
                    .map(|p| p.quantity)
                    .unwrap_or_default();
                if held > Decimal::ZERO {
                    s.submit(OrderRequest::market(book.symbol, OrderSide::Sell, held))
                        .map_err(|e| Stop::Engine(e.to_string()))?;
                }
                book.long = false;
            }
        }
        Ok(())
    }

    fn on_stop(&mut self) -> Result<(), Stop> {
        Ok(())
    }

    fn check_interrupt(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

fn main() -> Result<(), String> {
    let started = Instant::now();
    let (mut data, mut out, mut cash) = (
        Vec::<PathBuf>::new(),
        PathBuf::from("runs/rust_sma_cross"),
        Decimal::from(100_000),
    );
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => data.push(value.into()),
            "--out" => out = value.into(),
            "--cash" => cash = value.parse().map_err(|e| format!("--cash: {e}"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let defaults = rustybt::cli::RunArgs {
        algo: vec![PathBuf::from(file!())],
        ..Default::default()
    };
    let settings = RunSettings::resolve(&defaults).map_err(|e| e.to_string())?;
    let mut series = Vec::new();
    for file in &data {
        series.extend(data::load(file, &LoadOptions::default()).map_err(|e| e.to_string())?);
    }
    let market = Market::new(series, NANOS_PER_MINUTE, false).map_err(|e| e.to_string())?;
    let symbols = market.symbol_names();
    let mut session =
        Session::new(market, cash, settings.commission.clone()).with_calendar(settings.calendar);
    let mut execution = settings.execution.clone();
    execution.default_instrument = Instrument::default();
    execution.instruments = vec![Instrument::default(); symbols.len()];
    session.set_execution(execution);
    let session = session.into_shared();

    let mut strategy = SmaCross {
        session: session.clone(),
        fast: 10,
        slow: 30,
        quantity: Decimal::from(10),
        books: Vec::new(),
    };
    let looping = Instant::now();
    let outcome = run_backtest(
        &session,
        &mut strategy,
        &mut |_| {},
        &BacktestOptions::default(),
    );
    let loop_seconds = looping.elapsed().as_secs_f64();
    if let Some(stop) = &outcome.stop {
        return Err(format!("the run stopped: {stop:?}"));
    }
    let s = lock(&session);
    let trades = s.ledger.closed_trades();
    let info = RunInfo {
        status: RunStatus::Complete,
        algorithm: file!().into(),
        class_name: "SmaCross".into(),
        parameters: Default::default(),
        data_files: data.iter().map(|p| p.display().to_string()).collect(),
        symbols,
        initial_cash: cash,
        bars_processed: outcome.bars,
        ticks_processed: outcome.ticks,
        wall_seconds: loop_seconds,
        rustybt_version: env!("CARGO_PKG_VERSION").into(),
        python_version: String::new(),
        bar_interval_ns: s.market.interval_ns(SymbolId(0)),
        currency: Default::default(),
        data: None,
    };
    let computed =
        metrics::compute(cash, &outcome.equity, trades, &outcome.fills).with_orders(s.orders.all());
    metrics::write_results(
        &out,
        &info,
        &computed,
        &outcome.equity,
        &outcome.fills,
        trades,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "{{\"engine\": \"rust\", \"bars\": {}, \"loop_seconds\": {loop_seconds:.6}, \
         \"process_seconds\": {:.6}, \"trades\": {}, \"fills\": {}, \"final_equity\": \"{}\"}}",
        outcome.bars,
        started.elapsed().as_secs_f64(),
        computed.num_trades,
        outcome.fills.len(),
        computed.final_equity
    );
    Ok(())
}
