//! `rustybt data`: import files into the catalog, fetch from exchanges and Yahoo, list, show,
//! verify and remove datasets. The work is done by `crate::catalog` (and the adapters in
//! `crate::python::fetch`); this file parses, wires and prints.

use std::path::{Path, PathBuf};

use super::progress::Progress;
use super::{DataAction, DataCommand, DatasetArgs, FetchArgs, ImportArgs, ResampleArgs};
use crate::catalog::fetch::{self as catalog_fetch, FetchError, SourceError, SourceErrorKind};
use crate::catalog::resample::Target;
use crate::catalog::{
    Catalog, CatalogError, DatasetInfo, Selector, infer_interval, timeframe_label,
};
use crate::data::{self, Format, LoadOptions};
use crate::error::{Error, ExitCode};
use crate::market::calendar::calendar_from_texts;
use crate::market::timeframe::Timeframe;
use crate::model::format_timestamp;

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Data(e) => Error::Data(e),
            CatalogError::Storage(message) => Error::Storage {
                message,
                hint: Some("check the catalog folder's permissions and free space; `rustybt data verify` checks it".into()),
            },
            CatalogError::Invalid(message) => Error::usage(message),
        }
    }
}

/// The catalog folder: `--catalog`, else `RUSTYBT_DATA`, else `~/.rustybt/data`.
pub fn catalog_root(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(Catalog::default_root, Path::to_path_buf)
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        match e.kind {
            SourceErrorKind::UnknownSymbol
            | SourceErrorKind::BadTimeframe
            | SourceErrorKind::BadSource => {
                Error::usage_with_hint(e.message, "see docs/data.md, \"Fetching\"")
            }
            SourceErrorKind::Unavailable | SourceErrorKind::Refused => Error::Broker(format!(
                "{}; the bars fetched before are stored, and rerunning the command continues from there",
                e.message
            )),
            SourceErrorKind::Internal => Error::Internal(e.message),
        }
    }
}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Source(e) => e.into(),
            FetchError::Catalog(e) => e.into(),
            bad @ FetchError::BadBar { .. } => Error::Market(bad.to_string()),
        }
    }
}

pub fn data(explicit_python: Option<&Path>, command: DataCommand) -> Result<ExitCode, Error> {
    let root = catalog_root(command.catalog.as_deref());
    let mut catalog = Catalog::open(&root)?;
    let max_size = command
        .max_size
        .as_deref()
        .map(crate::catalog::parse_size)
        .transpose()
        .map_err(|e| Error::usage_with_hint(e, "for example `--max-size 20GB`"))?;
    match command.action {
        DataAction::Import(args) => {
            let written = import(&mut catalog, &args)?;
            evict(&mut catalog, max_size, &written)
        }
        DataAction::Fetch(args) => {
            let written = fetch(explicit_python, &mut catalog, &args)?;
            evict(&mut catalog, max_size, &written)
        }
        DataAction::Resample(args) => {
            let written = resample(&mut catalog, &args)?;
            evict(&mut catalog, max_size, &written)
        }
        DataAction::Prune => {
            if let Some(bytes) = max_size {
                catalog.set_max_size(bytes)?;
            } else if catalog.max_size()?.is_none() {
                return Err(Error::usage_with_hint(
                    "the catalog has no size limit to prune to",
                    "give one: `rustybt data prune --max-size 20GB` (it is then kept for later imports and fetches)",
                ));
            }
            evict(&mut catalog, max_size, &[])
        }
        DataAction::List { json } => list(&catalog, json),
        DataAction::Show(args) => show(&catalog, &args),
        DataAction::Verify => verify(&mut catalog),
        DataAction::Rm(args) => remove(&mut catalog, &args),
    }
}

