//! Warm-up bars from the local data catalog (`rustybt data fetch`), so a session asks its
//! exchange only for the bars the catalog does not have: the catalog's dataset of the same
//! source, symbol and timeframe gives the older bars, the exchange the tail from the catalog's
//! last bar to the session's first (issue 14 §3: "from the catalog, else fetched from the
//! exchange, else the replay file's earlier bars").
//!
//! A feed wrapper: every call goes to the exchange feed except [`Feed::history`]. Only bars
//! that open before the session's first bar are taken from the catalog (never a later one, so
//! no lookahead), and where the catalog's bars and the exchange's do not meet (a gap between
//! them, a catalog that cannot be read) the exchange's alone are used, as without a catalog.

use std::path::PathBuf;

use super::feed::{Feed, FeedBar, History, Poll};
use crate::catalog::{Catalog, Selector};
use crate::model::TimestampNs;

/// Where the catalog's bars for a session are.
#[derive(Debug, Clone)]
pub struct CatalogHistory {
    pub root: PathBuf,
    /// The catalog's source name: `ccxt:binance`.
    pub source: String,
    pub timeframe: String,
    pub interval_ns: i64,
    /// The session's symbols, as the feed numbers them.
    pub symbols: Vec<String>,
    /// Open time of the session's first bar.
    pub first_open: TimestampNs,
}

/// An exchange feed whose warm-up starts from the catalog.
pub struct WarmFromCatalog<'a> {
    inner: Box<dyn Feed + 'a>,
    catalog: CatalogHistory,
}

impl<'a> WarmFromCatalog<'a> {
    pub fn new(inner: Box<dyn Feed + 'a>, catalog: CatalogHistory) -> Self {
        WarmFromCatalog { inner, catalog }
    }
}

impl Feed for WarmFromCatalog<'_> {
    fn poll(&mut self) -> Result<Poll, String> {
        self.inner.poll()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn skip_through(&mut self, time: TimestampNs) -> usize {
        self.inner.skip_through(time)
    }
    fn first_open(&self) -> Option<TimestampNs> {
        self.inner.first_open()
    }
    fn take_notices(&mut self) -> Vec<String> {
        self.inner.take_notices()
    }
    fn history(&mut self, bars: usize) -> Result<History, String> {
        self.catalog.history(&mut *self.inner, bars)
    }
    fn connected(&self) -> bool {
        self.inner.connected()
    }
}

impl CatalogHistory {
    /// Up to `bars` bars of each symbol before the first: the catalog's, then the `feed`'s
    /// for the tail the catalog lacks.
    pub fn history(&self, feed: &mut dyn Feed, bars: usize) -> Result<History, String> {
        if bars == 0 {
            return Ok(History::default());
        }
        let stored = match self.stored(bars) {
            Ok(Some(stored)) => stored,
            Ok(None) => return feed.history(bars),
            Err(e) => {
                crate::above_status!(
                    "note: the warm-up does not use the catalog `{}`: {e}",
                    self.root.display()
                );
                return feed.history(bars);
            }
        };
        // The bars the catalog lacks at the end: from its last bar to the first live one.
        let tail = stored
            .iter()
            .map(|own| match own.last() {
                Some(last) => usize::try_from(
                    (self.first_open - last.open_time - self.interval_ns) / self.interval_ns,
                )
                .unwrap_or(0),
                None => bars,
            })
            .max()
            .unwrap_or(bars)
            .min(bars);
        let fetched = match tail {
            0 => History::default(),
            n => feed.history(n)?,
        };
        let mut fresh: Vec<Vec<(TimestampNs, FeedBar)>> = vec![Vec::new(); self.symbols.len()];
        for batch in fetched.batches {
            for bar in batch.bars {
                if let Some(own) = fresh.get_mut(bar.symbol) {
                    own.push((batch.close_time, bar));
                }
            }
        }
        let mut merged = Vec::new();
        let (mut from_catalog, mut from_feed) = (0, 0);
        for (own, newer) in stored.into_iter().zip(fresh) {
            // The catalog's bars up to the exchange's first; they must meet it (no gap).
            let older: Vec<FeedBar> = match newer.first() {
                Some((_, first)) => own
                    .into_iter()
                    .filter(|b| b.open_time < first.open_time)
                    .collect(),
                None => own,
            };
            let join = match (older.last(), newer.first()) {
                (Some(last), Some((_, first))) => first.open_time - last.open_time,
                (Some(last), None) => self.first_open - last.open_time,
                _ => self.interval_ns,
            };
            if join != self.interval_ns {
                // The two do not meet: use the exchange alone, as without a catalog.
                crate::above_status!(
                    "note: the catalog's {} bars and {}'s do not meet ({} missing between them); warming up from {} alone",
                    self.timeframe,
                    feed.describe(),
                    join / self.interval_ns - 1,
                    feed.describe()
                );
                return feed.history(bars);
            }
            let keep = bars.saturating_sub(newer.len());
            let skip = older.len().saturating_sub(keep);
            from_catalog += older.len() - skip;
            from_feed += newer.len();
            merged.extend(
                older
                    .into_iter()
                    .skip(skip)
                    .map(|b| (b.open_time + self.interval_ns, b)),
            );
            merged.extend(newer);
        }
        let source = match from_feed {
            0 => format!("the catalog ({} {})", self.source, self.timeframe),
            _ => format!(
                "the catalog ({} {}, {from_catalog} bars) and {} ({from_feed} bars)",
                self.source,
                self.timeframe,
                feed.describe()
            ),
        };
        Ok(History::of(merged, source))
    }

