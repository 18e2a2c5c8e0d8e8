//! The Python algorithm as the engine's [`Strategy`]: one dispatch point for every call into
//! user code, so error capture and timing are written once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pyo3::prelude::*;

use super::custom::PythonIndicators;
use super::errors::{algorithm_error, is_keyboard_interrupt};
use super::loader::{LoadedAlgorithm, load_algorithm};
use super::objects::{Broker, Context, Fill, LogSink, OrderEvent};
use super::schedule::Schedules;
use crate::engine::{SharedSession, Stop, Strategy, lock};
use crate::model::{TimestampNs, format_timestamp};
use crate::watch::SourceWatcher;

/// Bound callbacks of one algorithm instance, by slot (initialize, on_tick, on_fill, on_stop,
/// on_order).
type Hooks = [Option<Py<PyAny>>; 5];

/// Calls and time spent in one user callback.
///
/// Reading the clock twice around every call cost 2-3 % of a fast run, so after its first
/// [`HookTiming::TIME_ALL`] calls a hook is timed at random, one call in
/// [`HookTiming::SAMPLE_ONE_IN`] on average, and `total_ns` adds each timed call that many
/// times: an unbiased estimate whose relative error over a million calls is well under 1 %.
/// The choice is random rather than every n-th call so a strategy whose heavy ticks recur
/// with a period (every 16th bar, a schedule) is not over- or under-counted.
#[derive(Debug, Default, Clone)]
pub struct HookTiming {
    pub name: &'static str,
    pub calls: u64,
    /// Time in the hook, exact for the first calls and estimated from samples after them.
    pub total_ns: u128,
    /// xorshift state of the sampling.
    draw: u64,
}

impl HookTiming {
    /// Calls timed one by one before sampling starts (a short run stays exact).
    pub const TIME_ALL: u64 = 1024;
    pub const SAMPLE_ONE_IN: u64 = 16;

    fn new(name: &'static str) -> Self {
        HookTiming {
            name,
            calls: 0,
            total_ns: 0,
            draw: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Counts a call; returns the weight to time it with (0: not timed).
    #[inline]
    fn count(&mut self) -> u64 {
        self.calls += 1;
        if self.calls <= Self::TIME_ALL {
            return 1;
        }
        self.draw ^= self.draw << 13;
        self.draw ^= self.draw >> 7;
        self.draw ^= self.draw << 17;
        if self.draw % Self::SAMPLE_ONE_IN == 0 {
            Self::SAMPLE_ONE_IN
        } else {
            0
        }
    }
}

pub struct PyStrategy {
    algorithm: Py<PyAny>,
    context: Py<Context>,
    /// Bound methods by slot; `on_fill`/`on_stop` are None when the algorithm does not
    /// override them (saves a call per fill).
    hooks: Hooks,
    session: SharedSession,
    user_root: PathBuf,
    sink: Arc<LogSink>,
    pub timings: [HookTiming; 5],
    /// Custom Python indicators, run once per closed bar before the algorithm's hooks.
    pub indicators: Arc<PythonIndicators>,
    schedules: Py<Schedules>,
    reload: Option<HotReload>,
    /// A live session's engine order id → journal client id, grown as orders are sent (the
    /// algorithm's saved state names `Order` handles by client id).
    pub(crate) live_order_ids: Option<Py<pyo3::types::PyDict>>,
}

/// In-place code reload at tick boundaries (paced runs and live trading).
struct HotReload {
    watcher: SourceWatcher,
    path: PathBuf,
    class_name: String,
    overrides: Vec<(String, String)>,
    /// The instance replaced by the last reload, kept until the new one survives a tick.
    previous: Option<(Py<PyAny>, Hooks, PendingReload)>,
    events: Vec<ReloadEvent>,
    /// When set, only a change to one of these files (the algorithm's own and the local
    /// modules it imports, canonical) reloads it: a book's strategies share folders, and one
    /// file saved reloads only the strategies that use it.
    own_files: Option<Vec<PathBuf>>,
}

struct PendingReload {
    started: Instant,
    files: Vec<String>,
    /// Orders with this id or above were placed by the code on trial.
    first_order_id: u64,
    /// Fills the code on trial was told about, to tell the old code instead on rollback.
    fills: Vec<crate::model::Fill>,
    /// Custom indicator instances replaced by reloaded ones, by position, to put back.
    indicators: Vec<(usize, Py<PyAny>)>,
}

/// One reload attempt, as reported in the log and in `reloads.csv`.
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    pub wall_time: SystemTime,
    pub sim_time: TimestampNs,
    pub ok: bool,
    pub files: Vec<String>,
    /// Milliseconds from noticing the change to the new code being active (or rejected).
    pub millis: f64,
    pub message: String,
}

const INITIALIZE: usize = 0;
const ON_TICK: usize = 1;
const ON_FILL: usize = 2;
const ON_STOP: usize = 3;
const ON_ORDER: usize = 4;
const HOOK_NAMES: [&str; 5] = ["initialize", "on_tick", "on_fill", "on_stop", "on_order"];

impl PyStrategy {
    pub fn new(
        py: Python<'_>,
        loaded: &LoadedAlgorithm,
        session: SharedSession,
        sink: Arc<LogSink>,
    ) -> PyResult<Self> {
        Self::named(py, loaded, session, sink, &loaded.class_name)
    }

