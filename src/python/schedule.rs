//! `Algorithm.schedule`: callbacks at times (`every=`, `at=`, `cron=`), fired by `PyStrategy`
//! at the first tick at or after each occurrence, before `on_tick`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::engine::schedule::{Due, Rule, Scheduler};
use crate::engine::{SharedSession, lock};
use crate::model::TimestampNs;

/// What to call: a method of the algorithm is looked up by name at each call, so a hot reload's
/// new code runs; any other callable is kept as given.
#[derive(Debug)]
enum Callback {
    Method(String),
    Callable(Py<PyAny>),
}

#[derive(Debug, Default)]
struct Book {
    scheduler: Scheduler,
    callbacks: HashMap<u64, Callback>,
}

/// The algorithm's scheduled callbacks (`Algorithm._rustybt.schedules`).
#[pyclass(module = "_rustybt", frozen)]
pub struct Schedules {
    book: Mutex<Book>,
    session: SharedSession,
    /// The earliest pending occurrence, i64::MAX when none: the per-tick check is one load.
    next_due: AtomicI64,
}

impl Schedules {
    pub fn new(session: SharedSession) -> Self {
        Schedules {
            book: Mutex::new(Book::default()),
            session,
            next_due: AtomicI64::new(i64::MAX),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_next(&self, book: &Book) {
        let next = book.scheduler.next_due().unwrap_or(i64::MAX);
        self.next_due.store(next, Ordering::Release);
    }

    /// When the next callback is due (`i64::MAX`: none).
    pub fn next_due(&self) -> TimestampNs {
        self.next_due.load(Ordering::Acquire)
    }

    /// No schedule is pending.
    pub fn is_idle(&self) -> bool {
        self.next_due.load(Ordering::Acquire) == i64::MAX
    }

    /// The callbacks due at `now` (in time order) with the callable to run for each; the
    /// schedule lock is released before any of them runs, so a callback may add or cancel.
    pub fn take_due(
        &self,
        py: Python<'_>,
        now: TimestampNs,
        algorithm: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<(Due, String, Py<PyAny>)>> {
        if now < self.next_due.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let mut book = self.book();
        let due = book.scheduler.due(now);
        self.refresh_next(&book);
        let mut calls = Vec::with_capacity(due.len());
        for item in due {
            let name = book
                .scheduler
                .get(item.id)
                .map(|e| e.name.clone())
                .unwrap_or_default();
            let callable = match book.callbacks.get(&item.id) {
                Some(Callback::Method(method)) => algorithm.getattr(method.as_str())?.unbind(),
                Some(Callback::Callable(callable)) => callable.clone_ref(py),
                None => continue,
            };
            calls.push((item, name, callable));
        }
        Ok(calls)
    }
}

#[pymethods]
impl Schedules {
    /// Registers `callback` (called with the context) and returns its id.
    #[pyo3(signature = (callback, algorithm, every=None, at=None, cron=None, timezone=None, name=None))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        callback: &Bound<'_, PyAny>,
        algorithm: &Bound<'_, PyAny>,
        every: Option<&str>,
        at: Option<&str>,
        cron: Option<&str>,
        timezone: Option<&str>,
        name: Option<String>,
    ) -> PyResult<u64> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "schedule needs a callable, got {}",
                callback.get_type().name()?
            )));
        }
        let (now, default_tz) = {
            let s = lock(&self.session);
            (s.now, s.aggregations.calendar().timezone())
        };
        let rule = Rule::parse(every, at, cron, timezone, default_tz)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        // A bound method of the algorithm itself is kept by name (see `Callback`).
        let method = callback
            .getattr("__self__")
            .ok()
            .filter(|owner| owner.is(algorithm))
            .and_then(|_| callback.getattr("__name__").ok())
            .and_then(|n| n.extract::<String>().ok());
        let label = name.unwrap_or_else(|| {
            method.clone().unwrap_or_else(|| {
                callback
                    .getattr("__qualname__")
                    .and_then(|n| n.extract::<String>())
                    .unwrap_or_else(|_| "callback".into())
            })
        });
        let mut book = self.book();
        let id = book.scheduler.add(label, rule, now);
        let stored = match method {
            Some(method) => Callback::Method(method),
            None => Callback::Callable(callback.clone().unbind()),
        };
        book.callbacks.insert(id, stored);
        self.refresh_next(&book);
        Ok(id)
    }

    /// Stops a schedule; `False` when it was already cancelled.
    fn cancel(&self, id: u64) -> bool {
        let mut book = self.book();
        book.callbacks.remove(&id);
        let removed = book.scheduler.cancel(id);
        self.refresh_next(&book);
        removed
    }

    /// (name, next occurrence in ns or None, times fired), or None once cancelled.
    fn info(&self, id: u64) -> Option<(String, Option<i64>, u64)> {
        let book = self.book();
        book.scheduler
            .get(id)
            .map(|e| (e.name.clone(), e.next, e.fired))
    }
}