    /// Each symbol's last `bars` catalog bars before the first live one, oldest first; `None`
    /// when the catalog has no dataset of any symbol (or no catalog exists: none is created).
    fn stored(&self, bars: usize) -> Result<Option<Vec<Vec<FeedBar>>>, String> {
        if !self.root.join("catalog.sqlite").is_file() {
            return Ok(None);
        }
        let catalog = Catalog::open(&self.root).map_err(|e| e.to_string())?;
        let span = self.interval_ns.saturating_mul(bars as i64);
        let mut out = Vec::with_capacity(self.symbols.len());
        let mut any = false;
        for (i, symbol) in self.symbols.iter().enumerate() {
            let found = catalog
                .select(&Selector {
                    symbol: Some(symbol.clone()),
                    timeframe: Some(self.timeframe.clone()),
                    source: Some(self.source.clone()),
                })
                .map_err(|e| e.to_string())?;
            let Some(dataset) = found.first() else {
                out.push(Vec::new());
                continue;
            };
            any = true;
            let series = catalog
                .load(
                    dataset,
                    Some(self.first_open.saturating_sub(span)),
                    Some(self.first_open),
                )
                .map_err(|e| e.to_string())?;
            let own: Vec<FeedBar> = (0..series.len())
                .filter(|&k| series.time[k] < self.first_open)
                .map(|k| FeedBar {
                    symbol: i,
                    open_time: series.time[k],
                    texts: [
                        &series.open,
                        &series.high,
                        &series.low,
                        &series.close,
                        &series.volume,
                    ]
                    .map(|c| c.exact.get(k).to_string()),
                })
                .collect();
            out.push(own);
        }
        Ok(any.then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{BarSeries, Column};
    use crate::market::BarColumn;

    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_700_000_000 * SEC;

    /// The price of bar `k` (its open at T0 + k s), as text: the same at both sources.
    fn price(k: i64) -> String {
        format!("{}.{:02}", 100 + k, k % 100)
    }

    /// An exchange whose history has every bar before the first except those in `missing`.
    struct Exchange {
        first_open: TimestampNs,
        missing: std::ops::Range<i64>,
        asked: Vec<usize>,
    }

    impl Feed for Exchange {
        fn poll(&mut self) -> Result<Poll, String> {
            Ok(Poll::End)
        }
        fn describe(&self) -> String {
            "ccxt:test".into()
        }
        fn history(&mut self, bars: usize) -> Result<History, String> {
            self.asked.push(bars);
            let last = (self.first_open - T0) / SEC;
            let bars = (last - bars as i64..last)
                .filter(|k| !self.missing.contains(k))
                .map(|k| {
                    let open = T0 + k * SEC;
                    let bar = FeedBar {
                        symbol: 0,
                        open_time: open,
                        texts: [0; 5].map(|_| price(k)),
                    };
                    (open + SEC, bar)
                })
                .collect();
            Ok(History::of(bars, "ccxt:test".into()))
        }
    }

    fn catalog_with(root: &std::path::Path, bars: std::ops::Range<i64>) {
        let texts: Vec<String> = bars.clone().map(price).collect();
        let col = || Column::parse_texts(&texts).expect("column");
        let series = BarSeries {
            symbol: "BTC/USDT".into(),
            source: PathBuf::from("test"),
            time: BarColumn::from_vec(bars.map(|k| T0 + k * SEC).collect()),
            open: col(),
            high: col(),
            low: col(),
            close: col(),
            volume: col(),
        };
        Catalog::open(root)
            .expect("open")
            .import("ccxt:test", "1s", SEC, &series, "test")
            .expect("import");
    }

    fn history(root: &std::path::Path, exchange: &mut Exchange, bars: usize) -> History {
        CatalogHistory {
            root: root.to_path_buf(),
            source: "ccxt:test".into(),
            timeframe: "1s".into(),
            interval_ns: SEC,
            symbols: vec!["BTC/USDT".into()],
            first_open: exchange.first_open,
        }
        .history(exchange, bars)
        .expect("history")
    }

    fn opens(h: &History) -> Vec<i64> {
        h.batches
            .iter()
            .flat_map(|b| b.bars.iter().map(|bar| (bar.open_time - T0) / SEC))
            .collect()
    }

    #[test]
    fn the_catalog_gives_the_older_bars_and_the_exchange_only_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Catalog: bars 0..70, and 100..110 (after the session's first: never used).
        catalog_with(dir.path(), 0..70);
        catalog_with(dir.path(), 100..110);
        let mut exchange = Exchange {
            first_open: T0 + 80 * SEC,
            missing: 0..0,
            asked: Vec::new(),
        };
        let h = history(dir.path(), &mut exchange, 50);
        assert_eq!(exchange.asked, vec![10], "only bars 70..80 are asked for");
        assert_eq!(opens(&h), (30..80).collect::<Vec<_>>());
        assert_eq!(
            h.source,
            "the catalog (ccxt:test 1s, 40 bars) and ccxt:test (10 bars)"
        );
        // Each batch closes a second after its bar opens, with the source's exact texts.
        let last = h.batches.last().expect("bars");
        assert_eq!(last.close_time, T0 + 80 * SEC);
        assert_eq!(last.bars[0].texts[3], price(79));
    }

    #[test]
    fn a_catalog_that_does_not_meet_the_exchanges_bars_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        catalog_with(dir.path(), 0..70);
        // The exchange lacks bars 70..72: the catalog's end and its bars do not meet.
        let mut exchange = Exchange {
            first_open: T0 + 80 * SEC,
            missing: 70..72,
            asked: Vec::new(),
        };
        let h = history(dir.path(), &mut exchange, 50);
        assert_eq!(exchange.asked, vec![10, 50]);
        assert_eq!(h.source, "ccxt:test");
        let want: Vec<i64> = (30..80).filter(|k| !(70..72).contains(k)).collect();
        assert_eq!(opens(&h), want);
    }

    #[test]
    fn without_a_catalog_or_its_dataset_the_exchange_gives_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut exchange = Exchange {
            first_open: T0 + 80 * SEC,
            missing: 0..0,
            asked: Vec::new(),
        };
        let h = history(&dir.path().join("none"), &mut exchange, 50);
        assert_eq!(
            (exchange.asked.as_slice(), h.source.as_str()),
            ([50].as_slice(), "ccxt:test")
        );
        assert!(!dir.path().join("none").exists(), "no catalog is created");
        catalog_with(dir.path(), 0..70);
        let mut exchange = Exchange {
            first_open: T0 + 80 * SEC,
            missing: 0..0,
            asked: Vec::new(),
        };
        // A catalog of another timeframe only: the exchange alone.
        let h = CatalogHistory {
            root: dir.path().to_path_buf(),
            source: "ccxt:test".into(),
            timeframe: "1m".into(),
            interval_ns: 60 * SEC,
            symbols: vec!["BTC/USDT".into()],
            first_open: exchange.first_open,
        }
        .history(&mut exchange, 5)
        .expect("history");
        assert_eq!(h.source, "ccxt:test");
    }
}
