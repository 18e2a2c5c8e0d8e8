//! `rustybt optimize`: searches an algorithm's parameters by running it many times on data
//! loaded once. `study` drives the search, `worker` and `trial` run trials, `store` keeps
//! every finished trial so a study survives a crash (docs/optimize.md).

pub mod best;
pub mod ray;
pub mod store;
pub mod study;
pub mod trial;
pub mod walk_forward;
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

/// What a study is: the algorithm, code and data fingerprints, method, objectives,
/// constraints, space and walk-forward layout, as stored in its metadata. The keys of
/// [`IDENTITY`] are what `--resume` compares.
pub fn study_identity(
    algorithm: &Path,
    class_name: &str,
    code_hash: &str,
    data_checksum: &str,
    options: &study::StudyOptions,
    space_json: &str,
    walk_forward: Option<&walk_forward::WalkForward>,
) -> Result<BTreeMap<String, Value>, Error> {
    let space: Value = serde_json::from_str(space_json)
        .map_err(|e| Error::Internal(format!("the space as JSON: {e}")))?;
    let objectives: Vec<Value> = options
        .objectives
        .iter()
        .map(|o| serde_json::json!({"metric": o.metric, "direction": o.direction()}))
        .collect();
    Ok(BTreeMap::from([
        (
            "algorithm".into(),
            Value::from(algorithm.display().to_string()),
        ),
        ("class_name".into(), Value::from(class_name)),
        ("code_hash".into(), Value::from(code_hash)),
        ("data_checksum".into(), Value::from(data_checksum)),
        ("method".into(), Value::from(options.method.clone())),
        ("seed".into(), Value::from(options.seed)),
        ("batch".into(), Value::from(options.batch)),
        ("objectives".into(), Value::from(objectives)),
        (
            "constraints".into(),
            Value::from(options.constraints.clone()),
        ),
        ("min_trades".into(), Value::from(options.min_trades)),
        ("space".into(), space),
        (
            "walk_forward".into(),
            walk_forward.map_or(Value::Null, walk_forward::WalkForward::to_json),
        ),
    ]))
}

/// One process per study: an exclusive lock on `<study>/lock` (the live state folder's lock,
/// released by the kernel however the process ends), held while trials and the best rerun are
/// written. A second `optimize` on the same folder (a `--resume` while it runs, or the same
/// `--study`) is refused instead of rerunning the same trials beside it and writing `best/`
/// at the same time.
pub fn lock_study(dir: &Path) -> Result<crate::live::lock::StateLock, Error> {
    use crate::live::lock::{LockError, StateLock, describe};
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    StateLock::acquire(dir, &command).map_err(|e| match e {
        LockError::Held { dir, holder } => Error::usage_with_hint(
            format!(
                "the study `{}` is in use by another rustybt optimize: {}",
                dir.display(),
                describe(&holder)
            ),
            format!(
                "wait for it to finish, or stop it (Ctrl-C keeps its finished trials) and continue with `rustybt optimize --resume {}`",
                dir.display()
            ),
        ),
        other => other.into(),
    })
}

/// Opens a study to resume it: refused (exit 2) when its identity changed, unless `force`;
/// the stored metadata then takes the new values.
pub fn reopen_study(
    dir: &Path,
    stored: &BTreeMap<String, Value>,
    now: &BTreeMap<String, Value>,
    force: bool,
) -> Result<store::Store, Error> {
    let changes = identity_changes(stored, now);
    if !changes.is_empty() && !force {
        return Err(Error::usage_with_hint(
            format!(
                "the study in `{}` cannot be resumed as it was: {}",
                dir.display(),
                changes.join("; ")
            ),
            "start a new study, or add `--force` to continue it anyway",
        ));
    }
    let store = store::Store::open(dir)?;
    for (key, value) in now {
        store.set_meta(key, value)?;
    }
    Ok(store)
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

/// Percentile bands over equity paths compounded from daily returns (every path starts at
/// `initial`): the JSON of `rustybt_api.study.montecarlo` with days as steps.
pub fn montecarlo_bands(
    initial: f64,
    paths: &[Vec<f64>],
    actual: &[f64],
    method: &str,
    seed: u64,
    trades: u64,
) -> Value {
    const PERCENTILES: [u32; 5] = [5, 25, 50, 75, 95];
    let equity = |returns: &[f64]| -> Vec<f64> {
        let mut value = initial;
        std::iter::once(initial)
            .chain(returns.iter().map(|r| {
                value *= 1.0 + r;
                value
            }))
            .collect()
    };
    let drawdown = |path: &[f64]| {
        let mut peak = f64::MIN;
        path.iter().fold(0.0_f64, |worst, &v| {
            peak = peak.max(v);
            if peak > 0.0 {
                worst.max(1.0 - v / peak)
            } else {
                worst
            }
        })
    };
    let curves: Vec<Vec<f64>> = paths.iter().map(|p| equity(p)).collect();
    let days = curves.iter().map(Vec::len).min().unwrap_or(0);
    let pick = |mut values: Vec<f64>, q: u32| {
        values.sort_by(f64::total_cmp);
        crate::metrics::returns::percentile(&values, q as f64)
    };
    let mut bands = serde_json::Map::new();
    let mut finals = serde_json::Map::new();
    let mut drawdowns = serde_json::Map::new();
    for q in PERCENTILES {
        let band: Vec<f64> = (0..days)
            .map(|d| pick(curves.iter().map(|c| c[d]).collect(), q))
            .collect();
        bands.insert(q.to_string(), Value::from(band));
        finals.insert(
            q.to_string(),
            Value::from(pick(curves.iter().map(|c| c[days - 1]).collect(), q)),
        );
        drawdowns.insert(
            q.to_string(),
            Value::from(pick(curves.iter().map(|c| drawdown(c)).collect(), q)),
        );
    }
    let own = equity(actual);
    serde_json::json!({
        "method": method,
        "seed": seed,
        "runs": paths.len(),
        "trades": trades,
        "initial": initial,
        "percentiles": PERCENTILES,
        "steps": (0..days).collect::<Vec<_>>(),
        "step_unit": "day",
        "bands": bands,
        "final_value": finals,
        "max_drawdown": drawdowns,
        "actual_final_value": own.last().copied().unwrap_or(initial),
        "actual_max_drawdown": drawdown(&own),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montecarlo_bands_are_ordered_and_drawdowns_stay_in_0_1() {
        let paths = vec![
            vec![0.01, -0.02, 0.03],
            vec![-0.5, -0.6, 0.1],
            vec![0.0, 0.0, 0.0],
        ];
        let doc = montecarlo_bands(100.0, &paths, &[0.01, 0.01, 0.01], "noise", 1, 3);
        let band =
            |q: &str| -> Vec<f64> { serde_json::from_value(doc["bands"][q].clone()).unwrap() };
        assert_eq!(band("5").len(), 4);
        for d in 0..4 {
            assert!(band("5")[d] <= band("50")[d] && band("50")[d] <= band("95")[d]);
        }
        for q in ["5", "50", "95"] {
            let dd = doc["max_drawdown"][q].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&dd), "{dd}");
        }
        assert_eq!(doc["bands"]["50"][0], 100.0);
        assert!(
            (doc["actual_final_value"].as_f64().unwrap() - 100.0 * 1.01f64.powi(3)).abs() < 1e-9
        );
    }

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
