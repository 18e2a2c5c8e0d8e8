//! The study loop: asks the search for parameters, hands trials to free workers, stores each
//! result as it arrives and tells the search in trial order.
//!
//! Determinism: the search is told trial k's result only after trials 0..k-1's, and trial k is
//! asked only once trials 0..=k-batch have been told. The sequence of `ask`/`tell` calls is
//! therefore the same whatever order the workers finish in, and so are the parameters of every
//! trial (grid and random search never depend on results: their batch is unbounded). That is
//! also how `--resume` works: the search is replayed, and a trial already in the store is taken
//! from it instead of being run again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use serde_json::Value;

use super::store::{Store, StoredTrial, TrialState};
use super::trial::{TrialRequest, TrialResult};
use super::worker::Message;
use crate::error::Error;
use crate::model::format_timestamp;

/// One objective: a metric of `metrics.json` (a dotted path for nested ones) and its direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub metric: String,
    pub maximize: bool,
}

impl Objective {
    pub fn direction(&self) -> &'static str {
        if self.maximize {
            "maximize"
        } else {
            "minimize"
        }
    }

    /// The objective's value in a trial's metrics: a number, or a decimal text (money).
    pub fn value_in(&self, metrics: &Value) -> Option<f64> {
        let mut node = metrics;
        for part in self.metric.split('.') {
            node = node.get(part)?;
        }
        match node {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        }
        .filter(|v| v.is_finite())
    }

    /// True when `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }
}

/// How a study searches, fixed when it is created.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    pub method: String,
    pub seed: u64,
    /// Trials asked ahead of the results the search has learnt (samplers that learn).
    pub batch: usize,
    pub max_trials: Option<u64>,
    pub objectives: Vec<Objective>,
    pub constraints: Vec<String>,
    pub min_trades: u64,
    /// `--param NAME=SPACE` texts.
    pub space: Vec<(String, String)>,
}

impl StudyOptions {
    /// Grid and random proposals do not depend on results.
    fn ask_ahead(&self) -> u64 {
        match self.method.as_str() {
            "grid" | "random" => u64::MAX / 2,
            _ => self.batch.max(1) as u64,
        }
    }
}

/// When to stop early (not part of a study's identity: a resumed study may change them).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub timeout: Option<Duration>,
    /// Stop asking after this many finished trials in a row without a better objective.
    pub patience: Option<u64>,
}

/// Runs trials somewhere: forked local workers or Ray actors.
pub trait Executor {
    /// Worker slots still alive.
    fn slots(&self) -> Vec<usize>;
    fn submit(&mut self, slot: usize, request: &TrialRequest) -> Result<(), Error>;
    /// The next message, or `None` after `wait` without one.
    fn next(&mut self, wait: Duration) -> Option<Message>;
    /// A slot's worker is gone: never use it again.
    fn retire(&mut self, slot: usize);
}

/// The Python side of the search (`rustybt_api._optimize.Search`).
pub struct Search {
    object: Py<PyAny>,
}

impl Search {
    pub fn new(
        py: Python<'_>,
        class: &Bound<'_, PyAny>,
        options: &StudyOptions,
    ) -> Result<Search, Error> {
        let module = py
            .import("rustybt_api._optimize")
            .map_err(|e| Error::Internal(format!("importing rustybt_api._optimize: {e}")))?;
        let directions: Vec<&str> = options.objectives.iter().map(|o| o.direction()).collect();
        let object = module
            .getattr("Search")
            .and_then(|s| {
                s.call1((
                    class,
                    options.space.clone(),
                    options.method.as_str(),
                    options.seed,
                    directions,
                    options.constraints.clone(),
                    options.max_trials,
                ))
            })
            .map_err(|e| crate::python::loader::parameter_error(py, e))?;
        Ok(Search {
            object: object.unbind(),
        })
    }

