//! A strategy written in Rust, on the same engine and through the same `Strategy` interface as
//! a Python `Algorithm` (`rustybt::engine::Strategy`, which `rustybt::python::PyStrategy`
//! implements for Python code).
//!
//! It is the Rust twin of `examples/momentum_top_decile.py`: every `--every` period (30
//! minutes by default) it ranks the momentum since the previous rebalance of every symbol, read
//! from the cross-sectional view (the latest close of all symbols side by side), and holds the
//! top decile equally weighted: a name entering the top is bought for the same notional, a name
//! leaving it is sold, a name that stays is left alone. Run on the same data, both give
//! identical orders, fills and equity, which `tests/python/test_rust_strategy.py` checks and
//! `benches/cross_section.py` times.
//!
//!     cargo build --release --example rust_momentum
//!     target/release/examples/rust_momentum --data bars.csv --out results/ [--every 30m|bar]
//!         [--cash 1000000] [--top 0.1] [--invested 0.4]
//!
//! It writes `equity.csv`, `fills.csv`, `trades.csv` (and their Parquet twins) and
//! `metrics.json` like `rustybt run`, an `orders.csv` with the key columns of `rustybt run`'s,
//! and prints one JSON line with the backtest's time.
//!
//! Writing your own: implement [`Strategy`] on a struct that holds the [`SharedSession`]; read
//! the market and the account under `lock(&session)` (never hold the lock across a call back
//! into the engine), submit orders with `Session::submit`, and hand the struct to
//! [`run_backtest`]. The engine calls `initialize` once, then per tick `on_fill` for each fill
//! and `on_tick`, then `on_stop`: the same sequence a Python algorithm sees.

use std::path::PathBuf;
use std::time::Instant;

use rust_decimal::Decimal;

use rustybt::config::RunSettings;
use rustybt::data::{self, LoadOptions};
use rustybt::engine::schedule::{Rule, Scheduler};
use rustybt::engine::{
    BacktestOptions, Session, SharedSession, Stop, Strategy, lock, run_backtest,
};
use rustybt::execution::{Instrument, OrderRequest};
use rustybt::market::Market;
use rustybt::metrics::{self, RunInfo, RunStatus};
use rustybt::model::time::NANOS_PER_MINUTE;
use rustybt::model::{Fill, OrderSide, SymbolId};

/// Holds the top `top_fraction` of symbols by momentum, equally sized.
pub struct TopDecileMomentum {
    session: SharedSession,
    /// When to rebalance; `None`: at every tick (bar).
    every_ns: Option<i64>,
    scheduler: Scheduler,
    /// How many symbols to hold.
    top: usize,
    /// Money per held symbol: `invested × initial cash / top`.
    notional: f64,
    /// Closes at the previous rebalance (empty before the first).
    previous: Vec<f64>,
    /// Quantity held per symbol, as ordered.
    held: Vec<i64>,
    pub rebalances: u64,
}

impl TopDecileMomentum {
    pub fn new(
        session: SharedSession,
        every_ns: Option<i64>,
        top_fraction: f64,
        invested: f64,
    ) -> Self {
        let (symbols, cash) = {
            let s = lock(&session);
            (s.market.symbol_count(), s.ledger.cash())
        };
        let top = ((symbols as f64 * top_fraction).ceil() as usize).clamp(1, symbols.max(1));
        // Through the text, as Python's float(Decimal) does: the correctly rounded double.
        let cash: f64 = cash.to_string().parse().unwrap_or(0.0);
        TopDecileMomentum {
            session,
            every_ns,
            scheduler: Scheduler::default(),
            top,
            notional: invested * cash / top as f64,
            previous: Vec::new(),
            held: vec![0; symbols],
            rebalances: 0,
        }
    }

    /// Ranks momentum since the last rebalance and orders the difference to the new targets.
    fn rebalance(&mut self) -> Result<(), Stop> {
        let close: Vec<f64> = {
            let s = lock(&self.session);
            let view = &s.cross_section.close;
            (0..view.len()).map(|i| view.get(i)).collect()
        };
        let previous = std::mem::replace(&mut self.previous, close.clone());
        if previous.is_empty() {
            return Ok(());
        }
        let momentum: Vec<f64> = close
            .iter()
            .zip(&previous)
            .map(|(c, p)| c / p - 1.0)
            .collect();
        if momentum.iter().any(|m| m.is_nan()) {
            return Ok(()); // a symbol without bars yet: wait until every symbol has two
        }
        self.rebalances += 1;
        // Highest momentum first; ties in symbol order (NumPy's stable argsort of -momentum).
        let mut ranked: Vec<usize> = (0..close.len()).collect();
        ranked.sort_by(|&a, &b| momentum[b].total_cmp(&momentum[a]).then(a.cmp(&b)));
        let mut target = vec![0i64; close.len()];
        // Names that stay in the top keep their quantity; names that enter get the notional.
        for &i in &ranked[..self.top] {
            target[i] = if self.held[i] > 0 {
                self.held[i]
            } else {
                (self.notional / close[i]).floor() as i64
            };
        }
        let mut s = lock(&self.session);
        for (i, (&want, held)) in target.iter().zip(self.held.iter_mut()).enumerate() {
            let delta = want - *held;
            if delta == 0 {
                continue;
            }
            let side = if delta > 0 {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            };
            let request =
                OrderRequest::market(SymbolId(i as u32), side, Decimal::from(delta.abs()));
            s.submit(request)
                .map_err(|e| Stop::Engine(format!("submitting an order: {e}")))?;
            *held = want;
        }
        Ok(())
    }
}