/// Returns the id of the dataset written.
fn resample(catalog: &mut Catalog, args: &ResampleArgs) -> Result<Vec<i64>, Error> {
    let timeframe = Timeframe::parse(&args.to).map_err(Error::usage)?;
    let c = &args.calendar;
    fn named<'a>(text: &'a Option<String>, flag: &'static str) -> Option<(&'a str, &'static str)> {
        text.as_deref().map(|t| (t, flag))
    }
    let calendar = calendar_from_texts(
        named(&c.timezone, "--timezone"),
        named(&c.session_open, "--session-open"),
        named(&c.session_close, "--session-close"),
    )
    .map_err(|e| Error::usage_with_hint(e.message, e.hint))?;
    let found = chosen(catalog, &args.dataset)?;
    let [dataset] = &found[..] else {
        let have: Vec<String> = found.iter().map(DatasetInfo::label).collect();
        return Err(Error::usage_with_hint(
            format!(
                "several datasets of `{}`: {}",
                args.dataset.symbol,
                have.join(", ")
            ),
            "choose one with `--timeframe` and `--source`",
        ));
    };
    let target = Target {
        label: args.to.trim(),
        timeframe,
        calendar,
    };
    let report = crate::catalog::resample::resample(catalog, dataset, &target)?;
    let d = &report.dataset;
    let buckets = if calendar.is_utc_default() {
        String::new()
    } else {
        format!(" in {calendar}")
    };
    println!(
        "resampled {} to {}{buckets}: {} bars from {} to {}",
        dataset.label(),
        d.timeframe,
        d.rows(),
        d.first_ns().map(format_timestamp).unwrap_or_default(),
        d.last_ns().map(format_timestamp).unwrap_or_default(),
    );
    print_findings(d, 3);
    Ok(vec![d.id])
}

/// Returns the ids of the datasets written.
fn import(catalog: &mut Catalog, args: &ImportArgs) -> Result<Vec<i64>, Error> {
    let format = Format::from_spec(&args.format.spec()).map_err(Error::usage)?;
    let interval = args
        .timeframe
        .as_deref()
        .map(|t| match Timeframe::parse(t) {
            Ok(Timeframe::Fixed { nanos, .. }) => Ok((t.trim().to_owned(), nanos)),
            Ok(_) => Err(Error::usage(format!(
                "`--timeframe {t}`: weeks and months cannot be stored; import the daily bars"
            ))),
            Err(e) => Err(Error::usage(e)),
        })
        .transpose()?;
    let options = LoadOptions {
        symbol: args.symbol.clone(),
        format,
        ..Default::default()
    };
    let mut written = Vec::new();
    for file in &args.files {
        for series in data::load(file, &options)? {
            let (label, interval_ns) = match &interval {
                Some((label, ns)) => (label.clone(), *ns),
                None => {
                    let ns = infer_interval(&series.time).ok_or_else(|| {
                        Error::usage_with_hint(
                            format!(
                                "`{}` has one bar of {}: its timeframe cannot be inferred",
                                file.display(),
                                series.symbol
                            ),
                            "give it with `--timeframe 1m` (or 1h, 1d...)",
                        )
                    })?;
                    (timeframe_label(ns), ns)
                }
            };
            let origin = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            let report = catalog.import(
                &args.source,
                &label,
                interval_ns,
                &series,
                &origin.display().to_string(),
            )?;
            let d = &report.dataset;
            written.push(d.id);
            println!(
                "imported {} bars of {} {} from {} ({} partition{} written); the dataset has {} bars from {} to {}",
                report.bars,
                d.symbol,
                d.timeframe,
                file.display(),
                report.partitions_written,
                if report.partitions_written == 1 {
                    ""
                } else {
                    "s"
                },
                d.rows(),
                d.first_ns().map(format_timestamp).unwrap_or_default(),
                d.last_ns().map(format_timestamp).unwrap_or_default(),
            );
            print_findings(d, 3);
        }
    }
    Ok(written)
}

/// Whether `source` names a fetching adapter (`ccxt:<exchange>`, `yahoo`) rather than
/// imported files.
pub fn is_fetch_source(source: &str) -> bool {
    source.starts_with("ccxt:") || source == "yahoo"
}