    /// As [`PyStrategy::new`], with `name` on the algorithm's log lines (a portfolio's
    /// strategy id) instead of its class name.
    pub fn named(
        py: Python<'_>,
        loaded: &LoadedAlgorithm,
        session: SharedSession,
        sink: Arc<LogSink>,
        name: &str,
    ) -> PyResult<Self> {
        let context = Py::new(py, Context::new(py, session.clone())?)?;
        let indicators = Arc::new(PythonIndicators::default());
        let schedules = Py::new(py, Schedules::new(session.clone()))?;
        let broker = Broker::new(
            py,
            context.clone_ref(py),
            sink.clone(),
            name,
            indicators.clone(),
            schedules.clone_ref(py),
        )?;
        let algorithm = loaded.instance.bind(py);
        algorithm.setattr("_rustybt", Py::new(py, broker)?)?;
        Ok(PyStrategy {
            hooks: hooks_of(algorithm)?,
            algorithm: algorithm.clone().unbind(),
            sink,
            reload: None,
            indicators,
            schedules,
            context,
            user_root: loaded
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            session,
            timings: HOOK_NAMES.map(HookTiming::new),
            live_order_ids: None,
        })
    }

    /// Reload the algorithm in place when `watcher` reports a change (at tick boundaries).
    pub fn enable_reload(
        &mut self,
        watcher: SourceWatcher,
        path: PathBuf,
        class_name: String,
        overrides: Vec<(String, String)>,
    ) {
        self.reload = Some(HotReload {
            watcher,
            path,
            class_name,
            overrides,
            previous: None,
            events: Vec::new(),
            own_files: None,
        });
    }

    /// [`PyStrategy::enable_reload`] for a strategy of a book: only a change to one of `files`
    /// (its own file and the local modules it imports, from [`LoadedAlgorithm::source_files`])
    /// reloads it, not one to a file beside them. `watcher` watches their folders.
    pub fn enable_own_file_reload(
        &mut self,
        watcher: SourceWatcher,
        path: PathBuf,
        class_name: String,
        overrides: Vec<(String, String)>,
        files: Vec<PathBuf>,
    ) {
        self.enable_reload(watcher, path, class_name, overrides);
        if let Some(reload) = self.reload.as_mut() {
            reload.own_files = Some(files);
        }
    }

    /// Every reload attempt of the run.
    /// The algorithm instance (the reloaded one after a hot reload): live sessions save and
    /// restore its state.
    /// The session this algorithm trades in.
    pub fn session(&self) -> &SharedSession {
        &self.session
    }

    pub fn algorithm(&self) -> &Py<PyAny> {
        &self.algorithm
    }

    pub fn reload_events(&self) -> &[ReloadEvent] {
        self.reload
            .as_ref()
            .map(|r| r.events.as_slice())
            .unwrap_or(&[])
    }