impl Strategy for TopDecileMomentum {
    fn initialize(&mut self) -> Result<(), Stop> {
        if let Some(period_ns) = self.every_ns {
            let now = lock(&self.session).now;
            self.scheduler
                .add("rebalance".into(), Rule::Every { period_ns }, now);
        }
        Ok(())
    }

    fn on_fill(&mut self, _fill: &Fill) -> Result<(), Stop> {
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), Stop> {
        if self.every_ns.is_some() {
            let now = lock(&self.session).now;
            if self.scheduler.due(now).is_empty() {
                return Ok(());
            }
        }
        self.rebalance()
    }

    fn on_stop(&mut self) -> Result<(), Stop> {
        Ok(())
    }

    fn check_interrupt(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

/// `orders.csv` with the columns of `rustybt run`'s that say what was ordered and what became
/// of it: `time,order_id,symbol,side,quantity,status` (one row per order event).
fn write_orders(path: &std::path::Path, s: &Session) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "time,order_id,symbol,side,quantity,status")?;
    for event in s.orders.history() {
        let Some(order) = s.orders.get(event.order_id) else {
            continue;
        };
        writeln!(
            w,
            "{},{},{},{},{},{}",
            rustybt::model::format_timestamp(event.time),
            event.order_id.0,
            s.market.symbol_name(event.symbol),
            order.side.as_str(),
            order.quantity,
            event.status.as_str()
        )?;
    }
    w.flush()
}

struct Args {
    data: Vec<PathBuf>,
    out: PathBuf,
    every: String,
    cash: Decimal,
    top: f64,
    invested: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: Vec::new(),
        out: PathBuf::from("runs/rust_momentum"),
        every: "30m".into(),
        cash: Decimal::from(1_000_000),
        top: 0.1,
        invested: 0.4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data.push(value()?.into()),
            "--out" => args.out = value()?.into(),
            "--every" => args.every = value()?,
            "--cash" => args.cash = value()?.parse().map_err(|e| format!("--cash: {e}"))?,
            "--top" => args.top = value()?.parse().map_err(|e| format!("--top: {e}"))?,
            "--invested" => {
                args.invested = value()?.parse().map_err(|e| format!("--invested: {e}"))?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.data.is_empty() {
        return Err("give at least one --data FILE".into());
    }
    Ok(args)
}

fn main() -> Result<(), String> {
    let started = Instant::now();
    let args = parse_args()?;
    let every_ns = match args.every.as_str() {
        "bar" => None,
        text => Some(rustybt::config::parse_duration(text).map_err(|e| format!("--every: {e}"))?),
    };
    // The defaults of `rustybt run` (commission, calendar, execution), so both runs agree.
    let defaults = rustybt::cli::RunArgs {
        algo: vec![PathBuf::from(file!())],
        ..Default::default()
    };
    let settings = RunSettings::resolve(&defaults).map_err(|e| e.to_string())?;
    let mut series = Vec::new();
    for file in &args.data {
        series.extend(data::load(file, &LoadOptions::default()).map_err(|e| e.to_string())?);
    }
    let market = Market::new(series, NANOS_PER_MINUTE, false).map_err(|e| e.to_string())?;
    let symbols = market.symbol_names();
    let mut session = Session::new(market, args.cash, settings.commission.clone())
        .with_calendar(settings.calendar);
    let mut execution = settings.execution.clone();
    execution.default_instrument = Instrument::default();
    execution.instruments = vec![Instrument::default(); symbols.len()];
    session.set_execution(execution);
    let session = session.into_shared();

    let mut strategy = TopDecileMomentum::new(session.clone(), every_ns, args.top, args.invested);
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
        class_name: "TopDecileMomentum".into(),
        parameters: [("every".to_string(), args.every.clone())].into(),
        data_files: args.data.iter().map(|p| p.display().to_string()).collect(),
        symbols,
        initial_cash: args.cash,
        bars_processed: outcome.bars,
        ticks_processed: outcome.ticks,
        wall_seconds: loop_seconds,
        rustybt_version: env!("CARGO_PKG_VERSION").into(),
        python_version: String::new(),
        bar_interval_ns: s.market.interval_ns(SymbolId(0)),
        currency: Default::default(),
        data: None,
    };
    let computed = metrics::compute(args.cash, &outcome.equity, trades, &outcome.fills)
        .with_orders(s.orders.all());
    metrics::write_results(
        &args.out,
        &info,
        &computed,
        &outcome.equity,
        &outcome.fills,
        trades,
    )
    .map_err(|e| e.to_string())?;
    write_orders(&args.out.join("orders.csv"), &s).map_err(|e| e.to_string())?;
    println!(
        "{{\"engine\": \"rust\", \"bars\": {}, \"ticks\": {}, \"loop_seconds\": {loop_seconds:.6}, \
         \"process_seconds\": {:.6}, \"rebalances\": {}, \"fills\": {}, \"final_equity\": \"{}\"}}",
        outcome.bars,
        outcome.ticks,
        started.elapsed().as_secs_f64(),
        strategy.rebalances,
        outcome.fills.len(),
        computed.final_equity
    );
    Ok(())
}