    fn call<'py, A: pyo3::call::PyCallArgs<'py>>(
        &self,
        py: Python<'py>,
        name: &str,
        args: A,
    ) -> Result<Bound<'py, PyAny>, Error> {
        self.object
            .bind(py)
            .call_method1(name, args)
            .map_err(|e| crate::python::loader::parameter_error(py, e))
    }

    /// The space as JSON: part of a study's identity.
    pub fn describe(&self, py: Python<'_>) -> Result<String, Error> {
        self.call(py, "describe", ())?
            .extract()
            .map_err(|e| Error::Internal(format!("the search space: {e}")))
    }

    /// How many trials at most, when known.
    pub fn size(&self, py: Python<'_>) -> Result<Option<u64>, Error> {
        self.call(py, "size", ())?
            .extract()
            .map_err(|e| Error::Internal(format!("the search size: {e}")))
    }

    /// Trial `number`'s parameters as `--param` texts and as store JSON; `None`: done.
    #[allow(clippy::type_complexity)]
    pub fn ask(
        &self,
        py: Python<'_>,
        number: u64,
    ) -> Result<Option<(Vec<(String, String)>, String)>, Error> {
        self.call(py, "ask", (number,))?
            .extract()
            .map_err(|e| Error::Internal(format!("a proposed trial: {e}")))
    }

    pub fn tell(
        &self,
        py: Python<'_>,
        number: u64,
        state: TrialState,
        values: Option<&[f64]>,
    ) -> Result<(), Error> {
        self.call(
            py,
            "tell",
            (number, state.as_str(), values.map(<[f64]>::to_vec)),
        )?;
        Ok(())
    }
}

/// What the driver reports while it runs (the CLI draws it).
pub enum Event<'a> {
    Started {
        total: Option<u64>,
        resumed: u64,
    },
    Finished {
        trial: &'a StoredTrial,
        best: Option<&'a StoredTrial>,
    },
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every proposed trial ran (or the trial limit was reached).
    Done,
    Timeout,
    /// No better result for `--patience` trials.
    Plateau,
    Interrupted,
}

/// The trials of one search (a whole study, or one walk-forward window's training).
pub struct SearchOutcome {
    pub ending: Ending,
    pub trials: Vec<StoredTrial>,
    /// The number the next search starts at.
    pub next_number: u64,
    pub ran: u64,
    pub reused: u64,
}

/// A trial asked of the search but not yet given to a worker: its number, its parameters as
/// `name = value` texts, and the same as the JSON the store keeps.
type PendingTrial = (u64, Vec<(String, String)>, String);

/// Runs trials through an executor and keeps the store.
pub struct Driver<'a> {
    pub store: &'a Store,
    pub executor: &'a mut dyn Executor,
    pub options: &'a StudyOptions,
    pub limits: Limits,
    pub code_hash: String,
    pub data_checksum: String,
    /// Trials of an earlier, interrupted run of this study.
    pub stored: BTreeMap<u64, StoredTrial>,
    pub started: Instant,
}

/// A trial in flight.
struct Running {
    number: u64,
    params: String,
}

