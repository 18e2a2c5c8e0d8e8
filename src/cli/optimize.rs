//! `rustybt optimize`: wires the flags to the study driver in `src/optimize/`.

use std::collections::BTreeMap;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use pyo3::prelude::*;
use serde_json::Value;

use super::doctor::start_python;
use super::{OptimizeAction, OptimizeArgs, OptimizeCommand, ShowStudyArgs};
use crate::config::{RunSettings, parse_duration};
use crate::error::{Error, ExitCode};
use crate::model::format_timestamp;
use crate::optimize::best::{
    best_trial, noise_reruns, params_as_texts, plain_trials, rerun_best, stored_objectives,
    write_best_config,
};
use crate::optimize::ray::RayExecutor;
use crate::optimize::store::{Store, StoredTrial, TrialState};
use crate::optimize::study::Executor;
use crate::optimize::study::{
    Driver, Ending, Event, Limits, Objective, Search, StudyOptions, pareto_front,
};
use crate::optimize::trial::TrialRequest;
use crate::optimize::walk_forward::{WalkForward, walk};
use crate::optimize::{self, LocalExecutor, worker};
use crate::pipeline;

pub fn optimize(python: Option<&Path>, command: OptimizeCommand) -> Result<ExitCode, Error> {
    match command.action {
        Some(OptimizeAction::List { root }) => list(&root),
        Some(OptimizeAction::Show(args)) => show(&args),
        Some(OptimizeAction::Worker { study }) => serve_stdin(python, &study),
        Some(OptimizeAction::Report { study, out, pdf }) => {
            Store::open(&study)?;
            start_python(python, &[])?;
            let written = Python::attach(|py| -> Result<Vec<PathBuf>, Error> {
                let kwargs = pyo3::types::PyDict::new(py);
                let set = || -> PyResult<()> {
                    kwargs.set_item("out", out.as_ref().map(|p| p.display().to_string()))?;
                    kwargs.set_item("pdf", pdf)
                };
                set().map_err(|e| Error::Internal(format!("report arguments: {e}")))?;
                let study = study.display().to_string();
                super::report::call_driver(py, "rustybt_api.study.report", (study,), &kwargs)?
                    .extract::<Vec<PathBuf>>()
                    .map_err(|e| Error::Internal(format!("the study report's paths: {e}")))
            })?;
            for path in written {
                outln!("{}", path.display());
            }
            Ok(ExitCode::Success)
        }
        Some(OptimizeAction::Montecarlo {
            run_dir,
            method,
            runs,
            seed,
        }) => montecarlo(python, &run_dir, &method, runs, seed),
        None => study(python, command.study),
    }
}

/// A study's command line, as stored to resume it or to start workers elsewhere.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Replay {
    #[command(flatten)]
    args: OptimizeArgs,
}

/// The arguments after `optimize` on this process's command line.
fn own_arguments() -> Vec<String> {
    let argv: Vec<String> = std::env::args().collect();
    let at = argv
        .iter()
        .position(|a| a == "optimize")
        .map_or(argv.len(), |i| i + 1);
    argv[at..].to_vec()
}

/// The stored command of the study in `dir`, parsed again, run from the folder it started in.
fn replay(dir: &Path) -> Result<(OptimizeArgs, BTreeMap<String, Value>), Error> {
    let store = Store::open(dir)?;
    let meta = store.meta()?;
    let argv: Vec<String> = meta
        .get("command")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| Error::usage(format!("`{}` does not record its command", dir.display())))?;
    if let Some(cwd) = meta.get("cwd").and_then(Value::as_str) {
        std::env::set_current_dir(cwd).map_err(|source| Error::Io {
            context: "cannot enter the folder the study started in",
            path: PathBuf::from(cwd),
            source,
        })?;
    }
    let parsed = Replay::try_parse_from(argv)
        .map_err(|e| Error::usage(format!("the study's stored command: {e}")))?;
    Ok((parsed.args, meta))
}