    /// After `initialize`: the config's `slippage_model`, else the one the algorithm chose with
    /// `set_slippage`, becomes the run's slippage. No model, no Python call per fill.
    fn install_slippage(&mut self, py: Python<'_>) -> Result<(), Stop> {
        let algorithm = self.algorithm.bind(py);
        let (spec, symbols) = {
            let s = lock(&self.session);
            (s.execution.python_slippage.clone(), s.market.symbol_names())
        };
        let root = self.user_root.clone();
        let fail = |py: Python<'_>, err: PyErr| {
            Stop::Failed(Box::new(super::errors::algorithm_error(
                py,
                &err,
                "initialize",
                None,
                &root,
            )))
        };
        let model = match spec {
            Some(spec) => Some(
                super::slippage::PySlippage::from_spec(py, &spec, symbols, root.clone())
                    .map_err(|e| fail(py, e))?,
            ),
            None => match algorithm.getattr("_slippage_model") {
                Ok(model) if !model.is_none() => Some(
                    super::slippage::PySlippage::new(py, model, symbols, root.clone())
                        .map_err(|e| fail(py, e))?,
                ),
                _ => None,
            },
        };
        algorithm
            .setattr("_rustybt_started", true)
            .map_err(|e| fail(py, e))?;
        if let Some(model) = model {
            lock(&self.session).external_slippage = Some(Box::new(model));
        }
        Ok(())
    }

