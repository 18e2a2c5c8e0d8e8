//! Where a live session's bars come from: a feed hands the loop batches of closed bars, one
//! batch per close time, and says how long to wait when none is due yet.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::venue::{
    Candle, CandleStream, StreamEvent, StreamSource, Venue, VenueError, VenueErrorKind,
};

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

impl FeedBar {
    /// An exchange candle of symbol `symbol`, its decimals as text.
    fn of_candle(symbol: usize, c: Candle) -> FeedBar {
        FeedBar {
            symbol,
            open_time: c.open_time_ms * 1_000_000,
            texts: [c.open, c.high, c.low, c.close, c.volume].map(|d| d.to_string()),
        }
    }
}

/// Every bar that closes at `close_time`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub close_time: TimestampNs,
    pub bars: Vec<FeedBar>,
}

/// Bars from before a feed's first (see [`Feed::history`]).
#[derive(Debug, Default)]
pub struct History {
    pub batches: Vec<Batch>,
    /// Where they came from, for the log (`the replay file`, `ccxt:binance`).
    pub source: String,
}

impl History {
    /// Groups bars by close time into batches, oldest first.
    pub(crate) fn of(bars: Vec<(TimestampNs, FeedBar)>, source: String) -> History {
        let mut by_close: BTreeMap<TimestampNs, Vec<FeedBar>> = BTreeMap::new();
        for (close, bar) in bars {
            by_close.entry(close).or_default().push(bar);
        }
        History {
            batches: by_close
                .into_iter()
                .map(|(close_time, bars)| Batch { close_time, bars })
                .collect(),
            source,
        }
    }
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
    /// Drops, without waiting, the bars closing at or before `time` (a restarted session
    /// traded them already); returns how many. Feeds that start after it anyway drop none.
    fn skip_through(&mut self, _time: TimestampNs) -> usize {
        0
    }
    /// Open time of the first bar the feed will hand out, when known before it does.
    fn first_open(&self) -> Option<TimestampNs> {
        None
    }
    /// Things to tell the user since the last call (gaps, retried failures).
    fn take_notices(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Up to `bars` closed bars of each symbol right before the first bar the feed will hand
    /// out (a session's warm-up), in batches, oldest first, and where they came from.
    fn history(&mut self, _bars: usize) -> Result<History, String> {
        Ok(History::default())
    }
    /// Whether the feed's source answers: false while its requests fail (and are retried).
    fn connected(&self) -> bool {
        true
    }
}

/// Plays loaded bars in wall time: batch k is due `(close_k − close_0) / speed` after the first
/// one was handed out (`speed` 0: all at once, as fast as the loop takes them). The schedule is
/// kept as bar indices; a bar's texts are made only when its batch is handed out, so a long
/// file costs no more memory than its columns.
#[derive(Debug)]
pub struct ReplayFeed {
    source: String,
    series: Vec<BarSeries>,
    /// Per close time, the (symbol, bar index) pairs closing then, in time order.
    batches: VecDeque<(TimestampNs, Vec<(usize, usize)>)>,
    interval_ns: i64,
    speed: f64,
    started: Option<(Instant, TimestampNs)>,
}

impl ReplayFeed {
    /// `series[i]` are the bars of symbol `i`; each closes `interval_ns` after it opens.
    pub fn new(source: String, series: Vec<BarSeries>, interval_ns: i64, speed: f64) -> Self {
        let mut by_close: BTreeMap<TimestampNs, Vec<(usize, usize)>> = BTreeMap::new();
        for (symbol, s) in series.iter().enumerate() {
            for (i, &open) in s.time.iter().enumerate() {
                by_close
                    .entry(open + interval_ns)
                    .or_default()
                    .push((symbol, i));
            }
        }
        ReplayFeed {
            source,
            series,
            batches: by_close.into_iter().collect(),
            interval_ns,
            speed,
            started: None,
        }
    }

    pub fn remaining(&self) -> usize {
        self.batches.len()
    }

