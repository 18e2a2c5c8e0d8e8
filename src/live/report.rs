//! The history of a state folder across sessions, from its journal (`rustybt live report`).
//!
//! A session's results folder covers that session; the journal holds every session. The report
//! reads it (without taking the state folder's lock: a running session may keep writing) and
//! gives, per run, its start, end and how it ended, its orders, fills, fees and the profit of
//! the trades it closed; every fill with its run; the round-trip trades across sessions (a
//! position opened in one session and closed in a later one is one trade, at its real entry);
//! and the book the journal holds now.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use super::journal::{Book, Journal, JournalError, RunInfo};
use super::lock::{Holder, StateLock};
use super::storage::journal_error;
use crate::accounting::Ledger;
use crate::error::Error;
use crate::model::{Fill, OrderId, OrderSide, SymbolId, TimestampNs, format_timestamp};

/// One journaled fill with the run that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFill {
    pub run: i64,
    pub client_order_id: String,
    pub trade_id: String,
    pub time: TimestampNs,
    pub symbol: String,
    pub side: String,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub fee_asset: Option<String>,
}

/// A round trip over the whole history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryTrade {
    pub symbol: String,
    pub direction: i8,
    pub max_quantity: Decimal,
    pub entry_time: TimestampNs,
    pub entry_run: i64,
    pub exit_time: TimestampNs,
    pub exit_run: i64,
    pub pnl: Decimal,
    pub fees: Decimal,
}

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub info: RunInfo,
    pub orders: usize,
    pub fills: usize,
    pub fees: Decimal,
    /// Profit of the trades this run closed (fees included).
    pub realized: Decimal,
}

#[derive(Debug, Clone)]
pub struct History {
    pub state_dir: PathBuf,
    pub journal_path: PathBuf,
    pub holder: Option<Holder>,
    pub cash_currency: Option<String>,
    pub initial_cash: Option<Decimal>,
    pub runs: Vec<RunSummary>,
    pub fills: Vec<RunFill>,
    pub trades: Vec<HistoryTrade>,
    /// The book the journal holds now (cash, positions).
    pub book: Book,
    /// Fills whose fee is in another asset than the cash (counted in `fees` but not in the
    /// trades' profit).
    pub other_asset_fees: usize,
}

impl History {
    /// Reads the history of the state folder `dir`.
    pub fn read(dir: &Path) -> Result<History, Error> {
        let journal_path = dir.join("journal.sqlite");
        if !journal_path.is_file() {
            return Err(Error::usage_with_hint(
                format!("`{}` has no journal (journal.sqlite)", dir.display()),
                "give --state the folder a `rustybt live` session used",
            ));
        }
        let failed = |e: JournalError| journal_error(e, &journal_path, Error::usage);
        let journal = Journal::open(&journal_path).map_err(failed)?;
        let runs = journal.runs().map_err(failed)?;
        let fills = journal.fills_with_runs().map_err(failed)?;
        let orders = journal.orders().map_err(failed)?;
        let book = journal.derive_book().map_err(failed)?;
        let initial_cash = journal.initial_cash().map_err(failed)?;
        let cash_currency = Some(book.cash_currency.clone()).filter(|c| !c.is_empty());
        let fills: Vec<RunFill> = fills
            .into_iter()
            .map(|(run, symbol, side, f)| RunFill {
                run,
                client_order_id: f.client_order_id,
                trade_id: f.trade_id,
                time: f.time,
                symbol,
                side,
                quantity: f.quantity,
                price: f.price,
                fee: f.fee,
                fee_asset: f.fee_asset,
            })
            .collect();
        let cash_asset = cash_currency.clone().unwrap_or_default();
        let (trades, other_asset_fees) =
            round_trips(&fills, initial_cash.unwrap_or_default(), &cash_asset)?;
        let mut summaries: Vec<RunSummary> = runs
            .into_iter()
            .map(|info| RunSummary {
                orders: orders.iter().filter(|o| o.run_id == info.id).count(),
                fills: 0,
                fees: Decimal::ZERO,
                realized: Decimal::ZERO,
                info,
            })
            .collect();
        let index: HashMap<i64, usize> = summaries
            .iter()
            .enumerate()
            .map(|(i, r)| (r.info.id, i))
            .collect();
        for fill in &fills {
            if let Some(&i) = index.get(&fill.run) {
                summaries[i].fills += 1;
                summaries[i].fees += fill.fee;
            }
        }
        for trade in &trades {
            if let Some(&i) = index.get(&trade.exit_run) {
                summaries[i].realized += trade.pnl;
            }
        }
        Ok(History {
            state_dir: dir.to_path_buf(),
            holder: StateLock::holder_of(dir),
            journal_path,
            cash_currency,
            initial_cash,
            runs: summaries,
            fills,
            trades,
            book,
            other_asset_fees,
        })
    }