    /// An engine line (a margin call) in `log.txt`, echoed like the algorithm's own lines.
    fn push_log(&self, line: &str) {
        if self.sink.echo {
            crate::above_status!("{line}");
        }
        self.sink
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.to_string());
    }

    fn record_reload(&mut self, ok: bool, files: Vec<String>, started: Instant, message: String) {
        let sim_time = lock(&self.session).now;
        let millis = started.elapsed().as_secs_f64() * 1e3;
        let line = format!(
            "{} RELOAD  {} ({}) in {millis:.1} ms: {message}",
            format_timestamp(sim_time),
            if ok { "ok" } else { "failed, old code kept" },
            files.join(", "),
        );
        crate::above_status!("{line}");
        self.sink
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        if let Some(reload) = self.reload.as_mut() {
            reload.events.push(ReloadEvent {
                wall_time: SystemTime::now(),
                sim_time,
                ok,
                files,
                millis,
                message,
            });
        }
    }

    /// Loads the new code into a fresh module, builds the instance, carries the state over and
    /// swaps it in; the old instance stays until the new one has survived its first tick.
    fn reload_now(&mut self, py: Python<'_>, changed: Vec<PathBuf>) {
        let started = Instant::now();
        let files: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        let Some(reload) = self.reload.as_ref() else {
            return;
        };
        let loaded = load_algorithm(
            py,
            &reload.path,
            Some(&reload.class_name),
            &reload.overrides,
        );
        let new = match loaded {
            Ok(loaded) => {
                self.follow_imports(loaded.source_files);
                loaded.instance
            }
            Err(error) => {
                if let Some(details) = error.details() {
                    crate::above_status!("{}", details.trim_end());
                }
                self.record_reload(false, files, started, error.to_string());
                return;
            }
        };
        let swapped = py
            .import("rustybt_api._host")
            .and_then(|host| host.call_method1("carry_state", (&self.algorithm, &new)))
            .and_then(|_| hooks_of(new.bind(py)))
            .and_then(|hooks| Ok((hooks, self.indicators.upgrade(py)?)));
        match swapped {
            Ok((hooks, indicators)) => {
                let old_hooks = std::mem::replace(&mut self.hooks, hooks);
                let old = std::mem::replace(&mut self.algorithm, new);
                let first_order_id = lock(&self.session).orders.all().len() as u64 + 1;
                let pending = PendingReload {
                    started,
                    files,
                    first_order_id,
                    fills: Vec::new(),
                    indicators,
                };
                if let Some(reload) = self.reload.as_mut() {
                    reload.previous = Some((old, old_hooks, pending));
                }
            }
            Err(err) => {
                let error = algorithm_error(py, &err, "reload", None, &self.user_root);
                crate::above_status!("{}", error.traceback.trim_end());
                self.record_reload(false, files, started, error.to_string());
            }
        }
    }

    /// A book's strategy follows the local modules its new code imports: an import added by
    /// the reload is watched from now on (its folder too), one removed no longer reloads it.
    fn follow_imports(&mut self, files: Vec<PathBuf>) {
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        let Some(own) = reload.own_files.as_mut() else {
            return;
        };
        let folders = SourceWatcher::folders_of(&files);
        if folders
            .iter()
            .any(|f| !reload.watcher.folders().contains(f))
            && let Ok(watcher) = SourceWatcher::new(&folders)
        {
            reload.watcher = watcher;
        }
        *own = files;
    }

    /// After a reload, the first tick (its fills and `on_tick`) decides: keep the new code, or
    /// go back to the old one.
    fn settle_reload(&mut self, py: Python<'_>, result: Result<(), Stop>) -> Result<(), Stop> {
        match result {
            Ok(()) => {
                if let Some((_, _, pending)) = self.reload.as_mut().and_then(|r| r.previous.take())
                {
                    self.record_reload(
                        true,
                        pending.files,
                        pending.started,
                        "new code active".into(),
                    );
                }
                Ok(())
            }
            Err(Stop::Failed(error)) => {
                self.roll_back(py, &error)?;
                // The tick still happens, with the code that was running before.
                let context = self.context.bind(py).clone().into_any();
                self.call_hook(py, ON_TICK, &context)
            }
            Err(other) => Err(other),
        }
    }

    /// Puts the previous instance back: orders the rejected code placed are cancelled (they
    /// cannot have filled yet) and the fills it was told about go to the old code.
    fn roll_back(
        &mut self,
        py: Python<'_>,
        error: &crate::error::AlgorithmError,
    ) -> Result<(), Stop> {
        let Some((old, old_hooks, pending)) = self.reload.as_mut().and_then(|r| r.previous.take())
        else {
            return Ok(());
        };
        crate::above_status!("{}", error.traceback.trim_end());
        self.algorithm = old;
        self.hooks = old_hooks;
        for (position, instance) in &pending.indicators {
            // The old instance was running a moment ago; putting it back cannot fail.
            let _ = self.indicators.replace(py, *position, instance.bind(py));
        }
        {
            let mut s = lock(&self.session);
            let placed: Vec<crate::model::OrderId> = s
                .orders
                .all()
                .iter()
                .filter(|o| o.id.0 >= pending.first_order_id && o.status.is_open())
                .map(|o| o.id)
                .collect();
            let now = s.now;
            for id in placed {
                s.orders
                    .cancel(id, "placed by reloaded code that was rolled back", now);
            }
        }
        self.record_reload(
            false,
            pending.files,
            pending.started,
            format!("the new code raised on its first tick: {error}"),
        );
        for fill in &pending.fills {
            self.deliver_fill(py, fill)?;
        }
        Ok(())
    }

    fn deliver_fill(&mut self, py: Python<'_>, fill: &crate::model::Fill) -> Result<(), Stop> {
        if self.hooks[ON_FILL].is_none() {
            return Ok(());
        }
        let symbol = lock(&self.session)
            .market
            .symbol_name(fill.symbol)
            .to_string();
        let fill = Py::new(py, Fill::from_model(fill, &symbol))
            .map_err(|e| self.stop_for(py, &e, "on_fill"))?;
        self.call_hook(py, ON_FILL, fill.bind(py).as_any())
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
        let weight = self.timings[slot].count();
        let result = if weight == 0 {
            hook.bind(py).call1((arg,))
        } else {
            let started = Instant::now();
            let result = hook.bind(py).call1((arg,));
            self.timings[slot].total_ns += started.elapsed().as_nanos() * u128::from(weight);
            result
        };
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

    fn sync_indicators(&mut self, py: Python<'_>) -> Result<(), Stop> {
        self.indicators
            .sync(py, self.context.get())
            .map_err(|failure| {
                if is_keyboard_interrupt(py, &failure.error) {
                    return Stop::Interrupted;
                }
                let now = lock(&self.session).now;
                Stop::Failed(Box::new(algorithm_error(
                    py,
                    &failure.error,
                    &failure.phase,
                    Some(now),
                    &failure.source_dir,
                )))
            })
    }

    /// Calls the scheduled callbacks due at this tick, in time order, before `on_tick`.
    fn run_schedules(&mut self, py: Python<'_>, context: &Bound<'_, PyAny>) -> Result<(), Stop> {
        if self.schedules.get().is_idle() {
            return Ok(()); // the common case costs one atomic load per tick
        }
        let now = lock(&self.session).now;
        let algorithm = self.algorithm.bind(py).clone();
        let due = self
            .schedules
            .get()
            .take_due(py, now, &algorithm)
            .map_err(|e| self.stop_for(py, &e, "schedule"))?;
        for (_, name, callable) in due {
            callable
                .bind(py)
                .call1((context,))
                .map_err(|e| self.stop_for(py, &e, &format!("{name} (scheduled)")))?;
        }
        Ok(())
    }

    /// Live sessions between bars: the scheduled callbacks due by wall time `now` run at
    /// once (with `ctx.time` = `now`, and the bars closed so far), instead of waiting for
    /// the next bar. Returns whether any ran. `now` earlier than the session's time is ignored.
    pub fn run_schedules_at(&mut self, now: TimestampNs) -> Result<bool, Stop> {
        if self.schedules.get().is_idle() {
            return Ok(false);
        }
        {
            let mut s = lock(&self.session);
            if now <= s.now {
                return Ok(false);
            }
            if now < self.schedules.get().next_due() {
                return Ok(false);
            }
            s.now = now;
        }
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.run_schedules(py, &context).map(|()| true)
        })
    }

    /// A scheduled callback is due at the session's time.
    fn schedule_due(&self) -> bool {
        let schedules = self.schedules.get();
        !schedules.is_idle() && lock(&self.session).now >= schedules.next_due()
    }

    fn on_trial(&self) -> bool {
        self.reload.as_ref().is_some_and(|r| r.previous.is_some())
    }
}