/// Returns the ids of the datasets written.
fn fetch(
    explicit_python: Option<&Path>,
    catalog: &mut Catalog,
    args: &FetchArgs,
) -> Result<Vec<i64>, Error> {
    let start_ns = crate::config::time_flag("--start", &args.start)?;
    let end_ns = args
        .end
        .as_deref()
        .map(crate::config::end_exclusive)
        .transpose()?;
    if end_ns.is_some_and(|e| e <= start_ns) {
        return Err(Error::usage("`--end` is not after `--start`"));
    }
    let url = match (args.source.as_str(), &args.exchange_url, &args.yahoo_url) {
        ("yahoo", Some(_), _) => {
            return Err(Error::usage_with_hint(
                "`--exchange-url` is for `--source ccxt:<exchange>`",
                "a Yahoo stand-in is given with `--yahoo-url`",
            ));
        }
        (s, _, Some(_)) if s != "yahoo" => {
            return Err(Error::usage("`--yahoo-url` is for `--source yahoo`"));
        }
        (_, exchange, yahoo) => exchange.as_deref().or(yahoo.as_deref()),
    };
    super::doctor::start_python(explicit_python, &[])?;
    let reports = fetch_into(
        catalog,
        &catalog_fetch::FetchRequest {
            source: &args.source,
            symbols: &args.symbols,
            timeframe: &args.timeframe,
            start_ns,
            end_ns,
            origin: url.unwrap_or(&args.source),
        },
        url,
        !args.no_progress,
    )?;
    for r in &reports {
        let span =
            |&(s, e): &(i64, i64)| format!("{} .. {}", format_timestamp(s), format_timestamp(e));
        let asked: Vec<String> = r.requested.iter().map(span).collect();
        println!(
            "fetched {} bars of {} {} from {}{}{}",
            r.bars,
            r.symbol,
            args.timeframe,
            args.source,
            if asked.is_empty() {
                " (the catalog had the whole span)".to_owned()
            } else {
                format!(" for {}", asked.join(", "))
            },
            if r.events > 0 {
                format!("; {} split/dividend events", r.events)
            } else {
                String::new()
            }
        );
        match &r.dataset {
            Some(d) => {
                println!(
                    "  the dataset has {} bars from {} to {}",
                    d.rows(),
                    d.first_ns().map(format_timestamp).unwrap_or_default(),
                    d.last_ns().map(format_timestamp).unwrap_or_default(),
                );
                print_findings(d, 3);
            }
            None => eprintln!(
                "warning: {} sent no closed bars of {} in the span asked for",
                args.source, r.symbol
            ),
        }
    }
    Ok(reports
        .iter()
        .filter_map(|r| r.dataset.as_ref().map(|d| d.id))
        .collect())
}

/// Whether a run must fetch before it loads: `--symbols` with a fetching `--source` and no
/// `--offline`.
pub fn run_fetches(settings: &crate::config::RunSettings) -> bool {
    settings
        .catalog
        .as_ref()
        .is_some_and(|c| !c.offline && c.source.as_deref().is_some_and(is_fetch_source))
}

/// `rustybt run --symbols X --source ccxt:binance`: fetches what the catalog misses of the
/// run's span first (Python must be started).
pub fn fetch_for_run(settings: &crate::config::RunSettings, progress: bool) -> Result<(), Error> {
    let Some(request) = &settings.catalog else {
        return Ok(());
    };
    let source = request.source.as_deref().unwrap_or_default();
    let (Some(timeframe), Some(start_ns)) = (request.timeframe.as_deref(), settings.start_ns)
    else {
        return Err(Error::usage_with_hint(
            format!("fetching from `{source}` before the run needs `--timeframe` and `--start`"),
            "give them (or `data.timeframe` and `run.start` in the config), or `--offline` to run on what the catalog has",
        ));
    };
    let mut catalog = Catalog::open(&catalog_root(request.root.as_deref()))?;
    for r in fetch_into(
        &mut catalog,
        &catalog_fetch::FetchRequest {
            source,
            symbols: &request.symbols,
            timeframe,
            start_ns,
            end_ns: settings.end_ns,
            origin: request.url.as_deref().unwrap_or(source),
        },
        request.url.as_deref(),
        progress,
    )? {
        if r.bars > 0 {
            eprintln!(
                "fetched {} bars of {} {timeframe} from {source}",
                r.bars, r.symbol
            );
        }
    }
    Ok(())
}

/// [`fetch_for_run`] in a child process of this binary (`rustybt data fetch`), for a command
/// that must not start Python before it forks (`rustybt optimize`'s workers share the parent's
/// loaded bars). Its progress and messages go to this process's stderr; a failure is
/// `Ok(Some(code))`, already reported by the child.
pub fn fetch_for_run_in_child(
    settings: &crate::config::RunSettings,
    python: Option<&Path>,
) -> Result<Option<ExitCode>, Error> {
    let Some(request) = &settings.catalog else {
        return Ok(None);
    };
    let source = request.source.as_deref().unwrap_or_default();
    let (Some(timeframe), Some(start_ns)) = (request.timeframe.as_deref(), settings.start_ns)
    else {
        // Its usage error, without starting anything.
        return fetch_for_run(settings, false).map(|_| None);
    };
    let exe = std::env::current_exe().map_err(|e| Error::Internal(format!("own path: {e}")))?;
    let mut command = std::process::Command::new(exe);
    if let Some(python) = python {
        command.arg("--python").arg(python);
    }
    command
        .arg("data")
        .arg("--catalog")
        .arg(catalog_root(request.root.as_deref()));
    command.args(["fetch", "--source", source, "--timeframe", timeframe]);
    command.arg("--symbols").arg(request.symbols.join(","));
    command.arg("--start").arg(format_timestamp(start_ns));
    if let Some(end_ns) = settings.end_ns {
        command.arg("--end").arg(format_timestamp(end_ns));
    }
    if let Some(url) = &request.url {
        let flag = match source {
            "yahoo" => "--yahoo-url",
            _ => "--exchange-url",
        };
        command.arg(flag).arg(url);
    }
    // The child's report goes where this command's messages go (its stdout is for results).
    let status = command
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| Error::Internal(format!("starting `rustybt data fetch`: {e}")))?;
    match status.code() {
        Some(0) => Ok(None),
        Some(code) => Ok(Some(ExitCode::of_code(code))),
        None => Err(Error::Internal(format!(
            "`rustybt data fetch` ended by a signal ({status})"
        ))),
    }
}