    fn bar(&self, symbol: usize, index: usize) -> FeedBar {
        let s = &self.series[symbol];
        FeedBar {
            symbol,
            open_time: s.time[index],
            texts: [&s.open, &s.high, &s.low, &s.close, &s.volume]
                .map(|column| column.exact.get(index).to_string()),
        }
    }
}

impl Feed for ReplayFeed {
    fn poll(&mut self) -> Result<Poll, String> {
        let Some(&(close_time, _)) = self.batches.front() else {
            return Ok(Poll::End);
        };
        let (started, first) = *self
            .started
            .get_or_insert_with(|| (Instant::now(), close_time));
        if self.speed > 0.0 {
            let due = Duration::from_secs_f64((close_time - first) as f64 / 1e9 / self.speed);
            let elapsed = started.elapsed();
            if elapsed < due {
                return Ok(Poll::Wait(due - elapsed));
            }
        }
        let Some((close_time, bars)) = self.batches.pop_front() else {
            return Ok(Poll::End);
        };
        let bars = bars.iter().map(|&(s, i)| self.bar(s, i)).collect();
        Ok(Poll::Ready(Batch { close_time, bars }))
    }

    fn describe(&self) -> String {
        format!("replay:{}", self.source)
    }

    fn skip_through(&mut self, time: TimestampNs) -> usize {
        let before = self.batches.len();
        while self
            .batches
            .front()
            .is_some_and(|&(close, _)| close <= time)
        {
            self.batches.pop_front();
        }
        before - self.batches.len()
    }

    fn first_open(&self) -> Option<TimestampNs> {
        let (_, bars) = self.batches.front()?;
        bars.iter().map(|&(s, i)| self.series[s].time[i]).min()
    }

    /// The file's bars before the first one still to come: on a restart, those an earlier
    /// session traded; a first session has none.
    fn history(&mut self, bars: usize) -> Result<History, String> {
        let Some(&(first_close, _)) = self.batches.front() else {
            return Ok(History::default());
        };
        let mut earlier = Vec::new();
        for (symbol, s) in self.series.iter().enumerate() {
            let end = s
                .time
                .partition_point(|&open| open + self.interval_ns < first_close);
            for index in end.saturating_sub(bars)..end {
                earlier.push((s.time[index] + self.interval_ns, self.bar(symbol, index)));
            }
        }
        Ok(History::of(earlier, "the replay file".into()))
    }
}

/// How an exchange feed gets its candles (`rustybt live --feed-mode`, `[live] feed_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    /// A websocket stream when the venue has one (candles, else trades), else polling.
    Auto,
    /// A websocket stream (candles, else trades); a venue without one is an error.
    Ws,
    /// Bars aggregated from the websocket trade stream; a venue without one is an error.
    WsTrades,
    /// REST polling only.
    Poll,
}

impl FeedMode {
    /// The names, for messages.
    pub const NAMES: &str = "`auto`, `ws`, `ws-trades` or `poll`";

    pub fn parse(text: &str) -> Option<FeedMode> {
        match text {
            "auto" => Some(FeedMode::Auto),
            "ws" => Some(FeedMode::Ws),
            "ws-trades" => Some(FeedMode::WsTrades),
            "poll" => Some(FeedMode::Poll),
            _ => None,
        }
    }
}

/// What [`ExchangeFeed::open_stream`] found.
pub enum StreamChoice {
    Stream(Box<dyn CandleStream>),
    /// Polling: asked for (`why` is `None`), or `auto` found no stream (`why` says why).
    Poll {
        why: Option<String>,
    },
}

/// A websocket candle stream feeding an [`ExchangeFeed`], and what the feed knows of it.
struct Stream {
    source: Box<dyn CandleStream>,
    /// The socket is up: candles arrive through it, REST is asked only for gaps and as a
    /// safety net `patience` after a bar is due. While it is down, REST polls carry the feed.
    live: bool,
    /// A REST catch-up is due: after a (re)connect, or a streamed candle past the next expected.
    gap_fill: bool,
    /// An outage was reported (one notice per outage, not per failed reconnect).
    outage_reported: bool,
    /// Bars aggregated from trades: the connection brings only the bars opening at or after
    /// this (it was not up for all of an earlier one), so REST is asked for those as soon as
    /// they close, not `patience` later. Candle streams bring every bar (`i64::MIN`).
    covered_from_ms: i64,
}

/// Counts of a streamed feed, for the log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Candles that became bars from the stream.
    pub streamed: u64,
    /// Streamed candles already held (fetched through REST first): dropped.
    pub duplicates: u64,
    /// REST catch-ups after a reconnect or a streamed candle past a gap.
    pub gap_fills: u64,
    pub reconnects: u64,
}

/// How often the loop looks at a live stream's queue while no bar is due.
const STREAM_LOOK: Duration = Duration::from_millis(20);

