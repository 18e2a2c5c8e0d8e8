//! Custom indicators written in Python (`rustybt_api.Indicator`).
//!
//! The engine runs each one once per newly closed bar of its timeframe (step 4 of the clock,
//! before `on_fill`/`on_tick`), keeps every value in engine-owned columns that Python reads
//! without copying, and times every call. `update(bar)` when the class defines it, else
//! `calculate(bars)` over the last `window` closed bars, keeping the last element. Attached after
//! bars have closed, an indicator catches up with one `calculate` over them (or `update` per bar).
//! `rustybt_api.testing.run_indicator(..., "engine")` reproduces these calls outside the engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::arrays::{AggregateBuffer, SeriesBuffer};
use super::errors::indicator_error;
use super::objects::{Context, IndicatorHandle};
use crate::engine::{IndicatorTiming, Session, lock};
use crate::market::{SharedColumn, Timeframe};
use crate::model::SymbolId;

/// One closed bar, as `Indicator.update` receives it.
#[pyclass(module = "_rustybt", frozen, get_all)]
pub struct Bar {
    /// Open time, ns since the epoch (UTC).
    pub time_ns: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// Position of the bar in its timeframe's history (0 = first bar).
    pub index: usize,
}

#[pymethods]
impl Bar {
    fn __repr__(&self) -> String {
        format!(
            "<Bar #{} o={} h={} l={} c={} v={}>",
            self.index, self.open, self.high, self.low, self.close, self.volume
        )
    }
}

/// The bars an indicator runs on; the column owners are kept so reads need no lock.
enum Source {
    Base {
        symbol: SymbolId,
        buffer: Py<SeriesBuffer>,
    },
    Timeframe {
        symbol: SymbolId,
        aggregation_id: usize,
        label: String,
        buffer: Py<AggregateBuffer>,
    },
}

impl Source {
    /// Closed bars available now.
    fn available(&self, session: &Session) -> usize {
        match self {
            Source::Base { symbol, .. } => session.market.closed_count(*symbol),
            Source::Timeframe { buffer, .. } => buffer.get().time.len(),
        }
    }

    fn bar(&self, index: usize) -> Bar {
        // Base bars and higher-timeframe bars are the same six shared columns.
        let [time, open, high, low, close, volume] = match self {
            Source::Base { buffer, .. } => {
                let b = buffer.get();
                [&b.time, &b.open, &b.high, &b.low, &b.close, &b.volume]
            }
            Source::Timeframe { buffer, .. } => {
                let b = buffer.get();
                [&b.time, &b.open, &b.high, &b.low, &b.close, &b.volume]
            }
        };
        Bar {
            time_ns: time.get_i64(index),
            open: open.get(index),
            high: high.get(index),
            low: low.get(index),
            close: close.get(index),
            volume: volume.get(index),
            index,
        }
    }

    fn bars(
        &self,
        py: Python<'_>,
        context: &Context,
        start: usize,
        end: usize,
    ) -> PyResult<Py<PyAny>> {
        let bars = match self {
            Source::Base { symbol, .. } => context.bars(py, *symbol, None, start, end)?,
            Source::Timeframe {
                symbol,
                aggregation_id,
                label,
                ..
            } => context.bars(py, *symbol, Some((*aggregation_id, label)), start, end)?,
        };
        Ok(Py::new(py, bars)?.into_any())
    }

    fn timeframe(&self) -> &str {
        match self {
            Source::Base { .. } => "base",
            Source::Timeframe { label, .. } => label,
        }
    }
}

/// A Python exception raised by indicator code, with what was being called.
pub struct IndicatorFailure {
    pub error: PyErr,
    /// `MarketStructure.update`, `Range.calculate`.
    pub phase: String,
    /// Folder of the indicator's source file, where the traceback's user frame is looked for.
    pub source_dir: PathBuf,
}

struct Entry {
    class_name: String,
    source: Source,
    instance: Py<PyAny>,
    update: Option<Py<PyAny>>,
    calculate: Py<PyAny>,
    window: Option<usize>,
    output_names: Vec<String>,
    outputs: Vec<Arc<SharedColumn>>,
    written: Arc<AtomicUsize>,
    source_dir: PathBuf,
    timing: IndicatorTiming,
    handle: Py<IndicatorHandle>,
}

