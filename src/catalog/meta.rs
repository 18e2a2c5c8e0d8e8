//! The catalog's SQLite metadata: datasets, their partitions and covered intervals, checksums
//! and validation findings. WAL mode, so readers keep the last committed state while a writer
//! works; every change of a dataset is one transaction, committed after its files are on disk.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{CatalogError, DatasetInfo, Finding, PartitionInfo, Severity};

/// Version of the layout of the files and tables; a catalog of a newer version is refused.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets(
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    interval_ns INTEGER NOT NULL,
    scales TEXT NOT NULL,
    checksum TEXT NOT NULL,
    origin TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    UNIQUE(source, symbol, timeframe));
CREATE TABLE IF NOT EXISTS partitions(
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    file TEXT NOT NULL,
    rows INTEGER NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    gaps INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    PRIMARY KEY(dataset_id, key));
CREATE TABLE IF NOT EXISTS intervals(
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    PRIMARY KEY(dataset_id, start_ns));
CREATE TABLE IF NOT EXISTS findings(
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    partition TEXT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ns INTEGER,
    message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    source TEXT NOT NULL,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY(source, symbol, kind, time_ns));
CREATE INDEX IF NOT EXISTS datasets_by_symbol ON datasets(symbol);
CREATE INDEX IF NOT EXISTS findings_by_dataset ON findings(dataset_id);
CREATE TABLE IF NOT EXISTS usage(
    dataset_id INTEGER PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
    used_at TEXT NOT NULL);
";

fn sql(e: rusqlite::Error) -> CatalogError {
    CatalogError::Storage(e.to_string())
}

