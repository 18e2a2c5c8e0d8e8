//! The local market-data catalog: one folder holding Parquet partitions per (source, symbol,
//! timeframe) and an SQLite file describing them.
//!
//! ```text
//! <root>/catalog.sqlite                       datasets, partitions, intervals, findings
//! <root>/bars/<source>/<symbol>/<timeframe>/2024-01.<version>.parquet
//! ```
//!
//! Writers take an exclusive lock on `<root>/.lock`, write new partition files under names no
//! earlier version used, and commit the metadata after the files are synced; the files the
//! commit replaced are deleted afterwards. Readers use only what the metadata lists, so they
//! see the old or the new state, and a crash at any point leaves at worst unreferenced files,
//! which the next writer (or `data verify`) removes.

pub mod fetch;
mod findings;
mod meta;
pub mod resample;
pub mod store;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::data::{BarSeries, DataError};
use crate::model::format_timestamp;

pub use findings::OutlierRule;
pub use meta::SCHEMA_VERSION;
use store::{Bars, BarsRef, month_key};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database or a file could not be read or written.
    #[error("{0}")]
    Storage(String),
    #[error(transparent)]
    Data(#[from] DataError),
    /// A request the catalog cannot serve (no such dataset, bad values).
    #[error("{0}")]
    Invalid(String),
}

impl CatalogError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        CatalogError::Storage(format!("`{}`: {e}", path.display()))
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// One validation finding of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub kind: String,
    pub time_ns: Option<i64>,
    pub message: String,
}

/// One partition file of a dataset.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    /// `2024-01`.
    pub key: String,
    /// File name inside the dataset's folder.
    pub file: String,
    pub rows: usize,
    pub first_ns: i64,
    pub last_ns: i64,
    pub gaps: usize,
    pub bytes: u64,
    pub checksum: String,
}

/// A dataset as the metadata describes it.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    pub id: i64,
    pub source: String,
    pub symbol: String,
    pub timeframe: String,
    pub interval_ns: i64,
    /// Decimal places of open, high, low, close, volume.
    pub scales: [u32; 5],
    /// XXH3-128 over the partition checksums in order.
    pub checksum: String,
    /// Where the bars came from (the imported files, or the exchange).
    pub origin: String,
    /// When the data was last written (UTC, RFC 3339).
    pub fetched_at: String,
    pub partitions: Vec<PartitionInfo>,
    /// Covered time, half-open `[start, end)` UTC ns, sorted and disjoint.
    pub intervals: Vec<(i64, i64)>,
    pub findings: Vec<Finding>,
}

impl DatasetInfo {
    pub fn rows(&self) -> usize {
        self.partitions.iter().map(|p| p.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    pub fn first_ns(&self) -> Option<i64> {
        self.partitions.first().map(|p| p.first_ns)
    }

    pub fn last_ns(&self) -> Option<i64> {
        self.partitions.last().map(|p| p.last_ns)
    }

    /// Steps between consecutive bars longer than the interval, across partitions too.
    pub fn gaps(&self) -> usize {
        let inside: usize = self.partitions.iter().map(|p| p.gaps).sum();
        let between = self
            .partitions
            .windows(2)
            .filter(|w| w[1].first_ns - w[0].last_ns > self.interval_ns)
            .count();
        inside + between
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// What identifies the dataset's bars: names, checksum, first and last bar, rows (the
    /// entry a run records in `metrics.json`, and the core of `data list --json`).
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "checksum": self.checksum,
            "first": self.first_ns().map(format_timestamp),
            "last": self.last_ns().map(format_timestamp),
            "rows": self.rows(),
        })
    }

    /// `source symbol timeframe`, as commands print a dataset.
    pub fn label(&self) -> String {
        format!("{} {} {}", self.source, self.symbol, self.timeframe)
    }
}

/// Which datasets a command means: a symbol, optionally narrowed by timeframe and source.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub symbol: Option<String>,
    pub timeframe: Option<String>,
    pub source: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub dataset: DatasetInfo,
    pub bars: usize,
    pub partitions_written: usize,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub datasets: usize,
    pub partitions: usize,
    /// Problems that make data unusable (a missing or changed file, overlapping intervals).
    pub problems: Vec<String>,
    /// Files nothing referred to (left by an interrupted writer), removed.
    pub removed: Vec<PathBuf>,
}

/// An exclusive writer lock on the catalog, released when dropped (or when the process dies).
struct WriteLock {
    /// Held open for the lock's lifetime: closing it releases the lock.
    _file: File,
}

impl WriteLock {
    fn take(root: &Path) -> Result<Self, CatalogError> {
        let path = root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CatalogError::io(&path, e))?;
        // SAFETY: `flock` on a file descriptor this `File` owns and keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(CatalogError::io(&path, std::io::Error::last_os_error()));
        }
        Ok(WriteLock { _file: file })
    }
}