impl Entry {
    fn fail(&self, error: PyErr, method: &str) -> IndicatorFailure {
        IndicatorFailure {
            error,
            phase: format!("{}.{method}", self.class_name),
            source_dir: self.source_dir.clone(),
        }
    }

    fn timed<T>(&mut self, bars: usize, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = call();
        let elapsed = started.elapsed().as_nanos();
        self.timing.calls += 1;
        self.timing.bars += bars as u64;
        self.timing.total_ns += elapsed;
        self.timing.max_ns = self.timing.max_ns.max(elapsed as u64);
        result
    }

    fn write(&self, index: usize, values: &[f64]) {
        for (column, value) in self.outputs.iter().zip(values) {
            column.set(index, *value);
        }
        self.written.store(index + 1, Ordering::Release);
    }

    /// Computes the values of bar `index`, the next one not written.
    fn step(
        &mut self,
        py: Python<'_>,
        context: &Context,
        index: usize,
    ) -> Result<(), IndicatorFailure> {
        let values = if let Some(update) = self.update.as_ref().map(|u| u.clone_ref(py)) {
            let bar = Py::new(py, self.source.bar(index)).map_err(|e| self.fail(e, "update"))?;
            let result = self
                .timed(1, || update.bind(py).call1((bar,)))
                .map_err(|e| self.fail(e, "update"))?;
            update_values(&result, &self.output_names, &self.class_name)
                .map_err(|e| self.fail(e, "update"))?
        } else {
            let start = self
                .window
                .map_or(0, |window| (index + 1).saturating_sub(window));
            let bars = self
                .source
                .bars(py, context, start, index + 1)
                .map_err(|e| self.fail(e, "calculate"))?;
            let calculate = self.calculate.clone_ref(py);
            let result = self
                .timed(index + 1 - start, || calculate.bind(py).call1((bars,)))
                .map_err(|e| self.fail(e, "calculate"))?;
            let arrays = calculate_arrays(
                &result,
                &self.output_names,
                &self.class_name,
                index + 1 - start,
            )
            .map_err(|e| self.fail(e, "calculate"))?;
            let last = index - start;
            arrays
                .iter()
                .map(|a| a.get_owned([last]).unwrap_or(f64::NAN))
                .collect()
        };
        self.write(index, &values);
        Ok(())
    }

    /// Fills in the `available` bars already closed when the indicator is attached.
    fn catch_up(
        &mut self,
        py: Python<'_>,
        context: &Context,
        available: usize,
    ) -> Result<(), IndicatorFailure> {
        if available == 0 {
            return Ok(());
        }
        if self.update.is_some() {
            for index in 0..available {
                self.step(py, context, index)?;
            }
            return Ok(());
        }
        let bars = self
            .source
            .bars(py, context, 0, available)
            .map_err(|e| self.fail(e, "calculate"))?;
        let calculate = self.calculate.clone_ref(py);
        let result = self
            .timed(available, || calculate.bind(py).call1((bars,)))
            .map_err(|e| self.fail(e, "calculate"))?;
        let arrays = calculate_arrays(&result, &self.output_names, &self.class_name, available)
            .map_err(|e| self.fail(e, "calculate"))?;
        let mut values = vec![f64::NAN; arrays.len()];
        for index in 0..available {
            for (value, array) in values.iter_mut().zip(&arrays) {
                *value = array.get_owned([index]).unwrap_or(f64::NAN);
            }
            self.write(index, &values);
        }
        Ok(())
    }
}