impl Driver<'_> {
    /// The best complete trial by the first objective (lowest number on ties).
    pub fn best<'t>(
        &self,
        trials: impl IntoIterator<Item = &'t StoredTrial>,
    ) -> Option<&'t StoredTrial> {
        let objective = self.options.objectives.first()?;
        let mut best: Option<(&StoredTrial, f64)> = None;
        for trial in trials {
            let Some(value) = trial
                .objective_values
                .as_ref()
                .and_then(|v| v.first().copied())
            else {
                continue;
            };
            if best.is_none_or(|(_, b)| objective.better(value, b)) {
                best = Some((trial, value));
            }
        }
        best.map(|(t, _)| t)
    }

    /// A trial's stored form from a worker's result.
    pub fn stored_trial(
        &self,
        result: TrialResult,
        params: String,
        window: Option<u64>,
    ) -> StoredTrial {
        let values: Option<Vec<f64>> = result.metrics.as_ref().and_then(|m| {
            self.options
                .objectives
                .iter()
                .map(|o| o.value_in(m))
                .collect()
        });
        let trades = result
            .metrics
            .as_ref()
            .and_then(|m| m.get("num_trades"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let state = if result.error.is_some() || result.metrics.is_none() {
            TrialState::Failed
        } else if trades < self.options.min_trades {
            TrialState::TooFewTrades
        } else if values.is_none() {
            TrialState::NoValue
        } else {
            TrialState::Complete
        };
        StoredTrial {
            number: result.number,
            window,
            params,
            seed: self.options.seed,
            state,
            objective_values: if state == TrialState::Complete {
                values
            } else {
                None
            },
            metrics: result.metrics,
            returns: result.returns,
            error: result.error,
            duration_s: result.duration_s,
            code_hash: self.code_hash.clone(),
            data_checksum: self.data_checksum.clone(),
            finished_at: format_timestamp(now_ns()),
        }
    }

    /// Runs one search to its end. `window` restricts every trial to `[start, end)` and is
    /// stored with it.
    pub fn search(
        &mut self,
        py: Python<'_>,
        search: &Search,
        first_number: u64,
        window: Option<(u64, i64, i64)>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<SearchOutcome, Error> {
        let ahead = self.options.ask_ahead();
        let total = search.size(py)?;
        let mut next = first_number;
        let mut told = first_number;
        let mut finished: BTreeMap<u64, StoredTrial> = BTreeMap::new();
        let mut running: HashMap<usize, Running> = HashMap::new();
        let mut exhausted = false;
        let mut pending: Option<PendingTrial> = None;
        let mut ending = Ending::Done;
        let mut since_best = 0u64;
        let mut best_value: Option<f64> = None;
        let (mut ran, mut reused) = (0u64, 0u64);
        let resumed = self
            .stored
            .range(first_number..)
            .filter(|(_, t)| t.window == window.map(|w| w.0))
            .count() as u64;
        events(Event::Started { total, resumed });
        loop {
            // Tell in trial order, as far as results are in.
            while let Some(trial) = finished.get(&told) {
                search.tell(py, told, trial.state, trial.objective_values.as_deref())?;
                if let (Some(objective), Some(value)) = (
                    self.options.objectives.first(),
                    trial.objective_values.as_ref().and_then(|v| v.first()),
                ) {
                    if best_value.is_none_or(|b| objective.better(*value, b)) {
                        best_value = Some(*value);
                        since_best = 0;
                    } else {
                        since_best += 1;
                    }
                } else {
                    since_best += 1;
                }
                told += 1;
            }
            let stopping = ending != Ending::Done;
            if !stopping {
                if py.check_signals().is_err() {
                    ending = Ending::Interrupted;
                } else if self
                    .limits
                    .timeout
                    .is_some_and(|t| self.started.elapsed() >= t)
                {
                    ending = Ending::Timeout;
                } else if self.limits.patience.is_some_and(|p| since_best >= p)
                    && best_value.is_some()
                {
                    ending = Ending::Plateau;
                }
            }
            if ending == Ending::Interrupted {
                break;
            }
            // Hand out trials to free workers.
            let mut free: Vec<usize> = self
                .executor
                .slots()
                .into_iter()
                .filter(|s| !running.contains_key(s))
                .collect();
            while ending == Ending::Done
                && (pending.is_some() || (!exhausted && next < told + ahead))
            {
                if pending.is_none() {
                    // Ask only for a worker that can take it, or to replay a stored trial.
                    if free.is_empty() && !self.stored.contains_key(&next) {
                        break;
                    }
                    let Some((texts, params)) = search.ask(py, next)? else {
                        exhausted = true;
                        break;
                    };
                    if let Some(stored) = self
                        .stored
                        .get(&next)
                        .filter(|t| t.params == params && t.window == window.map(|w| w.0))
                    {
                        finished.insert(next, stored.clone());
                        reused += 1;
                        next += 1;
                        continue;
                    }
                    pending = Some((next, texts, params));
                    next += 1;
                }
                let Some(slot) = free.pop() else {
                    break;
                };
                let Some((number, texts, params)) = pending.take() else {
                    break;
                };
                let request = TrialRequest {
                    number,
                    params: texts,
                    seed: self.options.seed,
                    start_ns: window.map(|w| w.1),
                    end_ns: window.map(|w| w.2),
                    out: None,
                    noise: None,
                };
                self.executor.submit(slot, &request)?;
                running.insert(slot, Running { number, params });
            }
            if running.is_empty() && finished.contains_key(&told) {
                continue;
            }
            if running.is_empty() {
                if ending != Ending::Done || (exhausted && pending.is_none()) {
                    break;
                }
                if self.executor.slots().is_empty() {
                    return Err(Error::Internal("every worker has exited".into()));
                }
            }
            let Some(message) = self.executor.next(Duration::from_millis(100)) else {
                continue;
            };
            let (slot, result) = match message {
                Message::Result(slot, result) => (slot, result),
                Message::Gone(slot, why) => {
                    self.executor.retire(slot);
                    let Some(lost) = running.remove(&slot) else {
                        continue;
                    };
                    let result = TrialResult {
                        number: lost.number,
                        metrics: None,
                        returns: None,
                        error: Some(format!("the worker running this trial {why}")),
                        duration_s: 0.0,
                        bars: 0,
                    };
                    running.insert(slot, lost);
                    (slot, result)
                }
            };
            let Some(job) = running.remove(&slot) else {
                continue;
            };
            if job.number != result.number {
                return Err(Error::Internal(format!(
                    "worker {slot} answered trial {} while running trial {}",
                    result.number, job.number
                )));
            }
            let trial = self.stored_trial(result, job.params, window.map(|w| w.0));
            self.store.put_trial(&trial)?;
            ran += 1;
            let number = trial.number;
            finished.insert(number, trial);
            events(Event::Finished {
                trial: &finished[&number],
                best: self.best(finished.values()),
            });
        }
        Ok(SearchOutcome {
            ending,
            trials: finished.into_values().collect(),
            next_number: next,
            ran,
            reused,
        })
    }

    /// Runs `requests` on every free worker and returns their results in request order.
    pub fn run_many(&mut self, requests: &[TrialRequest]) -> Result<Vec<TrialResult>, Error> {
        let mut results: BTreeMap<u64, TrialResult> = BTreeMap::new();
        let mut running: HashMap<usize, u64> = HashMap::new();
        let mut queue = requests.iter();
        loop {
            for slot in self.executor.slots() {
                if running.contains_key(&slot) {
                    continue;
                }
                let Some(request) = queue.next() else {
                    break;
                };
                self.executor.submit(slot, request)?;
                running.insert(slot, request.number);
            }
            if running.is_empty() {
                break;
            }
            if self.executor.slots().is_empty() {
                return Err(Error::Internal("every worker has exited".into()));
            }
            match self.executor.next(Duration::from_millis(200)) {
                None => {}
                Some(Message::Result(slot, result)) => {
                    running.remove(&slot);
                    results.insert(result.number, result);
                }
                Some(Message::Gone(slot, why)) => {
                    self.executor.retire(slot);
                    if let Some(number) = running.remove(&slot) {
                        results.insert(
                            number,
                            TrialResult {
                                number,
                                metrics: None,
                                returns: None,
                                error: Some(format!("the worker running this trial {why}")),
                                duration_s: 0.0,
                                bars: 0,
                            },
                        );
                    }
                }
            }
        }
        Ok(requests
            .iter()
            .filter_map(|r| results.remove(&r.number))
            .collect())
    }

    /// Runs one request on the first free worker and waits for it (a walk-forward window's
    /// out-of-sample run).
    pub fn run_one(&mut self, request: &TrialRequest) -> Result<TrialResult, Error> {
        let Some(slot) = self.executor.slots().first().copied() else {
            return Err(Error::Internal("every worker has exited".into()));
        };
        self.executor.submit(slot, request)?;
        loop {
            match self.executor.next(Duration::from_millis(200)) {
                None => continue,
                Some(Message::Result(s, result)) if s == slot => return Ok(result),
                Some(Message::Result(..)) => continue,
                Some(Message::Gone(s, why)) => {
                    self.executor.retire(s);
                    if s == slot {
                        return Ok(TrialResult {
                            number: request.number,
                            metrics: None,
                            returns: None,
                            error: Some(format!("the worker running this trial {why}")),
                            duration_s: 0.0,
                            bars: 0,
                        });
                    }
                }
            }
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The Pareto front of complete trials: those no other trial beats on every objective.
pub fn pareto_front<'t>(
    trials: &[&'t StoredTrial],
    objectives: &[Objective],
) -> Vec<&'t StoredTrial> {
    let values: Vec<(&StoredTrial, &Vec<f64>)> = trials
        .iter()
        .filter_map(|t| t.objective_values.as_ref().map(|v| (*t, v)))
        .collect();
    let dominates = |a: &[f64], b: &[f64]| {
        let mut strictly = false;
        for (i, o) in objectives.iter().enumerate() {
            if o.better(b[i], a[i]) {
                return false;
            }
            if o.better(a[i], b[i]) {
                strictly = true;
            }
        }
        strictly
    };
    values
        .iter()
        .filter(|(_, v)| !values.iter().any(|(_, w)| dominates(w, v)))
        .map(|(t, _)| *t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objective_values_come_from_numbers_decimal_texts_and_dotted_paths() {
        let metrics = serde_json::json!({
            "sharpe": 1.25, "net_profit": "12.50", "var": {"historical": {"95": {"var": 0.02}}},
            "cagr": null,
        });
        let get = |m: &str| {
            Objective {
                metric: m.into(),
                maximize: true,
            }
            .value_in(&metrics)
        };
        assert_eq!(get("sharpe"), Some(1.25));
        assert_eq!(get("net_profit"), Some(12.5));
        assert_eq!(get("var.historical.95.var"), Some(0.02));
        assert_eq!(get("cagr"), None);
        assert_eq!(get("missing"), None);
    }

    #[test]
    fn pareto_front_keeps_the_non_dominated_trials() {
        let trial = |n: u64, a: f64, b: f64| StoredTrial {
            number: n,
            window: None,
            params: "{}".into(),
            seed: 0,
            state: TrialState::Complete,
            objective_values: Some(vec![a, b]),
            metrics: None,
            returns: None,
            error: None,
            duration_s: 0.0,
            code_hash: String::new(),
            data_checksum: String::new(),
            finished_at: String::new(),
        };
        // maximize the first, minimize the second
        let objectives = [
            Objective {
                metric: "sharpe".into(),
                maximize: true,
            },
            Objective {
                metric: "max_drawdown".into(),
                maximize: false,
            },
        ];
        let trials = [
            trial(0, 1.0, 0.2),
            trial(1, 2.0, 0.3),
            trial(2, 0.5, 0.3),
            trial(3, 2.0, 0.1),
        ];
        let refs: Vec<&StoredTrial> = trials.iter().collect();
        let front: Vec<u64> = pareto_front(&refs, &objectives)
            .iter()
            .map(|t| t.number)
            .collect();
        assert_eq!(front, vec![3]);
        let trials = [trial(0, 1.0, 0.1), trial(1, 2.0, 0.3), trial(2, 0.5, 0.3)];
        let refs: Vec<&StoredTrial> = trials.iter().collect();
        let front: Vec<u64> = pareto_front(&refs, &objectives)
            .iter()
            .map(|t| t.number)
            .collect();
        assert_eq!(front, vec![0, 1]);
    }
}
