//! Run settings: a TOML file (optional) merged with command-line flags in one place.
//! Flags win over the file; the file wins over defaults. Relative paths in the file are
//! taken from the working directory, like the flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::cli::RunArgs;
use crate::console::LogLevel;
use crate::data::{Format, FormatSpec, parse_timestamp};
use crate::engine::ExecutionSettings;
use crate::engine::margin::OnMarginCall;
use crate::error::Error;
use crate::execution::{
    BrokerProfile, CommissionModel, DayCount, FinancingTerms, Instrument, MatchSettings, PathMode,
};
use crate::market::SessionCalendar;
use crate::market::calendar::{calendar_from_texts, parse_time_of_day};
use crate::model::Currency;
use crate::model::time::{NANOS_PER_DAY, NANOS_PER_MINUTE, NANOS_PER_SECOND};

pub const DEFAULT_CASH: &str = "100000";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    run: FileRun,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    commission: Option<FileCommission>,
    #[serde(default)]
    market: FileMarket,
    #[serde(default)]
    execution: FileExecution,
    /// `[instruments.SYMBOL]` tables, and `[instruments.default]` for the others.
    #[serde(default)]
    instruments: BTreeMap<String, FileInstrument>,
    #[serde(default)]
    metrics: FileMetrics,
    /// `[data]`: the layout of `run.data` files, as the `--preset`... flags give it.
    #[serde(default)]
    data: FileData,
}

/// `[metrics]`: what the results are measured against (docs/metrics.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    benchmark: Option<String>,
    risk_free_rate: Option<toml::Value>,
    day_end: Option<String>,
    seed: Option<u64>,
}

/// The data-format keys of the run config (the same names as the flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    preset: Option<String>,
    delimiter: Option<String>,
    no_header: Option<bool>,
    columns: Option<String>,
    date_format: Option<String>,
    tz: Option<String>,
    on_missing: Option<String>,
    /// Catalog runs: `symbols`, `timeframe`, `source`, `catalog`, `allow_bad_data`,
    /// `offline`, `exchange_url`, `yahoo_url`, `adjust`.
    #[serde(default)]
    symbols: Vec<String>,
    timeframe: Option<String>,
    source: Option<String>,
    catalog: Option<PathBuf>,
    allow_bad_data: Option<bool>,
    offline: Option<bool>,
    exchange_url: Option<String>,
    yahoo_url: Option<String>,
    adjust: Option<String>,
}

/// Where a run's bars come from when read from the data catalog.
#[derive(Debug, Clone, Default)]
pub struct CatalogRequest {
    pub symbols: Vec<String>,
    /// The dataset's timeframe label (`1m`); `None` takes the symbol's only one.
    pub timeframe: Option<String>,
    pub source: Option<String>,
    /// `None`: `RUSTYBT_DATA`, else `~/.rustybt/data`.
    pub root: Option<PathBuf>,
    pub allow_bad_data: bool,
    /// With a fetching source (`ccxt:<exchange>`, `yahoo`): use only what the catalog has.
    pub offline: bool,
    /// The source's base URL instead of its public one (a testnet or a local stand-in).
    pub url: Option<String>,
    /// Back-adjusted series instead of raw bars and events (`--adjust`).
    pub adjust: Option<crate::engine::adjust::Adjust>,
}

