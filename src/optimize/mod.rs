//! `rustybt optimize`: searches an algorithm's parameters by running it many times on data
//! loaded once. `study` drives the search, `worker` and `trial` run trials, `store` keeps
//! every finished trial so a study survives a crash (docs/optimize.md).

pub mod ray;
pub mod store;
pub mod study;
pub mod trial;
pub mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::error::Error;
use crate::pipeline::Prepared;
use store::StoredTrial;
use study::{Executor, Objective};
use worker::{ForkedWorker, Message};

/// Forked local workers as an [`Executor`].
pub struct LocalExecutor {
    workers: Vec<Option<ForkedWorker>>,
    messages: std::sync::mpsc::Receiver<Message>,
}

impl LocalExecutor {
    pub fn new(workers: Vec<ForkedWorker>, messages: std::sync::mpsc::Receiver<Message>) -> Self {
        LocalExecutor {
            workers: workers.into_iter().map(Some).collect(),
            messages,
        }
    }

    /// Closes every worker's input (they exit) and waits for them.
    pub fn shut_down(&mut self) {
        let pids: Vec<libc::pid_t> = self.workers.iter().flatten().map(|w| w.pid).collect();
        self.workers.clear();
        for pid in pids {
            worker::reap(pid);
        }
    }
}

impl Executor for LocalExecutor {
    fn slots(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|&i| self.workers[i].is_some())
            .collect()
    }

    fn submit(&mut self, slot: usize, request: &trial::TrialRequest) -> Result<(), Error> {
        let worker = self.workers[slot]
            .as_mut()
            .ok_or_else(|| Error::Internal(format!("worker {slot} has exited")))?;
        worker
            .send(request)
            .map_err(|e| Error::Internal(format!("sending a trial to worker {slot}: {e}")))
    }

    fn next(&mut self, wait: Duration) -> Option<Message> {
        self.messages.recv_timeout(wait).ok()
    }

    fn retire(&mut self, slot: usize) {
        if let Some(worker) = self.workers[slot].take() {
            worker::reap(worker.pid);
        }
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// XXH3-128 (hex) of the algorithm's file: resume refuses a study whose code changed.
pub fn code_hash(algo: &Path) -> Result<String, Error> {
    crate::catalog::store::checksum(algo)
        .map(|(_, sum)| sum)
        .map_err(|e| Error::usage(e.to_string()))
}

/// One checksum of every bar a study reads: the catalog's dataset checksums, or the files'.
pub fn data_checksum(prepared: &Prepared) -> Result<String, Error> {
    let mut sums = Vec::new();
    if let Some(datasets) = &prepared.datasets {
        sums.push(datasets.to_string());
    } else {
        for file in &prepared.files {
            let (_, sum) =
                crate::catalog::store::checksum(file).map_err(|e| Error::usage(e.to_string()))?;
            sums.push(sum);
        }
    }
    Ok(crate::catalog::store::combine(&sums))
}

/// The keys of a study's identity that `--resume` compares, and what each change means.
const IDENTITY: [(&str, &str); 7] = [
    ("code_hash", "the algorithm's code changed"),
    ("data_checksum", "the data changed"),
    ("space", "the parameter space changed"),
    ("method", "the search method changed"),
    ("seed", "the seed changed"),
    ("objectives", "the objectives changed"),
    ("constraints", "the constraints changed"),
];

/// Why a resumed study is not the study that was started, one reason per line (empty: same).
pub fn identity_changes(
    stored: &BTreeMap<String, Value>,
    now: &BTreeMap<String, Value>,
) -> Vec<String> {
    IDENTITY
        .iter()
        .filter(|(key, _)| stored.get(*key) != now.get(*key))
        .map(|(key, why)| format!("{why} (`{key}`)"))
        .collect()
}

/// Trials ranked best first by the first objective; complete trials before the others.
pub fn ranked<'t>(trials: &'t [StoredTrial], objectives: &[Objective]) -> Vec<&'t StoredTrial> {
    let mut out: Vec<&StoredTrial> = trials.iter().collect();
    let primary = objectives.first();
    out.sort_by(|a, b| {
        let key = |t: &StoredTrial| t.objective_values.as_ref().and_then(|v| v.first().copied());
        match (key(a), key(b), primary) {
            (Some(x), Some(y), Some(o)) => {
                let order = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                (if o.maximize { order.reverse() } else { order }).then(a.number.cmp(&b.number))
            }
            (Some(_), None, _) => std::cmp::Ordering::Less,
            (None, Some(_), _) => std::cmp::Ordering::Greater,
            _ => a.number.cmp(&b.number),
        }
    });
    out
}

/// Walk-forward windows over `[first, end)`: `(train_start, train_end, test_start, test_end)`,
/// rolling (every training window as long as `train`) or anchored (all start at `first`).
pub fn walk_forward_windows(
    first: i64,
    end: i64,
    train: i64,
    test: i64,
    step: i64,
    anchored: bool,
) -> Vec<(i64, i64, i64, i64)> {
    let mut windows = Vec::new();
    let mut train_start = first;
    let mut train_end = first + train;
    while train_end < end {
        let test_end = (train_end + test).min(end);
        windows.push((train_start, train_end, train_end, test_end));
        train_end += step;
        if !anchored {
            train_start += step;
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_and_anchored_windows_never_let_a_test_window_overlap_its_training() {
        let day = crate::model::time::NANOS_PER_DAY;
        let rolling = walk_forward_windows(0, 100 * day, 30 * day, 10 * day, 10 * day, false);
        assert_eq!(rolling.len(), 7);
        assert_eq!(rolling[0], (0, 30 * day, 30 * day, 40 * day));
        assert_eq!(rolling[6], (60 * day, 90 * day, 90 * day, 100 * day));
        for (ts, te, vs, ve) in &rolling {
            assert!(ts < te && te <= vs && vs < ve && *ve <= 100 * day);
            assert_eq!(te - ts, 30 * day);
        }
        let anchored = walk_forward_windows(0, 100 * day, 30 * day, 10 * day, 10 * day, true);
        assert!(anchored.iter().all(|w| w.0 == 0));
        assert_eq!(anchored[6].1, 90 * day);
    }

    #[test]
    fn identity_changes_name_what_changed() {
        let mut a = BTreeMap::new();
        a.insert("code_hash".to_string(), Value::from("1"));
        a.insert("seed".to_string(), Value::from(0));
        let mut b = a.clone();
        assert!(identity_changes(&a, &b).is_empty());
        b.insert("code_hash".to_string(), Value::from("2"));
        let changes = identity_changes(&a, &b);
        assert_eq!(
            changes,
            vec!["the algorithm's code changed (`code_hash`)".to_string()]
        );
    }
}
