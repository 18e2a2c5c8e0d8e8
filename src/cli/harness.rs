//! The in-process backtest behind `rustybt_api.testing.backtest`: Python code running inside
//! the host (`rustybt test`, `rustybt validate`) runs an `Algorithm` instance on the real engine
//! and gets its results back, without a subprocess. It is the same code path as `rustybt run`:
//! settings are resolved from the same flags, and the results folder is written the same way.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::RunArgs;
use super::run::backtest as run_backtest_of;
use crate::config::RunSettings;
use crate::engine::{Stop, lock};
use crate::error::Error;
use crate::model::format_timestamp;
use crate::pipeline::{Prepared, load_data};
use crate::python::{self, LogSink};

/// Adds `backtest` to the `_rustybt` module; the harness is available only inside the host.
pub fn register(py: Python<'_>) -> PyResult<()> {
    let module = py.import("_rustybt")?;
    module.add_function(wrap_pyfunction!(backtest, &module)?)
}

/// Runs `algorithm` (an `Algorithm` instance) on `data` and returns a dict of raw results;
/// `rustybt_api.testing.backtest` wraps it. Settings use the names of `rustybt run`'s flags.
#[pyfunction]
#[pyo3(signature = (
    algorithm, data, out, *, cash=None, symbol=None, bar_interval=None, config=None,
    start=None, end=None, timezone=None, session_open=None, session_close=None, echo=false,
))]
#[allow(clippy::too_many_arguments)]
fn backtest<'py>(
    py: Python<'py>,
    algorithm: &Bound<'py, PyAny>,
    data: Vec<PathBuf>,
    out: PathBuf,
    cash: Option<String>,
    symbol: Option<String>,
    bar_interval: Option<String>,
    config: Option<PathBuf>,
    start: Option<String>,
    end: Option<String>,
    timezone: Option<String>,
    session_open: Option<String>,
    session_close: Option<String>,
    echo: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let loaded = python::loader::describe_instance(py, algorithm).map_err(|e| to_py(py, e))?;
    let args = RunArgs {
        algo: vec![loaded.path.clone()],
        data,
        symbol,
        cash,
        start,
        end,
        out: Some(out),
        config,
        bar_interval,
        calendar: super::CalendarArgs {
            timezone,
            session_open,
            session_close,
        },
        no_progress: true,
        quiet: !echo,
        ..RunArgs::default()
    };
    let run = || -> Result<_, Error> {
        let settings = RunSettings::resolve(&args)?;
        if settings.data.is_empty() {
            // The bundled sample is for `rustybt run`; a test names its data.
            return Err(Error::usage(
                "no data given: pass `data=` a CSV or Parquet file or a list of bars",
            ));
        }
        let prepared: Prepared = load_data(&settings, None)?;
        let sink = Arc::new(LogSink {
            echo: !settings.quiet,
            ..Default::default()
        });
        let finished = run_backtest_of(py, &settings, &prepared, &loaded, sink.clone(), None)?;
        Ok((finished, sink))
    };
    let (finished, sink) = run().map_err(|e| to_py(py, e))?;

    let result = PyDict::new(py);
    let (status, error) = match &finished.stop {
        None => ("complete", None),
        Some(Stop::Interrupted) => ("interrupted", None),
        Some(Stop::Failed(e)) => {
            let error = PyDict::new(py);
            error.set_item("phase", &e.phase)?;
            error.set_item("exception", &e.exception)?;
            error.set_item("message", &e.message)?;
            error.set_item("summary", e.to_string())?;
            error.set_item("traceback", &e.traceback)?;
            error.set_item("time", e.sim_time.map(format_timestamp))?;
            error.set_item("file", e.location.as_ref().map(|l| l.file.clone()))?;
            error.set_item("line", e.location.as_ref().map(|l| l.line))?;
            ("failed", Some(error))
        }
        Some(Stop::Engine(message)) => {
            let error = PyDict::new(py);
            error.set_item("phase", "engine")?;
            error.set_item("exception", "EngineError")?;
            error.set_item("message", message)?;
            error.set_item("summary", message)?;
            error.set_item("traceback", "")?;
            ("failed", Some(error))
        }
    };
    result.set_item("status", status)?;
    result.set_item("error", error)?;
    result.set_item("out", &finished.out_dir)?;
    result.set_item("bars", finished.info.bars_processed)?;
    result.set_item("ticks", finished.info.ticks_processed)?;
    result.set_item("wall_seconds", finished.wall_seconds)?;
    {
        let session = lock(&finished.session);
        let positions = PyDict::new(py);
        for id in session.ledger.open_symbols() {
            if let Some(position) = session.ledger.position(*id) {
                positions.set_item(session.market.symbol_name(*id), position.quantity)?;
            }
        }
        result.set_item("positions", positions)?;
        result.set_item("cash", session.ledger.cash())?;
    }
    let timings = PyDict::new(py);
    for timing in &finished.hook_timings {
        timings.set_item(timing.name, (timing.calls, timing.total_ns))?;
    }
    result.set_item("hook_timings", timings)?;
    let lines = sink.lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    result.set_item("log", lines)?;
    Ok(result)
}

/// An error of the run as the Python exception a test would catch: bad settings or data as
/// `BacktestError` (a `ValueError`), Ctrl-C as `KeyboardInterrupt`.
fn to_py(py: Python<'_>, error: Error) -> PyErr {
    if matches!(error, Error::Interrupted) {
        return PyKeyboardInterrupt::new_err("interrupted");
    }
    let message = match &error {
        Error::Usage {
            message,
            hint: Some(hint),
        } => format!("{message} ({hint})"),
        other => other.to_string(),
    };
    match py
        .import("rustybt_api.errors")
        .and_then(|m| m.getattr("BacktestError"))
    {
        Ok(class) => PyErr::from_value(
            class
                .call1((message.clone(),))
                .unwrap_or_else(|e| e.value(py).clone().into_any()),
        ),
        Err(_) => PyRuntimeError::new_err(message),
    }
}
