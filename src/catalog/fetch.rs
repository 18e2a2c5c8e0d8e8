//! `rustybt data fetch`: downloads what the catalog does not cover from a [`BarSource`] (an
//! exchange through ccxt, or Yahoo through yfinance; both run in the embedded interpreter, see
//! `crate::python::fetch`), validates every bar and stores them.
//!
//! Incremental: only the parts of the requested span that the dataset's covered intervals miss
//! are requested. Resumable: bars are committed in batches (at most every second or every
//! [`BATCH_BARS`] bars) through the catalog's crash-safe write, each batch covering the span it
//! asked for, so a `kill -9` loses at most the batch in flight and a rerun continues from the
//! last commit. The still-forming bar is never stored: the source leaves it out by its own
//! clock, and the span ends where it opens.

use std::time::{Duration, Instant};

use super::{Catalog, CatalogError, DatasetInfo, Selector};
use crate::data::BarSeries;
use crate::model::format_timestamp;

/// A batch is committed once it holds this many bars (or after [`BATCH_TIME`]).
pub const BATCH_BARS: usize = 50_000;
pub const BATCH_TIME: Duration = Duration::from_secs(1);
const NS_PER_MS: i64 = 1_000_000;

/// What went wrong at the source, by what the user can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// No such symbol at the source.
    UnknownSymbol,
    /// No such bar interval at the source.
    BadTimeframe,
    /// No such exchange or adapter.
    BadSource,
    /// Network errors, 5xx or rate limits outlasted the retries.
    Unavailable,
    /// The source refused the request.
    Refused,
    /// A bug in the adapter (the message holds the Python traceback).
    Internal,
}

impl SourceErrorKind {
    pub fn parse(kind: &str) -> Self {
        match kind {
            "unknown_symbol" => Self::UnknownSymbol,
            "bad_timeframe" => Self::BadTimeframe,
            "bad_source" => Self::BadSource,
            "unavailable" => Self::Unavailable,
            "refused" => Self::Refused,
            _ => Self::Internal,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
}

/// A symbol as the source knows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Resolved {
    pub symbol: String,
    pub interval_ms: i64,
    /// Most bars one request returns.
    pub page_limit: i64,
}

/// The closed bars of one request, oldest first; values are exact decimal texts.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub times_ms: Vec<i64>,
    /// open, high, low, close, volume.
    pub columns: [Vec<String>; 5],
    /// Where the next request starts: everything before it has been seen.
    pub next_ms: i64,
    /// Nothing more to ask for in the range (its end, or the forming bar, was reached).
    pub done: bool,
}

/// A corporate action of an equity, stored beside its bars.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Event {
    pub time_ms: i64,
    /// `split` (value: new shares per old share) or `dividend` (value: cash per share).
    pub kind: String,
    /// Exact decimal text.
    pub value: String,
}

/// Where bars come from. Every call is one request (with the source's own retries).
pub trait BarSource {
    /// The source's clock (ms), which decides which bar is still forming.
    fn now_ms(&mut self) -> Result<i64, SourceError>;
    fn resolve(&mut self, symbol: &str, timeframe: &str) -> Result<Resolved, SourceError>;
    /// Closed bars with `since <= open < until` (one request's worth).
    fn page(
        &mut self,
        symbol: &str,
        timeframe: &str,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Page, SourceError>;
    /// Splits and dividends in `[since, until)` (none for exchanges).
    fn events(
        &mut self,
        symbol: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<Event>, SourceError>;
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The source sent a bar that breaks the row rules (high below low, time going back...).
    #[error("{source_name} sent a bad bar of {symbol}: {message}")]
    BadBar {
        source_name: String,
        symbol: String,
        message: String,
    },
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest<'a> {
    /// The catalog's name of the source: `ccxt:binance`, `yahoo`.
    pub source: &'a str,
    pub symbols: &'a [String],
    /// `1m`, `1h`, `1d` as the source names it (also the dataset's timeframe).
    pub timeframe: &'a str,
    pub start_ns: i64,
    /// Exclusive; `None`: up to the forming bar.
    pub end_ns: Option<i64>,
    /// Recorded as the datasets' origin (`ccxt:binance`, or the URL of a stand-in).
    pub origin: &'a str,
}

/// Where a fetch is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub bars: u64,
    /// Bars the missing spans hold at most (gaps at the source make the real count lower).
    pub expected: u64,
}

/// What a fetch did for one symbol.
#[derive(Debug, Clone)]
pub struct SymbolReport {
    pub symbol: String,
    /// The spans that were requested (the ones the catalog missed).
    pub requested: Vec<(i64, i64)>,
    pub bars: usize,
    pub commits: usize,
    pub events: usize,
    /// The dataset afterwards (`None`: the source had no bars and none were stored before).
    pub dataset: Option<DatasetInfo>,
}

/// The parts of `want` (half-open) that `covered` (sorted, disjoint, half-open) misses.
pub fn missing(covered: &[(i64, i64)], want: (i64, i64)) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut cursor = want.0;
    for &(s, e) in covered {
        if e <= cursor {
            continue;
        }
        if s >= want.1 {
            break;
        }
        if s > cursor {
            out.push((cursor, s));
        }
        cursor = cursor.max(e);
    }
    if cursor < want.1 {
        out.push((cursor, want.1));
    }
    out
}

