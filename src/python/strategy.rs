//! The Python algorithm as the engine's [`Strategy`]: one dispatch point for every call into
//! user code, so error capture and timing are written once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use super::errors::{algorithm_error, is_keyboard_interrupt};
use super::loader::LoadedAlgorithm;
use super::objects::{Broker, Context, Fill, LogSink};
use crate::engine::{SharedSession, Stop, Strategy, lock};

/// Calls and time spent in one user callback.
#[derive(Debug, Default, Clone)]
pub struct HookTiming {
    pub name: &'static str,
    pub calls: u64,
    pub total_ns: u128,
}

pub struct PyStrategy {
    algorithm: Py<PyAny>,
    context: Py<Context>,
    /// Bound methods by slot; `on_fill`/`on_stop` are None when the algorithm does not
    /// override them (saves a call per fill).
    hooks: [Option<Py<PyAny>>; 4],
    session: SharedSession,
    user_root: PathBuf,
    pub timings: [HookTiming; 4],
}

const INITIALIZE: usize = 0;
const ON_TICK: usize = 1;
const ON_FILL: usize = 2;
const ON_STOP: usize = 3;
const HOOK_NAMES: [&str; 4] = ["initialize", "on_tick", "on_fill", "on_stop"];

impl PyStrategy {
    pub fn new(
        py: Python<'_>,
        loaded: &LoadedAlgorithm,
        session: SharedSession,
        sink: Arc<LogSink>,
    ) -> PyResult<Self> {
        let context = Py::new(py, Context::new(py, session.clone())?)?;
        let broker = Broker::new(py, context.clone_ref(py), sink, &loaded.class_name)?;
        let algorithm = loaded.instance.bind(py);
        algorithm.setattr("_rustybt", Py::new(py, broker)?)?;
        let base = py.import("rustybt_api")?.getattr("Algorithm")?;
        let overridden = |name: &str| -> PyResult<Option<Py<PyAny>>> {
            let mine = algorithm.get_type().getattr(name)?;
            let default = base.getattr(name)?;
            Ok(if mine.is(&default) {
                None
            } else {
                Some(algorithm.getattr(name)?.unbind())
            })
        };
        Ok(PyStrategy {
            hooks: [
                Some(algorithm.getattr("initialize")?.unbind()),
                Some(algorithm.getattr("on_tick")?.unbind()),
                overridden("on_fill")?,
                overridden("on_stop")?,
            ],
            algorithm: algorithm.clone().unbind(),
            context,
            user_root: loaded
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            session,
            timings: HOOK_NAMES.map(|name| HookTiming {
                name,
                ..Default::default()
            }),
        })
    }

    pub fn algorithm(&self) -> &Py<PyAny> {
        &self.algorithm
    }

    /// The single place user code is called from: times the call and turns a Python
    /// exception into a [`Stop`] that keeps the traceback.
    fn call_hook(
        &mut self,
        py: Python<'_>,
        slot: usize,
        arg: &Bound<'_, PyAny>,
    ) -> Result<(), Stop> {
        let Some(hook) = &self.hooks[slot] else {
            return Ok(());
        };
        let started = Instant::now();
        let result = hook.bind(py).call1((arg,));
        let timing = &mut self.timings[slot];
        timing.calls += 1;
        timing.total_ns += started.elapsed().as_nanos();
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(self.stop_for(py, &err, HOOK_NAMES[slot])),
        }
    }

    fn stop_for(&self, py: Python<'_>, err: &PyErr, phase: &str) -> Stop {
        if is_keyboard_interrupt(py, err) {
            return Stop::Interrupted;
        }
        let now = lock(&self.session).now;
        Stop::Failed(Box::new(algorithm_error(
            py,
            err,
            phase,
            Some(now),
            &self.user_root,
        )))
    }
}

impl Strategy for PyStrategy {
    fn initialize(&mut self) -> Result<(), Stop> {
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.call_hook(py, INITIALIZE, &context)
        })
    }

    fn on_fill(&mut self, fill: &crate::model::Fill) -> Result<(), Stop> {
        if self.hooks[ON_FILL].is_none() {
            return Ok(());
        }
        Python::attach(|py| {
            let symbol = lock(&self.session)
                .market
                .symbol_name(fill.symbol)
                .to_string();
            let fill = Py::new(py, Fill::from_model(fill, &symbol))
                .map_err(|e| self.stop_for(py, &e, "on_fill"))?;
            self.call_hook(py, ON_FILL, fill.bind(py).as_any())
        })
    }

    fn on_tick(&mut self) -> Result<(), Stop> {
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.call_hook(py, ON_TICK, &context)
        })
    }

    fn on_stop(&mut self) -> Result<(), Stop> {
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.call_hook(py, ON_STOP, &context)
        })
    }

    fn check_interrupt(&mut self) -> Result<(), Stop> {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => Ok(()),
            Err(err) => Err(self.stop_for(py, &err, "on_tick")),
        })
    }
}