/// Fetches what the catalog misses of a spec (Python must be started), with a progress bar
/// with ETA on a terminal.
pub fn fetch_into(
    catalog: &mut Catalog,
    request: &catalog_fetch::FetchRequest,
    url: Option<&str>,
    progress: bool,
) -> Result<Vec<catalog_fetch::SymbolReport>, Error> {
    let options = serde_json::json!({
        "url": url,
        "cache_dir": catalog.root().join(".cache").join(request.source.replace(':', "-")),
    });
    let mut source = crate::python::fetch::PyBarSource::open(request.source, &options.to_string())?;
    let mut bar: Option<Progress> = None;
    let reports = catalog_fetch::fetch(catalog, &mut source, request, &mut |p| {
        bar.get_or_insert_with(|| Progress::for_fetch(p.expected, progress))
            .update(p.bars.min(p.expected));
    });
    if let Some(mut bar) = bar {
        bar.finish();
    }
    Ok(reports?)
}

/// Removes least-recently-used datasets down to `--max-size` or the catalog's recorded limit;
/// `keep`: the datasets the command just wrote.
fn evict(catalog: &mut Catalog, flag: Option<u64>, keep: &[i64]) -> Result<ExitCode, Error> {
    let Some(limit) = flag.or(catalog.max_size()?) else {
        return Ok(ExitCode::Success);
    };
    for (d, used) in catalog.prune(limit, keep)? {
        println!(
            "evicted {} ({}, last used {used}) to keep the catalog within {}",
            d.label(),
            size(d.bytes()),
            size(limit)
        );
    }
    Ok(ExitCode::Success)
}

