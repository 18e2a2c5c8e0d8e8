//! Walk-forward validation: per window, a search on the training bars only, then the best
//! parameters run on the following test bars, with a results folder per window.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use serde_json::Value;

use super::best::params_as_texts;
use super::store::StoredWindow;
use super::study::{Driver, Ending, Event, Search, StudyOptions};
use super::trial::TrialRequest;
use crate::config::parse_duration;
use crate::error::Error;
use crate::model::format_timestamp;
use crate::pipeline::Prepared;

/// `train=180d,test=30d,step=30d`.
pub struct WalkForward {
    anchored: bool,
    train: String,
    test: String,
    step: String,
}

impl WalkForward {
    pub fn parse(text: &str, anchored: bool) -> Result<WalkForward, Error> {
        let hint = "for example `--walk-forward train=180d,test=30d,step=30d`";
        let mut parts = BTreeMap::new();
        for item in text.split(',') {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                Error::usage_with_hint(format!("`{item}` is not KEY=DURATION"), hint)
            })?;
            let key = key.trim();
            if !["train", "test", "step"].contains(&key) {
                return Err(Error::usage_with_hint(
                    format!("unknown walk-forward key `{key}` (train, test, step)"),
                    hint,
                ));
            }
            parse_duration(value)?;
            parts.insert(key.to_string(), value.trim().to_string());
        }
        let get = |k: &str| {
            parts
                .get(k)
                .cloned()
                .ok_or_else(|| Error::usage_with_hint(format!("walk-forward needs `{k}=`"), hint))
        };
        let test = get("test")?;
        Ok(WalkForward {
            anchored,
            train: get("train")?,
            step: parts.get("step").cloned().unwrap_or_else(|| test.clone()),
            test,
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "train": self.train, "test": self.test, "step": self.step, "anchored": self.anchored,
        })
    }
}

/// Walk-forward: per window, a search on the training bars only, then the best parameters
/// run on the following test bars (their results folder under `walk-forward/`).
pub fn walk(
    py: Python<'_>,
    driver: &mut Driver<'_>,
    class: &Py<PyAny>,
    options: &StudyOptions,
    wf: &WalkForward,
    prepared: &Prepared,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<Ending, Error> {
    let first = prepared
        .series
        .iter()
        .filter_map(|s| s.time.first().copied())
        .min()
        .ok_or_else(|| Error::usage("the study's data has no bars"))?;
    let last = prepared
        .series
        .iter()
        .filter_map(|s| s.time.last().copied())
        .max()
        .unwrap_or(first);
    // The data ends where its last bar closes (a bar's length: the smallest step between bars).
    let bar = prepared
        .series
        .iter()
        .flat_map(|s| s.time.windows(2).take(1000).map(|w| w[1] - w[0]))
        .min()
        .unwrap_or(1);
    let windows = super::walk_forward_windows(
        first,
        last + bar,
        parse_duration(&wf.train)?,
        parse_duration(&wf.test)?,
        parse_duration(&wf.step)?,
        wf.anchored,
    );
    if windows.is_empty() {
        return Err(Error::usage_with_hint(
            format!(
                "the data ({} to {}) is too short for one training window of {} and a test window",
                format_timestamp(first),
                format_timestamp(last),
                wf.train
            ),
            "shorten `train=` or load more data",
        ));
    }
    let done = driver.store.windows()?;
    let mut number = 0;
    for (index, &(train_start, train_end, test_start, test_end)) in windows.iter().enumerate() {
        let index = index as u64;
        let search = Search::new(py, class.bind(py), options)?;
        errln!(
            "window {}: train {} to {}, test to {}",
            index + 1,
            format_timestamp(train_start),
            format_timestamp(train_end),
            format_timestamp(test_end)
        );
        let outcome = driver.search(
            py,
            &search,
            number,
            Some((index, train_start, train_end)),
            events,
        )?;
        number = outcome.next_number;
        if outcome.ending == Ending::Interrupted {
            return Ok(Ending::Interrupted);
        }
        if done.contains_key(&index) {
            continue;
        }
        let best = driver.best(outcome.trials.iter()).cloned();
        let results_dir = format!("walk-forward/window-{:03}", index + 1);
        let mut window = StoredWindow {
            number: index,
            train_start: format_timestamp(train_start),
            train_end: format_timestamp(train_end),
            test_start: format_timestamp(test_start),
            test_end: format_timestamp(test_end),
            best_params: best.as_ref().map(|b| b.params.clone()),
            best_train_values: best.as_ref().and_then(|b| b.objective_values.clone()),
            test_metrics: None,
            results_dir: None,
        };
        if let Some(best) = &best {
            let params = params_as_texts(&best.params);
            let request = TrialRequest {
                number: u64::MAX - index,
                params,
                seed: options.seed,
                start_ns: Some(test_start),
                end_ns: Some(test_end),
                out: Some(driver.store.dir.join(&results_dir)),
                noise: None,
            };
            let result = driver.run_one(&request)?;
            if let Some(error) = &result.error {
                errln!(
                    "window {}: the out-of-sample run failed: {error}",
                    index + 1
                );
            }
            window.test_metrics = result.metrics;
            window.results_dir = Some(results_dir);
        } else {
            errln!("window {}: no trial completed; nothing to test", index + 1);
        }
        driver.store.put_window(&window)?;
    }
    Ok(Ending::Done)
}