    /// Profit of every trade closed so far.
    pub fn realized(&self) -> Decimal {
        self.trades.iter().map(|t| t.pnl).sum()
    }

    /// The report as text for the terminal.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(
            &mut out,
            format!(
                "state folder {} (journal {})",
                self.state_dir.display(),
                self.journal_path.display()
            ),
        );
        line(
            &mut out,
            match &self.holder {
                Some(holder) => format!("in use by {holder}"),
                None => "not in use".into(),
            },
        );
        if let (Some(currency), Some(cash)) = (&self.cash_currency, self.initial_cash) {
            line(
                &mut out,
                format!("initial cash {cash} {currency} (the first session's)"),
            );
        }
        for run in &self.runs {
            let info = &run.info;
            line(
                &mut out,
                format!(
                    "run {}  {} → {}  {}  {} {} [{}]  orders {}  fills {}  fees {}  realized profit {}",
                    info.id,
                    format_timestamp(info.started_at),
                    info.stopped_at
                        .map(format_timestamp)
                        .unwrap_or_else(|| "(running or killed)".into()),
                    info.stop_reason.as_deref().unwrap_or("no clean stop yet"),
                    info.broker,
                    info.algorithm,
                    info.symbols.join(","),
                    run.orders,
                    run.fills,
                    run.fees,
                    run.realized,
                ),
            );
        }
        let fees: Decimal = self.fills.iter().map(|f| f.fee).sum();
        line(
            &mut out,
            format!(
                "all runs: {} fills, {} trades closed, fees {fees}, realized profit {}",
                self.fills.len(),
                self.trades.len(),
                self.realized()
            ),
        );
        let positions: Vec<String> = self
            .book
            .positions
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(s, q)| format!("{s} {q}"))
            .collect();
        line(
            &mut out,
            format!(
                "book now: cash {}; {}",
                self.book.cash,
                if positions.is_empty() {
                    "flat".to_string()
                } else {
                    positions.join(", ")
                }
            ),
        );
        if self.other_asset_fees > 0 {
            line(
                &mut out,
                format!(
                    "note: {} fills paid their fee in another asset than the cash; the trades' \
                     profit leaves those fees out",
                    self.other_asset_fees
                ),
            );
        }
        out
    }

    /// `runs.csv`, `fills.csv` and `trades.csv` in `out`.
    pub fn write(&self, out: &Path) -> Result<(), Error> {
        let io = |source: std::io::Error| Error::Io {
            context: "cannot write the report to",
            path: out.to_path_buf(),
            source,
        };
        let csv_error = |e: csv::Error| io(std::io::Error::other(e.to_string()));
        std::fs::create_dir_all(out).map_err(io)?;
        let mut runs = csv::Writer::from_path(out.join("runs.csv")).map_err(csv_error)?;
        runs.write_record([
            "run",
            "started_at",
            "stopped_at",
            "stop_reason",
            "broker",
            "algorithm",
            "symbols",
            "orders",
            "fills",
            "fees",
            "realized_pnl",
        ])
        .map_err(csv_error)?;
        for run in &self.runs {
            let info = &run.info;
            runs.write_record([
                info.id.to_string(),
                format_timestamp(info.started_at),
                info.stopped_at.map(format_timestamp).unwrap_or_default(),
                info.stop_reason.clone().unwrap_or_default(),
                info.broker.clone(),
                info.algorithm.clone(),
                info.symbols.join(","),
                run.orders.to_string(),
                run.fills.to_string(),
                run.fees.to_string(),
                run.realized.to_string(),
            ])
            .map_err(csv_error)?;
        }
        runs.flush().map_err(io)?;
        let mut fills = csv::Writer::from_path(out.join("fills.csv")).map_err(csv_error)?;
        fills
            .write_record([
                "run",
                "client_order_id",
                "trade_id",
                "time",
                "symbol",
                "side",
                "qty",
                "price",
                "fee",
                "fee_asset",
            ])
            .map_err(csv_error)?;
        for f in &self.fills {
            fills
                .write_record([
                    f.run.to_string(),
                    f.client_order_id.clone(),
                    f.trade_id.clone(),
                    format_timestamp(f.time),
                    f.symbol.clone(),
                    f.side.clone(),
                    f.quantity.to_string(),
                    f.price.to_string(),
                    f.fee.to_string(),
                    f.fee_asset.clone().unwrap_or_default(),
                ])
                .map_err(csv_error)?;
        }
        fills.flush().map_err(io)?;
        let mut trades = csv::Writer::from_path(out.join("trades.csv")).map_err(csv_error)?;
        trades
            .write_record([
                "symbol",
                "direction",
                "max_qty",
                "entry_time",
                "entry_run",
                "exit_time",
                "exit_run",
                "pnl",
                "fees",
            ])
            .map_err(csv_error)?;
        for t in &self.trades {
            trades
                .write_record([
                    t.symbol.clone(),
                    if t.direction > 0 { "long" } else { "short" }.to_string(),
                    t.max_quantity.to_string(),
                    format_timestamp(t.entry_time),
                    t.entry_run.to_string(),
                    format_timestamp(t.exit_time),
                    t.exit_run.to_string(),
                    t.pnl.to_string(),
                    t.fees.to_string(),
                ])
                .map_err(csv_error)?;
        }
        trades.flush().map_err(io)?;
        Ok(())
    }
}