/// How orders fill: the intrabar path, volume limit, latency and slippage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExecution {
    path: Option<String>,
    volume_share: Option<toml::Value>,
    latency: Option<String>,
    slippage_bps: Option<toml::Value>,
    /// A broker profile file (e.g. `config/brokers/ibkr_like.toml`).
    broker_profile: Option<PathBuf>,
    /// 360 or 365: the basis of borrow and financing accruals.
    day_count: Option<toml::Value>,
    /// Annual rate paid on a debit balance, and received on a credit one.
    financing_rate: Option<toml::Value>,
    financing_credit_rate: Option<toml::Value>,
    /// "liquidate" (default) or "halt".
    on_margin_call: Option<String>,
    /// "module:Class" of a Python `SlippageModel`.
    slippage_model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInstrument {
    tick_size: Option<toml::Value>,
    lot_size: Option<toml::Value>,
    min_notional: Option<toml::Value>,
    margin: Option<toml::Value>,
    maintenance_margin: Option<toml::Value>,
    borrow_rate: Option<toml::Value>,
    currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRun {
    algo: Option<PathBuf>,
    class: Option<String>,
    #[serde(default)]
    data: Vec<PathBuf>,
    symbol: Option<String>,
    cash: Option<toml::Value>,
    start: Option<String>,
    end: Option<String>,
    out: Option<PathBuf>,
    bar_interval: Option<String>,
    log_level: Option<String>,
    currency: Option<String>,
}

/// The exchange session that higher timeframes align to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMarket {
    timezone: Option<String>,
    session_open: Option<String>,
    session_close: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCommission {
    rate: Option<toml::Value>,
    minimum: Option<toml::Value>,
}

/// Everything `rustybt run` needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub algo: PathBuf,
    pub class_name: Option<String>,
    /// Empty means the bundled sample data.
    pub data: Vec<PathBuf>,
    pub symbol: Option<String>,
    /// The layout of the data files.
    pub format: Format,
    /// Bars from the data catalog instead of files (`--symbols`).
    pub catalog: Option<CatalogRequest>,
    /// The catalog datasets the run read and their checksums, for `metrics.json` (filled in
    /// once they are loaded).
    pub datasets_used: Option<serde_json::Value>,
    pub cash: Decimal,
    pub start_ns: Option<i64>,
    /// Exclusive.
    pub end_ns: Option<i64>,
    /// In order of application: file parameters first, then `--param` flags.
    pub params: Vec<(String, String)>,
    pub out: Option<PathBuf>,
    pub bar_interval_ns: Option<i64>,
    pub commission: CommissionModel,
    /// Time zone and session hours of higher-timeframe bars (UTC days by default).
    pub calendar: SessionCalendar,
    /// Execution settings; `instruments` by symbol name (resolved to ids when data is loaded).
    pub execution: ExecutionSettings,
    pub instruments: BTreeMap<String, Instrument>,
    pub progress: bool,
    pub quiet: bool,
    /// Log lines below this level are not echoed (log.txt keeps them).
    pub log_level: LogLevel,
    /// The account's currency: the precision money is shown with.
    pub currency: Currency,
    /// Rerun whenever the algorithm or its local modules change.
    pub watch: bool,
    /// Wall time per tick; code changes are then reloaded in place at tick boundaries.
    pub pace_ns: Option<i64>,
    /// Benchmark, risk-free rate, day end and seed of the metrics.
    pub metrics: crate::metrics::MetricsOptions,
}

impl RunSettings {
    pub fn resolve(args: &RunArgs) -> Result<Self, Error> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let algo = args
            .algo
            .first()
            .cloned()
            .or(file.run.algo)
            .ok_or_else(|| {
                Error::usage_with_hint(
                    "no algorithm given",
                    "pass `--algo algorithms/sma_cross.py` or set `run.algo` in the config file",
                )
            })?;
        let cash = match (&args.cash, &file.run.cash) {
            (Some(text), _) => decimal_text("--cash", text)?,
            (None, Some(value)) => decimal_value("run.cash", value)?,
            (None, None) => Decimal::from_str(DEFAULT_CASH).expect("invariant: valid default"),
        };
        if cash <= Decimal::ZERO {
            return Err(Error::usage(format!(
                "starting cash must be positive, got {cash}"
            )));
        }
        let log_level = match args.log_level.clone().or(file.run.log_level) {
            None => LogLevel::default(),
            Some(text) => LogLevel::parse(&text).ok_or_else(|| {
                Error::usage_with_hint(
                    format!("log level `{text}` is not one of debug, info, warning, error"),
                    "for example `--log-level info` (or `log_level = \"info\"` under [run])",
                )
            })?,
        };
        let currency = match args.currency.clone().or(file.run.currency) {
            None => Currency::default(),
            Some(code) => Currency::parse(&code).map_err(Error::usage)?,
        };
        let start = args.start.clone().or(file.run.start);
        let end = args.end.clone().or(file.run.end);
        let start_ns = start
            .as_deref()
            .map(|t| time_flag("--start", t))
            .transpose()?;
        let end_ns = end.as_deref().map(end_exclusive).transpose()?;
        if let (Some(s), Some(e)) = (start_ns, end_ns)
            && e <= s
        {
            return Err(Error::usage("`--end` is not after `--start`"));
        }
        let mut params = Vec::new();
        for (name, value) in &file.params {
            params.push((name.clone(), toml_text(value)));
        }
        for flag in &args.params {
            let (name, value) = flag.split_once('=').ok_or_else(|| {
                Error::usage_with_hint(
                    format!("`--param {flag}` is not of the form NAME=VALUE"),
                    "for example `--param fast=5`",
                )
            })?;
            params.push((name.trim().to_string(), value.trim().to_string()));
        }
        let commission = match file.commission {
            Some(c) => CommissionModel {
                rate: c
                    .rate
                    .map(|v| decimal_value("commission.rate", &v))
                    .transpose()?
                    .unwrap_or_default(),
                minimum: c
                    .minimum
                    .map(|v| decimal_value("commission.minimum", &v))
                    .transpose()?
                    .unwrap_or_default(),
            },
            None => CommissionModel::default(),
        };
        commission.validate().map_err(Error::usage)?;
        let format = data_format(&args.format, &file.data)?;
        let catalog = catalog_request(args, file.data)?;
        let interval = args.bar_interval.clone().or(file.run.bar_interval);
        let calendar = calendar(args, file.market)?;
        let metrics = metrics_options(args, file.metrics)?;
        let execution = execution(file.execution)?;
        let mut instruments = BTreeMap::new();
        for (symbol, table) in file.instruments {
            let instrument = instrument(&symbol, table)?;
            instruments.insert(symbol, instrument);
        }
        Ok(RunSettings {
            execution,
            instruments,
            algo,
            class_name: args.class_name.clone().or(file.run.class),
            data: if args.data.is_empty() {
                file.run.data
            } else {
                args.data.clone()
            },
            symbol: args.symbol.clone().or(file.run.symbol),
            format,
            catalog,
            datasets_used: None,
            cash,
            start_ns,
            end_ns,
            params,
            out: args.out.clone().or(file.run.out),
            bar_interval_ns: interval.as_deref().map(parse_duration).transpose()?,
            commission,
            calendar,
            progress: !args.no_progress,
            quiet: args.quiet,
            log_level,
            currency,
            watch: args.watch,
            pace_ns: args.pace.as_deref().map(parse_duration).transpose()?,
            metrics,
        })
    }
}