/// For crash tests: `RUSTYBT_TEST_CRASH=<point>` aborts the process there, as `kill -9`
/// would, leaving whatever was half done.
pub(crate) fn crash_point(point: &str) {
    if std::env::var("RUSTYBT_TEST_CRASH").is_ok_and(|p| p == point) {
        std::process::abort();
    }
}

pub struct Catalog {
    root: PathBuf,
    db: Connection,
}

impl Catalog {
    /// `RUSTYBT_DATA`, else `~/.rustybt/data`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("RUSTYBT_DATA").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".rustybt").join("data")
    }

    /// Opens (creating if needed) the catalog in `root`.
    pub fn open(root: &Path) -> Result<Self, CatalogError> {
        std::fs::create_dir_all(root).map_err(|e| CatalogError::io(root, e))?;
        let db = meta::open(&root.join("catalog.sqlite"))?;
        Ok(Self {
            root: root.to_path_buf(),
            db,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dataset_dir(&self, source: &str, symbol: &str, timeframe: &str) -> PathBuf {
        self.root
            .join("bars")
            .join(store::file_name_part(source))
            .join(store::file_name_part(symbol))
            .join(store::file_name_part(timeframe))
    }

    pub fn datasets(&self) -> Result<Vec<DatasetInfo>, CatalogError> {
        meta::datasets(&self.db)
    }

    /// The datasets a selector matches.
    pub fn select(&self, selector: &Selector) -> Result<Vec<DatasetInfo>, CatalogError> {
        meta::datasets_matching(
            &self.db,
            selector.symbol.as_deref(),
            selector.timeframe.as_deref(),
            selector.source.as_deref(),
        )
    }

    /// Stores `series` as the bars of (source, its symbol, timeframe): months it touches are
    /// rewritten with its bars replacing stored ones in its time span.
    pub fn import(
        &mut self,
        source: &str,
        timeframe: &str,
        interval_ns: i64,
        series: &BarSeries,
        origin: &str,
    ) -> Result<ImportReport, CatalogError> {
        self.import_covering(source, timeframe, interval_ns, series, origin, None)
    }

    /// As [`Catalog::import`], and the dataset covers `span` (half-open, UTC ns, holding every
    /// bar of `series`) from now on: stored bars in it are replaced, and the time in it without
    /// a bar counts as known to have none (a fetch asked the source for it). `None`: the span
    /// from the first bar to the end of the last.
    pub fn import_covering(
        &mut self,
        source: &str,
        timeframe: &str,
        interval_ns: i64,
        series: &BarSeries,
        origin: &str,
        span: Option<(i64, i64)>,
    ) -> Result<ImportReport, CatalogError> {
        if series.is_empty() {
            return Err(CatalogError::Invalid(format!(
                "no bars of {} to import",
                series.symbol
            )));
        }
        let _lock = WriteLock::take(&self.root)?;
        let symbol = series.symbol.clone();
        let existing = self.select(&Selector {
            symbol: Some(symbol.clone()),
            timeframe: Some(timeframe.to_owned()),
            source: Some(source.to_owned()),
        })?;
        // Only this dataset's folder (names map one-to-one to folders): a write must not cost
        // a walk of the whole catalog. Other datasets' leftovers are harmless to readers, and
        // their next write or `data verify` removes them.
        self.remove_orphans_in(&self.dataset_dir(source, &symbol, timeframe), &existing)?;
        let existing = existing.into_iter().next();
        let series_scales = [
            series.open.exact.scale(),
            series.high.exact.scale(),
            series.low.exact.scale(),
            series.close.exact.scale(),
            series.volume.exact.scale(),
        ];
        let old_scales = existing.as_ref().map_or([0; 5], |d| d.scales);
        let scales: [u32; 5] = std::array::from_fn(|k| series_scales[k].max(old_scales[k]));
        // At the dataset's scales the parsed columns are written as they are; only a series
        // with fewer decimal places than the dataset is rescaled into a copy.
        let rescaled = match series_scales == scales {
            true => None,
            false => Some(Bars::from_series(series, scales)?),
        };
        let new_bars = rescaled
            .as_ref()
            .map_or_else(|| BarsRef::of_series(series), Bars::view);
        let dir = self.dataset_dir(source, &symbol, timeframe);

        // Months with new bars, plus every stored month if the scales grew (one scale per
        // column across files keeps the folder readable as one table).
        let mut months: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut lo = 0;
        while lo < new_bars.len() {
            let key = month_key(new_bars.time[lo]);
            let end = store::month_end(new_bars.time[lo]);
            let hi = lo + new_bars.time[lo..].partition_point(|&t| t < end);
            months.insert(key, (lo, hi));
            lo = hi;
        }
        let stored: BTreeMap<String, PartitionInfo> = existing
            .as_ref()
            .map(|d| {
                d.partitions
                    .iter()
                    .map(|p| (p.key.clone(), p.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut touched: Vec<String> = months.keys().cloned().collect();
        // A month inside the new span with no new bar loses its stored bars there.
        let (first_bar, last_bar) = (
            new_bars.time[0],
            *new_bars.time.last().expect("invariant: not empty"),
        );
        let covered = span.unwrap_or((first_bar, last_bar + interval_ns));
        if covered.0 > first_bar || covered.1 <= last_bar {
            return Err(CatalogError::Invalid(format!(
                "the bars of {symbol} lie outside the span they are imported for"
            )));
        }
        // The stored bars replaced: those in `[first, last]`.
        let (first, last) = match span {
            Some((s, e)) => (s, e - 1),
            None => (first_bar, last_bar),
        };
        for (key, p) in &stored {
            let overlaps = p.first_ns <= last && p.last_ns >= first;
            if (overlaps || scales != old_scales) && !touched.contains(key) {
                touched.push(key.clone());
            }
        }
        touched.sort();

        let version = format!(
            "{:x}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let mut written = Vec::new();
        let mut findings = Vec::new();
        let mut emptied = Vec::new();
        for key in &touched {
            let fresh = months.get(key).map(|&(lo, hi)| new_bars.slice(lo, hi));
            let old = match stored.get(key) {
                Some(p) => {
                    let s = store::read(&[dir.join(&p.file)], &symbol, None, None)?;
                    Some(Bars::from_series(&s, scales)?)
                }
                None => None,
            };
            let merged = match (old, fresh) {
                (Some(old), Some(fresh)) => Some(old.without_span(first, last).merged(fresh)),
                (Some(old), None) => Some(old.without_span(first, last)),
                (None, Some(_)) => None,
                (None, None) => continue,
            };
            let bars = match (&merged, fresh) {
                (Some(merged), _) => merged.view(),
                (None, Some(fresh)) => fresh,
                (None, None) => continue,
            };
            if bars.is_empty() {
                emptied.push(key.clone());
                continue;
            }
            let name = format!("{key}.{version}.parquet");
            let metadata = [
                ("rustybt.schema_version", SCHEMA_VERSION.to_string()),
                ("rustybt.source", source.to_owned()),
                ("rustybt.symbol", symbol.clone()),
                ("rustybt.timeframe", timeframe.to_owned()),
            ];
            let (bytes, checksum) = store::write_partition(&dir, &name, bars, scales, &metadata)?;
            for f in findings::check(bars, scales, interval_ns, OutlierRule::default()) {
                findings.push((key.clone(), f));
            }
            written.push(PartitionInfo {
                key: key.clone(),
                file: name,
                rows: bars.len(),
                first_ns: bars.time[0],
                last_ns: *bars.time.last().expect("invariant: not empty"),
                gaps: bars.gaps(interval_ns),
                bytes,
                checksum,
            });
        }
        crash_point("data-written");

        let mut intervals = existing
            .as_ref()
            .map(|d| d.intervals.clone())
            .unwrap_or_default();
        intervals.push(covered);
        let intervals = merge_intervals(intervals);
        let info = DatasetInfo {
            id: 0,
            source: source.to_owned(),
            symbol: symbol.clone(),
            timeframe: timeframe.to_owned(),
            interval_ns,
            scales,
            checksum: String::new(),
            origin: origin.to_owned(),
            fetched_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            partitions: Vec::new(),
            intervals: Vec::new(),
            findings: Vec::new(),
        };
        let rewritten: Vec<String> = touched.clone();
        meta::commit(
            &mut self.db,
            &meta::Commit {
                info: &info,
                partitions: &written,
                intervals: &intervals,
                findings: &findings,
                rewritten: &rewritten,
                emptied: &emptied,
            },
        )?;
        crash_point("committed");
        // The versions just replaced are no longer referenced.
        for key in &touched {
            if let Some(p) = stored.get(key) {
                let _ = std::fs::remove_file(dir.join(&p.file));
            }
        }
        let dataset = self
            .select(&Selector {
                symbol: Some(symbol),
                timeframe: Some(timeframe.to_owned()),
                source: Some(source.to_owned()),
            })?
            .into_iter()
            .next()
            .ok_or_else(|| CatalogError::Storage("the dataset vanished after its commit".into()))?;
        Ok(ImportReport {
            dataset,
            bars: series.len(),
            partitions_written: written.len(),
        })
    }

    /// A dataset's bars with open time in `start..end`, every partition checked against its
    /// checksum first.
    pub fn load(
        &self,
        dataset: &DatasetInfo,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
    ) -> Result<BarSeries, CatalogError> {
        let dir = self.dataset_dir(&dataset.source, &dataset.symbol, &dataset.timeframe);
        let paths: Vec<PathBuf> = dataset
            .partitions
            .iter()
            .filter(|p| {
                start_ns.is_none_or(|s| p.last_ns >= s) && end_ns.is_none_or(|e| p.first_ns < e)
            })
            .map(|p| dir.join(&p.file))
            .collect();
        store::read(&paths, &dataset.symbol, start_ns, end_ns)
    }

    /// The files of a dataset's partitions, oldest first.
    pub fn files(&self, dataset: &DatasetInfo) -> Vec<PathBuf> {
        let dir = self.dataset_dir(&dataset.source, &dataset.symbol, &dataset.timeframe);
        dataset
            .partitions
            .iter()
            .map(|p| dir.join(&p.file))
            .collect()
    }

    /// Checks every partition's file against its size and checksum and that it reads, that
    /// intervals do not overlap and cover the partitions; removes unreferenced files.
    pub fn verify(&mut self) -> Result<VerifyReport, CatalogError> {
        let _lock = WriteLock::take(&self.root)?;
        let mut report = VerifyReport {
            removed: self.remove_orphans()?,
            ..Default::default()
        };
        for d in self.datasets()? {
            report.datasets += 1;
            for w in d.intervals.windows(2) {
                if w[1].0 < w[0].1 {
                    report.problems.push(format!(
                        "{}: intervals overlap at {}",
                        d.label(),
                        format_timestamp(w[1].0)
                    ));
                }
            }
            for (p, path) in d.partitions.iter().zip(self.files(&d)) {
                report.partitions += 1;
                let covered = d
                    .intervals
                    .iter()
                    .any(|&(s, e)| s <= p.first_ns && p.last_ns < e);
                if !covered {
                    report.problems.push(format!(
                        "{}: partition {} lies outside the covered intervals",
                        d.label(),
                        p.key
                    ));
                }
                match store::checksum(&path) {
                    Err(e) => report.problems.push(format!("{}: partition {}: {e}", d.label(), p.key)),
                    Ok((bytes, sum)) if bytes != p.bytes || sum != p.checksum => report.problems.push(format!(
                        "{}: `{}` has changed since it was written (checksum {sum}, expected {})",
                        d.label(),
                        path.display(),
                        p.checksum
                    )),
                    Ok(_) => match store::read(std::slice::from_ref(&path), &d.symbol, None, None) {
                        Ok(s) if s.len() == p.rows => {}
                        Ok(s) => report.problems.push(format!("{}: partition {} has {} rows, expected {}", d.label(), p.key, s.len(), p.rows)),
                        Err(e) => report.problems.push(format!("{}: {e}", d.label())),
                    },
                }
            }
        }
        Ok(report)
    }

    /// Deletes the datasets a selector matches; returns them.
    pub fn remove(&mut self, selector: &Selector) -> Result<Vec<DatasetInfo>, CatalogError> {
        let _lock = WriteLock::take(&self.root)?;
        let chosen = self.select(selector)?;
        for d in &chosen {
            meta::remove(&mut self.db, d.id)?;
            meta::remove_orphan_events(&self.db, &d.source, &d.symbol)?;
            let dir = self.dataset_dir(&d.source, &d.symbol, &d.timeframe);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(chosen)
    }

    /// The catalog's size limit in bytes (`data prune --max-size`), if one was set.
    pub fn max_size(&self) -> Result<Option<u64>, CatalogError> {
        Ok(meta::info(&self.db, "max_size")?.and_then(|v| v.parse().ok()))
    }

    pub fn set_max_size(&mut self, bytes: u64) -> Result<(), CatalogError> {
        meta::set_info(&self.db, "max_size", &bytes.to_string())
    }

    /// Records that a run read these datasets now: eviction removes the least recently used.
    pub fn touch(&mut self, datasets: &[&DatasetInfo]) -> Result<(), CatalogError> {
        let ids: Vec<i64> = datasets.iter().map(|d| d.id).collect();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        meta::touch(&self.db, &ids, &now)
    }

    /// Removes least-recently-used datasets (last read by a run, else last written) until the
    /// catalog's bars take at most `max_bytes`; datasets in `keep` (those just written) stay.
    /// Returns the removed datasets with when they were last used, oldest first.
    pub fn prune(
        &mut self,
        max_bytes: u64,
        keep: &[i64],
    ) -> Result<Vec<(DatasetInfo, String)>, CatalogError> {
        let all = self.datasets()?;
        let mut total: u64 = all.iter().map(DatasetInfo::bytes).sum();
        let used = meta::last_used(&self.db)?;
        // Oldest use first; at the same time, a dataset no run has read goes first.
        let mut order: Vec<((i64, bool, i64), String, DatasetInfo)> = all
            .into_iter()
            .filter(|d| !keep.contains(&d.id))
            .map(|d| {
                let (when, read) = used.get(&d.id).cloned().unwrap_or_default();
                let at = chrono::DateTime::parse_from_rfc3339(&when)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .unwrap_or(i64::MIN);
                ((at, read, d.id), when, d)
            })
            .collect();
        order.sort_by_key(|o| o.0);
        let mut removed = Vec::new();
        for (_, when, d) in order {
            if total <= max_bytes {
                break;
            }
            total = total.saturating_sub(d.bytes());
            self.remove(&Selector {
                symbol: Some(d.symbol.clone()),
                timeframe: Some(d.timeframe.clone()),
                source: Some(d.source.clone()),
            })?;
            removed.push((d, when));
        }
        Ok(removed)
    }

    /// Stores splits and dividends of (source, symbol) beside its bars (see `data show`).
    pub fn store_events(
        &mut self,
        source: &str,
        symbol: &str,
        events: &[fetch::Event],
    ) -> Result<usize, CatalogError> {
        let _lock = WriteLock::take(&self.root)?;
        meta::store_events(&mut self.db, source, symbol, events)
    }

    /// The splits and dividends of (source, symbol), oldest first: (time ns, kind, value).
    pub fn events(
        &self,
        source: &str,
        symbol: &str,
    ) -> Result<Vec<(i64, String, String)>, CatalogError> {
        meta::events(&self.db, source, symbol)
    }

    /// Files under `bars/` that no partition refers to: temporary files and versions left by
    /// an interrupted writer. Only called under the write lock.
    fn remove_orphans(&self) -> Result<Vec<PathBuf>, CatalogError> {
        self.remove_orphans_in(&self.root.join("bars"), &self.datasets()?)
    }

    /// Files under `dir` that none of `datasets` (every dataset with files there) references:
    /// temporary files of an interrupted write, partitions an interrupted replacement left.
    fn remove_orphans_in(
        &self,
        dir: &Path,
        datasets: &[DatasetInfo],
    ) -> Result<Vec<PathBuf>, CatalogError> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let referenced: std::collections::HashSet<PathBuf> =
            datasets.iter().flat_map(|d| self.files(d)).collect();
        let mut removed = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !referenced.contains(&path) && std::fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        removed.sort();
        Ok(removed)
    }
}

impl Bars {
    /// `self` without the bars in `[first, last]`.
    fn without_span(&self, first: i64, last: i64) -> Bars {
        let lo = self.time.partition_point(|&t| t < first);
        let hi = self.time.partition_point(|&t| t <= last);
        let mut out = self.slice(0, lo);
        let tail = self.slice(hi, self.len());
        out.time.extend_from_slice(&tail.time);
        for (o, c) in out.columns.iter_mut().zip(&tail.columns) {
            o.extend_from_slice(c);
        }
        out
    }
}

/// What a backtest asks of the catalog.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub symbols: &'a [String],
    /// `None`: the symbol's only timeframe.
    pub timeframe: Option<&'a str>,
    /// `None`: the symbol's only source.
    pub source: Option<&'a str>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// Run on datasets whose validation found errors.
    pub allow_bad_data: bool,
}

/// The bars of a run and a record of where they came from.
#[derive(Debug)]
pub struct RunLoad {
    pub series: Vec<BarSeries>,
    /// The partition files read.
    pub files: Vec<PathBuf>,
    /// `[{source, symbol, timeframe, checksum, first, last, rows}]` for `metrics.json`: a rerun
    /// with the same checksums ran on the same data.
    pub used: serde_json::Value,
    /// The splits and dividends of the loaded symbols: (symbol, ex-date ns, kind, value).
    pub events: Vec<(String, i64, String, String)>,
}

/// Loads the datasets of a run, refusing a missing, ambiguous or (unless allowed) erroneous one.
pub fn load_for_run(root: &Path, request: &RunRequest) -> Result<RunLoad, CatalogError> {
    let mut catalog = Catalog::open(root)?;
    let mut read: Vec<DatasetInfo> = Vec::new();
    let mut out = RunLoad {
        series: Vec::new(),
        files: Vec::new(),
        used: serde_json::Value::Array(Vec::new()),
        events: Vec::new(),
    };
    let mut used = Vec::new();
    for symbol in request.symbols {
        let selector = Selector {
            symbol: Some(symbol.clone()),
            timeframe: request.timeframe.map(str::to_owned),
            source: request.source.map(str::to_owned),
        };
        let mut found = catalog.select(&selector)?;
        let dataset = match found.len() {
            1 => found.remove(0),
            0 => {
                let have: Vec<String> = catalog
                    .select(&Selector {
                        symbol: Some(symbol.clone()),
                        ..Default::default()
                    })?
                    .iter()
                    .map(DatasetInfo::label)
                    .collect();
                let tf = request
                    .timeframe
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default();
                return Err(CatalogError::Invalid(if have.is_empty() {
                    format!(
                        "the catalog `{}` has no data of `{symbol}`; add it with `rustybt data import FILE --symbol {symbol}{}`",
                        root.display(),
                        request
                            .timeframe
                            .map(|t| format!(" --timeframe {t}"))
                            .unwrap_or_default()
                    )
                } else {
                    format!(
                        "the catalog has no `{symbol}`{tf} dataset; it has: {}",
                        have.join(", ")
                    )
                }));
            }
            _ => {
                let have: Vec<String> = found.iter().map(|d| d.label()).collect();
                return Err(CatalogError::Invalid(format!(
                    "the catalog has several datasets of `{symbol}`: {}; choose one with `--timeframe` and `--source`",
                    have.join(", ")
                )));
            }
        };
        let errors: Vec<&Finding> = dataset.errors().collect();
        if !errors.is_empty() && !request.allow_bad_data {
            let listed: Vec<&str> = errors.iter().take(3).map(|f| f.message.as_str()).collect();
            let dir = catalog.dataset_dir(&dataset.source, &dataset.symbol, &dataset.timeframe);
            return Err(CatalogError::Data(
                DataError::invalid(
                    &dir,
                    None,
                    None,
                    format!(
                        "{} has {} validation error{}: {}",
                        dataset.label(),
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" },
                        listed.join("; ")
                    ),
                )
                .with_hint(Some(format!(
                    "`rustybt data show {}` lists them; `--allow-bad-data` runs anyway",
                    dataset.symbol
                ))),
            ));
        }
        let mut series = catalog.load(&dataset, request.start_ns, request.end_ns)?;
        series.source = catalog.dataset_dir(&dataset.source, &dataset.symbol, &dataset.timeframe);
        out.files.extend(catalog.files(&dataset));
        let mut entry = dataset.summary_json();
        entry["catalog"] = root.display().to_string().into();
        used.push(entry);
        out.series.push(series);
        for (time, kind, value) in catalog.events(&dataset.source, &dataset.symbol)? {
            out.events.push((dataset.symbol.clone(), time, kind, value));
        }
        read.push(dataset);
    }
    out.used = serde_json::Value::Array(used);
    // Best effort: a read-only catalog still runs, it only forgets what was used when.
    let _ = catalog.touch(&read.iter().collect::<Vec<_>>());
    Ok(out)
}

/// A size as `500MB`, `20GB`, `1.5GB`, `1024` (bytes); units B, KB, MB, GB, TB are powers of
/// 1024 (as `data list` prints sizes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown size unit (use B, KB, MB, GB or TB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `500MB` or `20GB`"))?;
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// Sorted, disjoint union of half-open intervals (touching ones joined).
pub fn merge_intervals(mut intervals: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    intervals.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
    for (s, e) in intervals {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The most common step between bars (the bar interval), or `None` with fewer than two bars.
pub fn infer_interval(time: &[i64]) -> Option<i64> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for w in time.windows(2).take(100_000) {
        *counts.entry(w[1] - w[0]).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(step, n)| (n, -step))
        .map(|(step, _)| step)
}

/// A timeframe label for an interval: `1m`, `15m`, `4h`, `1d`, `30s`.
pub fn timeframe_label(interval_ns: i64) -> String {
    const S: i64 = 1_000_000_000;
    for (unit, ns) in [("d", 86_400 * S), ("h", 3_600 * S), ("m", 60 * S), ("s", S)] {
        if interval_ns % ns == 0 {
            return format!("{}{unit}", interval_ns / ns);
        }
    }
    format!("{interval_ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Column;
    use crate::market::BarColumn;

    const MIN: i64 = 60_000_000_000;
    const T0: i64 = 1_577_836_800_000_000_000; // 2020-01-01

    fn series(symbol: &str, times: &[i64], price: &str) -> BarSeries {
        let texts: Vec<&str> = times.iter().map(|_| price).collect();
        let col = || Column::parse_texts(&texts).expect("column");
        BarSeries {
            symbol: symbol.into(),
            source: PathBuf::from("test"),
            time: BarColumn::from_vec(times.to_vec()),
            open: col(),
            high: col(),
            low: col(),
            close: col(),
            volume: col(),
        }
    }

    #[test]
    fn import_merge_load_and_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        // Two months: the last minutes of January and the first of February.
        let jan_end = T0 + 31 * 1440 * MIN;
        let times: Vec<i64> = (-3..3).map(|i| jan_end + i * MIN).collect();
        let r = cat
            .import(
                "file",
                "1m",
                MIN,
                &series("BTC/USDT", &times, "100.5"),
                "a.csv",
            )
            .expect("import");
        assert_eq!((r.bars, r.partitions_written), (6, 2));
        assert_eq!(r.dataset.intervals, vec![(times[0], times[5] + MIN)]);
        // A second import over part of February at a finer scale rewrites both months.
        let later: Vec<i64> = (2..5).map(|i| jan_end + i * MIN).collect();
        let r = cat
            .import(
                "file",
                "1m",
                MIN,
                &series("BTC/USDT", &later, "101.25"),
                "b.csv",
            )
            .expect("import");
        assert_eq!(r.dataset.rows(), 8);
        assert_eq!(r.dataset.scales, [2; 5]);
        let loaded = cat.load(&r.dataset, None, None).expect("load");
        assert_eq!(loaded.len(), 8);
        assert_eq!(loaded.close.exact.get(0).to_string(), "100.50");
        assert_eq!(loaded.close.exact.get(7).to_string(), "101.25");
        assert_eq!(&loaded.time[..5], &times[..5]);
        let part = cat
            .load(&r.dataset, Some(jan_end), Some(jan_end + 3 * MIN))
            .expect("range");
        assert_eq!(part.len(), 3);
        let v = cat.verify().expect("verify");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.datasets, v.partitions), (1, 2));
        // Files of the first import were replaced and removed.
        let files: Vec<_> = walk(dir.path());
        assert_eq!(
            files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .count(),
            2,
            "{files:?}"
        );
        // A changed file is a problem verify names.
        let f = cat.files(&r.dataset)[0].clone();
        std::fs::write(&f, b"garbage").expect("write");
        let v = cat.verify().expect("verify");
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].contains("has changed"), "{:?}", v.problems);
        assert_eq!(
            cat.remove(&Selector {
                symbol: Some("BTC/USDT".into()),
                ..Default::default()
            })
            .expect("rm")
            .len(),
            1
        );
        assert!(cat.datasets().expect("list").is_empty());
    }

    #[test]
    fn orphans_are_removed_by_the_next_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let d = dir.path().join("bars/file/X/1m");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(".2020-01.1.parquet.tmp"), b"half").expect("write");
        let v = cat.verify().expect("verify");
        assert_eq!(v.removed.len(), 1);
    }

    #[test]
    fn an_import_sweeps_only_its_own_datasets_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let times: Vec<i64> = (0..3).map(|i| T0 + i * MIN).collect();
        for symbol in ["A", "B"] {
            cat.import("file", "1m", MIN, &series(symbol, &times, "1.5"), "x")
                .expect("import");
        }
        let leftover = |symbol: &str| {
            let path = dir
                .path()
                .join(format!("bars/file/{symbol}/1m/.2020-01.9.parquet.tmp"));
            std::fs::write(&path, b"half").expect("write");
            path
        };
        let (a, b) = (leftover("A"), leftover("B"));
        let later: Vec<i64> = (3..5).map(|i| T0 + i * MIN).collect();
        cat.import("file", "1m", MIN, &series("A", &later, "1.6"), "y")
            .expect("import");
        assert!(!a.exists(), "the written dataset's leftover is removed");
        assert!(b.exists(), "another dataset's folder is not walked");
        assert_eq!(cat.verify().expect("verify").removed, vec![b]);
        assert!(cat.verify().expect("verify").problems.is_empty());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out
    }

    /// 1M one-minute bars: import, then load them back (the figure in docs/performance.md).
    /// `cargo test --release --lib -- --ignored --nocapture load_one_million_bars`
    /// A run's request resolved against a catalog of 10,000 datasets (issue 14: ≤ 5 ms), and
    /// an import into it (which must not walk the whole catalog).
    /// `cargo test --release --lib -- --ignored --nocapture resolve_among_ten_thousand`
    #[test]
    #[ignore]
    fn resolve_among_ten_thousand_datasets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let times: Vec<i64> = (0..10).map(|i| T0 + i * MIN).collect();
        let started = std::time::Instant::now();
        for k in 0..10_000 {
            cat.import(
                "file",
                "1m",
                MIN,
                &series(&format!("S{k:05}"), &times, "100.5"),
                "generated",
            )
            .expect("import");
        }
        let building = started.elapsed();
        let symbols = vec!["S04321".to_string()];
        let request = RunRequest {
            symbols: &symbols,
            timeframe: None,
            source: None,
            start_ns: None,
            end_ns: None,
            allow_bad_data: false,
        };
        let mut best = std::time::Duration::MAX;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let load = load_for_run(dir.path(), &request).expect("resolve");
            best = best.min(started.elapsed());
            assert_eq!(load.series[0].len(), 10);
        }
        let started = std::time::Instant::now();
        cat.import(
            "file",
            "1m",
            MIN,
            &series("S04321", &[T0 + 10 * MIN], "101"),
            "more",
        )
        .expect("append");
        let append = started.elapsed();
        println!(
            "10,000 datasets built in {:.1} s; open, resolve and load one: {:.2} ms (best of 20); \
             an append into it: {:.1} ms",
            building.as_secs_f64(),
            best.as_secs_f64() * 1000.0,
            append.as_secs_f64() * 1000.0
        );
    }

    /// One day of one-minute bars appended to a five-year series (issue 14: ≤ 100 ms; only the
    /// touched monthly partition is rewritten).
    /// `cargo test --release --lib -- --ignored --nocapture append_one_day`
    #[test]
    #[ignore]
    fn append_one_day_to_five_years() {
        let day = 1440i64;
        let n = 5 * 365 * day;
        let texts: Vec<String> = (0..n)
            .map(|i| format!("{}.{:02}", 100 + i % 50, i % 100))
            .collect();
        let col = |t: &[String]| Column::parse_texts(t).expect("column");
        let five_years = BarSeries {
            symbol: "LONG".into(),
            source: PathBuf::from("test"),
            time: BarColumn::from_vec((0..n).map(|i| T0 + i * MIN).collect()),
            open: col(&texts),
            high: col(&texts),
            low: col(&texts),
            close: col(&texts),
            volume: col(&texts),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        cat.import("file", "1m", MIN, &five_years, "generated")
            .expect("import");
        let mut times = Vec::new();
        let mut best = std::time::Duration::MAX;
        for d in 0..5 {
            let first = n + d * day;
            let texts = &texts[..day as usize];
            let next_day = BarSeries {
                symbol: "LONG".into(),
                source: PathBuf::from("test"),
                time: BarColumn::from_vec((first..first + day).map(|i| T0 + i * MIN).collect()),
                open: col(texts),
                high: col(texts),
                low: col(texts),
                close: col(texts),
                volume: col(texts),
            };
            let started = std::time::Instant::now();
            let r = cat
                .import("file", "1m", MIN, &next_day, "one more day")
                .expect("append");
            let took = started.elapsed();
            best = best.min(took);
            times.push(format!("{:.1}", took.as_secs_f64() * 1000.0));
            assert_eq!(r.partitions_written, 1);
            assert_eq!(r.dataset.rows(), (n + (d + 1) * day) as usize);
        }
        println!(
            "append one day to {n} bars (five years): {} ms (best {:.1} ms)",
            times.join(", "),
            best.as_secs_f64() * 1000.0
        );
    }

    #[test]
    #[ignore]
    fn load_one_million_bars() {
        let n = 1_000_000i64;
        let times: Vec<i64> = (0..n).map(|i| T0 + i * MIN).collect();
        let texts: Vec<String> = (0..n)
            .map(|i| format!("{}.{:02}", 100 + i % 50, i % 100))
            .collect();
        let col = || Column::parse_texts(&texts).expect("column");
        let s = BarSeries {
            symbol: "BIG".into(),
            source: PathBuf::from("test"),
            time: BarColumn::from_vec(times),
            open: col(),
            high: col(),
            low: col(),
            close: col(),
            volume: col(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let started = std::time::Instant::now();
        let r = cat
            .import("file", "1m", MIN, &s, "generated")
            .expect("import");
        let import = started.elapsed();
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let loaded = cat.load(&r.dataset, None, None).expect("load");
            best = best.min(started.elapsed());
            assert_eq!(loaded.len(), n as usize);
        }
        println!(
            "import of 1M bars: {:.3} s; load of 1M bars: {:.1} ms (best of 5); {} partitions, {:.1} MiB",
            import.as_secs_f64(),
            best.as_secs_f64() * 1000.0,
            r.dataset.partitions.len(),
            r.dataset.bytes() as f64 / f64::from(1u32 << 20)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5 gb"), Ok(3 << 29));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn prune_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let times: Vec<i64> = (0..50).map(|i| T0 + i * MIN).collect();
        for sym in ["A", "B", "C"] {
            cat.import("file", "1m", MIN, &series(sym, &times, "100.5"), "x")
                .expect("import");
        }
        let all = cat.datasets().expect("list");
        let one = all[0].bytes();
        // A run reads A: B (oldest written, never read) goes first, then C.
        cat.touch(&[&all[0]]).expect("touch");
        let removed = cat.prune(2 * one, &[]).expect("prune");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].0.symbol, "B");
        let removed = cat.prune(0, &[all[2].id]).expect("prune");
        assert_eq!(removed.len(), 1, "C is kept, A goes");
        assert_eq!(removed[0].0.symbol, "A");
        let left: Vec<String> = cat
            .datasets()
            .expect("list")
            .into_iter()
            .map(|d| d.symbol)
            .collect();
        assert_eq!(left, vec!["C"]);
    }

    #[test]
    fn intervals_and_timeframes() {
        assert_eq!(
            merge_intervals(vec![(5, 7), (1, 3), (3, 4), (6, 9)]),
            vec![(1, 4), (5, 9)]
        );
        assert_eq!(infer_interval(&[0, 60, 120, 300, 360]), Some(60));
        assert_eq!(timeframe_label(MIN), "1m");
        assert_eq!(timeframe_label(4 * 60 * MIN), "4h");
        assert_eq!(timeframe_label(1440 * MIN), "1d");
    }
}