/// Fetches every symbol's missing spans and stores them; `progress` is called after each page.
pub fn fetch(
    catalog: &mut Catalog,
    source: &mut dyn BarSource,
    request: &FetchRequest,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<SymbolReport>, FetchError> {
    let now_ms = source.now_ms()?;
    let end_ns = request
        .end_ns
        .map_or(now_ms * NS_PER_MS, |e| e.min(now_ms * NS_PER_MS));
    // Every symbol is checked before anything is fetched: a typo fails at once.
    let mut plans = Vec::new();
    let mut expected = 0u64;
    for symbol in request.symbols {
        let resolved = source.resolve(symbol, request.timeframe)?;
        let interval_ns = resolved.interval_ms * NS_PER_MS;
        let existing = dataset(catalog, request, &resolved.symbol)?;
        let covered = existing.map(|d| d.intervals).unwrap_or_default();
        let spans = if end_ns > request.start_ns {
            missing(&covered, (request.start_ns, end_ns))
        } else {
            Vec::new()
        };
        expected += spans
            .iter()
            .map(|(s, e)| ((e - s) / interval_ns.max(1)) as u64)
            .sum::<u64>();
        plans.push((resolved, spans));
    }
    let mut state = Progress { bars: 0, expected };
    progress(state);
    let mut reports = Vec::new();
    for (resolved, spans) in plans {
        let mut report = SymbolReport {
            symbol: resolved.symbol.clone(),
            requested: spans.clone(),
            bars: 0,
            commits: 0,
            events: 0,
            dataset: None,
        };
        let interval_ns = resolved.interval_ms * NS_PER_MS;
        for &(span_start, span_end) in &spans {
            let mut batch = Batch::new(&resolved.symbol, span_start);
            let (mut since_ms, until_ms) = (ceil_ms(span_start), ceil_ms(span_end));
            while since_ms < until_ms {
                let page = source.page(
                    &resolved.symbol,
                    request.timeframe,
                    since_ms,
                    until_ms,
                    now_ms,
                )?;
                batch.add(&page, request, &resolved.symbol)?;
                state.bars += page.times_ms.len() as u64;
                progress(state);
                // A page that does not move forward ends the span (never loop on a source).
                let next_ms = page.next_ms.min(until_ms);
                let stuck = next_ms <= since_ms;
                let end = page.done || stuck;
                // A range done is covered to its end, or to the end of its last bar if later.
                let covered_to = if page.done && page.next_ms >= until_ms {
                    span_end.max(page.next_ms.saturating_mul(NS_PER_MS))
                } else {
                    next_ms.max(since_ms) * NS_PER_MS
                };
                if end || batch.due() {
                    if let Some(d) =
                        batch.commit(catalog, request, interval_ns, covered_to.max(batch.start))?
                    {
                        report.commits += 1;
                        report.dataset = Some(d);
                    }
                }
                if end {
                    break;
                }
                since_ms = next_ms;
            }
            report.bars += batch.total;
        }
        if let Some((first, last)) = spans.first().zip(spans.last()) {
            let events = source.events(&resolved.symbol, ceil_ms(first.0), ceil_ms(last.1))?;
            if !events.is_empty() {
                report.events = catalog.store_events(request.source, &resolved.symbol, &events)?;
            }
        }
        if report.dataset.is_none() {
            report.dataset = dataset(catalog, request, &resolved.symbol)?;
        }
        reports.push(report);
    }
    Ok(reports)
}

fn ceil_ms(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_MS) + i64::from(ns.rem_euclid(NS_PER_MS) != 0)
}