/// The data format: flags over the `[data]` table.
fn data_format(args: &crate::cli::FormatArgs, file: &FileData) -> Result<Format, Error> {
    let flags = args.spec();
    let spec = FormatSpec {
        preset: flags.preset.or_else(|| file.preset.clone()),
        delimiter: flags.delimiter.or_else(|| file.delimiter.clone()),
        no_header: flags.no_header || file.no_header.unwrap_or(false),
        columns: flags.columns.or_else(|| file.columns.clone()),
        date_format: flags.date_format.or_else(|| file.date_format.clone()),
        tz: flags.tz.or_else(|| file.tz.clone()),
        on_missing: flags.on_missing.or_else(|| file.on_missing.clone()),
    };
    Format::from_spec(&spec).map_err(Error::usage)
}

/// `--symbols` (or `data.symbols`) asks for catalog data; flags win over the file. `--adjust`
/// needs it (the events are the catalog's).
fn catalog_request(args: &RunArgs, file: FileData) -> Result<Option<CatalogRequest>, Error> {
    let adjust =
        match args.adjust.clone().or(file.adjust.clone()) {
            Some(text) => Some(crate::engine::adjust::Adjust::parse(&text).map_err(|e| {
                Error::usage_with_hint(format!("--adjust: {e}"), "--adjust split|all")
            })?),
            None => None,
        };
    let request = catalog_request_of(args, file, adjust);
    if request.is_none() && adjust.is_some() {
        return Err(Error::usage_with_hint(
            "`--adjust` adjusts for the splits and dividends the data catalog stores, and this \
             run reads files",
            "run on catalog data (`--symbols X --source yahoo`), or drop --adjust",
        ));
    }
    Ok(request)
}

fn catalog_request_of(
    args: &RunArgs,
    file: FileData,
    adjust: Option<crate::engine::adjust::Adjust>,
) -> Option<CatalogRequest> {
    let symbols = if args.symbols.is_empty() {
        file.symbols
    } else {
        args.symbols.clone()
    };
    let symbols: Vec<String> = symbols
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!symbols.is_empty()).then(|| CatalogRequest {
        symbols,
        timeframe: args.timeframe.clone().or(file.timeframe),
        source: args.source.clone().or(file.source),
        root: args.catalog.clone().or(file.catalog),
        allow_bad_data: args.allow_bad_data || file.allow_bad_data.unwrap_or(false),
        offline: args.offline || file.offline.unwrap_or(false),
        url: args
            .exchange_url
            .clone()
            .or(args.yahoo_url.clone())
            .or(file.exchange_url)
            .or(file.yahoo_url),
        adjust,
    })
}