/// Closed candles from an exchange (through the [`Venue`]): polled through REST, or streamed
/// by websocket with REST as the fallback (see [`ExchangeFeed::with_stream`]). The forming
/// candle is never a bar. Each symbol continues from its last candle, so a pause, a restart or
/// a dropped socket catches up every candle missed, oldest first, and a candle already held is
/// never taken twice. A batch waits for every symbol's candle of its close time for up to
/// `grace` after that time; a symbol still missing then has a gap there.
pub struct ExchangeFeed {
    venue: Rc<RefCell<dyn Venue>>,
    exchange: String,
    symbols: Vec<String>,
    timeframe: String,
    interval_ms: i64,
    /// Open time (ms) of the next candle each symbol needs.
    next_open_ms: Vec<i64>,
    /// Fetched candles not yet handed out, per symbol, oldest first.
    pending: Vec<VecDeque<Candle>>,
    /// Wall time (ms) until which an incomplete batch waits for late symbols.
    grace: Duration,
    /// Shortest pause between two polls that found nothing.
    idle_poll: Duration,
    last_poll: Option<Instant>,
    /// Candle requests failed in a row (backoff: 1 s, 2 s, ... up to 30 s between polls).
    failures: u32,
    /// What the loop should log (gaps, retried failures).
    notices: Vec<String>,
    stream: Option<Stream>,
    /// With a live stream: how late a bar may be before REST is asked anyway.
    patience: Duration,
    pub stream_stats: StreamStats,
}

impl ExchangeFeed {
    /// Starts with the candle opening at `start_ms` for every symbol (the candle forming
    /// now, earlier ones to catch up on, or the one after a restarted session's last bar).
    pub fn new(
        venue: Rc<RefCell<dyn Venue>>,
        exchange: String,
        symbols: Vec<String>,
        timeframe: String,
        interval_ms: i64,
        start_ms: i64,
    ) -> Self {
        let n = symbols.len();
        ExchangeFeed {
            venue,
            exchange,
            symbols,
            timeframe,
            interval_ms,
            next_open_ms: vec![start_ms; n],
            pending: vec![VecDeque::new(); n],
            grace: Duration::from_secs(10),
            idle_poll: Duration::from_millis(500),
            last_poll: None,
            failures: 0,
            notices: Vec::new(),
            stream: None,
            patience: Duration::from_secs(2),
            stream_stats: StreamStats::default(),
        }
    }

    /// Bars from `source` (closed candles by websocket) while its socket is up, REST polling
    /// while it is down, and a REST catch-up after each (re)connect: no closed bar is missed,
    /// none is taken twice (a candle counts only if it is the next one its symbol needs).
    pub fn with_stream(mut self, source: Box<dyn CandleStream>) -> Self {
        self.stream = Some(Stream {
            source,
            live: false,
            gap_fill: false,
            outage_reported: false,
            covered_from_ms: i64::MIN,
        });
        self
    }