/// Every fill through one ledger, in journal order: the round trips of the whole history.
/// Returns them and how many fees were in another asset than the cash (left out).
fn round_trips(
    fills: &[RunFill],
    initial_cash: Decimal,
    cash_asset: &str,
) -> Result<(Vec<HistoryTrade>, usize), Error> {
    let mut symbols: BTreeMap<&str, usize> = BTreeMap::new();
    for fill in fills {
        let next = symbols.len();
        symbols.entry(fill.symbol.as_str()).or_insert(next);
    }
    let names: HashMap<usize, &str> = symbols.iter().map(|(s, i)| (*i, *s)).collect();
    let mut ledger = Ledger::new(initial_cash, symbols.len());
    // The run of the fill that opened or closed a trade, by (symbol, time).
    let mut run_at: HashMap<(usize, TimestampNs), i64> = HashMap::new();
    let mut other_asset_fees = 0;
    for fill in fills {
        let symbol = symbols[fill.symbol.as_str()];
        run_at.entry((symbol, fill.time)).or_insert(fill.run);
        let in_cash = fill.fee_asset.as_deref().is_none_or(|a| a == cash_asset);
        if !in_cash && !fill.fee.is_zero() {
            other_asset_fees += 1;
        }
        let side = if fill.side == "buy" {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        };
        ledger
            .apply_fill(&Fill {
                order_id: OrderId(0),
                symbol: SymbolId(symbol as u32),
                side,
                quantity: fill.quantity,
                price: fill.price,
                fee: if in_cash { fill.fee } else { Decimal::ZERO },
                slippage: Decimal::ZERO,
                time: fill.time,
            })
            .map_err(|e| {
                Error::Internal(format!(
                    "replaying fill {} of {}: {e}",
                    fill.trade_id, fill.client_order_id
                ))
            })?;
    }
    let trades = ledger
        .closed_trades()
        .iter()
        .map(|t| {
            let symbol = t.symbol.0 as usize;
            HistoryTrade {
                symbol: names[&symbol].to_string(),
                direction: t.direction,
                max_quantity: t.max_quantity,
                entry_time: t.entry_time,
                entry_run: run_at.get(&(symbol, t.entry_time)).copied().unwrap_or(0),
                exit_time: t.exit_time,
                exit_run: run_at.get(&(symbol, t.exit_time)).copied().unwrap_or(0),
                pnl: t.pnl,
                fees: t.fees,
            }
        })
        .collect();
    Ok((trades, other_asset_fees))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn fill(run: i64, time: TimestampNs, side: &str, quantity: Decimal, price: Decimal) -> RunFill {
        RunFill {
            run,
            client_order_id: format!("rbt-r{run}-{time}"),
            trade_id: format!("{time}-1"),
            time,
            symbol: "A".into(),
            side: side.into(),
            quantity,
            price,
            fee: dec!(1),
            fee_asset: None,
        }
    }

    #[test]
    fn a_position_opened_in_one_run_and_closed_in_the_next_is_one_trade() {
        let fills = [
            fill(1, 10, "buy", dec!(2), dec!(100)),
            fill(1, 20, "sell", dec!(2), dec!(110)),
            fill(1, 30, "buy", dec!(2), dec!(105)),
            fill(2, 40, "sell", dec!(2), dec!(101)),
        ];
        let (trades, other) = round_trips(&fills, dec!(1000), "USD").unwrap();
        assert_eq!(other, 0);
        assert_eq!(trades.len(), 2);
        assert_eq!((trades[0].entry_run, trades[0].exit_run), (1, 1));
        assert_eq!(trades[0].pnl, dec!(18)); // 2 × 10 − 2 fees
        assert_eq!((trades[1].entry_run, trades[1].exit_run), (1, 2));
        assert_eq!((trades[1].entry_time, trades[1].exit_time), (30, 40));
        assert_eq!(trades[1].pnl, dec!(-10)); // 2 × −4 − 2 fees
    }
}