fn dataset(
    catalog: &Catalog,
    request: &FetchRequest,
    symbol: &str,
) -> Result<Option<DatasetInfo>, CatalogError> {
    Ok(catalog
        .select(&Selector {
            symbol: Some(symbol.to_owned()),
            timeframe: Some(request.timeframe.to_owned()),
            source: Some(request.source.to_owned()),
        })?
        .into_iter()
        .next())
}

/// Bars fetched since the last commit.
struct Batch {
    series: BarSeries,
    /// Where the span this batch covers starts (ns).
    start: i64,
    since: Instant,
    total: usize,
}

impl Batch {
    fn new(symbol: &str, start: i64) -> Self {
        Batch {
            series: BarSeries::empty(symbol, "fetch"),
            start,
            since: Instant::now(),
            total: 0,
        }
    }

    fn add(&mut self, page: &Page, request: &FetchRequest, symbol: &str) -> Result<(), FetchError> {
        for (i, &t) in page.times_ms.iter().enumerate() {
            let texts: [&str; 5] = std::array::from_fn(|k| page.columns[k][i].as_str());
            let time = t.checked_mul(NS_PER_MS).ok_or_else(|| FetchError::BadBar {
                source_name: request.source.to_owned(),
                symbol: symbol.to_owned(),
                message: format!("time {t} ms is out of range"),
            })?;
            self.series
                .append(time, texts)
                .map_err(|message| FetchError::BadBar {
                    source_name: request.source.to_owned(),
                    symbol: symbol.to_owned(),
                    message: format!("at {}: {message}", format_timestamp(time)),
                })?;
        }
        self.total += page.times_ms.len();
        Ok(())
    }

    fn due(&self) -> bool {
        self.series.len() >= BATCH_BARS || self.since.elapsed() >= BATCH_TIME
    }

