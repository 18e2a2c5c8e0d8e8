use crate::error::AlgorithmError;
use crate::metrics::EquityPoint;
use crate::model::Fill;

use super::session::{SharedSession, lock};
use crate::market::{Clock, Tick};

/// Why a run ended before the data did.
#[derive(Debug)]
pub enum Stop {
    /// Ctrl-C.
    Interrupted,
    /// The algorithm raised.
    Failed(Box<AlgorithmError>),
    /// The engine could not continue (e.g. a Decimal overflow in the books).
    Engine(String),
}

/// The decision-making side of a run. The engine calls these between clock steps, never while
/// it holds the session lock, so implementations may read the session freely.
pub trait Strategy {
    fn initialize(&mut self) -> Result<(), Stop>;
    fn on_fill(&mut self, fill: &Fill) -> Result<(), Stop>;
    fn on_tick(&mut self) -> Result<(), Stop>;
    fn on_stop(&mut self) -> Result<(), Stop>;
    /// Called every few thousand ticks so a long run notices Ctrl-C even when the algorithm
    /// itself never gives Python a chance to.
    fn check_interrupt(&mut self) -> Result<(), Stop>;
}

#[derive(Debug, Default)]
pub struct BacktestOutcome {
    pub equity: Vec<EquityPoint>,
    pub fills: Vec<Fill>,
    pub ticks: u64,
    pub bars: u64,
    /// `None` when the run reached the end of the data.
    pub stop: Option<Stop>,
}

const CHECK_EVERY_TICKS: u64 = 1024;

/// Runs the clock over all loaded bars: for each close time, (1) close the bars, (2) match
/// orders accepted before them, (3) apply fills and mark to market, then (5) the algorithm's
/// `on_fill`/`on_tick`, and (6) record equity. Indicators (4) arrive with the indicator work.
pub fn run_backtest(
    session: &SharedSession,
    strategy: &mut dyn Strategy,
    progress: &mut dyn FnMut(u64),
) -> BacktestOutcome {
    let mut outcome = BacktestOutcome::default();
    {
        let s = lock(session);
        outcome.equity.reserve(s.market.total_bars() as usize);
    }
    if let Err(stop) = strategy.initialize() {
        outcome.stop = Some(stop);
        return outcome;
    }
    let stop = drive(session, strategy, progress, &mut outcome).err();
    lock(session).orders.cancel_all("end of data");
    outcome.stop = match stop {
        Some(Stop::Failed(e)) => Some(Stop::Failed(e)),
        Some(Stop::Engine(e)) => Some(Stop::Engine(e)),
        other => match strategy.on_stop() {
            Ok(()) => other,
            Err(stop) => Some(stop),
        },
    };
    outcome
}

fn drive(
    session: &SharedSession,
    strategy: &mut dyn Strategy,
    progress: &mut dyn FnMut(u64),
    outcome: &mut BacktestOutcome,
) -> Result<(), Stop> {
    let mut clock = Clock::new(&lock(session).market);
    let mut tick = Tick {
        time: 0,
        symbols: Vec::new(),
    };
    let mut fills = Vec::new();
    loop {
        fills.clear();
        {
            let mut s = lock(session);
            if !clock.next_into(&s.market, &mut tick) {
                return Ok(());
            }
            step_market(&mut s, &tick, &mut fills)?;
            let point = EquityPoint {
                time: tick.time,
                cash: s.ledger.cash(),
                equity: s.ledger.equity().map_err(|e| Stop::Engine(e.to_string()))?,
            };
            outcome.equity.push(point);
        }
        outcome.bars += tick.symbols.len() as u64;
        outcome.fills.extend_from_slice(&fills);
        for fill in &fills {
            strategy.on_fill(fill)?;
        }
        strategy.on_tick()?;
        outcome.ticks += 1;
        if outcome.ticks % CHECK_EVERY_TICKS == 0 {
            strategy.check_interrupt()?;
            progress(outcome.bars);
        }
    }
}

/// Steps 1–3 of the clock for the symbols closing at `tick.time`.
fn step_market(s: &mut super::Session, tick: &Tick, fills: &mut Vec<Fill>) -> Result<(), Stop> {
    let session = &mut *s;
    for &symbol in &tick.symbols {
        let index = session.market.closed_count(symbol);
        let series = session.market.series(symbol);
        if session.orders.has_open(symbol) {
            let first_new = fills.len();
            session
                .orders
                .match_bar(
                    symbol,
                    series.time[index],
                    series.open.exact.get(index),
                    &session.commission,
                    fills,
                )
                .map_err(|e| Stop::Engine(e.to_string()))?;
            for fill in &fills[first_new..] {
                session
                    .ledger
                    .apply_fill(fill)
                    .map_err(|e| Stop::Engine(e.to_string()))?;
            }
        }
        let close = series.close.exact.get(index);
        session
            .ledger
            .mark(symbol, close)
            .map_err(|e| Stop::Engine(e.to_string()))?;
        session.market.close_next_bar(symbol);
    }
    session.now = tick.time;
    Ok(())
}
