//! Where a live session's bars come from: a feed hands the loop batches of closed bars, one
//! batch per close time, and says how long to wait when none is due yet.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::data::BarSeries;
use crate::model::TimestampNs;

/// One closed bar of one symbol, as decimal texts (open, high, low, close, volume): the market
/// parses them once into exact and f64 columns.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedBar {
    /// Index into the session's symbols.
    pub symbol: usize,
    pub open_time: TimestampNs,
    pub texts: [String; 5],
}

/// Every bar that closes at `close_time`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub close_time: TimestampNs,
    pub bars: Vec<FeedBar>,
}

#[derive(Debug)]
pub enum Poll {
    Ready(Batch),
    /// Nothing is due yet: ask again after this long (or earlier).
    Wait(Duration),
    /// The feed has no more bars (a replay reached its end).
    End,
}

pub trait Feed {
    fn poll(&mut self) -> Result<Poll, String>;
    /// For the log and results: `replay:FILE`, `ccxt:binance`.
    fn describe(&self) -> String;
}

/// Plays loaded bars in wall time: batch k is due `(close_k − close_0) / speed` after the first
/// one was handed out (`speed` 0: all at once, as fast as the loop takes them).
#[derive(Debug)]
pub struct ReplayFeed {
    source: String,
    batches: VecDeque<Batch>,
    speed: f64,
    started: Option<(Instant, TimestampNs)>,
}

impl ReplayFeed {
    /// `series[i]` are the bars of symbol `i`; each closes `interval_ns` after it opens.
    pub fn new(source: String, series: &[BarSeries], interval_ns: i64, speed: f64) -> Self {
        let mut by_close: BTreeMap<TimestampNs, Vec<FeedBar>> = BTreeMap::new();
        for (symbol, s) in series.iter().enumerate() {
            for i in 0..s.len() {
                let texts = [&s.open, &s.high, &s.low, &s.close, &s.volume]
                    .map(|column| column.exact.get(i).to_string());
                by_close
                    .entry(s.time[i] + interval_ns)
                    .or_default()
                    .push(FeedBar {
                        symbol,
                        open_time: s.time[i],
                        texts,
                    });
            }
        }
        ReplayFeed {
            source,
            batches: by_close
                .into_iter()
                .map(|(close_time, bars)| Batch { close_time, bars })
                .collect(),
            speed,
            started: None,
        }
    }

    /// Drops the batches closing at or before `time` (a restarted session already traded
    /// them). Returns how many were dropped.
    pub fn skip_through(&mut self, time: TimestampNs) -> usize {
        let before = self.batches.len();
        while self.batches.front().is_some_and(|b| b.close_time <= time) {
            self.batches.pop_front();
        }
        before - self.batches.len()
    }

    pub fn remaining(&self) -> usize {
        self.batches.len()
    }
}

impl Feed for ReplayFeed {
    fn poll(&mut self) -> Result<Poll, String> {
        let Some(next) = self.batches.front() else {
            return Ok(Poll::End);
        };
        let (started, first) = *self
            .started
            .get_or_insert_with(|| (Instant::now(), next.close_time));
        if self.speed > 0.0 {
            let due = Duration::from_secs_f64((next.close_time - first) as f64 / 1e9 / self.speed);
            let elapsed = started.elapsed();
            if elapsed < due {
                return Ok(Poll::Wait(due - elapsed));
            }
        }
        Ok(self.batches.pop_front().map_or(Poll::End, Poll::Ready))
    }

    fn describe(&self) -> String {
        format!("replay:{}", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(symbol: &str, times: &[i64], closes: &[&str]) -> BarSeries {
        let mut s = BarSeries::empty(symbol, "test.csv");
        for (&t, &c) in times.iter().zip(closes) {
            s.append(t, [c, c, c, c, "1"]).unwrap();
        }
        s
    }

    #[test]
    fn batches_group_symbols_by_close_time_in_order() {
        let a = series("A", &[0, 60, 120], &["1", "2", "3"]);
        let b = series("B", &[60, 180], &["10.50", "11"]);
        let mut feed = ReplayFeed::new("f.csv".into(), &[a, b], 60, 0.0);
        let mut seen = Vec::new();
        while let Poll::Ready(batch) = feed.poll().unwrap() {
            let symbols: Vec<usize> = batch.bars.iter().map(|b| b.symbol).collect();
            seen.push((batch.close_time, symbols));
        }
        assert_eq!(
            seen,
            vec![
                (60, vec![0]),
                (120, vec![0, 1]),
                (180, vec![0]),
                (240, vec![1])
            ]
        );
    }

    #[test]
    fn texts_keep_the_exact_decimal() {
        let b = series("B", &[0], &["10.50"]);
        let mut feed = ReplayFeed::new("f.csv".into(), &[b], 60, 0.0);
        let Poll::Ready(batch) = feed.poll().unwrap() else {
            panic!("a batch is due")
        };
        assert_eq!(batch.bars[0].texts[3], "10.50");
    }

    #[test]
    fn paced_replay_waits_for_the_next_close_and_skips_traded_bars() {
        let a = series("A", &[0, 60_000_000_000, 120_000_000_000], &["1", "2", "3"]);
        // One minute bars at 60x: one bar a second.
        let mut feed = ReplayFeed::new("f.csv".into(), &[a], 60_000_000_000, 60.0);
        assert!(matches!(feed.poll().unwrap(), Poll::Ready(_)));
        match feed.poll().unwrap() {
            Poll::Wait(d) => assert!(d > Duration::from_millis(900) && d <= Duration::from_secs(1)),
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(feed.skip_through(120_000_000_000), 1);
        assert_eq!(feed.remaining(), 1);
    }
}