    /// Stores the batch as covering `[start, end)` and starts the next one at `end`.
    fn commit(
        &mut self,
        catalog: &mut Catalog,
        request: &FetchRequest,
        interval_ns: i64,
        end: i64,
    ) -> Result<Option<DatasetInfo>, CatalogError> {
        let fresh = BarSeries::empty(self.series.symbol.clone(), "fetch");
        let series = std::mem::replace(&mut self.series, fresh);
        let start = std::mem::replace(&mut self.start, end);
        self.since = Instant::now();
        if series.is_empty() {
            // Nothing to store; a span without bars is simply asked again next time.
            return Ok(None);
        }
        let report = catalog.import_covering(
            request.source,
            request.timeframe,
            interval_ns,
            &series,
            request.origin,
            Some((start, end)),
        )?;
        super::crash_point("fetch-batch-committed");
        Ok(Some(report.dataset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_MS: i64 = 60_000;
    const T0_MS: i64 = 1_704_067_200_000; // 2024-01-01

    #[test]
    fn missing_spans() {
        assert_eq!(missing(&[], (0, 10)), vec![(0, 10)]);
        assert_eq!(missing(&[(0, 10)], (2, 8)), vec![]);
        assert_eq!(
            missing(&[(2, 4), (6, 7)], (0, 10)),
            vec![(0, 2), (4, 6), (7, 10)]
        );
        assert_eq!(missing(&[(-5, 3), (9, 20)], (0, 10)), vec![(3, 9)]);
        assert_eq!(missing(&[(20, 30)], (0, 10)), vec![(0, 10)]);
    }

    /// An in-memory source: `bars` one-minute bars from T0, the last `forming` of them still
    /// forming at `now`; pages of `limit`; records each request.
    struct Memory {
        bars: i64,
        now_ms: i64,
        limit: usize,
        requests: Vec<(i64, i64)>,
    }

    impl BarSource for Memory {
        fn now_ms(&mut self) -> Result<i64, SourceError> {
            Ok(self.now_ms)
        }
        fn resolve(&mut self, symbol: &str, timeframe: &str) -> Result<Resolved, SourceError> {
            if symbol != "X" {
                return Err(SourceError {
                    kind: SourceErrorKind::UnknownSymbol,
                    message: format!("no {symbol}"),
                });
            }
            assert_eq!(timeframe, "1m");
            Ok(Resolved {
                symbol: symbol.into(),
                interval_ms: MIN_MS,
                page_limit: self.limit as i64,
            })
        }
        fn page(
            &mut self,
            _: &str,
            _: &str,
            since_ms: i64,
            until_ms: i64,
            now_ms: i64,
        ) -> Result<Page, SourceError> {
            self.requests.push((since_ms, until_ms));
            let mut page = Page {
                next_ms: since_ms,
                ..Default::default()
            };
            let first = (since_ms - T0_MS + MIN_MS - 1).div_euclid(MIN_MS).max(0);
            for k in first..self.bars {
                let t = T0_MS + k * MIN_MS;
                if t >= until_ms {
                    page.done = true;
                    page.next_ms = page.next_ms.max(until_ms);
                    break;
                }
                if t + MIN_MS > now_ms {
                    page.done = true;
                    page.next_ms = t;
                    break;
                }
                if page.times_ms.len() == self.limit {
                    break;
                }
                page.times_ms.push(t);
                let price = format!("{}.{:02}", 100 + k % 7, k % 100);
                for c in &mut page.columns {
                    c.push(price.clone());
                }
                page.next_ms = t + MIN_MS;
            }
            if page.times_ms.is_empty() && !page.done {
                page.done = true;
            }
            Ok(page)
        }
        fn events(&mut self, _: &str, _: i64, _: i64) -> Result<Vec<Event>, SourceError> {
            Ok(Vec::new())
        }
    }

    fn request<'a>(symbols: &'a [String], end_min: Option<i64>) -> FetchRequest<'a> {
        FetchRequest {
            source: "ccxt:test",
            symbols,
            timeframe: "1m",
            start_ns: T0_MS * NS_PER_MS,
            end_ns: end_min.map(|m| (T0_MS + m * MIN_MS) * NS_PER_MS),
            origin: "memory",
        }
    }

    #[test]
    fn pages_forming_bar_and_incremental_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        // 2500 bars exist; the last is forming at `now`.
        let mut src = Memory {
            bars: 2500,
            now_ms: T0_MS + 2499 * MIN_MS + 30_000,
            limit: 300,
            requests: Vec::new(),
        };
        let symbols = vec!["X".to_owned()];
        let r = fetch(
            &mut cat,
            &mut src,
            &request(&symbols, Some(1000)),
            &mut |_| {},
        )
        .expect("fetch");
        assert_eq!(r[0].bars, 1000);
        assert_eq!(src.requests.len(), 4, "{:?}", src.requests);
        let d = r[0].dataset.clone().expect("dataset");
        assert_eq!(
            d.intervals,
            vec![(T0_MS * NS_PER_MS, (T0_MS + 1000 * MIN_MS) * NS_PER_MS)]
        );
        // A larger fetch asks only from minute 1000 on, and never stores the forming bar.
        src.requests.clear();
        let r = fetch(&mut cat, &mut src, &request(&symbols, None), &mut |_| {}).expect("fetch");
        assert_eq!(src.requests[0].0, T0_MS + 1000 * MIN_MS);
        assert_eq!(r[0].bars, 1499);
        let d = r[0].dataset.clone().expect("dataset");
        assert_eq!(d.rows(), 2499);
        assert_eq!(d.last_ns(), Some((T0_MS + 2498 * MIN_MS) * NS_PER_MS));
        assert_eq!(
            d.intervals,
            vec![(T0_MS * NS_PER_MS, (T0_MS + 2499 * MIN_MS) * NS_PER_MS)]
        );
        let loaded = cat.load(&d, None, None).expect("load");
        assert_eq!(loaded.close.exact.get(1234).to_string(), "102.34");
        // Nothing missing: the only request is for the still-forming minute.
        src.requests.clear();
        let r = fetch(&mut cat, &mut src, &request(&symbols, None), &mut |_| {}).expect("fetch");
        assert_eq!(r[0].bars, 0);
        assert_eq!(src.requests, vec![(T0_MS + 2499 * MIN_MS, src.now_ms)]);
        assert!(cat.verify().expect("verify").problems.is_empty());
    }

    #[test]
    fn unknown_symbol_fails_before_any_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cat = Catalog::open(dir.path()).expect("open");
        let mut src = Memory {
            bars: 10,
            now_ms: T0_MS + 100 * MIN_MS,
            limit: 5,
            requests: Vec::new(),
        };
        let symbols = vec!["X".to_owned(), "Y".to_owned()];
        let err =
            fetch(&mut cat, &mut src, &request(&symbols, None), &mut |_| {}).expect_err("unknown");
        assert!(matches!(
            err,
            FetchError::Source(SourceError {
                kind: SourceErrorKind::UnknownSymbol,
                ..
            })
        ));
        assert!(src.requests.is_empty());
    }
}