fn refuse_run_only_flags(args: &OptimizeArgs) -> Result<(), Error> {
    let run = &args.run;
    let flags = [
        (run.watch, "--watch"),
        (run.pace.is_some(), "--pace"),
        (run.debug, "--debug"),
        (run.report, "--report"),
        (run.out.is_some(), "--out"),
        (run.portfolio.is_some(), "--portfolio"),
    ];
    if run.algo.len() > 1 {
        return Err(Error::usage_with_hint(
            "`rustybt optimize` studies one algorithm; `--algo` was given several times",
            "optimize each strategy on its own, then put the best parameters in the portfolio file",
        ));
    }
    if let Some((_, flag)) = flags.iter().find(|(set, _)| *set) {
        return Err(Error::usage_with_hint(
            format!("`{flag}` is a flag of `rustybt run`, not of `rustybt optimize`"),
            "`--study DIR` names the study's folder",
        ));
    }
    Ok(())
}

fn objectives(args: &OptimizeArgs) -> Vec<Objective> {
    let mut out: Vec<Objective> = args
        .maximize
        .iter()
        .map(|m| Objective {
            metric: m.clone(),
            maximize: true,
        })
        .chain(args.minimize.iter().map(|m| Objective {
            metric: m.clone(),
            maximize: false,
        }))
        .collect();
    if out.is_empty() {
        out.push(Objective {
            metric: "sharpe".into(),
            maximize: true,
        });
    }
    out
}