impl Strategy for PyStrategy {
    fn engine_notice(&mut self, message: &str) {
        self.push_log(message);
    }

    fn initialize(&mut self) -> Result<(), Stop> {
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.call_hook(py, INITIALIZE, &context)?;
            self.install_slippage(py)
        })
    }

    fn update_indicators(&mut self) -> Result<(), Stop> {
        if self.indicators.is_empty() {
            return Ok(());
        }
        Python::attach(|py| {
            let mut result = self.sync_indicators(py);
            // Reloaded indicator code that fails on its first bar is rolled back with the
            // algorithm, and the old code computes the bar instead.
            if let Err(Stop::Failed(error)) = &result
                && self.on_trial()
            {
                let error = error.clone();
                self.roll_back(py, &error)?;
                result = self.sync_indicators(py);
            }
            result
        })
    }

    fn on_order_events(&mut self) -> Result<(), Stop> {
        let events = {
            let mut s = lock(&self.session);
            if self.hooks[ON_ORDER].is_none() {
                s.orders.skip_events();
                return Ok(());
            }
            s.orders.take_events()
        };
        if events.is_empty() {
            return Ok(());
        }
        Python::attach(|py| {
            for event in &events {
                let symbol = lock(&self.session)
                    .market
                    .symbol_name(event.symbol)
                    .to_string();
                let object = OrderEvent::from_model(py, event, &symbol, &self.session)
                    .and_then(|e| Py::new(py, e))
                    .map_err(|e| self.stop_for(py, &e, "on_order"))?;
                self.call_hook(py, ON_ORDER, object.bind(py).as_any())?;
            }
            Ok(())
        })
    }

    fn on_fill(&mut self, fill: &crate::model::Fill) -> Result<(), Stop> {
        if !self.on_trial() {
            if self.hooks[ON_FILL].is_none() {
                return Ok(()); // no `on_fill`: no need to take the interpreter per fill
            }
            return Python::attach(|py| self.deliver_fill(py, fill));
        }
        if let Some((_, _, pending)) = self.reload.as_mut().and_then(|r| r.previous.as_mut()) {
            pending.fills.push(fill.clone());
        }
        Python::attach(|py| match self.deliver_fill(py, fill) {
            Err(Stop::Failed(error)) => self.roll_back(py, &error),
            other => other,
        })
    }

    fn on_tick(&mut self) -> Result<(), Stop> {
        // An algorithm that keeps `Algorithm`'s empty `on_tick` (it trades from scheduled
        // callbacks only) costs no Python call on a tick where nothing is due.
        if self.hooks[ON_TICK].is_none() && !self.on_trial() && !self.schedule_due() {
            return Ok(());
        }
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            let mut result = self.run_schedules(py, &context);
            if result.is_ok() {
                result = self.call_hook(py, ON_TICK, &context);
            }
            if self.on_trial() {
                return self.settle_reload(py, result);
            }
            result
        })
    }

    fn on_stop(&mut self) -> Result<(), Stop> {
        Python::attach(|py| {
            let context = self.context.bind(py).clone().into_any();
            self.call_hook(py, ON_STOP, &context)
        })
    }

    fn between_ticks(&mut self) -> Result<(), Stop> {
        let Some(reload) = self.reload.as_ref() else {
            return Ok(());
        };
        let mut changed = reload.watcher.poll();
        if let Some(own) = reload.own_files.as_ref().filter(|_| !changed.is_empty()) {
            changed
                .retain(|p| own.contains(&std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
        }
        if !changed.is_empty() {
            Python::attach(|py| self.reload_now(py, changed));
        }
        Ok(())
    }

    /// Sleeps with the GIL released (Python threads such as a debugger's keep running), in
    /// slices short enough for Ctrl-C to stop a slow pace promptly.
    fn idle(&mut self, duration: std::time::Duration) -> Result<(), Stop> {
        const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
        let until = Instant::now() + duration;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            Python::attach(|py| py.detach(|| std::thread::sleep(left.min(SLICE))));
            self.check_interrupt()?;
        }
    }

    fn check_interrupt(&mut self) -> Result<(), Stop> {
        let checked = Python::attach(|py| match py.check_signals() {
            Ok(()) => Ok(()),
            Err(err) => Err(self.stop_for(py, &err, "on_tick")),
        });
        // A signal an exchange request took is the loop's even if Python's flag was spent.
        let interrupted = crate::python::venue::take_interrupted();
        match checked {
            Ok(()) if interrupted => Err(Stop::Interrupted),
            other => other,
        }
    }
}