fn execution(file: FileExecution) -> Result<ExecutionSettings, Error> {
    let path = match file.path.as_deref() {
        None | Some("nearer_first") => PathMode::NearerFirst,
        Some("high_first") => PathMode::HighFirst,
        Some("low_first") => PathMode::LowFirst,
        Some(other) => {
            return Err(Error::usage(format!(
                "execution.path: `{other}` is not a path; use nearer_first, high_first or low_first"
            )));
        }
    };
    let volume_share = file
        .volume_share
        .map(|v| decimal_value("execution.volume_share", &v))
        .transpose()?;
    if let Some(share) = volume_share
        && (share <= Decimal::ZERO || share > Decimal::ONE)
    {
        return Err(Error::usage(format!(
            "execution.volume_share must be in (0, 1], got {share}"
        )));
    }
    let slippage_bps = file
        .slippage_bps
        .map(|v| decimal_value("execution.slippage_bps", &v))
        .transpose()?
        .unwrap_or_default();
    if slippage_bps < Decimal::ZERO {
        return Err(Error::usage("execution.slippage_bps must not be negative"));
    }
    let profile = file
        .broker_profile
        .as_deref()
        .map(BrokerProfile::from_path)
        .transpose()
        .map_err(|e| Error::usage(format!("execution.broker_profile: {e}")))?;
    let day_count = match &file.day_count {
        None => None,
        Some(toml::Value::Integer(days)) => Some(
            u16::try_from(*days)
                .map_err(|_| days.to_string())
                .and_then(DayCount::try_from)
                .map_err(|_| {
                    Error::usage(format!(
                        "execution.day_count must be 360 or 365, got {days}"
                    ))
                })?,
        ),
        Some(other) => {
            return Err(Error::usage(format!(
                "execution.day_count must be the integer 360 or 365, got {other}"
            )));
        }
    };
    let rate = |key: &str, value: &Option<toml::Value>| {
        value
            .as_ref()
            .map(|v| decimal_value(&format!("execution.{key}"), v))
            .transpose()
    };
    let debit = rate("financing_rate", &file.financing_rate)?;
    let credit = rate("financing_credit_rate", &file.financing_credit_rate)?;
    let financing = (debit.is_some() || credit.is_some()).then(|| FinancingTerms {
        debit_annual_rate: debit.unwrap_or_default(),
        credit_annual_rate: credit.unwrap_or_default(),
        basis: day_count.unwrap_or_default(),
    });
    if let Some(terms) = &financing {
        terms
            .validate()
            .map_err(|e| Error::usage(format!("execution: {e}")))?;
    }
    // The profile's volume share applies unless the file sets one.
    let volume_share = volume_share.or(profile.as_ref().and_then(|p| p.partial_fill_volume_share));
    Ok(ExecutionSettings {
        profile,
        matching: MatchSettings { path, volume_share },
        latency_ns: file
            .latency
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or(0),
        slippage_bps,
        day_count,
        financing,
        python_slippage: match file.slippage_model {
            Some(spec)
                if !spec
                    .split_once(':')
                    .is_some_and(|(m, c)| !m.is_empty() && !c.is_empty()) =>
            {
                return Err(Error::usage(format!(
                    "execution.slippage_model `{spec}` is not of the form \"module:Class\""
                )));
            }
            other => other,
        },
        on_margin_call: file
            .on_margin_call
            .as_deref()
            .map(OnMarginCall::parse)
            .transpose()
            .map_err(Error::usage)?
            .unwrap_or_default(),
        ..Default::default()
    })
}

fn instrument(symbol: &str, file: FileInstrument) -> Result<Instrument, Error> {
    let number = |key: &str, value: Option<toml::Value>| {
        value
            .map(|v| decimal_value(&format!("instruments.{symbol}.{key}"), &v))
            .transpose()
    };
    let instrument = Instrument {
        tick_size: number("tick_size", file.tick_size)?,
        lot_size: number("lot_size", file.lot_size)?,
        min_notional: number("min_notional", file.min_notional)?,
        margin: number("margin", file.margin)?.unwrap_or(Decimal::ONE),
        maintenance_margin: number("maintenance_margin", file.maintenance_margin)?,
        borrow_rate: number("borrow_rate", file.borrow_rate)?,
        currency: file.currency.unwrap_or_else(|| "USD".into()),
    };
    instrument.validate(symbol).map_err(Error::usage)?;
    Ok(instrument)
}