fn study(python: Option<&Path>, given: OptimizeArgs) -> Result<ExitCode, Error> {
    let resumed = given.resume.clone();
    let (args, stored_meta, dir) = match &resumed {
        Some(dir) => {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            // A study another optimize is creating or running is refused before its store is
            // read (its tables may not exist yet); the lock itself is taken after the fork.
            if dir.is_dir() {
                drop(optimize::lock_study(&dir)?);
            }
            let (mut args, meta) = replay(&dir)?;
            // What may change on resume: where and how fast it runs, and when it stops.
            args.jobs = given.jobs.or(args.jobs);
            args.timeout = given.timeout.clone().or(args.timeout);
            args.patience = given.patience.or(args.patience);
            args.force = given.force;
            args.noise_runs = given.noise_runs;
            args.noise_scale = given.noise_scale;
            (args, Some(meta), dir)
        }
        None => {
            let dir = given.study.clone().unwrap_or_else(default_study_dir);
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            (given, None, dir)
        }
    };
    refuse_run_only_flags(&args)?;
    let settings = RunSettings::resolve(&args.run)?;
    if !settings.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            settings.algo.display()
        )));
    }
    let options = StudyOptions {
        method: args.method.clone(),
        seed: args.seed,
        batch: 0,
        max_trials: args.trials,
        objectives: objectives(&args),
        constraints: args.constraint.clone(),
        min_trades: args.min_trades,
        space: settings.params.clone(),
    };
    let walk_forward = args
        .walk_forward
        .as_deref()
        .map(|text| WalkForward::parse(text, args.anchored))
        .transpose()?;
    let limits = Limits {
        timeout: args
            .timeout
            .as_deref()
            .map(|t| parse_duration(t).map(|ns| Duration::from_nanos(ns as u64)))
            .transpose()?,
        patience: args.patience,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let jobs = if args.estimate { 1 } else { jobs };
    let options = StudyOptions {
        batch: args.batch.unwrap_or(jobs),
        ..options
    };

    // Data first, then Python, then the workers: a forked worker shares the loaded bars and
    // the started interpreter (its modules, numpy) with this process instead of a copy.
    let root = crate::python::project_root();
    // What the catalog misses is fetched as `rustybt run` does, in a child process: Python
    // starts in this one only after the workers are forked.
    if super::data::run_fetches(&settings)
        && let Some(failed) = super::data::fetch_for_run_in_child(&settings, python)?
    {
        return Ok(failed);
    }
    let prepared = pipeline::load_data(&settings, root.as_deref())?;
    let mut settings = settings;
    settings.datasets_used = prepared.datasets.clone();
    settings.quiet = true;
    settings.progress = false;
    let data_checksum = optimize::data_checksum(&prepared)?;
    let code_hash = optimize::code_hash(&settings.algo)?;
    let algo_dir = std::path::absolute(&settings.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let child = |stream: std::os::unix::net::UnixStream| -> i32 {
        let served = stream
            .try_clone()
            .map_err(|e| Error::Internal(format!("a worker's pipe: {e}")))
            .and_then(|input| worker::serve(&settings, &prepared, BufReader::new(input), stream));
        match served {
            Ok(()) | Err(Error::Interrupted) => 0,
            Err(e) => {
                crate::error::report(&e);
                e.exit_code() as i32
            }
        }
    };
    let use_ray = match args.executor.as_str() {
        "local" => false,
        "ray" if args.address.is_some() => !args.estimate,
        "ray" => {
            return Err(Error::usage_with_hint(
                "`--executor ray` needs the cluster's `--address HOST:PORT`",
                "start a cluster with `ray start --head --port 6379` (see docs/optimize.md)",
            ));
        }
        other => {
            return Err(Error::usage_with_hint(
                format!("unknown executor `{other}`"),
                "`--executor local` (forked workers) or `--executor ray --address HOST:PORT`",
            ));
        }
    };
    let (choice, _) = start_python(python, std::slice::from_ref(&algo_dir))?;
    // Loading it here checks the file and the fixed parameters before any trial runs, and
    // shows the misspelt-hook warnings once; before the fork, so the modules it imports are
    // loaded once for every worker.
    let defaults = RunSettings {
        params: Vec::new(),
        quiet: false,
        ..settings.clone()
    };
    let (loaded, _) = Python::attach(|py| pipeline::load_algorithm(py, &defaults))?;
    let mut local = if use_ray {
        None
    } else {
        let (workers, messages) = worker::fork_workers(jobs, &child)?;
        Some(LocalExecutor::new(workers, messages))
    };
    let mut ray: Option<RayExecutor> = None;

    let outcome = Python::attach(|py| -> Result<ExitCode, Error> {
        let class = loaded.instance.bind(py).get_type();
        let search = Search::new(py, class.as_any(), &options)?;
        let meta = optimize::study_identity(
            &loaded.path,
            &loaded.class_name,
            &code_hash,
            &data_checksum,
            &options,
            &search.describe(py)?,
            walk_forward.as_ref(),
        )?;

        if args.estimate {
            let Some(executor) = local.as_mut() else {
                return Err(Error::Internal(
                    "`--estimate` runs on a local worker".into(),
                ));
            };
            return estimate(py, executor, &search, &options);
        }

        // Taken after the fork: the workers never hold it.
        let _lock = optimize::lock_study(&dir)?;
        let store = match &stored_meta {
            Some(old) => optimize::reopen_study(&dir, old, &meta, args.force)?,
            None => {
                let mut meta = meta;
                meta.insert("command".into(), Value::from(own_arguments()));
                meta.insert(
                    "cwd".into(),
                    Value::from(
                        std::env::current_dir()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default(),
                    ),
                );
                meta.insert("created_at".into(), Value::from(format_timestamp(now_ns())));
                Store::create(&dir, &meta)?
            }
        };
        let stored = store.trials()?;
        let executor: &mut dyn Executor = match local.as_mut() {
            Some(executor) => executor,
            None => {
                let binary = std::env::current_exe().map_err(|source| Error::Io {
                    context: "cannot find this program's path",
                    path: PathBuf::from("rustybt"),
                    source,
                })?;
                ray.insert(RayExecutor::new(
                    py,
                    args.address.as_deref().unwrap_or_default(),
                    &dir,
                    &binary,
                    args.jobs,
                    Some(&choice.executable),
                )?)
            }
        };
        let workers = executor.slots().len();
        let mut driver = Driver {
            store: &store,
            executor,
            options: &options,
            limits,
            code_hash: code_hash.clone(),
            data_checksum: data_checksum.clone(),
            stored,
            started: Instant::now(),
        };
        errln!(
            "study {} ({} method, {} {}worker{}; objective {})",
            dir.display(),
            options.method,
            workers,
            if use_ray { "Ray " } else { "" },
            if workers == 1 { "" } else { "s" },
            options
                .objectives
                .iter()
                .map(|o| format!("{} {}", o.direction(), o.metric))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let ending = match &walk_forward {
            None => {
                let mut progress = StudyProgress::new(&options.objectives);
                let outcome = driver.search(py, &search, 0, None, &mut |e| progress.on(e));
                progress.finish();
                match outcome {
                    Ok(outcome) => {
                        errln!(
                            "{} trials run, {} taken from the store",
                            outcome.ran,
                            outcome.reused
                        );
                        outcome.ending
                    }
                    // Ctrl-C inside the search's own Python code: the same as between trials.
                    Err(Error::Interrupted) => Ending::Interrupted,
                    Err(e) => return Err(e),
                }
            }
            Some(wf) => {
                let mut progress = StudyProgress::new(&options.objectives);
                let walked = walk(
                    py,
                    &mut driver,
                    &loaded_class(py, &loaded),
                    &options,
                    wf,
                    &prepared,
                    &mut |e| progress.on(e),
                );
                progress.finish();
                match walked {
                    Err(Error::Interrupted) => Ending::Interrupted,
                    other => other?,
                }
            }
        };
        if walk_forward.is_none() && ending != Ending::Interrupted {
            rerun_best(&mut driver, &options)?;
            if let Some(runs) = args.noise_runs {
                noise_reruns(&mut driver, &options, runs, args.noise_scale, settings.cash)?;
            }
        }
        drop(driver);
        // The annualization the trials' ratios used (252 or 365: it depends on the data).
        if let Some(periods) = store
            .trials()?
            .values()
            .find_map(|t| t.metrics.as_ref()?.get("periods_per_year").cloned())
        {
            store.set_meta("periods_per_year", &periods)?;
        }
        print_study(&store, args.top)?;
        let best_toml = dir.join("best.toml");
        if let Some(best) = best_trial(&store)? {
            write_best_config(&store, &best, &best_toml)?;
            errln!("best parameters written to {}", best_toml.display());
        }
        Ok(match ending {
            Ending::Interrupted => {
                errln!(
                    "interrupted: finished trials are kept; continue with `rustybt optimize --resume {}`",
                    dir.display()
                );
                ExitCode::Interrupted
            }
            Ending::Timeout => {
                errln!("stopped at the timeout; `--resume` continues the study");
                ExitCode::Success
            }
            Ending::Plateau => {
                errln!(
                    "stopped: no better result for {} trials",
                    args.patience.unwrap_or(0)
                );
                ExitCode::Success
            }
            Ending::Done => ExitCode::Success,
        })
    });
    if let Some(executor) = local.as_mut() {
        executor.shut_down();
    }
    if let Some(executor) = ray.as_mut() {
        executor.close();
    }
    outcome
}

fn loaded_class(py: Python<'_>, loaded: &crate::python::LoadedAlgorithm) -> Py<PyAny> {
    loaded.instance.bind(py).get_type().into_any().unbind()
}

/// Runs one trial with the algorithm's defaults and prints trials × time ÷ workers.
fn estimate(
    py: Python<'_>,
    executor: &mut LocalExecutor,
    search: &Search,
    options: &StudyOptions,
) -> Result<ExitCode, Error> {
    let total = search.size(py)?;
    let request = TrialRequest {
        number: 0,
        params: Vec::new(),
        seed: options.seed,
        start_ns: None,
        end_ns: None,
        out: None,
        noise: None,
    };
    let store_less = Store::create(
        &std::env::temp_dir().join(format!("rustybt-estimate-{}", std::process::id())),
        &BTreeMap::new(),
    )?;
    let mut driver = Driver {
        store: &store_less,
        executor,
        options,
        limits: Limits::default(),
        code_hash: String::new(),
        data_checksum: String::new(),
        stored: BTreeMap::new(),
        started: Instant::now(),
    };
    let result = driver.run_one(&request)?;
    let _ = std::fs::remove_dir_all(&store_less.dir);
    if let Some(error) = &result.error {
        return Err(Error::usage(format!(
            "the trial with default parameters failed: {error}"
        )));
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    match total {
        Some(n) => outln!(
            "one trial: {:.2} s; {} trials on {} worker{}: about {}",
            result.duration_s,
            n,
            workers,
            if workers == 1 { "" } else { "s" },
            human_duration(result.duration_s * n as f64 / workers as f64)
        ),
        None => outln!(
            "one trial: {:.2} s; the space is not finite: give `--trials N` (N trials take about N × {:.2} s ÷ {} workers)",
            result.duration_s,
            result.duration_s,
            workers
        ),
    }
    Ok(ExitCode::Success)
}

fn human_duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Serves trials on stdin/stdout for the study in `dir` (a Ray actor's worker process).
fn serve_stdin(python: Option<&Path>, dir: &Path) -> Result<ExitCode, Error> {
    let (args, _) = replay(dir)?;
    let mut settings = RunSettings::resolve(&args.run)?;
    let root = crate::python::project_root();
    let prepared = pipeline::load_data(&settings, root.as_deref())?;
    settings.datasets_used = prepared.datasets.clone();
    let algo_dir = std::path::absolute(&settings.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    start_python(python, std::slice::from_ref(&algo_dir))?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match worker::serve(&settings, &prepared, stdin, stdout) {
        Ok(()) | Err(Error::Interrupted) => Ok(ExitCode::Success),
        Err(e) => Err(e),
    }
}

/// A bar with the number of finished trials, the ETA and the best result so far; only on
/// a terminal.
struct StudyProgress {
    bar: Option<ProgressBar>,
    primary: Option<Objective>,
}

impl StudyProgress {
    fn new(objectives: &[Objective]) -> Self {
        StudyProgress {
            bar: None,
            primary: objectives.first().cloned(),
        }
    }

    fn on(&mut self, event: Event<'_>) {
        match event {
            Event::Started { total, resumed } => {
                // A walk-forward study starts one search per window: one bar each.
                self.finish();
                if !std::io::stderr().is_terminal() {
                    return;
                }
                let bar = match total {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::no_length(),
                };
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} trials  {elapsed_precise} ETA {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                if resumed > 0 {
                    bar.set_message(format!("{resumed} trials from the store"));
                }
                self.bar = Some(bar);
            }
            Event::Finished { best, .. } => {
                let Some(bar) = &self.bar else {
                    return;
                };
                bar.inc(1);
                if let (Some(best), Some(o)) = (best, &self.primary)
                    && let Some(value) = best.objective_values.as_ref().and_then(|v| v.first())
                {
                    bar.set_message(format!(
                        "best {} {:.4} {}",
                        o.metric,
                        value,
                        compact_params(&best.params)
                    ));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn compact_params(json: &str) -> String {
    params_as_texts(json)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The best trials as a table on stdout, then counts by state.
fn print_study(store: &Store, top: usize) -> Result<(), Error> {
    let objectives = stored_objectives(store)?;
    let trials = plain_trials(store)?;
    let ranked = optimize::ranked(&trials, &objectives);
    let mut out = String::new();
    let header: Vec<String> = objectives.iter().map(|o| o.metric.clone()).collect();
    out.push_str(&format!(
        "{:>6}  {:<15} {:>12} {:>8}  {}\n",
        "trial",
        "state",
        header.join("/"),
        "trades",
        "parameters"
    ));
    for trial in ranked.iter().take(top) {
        let values = trial
            .objective_values
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| "-".into());
        let trades = trial
            .metrics
            .as_ref()
            .and_then(|m| m.get("num_trades"))
            .and_then(Value::as_u64)
            .map_or("-".into(), |n| n.to_string());
        out.push_str(&format!(
            "{:>6}  {:<15} {:>12} {:>8}  {}\n",
            trial.number,
            trial.state.as_str(),
            values,
            trades,
            compact_params(&trial.params)
        ));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &trials {
        *counts.entry(t.state.as_str()).or_default() += 1;
    }
    out.push_str(&format!(
        "{} trials: {}\n",
        trials.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if objectives.len() > 1 {
        let complete: Vec<&StoredTrial> = trials.iter().collect();
        let front = pareto_front(&complete, &objectives);
        out.push_str(&format!(
            "Pareto front: trials {}\n",
            front
                .iter()
                .map(|t| t.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for trial in trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .take(3)
    {
        let first = trial
            .error
            .as_deref()
            .unwrap_or("")
            .lines()
            .last()
            .unwrap_or("");
        out.push_str(&format!("trial {} failed: {first}\n", trial.number));
    }
    let windows = store.windows()?;
    for w in windows.values() {
        let value = w
            .test_metrics
            .as_ref()
            .and_then(|m| objectives.first().and_then(|o| o.value_in(m)))
            .map_or("-".into(), |v| format!("{v:.4}"));
        out.push_str(&format!(
            "window {:>3}  train {} .. {}  test .. {}  best {}  out-of-sample {}\n",
            w.number + 1,
            w.train_start,
            w.train_end,
            w.test_end,
            w.best_params.as_deref().map_or("-".into(), compact_params),
            value
        ));
    }
    outln!("{}", out.trim_end());
    Ok(())
}

fn show(args: &ShowStudyArgs) -> Result<ExitCode, Error> {
    let store = Store::open(&args.study)?;
    if let Some(path) = &args.export {
        let best = best_trial(&store)?
            .ok_or_else(|| Error::usage("the study has no complete trial to export"))?;
        write_best_config(&store, &best, path)?;
        errln!("best parameters written to {}", path.display());
        return Ok(ExitCode::Success);
    }
    if !args.csv {
        print_study(&store, args.top)?;
        return Ok(ExitCode::Success);
    }
    let objectives = stored_objectives(&store)?;
    let trials: Vec<StoredTrial> = store.trials()?.into_values().collect();
    let names: Vec<String> = trials
        .first()
        .map(|t| {
            params_as_texts(&t.params)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["number".to_string(), "window".into(), "state".into()];
    header.extend(names.iter().cloned());
    header.extend(objectives.iter().map(|o| o.metric.clone()));
    header.extend(
        [
            "num_trades",
            "total_return",
            "max_drawdown",
            "duration_s",
            "error",
        ]
        .map(String::from),
    );
    let csv_error = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
    writer.write_record(&header).map_err(csv_error)?;
    for t in &trials {
        let params: BTreeMap<String, String> = params_as_texts(&t.params).into_iter().collect();
        let metric = |k: &str| {
            t.metrics
                .as_ref()
                .and_then(|m| m.get(k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        let mut row = vec![
            t.number.to_string(),
            t.window.map_or(String::new(), |w| w.to_string()),
            t.state.as_str().to_string(),
        ];
        row.extend(
            names
                .iter()
                .map(|n| params.get(n).cloned().unwrap_or_default()),
        );
        for (i, _) in objectives.iter().enumerate() {
            row.push(
                t.objective_values
                    .as_ref()
                    .and_then(|v| v.get(i))
                    .map_or(String::new(), |v| v.to_string()),
            );
        }
        row.extend([
            metric("num_trades"),
            metric("total_return"),
            metric("max_drawdown"),
            format!("{:.3}", t.duration_s),
            t.error.clone().unwrap_or_default(),
        ]);
        writer.write_record(&row).map_err(csv_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Internal(format!("writing CSV: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error of the study.
    let _ = stdout.write_all(&bytes);
    Ok(ExitCode::Success)
}

fn list(root: &Path) -> Result<ExitCode, Error> {
    let mut rows = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|source| Error::Io {
        context: "cannot read the studies folder",
        path: root.to_path_buf(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(optimize::store::FILE_NAME).is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(store) = Store::open(&dir) else {
            continue;
        };
        let meta = store.meta()?;
        let trials = store.trials()?;
        let complete = trials
            .values()
            .filter(|t| t.state == TrialState::Complete)
            .count();
        let best = best_trial(&store)?
            .and_then(|b| b.objective_values.and_then(|v| v.first().copied()))
            .map_or("-".into(), |v| format!("{v:.4}"));
        let algo = meta
            .get("algorithm")
            .and_then(Value::as_str)
            .map(|a| {
                Path::new(a)
                    .file_name()
                    .map_or(a.to_string(), |f| f.to_string_lossy().to_string())
            })
            .unwrap_or_default();
        rows.push(format!(
            "{:<40} {:<20} {:<7} {:>7} {:>9} {:>10}",
            dir.display(),
            algo,
            meta.get("method").and_then(Value::as_str).unwrap_or(""),
            trials.len(),
            complete,
            best
        ));
    }
    if rows.is_empty() {
        errln!("no studies in {}", root.display());
        return Ok(ExitCode::Success);
    }
    outln!(
        "{:<40} {:<20} {:<7} {:>7} {:>9} {:>10}",
        "study",
        "algorithm",
        "method",
        "trials",
        "complete",
        "best"
    );
    for row in rows {
        outln!("{row}");
    }
    Ok(ExitCode::Success)
}

/// `runs/study-<YYYYMMDD-HHMMSS>` in UTC.
fn default_study_dir() -> PathBuf {
    let stamp = format_timestamp(now_ns())
        .replace(['-', ':'], "")
        .replace('T', "-");
    let stamp = stamp
        .split('.')
        .next()
        .unwrap_or(&stamp)
        .trim_end_matches('Z');
    PathBuf::from("runs").join(format!("study-{stamp}"))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// `rustybt optimize montecarlo RUN_DIR`: percentile bands of the final value and the maximum
/// drawdown over reordered or resampled trades (`rustybt_api.study.montecarlo`).
fn montecarlo(
    python: Option<&Path>,
    run_dir: &Path,
    method: &str,
    runs: u32,
    seed: u64,
) -> Result<ExitCode, Error> {
    if !["permutation", "bootstrap"].contains(&method) {
        return Err(Error::usage_with_hint(
            format!("unknown Monte Carlo method `{method}`"),
            "`--method permutation` (trade order) or `--method bootstrap` (trades resampled)",
        ));
    }
    start_python(python, &[])?;
    let summary = Python::attach(|py| -> Result<String, Error> {
        let kwargs = pyo3::types::PyDict::new(py);
        let set = || -> PyResult<()> {
            kwargs.set_item("method", method)?;
            kwargs.set_item("runs", runs)?;
            kwargs.set_item("seed", seed)
        };
        set().map_err(|e| Error::Internal(format!("Monte Carlo arguments: {e}")))?;
        let run_dir = run_dir.display().to_string();
        let result = py
            .import("rustybt_api.study.montecarlo")
            .and_then(|m| m.getattr("run"))
            .and_then(|run| run.call((run_dir,), Some(&kwargs)))
            .map_err(|e| super::report::driver_error(py, e))?;
        result
            .call_method0("summary")
            .and_then(|s| s.extract::<String>())
            .map_err(|e| Error::Internal(format!("the Monte Carlo summary: {e}")))
    })?;
    outln!("{summary}");
    Ok(ExitCode::Success)
}
