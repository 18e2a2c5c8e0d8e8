//! Command-line interface: one file per subcommand.

mod compare;
mod data;
mod doctor;
mod harness;
mod indicator_report;
mod live;
mod live_book;
mod optimize;
mod portfolio;
mod progress;
mod report;
mod run;
mod test;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "rustybt",
    about = "Backtest and trade Python algorithms on a Rust engine with exact Decimal accounting",
    disable_version_flag = true
)]
pub struct Cli {
    /// Python interpreter to embed (default: $VIRTUAL_ENV, else a .venv in the algorithm's
    /// folder, the working directory or the binary's folder or their parents, else the
    /// interpreter rustybt was built with).
    #[arg(long, global = true, env = "RUSTYBT_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Print the rustybt version and the embedded Python's, then exit.
    #[arg(short = 'V', long)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Backtest an algorithm on bar data and write the results.
    Run(Box<RunArgs>),
    /// Run pytest inside the embedded interpreter, where `rustybt_api.testing.backtest` runs
    /// algorithms on the real engine. Arguments after `--` go to pytest.
    Test(TestArgs),
    /// Show the interpreter rustybt chose, sys.path, and whether key packages import.
    Doctor,
    /// Check an algorithm before a backtest: syntax, structure, a dry run on generated
    /// scenarios with profiling and leak detection, and code metrics.
    Validate(ValidateArgs),
    /// Trade an algorithm on a live feed: paper (the backtest matcher and costs) or an
    /// exchange through ccxt, with a crash-safe journal, reconciliation and circuit breakers.
    Live(Box<LiveCommand>),
    /// Write the interactive HTML report of a results folder (one offline file), optionally
    /// printed to PDF through headless Chromium.
    Report(ReportArgs),
    /// Compare results folders: metrics side by side and an equity overlay; with `--match`,
    /// each run's decisions and fills against the first's (live or paper against backtest).
    Compare(CompareArgs),
    /// The local market-data catalog: import files, fetch from exchanges and Yahoo, list,
    /// show, verify and remove datasets (see docs/data.md).
    Data(Box<DataCommand>),
    /// Search an algorithm's parameters (grid, random, TPE, NSGA-II) on all cores, with
    /// walk-forward validation; studies resume after a crash (see docs/optimize.md).
    Optimize(Box<OptimizeCommand>),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OptimizeCommand {
    #[command(subcommand)]
    pub action: Option<OptimizeAction>,
    #[command(flatten)]
    pub study: OptimizeArgs,
}

#[derive(Debug, Subcommand)]
pub enum OptimizeAction {
    /// List the studies in a folder.
    List {
        /// Where the studies are (default: runs).
        #[arg(long, value_name = "DIR", default_value = "runs")]
        root: PathBuf,
    },
    /// Show a study's trials, best first.
    Show(ShowStudyArgs),
    /// Write a study's HTML report (trials, sensitivity, overfitting statistics, walk-forward,
    /// Monte Carlo bands): one offline file, optionally printed to PDF.
    Report {
        /// The study folder.
        study: PathBuf,
        /// The HTML file to write (default: STUDY/report.html).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also print it to PDF through headless Chromium.
        #[arg(long)]
        pdf: bool,
    },
    /// Monte Carlo on a finished run's trades: reordered (`permutation`) or resampled
    /// (`bootstrap`), compounding; writes RUN_DIR/montecarlo-<method>.json.
    Montecarlo {
        /// A results folder (a run's, or STUDY/best: the best trial rerun).
        run_dir: PathBuf,
        /// `permutation` or `bootstrap`.
        #[arg(long, default_value = "bootstrap")]
        method: String,
        /// Number of simulated paths.
        #[arg(long, default_value_t = 1000)]
        runs: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Serve trials as JSON lines on stdin and stdout (what a Ray actor starts).
    #[command(hide = true)]
    Worker {
        /// The study's folder, whose stored command gives the data and settings.
        #[arg(long, value_name = "DIR")]
        study: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ShowStudyArgs {
    /// The study folder.
    pub study: PathBuf,
    /// How many trials to show (best first).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print every trial as CSV instead (parameters, state, objectives, key metrics).
    #[arg(long)]
    pub csv: bool,
    /// Write the best parameters as a run config file (`rustybt run --config FILE`).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Search method: `grid`, `random`, `tpe` (Bayesian) or `nsga2` (evolutionary).
    #[arg(long, default_value = "grid")]
    pub method: String,

    /// At most this many trials (required by the samplers on an infinite space).
    #[arg(long, value_name = "N")]
    pub trials: Option<u64>,

    /// Stop proposing trials after this long (`30m`); running trials finish.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Stop after this many finished trials in a row without a better objective.
    #[arg(long, value_name = "N")]
    pub patience: Option<u64>,

    /// Seed of the search and of every trial's `random`/NumPy generators.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Trials a learning sampler proposes before it must learn their results (default: the
    /// number of workers). Results are identical for the same seed and batch.
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,

    /// Maximize this metric of metrics.json (repeat for several objectives; a dotted path
    /// reads a nested one). Default: sharpe.
    #[arg(long, value_name = "METRIC")]
    pub maximize: Vec<String>,

    /// Minimize this metric of metrics.json (repeatable).
    #[arg(long, value_name = "METRIC")]
    pub minimize: Vec<String>,

    /// A condition every trial's parameters meet, e.g. "fast < slow" (repeatable).
    #[arg(long, value_name = "EXPR")]
    pub constraint: Vec<String>,

    /// A trial with fewer trades does not count (its objective is not used).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_trades: u64,

    /// Local worker processes (default: all cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// The study folder (default: runs/study-<date>-<time>).
    #[arg(long, value_name = "DIR")]
    pub study: Option<PathBuf>,

    /// Continue an interrupted study: only its unfinished trials run.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,

    /// With `--resume`: continue even though the code, data or space changed.
    #[arg(long)]
    pub force: bool,

    /// Measure one trial and print the study's expected duration, then stop.
    #[arg(long)]
    pub estimate: bool,

    /// Walk-forward validation: `train=180d,test=30d,step=30d` (step defaults to test).
    #[arg(long, value_name = "SPEC")]
    pub walk_forward: Option<String>,

    /// With `--walk-forward`: every training window starts at the first bar (expanding).
    #[arg(long)]
    pub anchored: bool,

    /// How many of the best trials to print at the end.
    #[arg(long, default_value_t = 10)]
    pub top: usize,

    /// Where trials run: `local` (forked workers, `-j`) or `ray` (a Ray cluster, `--address`).
    #[arg(long, default_value = "local")]
    pub executor: String,

    /// After the search: rerun the best trial this many times on prices with seeded noise and
    /// write the percentile bands to STUDY/best/montecarlo-noise.json.
    #[arg(long, value_name = "N")]
    pub noise_runs: Option<u32>,

    /// The noise's size: each price times exp(SCALE × z), z standard normal (default 0.0005).
    #[arg(long, value_name = "SCALE", default_value_t = 0.0005)]
    pub noise_scale: f64,

    /// The Ray cluster's address, `HOST:PORT` (with `--executor ray`).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// Two or more results folders; the first is the reference for `--match`.
    #[arg(value_name = "RUN_DIR", num_args = 2.., required = true)]
    pub runs: Vec<PathBuf>,

    /// Also write an HTML page (metrics, equity overlay, matched fills) to this file.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,

    /// Match each run's decisions (order submissions) and fills against the first run's:
    /// slippage, latency and fee per fill, orders missing on either side, equity tracking
    /// error and correlation of returns.
    #[arg(long = "match")]
    pub match_fills: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The results folder a run wrote (`rustybt run --out DIR`).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,

    /// The HTML file to write (default: RUN_DIR/report.html).
    #[arg(long, value_name = "FILE.html")]
    pub out: Option<PathBuf>,

    /// Also print the report to PDF (beside the HTML file) through headless Chromium.
    #[arg(long)]
    pub pdf: bool,

    /// Benchmark: a symbol of the run's data (buy and hold it) or a bar file (CSV or Parquet,
    /// its closes). Default: buy and hold of the traded symbols, equally weighted.
    #[arg(long, value_name = "SYMBOL|FILE")]
    pub benchmark: Option<String>,

    /// Window of the rolling Sharpe and volatility, in days of returns.
    #[arg(long, value_name = "DAYS", default_value_t = 63)]
    pub window: u32,
}

impl Default for ReportArgs {
    fn default() -> Self {
        ReportArgs {
            run_dir: PathBuf::new(),
            out: None,
            pdf: false,
            benchmark: None,
            window: 63,
        }
    }
}

#[derive(Debug, Args)]
pub struct DataCommand {
    /// The catalog folder (default: $RUSTYBT_DATA, else ~/.rustybt/data).
    #[arg(long, global = true, value_name = "DIR")]
    pub catalog: Option<PathBuf>,

    /// Size limit of the catalog's bars (`500MB`, `20GB`; powers of 1024): after an import or
    /// fetch, and on `data prune`, the least recently used datasets are removed until the rest
    /// fits. `data prune --max-size` also records it as the catalog's limit for later commands.
    #[arg(long, global = true, value_name = "SIZE")]
    pub max_size: Option<String>,

    #[command(subcommand)]
    pub action: DataAction,
}

#[derive(Debug, Subcommand)]
pub enum DataAction {
    /// Store CSV or Parquet bar files in the catalog (any layout: see the format options).
    Import(ImportArgs),
    /// Download the bars the catalog does not have yet: from an exchange through ccxt
    /// (`--source ccxt:binance`) or from Yahoo through yfinance (`--source yahoo`).
    Fetch(FetchArgs),
    /// Every dataset: source, symbol, timeframe, first and last bar, rows, gaps, size.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A dataset's coverage, gaps, validation findings and first and last rows.
    Show(DatasetArgs),
    /// Check every partition against its checksum, the intervals for overlaps, and remove
    /// files an interrupted write left behind.
    Verify,
    /// Remove datasets (all timeframes and sources of the symbol unless narrowed).
    Rm(DatasetArgs),
    /// Remove the least recently used datasets (last read by a run, else last written) until
    /// the catalog fits `--max-size` (or the limit recorded by an earlier `--max-size`).
    Prune,
    /// Build a higher timeframe of a dataset from its bars and store it beside it (the
    /// buckets of a run with the same `--timezone` and session; only buckets the dataset
    /// covers whole).
    Resample(ResampleArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// CSV or Parquet files (several files of one symbol, or files with a `symbol` column).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Symbol of files without a `symbol` column (default: the file name stem).
    #[arg(long)]
    pub symbol: Option<String>,

    /// Bar duration (`1m`, `1h`, `1d`...; default: the most common step between bars).
    #[arg(long, value_name = "DURATION")]
    pub timeframe: Option<String>,

    /// Source name the dataset is filed under.
    #[arg(long, value_name = "NAME", default_value = "file")]
    pub source: String,

    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args, Clone)]
pub struct FetchArgs {
    /// Where from: `ccxt:<exchange>` (`ccxt:binance`, any exchange ccxt knows) or `yahoo`.
    #[arg(long, value_name = "SOURCE")]
    pub source: String,

    /// Symbols as the source names them (`BTC/USDT`; `AAPL`, `EURUSD=X`); comma-separated or
    /// repeated.
    #[arg(long, value_name = "SYMBOL", value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,

    /// Bar duration as the source names it: `1m`, `5m`, `1h`, `1d`...
    #[arg(long, value_name = "DURATION")]
    pub timeframe: String,

    /// First bar (open time, ISO 8601 or epoch; UTC unless a zone is given).
    #[arg(long, allow_hyphen_values = true)]
    pub start: String,

    /// Last bar (inclusive; a date alone includes that whole day). Default: up to the bar
    /// still forming, which is never stored.
    #[arg(long, allow_hyphen_values = true)]
    pub end: Option<String>,

    /// REST base URL of the exchange instead of its public one (a testnet, or a local
    /// stand-in), as for `rustybt live`.
    #[arg(long, value_name = "URL")]
    pub exchange_url: Option<String>,

    /// Base URL that Yahoo's hosts are replaced by (a local stand-in of the chart API).
    #[arg(long, value_name = "URL")]
    pub yahoo_url: Option<String>,

    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ResampleArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// The timeframe to build: `5m`, `1h`, `4h`, `1d`... (a multiple of the dataset's).
    #[arg(long, value_name = "DURATION")]
    pub to: String,

    /// Buckets as a run with the same options builds them (default: UTC).
    #[command(flatten)]
    pub calendar: CalendarArgs,
}

/// The session calendar higher timeframes follow (`rustybt run`, `rustybt data resample`).
#[derive(Debug, Args, Clone, Default)]
pub struct CalendarArgs {
    /// Time zone of the exchange session that higher timeframes align to, an IANA name such
    /// as `America/New_York` (default: UTC).
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,

    /// Local time the session opens, `HH:MM`: day bars start there and intraday bars are
    /// counted from it (default 00:00).
    #[arg(long, value_name = "HH:MM")]
    pub session_open: Option<String>,

    /// Local time the session closes, `HH:MM`; bars opening outside [open, close) are left out
    /// of higher timeframes. At or before the open, the session ends the next day.
    #[arg(long, value_name = "HH:MM")]
    pub session_close: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DatasetArgs {
    /// The symbol, as stored (`BTC/USDT`, `SPY`).
    pub symbol: String,

    /// Only this timeframe.
    #[arg(long, value_name = "DURATION")]
    pub timeframe: Option<String>,

    /// Only this source.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,

    /// Print JSON instead of text (`data show`).
    #[arg(long)]
    pub json: bool,
}

/// `rustybt live ...` runs a session; `rustybt live report` reads a state folder's history.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LiveCommand {
    #[command(subcommand)]
    pub action: Option<LiveAction>,
    #[command(flatten)]
    pub session: Option<LiveArgs>,
}

#[derive(Debug, Subcommand)]
pub enum LiveAction {
    /// The whole history of a state folder across sessions, from its journal: runs, fills,
    /// trades (also across sessions) and the book now.
    Report(LiveReportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct LiveReportArgs {
    /// The state folder (journal, audit log) of the sessions.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,

    /// Also write runs.csv, fills.csv and trades.csv into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LiveArgs {
    /// The algorithm file (a Python file with one `Algorithm` subclass). Given twice or more:
    /// a book of those strategies at equal weights (see docs/live.md, "Books").
    #[arg(
        long = "algo",
        value_name = "PATH",
        required_unless_present = "portfolio"
    )]
    pub algos: Vec<PathBuf>,

    /// A portfolio file (as for `rustybt run --portfolio`): a book of strategies on one
    /// account, on paper or at the exchange of `--broker ccxt:<id>`.
    #[arg(long, value_name = "FILE")]
    pub portfolio: Option<PathBuf>,

    /// The one algorithm of `algos`, once checked.
    #[arg(skip)]
    pub algo: PathBuf,

    /// The `Algorithm` subclass to run when the file has several.
    #[arg(long = "class", value_name = "NAME")]
    pub class_name: Option<String>,

    /// Where orders go: `paper` (simulated fills with the backtest's matcher and costs) or
    /// `ccxt:<exchange_id>` (a real exchange through ccxt, e.g. `ccxt:binance`).
    #[arg(long, value_name = "BROKER")]
    pub broker: String,

    /// Symbols to trade, as the feed names them (`BTC/USDT`); comma-separated or repeated.
    #[arg(long, value_name = "SYMBOL", value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,

    /// Bar duration: `1m`, `5m`, `1h`, `1d`...
    #[arg(long, value_name = "DURATION")]
    pub timeframe: String,

    /// Where bars come from: `replay:FILE` (a CSV or Parquet file, played in wall time) or
    /// `ccxt:<exchange_id>` (closed candles from the exchange). Default: the broker's exchange.
    #[arg(long, value_name = "FEED")]
    pub feed: Option<String>,

    /// Replay speed: bars are played `N` times faster than real time (`--speed 60` plays
    /// one-minute bars once a second); 0 plays them as fast as possible.
    #[arg(long, value_name = "N", default_value = "1")]
    pub speed: f64,

    /// Use the exchange's test network (ccxt's sandbox mode).
    #[arg(long)]
    pub sandbox: bool,

    /// REST base URL of the exchange instead of its public one (a testnet, or a local
    /// stand-in in tests).
    #[arg(long, value_name = "URL")]
    pub exchange_url: Option<String>,

    /// How an exchange feed gets its closed candles: `auto` (default, or `[live] feed_mode`:
    /// the exchange's websocket candles when ccxt offers them, else its trades aggregated into
    /// bars, else REST polling), `ws` (a websocket stream; an error if the exchange has none),
    /// `ws-trades` (bars aggregated from the websocket trade stream) or `poll` (REST only). A
    /// stream that drops or cannot connect falls back to polling until it reconnects; REST
    /// fills what it missed. The websocket modes also take an exchange broker's order updates
    /// by websocket where offered. docs/live.md, "Websocket data".
    #[arg(long, value_name = "MODE")]
    pub feed_mode: Option<String>,

    /// Websocket base URL of the exchange's market streams (a testnet, or a local stand-in).
    /// With `--exchange-url` and without this, nothing is streamed (`auto` polls).
    #[arg(long, value_name = "URL")]
    pub exchange_ws_url: Option<String>,

    /// Folder of the journal, audit log and halt file (overrides `[live] state_dir`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// Live settings: breakers, reconciliation, credentials (see config/live.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Engine settings as for `rustybt run --config` (commission, slippage, instruments).
    #[arg(long, value_name = "FILE")]
    pub run_config: Option<PathBuf>,

    /// Paper cash at the first session of a state folder, a decimal number (default 100000).
    #[arg(long, allow_hyphen_values = true)]
    pub cash: Option<String>,

    /// Override a parameter (a class attribute of the algorithm): `--param fast=5`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,

    /// Clear a tripped circuit breaker at start (after removing the halt file, if that was
    /// the cause). A trip otherwise persists across restarts.
    #[arg(long)]
    pub reset_breaker: bool,

    /// Stop after this many bars (each symbol's bar counts once).
    #[arg(long, value_name = "N")]
    pub max_bars: Option<u64>,

    /// Folder for the results (default: runs/live-<date>-<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not echo the algorithm's log lines (they are still written to log.txt).
    #[arg(long, short)]
    pub quiet: bool,

    /// Serve the control and monitoring API on this address (e.g. 127.0.0.1:8787; port 0
    /// picks a free one). Off by default. See docs/live.md, "The control API".
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,

    /// The API's tokens: lines `name:token`, the file readable by its owner only (chmod 600).
    /// Without it, the token is read from RUSTYBT_API_TOKEN (named RUSTYBT_API_TOKEN_NAME, or `env`).
    #[arg(long, value_name = "FILE", requires = "api")]
    pub api_token_file: Option<PathBuf>,

    /// Let --api listen on an address other machines can reach (no TLS: put a TLS proxy in front).
    #[arg(long, requires = "api")]
    pub api_allow_remote: bool,

    /// API requests a second per client address (bursts of as many); more get 429.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "api")]
    pub api_rate_limit: u32,

    /// The data catalog an exchange session warms up from before asking the exchange (its
    /// dataset of the same exchange, symbol and timeframe; default: $RUSTYBT_DATA, else
    /// ~/.rustybt/data). Only the bars the catalog lacks are fetched.
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ValidateArgs {
    /// The algorithm file (a Python file with one `Algorithm` subclass).
    #[arg(long, value_name = "PATH")]
    pub algo: PathBuf,

    /// The `Algorithm` subclass to check when the file has several.
    #[arg(long = "class", value_name = "NAME")]
    pub class_name: Option<String>,

    /// Dry-run on these bar files (CSV or Parquet) instead of the generated scenarios.
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,

    /// Bars per generated scenario.
    #[arg(long, default_value_t = 1000)]
    pub bars: u32,

    /// Print the report as a JSON document (see docs/guide.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Longest time one call into the algorithm may take before it counts as stuck.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub tick_timeout: String,

    /// Seed of the generated scenarios (same seed, same bars).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args, Clone, Default)]
pub struct TestArgs {
    /// Test files or folders (default: what pytest finds from the working directory).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Options for pytest, after `--`: `rustybt test tests/ -- -x -k bracket`.
    #[arg(last = true, value_name = "PYTEST_ARGS")]
    pub pytest_args: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// The algorithm file (a Python file with one `Algorithm` subclass). Repeat it to run
    /// several algorithms as one portfolio with equal weights.
    #[arg(long, value_name = "PATH")]
    pub algo: Vec<PathBuf>,

    /// Run a book of strategies that share one account: the portfolio file lists them, the
    /// capital allocator and the rebalancing schedule (see docs/portfolio.md).
    #[arg(long, value_name = "FILE")]
    pub portfolio: Option<PathBuf>,

    /// The `Algorithm` subclass to run when the file has several.
    #[arg(long = "class", value_name = "NAME")]
    pub class_name: Option<String>,

    /// Bar data, CSV or Parquet; repeat for several files (default: the bundled sample).
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,

    /// Symbol of a data file that has no `symbol` column (default: the file name stem).
    #[arg(long)]
    pub symbol: Option<String>,

    #[command(flatten)]
    pub format: FormatArgs,

    /// Read these symbols' bars from the data catalog instead of files; comma-separated or
    /// repeated. Config: `data.symbols`.
    #[arg(long, value_name = "SYMBOL", value_delimiter = ',')]
    pub symbols: Vec<String>,

    /// The catalog dataset's timeframe, with `--symbols` (`1m`, `1h`, `1d`). Config:
    /// `data.timeframe`.
    #[arg(long, value_name = "DURATION")]
    pub timeframe: Option<String>,

    /// The catalog's source of the symbols, when it holds them from several. Config:
    /// `data.source`.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,

    /// The catalog folder (default: $RUSTYBT_DATA, else ~/.rustybt/data). Config:
    /// `data.catalog`.
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,

    /// Run on a catalog dataset even if its validation found errors (non-positive prices).
    #[arg(long)]
    pub allow_bad_data: bool,

    /// Back-adjusted prices from the catalog instead of raw bars: `split` (bars before a split
    /// scaled by it; dividends still credited, per adjusted share) or `all` (dividends folded
    /// into the prices too). They embed later events in past prices; the default is raw bars
    /// with splits and dividends applied to the books. Config: `data.adjust`.
    #[arg(long, value_name = "split|all")]
    pub adjust: Option<String>,

    /// With `--source ccxt:<exchange>` or `--source yahoo`: run on what the catalog has,
    /// without fetching the missing bars first. Config: `data.offline`.
    #[arg(long)]
    pub offline: bool,

    /// With `--source ccxt:<exchange>`: the exchange's REST base URL instead of its public one
    /// (a testnet, or a local stand-in). Config: `data.exchange_url`.
    #[arg(long, value_name = "URL")]
    pub exchange_url: Option<String>,

    /// With `--source yahoo`: the base URL replacing Yahoo's hosts (a local stand-in).
    /// Config: `data.yahoo_url`.
    #[arg(long, value_name = "URL")]
    pub yahoo_url: Option<String>,

    /// Starting cash, a decimal number (default 100000).
    #[arg(long, allow_hyphen_values = true)]
    pub cash: Option<String>,

    /// First bar to use (open time, ISO 8601 or epoch; UTC unless a zone is given).
    #[arg(long, allow_hyphen_values = true)]
    pub start: Option<String>,

    /// Last bar to use (inclusive; a date alone includes that whole day).
    #[arg(long, allow_hyphen_values = true)]
    pub end: Option<String>,

    /// Override a parameter (a class attribute of the algorithm): `--param fast=5`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,

    /// Folder for the results (default: runs/<date>-<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// A TOML settings file (see config/example.toml); command-line flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Bar duration when it cannot be inferred or must be forced, e.g. `1m`, `1h`, `1d`.
    #[arg(long, value_name = "DURATION")]
    pub bar_interval: Option<String>,

    #[command(flatten)]
    pub calendar: CalendarArgs,

    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Do not echo the algorithm's log lines (they are still written to log.txt).
    #[arg(long, short)]
    pub quiet: bool,

    /// Echo the algorithm's log lines from this level up: `debug` (default), `info`,
    /// `warning`, `error`; log.txt keeps every line. Config: `run.log_level`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Currency of the account: the summary shows money to its precision (`USD`, `EUR`: 2
    /// decimals; `JPY`: 0; `BTC`: 8). Config: `run.currency`. Files keep exact values.
    #[arg(long, value_name = "CODE")]
    pub currency: Option<String>,

    /// Benchmark of the metrics: buy and hold of this symbol of the run (default: all the
    /// run's symbols in equal parts). Config: `metrics.benchmark`.
    #[arg(long, value_name = "SYMBOL")]
    pub benchmark: Option<String>,

    /// Annual risk-free rate for Sharpe, Sortino, Omega and alpha, e.g. `0.04` (default 0).
    /// Config: `metrics.risk_free_rate`.
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub risk_free: Option<String>,

    /// Rerun the backtest whenever the algorithm, its local modules or `indicators/` change,
    /// and show what changed in the results.
    #[arg(long)]
    pub watch: bool,

    /// Advance the backtest in wall time, e.g. `10ms` per tick; saved code changes are then
    /// reloaded in place at the next tick, keeping the algorithm's state.
    #[arg(long, value_name = "DURATION")]
    pub pace: Option<String>,

    /// Start debugpy so a debugger (VS Code or any DAP client) can attach and stop at
    /// breakpoints in the algorithm and `indicators/`.
    #[arg(long)]
    pub debug: bool,

    /// Port the debugger listens on, with `--debug` (default 5678; 0 picks a free one).
    #[arg(long, value_name = "PORT")]
    pub debug_port: Option<u16>,

    /// Address the debugger listens on, with `--debug` (default 127.0.0.1; anything else lets
    /// other machines run code in this process).
    #[arg(long, value_name = "HOST")]
    pub debug_host: Option<String>,

    /// With `--debug`: wait for a debugger to attach before loading the algorithm.
    #[arg(long)]
    pub wait_for_client: bool,

    /// Also write the HTML report of the results (`report.html` in the results folder), as
    /// `rustybt report` does.
    #[arg(long)]
    pub report: bool,
}

/// How to read a bar file in another layout than rustybt's own (see docs/data.md).
#[derive(Debug, Args, Clone, Default)]
pub struct FormatArgs {
    /// The layout of a common source: `binance` (klines), `yahoo`, `metatrader`,
    /// `tradingview`. The options below override parts of it.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// Field separator: `,` `;` `|` or `\t` (default: detected from the first line).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// The first line is a bar, not column names (columns are then
    /// timestamp,open,high,low,close,volume unless `--columns` says otherwise).
    #[arg(long)]
    pub no_header: bool,

    /// Which column is which: the file's columns in order by role
    /// (`date,time,open,high,low,close,volume`; `_` skips one), or `role=NAME` /
    /// `role=POSITION` entries (`close=Adj Close,timestamp=0`).
    #[arg(long, value_name = "LIST")]
    pub columns: Option<String>,

    /// How times are written when not ISO 8601 or an epoch: a strftime pattern such as
    /// `%d.%m.%Y %H:%M`, or `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`.
    #[arg(long, value_name = "PATTERN")]
    pub date_format: Option<String>,

    /// Time zone of times written without an offset, an IANA name such as `Europe/Berlin`
    /// (converted to UTC; default UTC).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,

    /// Rows with a missing price or volume (`null`, `NaN`, empty): `fail` (default), `skip`
    /// them, or `ffill` (a flat bar at the previous close with zero volume).
    #[arg(long, value_name = "POLICY")]
    pub on_missing: Option<String>,
}

impl FormatArgs {
    pub fn spec(&self) -> crate::data::FormatSpec {
        crate::data::FormatSpec {
            preset: self.preset.clone(),
            delimiter: self.delimiter.clone(),
            no_header: self.no_header,
            columns: self.columns.clone(),
            date_format: self.date_format.clone(),
            tz: self.tz.clone(),
            on_missing: self.on_missing.clone(),
        }
    }
}

/// Parses nothing: runs an already-parsed command line and returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    let result = if cli.version {
        doctor::version(cli.python.as_deref())
    } else {
        match cli.command {
            Some(Command::Run(args)) => run::run(cli.python.as_deref(), *args),
            Some(Command::Test(args)) => test::test(cli.python.as_deref(), args),
            Some(Command::Doctor) => doctor::doctor(cli.python.as_deref()),
            Some(Command::Validate(args)) => validate::validate(cli.python.as_deref(), args),
            Some(Command::Report(args)) => report::report(cli.python.as_deref(), args),
            Some(Command::Compare(args)) => compare::compare(cli.python.as_deref(), args),
            Some(Command::Data(command)) => data::data(cli.python.as_deref(), *command),
            Some(Command::Optimize(command)) => optimize::optimize(cli.python.as_deref(), *command),
            Some(Command::Live(command)) => match (command.action, command.session) {
                (Some(LiveAction::Report(args)), _) => live::live_report(&args),
                (None, Some(args)) => live::live(cli.python.as_deref(), args),
                (None, None) => Err(Error::usage_with_hint(
                    "`rustybt live` needs --algo, --broker, --symbols and --timeframe",
                    "see `rustybt live --help`; `rustybt live report --state DIR` shows a state folder's history",
                )),
            },
            None => Err(Error::usage_with_hint(
                "no command given",
                "try `rustybt run --algo algorithms/sma_cross.py` or `rustybt --help`",
            )),
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            crate::error::report(&error);
            error.exit_code()
        }
    }
}