/// Flags win over `[market]`; each bad value is named with where it came from.
fn metrics_options(
    args: &RunArgs,
    file: FileMetrics,
) -> Result<crate::metrics::MetricsOptions, Error> {
    let mut options = crate::metrics::MetricsOptions {
        benchmark: crate::metrics::BenchmarkChoice::parse(
            args.benchmark.as_deref().or(file.benchmark.as_deref()),
        ),
        ..Default::default()
    };
    let rate = match (&args.risk_free, &file.risk_free_rate) {
        (Some(text), _) => Some(("--risk-free", decimal_text("--risk-free", text)?)),
        (None, Some(value)) => Some((
            "metrics.risk_free_rate",
            decimal_value("metrics.risk_free_rate", value)?,
        )),
        (None, None) => None,
    };
    if let Some((source, rate)) = rate {
        use rust_decimal::prelude::ToPrimitive;
        match rate.to_f64() {
            Some(r) if r > -1.0 && r < 10.0 => options.risk_free_rate = r,
            _ => {
                return Err(Error::usage_with_hint(
                    format!("{source}: an annual risk-free rate of {rate} is out of range"),
                    "give the annual rate as a fraction, e.g. 0.04 for 4 %",
                ));
            }
        }
    }
    if let Some(text) = file.day_end {
        let time = parse_time_of_day(&text).map_err(|e| {
            Error::usage_with_hint(format!("metrics.day_end: {}", e.message), e.hint)
        })?;
        options.day_end_ns =
            i64::from(chrono::Timelike::num_seconds_from_midnight(&time)) * NANOS_PER_SECOND;
    }
    if let Some(seed) = file.seed {
        options.seed = seed;
    }
    Ok(options)
}

fn calendar(args: &RunArgs, file: FileMarket) -> Result<SessionCalendar, Error> {
    // A flag wins over the config key; each text keeps the name it came under for errors.
    let pick = |flag: &Option<String>,
                key: Option<String>,
                flag_name: &'static str,
                key_name: &'static str| {
        match flag {
            Some(value) => Some((value.clone(), flag_name)),
            None => key.map(|value| (value, key_name)),
        }
    };
    let args = &args.calendar;
    let timezone = pick(
        &args.timezone,
        file.timezone,
        "--timezone",
        "market.timezone",
    );
    let open = pick(
        &args.session_open,
        file.session_open,
        "--session-open",
        "market.session_open",
    );
    let close = pick(
        &args.session_close,
        file.session_close,
        "--session-close",
        "market.session_close",
    );
    fn text<'a>(picked: &'a Option<(String, &'static str)>) -> Option<(&'a str, &'a str)> {
        picked.as_ref().map(|(t, source)| (t.as_str(), *source))
    }
    calendar_from_texts(text(&timezone), text(&open), text(&close))
        .map_err(|e| Error::usage_with_hint(e.message, e.hint))
}

fn read_file(path: &Path) -> Result<FileSettings, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        context: "cannot read the config file",
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "invalid config file `{}`: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })
}

fn decimal_text(what: &str, text: &str) -> Result<Decimal, Error> {
    let trimmed = text.trim();
    Decimal::from_str_exact(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
        .map_err(|_| decimal_error(what, text))
}

/// Why `text` is no Decimal: not a number at all, or a number out of Decimal's range.
fn decimal_error(what: &str, text: &str) -> Error {
    let (message, hint) = decimal_refusal(text);
    let message = format!("{what}: {message}");
    match hint {
        Some(hint) => Error::usage_with_hint(message, hint),
        None => Error::usage(message),
    }
}

/// Why `text` (which `rust_decimal` refused) is no Decimal, and how to fix it: not a number
/// at all, above Decimal's range, or more digits than its 28. Shared by the command line,
/// the config files and the Python API's quantities and prices.
pub fn decimal_refusal(text: &str) -> (String, Option<&'static str>) {
    let trimmed = text.trim();
    let unsigned = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let numeric = !mantissa.is_empty()
        && mantissa != "."
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.chars().all(|c| c.is_ascii_digit())
        && exponent.is_none_or(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        });
    if !numeric {
        return (format!("`{text}` is not a decimal number"), None);
    }
    let too_large =
        whole.trim_start_matches('0').len() > 28 || exponent.is_some_and(|e| !e.starts_with('-'));
    if too_large {
        (
            format!("`{text}` is too large (at most {})", Decimal::MAX),
            Some("amounts are exact 96-bit decimals: at most 28 significant digits"),
        )
    } else {
        (
            format!("`{text}` has too many digits (at most 28 significant digits)"),
            Some("amounts are exact 96-bit decimals: drop digits after the decimal point"),
        )
    }
}

