//! One trial: the algorithm with one set of parameters, backtested in this process on the
//! study's data (already loaded, shared with the other workers), reduced to what the study
//! stores. The metrics are computed by the same code as a plain `rustybt run`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::RunSettings;
use crate::engine::{Stop, lock};
use crate::error::Error;
use crate::metrics;
use crate::model::format_timestamp;
use crate::model::time::NANOS_PER_DAY;
use crate::pipeline::{self, Keep, Prepared, RunShape};
use crate::python::LogSink;

/// What a worker is asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRequest {
    pub number: u64,
    /// `--param` texts: the trial's parameters (and the fixed ones).
    pub params: Vec<(String, String)>,
    /// Seeds Python's `random` and NumPy's global generator before the algorithm is loaded.
    pub seed: u64,
    /// Only bars with `start_ns <= open time < end_ns` (a walk-forward window).
    #[serde(default)]
    pub start_ns: Option<i64>,
    #[serde(default)]
    pub end_ns: Option<i64>,
    /// Also write a results folder here (a walk-forward window's out-of-sample run).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Run on noisy prices (a Monte Carlo rerun): `crate::data::noise::noisy`.
    #[serde(default)]
    pub noise: Option<Noise>,
}

/// Seeded price noise of relative size `scale` (a standard deviation, e.g. 0.0005).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub seed: u64,
    pub scale: f64,
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub number: u64,
    /// The top level of the run's `metrics.json`, without `run` (wall time, versions).
    pub metrics: Option<Value>,
    /// `{"days": ["2024-01-02", ...], "values": [...]}`: the daily returns of the metrics.
    pub returns: Option<Value>,
    /// Why the trial did not finish: the algorithm's exception with its traceback, or a
    /// parameter or data error.
    pub error: Option<String>,
    pub duration_s: f64,
    pub bars: u64,
}

/// Runs `request` on `prepared` with `base`'s settings. Errors of the trial itself (the
/// algorithm raised, a bad parameter) are the result's `error`; `Err` is for an interrupt.
pub fn run_trial(
    py: Python<'_>,
    base: &RunSettings,
    prepared: &Prepared,
    request: &TrialRequest,
) -> Result<TrialResult, Error> {
    let started = Instant::now();
    let mut result = TrialResult {
        number: request.number,
        metrics: None,
        returns: None,
        error: None,
        duration_s: 0.0,
        bars: 0,
    };
    match simulate_trial(py, base, prepared, request) {
        Ok(done) => {
            result.bars = done.bars;
            result.metrics = Some(done.metrics);
            result.returns = Some(done.returns);
            result.error = done.error;
        }
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(e) => result.error = Some(describe(&e)),
    }
    result.duration_s = started.elapsed().as_secs_f64();
    Ok(result)
}

struct Done {
    metrics: Value,
    returns: Value,
    error: Option<String>,
    bars: u64,
}

fn simulate_trial(
    py: Python<'_>,
    base: &RunSettings,
    prepared: &Prepared,
    request: &TrialRequest,
) -> Result<Done, Error> {
    let mut settings = base.clone();
    settings.params = request.params.clone();
    settings.quiet = true;
    settings.progress = false;
    let window;
    let prepared = if request.start_ns.is_some()
        || request.end_ns.is_some()
        || request.noise.is_some()
    {
        settings.start_ns = request.start_ns.or(settings.start_ns);
        settings.end_ns = request.end_ns.or(settings.end_ns);
        window = Prepared::new(
            prepared.files.clone(),
            prepared
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let s = s.clone().retain_range(settings.start_ns, settings.end_ns);
                    match request.noise {
                        // Each symbol its own stream: the seed and the symbol's position.
                        Some(n) => {
                            crate::data::noise::noisy(&s, n.scale, n.seed.wrapping_add(i as u64))
                        }
                        None => s,
                    }
                })
                .filter(|s| !s.is_empty())
                .collect(),
            prepared.datasets.clone(),
            prepared.actions.clone(),
        );
        &window
    } else {
        prepared
    };
    seed_python(py, request.seed).map_err(|e| Error::Python {
        message: format!("seeding the trial: {e}"),
        hint: None,
    })?;
    let sink = Arc::new(LogSink {
        echo: false,
        ..Default::default()
    });
    let loaded = pipeline::load_algorithm_quiet(py, &settings)?;
    // A trial keeps its metrics, not a point per tick, unless it writes a results folder.
    let keep = if request.out.is_some() {
        Keep::Everything
    } else {
        Keep::MetricsOnly
    };
    let run = pipeline::simulate(py, &settings, prepared, &loaded, sink, keep)?;
    if let Some(Stop::Interrupted) = run.outcome.stop {
        return Err(Error::Interrupted);
    }
    let s = lock(&run.session);
    let shape = RunShape::of(prepared, &s);
    let symbols = shape.symbols.clone();
    let info = pipeline::run_info(
        py,
        &settings,
        &loaded,
        &run.outcome,
        shape,
        run.wall_seconds,
    );
    let computed = pipeline::metrics_of(&settings, &s, &run.outcome, &symbols);
    if let Some(out) = &request.out {
        metrics::write_results(
            out,
            &info,
            &computed,
            &run.outcome.equity,
            &run.outcome.fills,
            s.ledger.closed_trades(),
        )
        .map_err(|e| Error::Io {
            context: "cannot write results to",
            path: out.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    let mut doc: Value = serde_json::from_str(&metrics::metrics_json(&info, &computed))
        .map_err(|e| Error::Internal(format!("metrics JSON: {e}")))?;
    if let Some(map) = doc.as_object_mut() {
        map.remove("run");
    }
    let equity = run.outcome.equity.summary(settings.cash, &settings.metrics);
    let daily = equity.daily();
    let returns = serde_json::json!({
        "days": daily.days.iter().map(|d| day_text(*d)).collect::<Vec<_>>(),
        "values": daily.returns().unwrap_or_default(),
    });
    let error = info.status.reason().map(str::to_string);
    Ok(Done {
        metrics: doc,
        returns,
        error,
        bars: run.outcome.bars,
    })
}

fn day_text(day: i64) -> String {
    let text = format_timestamp(day * NANOS_PER_DAY);
    text.split('T').next().unwrap_or(&text).to_string()
}

/// Python's `random` and, when the algorithm's world has it, NumPy's global generator.
fn seed_python(py: Python<'_>, seed: u64) -> PyResult<()> {
    py.import("random")?.call_method1("seed", (seed,))?;
    py.import("numpy")?
        .getattr("random")?
        .call_method1("seed", (seed % (1 << 32),))?;
    Ok(())
}

/// An error as one text: the message, its hint and its causes.
fn describe(error: &Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\ncaused by: {cause}"));
        source = cause.source();
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("\nhint: {hint}"));
    }
    text
}