fn print_findings(d: &DatasetInfo, at_most: usize) {
    let errors = d.errors().count();
    let warnings = d
        .findings
        .iter()
        .filter(|f| f.severity == crate::catalog::Severity::Warning)
        .count();
    if errors + warnings == 0 {
        return;
    }
    eprintln!(
        "{}: {errors} error{} and {warnings} warning{} (see `rustybt data show {}`)",
        d.label(),
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        d.symbol
    );
    for f in d
        .findings
        .iter()
        .filter(|f| f.severity >= crate::catalog::Severity::Warning)
        .take(at_most)
    {
        eprintln!("  {}: {}", f.severity.name(), f.message);
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn dataset_json(d: &DatasetInfo, detail: bool) -> serde_json::Value {
    let mut v = d.summary_json();
    v["gaps"] = d.gaps().into();
    v["bytes"] = d.bytes().into();
    v["errors"] = d.errors().count().into();
    if detail {
        v["intervals"] = d
            .intervals
            .iter()
            .map(|&(s, e)| serde_json::json!([format_timestamp(s), format_timestamp(e)]))
            .collect();
        v["partitions"] = d.partitions.iter().map(|p| serde_json::json!({"key": p.key, "file": p.file, "rows": p.rows, "checksum": p.checksum})).collect();
        v["findings"] = d.findings.iter().map(|f| serde_json::json!({"severity": f.severity.name(), "kind": f.kind, "time": f.time_ns.map(format_timestamp), "message": f.message})).collect();
        v["origin"] = d.origin.clone().into();
        v["fetched_at"] = d.fetched_at.clone().into();
        v["scales"] = serde_json::json!(d.scales);
    }
    v
}

fn list(catalog: &Catalog, json: bool) -> Result<ExitCode, Error> {
    let datasets = catalog.datasets()?;
    if json {
        let all: Vec<_> = datasets.iter().map(|d| dataset_json(d, false)).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(ExitCode::Success);
    }
    if datasets.is_empty() {
        eprintln!(
            "the catalog `{}` is empty; add data with `rustybt data import FILE --symbol X`",
            catalog.root().display()
        );
        return Ok(ExitCode::Success);
    }
    println!(
        "{:<12} {:<14} {:<4} {:<20} {:<20} {:>10} {:>6} {:>9}",
        "SOURCE", "SYMBOL", "TF", "FIRST", "LAST", "ROWS", "GAPS", "SIZE"
    );
    for d in &datasets {
        println!(
            "{:<12} {:<14} {:<4} {:<20} {:<20} {:>10} {:>6} {:>9}",
            d.source,
            d.symbol,
            d.timeframe,
            d.first_ns().map(format_timestamp).unwrap_or_default(),
            d.last_ns().map(format_timestamp).unwrap_or_default(),
            d.rows(),
            d.gaps(),
            size(d.bytes())
        );
    }
    Ok(ExitCode::Success)
}

fn selector(args: &DatasetArgs) -> Selector {
    Selector {
        symbol: Some(args.symbol.clone()),
        timeframe: args.timeframe.clone(),
        source: args.source.clone(),
    }
}

fn chosen(catalog: &Catalog, args: &DatasetArgs) -> Result<Vec<DatasetInfo>, Error> {
    let found = catalog.select(&selector(args))?;
    if found.is_empty() {
        return Err(Error::usage_with_hint(
            format!(
                "no dataset of `{}` in the catalog `{}`",
                args.symbol,
                catalog.root().display()
            ),
            "`rustybt data list` shows what the catalog holds",
        ));
    }
    Ok(found)
}

fn show(catalog: &Catalog, args: &DatasetArgs) -> Result<ExitCode, Error> {
    let found = chosen(catalog, args)?;
    if args.json {
        let mut all = Vec::new();
        for d in &found {
            let mut v = dataset_json(d, true);
            v["events"] = catalog
                .events(&d.source, &d.symbol)?
                .into_iter()
                .map(|(t, kind, value)| serde_json::json!({"time": format_timestamp(t), "kind": kind, "value": value}))
                .collect();
            all.push(v);
        }
        println!("{}", serde_json::Value::Array(all));
        return Ok(ExitCode::Success);
    }
    for d in &found {
        println!("{}", d.label());
        println!(
            "  rows       {} in {} partition(s), {}",
            d.rows(),
            d.partitions.len(),
            size(d.bytes())
        );
        println!("  checksum   {}", d.checksum);
        println!("  origin     {} (written {})", d.origin, d.fetched_at);
        println!(
            "  folder     {}",
            catalog
                .files(d)
                .first()
                .and_then(|f| f.parent())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        for (s, e) in &d.intervals {
            println!(
                "  covers     {} .. {}",
                format_timestamp(*s),
                format_timestamp(*e)
            );
        }
        println!("  gaps       {}", d.gaps());
        if d.findings.is_empty() {
            println!("  findings   none");
        }
        for f in &d.findings {
            println!("  {:<10} {} ({})", f.severity.name(), f.message, f.kind);
        }
        for (t, kind, value) in catalog.events(&d.source, &d.symbol)? {
            println!("  {kind:<10} {} {value}", format_timestamp(t));
        }
        let series = catalog.load(d, None, None)?;
        let n = series.len();
        println!(
            "  {:<20} {:>14} {:>14} {:>14} {:>14} {:>14}",
            "time", "open", "high", "low", "close", "volume"
        );
        let rows: Vec<usize> = if n <= 6 {
            (0..n).collect()
        } else {
            (0..3).chain(n - 3..n).collect()
        };
        for (j, &i) in rows.iter().enumerate() {
            if j == 3 && n > 6 {
                println!("  ...");
            }
            println!(
                "  {:<20} {:>14} {:>14} {:>14} {:>14} {:>14}",
                format_timestamp(series.time[i]),
                series.open.exact.get(i),
                series.high.exact.get(i),
                series.low.exact.get(i),
                series.close.exact.get(i),
                series.volume.exact.get(i)
            );
        }
    }
    Ok(ExitCode::Success)
}

fn verify(catalog: &mut Catalog) -> Result<ExitCode, Error> {
    let report = catalog.verify()?;
    for path in &report.removed {
        eprintln!(
            "removed an unreferenced file left by an interrupted write: {}",
            path.display()
        );
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
    println!(
        "checked {} dataset(s), {} partition(s): {}",
        report.datasets,
        report.partitions,
        if report.problems.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} problem(s)", report.problems.len())
        }
    );
    Ok(if report.problems.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Data
    })
}

fn remove(catalog: &mut Catalog, args: &DatasetArgs) -> Result<ExitCode, Error> {
    chosen(catalog, args)?;
    for d in catalog.remove(&selector(args))? {
        println!("removed {} ({} bars)", d.label(), d.rows());
    }
    Ok(ExitCode::Success)
}
