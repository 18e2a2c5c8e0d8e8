//! The study store: `STUDY_DIR/study.sqlite`. Every trial is committed as it finishes, so a
//! study killed at any point keeps every finished trial and `--resume` reruns only the rest.
//! The schema is documented in docs/optimize.md ("The study store").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::Error;

pub const SCHEMA_VERSION: i64 = 1;
pub const FILE_NAME: &str = "study.sqlite";

/// A trial's final state. Only `Complete` trials have objective values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    Complete,
    /// The algorithm raised, or the trial could not start.
    Failed,
    /// Fewer trades than `--min-trades`.
    TooFewTrades,
    /// An objective metric has no value (e.g. a Sharpe ratio of too few days).
    NoValue,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Complete => "complete",
            TrialState::Failed => "failed",
            TrialState::TooFewTrades => "too_few_trades",
            TrialState::NoValue => "no_value",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            TrialState::Complete,
            TrialState::Failed,
            TrialState::TooFewTrades,
            TrialState::NoValue,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One finished trial as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrial {
    pub number: u64,
    /// Walk-forward window the trial trained on (`None` in a plain study).
    pub window: Option<u64>,
    /// Parameter name → value (JSON: numbers, strings for Decimals and text, booleans).
    pub params: String,
    pub seed: u64,
    pub state: TrialState,
    pub objective_values: Option<Vec<f64>>,
    /// The trial's metrics, as the top level of a run's `metrics.json`.
    pub metrics: Option<Value>,
    /// `{"days": [...], "values": [...]}`: the daily returns the ratios are computed from.
    pub returns: Option<Value>,
    pub error: Option<String>,
    pub duration_s: f64,
    pub code_hash: String,
    pub data_checksum: String,
    pub finished_at: String,
}

/// A walk-forward window's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub number: u64,
    pub train_start: String,
    pub train_end: String,
    pub test_start: String,
    pub test_end: String,
    pub best_params: Option<String>,
    pub best_train_values: Option<Vec<f64>>,
    pub test_metrics: Option<Value>,
    /// Relative to the study folder.
    pub results_dir: Option<String>,
}

pub struct Store {
    conn: Connection,
    pub dir: PathBuf,
}

fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Io {
        context: "study store error in",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Store {
    /// Creates the store of a new study in `dir` (which must not hold one).
    pub fn create(dir: &Path, meta: &BTreeMap<String, Value>) -> Result<Store, Error> {
        let path = dir.join(FILE_NAME);
        if path.exists() {
            return Err(Error::usage_with_hint(
                format!("`{}` already holds a study", dir.display()),
                format!(
                    "continue it with `rustybt optimize --resume {}`, or choose another `--study` folder",
                    dir.display()
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "cannot create the study folder",
            path: dir.to_path_buf(),
            source,
        })?;
        let store = Store::connect(dir)?;
        let err = db_error(&path);
        store
            .conn
            .execute_batch(
                "BEGIN;
                 CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE trials (
                     number INTEGER PRIMARY KEY, window INTEGER, params TEXT NOT NULL,
                     seed INTEGER NOT NULL, state TEXT NOT NULL, objective_values TEXT,
                     metrics TEXT, returns TEXT, error TEXT, duration_s REAL,
                     code_hash TEXT, data_checksum TEXT, finished_at TEXT);
                 CREATE TABLE windows (
                     number INTEGER PRIMARY KEY, train_start TEXT, train_end TEXT,
                     test_start TEXT, test_end TEXT, best_params TEXT, best_train_values TEXT,
                     test_metrics TEXT, results_dir TEXT);",
            )
            .map_err(&err)?;
        let mut meta = meta.clone();
        meta.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
        for (key, value) in &meta {
            store
                .conn
                .execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, value.to_string()],
                )
                .map_err(&err)?;
        }
        store.conn.execute_batch("COMMIT;").map_err(&err)?;
        Ok(store)
    }

    /// Opens an existing study's store.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        if !dir.join(FILE_NAME).is_file() {
            return Err(Error::usage_with_hint(
                format!("`{}` holds no study (no {FILE_NAME})", dir.display()),
                "`rustybt optimize list` shows the studies under runs/",
            ));
        }
        let store = Store::connect(dir)?;
        let version = store.meta_value("schema_version")?;
        if version != Some(Value::from(SCHEMA_VERSION)) {
            return Err(Error::usage(format!(
                "`{}` was written by another rustybt (study schema {}; this one reads {SCHEMA_VERSION})",
                dir.display(),
                version.map_or("unknown".into(), |v| v.to_string())
            )));
        }
        Ok(store)
    }

    fn connect(dir: &Path) -> Result<Store, Error> {
        let path = dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(db_error(&path))?;
        // A finished trial is minutes of CPU: commit it durably (one fsync per trial is cheap).
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .map_err(db_error(&path))?;
        Ok(Store {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn meta(&self) -> Result<BTreeMap<String, Value>, Error> {
        let path = self.path();
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta")
            .map_err(db_error(&path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(db_error(&path))?;
        let mut meta = BTreeMap::new();
        for row in rows {
            let (key, text) = row.map_err(db_error(&path))?;
            meta.insert(key, serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        Ok(meta)
    }

    pub fn meta_value(&self, key: &str) -> Result<Option<Value>, Error> {
        let path = self.path();
        let text: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(db_error(&path))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    pub fn set_meta(&self, key: &str, value: &Value) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value.to_string()],
            )
            .map_err(db_error(&self.path()))?;
        Ok(())
    }

    /// Commits one finished trial (replacing a stored one of the same number).
    pub fn put_trial(&self, t: &StoredTrial) -> Result<(), Error> {
        let json = |v: &Option<Value>| v.as_ref().map(Value::to_string);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO trials (number, window, params, seed, state,
                     objective_values, metrics, returns, error, duration_s, code_hash,
                     data_checksum, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    t.number as i64,
                    t.window.map(|w| w as i64),
                    t.params,
                    t.seed as i64,
                    t.state.as_str(),
                    t.objective_values
                        .as_ref()
                        .map(|v| serde_json::to_string(v).unwrap_or_default()),
                    json(&t.metrics),
                    json(&t.returns),
                    t.error,
                    t.duration_s,
                    t.code_hash,
                    t.data_checksum,
                    t.finished_at,
                ],
            )
            .map_err(db_error(&self.path()))?;
        Ok(())
    }

    /// Every stored trial, by number.
    pub fn trials(&self) -> Result<BTreeMap<u64, StoredTrial>, Error> {
        let path = self.path();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT number, window, params, seed, state, objective_values, metrics, returns,
                        error, duration_s, code_hash, data_checksum, finished_at
                 FROM trials ORDER BY number",
            )
            .map_err(db_error(&path))?;
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        let rows = stmt
            .query_map([], |row| {
                let state: String = row.get(4)?;
                Ok(StoredTrial {
                    number: row.get::<_, i64>(0)? as u64,
                    window: row.get::<_, Option<i64>>(1)?.map(|w| w as u64),
                    params: row.get(2)?,
                    seed: row.get::<_, i64>(3)? as u64,
                    state: TrialState::parse(&state).unwrap_or(TrialState::Failed),
                    objective_values: row
                        .get::<_, Option<String>>(5)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    metrics: parse(row.get(6)?),
                    returns: parse(row.get(7)?),
                    error: row.get(8)?,
                    duration_s: row.get::<_, Option<f64>>(9)?.unwrap_or(0.0),
                    code_hash: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
                    data_checksum: row.get::<_, Option<String>>(11)?.unwrap_or_default(),
                    finished_at: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
                })
            })
            .map_err(db_error(&path))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let trial = row.map_err(db_error(&path))?;
            out.insert(trial.number, trial);
        }
        Ok(out)
    }

    pub fn put_window(&self, w: &StoredWindow) -> Result<(), Error> {
        let json = |v: &Option<Value>| v.as_ref().map(Value::to_string);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO windows (number, train_start, train_end, test_start,
                     test_end, best_params, best_train_values, test_metrics, results_dir)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    w.number as i64,
                    w.train_start,
                    w.train_end,
                    w.test_start,
                    w.test_end,
                    w.best_params,
                    w.best_train_values
                        .as_ref()
                        .map(|v| serde_json::to_string(v).unwrap_or_default()),
                    json(&w.test_metrics),
                    w.results_dir,
                ],
            )
            .map_err(db_error(&self.path()))?;
        Ok(())
    }

    /// Stored windows by number.
    pub fn windows(&self) -> Result<BTreeMap<u64, StoredWindow>, Error> {
        let path = self.path();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT number, train_start, train_end, test_start, test_end, best_params,
                        best_train_values, test_metrics, results_dir FROM windows ORDER BY number",
            )
            .map_err(db_error(&path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StoredWindow {
                    number: row.get::<_, i64>(0)? as u64,
                    train_start: row.get(1)?,
                    train_end: row.get(2)?,
                    test_start: row.get(3)?,
                    test_end: row.get(4)?,
                    best_params: row.get(5)?,
                    best_train_values: row
                        .get::<_, Option<String>>(6)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    test_metrics: row
                        .get::<_, Option<String>>(7)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    results_dir: row.get(8)?,
                })
            })
            .map_err(db_error(&path))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let w = row.map_err(db_error(&path))?;
            out.insert(w.number, w);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u64) -> StoredTrial {
        StoredTrial {
            number,
            window: None,
            params: r#"{"fast": 5}"#.into(),
            seed: 7,
            state: TrialState::Complete,
            objective_values: Some(vec![1.5]),
            metrics: Some(serde_json::json!({"sharpe": 1.5, "net_profit": "12.30"})),
            returns: Some(serde_json::json!({"days": ["2024-01-02"], "values": [0.01]})),
            error: None,
            duration_s: 0.25,
            code_hash: "c".into(),
            data_checksum: "d".into(),
            finished_at: "2026-12-07T00:00:00Z".into(),
        }
    }

    #[test]
    fn trials_and_meta_round_trip_and_a_second_create_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = BTreeMap::new();
        meta.insert("method".to_string(), Value::from("grid"));
        let store = Store::create(dir.path(), &meta).unwrap();
        store.put_trial(&trial(0)).unwrap();
        let mut failed = trial(1);
        failed.state = TrialState::Failed;
        failed.objective_values = None;
        failed.error = Some("ZeroDivisionError".into());
        store.put_trial(&failed).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let trials = store.trials().unwrap();
        assert_eq!(trials[&0], trial(0));
        assert_eq!(trials[&1], failed);
        assert_eq!(store.meta().unwrap()["method"], Value::from("grid"));
        let err = Store::create(dir.path(), &meta).err().unwrap();
        assert!(err.to_string().contains("already holds a study"), "{err}");
    }

    #[test]
    fn opening_a_folder_without_a_study_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("holds no study"), "{err}");
    }
}