/// The bound callbacks of an algorithm instance, by slot. `on_tick`/`on_fill`/`on_stop`/
/// `on_order` are `None` when the class keeps `Algorithm`'s empty ones.
fn hooks_of(algorithm: &Bound<'_, PyAny>) -> PyResult<Hooks> {
    let base = algorithm.py().import("rustybt_api")?.getattr("Algorithm")?;
    let overridden = |name: &str| -> PyResult<Option<Py<PyAny>>> {
        let mine = algorithm.get_type().getattr(name)?;
        Ok(if mine.is(&base.getattr(name)?) {
            None
        } else {
            Some(algorithm.getattr(name)?.unbind())
        })
    };
    Ok([
        Some(algorithm.getattr("initialize")?.unbind()),
        overridden("on_tick")?,
        overridden("on_fill")?,
        overridden("on_stop")?,
        overridden("on_order")?,
    ])
}

#[cfg(test)]
mod tests {
    use super::HookTiming;

    /// The weights of the timed calls add up to the calls within a fraction of a percent, so a
    /// constant-cost hook's estimated total is its true total.
    #[test]
    fn sampled_weights_estimate_every_call() {
        let mut timing = HookTiming::new("on_tick");
        let weights: Vec<u64> = (0..1_000_000).map(|_| timing.count()).collect();
        assert!(
            weights[..HookTiming::TIME_ALL as usize]
                .iter()
                .all(|&w| w == 1)
        );
        let timed = weights.iter().filter(|&&w| w > 0).count() as f64;
        let total: u64 = weights.iter().sum();
        assert_eq!(timing.calls, 1_000_000);
        assert!((total as f64 / 1e6 - 1.0).abs() < 0.01, "{total}");
        assert!((timed / 1e6 - 1.0 / 16.0).abs() < 0.01, "{timed}");
        // No period: every residue of a stride of 16 is timed about as often.
        let mut by_residue = [0u32; 16];
        for (i, &w) in weights
            .iter()
            .enumerate()
            .skip(HookTiming::TIME_ALL as usize)
        {
            if w > 0 {
                by_residue[i % 16] += 1;
            }
        }
        let (lo, hi) = (by_residue.iter().min(), by_residue.iter().max());
        assert!(
            lo.zip(hi).is_some_and(|(lo, hi)| *hi < lo + lo / 5),
            "{by_residue:?}"
        );
    }
}
