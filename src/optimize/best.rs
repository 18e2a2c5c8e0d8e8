//! The best of a study: its parameters as texts and as a run config, the best trial rerun
//! into `STUDY/best`, and its Monte Carlo reruns on noisy prices.

use std::path::Path;

use serde_json::Value;

use super::store::{Store, StoredTrial, TrialState};
use super::study::{Driver, Objective, StudyOptions};
use super::trial::TrialRequest;
use crate::error::Error;

/// The trials of a study outside any walk-forward window.
pub fn plain_trials(store: &Store) -> Result<Vec<StoredTrial>, Error> {
    Ok(store
        .trials()?
        .into_values()
        .filter(|t| t.window.is_none())
        .collect())
}

/// A stored trial's parameters (JSON) as `--param` texts.
pub fn params_as_texts(json: &str) -> Vec<(String, String)> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
    map.into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (name, text)
        })
        .collect()
}

pub fn stored_objectives(store: &Store) -> Result<Vec<Objective>, Error> {
    let list = store.meta_value("objectives")?.unwrap_or(Value::Null);
    Ok(list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| Objective {
                    metric: o["metric"].as_str().unwrap_or("sharpe").to_string(),
                    maximize: o["direction"].as_str() != Some("minimize"),
                })
                .collect()
        })
        .unwrap_or_default())
}

pub fn best_trial(store: &Store) -> Result<Option<StoredTrial>, Error> {
    let objectives = stored_objectives(store)?;
    let trials = plain_trials(store)?;
    Ok(super::ranked(&trials, &objectives)
        .first()
        .filter(|t| t.state == TrialState::Complete)
        .map(|t| (*t).clone()))
}

/// The best trial's parameters as a run config (`rustybt run --config best.toml`).
pub fn write_best_config(store: &Store, best: &StoredTrial, path: &Path) -> Result<(), Error> {
    let algo = store
        .meta_value("algorithm")?
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let params: toml::Table = serde_json::from_str::<serde_json::Map<String, Value>>(&best.params)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => toml::Value::Boolean(b),
                Value::Number(n) if n.is_i64() => toml::Value::Integer(n.as_i64()?),
                Value::Number(n) => toml::Value::Float(n.as_f64()?),
                Value::String(s) => toml::Value::String(s),
                _ => return None,
            };
            Some((k, value))
        })
        .collect();
    let mut doc = toml::Table::new();
    let mut run = toml::Table::new();
    run.insert("algo".into(), toml::Value::String(algo));
    doc.insert("run".into(), toml::Value::Table(run));
    doc.insert("params".into(), toml::Value::Table(params));
    let text = format!(
        "# Best trial {} of the study in {} ({})\n{}",
        best.number,
        store.dir.display(),
        best.objective_values
            .as_ref()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        toml::to_string(&doc).map_err(|e| Error::Internal(format!("best.toml: {e}")))?
    );
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// The best trial run once more with its results folder written to STUDY/best (what the
/// study report and `rustybt optimize montecarlo STUDY/best` read).
pub fn rerun_best(driver: &mut Driver<'_>, options: &StudyOptions) -> Result<(), Error> {
    let Some(best) = driver.best(plain_trials(driver.store)?.iter()).cloned() else {
        return Ok(());
    };
    let out = driver.store.dir.join("best");
    let request = TrialRequest {
        number: best.number,
        params: params_as_texts(&best.params),
        seed: options.seed,
        start_ns: None,
        end_ns: None,
        out: Some(out.clone()),
        noise: None,
    };
    let result = driver.run_one(&request)?;
    match result.error {
        Some(error) => errln!("rerunning the best trial failed: {error}"),
        None => errln!("best trial {} rerun into {}", best.number, out.display()),
    }
    Ok(())
}

/// Monte Carlo by price noise: the best trial rerun `runs` times, each on prices moved by its
/// own seeded noise; percentile bands of the daily equity, the final value and the maximum
/// drawdown, in the shape `rustybt_api.study.montecarlo` writes (the study report draws it).
pub fn noise_reruns(
    driver: &mut Driver<'_>,
    options: &StudyOptions,
    runs: u32,
    scale: f64,
    cash: rust_decimal::Decimal,
) -> Result<(), Error> {
    if !(scale.is_finite() && scale >= 0.0) {
        return Err(Error::usage(
            "`--noise-scale` must be a non-negative number",
        ));
    }
    let Some(best) = driver.best(plain_trials(driver.store)?.iter()).cloned() else {
        return Ok(());
    };
    let params = params_as_texts(&best.params);
    let requests: Vec<TrialRequest> = (0..runs as u64)
        .map(|i| TrialRequest {
            number: i,
            params: params.clone(),
            seed: options.seed,
            start_ns: None,
            end_ns: None,
            out: None,
            noise: Some(super::trial::Noise {
                seed: options.seed.wrapping_mul(1_000_003).wrapping_add(i),
                scale,
            }),
        })
        .collect();
    errln!(
        "Monte Carlo: {runs} reruns of trial {} on noisy prices (scale {scale})",
        best.number
    );
    let results = driver.run_many(&requests)?;
    let initial: f64 = cash.to_string().parse().unwrap_or(0.0);
    let actual = best
        .returns
        .as_ref()
        .and_then(|r| r.get("values"))
        .and_then(|v| serde_json::from_value::<Vec<f64>>(v.clone()).ok())
        .unwrap_or_default();
    let paths: Vec<Vec<f64>> = results
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| {
            r.returns
                .as_ref()?
                .get("values")
                .and_then(|v| serde_json::from_value::<Vec<f64>>(v.clone()).ok())
        })
        .collect();
    let failed = results.len() - paths.len();
    if paths.is_empty() {
        return Err(Error::usage(format!(
            "every noisy rerun failed ({})",
            results
                .iter()
                .find_map(|r| r.error.clone())
                .unwrap_or_default()
        )));
    }
    let trades = best
        .metrics
        .as_ref()
        .and_then(|m| m.get("num_trades"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let doc = super::montecarlo_bands(initial, &paths, &actual, "noise", options.seed, trades);
    let out = driver.store.dir.join("best").join("montecarlo-noise.json");
    std::fs::create_dir_all(driver.store.dir.join("best")).ok();
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap_or_default()).map_err(
        |source| Error::Io {
            context: "cannot write",
            path: out.clone(),
            source,
        },
    )?;
    if failed > 0 {
        errln!("Monte Carlo: {failed} of {runs} noisy reruns failed and are left out");
    }
    errln!("Monte Carlo bands written to {}", out.display());
    Ok(())
}