    /// Opens the venue's websocket stream as `mode` asks; an error when `ws` finds none.
    pub fn open_stream(
        venue: &Rc<RefCell<dyn Venue>>,
        mode: FeedMode,
        symbols: &[String],
        timeframe: &str,
    ) -> Result<StreamChoice, VenueError> {
        let source = match mode {
            FeedMode::Poll => return Ok(StreamChoice::Poll { why: None }),
            FeedMode::WsTrades => StreamSource::Trades,
            FeedMode::Auto | FeedMode::Ws => StreamSource::Any,
        };
        match venue.borrow_mut().open_stream(symbols, timeframe, source) {
            Ok(stream) => Ok(StreamChoice::Stream(stream)),
            Err(e) if mode == FeedMode::Auto && e.kind == VenueErrorKind::Unavailable => {
                Ok(StreamChoice::Poll {
                    why: Some(e.message),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether bars currently come from the websocket.
    pub fn streaming(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.live)
    }

    /// Open time of the next candle symbol `i` needs.
    fn expected_open(&self, i: usize) -> i64 {
        self.pending[i]
            .back()
            .map_or(self.next_open_ms[i], |c| c.open_time_ms + self.interval_ms)
    }

    /// Takes what the stream received: connection changes (notices; a (re)connect asks for a
    /// REST catch-up) and closed candles (the next one a symbol needs is held; an older one is
    /// a duplicate; a later one means a gap, which REST fills).
    fn drain_stream(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let update = match stream.source.take() {
            Ok(update) => update,
            Err(e) => {
                self.notices.push(format!(
                    "{}: the websocket stream failed ({e}); polling REST from now on",
                    self.exchange
                ));
                self.stream = None;
                return;
            }
        };
        let name = &self.exchange;
        for event in update.events {
            match event {
                StreamEvent::Connected { .. } => {
                    if stream.outage_reported {
                        self.stream_stats.reconnects += 1;
                        self.notices.push(format!(
                            "{name}: websocket reconnected; the bars it missed come through REST"
                        ));
                    }
                    stream.live = true;
                    stream.gap_fill = true;
                    stream.outage_reported = false;
                }
                StreamEvent::Disconnected { reason, .. }
                | StreamEvent::Unavailable { reason, .. } => {
                    stream.live = false;
                    if !stream.outage_reported {
                        stream.outage_reported = true;
                        self.notices.push(format!(
                            "{name}: websocket down ({}); polling REST until it reconnects",
                            reason.as_deref().unwrap_or("no reason given")
                        ));
                    }
                }
                StreamEvent::Failed { reason, .. } => {
                    self.notices.push(format!(
                        "{name}: the websocket stream gave up ({}); polling REST from now on",
                        reason.as_deref().unwrap_or("no reason given")
                    ));
                    self.stream = None;
                    break;
                }
                StreamEvent::Covering { from_ms, .. } => stream.covered_from_ms = from_ms,
                StreamEvent::Warning { reason, .. } => self.notices.push(format!(
                    "{name}: {}",
                    reason.as_deref().unwrap_or("a warning without a reason")
                )),
            }
        }
        for streamed in update.candles {
            let Some(i) = self.symbols.iter().position(|s| *s == streamed.symbol) else {
                continue;
            };
            let expected = self.expected_open(i);
            let open = streamed.candle.open_time_ms;
            if open == expected {
                self.pending[i].push_back(streamed.candle);
                self.stream_stats.streamed += 1;
            } else if open < expected {
                self.stream_stats.duplicates += 1;
            } else if let Some(stream) = self.stream.as_mut() {
                stream.gap_fill = true;
            }
        }
    }

    fn now_ms() -> i64 {
        super::wall_ns() / 1_000_000
    }

    /// Asks for every symbol's closed candles since the last one held. A transient failure
    /// (timeout, 5xx, rate limit, a signal) is a notice and a retry with backoff at the next
    /// poll; one that retrying cannot fix (credentials, an unknown symbol or timeframe) is an
    /// error that ends the session.
    fn fetch(&mut self, now_ms: i64) -> Result<(), String> {
        self.last_poll = Some(Instant::now());
        for i in 0..self.symbols.len() {
            let since = self.expected_open(i);
            if since + self.interval_ms > now_ms {
                continue;
            }
            let result = self.venue.borrow_mut().closed_candles(
                &self.symbols[i],
                &self.timeframe,
                since,
                now_ms,
            );
            let candles = match result {
                Ok(candles) => candles,
                Err(e) => {
                    let what = format!("{}: candles of {}: {e}", self.exchange, self.symbols[i]);
                    return match e.kind {
                        VenueErrorKind::Authentication
                        | VenueErrorKind::UnknownSymbol
                        | VenueErrorKind::RuleViolation => Err(what),
                        _ => {
                            self.failures += 1;
                            self.notices.push(format!("{what}; retrying"));
                            Ok(())
                        }
                    };
                }
            };
            self.failures = 0;
            for candle in candles {
                if candle.open_time_ms >= since {
                    self.pending[i].push_back(candle);
                }
            }
        }
        Ok(())
    }

    /// The earliest close time among the pending candles, and whether every symbol has its
    /// candle for it (or already one past it).
    fn next_batch(&self) -> Option<(i64, bool)> {
        let close = self
            .pending
            .iter()
            .filter_map(|q| q.front())
            .map(|c| c.open_time_ms + self.interval_ms)
            .min()?;
        let complete = self.pending.iter().all(|q| {
            q.front()
                .is_some_and(|c| c.open_time_ms + self.interval_ms >= close)
        });
        Some((close, complete))
    }

    fn take_batch(&mut self, close_ms: i64) -> Batch {
        let mut bars = Vec::new();
        for (i, queue) in self.pending.iter_mut().enumerate() {
            if queue
                .front()
                .is_some_and(|c| c.open_time_ms + self.interval_ms == close_ms)
                && let Some(c) = queue.pop_front()
            {
                bars.push(FeedBar::of_candle(i, c));
            }
        }
        for (i, next) in self.next_open_ms.iter_mut().enumerate() {
            // A symbol without a candle at this close has a gap: it continues after it.
            *next = (*next).max(close_ms);
            if let Some(c) = self.pending[i].front() {
                *next = (*next).min(c.open_time_ms);
            }
        }
        Batch {
            close_time: close_ms * 1_000_000,
            bars,
        }
    }
}

impl Feed for ExchangeFeed {
    fn poll(&mut self) -> Result<Poll, String> {
        let now_ms = Self::now_ms();
        self.drain_stream();
        if let Some((close, true)) = self.next_batch() {
            return Ok(Poll::Ready(self.take_batch(close)));
        }
        let due_ms = (0..self.symbols.len())
            .map(|i| self.expected_open(i) + self.interval_ms)
            .min()
            .unwrap_or(now_ms);
        let streaming = self.streaming();
        let due_open_ms = due_ms - self.interval_ms;
        let covered = self
            .stream
            .as_ref()
            .is_some_and(|s| due_open_ms >= s.covered_from_ms);
        // With a live stream, REST is only the safety net for a bar the socket did not bring
        // (a bar it will not bring, REST is asked for at once).
        let rest_due_ms = if streaming && covered {
            due_ms + self.patience.as_millis() as i64
        } else {
            due_ms
        };
        let gap_fill = self
            .stream
            .as_mut()
            .is_some_and(|s| std::mem::take(&mut s.gap_fill));
        if gap_fill {
            self.stream_stats.gap_fills += 1;
        }
        let polled_recently = self.last_poll.is_some_and(|t| t.elapsed() < self.idle_poll);
        if gap_fill || (now_ms >= rest_due_ms && !polled_recently) {
            self.fetch(now_ms)?;
            if let Some((close, complete)) = self.next_batch() {
                let late = now_ms - close > self.grace.as_millis() as i64;
                if complete || late {
                    if !complete {
                        self.notices.push(format!(
                            "{}: no candle of some symbols for the bar closing at {}; they have a gap there",
                            self.exchange,
                            crate::model::format_timestamp(close * 1_000_000)
                        ));
                    }
                    return Ok(Poll::Ready(self.take_batch(close)));
                }
            }
        }
        if streaming {
            // Candles arrive on the stream's thread: look again soon (a cheap look).
            return Ok(Poll::Wait(STREAM_LOOK));
        }
        let until_due = Duration::from_millis((due_ms - now_ms).max(0) as u64);
        Ok(Poll::Wait(until_due.max(self.idle_poll)))
    }

    /// The exchange's closed candles before each symbol's first: a restart's warm-up includes
    /// the bars the earlier session traded. A failure here is an error (the session would
    /// otherwise start with indicators that are not ready, silently).
    fn history(&mut self, bars: usize) -> Result<History, String> {
        let mut earlier = Vec::new();
        if bars == 0 {
            return Ok(History::default());
        }
        for i in 0..self.symbols.len() {
            let start = self.next_open_ms[i];
            let since = start - bars as i64 * self.interval_ms;
            let candles = self
                .venue
                .borrow_mut()
                .closed_candles(
                    &self.symbols[i],
                    &self.timeframe,
                    since,
                    start.min(Self::now_ms()),
                )
                .map_err(|e| {
                    format!(
                        "{}: the warm-up candles of {}: {e}",
                        self.exchange, self.symbols[i]
                    )
                })?;
            for c in candles
                .into_iter()
                .filter(|c| c.open_time_ms >= since && c.open_time_ms < start)
            {
                let close = (c.open_time_ms + self.interval_ms) * 1_000_000;
                earlier.push((close, FeedBar::of_candle(i, c)));
            }
        }
        Ok(History::of(earlier, format!("ccxt:{}", self.exchange)))
    }

    fn describe(&self) -> String {
        format!("ccxt:{}", self.exchange)
    }

    fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    fn connected(&self) -> bool {
        self.failures == 0
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
        let mut feed = ReplayFeed::new("f.csv".into(), vec![a, b], 60, 0.0);
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
        let mut feed = ReplayFeed::new("f.csv".into(), vec![b], 60, 0.0);
        let Poll::Ready(batch) = feed.poll().unwrap() else {
            panic!("a batch is due")
        };
        assert_eq!(batch.bars[0].texts[3], "10.50");
    }

    #[test]
    fn paced_replay_waits_for_the_next_close_and_skips_traded_bars() {
        let a = series("A", &[0, 60_000_000_000, 120_000_000_000], &["1", "2", "3"]);
        // One minute bars at 60x: one bar a second.
        let mut feed = ReplayFeed::new("f.csv".into(), vec![a], 60_000_000_000, 60.0);
        assert!(matches!(feed.poll().unwrap(), Poll::Ready(_)));
        match feed.poll().unwrap() {
            Poll::Wait(d) => assert!(d > Duration::from_millis(900) && d <= Duration::from_secs(1)),
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(feed.skip_through(120_000_000_000), 1);
        assert_eq!(feed.remaining(), 1);
    }

    #[test]
    fn a_replay_history_is_the_bars_before_the_first_one_to_come() {
        let a = series("A", &[0, 60, 120, 180, 240], &["1", "2", "3", "4", "5"]);
        let b = series("B", &[60, 180], &["10", "11"]);
        let mut feed = ReplayFeed::new("f.csv".into(), vec![a, b], 60, 0.0);
        // A first session: nothing before the file's first bar.
        assert!(feed.history(10).unwrap().batches.is_empty());
        // A restart after the bars closing at or before 180: the last 2 bars of each symbol
        // before the first to come, by close time, the newest last.
        feed.skip_through(180);
        let history = feed.history(2).unwrap();
        let seen: Vec<(i64, Vec<(usize, String)>)> = history
            .batches
            .iter()
            .map(|b| {
                let bars = b.bars.iter().map(|x| (x.symbol, x.texts[3].clone()));
                (b.close_time, bars.collect())
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (120, vec![(0, "2".to_string()), (1, "10".to_string())]),
                (180, vec![(0, "3".to_string())]),
            ]
        );
        assert_eq!(history.source, "the replay file");
        // The feed itself is unchanged: the next bar is still the first after the restart.
        let Poll::Ready(next) = feed.poll().unwrap() else {
            panic!("a batch is due")
        };
        assert_eq!(next.close_time, 240);
    }

    /// A venue that only serves candles (every other call is an error).
    struct Candles(Vec<Vec<Candle>>, Vec<String>);

    impl Venue for Candles {
        fn markets(
            &mut self,
            _: &[String],
        ) -> Result<BTreeMap<String, crate::live::venue::MarketRules>, crate::live::venue::VenueError>
        {
            Err(unused())
        }
        fn closed_candles(
            &mut self,
            symbol: &str,
            _: &str,
            since_ms: i64,
            now_ms: i64,
        ) -> Result<Vec<Candle>, crate::live::venue::VenueError> {
            let i = self.1.iter().position(|s| s == symbol).unwrap();
            Ok(self.0[i]
                .iter()
                .filter(|c| c.open_time_ms >= since_ms && c.open_time_ms + 1000 <= now_ms)
                .copied()
                .collect())
        }
        fn submit(
            &mut self,
            _: &crate::live::journal::OrderIntent,
            _: Option<rust_decimal::Decimal>,
        ) -> Result<crate::live::venue::VenueOrder, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn resume(
            &mut self,
            _: &crate::live::journal::OrderIntent,
            _: i64,
        ) -> Result<crate::live::venue::VenueOrder, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn lookup(
            &mut self,
            _: &str,
            _: &str,
        ) -> Result<Option<crate::live::venue::VenueOrder>, crate::live::venue::VenueError>
        {
            Err(unused())
        }
        fn cancel(
            &mut self,
            _: &str,
            _: &str,
        ) -> Result<crate::live::venue::VenueOrder, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn open_orders(
            &mut self,
        ) -> Result<Vec<crate::live::venue::VenueOrder>, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn fills(
            &mut self,
            _: &str,
            _: Option<&str>,
            _: Option<i64>,
        ) -> Result<Vec<crate::live::venue::VenueFill>, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn account_view(
            &mut self,
            _: &str,
        ) -> Result<crate::live::reconcile::AccountView, crate::live::venue::VenueError> {
            Err(unused())
        }
        fn take_events(&mut self) -> Vec<crate::live::venue::VenueEvent> {
            Vec::new()
        }
    }

    fn unused() -> crate::live::venue::VenueError {
        crate::live::venue::VenueError::new(
            crate::live::venue::VenueErrorKind::Internal,
            "not used",
        )
    }

    fn candle(open_ms: i64, close: i64) -> Candle {
        let d = rust_decimal::Decimal::from(close);
        Candle {
            open_time_ms: open_ms,
            open: d,
            high: d,
            low: d,
            close: d,
            volume: rust_decimal::Decimal::ONE,
        }
    }

    fn feed_over(candles: Vec<Vec<Candle>>, start_ms: i64) -> ExchangeFeed {
        let symbols: Vec<String> = (0..candles.len()).map(|i| format!("S{i}")).collect();
        let venue = Rc::new(RefCell::new(Candles(candles, symbols.clone())));
        ExchangeFeed::new(venue, "test".into(), symbols, "1s".into(), 1000, start_ms)
    }

    fn drain(feed: &mut ExchangeFeed) -> Vec<(i64, Vec<usize>)> {
        let mut out = Vec::new();
        while let Poll::Ready(batch) = feed.poll().unwrap() {
            out.push((
                batch.close_time / 1_000_000,
                batch.bars.iter().map(|b| b.symbol).collect(),
            ));
        }
        out
    }

    #[test]
    fn an_exchange_feed_catches_up_in_order_and_waits_for_every_symbol() {
        // Two symbols, a minute in the past: S1 has no candle at the second close (a gap).
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 60_000;
        let a = vec![candle(t0, 1), candle(t0 + 1000, 2), candle(t0 + 2000, 3)];
        let b = vec![candle(t0, 10), candle(t0 + 2000, 30)];
        let mut feed = feed_over(vec![a, b], t0);
        assert_eq!(
            drain(&mut feed),
            vec![
                (t0 + 1000, vec![0, 1]),
                (t0 + 2000, vec![0]),
                (t0 + 3000, vec![0, 1])
            ]
        );
        assert!(
            feed.notices.is_empty(),
            "a gap that later candles prove is no notice"
        );
    }

    #[test]
    fn a_symbol_silent_past_the_grace_period_has_a_gap_with_a_notice() {
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 60_000;
        let mut feed = feed_over(vec![vec![candle(t0, 1)], Vec::new()], t0);
        assert_eq!(drain(&mut feed), vec![(t0 + 1000, vec![0])]);
        assert_eq!(feed.take_notices().len(), 1);
    }

    /// A stream whose updates the test queues.
    struct Scripted(Rc<RefCell<VecDeque<crate::live::venue::StreamUpdate>>>);

    impl CandleStream for Scripted {
        fn take(&mut self) -> Result<crate::live::venue::StreamUpdate, VenueError> {
            Ok(self.0.borrow_mut().pop_front().unwrap_or_default())
        }
    }

    fn streamed(candles: &[Candle], events: Vec<StreamEvent>) -> crate::live::venue::StreamUpdate {
        crate::live::venue::StreamUpdate {
            candles: candles
                .iter()
                .map(|&candle| crate::live::venue::StreamCandle {
                    symbol: "S0".into(),
                    candle,
                })
                .collect(),
            events,
        }
    }

    fn stream_feed(
        rest: Vec<Candle>,
        start_ms: i64,
    ) -> (
        ExchangeFeed,
        Rc<RefCell<VecDeque<crate::live::venue::StreamUpdate>>>,
    ) {
        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let feed = feed_over(vec![rest], start_ms).with_stream(Box::new(Scripted(queue.clone())));
        (feed, queue)
    }

    fn opens(feed: &mut ExchangeFeed) -> Vec<i64> {
        drain(feed)
            .into_iter()
            .map(|(close, _)| close - 1000)
            .collect()
    }

    #[test]
    fn streamed_candles_are_bars_without_rest() {
        // The candle that closed a moment ago: REST has nothing, the stream brings it.
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 1000;
        let (mut feed, queue) = stream_feed(Vec::new(), t0);
        queue.borrow_mut().push_back(streamed(
            &[candle(t0, 5)],
            vec![StreamEvent::Connected { time_ms: 0 }],
        ));
        assert_eq!(opens(&mut feed), vec![t0]);
        assert!(feed.streaming());
        assert_eq!(feed.stream_stats.streamed, 1);
        // the stream sends it again (a resend after a reconnect): not a second bar
        queue
            .borrow_mut()
            .push_back(streamed(&[candle(t0, 5)], Vec::new()));
        assert!(matches!(feed.poll().unwrap(), Poll::Wait(d) if d == STREAM_LOOK));
        assert_eq!(feed.stream_stats.duplicates, 1);
    }

    #[test]
    fn a_reconnect_fills_the_gap_through_rest_once_each() {
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 60_000;
        // REST knows every candle; the stream brings t0, drops, and comes back at t0 + 3 s.
        let rest: Vec<Candle> = (0..4).map(|k| candle(t0 + 1000 * k, k)).collect();
        let (mut feed, queue) = stream_feed(rest, t0);
        let up = || StreamEvent::Connected { time_ms: 0 };
        let down = StreamEvent::Disconnected {
            time_ms: 0,
            reason: Some("closed".into()),
        };
        queue.borrow_mut().extend([
            streamed(&[candle(t0, 0)], vec![up()]),
            streamed(&[], vec![down]),
            streamed(&[candle(t0 + 3000, 3)], vec![up()]),
        ]);
        let mut seen = Vec::new();
        for _ in 0..10 {
            if let Poll::Ready(batch) = feed.poll().unwrap() {
                seen.push(batch.bars[0].open_time / 1_000_000);
            }
        }
        assert_eq!(seen, vec![t0, t0 + 1000, t0 + 2000, t0 + 3000]);
        assert_eq!(feed.stream_stats.reconnects, 1);
        let notices = feed.take_notices().join("\n");
        assert!(
            notices.contains("websocket down (closed); polling REST"),
            "{notices}"
        );
        assert!(notices.contains("websocket reconnected"), "{notices}");
    }

    #[test]
    fn a_stream_that_gives_up_leaves_the_feed_polling() {
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 60_000;
        let (mut feed, queue) = stream_feed(vec![candle(t0, 1), candle(t0 + 1000, 2)], t0);
        queue.borrow_mut().push_back(streamed(
            &[],
            vec![StreamEvent::Failed {
                time_ms: 0,
                reason: Some("NotSupported".into()),
            }],
        ));
        assert_eq!(opens(&mut feed), vec![t0, t0 + 1000]);
        assert!(!feed.streaming());
        assert!(feed.take_notices()[0].contains("gave up (NotSupported); polling REST"));
    }

    #[test]
    fn a_bar_a_trade_stream_does_not_cover_comes_from_rest_at_once() {
        // The bar that closed a moment ago; REST has nothing at first.
        let t0 = ExchangeFeed::now_ms() / 1000 * 1000 - 1000;
        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let venue = Rc::new(RefCell::new(Candles(vec![Vec::new()], vec!["S0".into()])));
        let mut feed = ExchangeFeed::new(
            venue.clone(),
            "test".into(),
            vec!["S0".into()],
            "1s".into(),
            1000,
            t0,
        )
        .with_stream(Box::new(Scripted(queue.clone())));
        feed.patience = Duration::from_secs(3600);
        feed.idle_poll = Duration::ZERO;
        queue
            .borrow_mut()
            .push_back(streamed(&[], vec![StreamEvent::Connected { time_ms: 0 }]));
        assert!(matches!(feed.poll().unwrap(), Poll::Wait(_)));
        venue.borrow_mut().0[0].push(candle(t0, 7));
        // a stream that brings every bar: REST waits `patience` for it
        assert!(matches!(feed.poll().unwrap(), Poll::Wait(_)));
        // a trade stream that covers only from the next bar on: REST at once; its warning is
        // a notice
        queue.borrow_mut().push_back(streamed(
            &[],
            vec![
                StreamEvent::Covering {
                    time_ms: 0,
                    from_ms: t0 + 1000,
                },
                StreamEvent::Warning {
                    time_ms: 0,
                    reason: Some("a late trade".into()),
                },
            ],
        ));
        let Poll::Ready(batch) = feed.poll().unwrap() else {
            panic!("REST's bar is due")
        };
        assert_eq!(batch.bars[0].open_time, t0 * 1_000_000);
        assert_eq!(batch.bars[0].texts[3], "7");
        assert_eq!(feed.take_notices(), vec!["test: a late trade".to_string()]);
    }

    #[test]
    fn feed_modes_parse() {
        assert_eq!(FeedMode::parse("ws-trades"), Some(FeedMode::WsTrades));
        assert_eq!(FeedMode::parse("ws"), Some(FeedMode::Ws));
        assert_eq!(FeedMode::parse("auto"), Some(FeedMode::Auto));
        assert_eq!(FeedMode::parse("poll"), Some(FeedMode::Poll));
        assert_eq!(FeedMode::parse("websocket"), None);
    }

    #[test]
    fn the_forming_candle_is_never_a_bar() {
        // Starting with the candle forming now: nothing is due yet.
        let now = ExchangeFeed::now_ms() / 1000 * 1000;
        let mut feed = feed_over(vec![vec![candle(now, 1)]], now);
        assert!(matches!(feed.poll().unwrap(), Poll::Wait(_)));
    }
}