/// A TOML number or string as an exact Decimal; floats are taken at their shortest text.
pub(crate) fn decimal_value(what: &str, value: &toml::Value) -> Result<Decimal, Error> {
    match value {
        toml::Value::String(text) => decimal_text(what, text),
        toml::Value::Integer(i) => Ok(Decimal::from(*i)),
        toml::Value::Float(f) => decimal_text(what, &f.to_string()),
        other => Err(Error::usage(format!(
            "{what}: expected a number or a decimal string, got {}",
            other.type_str()
        ))),
    }
}

pub(crate) fn toml_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn time_flag(what: &str, text: &str) -> Result<i64, Error> {
    parse_timestamp(text)
        .map_err(|e| Error::usage(format!("{what}: `{text}` is not a timestamp ({e})")))
}

/// `--end` is inclusive for the user; internally the range is half-open. A bare date means
/// the whole day.
pub(crate) fn end_exclusive(text: &str) -> Result<i64, Error> {
    let instant = time_flag("--end", text)?;
    let is_date_only = text.trim().len() == 10 && text.trim().as_bytes().get(4) == Some(&b'-');
    Ok(if is_date_only {
        instant + NANOS_PER_DAY
    } else {
        instant + 1
    })
}

/// `10ms`, `30s`, `1m`, `5m`, `1h`, `1d`, `1w`: a duration in nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, Error> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let count: i64 = number.parse().map_err(|_| {
        Error::usage_with_hint(
            format!("`{text}` is not a duration"),
            "use a number and a unit: 10ms, 30s, 1m, 1h, 1d, 1w",
        )
    })?;
    let unit_ns = match unit {
        "ms" => NANOS_PER_SECOND / 1000,
        "s" => NANOS_PER_SECOND,
        "m" | "min" => NANOS_PER_MINUTE,
        "h" => 60 * NANOS_PER_MINUTE,
        "d" => NANOS_PER_DAY,
        "w" => 7 * NANOS_PER_DAY,
        _ => {
            return Err(Error::usage_with_hint(
                format!("`{text}` has an unknown unit"),
                "use ms, s, m, h, d or w",
            ));
        }
    };
    if count <= 0 {
        return Err(Error::usage(format!("duration `{text}` must be positive")));
    }
    count
        .checked_mul(unit_ns)
        .ok_or_else(|| Error::usage(format!("duration `{text}` is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m").unwrap(), NANOS_PER_MINUTE);
        assert_eq!(parse_duration("4h").unwrap(), 4 * 60 * NANOS_PER_MINUTE);
        assert_eq!(parse_duration("10ms").unwrap(), 10_000_000);
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(parse_duration("15251w").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_params_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "[run]\nalgo = \"a.py\"\ncash = 5000\nend = \"2024-01-31\"\n[params]\nfast = 3\n\
             [commission]\nrate = 0.001\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path),
            cash: Some("7000.50".into()),
            params: vec!["slow=9".into()],
            ..Default::default()
        };
        let settings = RunSettings::resolve(&args).unwrap();
        assert_eq!(settings.algo, PathBuf::from("a.py"));
        assert_eq!(settings.cash, Decimal::from_str("7000.50").unwrap());
        assert_eq!(
            settings.params,
            vec![("fast".into(), "3".into()), ("slow".into(), "9".into())]
        );
        assert_eq!(
            settings.commission.rate,
            Decimal::from_str("0.001").unwrap()
        );
        assert_eq!(
            settings.end_ns,
            Some(parse_timestamp("2024-02-01").unwrap())
        );
    }

    #[test]
    fn market_session_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market.toml");
        std::fs::write(
            &path,
            "[run]\nalgo = \"a.py\"\n[market]\ntimezone = \"America/New_York\"\n\
             session_open = \"09:30\"\nsession_close = \"16:00\"\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let calendar = RunSettings::resolve(&args).unwrap().calendar;
        assert_eq!(calendar.to_string(), "America/New_York from 09:30 to 16:00");
        let args = RunArgs {
            config: Some(path),
            calendar: crate::cli::CalendarArgs {
                timezone: Some("Asia/Tokyo".into()),
                session_close: Some("15:30".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let calendar = RunSettings::resolve(&args).unwrap().calendar;
        assert_eq!(calendar.to_string(), "Asia/Tokyo from 09:30 to 15:30");
        let args = RunArgs {
            algo: vec!["a.py".into()],
            ..Default::default()
        };
        assert!(
            RunSettings::resolve(&args)
                .unwrap()
                .calendar
                .is_utc_default()
        );
    }

    #[test]
    fn bad_market_session_values_are_usage_errors() {
        let resolve = |args: RunArgs| {
            RunSettings::resolve(&RunArgs {
                algo: vec!["a.py".into()],
                ..args
            })
            .unwrap_err()
        };
        let error = resolve(RunArgs {
            calendar: crate::cli::CalendarArgs {
                timezone: Some("America/NewYork".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(error.exit_code(), crate::error::ExitCode::Usage);
        let message = error.to_string();
        assert_eq!(
            message,
            "--timezone: `America/NewYork` is not an IANA time zone"
        );
        let hint = error.hint().unwrap();
        assert!(
            hint.starts_with("did you mean `America/New_York`?"),
            "{hint}"
        );
        let message = resolve(RunArgs {
            calendar: crate::cli::CalendarArgs {
                session_open: Some("9h30".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .to_string();
        assert!(
            message.starts_with("--session-open: `9h30` is not a time of day"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[market]\nsession_close = \"25:00\"\n").unwrap();
        let message = resolve(RunArgs {
            config: Some(path),
            ..Default::default()
        })
        .to_string();
        assert!(
            message.starts_with("market.session_close: `25:00`"),
            "{message}"
        );
    }

    #[test]
    fn metrics_table_and_flags() {
        use crate::metrics::BenchmarkChoice;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        let resolve = |benchmark: Option<&str>, rate: Option<&str>| {
            RunSettings::resolve(&RunArgs {
                algo: vec!["a.py".into()],
                config: Some(path.clone()),
                benchmark: benchmark.map(Into::into),
                risk_free: rate.map(Into::into),
                ..Default::default()
            })
        };
        write(
            "[metrics]\nbenchmark = \"SPY\"\nrisk_free_rate = 0.04\nday_end = \"21:30\"\nseed = 9\n",
        );
        let m = resolve(None, None).unwrap().metrics;
        assert_eq!(m.benchmark, BenchmarkChoice::Symbol("SPY".into()));
        assert_eq!((m.risk_free_rate, m.seed), (0.04, 9));
        assert_eq!(m.day_end_ns, (21 * 60 + 30) * 60 * NANOS_PER_SECOND);
        assert_eq!(m.day_end_text(), "21:30");
        let m = resolve(Some("QQQ"), Some("0.01")).unwrap().metrics;
        assert_eq!(m.benchmark, BenchmarkChoice::Symbol("QQQ".into()));
        assert_eq!(m.risk_free_rate, 0.01);
        let error = resolve(None, Some("-1.5")).unwrap_err();
        assert_eq!(error.exit_code(), crate::error::ExitCode::Usage);
        assert_eq!(
            error.to_string(),
            "--risk-free: an annual risk-free rate of -1.5 is out of range"
        );
        write("[metrics]\nday_end = \"25:00\"\n");
        let error = resolve(None, None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("metrics.day_end: `25:00` is not a time of day")
        );
        assert!(error.hint().unwrap().contains("HH:MM"));
        write("[metrics]\nbench = \"SPY\"\n");
        assert!(resolve(None, None).is_err(), "unknown keys are refused");
        write("");
        let m = resolve(None, None).unwrap().metrics;
        assert_eq!(m, crate::metrics::MetricsOptions::default());
    }

    #[test]
    fn cash_out_of_range_says_too_large_not_not_a_number() {
        let resolve = |cash: &str| {
            RunSettings::resolve(&RunArgs {
                algo: vec!["a.py".into()],
                cash: Some(cash.into()),
                ..Default::default()
            })
        };
        let error = resolve("12345678901234567890123456789012").unwrap_err();
        assert_eq!(error.exit_code(), crate::error::ExitCode::Usage);
        assert_eq!(
            error.to_string(),
            "--cash: `12345678901234567890123456789012` is too large (at most 79228162514264337593543950335)"
        );
        assert!(
            resolve("1e40")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        let fine = resolve("0.12345678901234567890123456789")
            .unwrap_err()
            .to_string();
        assert!(fine.contains("too many digits"), "{fine}");
        for junk in ["12abc", "1.2.3", "", "e5", "1e"] {
            let message = resolve(junk).unwrap_err().to_string();
            assert!(
                message.ends_with("is not a decimal number"),
                "{junk}: {message}"
            );
        }
        assert_eq!(resolve("1e5").unwrap().cash, Decimal::from(100000));
    }

    #[test]
    fn log_level_and_currency_from_flags_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "[run]\nalgo = \"a.py\"\nlog_level = \"warning\"\ncurrency = \"jpy\"\n",
        )
        .unwrap();
        let from_file = RunSettings::resolve(&RunArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.log_level, LogLevel::Warning);
        assert_eq!(
            (
                from_file.currency.code.as_str(),
                from_file.currency.decimals
            ),
            ("JPY", 0)
        );
        let flags = RunSettings::resolve(&RunArgs {
            config: Some(path),
            log_level: Some("error".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flags.log_level, LogLevel::Error);
        let error = RunSettings::resolve(&RunArgs {
            algo: vec!["a.py".into()],
            log_level: Some("loud".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.exit_code(), crate::error::ExitCode::Usage);
        assert!(error.to_string().contains("`loud` is not one of debug"));
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[run]\nalgo = \"a.py\"\ncahs = 1\n").unwrap();
        let args = RunArgs {
            config: Some(path),
            ..Default::default()
        };
        let message = RunSettings::resolve(&args).unwrap_err().to_string();
        assert!(message.contains("cahs"), "{message}");
        let args = RunArgs {
            algo: vec!["a.py".into()],
            params: vec!["fast".into()],
            ..Default::default()
        };
        assert!(RunSettings::resolve(&args).is_err());
        let args = RunArgs {
            algo: vec!["a.py".into()],
            cash: Some("-5".into()),
            ..Default::default()
        };
        assert!(RunSettings::resolve(&args).is_err());
    }

    #[test]
    fn carry_settings_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |text: &str| {
            let path = dir.path().join("carry.toml");
            std::fs::write(&path, format!("[run]\nalgo = \"a.py\"\n{text}")).unwrap();
            RunSettings::resolve(&RunArgs {
                config: Some(path),
                ..Default::default()
            })
        };
        let settings = resolve(
            "[execution]\nday_count = 365\nfinancing_rate = \"0.05\"\n\
             [instruments.X]\nborrow_rate = \"0.02\"\nmargin = \"0.5\"\nmaintenance_margin = \"0.25\"\n",
        )
        .unwrap();
        let financing = settings.execution.financing.unwrap();
        assert_eq!(
            financing.debit_annual_rate,
            Decimal::from_str("0.05").unwrap()
        );
        assert_eq!(financing.credit_annual_rate, Decimal::ZERO);
        assert_eq!(financing.basis, DayCount::Act365);
        let x = &settings.instruments["X"];
        assert_eq!(x.borrow_rate, Some(Decimal::from_str("0.02").unwrap()));
        assert_eq!(
            x.maintenance_margin,
            Some(Decimal::from_str("0.25").unwrap())
        );
        for (text, expected) in [
            (
                "[execution]\nday_count = 364\n",
                "execution.day_count must be 360 or 365, got 364",
            ),
            (
                "[execution]\nday_count = \"360\"\n",
                "execution.day_count must be the integer 360 or 365",
            ),
            (
                "[execution]\nfinancing_rate = \"-0.01\"\n",
                "financing rates must not be negative",
            ),
            (
                "[execution]\nfinancing_credit_rate = \"abc\"\n",
                "execution.financing_credit_rate: `abc`",
            ),
            (
                "[instruments.X]\nborrow_rate = \"-1\"\n",
                "borrow_rate must not be negative",
            ),
            (
                "[execution]\non_margin_call = \"ignore\"\n",
                "execution.on_margin_call: `ignore` is not a policy",
            ),
            (
                "[execution]\nslippage_model = \"models.Mine\"\n",
                "is not of the form \"module:Class\"",
            ),
            (
                "[instruments.X]\nmaintenance_margin = \"2\"\n",
                "maintenance_margin must be in (0, margin = 1]",
            ),
        ] {
            let error = resolve(text).unwrap_err();
            assert_eq!(error.exit_code(), crate::error::ExitCode::Usage);
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }
}