pub fn open(path: &Path) -> Result<Connection, CatalogError> {
    let db = Connection::open(path).map_err(|e| {
        CatalogError::Storage(format!(
            "cannot open the catalog database `{}`: {e}",
            path.display()
        ))
    })?;
    db.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql)?;
    db.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    db.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    db.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
    db.execute_batch(SCHEMA).map_err(sql)?;
    let version: Option<String> = db
        .query_row(
            "SELECT value FROM info WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    match version.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            db.execute(
                "INSERT OR REPLACE INTO info(key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )
            .map_err(sql)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(CatalogError::Storage(format!(
                "the catalog `{}` has schema version {v}, newer than this rustybt's {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Some(_) => {}
    }
    Ok(db)
}

/// Everything needed to commit one import: the dataset row, the partitions written (replacing
/// those of the same keys), the covered intervals and the findings of those partitions.
pub struct Commit<'a> {
    pub info: &'a DatasetInfo,
    pub partitions: &'a [PartitionInfo],
    pub intervals: &'a [(i64, i64)],
    pub findings: &'a [(String, Finding)],
    /// Partitions whose findings are replaced (every partition written).
    pub rewritten: &'a [String],
    /// Partitions left without bars, deleted.
    pub emptied: &'a [String],
}

/// Commits an import; returns the dataset id.
pub fn commit(db: &mut Connection, c: &Commit) -> Result<i64, CatalogError> {
    let tx = db.transaction().map_err(sql)?;
    let d = c.info;
    let scales = d.scales.map(|s| s.to_string()).join(",");
    tx.execute(
        "INSERT INTO datasets(source, symbol, timeframe, interval_ns, scales, checksum, origin, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7)
         ON CONFLICT(source, symbol, timeframe) DO UPDATE SET
           interval_ns = excluded.interval_ns, scales = excluded.scales,
           origin = excluded.origin, fetched_at = excluded.fetched_at",
        params![d.source, d.symbol, d.timeframe, d.interval_ns, scales, d.origin, d.fetched_at],
    )
    .map_err(sql)?;
    let id: i64 = tx
        .query_row(
            "SELECT id FROM datasets WHERE source = ?1 AND symbol = ?2 AND timeframe = ?3",
            params![d.source, d.symbol, d.timeframe],
            |r| r.get(0),
        )
        .map_err(sql)?;
    for p in c.partitions {
        tx.execute(
            "INSERT OR REPLACE INTO partitions(dataset_id, key, file, rows, first_ns, last_ns, gaps, bytes, checksum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![id, p.key, p.file, p.rows as i64, p.first_ns, p.last_ns, p.gaps as i64, p.bytes as i64, p.checksum],
        )
        .map_err(sql)?;
    }
    for key in c.emptied {
        tx.execute(
            "DELETE FROM partitions WHERE dataset_id = ?1 AND key = ?2",
            params![id, key],
        )
        .map_err(sql)?;
    }
    tx.execute("DELETE FROM intervals WHERE dataset_id = ?1", [id])
        .map_err(sql)?;
    for (start, end) in c.intervals {
        tx.execute(
            "INSERT INTO intervals(dataset_id, start_ns, end_ns) VALUES (?1, ?2, ?3)",
            params![id, start, end],
        )
        .map_err(sql)?;
    }
    for key in c.rewritten {
        tx.execute(
            "DELETE FROM findings WHERE dataset_id = ?1 AND partition = ?2",
            params![id, key],
        )
        .map_err(sql)?;
    }
    for (key, f) in c.findings {
        tx.execute(
            "INSERT INTO findings(dataset_id, partition, severity, kind, time_ns, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, key, f.severity.name(), f.kind, f.time_ns, f.message],
        )
        .map_err(sql)?;
    }
    let sums: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT checksum FROM partitions WHERE dataset_id = ?1 ORDER BY key")
            .map_err(sql)?;
        stmt.query_map([id], |r| r.get(0))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
    };
    tx.execute(
        "UPDATE datasets SET checksum = ?2 WHERE id = ?1",
        params![id, super::store::combine(&sums)],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(id)
}

/// Every dataset, with its partitions, intervals and findings.
pub fn datasets(db: &Connection) -> Result<Vec<DatasetInfo>, CatalogError> {
    datasets_matching(db, None, None, None)
}

/// The datasets of (symbol, timeframe, source), each `None` matching any: one indexed query,
/// so a request against a catalog of thousands of datasets reads only its own rows.
pub fn datasets_matching(
    db: &Connection,
    symbol: Option<&str>,
    timeframe: Option<&str>,
    source: Option<&str>,
) -> Result<Vec<DatasetInfo>, CatalogError> {
    let mut stmt = db
        .prepare_cached(
            "SELECT id, source, symbol, timeframe, interval_ns, scales, checksum, origin, fetched_at
             FROM datasets
             WHERE (?1 IS NULL OR symbol = ?1) AND (?2 IS NULL OR timeframe = ?2)
               AND (?3 IS NULL OR source = ?3)
             ORDER BY source, symbol, timeframe",
        )
        .map_err(sql)?;
    let mut out: Vec<DatasetInfo> = stmt
        .query_map(params![symbol, timeframe, source], |r| {
            let scales: String = r.get(5)?;
            let mut parsed = [0u32; 5];
            for (slot, s) in parsed.iter_mut().zip(scales.split(',')) {
                *slot = s.parse().unwrap_or(0);
            }
            Ok(DatasetInfo {
                id: r.get(0)?,
                source: r.get(1)?,
                symbol: r.get(2)?,
                timeframe: r.get(3)?,
                interval_ns: r.get(4)?,
                scales: parsed,
                checksum: r.get(6)?,
                origin: r.get(7)?,
                fetched_at: r.get(8)?,
                partitions: Vec::new(),
                intervals: Vec::new(),
                findings: Vec::new(),
            })
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut parts = db
        .prepare_cached(
            "SELECT key, file, rows, first_ns, last_ns, gaps, bytes, checksum FROM partitions
             WHERE dataset_id = ?1 ORDER BY key",
        )
        .map_err(sql)?;
    let mut intervals = db
        .prepare_cached(
            "SELECT start_ns, end_ns FROM intervals WHERE dataset_id = ?1 ORDER BY start_ns",
        )
        .map_err(sql)?;
    let mut findings = db
        .prepare_cached(
            "SELECT partition, severity, kind, time_ns, message FROM findings
             WHERE dataset_id = ?1 ORDER BY time_ns, partition",
        )
        .map_err(sql)?;
    for d in &mut out {
        d.partitions = parts
            .query_map([d.id], |r| {
                Ok(PartitionInfo {
                    key: r.get(0)?,
                    file: r.get(1)?,
                    rows: r.get::<_, i64>(2)? as usize,
                    first_ns: r.get(3)?,
                    last_ns: r.get(4)?,
                    gaps: r.get::<_, i64>(5)? as usize,
                    bytes: r.get::<_, i64>(6)? as u64,
                    checksum: r.get(7)?,
                })
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        d.intervals = intervals
            .query_map([d.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        d.findings = findings
            .query_map([d.id], |r| {
                let severity: String = r.get(1)?;
                Ok(Finding {
                    severity: Severity::parse(&severity),
                    kind: r.get(2)?,
                    time_ns: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
    }
    Ok(out)
}

/// Removes a dataset's rows (its files are deleted after this commits).
pub fn remove(db: &mut Connection, id: i64) -> Result<(), CatalogError> {
    let tx = db.transaction().map_err(sql)?;
    tx.execute("DELETE FROM datasets WHERE id = ?1", [id])
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// Stores splits and dividends of (source, symbol), replacing those at the same time and kind.
pub fn store_events(
    db: &mut Connection,
    source: &str,
    symbol: &str,
    events: &[super::fetch::Event],
) -> Result<usize, CatalogError> {
    let tx = db.transaction().map_err(sql)?;
    for e in events {
        tx.execute(
            "INSERT OR REPLACE INTO events(source, symbol, kind, time_ns, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![source, symbol, e.kind, e.time_ms.saturating_mul(1_000_000), e.value],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    Ok(events.len())
}

/// The splits and dividends of (source, symbol), oldest first: (time ns, kind, value).
pub fn events(
    db: &Connection,
    source: &str,
    symbol: &str,
) -> Result<Vec<(i64, String, String)>, CatalogError> {
    let mut stmt = db
        .prepare(
            "SELECT time_ns, kind, value FROM events WHERE source = ?1 AND symbol = ?2
             ORDER BY time_ns, kind",
        )
        .map_err(sql)?;
    stmt.query_map(params![source, symbol], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .map_err(sql)?
    .collect::<Result<_, _>>()
    .map_err(sql)
}

/// Removes the events of (source, symbol) once no dataset of it is left.
pub fn remove_orphan_events(
    db: &Connection,
    source: &str,
    symbol: &str,
) -> Result<(), CatalogError> {
    db.execute(
        "DELETE FROM events WHERE source = ?1 AND symbol = ?2
         AND NOT EXISTS (SELECT 1 FROM datasets WHERE source = ?1 AND symbol = ?2)",
        params![source, symbol],
    )
    .map_err(sql)?;
    Ok(())
}

/// Records that runs read these datasets now (for least-recently-used eviction).
pub fn touch(db: &Connection, ids: &[i64], now: &str) -> Result<(), CatalogError> {
    for id in ids {
        db.execute(
            "INSERT OR REPLACE INTO usage(dataset_id, used_at) VALUES (?1, ?2)",
            params![id, now],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// When each dataset was last read by a run, else last written (RFC 3339), and whether a run
/// read it, by id.
pub fn last_used(
    db: &Connection,
) -> Result<std::collections::HashMap<i64, (String, bool)>, CatalogError> {
    let mut stmt = db
        .prepare(
            "SELECT d.id, COALESCE(u.used_at, d.fetched_at), u.used_at IS NOT NULL FROM datasets d
             LEFT JOIN usage u ON u.dataset_id = d.id",
        )
        .map_err(sql)?;
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
}

/// A value of the `info` table (`max_size`...).
pub fn info(db: &Connection, key: &str) -> Result<Option<String>, CatalogError> {
    db.query_row("SELECT value FROM info WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(sql)
}

pub fn set_info(db: &Connection, key: &str, value: &str) -> Result<(), CatalogError> {
    db.execute(
        "INSERT OR REPLACE INTO info(key, value) VALUES (?1, ?2)",
        params![key, value],
    )
    .map_err(sql)?;
    Ok(())
}