/// Every custom indicator of a run. Shared by the `Broker` (which attaches them) and the
/// strategy (which runs them each tick).
#[derive(Default)]
pub struct PythonIndicators {
    entries: Mutex<Vec<Arc<Mutex<Entry>>>>,
    by_key: Mutex<HashMap<String, usize>>,
    count: AtomicUsize,
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `attach` needs to know about the indicator.
pub struct AttachRequest<'a, 'py> {
    /// Same key → same indicator (class, parameters, symbol and timeframe).
    pub key: String,
    pub instance: &'a Bound<'py, PyAny>,
    pub symbol: &'a str,
    pub timeframe: Option<&'a str>,
}

impl PythonIndicators {
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Attaches the indicator instance (or returns the handle of the one already attached
    /// under the same key) and computes the bars already closed.
    pub fn attach(
        &self,
        py: Python<'_>,
        context: &Context,
        request: AttachRequest<'_, '_>,
    ) -> PyResult<Py<IndicatorHandle>> {
        if let Some(&id) = guard(&self.by_key).get(&request.key) {
            let entries = guard(&self.entries);
            return Ok(guard(&entries[id]).handle.clone_ref(py));
        }
        let instance = request.instance;
        let class = instance.get_type();
        let class_name = class.name()?.to_string();
        let spec = ClassSpec::read(py, instance, &class_name)?;
        let frame = request
            .timeframe
            .map(Timeframe::parse)
            .transpose()
            .map_err(|e| indicator_error(py, format!("{class_name}: {e}")))?;
        let (source, capacity, available, symbol_name) = {
            let mut guard = lock(context.session());
            let s = &mut *guard;
            let symbol = s.market.symbol_id(request.symbol).ok_or_else(|| {
                super::errors::unknown_symbol_error(
                    py,
                    format!(
                        "unknown symbol `{}`; this run has {}",
                        request.symbol,
                        s.market.symbol_names().join(", ")
                    ),
                )
            })?;
            let symbol_name = s.market.symbol_name(symbol).to_string();
            match frame {
                None => {
                    let source = Source::Base {
                        symbol,
                        buffer: context.series_buffer(py, symbol).clone().unbind(),
                    };
                    let available = source.available(s);
                    (
                        source,
                        s.market.series(symbol).len(),
                        available,
                        symbol_name,
                    )
                }
                Some(frame) => {
                    let aggregation_id = s.aggregation(symbol, frame);
                    drop(guard);
                    let buffer = context.aggregate_buffer(py, aggregation_id)?;
                    let capacity = buffer.get().time.capacity();
                    let available = buffer.get().time.len();
                    let source = Source::Timeframe {
                        symbol,
                        aggregation_id,
                        label: frame.to_string(),
                        buffer,
                    };
                    (source, capacity, available, symbol_name)
                }
            }
        };
        let written = Arc::new(AtomicUsize::new(0));
        let outputs: Vec<Arc<SharedColumn>> = spec
            .outputs
            .iter()
            .map(|_| Arc::new(SharedColumn::new(capacity, written.clone())))
            .collect();
        let label = match &source {
            Source::Base { .. } => format!("{} on {symbol_name}", spec.repr),
            Source::Timeframe { label, .. } => format!("{} on {symbol_name} @{label}", spec.repr),
        };
        let handle = Py::new(
            py,
            IndicatorHandle::new(
                py,
                spec.repr.clone(),
                symbol_name.clone(),
                spec.warm_up,
                spec.outputs
                    .iter()
                    .cloned()
                    .zip(outputs.iter().cloned())
                    .collect(),
                0,
            )?,
        )?;
        let mut entry = Entry {
            timing: IndicatorTiming {
                label,
                symbol: symbol_name,
                timeframe: source.timeframe().to_string(),
                kind: "python",
                ..Default::default()
            },
            class_name,
            source,
            instance: instance.clone().unbind(),
            update: spec.update,
            calculate: spec.calculate,
            window: spec.window,
            output_names: spec.outputs,
            outputs,
            written,
            source_dir: spec.source_dir,
            handle: handle.clone_ref(py),
        };
        // An error while catching up is the user's code failing in `initialize`: raise it there.
        entry
            .catch_up(py, context, available)
            .map_err(|f| f.error)?;
        let mut entries = guard(&self.entries);
        guard(&self.by_key).insert(request.key, entries.len());
        entries.push(Arc::new(Mutex::new(entry)));
        self.count.store(entries.len(), Ordering::Relaxed);
        Ok(handle)
    }

    /// Runs every indicator on the bars closed since the last call.
    pub fn sync(&self, py: Python<'_>, context: &Context) -> Result<(), IndicatorFailure> {
        if self.is_empty() {
            return Ok(());
        }
        let entries: Vec<Arc<Mutex<Entry>>> = guard(&self.entries).clone();
        let available: Vec<usize> = {
            let s = lock(context.session());
            entries
                .iter()
                .map(|e| guard(e).source.available(&s))
                .collect()
        };
        for (entry, available) in entries.iter().zip(available) {
            let mut entry = guard(entry);
            while entry.written.load(Ordering::Relaxed) < available {
                let index = entry.written.load(Ordering::Relaxed);
                entry.step(py, context, index)?;
            }
        }
        Ok(())
    }

    /// Calls and time per indicator, in attach order.
    pub fn timings(&self) -> Vec<IndicatorTiming> {
        guard(&self.entries)
            .iter()
            .map(|e| guard(e).timing.clone())
            .collect()
    }

    /// After a code reload: every indicator whose class was reloaded gets a new instance of
    /// the new class with the old one's parameters and state. All or nothing: if one fails, none
    /// is replaced. Returns the replaced instances by position, to put back on a rollback.
    pub fn upgrade(&self, py: Python<'_>) -> PyResult<Vec<(usize, Py<PyAny>)>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let host = py.import("rustybt_api._host")?;
        let entries: Vec<Arc<Mutex<Entry>>> = guard(&self.entries).clone();
        let mut upgraded = Vec::new();
        for (position, entry) in entries.iter().enumerate() {
            let old = guard(entry).instance.clone_ref(py);
            let new = host.call_method1("upgrade_indicator", (&old,))?;
            if !new.is_none() {
                upgraded.push((position, old, new));
            }
        }
        let mut replaced: Vec<(usize, Py<PyAny>)> = Vec::with_capacity(upgraded.len());
        for (position, old, new) in &upgraded {
            if let Err(error) = self.replace(py, *position, new) {
                for (position, old) in &replaced {
                    let _ = self.replace(py, *position, old.bind(py));
                }
                return Err(error);
            }
            replaced.push((*position, old.clone_ref(py)));
        }
        Ok(replaced)
    }

    /// Replaces the instance at `position` (same outputs) after a code reload; bars already
    /// computed keep their values.
    pub fn replace(
        &self,
        py: Python<'_>,
        position: usize,
        instance: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let entries = guard(&self.entries);
        let Some(entry) = entries.get(position) else {
            return Ok(());
        };
        let mut entry = guard(entry);
        let class_name = instance.get_type().name()?.to_string();
        let spec = ClassSpec::read(py, instance, &class_name)?;
        if spec.outputs != entry.output_names {
            return Err(indicator_error(
                py,
                format!(
                    "{class_name}: a reload cannot change `outputs` ({} → {})",
                    entry.output_names.join(", "),
                    spec.outputs.join(", ")
                ),
            ));
        }
        entry.instance = instance.clone().unbind();
        entry.update = spec.update;
        entry.calculate = spec.calculate;
        entry.window = spec.window;
        entry.source_dir = spec.source_dir;
        Ok(())
    }
}

/// An indicator class's settings, checked.
struct ClassSpec {
    repr: String,
    outputs: Vec<String>,
    warm_up: usize,
    window: Option<usize>,
    update: Option<Py<PyAny>>,
    calculate: Py<PyAny>,
    source_dir: PathBuf,
}

impl ClassSpec {
    fn read(py: Python<'_>, instance: &Bound<'_, PyAny>, class_name: &str) -> PyResult<Self> {
        let bad = |what: String| indicator_error(py, format!("{class_name}: {what}"));
        let outputs: Vec<String> = instance
            .getattr("outputs")?
            .extract()
            .map_err(|_| bad("`outputs` must be a tuple of output names".into()))?;
        if outputs.is_empty() {
            return Err(bad("`outputs` is empty; name at least one output".into()));
        }
        for (i, name) in outputs.iter().enumerate() {
            if outputs[..i].contains(name) {
                return Err(bad(format!("output `{name}` is named twice in `outputs`")));
            }
        }
        let warm_up: i64 = instance
            .getattr("warm_up")?
            .extract()
            .map_err(|_| bad("`warm_up` must be an integer (bars)".into()))?;
        if warm_up < 1 {
            return Err(bad(format!("`warm_up` must be at least 1, got {warm_up}")));
        }
        let window = instance.getattr("window")?;
        let window = if window.is_none() {
            None
        } else {
            let bars: i64 = window
                .extract()
                .map_err(|_| bad("`window` must be an integer (bars) or None".into()))?;
            if bars < 1 {
                return Err(bad(format!("`window` must be at least 1, got {bars}")));
            }
            Some(bars as usize)
        };
        let base = py.import("rustybt_api")?.getattr("Indicator")?;
        let update = if instance.hasattr("update")? {
            let update = instance.getattr("update")?;
            if !update.is_callable() {
                return Err(bad("`update` must be a method update(self, bar)".into()));
            }
            Some(update.unbind())
        } else {
            None
        };
        let overrides_calculate = !instance
            .get_type()
            .getattr("calculate")?
            .is(&base.getattr("calculate")?);
        if update.is_none() && !overrides_calculate {
            return Err(bad(
                "define calculate(self, bars) (vectorized) or update(self, bar) (incremental)"
                    .into(),
            ));
        }
        let source_dir = py
            .import("inspect")?
            .call_method1("getsourcefile", (instance.get_type(),))
            .ok()
            .and_then(|f| f.extract::<String>().ok())
            .and_then(|f| PathBuf::from(f).parent().map(|p| p.to_path_buf()))
            .unwrap_or_default();
        Ok(ClassSpec {
            repr: instance.repr()?.to_string(),
            outputs,
            warm_up: warm_up as usize,
            window,
            update,
            calculate: instance.getattr("calculate")?.unbind(),
            source_dir,
        })
    }
}

/// A number from user code; None is NaN (no value for this bar).
fn number(value: &Bound<'_, PyAny>, class_name: &str, what: &str) -> PyResult<f64> {
    if value.is_none() {
        return Ok(f64::NAN);
    }
    value.extract::<f64>().map_err(|_| {
        indicator_error(
            value.py(),
            format!(
                "{class_name}.{what} gave {} where a number was expected",
                value
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
        )
    })
}

/// The per-output parts of a result: a dict by name, a tuple (or list) in order, or a lone
/// value for a single output.
fn parts<'py>(
    result: &Bound<'py, PyAny>,
    names: &[String],
    class_name: &str,
    method: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = result.py();
    if let Ok(dict) = result.cast::<PyDict>() {
        return names
            .iter()
            .map(|name| {
                dict.get_item(name)?.ok_or_else(|| {
                    indicator_error(
                        py,
                        format!("{class_name}.{method} returned a dict without output `{name}`"),
                    )
                })
            })
            .collect();
    }
    let sequence: Option<Vec<Bound<'py, PyAny>>> = if let Ok(tuple) = result.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else if method == "update" && result.cast::<PyList>().is_ok() {
        Some(result.cast::<PyList>()?.iter().collect())
    } else {
        None
    };
    match sequence {
        Some(items) if items.len() == names.len() => Ok(items),
        Some(items) => Err(indicator_error(
            py,
            format!(
                "{class_name}.{method} returned {} values; `outputs` names {} ({})",
                items.len(),
                names.len(),
                names.join(", ")
            ),
        )),
        None if names.len() == 1 => Ok(vec![result.clone()]),
        None => Err(indicator_error(
            py,
            format!(
                "{class_name}.{method} must return a tuple or dict of {} outputs ({})",
                names.len(),
                names.join(", ")
            ),
        )),
    }
}

fn update_values(
    result: &Bound<'_, PyAny>,
    names: &[String],
    class_name: &str,
) -> PyResult<Vec<f64>> {
    parts(result, names, class_name, "update")?
        .iter()
        .map(|part| number(part, class_name, "update"))
        .collect()
}

/// One float64 array per output, each of `length` elements.
fn calculate_arrays<'py>(
    result: &Bound<'py, PyAny>,
    names: &[String],
    class_name: &str,
    length: usize,
) -> PyResult<Vec<Bound<'py, PyArray1<f64>>>> {
    let py = result.py();
    let mut arrays = Vec::with_capacity(names.len());
    for (part, name) in parts(result, names, class_name, "calculate")?
        .into_iter()
        .zip(names)
    {
        let array = match part.cast::<PyArray1<f64>>() {
            Ok(array) => array.clone(),
            Err(_) => {
                let converted = py
                    .import("numpy")?
                    .call_method1("asarray", (&part, "float64"))
                    .map_err(|e| {
                        indicator_error(
                            py,
                            format!(
                                "{class_name}.calculate output `{name}` is not an array of numbers: {e}"
                            ),
                        )
                    })?;
                converted.cast_into::<PyArray1<f64>>().map_err(|_| {
                    indicator_error(
                        py,
                        format!(
                            "{class_name}.calculate output `{name}` must be one-dimensional: one value per bar"
                        ),
                    )
                })?
            }
        };
        if array.len() != length {
            return Err(indicator_error(
                py,
                format!(
                    "{class_name}.calculate output `{name}` has {} values for {length} bars; \
                     return one value per bar",
                    array.len()
                ),
            ));
        }
        arrays.push(array);
    }
    Ok(arrays)
}
