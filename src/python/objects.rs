//! The engine's Python face: `Context`, `Bars`, `Portfolio`, `Order`, `Fill`, `Logger` and the
//! `Broker` an `Algorithm` sends its intents through. Each holds the shared session and locks
//! it for the duration of one call; none gives Python a mutable view of engine state.

use std::sync::{Arc, Mutex};

use numpy::PyArray1;
use numpy::datetime::{Datetime, units};
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyDict, PyString, PyTuple};
use rust_decimal::Decimal;

use super::arrays::{
    AggregateBuffer, CrossSectionBuffer, OutputBuffer, SeriesBuffer, f64_view, int_time_view,
    output_view, shared_view, time_view,
};
use super::convert::{datetime_from_ns, price_from_py, quantities_from_py, quantity_from_py};
use super::errors::{engine_error, indicator_error, order_error, unknown_symbol_error};
use crate::engine::{SharedSession, lock};
use crate::execution::OrderRequest;
use crate::market::Timeframe;
use crate::model::{
    OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimeInForce, TimestampNs, Trail,
    format_timestamp,
};

fn unknown_symbol(py: Python<'_>, session: &crate::engine::Session, symbol: &str) -> PyErr {
    let known = session.market.symbol_names().join(", ");
    unknown_symbol_error(
        py,
        format!("unknown symbol `{symbol}`; symbols in this run: {known}"),
    )
}

fn resolve(py: Python<'_>, session: &crate::engine::Session, symbol: &str) -> PyResult<SymbolId> {
    session
        .market
        .symbol_id(symbol)
        .ok_or_else(|| unknown_symbol(py, session, symbol))
}

/// What the algorithm sees at each tick. One object for the whole run.
#[pyclass(module = "_rustybt", frozen)]
pub struct Context {
    session: SharedSession,
    buffers: Vec<Py<SeriesBuffer>>,
    symbols: Py<PyTuple>,
    portfolio: Py<Portfolio>,
    /// `ctx.time` is built once per tick, not once per read.
    time_cache: Mutex<Option<(TimestampNs, Py<PyDateTime>)>>,
    aggregate_buffers: Mutex<std::collections::HashMap<usize, Py<AggregateBuffer>>>,
    cross_section: Py<CrossSectionBuffer>,
}

impl Context {
    /// The aggregation of `symbol` at `timeframe`, created (and caught up) on first use.
    fn aggregation(
        &self,
        py: Python<'_>,
        symbol: &str,
        timeframe: &str,
    ) -> PyResult<(SymbolId, usize, usize)> {
        let frame = Timeframe::parse(timeframe).map_err(pyo3::exceptions::PyValueError::new_err)?;
        let mut guard = lock(&self.session);
        let s = &mut *guard;
        let id = resolve(py, s, symbol)?;
        let aggregation_id = s.aggregation(id, frame);
        let len = s
            .aggregations
            .get(aggregation_id)
            .map(|a| a.len())
            .unwrap_or(0);
        Ok((id, aggregation_id, len))
    }

    /// One buffer object per aggregation for the whole run, so every view shares its base.
    pub(crate) fn aggregate_buffer(
        &self,
        py: Python<'_>,
        aggregation_id: usize,
    ) -> PyResult<Py<AggregateBuffer>> {
        let mut cache = self
            .aggregate_buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(buffer) = cache.get(&aggregation_id) {
            return Ok(buffer.clone_ref(py));
        }
        let s = lock(&self.session);
        let a = s
            .aggregations
            .get(aggregation_id)
            .expect("invariant: an id from get_or_attach");
        let buffer = Py::new(
            py,
            AggregateBuffer {
                time: a.time.clone(),
                open: a.open.clone(),
                high: a.high.clone(),
                low: a.low.clone(),
                close: a.close.clone(),
                volume: a.volume.clone(),
                count: a.count.clone(),
            },
        )?;
        cache.insert(aggregation_id, buffer.clone_ref(py));
        Ok(buffer)
    }

    pub fn new(py: Python<'_>, session: SharedSession) -> PyResult<Self> {
        let (buffers, names, cross) = {
            let s = lock(&session);
            let mut buffers = Vec::with_capacity(s.market.symbol_count());
            for index in 0..s.market.symbol_count() {
                let series = s.market.series(SymbolId(index as u32));
                buffers.push(Py::new(
                    py,
                    SeriesBuffer {
                        time: series.time.shared().clone(),
                        open: series.open.values.shared().clone(),
                        high: series.high.values.shared().clone(),
                        low: series.low.values.shared().clone(),
                        close: series.close.values.shared().clone(),
                        volume: series.volume.values.shared().clone(),
                    },
                )?);
            }
            let section = s.cross_section.clone();
            (buffers, s.market.symbol_names(), section)
        };
        Ok(Context {
            cross_section: Py::new(py, CrossSectionBuffer { section: cross })?,
            portfolio: Py::new(
                py,
                Portfolio {
                    session: session.clone(),
                },
            )?,
            session,
            buffers,
            symbols: PyTuple::new(py, names)?.unbind(),
            time_cache: Mutex::new(None),
            aggregate_buffers: Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub fn session(&self) -> &SharedSession {
        &self.session
    }

    /// Bars `start..end` of `symbol`'s base bars, or of one of its aggregations
    /// (`(aggregation id, timeframe label)`): the windows custom indicators calculate on.
    pub(crate) fn bars(
        &self,
        py: Python<'_>,
        symbol: SymbolId,
        aggregation: Option<(usize, &str)>,
        start: usize,
        end: usize,
    ) -> PyResult<Bars> {
        let aggregated = match aggregation {
            Some((id, timeframe)) => Some((self.aggregate_buffer(py, id)?, timeframe.to_string())),
            None => None,
        };
        Ok(Bars {
            buffer: self.buffers[symbol.index()].clone_ref(py),
            aggregated,
            start,
            end,
            symbol,
            session: self.session.clone(),
        })
    }

    /// The base columns of `symbol` (owned by the engine for the whole run).
    pub(crate) fn series_buffer<'py>(
        &self,
        py: Python<'py>,
        symbol: SymbolId,
    ) -> &Bound<'py, SeriesBuffer> {
        self.buffers[symbol.index()].bind(py)
    }
}

#[pymethods]
impl Context {
    /// Close time of the bar(s) just completed, as a UTC `datetime`.
    #[getter]
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        let now = lock(&self.session).now;
        let mut cache = self.time_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((time, value)) = cache.as_ref()
            && *time == now
        {
            return Ok(value.bind(py).clone());
        }
        let value = datetime_from_ns(py, now)?;
        *cache = Some((now, value.clone().unbind()));
        Ok(value)
    }

    /// `ctx.time` as integer nanoseconds since the epoch (UTC).
    #[getter]
    fn time_ns(&self) -> i64 {
        lock(&self.session).now
    }

    /// Symbols of this run, in load order (an immutable tuple).
    #[getter]
    fn symbols<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        self.symbols.bind(py).clone()
    }

    #[getter]
    fn portfolio<'py>(&self, py: Python<'py>) -> Bound<'py, Portfolio> {
        self.portfolio.bind(py).clone()
    }

    /// The closed bars of `symbol`, oldest first, ending with the bar that just closed.
    /// O(1): the arrays are views of engine memory.
    /// With a `timeframe` (`"5m"`, `"1h"`, `"1d"`, `"1w"`, `"1M"`, ...), the closed bars of that
    /// timeframe, built by the engine from the base bars (UTC buckets); the bar still forming
    /// is never included (see `forming`).
    #[pyo3(signature = (symbol, timeframe = None))]
    fn history(&self, py: Python<'_>, symbol: &str, timeframe: Option<&str>) -> PyResult<Bars> {
        let Some(timeframe) = timeframe else {
            let s = lock(&self.session);
            let id = resolve(py, &s, symbol)?;
            return Ok(Bars {
                buffer: self.buffers[id.index()].clone_ref(py),
                aggregated: None,
                start: 0,
                end: s.market.closed_count(id),
                symbol: id,
                session: self.session.clone(),
            });
        };
        let (id, aggregation_id, len) = self.aggregation(py, symbol, timeframe)?;
        let buffer = self.aggregate_buffer(py, aggregation_id)?;
        Ok(Bars {
            buffer: self.buffers[id.index()].clone_ref(py),
            aggregated: Some((buffer, timeframe.to_string())),
            start: 0,
            end: len,
            symbol: id,
            session: self.session.clone(),
        })
    }

    /// The latest bar of every symbol side by side, in `ctx.symbols` order: `field` is `close`
    /// (default), `open`, `high`, `low`, `volume` (float64, NaN for a symbol with no bar yet),
    /// `time_ns` (int64 open time of that bar; the minimum int64 before the first) or `bars`
    /// (int64: bars closed so far). Zero-copy and read-only; the engine updates it in place as
    /// bars close, so it always shows the latest values (`.copy()` keeps a snapshot).
    #[pyo3(signature = (field = "close"))]
    fn latest<'py>(&self, py: Python<'py>, field: &str) -> PyResult<Bound<'py, PyAny>> {
        let owner = self.cross_section.bind(py);
        let section = &owner.get().section;
        let n = section.close.capacity();
        let float = |column| shared_view::<f64>(owner.as_any(), column, 0, n).map(|a| a.into_any());
        let int = |column| shared_view::<i64>(owner.as_any(), column, 0, n).map(|a| a.into_any());
        match field {
            "close" => float(&section.close),
            "open" => float(&section.open),
            "high" => float(&section.high),
            "low" => float(&section.low),
            "volume" => float(&section.volume),
            "time_ns" => int(&section.time),
            "bars" => int(&section.bars),
            other => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown field `{other}`; use close, open, high, low, volume, time_ns or bars"
            ))),
        }
    }

    /// The `timeframe` bar of `symbol` still being built, as a dict (`start`, `end` in ns,
    /// `open`, `high`, `low`, `close`, `volume`, `count` of base bars), or None. It changes until
    /// it closes: decisions on it are decisions on an unfinished bar.
    fn forming<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        timeframe: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (_, aggregation_id, _) = self.aggregation(py, symbol, timeframe)?;
        let bar = lock(&self.session)
            .aggregations
            .get(aggregation_id)
            .and_then(|a| a.forming());
        let Some(bar) = bar else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        dict.set_item("start", bar.start)?;
        dict.set_item("end", bar.end)?;
        dict.set_item("open", bar.open)?;
        dict.set_item("high", bar.high)?;
        dict.set_item("low", bar.low)?;
        dict.set_item("close", bar.close)?;
        dict.set_item("volume", bar.volume)?;
        dict.set_item("count", bar.count)?;
        Ok(Some(dict))
    }

    fn __repr__(&self) -> String {
        format!(
            "<Context time={}>",
            format_timestamp(lock(&self.session).now)
        )
    }
}

/// Closed bars of one symbol. Every column is a read-only NumPy view of engine memory whose
/// last element is the bar that just closed; nothing after it exists in the view.
#[pyclass(module = "_rustybt", frozen)]
pub struct Bars {
    buffer: Py<SeriesBuffer>,
    /// Set for a higher timeframe: the engine-built bars replace the base columns.
    aggregated: Option<(Py<AggregateBuffer>, String)>,
    /// The bars shown are `start..end` of the timeframe's closed bars: the whole history for
    /// `ctx.history`, the last `window` bars for a custom indicator's `calculate`.
    start: usize,
    end: usize,
    symbol: SymbolId,
    session: SharedSession,
}

#[pymethods]
impl Bars {
    #[getter]
    fn symbol(&self) -> String {
        lock(&self.session)
            .market
            .symbol_name(self.symbol)
            .to_string()
    }

    /// Bar open times as `datetime64[ns]` (UTC).
    #[getter]
    fn time<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyArray1<Datetime<units::Nanoseconds>>>> {
        match &self.aggregated {
            Some((agg, _)) => {
                shared_view(agg.bind(py).as_any(), &agg.get().time, self.start, self.end)
            }
            None => time_view(self.buffer.bind(py), self.start, self.end),
        }
    }

    /// Bar open times as int64 nanoseconds since the epoch (UTC).
    #[getter]
    fn time_ns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        match &self.aggregated {
            Some((agg, _)) => {
                shared_view(agg.bind(py).as_any(), &agg.get().time, self.start, self.end)
            }
            None => int_time_view(self.buffer.bind(py), self.start, self.end),
        }
    }

    #[getter]
    fn open<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        self.column(py, Field::Open)
    }

    #[getter]
    fn high<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        self.column(py, Field::High)
    }

    #[getter]
    fn low<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        self.column(py, Field::Low)
    }

    #[getter]
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        self.column(py, Field::Close)
    }

    #[getter]
    fn volume<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        self.column(py, Field::Volume)
    }

    /// For a higher timeframe, the number of base bars in each bar (a gap in the base data
    /// shows as a smaller count); None for base bars.
    #[getter]
    fn count<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<i64>>>> {
        match &self.aggregated {
            Some((agg, _)) => shared_view(
                agg.bind(py).as_any(),
                &agg.get().count,
                self.start,
                self.end,
            )
            .map(Some),
            None => Ok(None),
        }
    }

    /// The timeframe of these bars (`"base"` for the loaded bars).
    #[getter]
    fn timeframe(&self) -> String {
        match &self.aggregated {
            Some((_, timeframe)) => timeframe.clone(),
            None => "base".to_string(),
        }
    }

    /// The exact price (or volume) of one bar as `decimal.Decimal`: the value in the data,
    /// at the column's scale (the most decimals any row of that column has).
    /// `field` is one of open, high, low, close, volume; `index` counts like a list (-1 = last).
    #[pyo3(signature = (field, index = -1))]
    fn decimal(&self, field: &str, index: isize) -> PyResult<Decimal> {
        if self.aggregated.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "exact values are kept for the base bars; use ctx.history(symbol).decimal(...)",
            ));
        }
        if !matches!(field, "open" | "high" | "low" | "close" | "volume") {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown field `{field}`; use open, high, low, close or volume"
            )));
        }
        let len = self.__len__();
        let position = if index < 0 {
            len as isize + index
        } else {
            index
        };
        if position < 0 || position as usize >= len {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "bar index {index} out of range for {len} closed bars"
            )));
        }
        let s = lock(&self.session);
        let series = s.market.series(self.symbol);
        let column = match field {
            "open" => &series.open,
            "high" => &series.high,
            "low" => &series.low,
            "close" => &series.close,
            _ => &series.volume,
        };
        Ok(column.exact.get(self.start + position as usize))
    }

    /// A pandas DataFrame of these bars indexed by UTC open time. This one copies.
    fn to_pandas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pandas = py.import("pandas")?;
        let columns = PyDict::new(py);
        for name in ["open", "high", "low", "close", "volume"] {
            columns.set_item(name, self.__getattr_column(py, name)?)?;
        }
        let index = pandas
            .getattr("DatetimeIndex")?
            .call1((self.time(py)?,))?
            .call_method1("tz_localize", ("UTC",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("index", index)?;
        kwargs.set_item("copy", true)?;
        pandas.getattr("DataFrame")?.call((columns,), Some(&kwargs))
    }

    fn __len__(&self) -> usize {
        self.end - self.start
    }

    fn __repr__(&self) -> String {
        format!("<Bars {} closed={}>", self.symbol(), self.__len__())
    }
}

#[derive(Clone, Copy)]
enum Field {
    Open,
    High,
    Low,
    Close,
    Volume,
}

impl Bars {
    fn column<'py>(&self, py: Python<'py>, field: Field) -> PyResult<Bound<'py, PyArray1<f64>>> {
        if let Some((agg, _)) = &self.aggregated {
            let a = agg.get();
            let column = match field {
                Field::Open => &a.open,
                Field::High => &a.high,
                Field::Low => &a.low,
                Field::Close => &a.close,
                Field::Volume => &a.volume,
            };
            return shared_view(agg.bind(py).as_any(), column, self.start, self.end);
        }
        let buffer = self.buffer.bind(py);
        let b = buffer.get();
        let column = match field {
            Field::Open => &b.open,
            Field::High => &b.high,
            Field::Low => &b.low,
            Field::Close => &b.close,
            Field::Volume => &b.volume,
        };
        f64_view(buffer, column, self.start, self.end)
    }

    fn __getattr_column<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let field = match name {
            "open" => Field::Open,
            "high" => Field::High,
            "low" => Field::Low,
            "close" => Field::Close,
            _ => Field::Volume,
        };
        self.column(py, field)
    }
}

/// Cash, equity and positions, exact (`decimal.Decimal`), marked at the last close.
#[pyclass(module = "_rustybt", frozen)]
pub struct Portfolio {
    session: SharedSession,
}

#[pymethods]
impl Portfolio {
    #[getter]
    fn cash(&self) -> Decimal {
        lock(&self.session).ledger.cash()
    }

    #[getter]
    fn initial_cash(&self) -> Decimal {
        lock(&self.session).ledger.initial_cash()
    }

    /// Cash plus every position at its last close.
    #[getter]
    fn equity(&self, py: Python<'_>) -> PyResult<Decimal> {
        lock(&self.session)
            .ledger
            .equity()
            .map_err(|e| engine_error(py, e.to_string()))
    }

    #[getter]
    fn fees_paid(&self) -> Decimal {
        lock(&self.session).ledger.fees_paid()
    }

    #[getter]
    fn realized_pnl(&self) -> Decimal {
        lock(&self.session).ledger.realized_pnl()
    }

    /// Signed quantity held in `symbol` (negative when short, 0 when flat).
    fn position(&self, py: Python<'_>, symbol: &str) -> PyResult<Decimal> {
        let s = lock(&self.session);
        let id = resolve(py, &s, symbol)?;
        Ok(s.ledger
            .position(id)
            .map(|p| p.quantity)
            .unwrap_or_default())
    }

    /// Average entry price of the open position in `symbol`, or None when flat.
    fn average_price(&self, py: Python<'_>, symbol: &str) -> PyResult<Option<Decimal>> {
        let s = lock(&self.session);
        let id = resolve(py, &s, symbol)?;
        Ok(s.ledger.position(id).and_then(|p| p.average_price()))
    }

    /// Unrealized PnL of `symbol` at its last close.
    fn unrealized_pnl(&self, py: Python<'_>, symbol: &str) -> PyResult<Decimal> {
        let s = lock(&self.session);
        let id = resolve(py, &s, symbol)?;
        s.ledger
            .position(id)
            .map(|p| p.unrealized_pnl())
            .unwrap_or(Some(Decimal::ZERO))
            .ok_or_else(|| engine_error(py, "decimal overflow valuing a position"))
    }

    /// `{symbol: signed quantity}` of every open position.
    #[getter]
    fn positions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = lock(&self.session);
        let dict = PyDict::new(py);
        for id in s.ledger.open_symbols() {
            if let Some(p) = s.ledger.position(*id) {
                dict.set_item(s.market.symbol_name(*id), p.quantity)?;
            }
        }
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let s = lock(&self.session);
        format!(
            "<Portfolio cash={} equity={}>",
            s.ledger.cash(),
            s.ledger
                .equity()
                .map(|e| e.to_string())
                .unwrap_or_else(|_| "overflow".into())
        )
    }
}

/// A handle on a submitted order; its status is read live from the engine.
#[pyclass(module = "_rustybt", frozen)]
pub struct Order {
    id: OrderId,
    session: SharedSession,
}

impl Order {
    /// A handle on the engine's order `id` (a live restart re-binds saved handles with it).
    pub fn handle(py: Python<'_>, id: OrderId, session: &SharedSession) -> PyResult<Py<Order>> {
        Py::new(
            py,
            Order {
                id,
                session: session.clone(),
            },
        )
    }

    fn with<T>(&self, f: impl FnOnce(&crate::model::Order, &crate::engine::Session) -> T) -> T {
        let s = lock(&self.session);
        let order = s
            .orders
            .get(self.id)
            .expect("invariant: an Order handle only exists for a submitted order");
        f(order, &s)
    }
}

#[pymethods]
impl Order {
    #[getter]
    fn id(&self) -> u64 {
        self.id.0
    }

    #[getter]
    fn symbol(&self) -> String {
        self.with(|o, s| s.market.symbol_name(o.symbol).to_string())
    }

    /// "buy" or "sell".
    #[getter]
    fn side(&self) -> &'static str {
        self.with(|o, _| o.side.as_str())
    }

    #[getter]
    fn quantity(&self) -> Decimal {
        self.with(|o, _| o.quantity)
    }

    /// new, accepted, triggered, partially_filled, filled, cancelled, rejected or expired.
    #[getter]
    fn status(&self) -> &'static str {
        self.with(|o, _| o.status.as_str())
    }

    #[getter]
    fn is_open(&self) -> bool {
        self.with(|o, _| o.status.is_open())
    }

    /// Average price of its fills (exact), None before the first.
    #[getter]
    fn fill_price(&self) -> Option<Decimal> {
        self.with(|o, _| o.average_price())
    }

    #[getter]
    fn average_price(&self) -> Option<Decimal> {
        self.fill_price()
    }

    #[getter]
    fn filled_quantity(&self) -> Decimal {
        self.with(|o, _| o.filled_quantity)
    }

    /// Fees of its fills so far.
    #[getter]
    fn fees(&self) -> Decimal {
        self.with(|o, _| o.fees)
    }

    /// market, limit, stop, stop_limit, trailing_stop, market_on_open or market_on_close.
    #[getter]
    fn order_type(&self) -> &'static str {
        self.with(|o, _| o.kind.as_str())
    }

    #[getter]
    fn limit(&self) -> Option<Decimal> {
        self.with(|o, _| o.kind.limit())
    }

    #[getter]
    fn stop(&self) -> Option<Decimal> {
        self.with(|o, _| o.kind.stop().or(o.trail_stop))
    }

    /// gtc, day, ioc, fok or gtd.
    #[getter]
    fn tif(&self) -> &'static str {
        self.with(|o, _| o.tif.as_str())
    }

    /// Changes the quantity and/or the price (limit, or stop; a triggered stop-limit's limit)
    /// of an open order. Raises OrderError when it cannot.
    #[pyo3(signature = (quantity = None, price = None))]
    fn modify(
        &self,
        py: Python<'_>,
        quantity: Option<&Bound<'_, PyAny>>,
        price: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let quantity = quantity.map(quantity_from_py).transpose()?;
        let price = price.map(|p| price_from_py(p, "price")).transpose()?;
        let mut s = lock(&self.session);
        let now = s.now;
        if s.external_execution {
            return Err(order_error(
                py,
                "an order at an exchange cannot be modified in place; cancel it and place a new one"
                    .to_string(),
            ));
        }
        if let Some(order) = s.orders.get(self.id) {
            let new_quantity = quantity.unwrap_or(order.quantity);
            let prices: Vec<Decimal> = price.into_iter().collect();
            s.instrument(order.symbol)
                .check(new_quantity, &prices, price)
                .map_err(|e| order_error(py, e))?;
        }
        s.orders
            .modify(self.id, quantity, price, now)
            .map_err(|e| order_error(py, e.to_string()))
    }

    #[getter]
    fn submitted_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime_from_ns(py, self.with(|o, _| o.submitted_at))
    }

    #[getter]
    fn filled_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        self.with(|o, _| o.filled_at)
            .map(|t| datetime_from_ns(py, t))
            .transpose()
    }

    /// Why the order ended without a fill, if it did.
    #[getter]
    fn reason(&self) -> Option<String> {
        self.with(|o, _| o.reason.clone())
    }

    /// Cancels the order if it is still open; returns whether it was.
    fn cancel(&self) -> bool {
        let mut s = lock(&self.session);
        let now = s.now;
        s.orders.cancel(self.id, "cancelled by the algorithm", now)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Order>()
            .map(|o| o.get().id == self.id)
            .unwrap_or(false)
    }

    fn __hash__(&self) -> u64 {
        self.id.0
    }

    fn __repr__(&self) -> String {
        self.with(|o, s| {
            format!(
                "<Order {} {} {} {} {} {}>",
                o.id.0,
                o.kind.as_str(),
                o.side,
                o.quantity,
                s.market.symbol_name(o.symbol),
                o.status.as_str()
            )
        })
    }
}

/// One execution, passed to `Algorithm.on_fill`.
#[pyclass(module = "_rustybt", frozen, get_all)]
pub struct Fill {
    pub order_id: u64,
    pub symbol: String,
    /// "buy" or "sell".
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub time_ns: i64,
}

impl Fill {
    pub fn from_model(fill: &crate::model::Fill, symbol: &str) -> Self {
        Fill {
            order_id: fill.order_id.0,
            symbol: symbol.to_string(),
            side: fill.side.as_str(),
            quantity: fill.quantity,
            price: fill.price,
            fee: fill.fee,
            time_ns: fill.time,
        }
    }
}

#[pymethods]
impl Fill {
    #[getter]
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime_from_ns(py, self.time_ns)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Fill order={} {} {} {} @ {} fee={} at {}>",
            self.order_id,
            self.side,
            self.quantity,
            self.symbol,
            self.price,
            self.fee,
            format_timestamp(self.time_ns)
        )
    }
}

/// Where algorithm log lines go: stderr (unless quiet, and from `echo_level` up) and the
/// run's `log.txt` (every line).
#[derive(Debug, Default)]
pub struct LogSink {
    pub lines: Mutex<Vec<String>>,
    pub echo: bool,
    pub echo_level: crate::console::LogLevel,
}

/// `self.log` of an algorithm: lines stamped with the simulated time.
#[pyclass(module = "_rustybt", frozen)]
pub struct Logger {
    session: SharedSession,
    sink: Arc<LogSink>,
    name: String,
}

impl Logger {
    fn emit(
        &self,
        level: crate::console::LogLevel,
        message: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let text = if args.is_empty() {
            message.str()?.to_string()
        } else {
            message.rem(args)?.str()?.to_string()
        };
        let now = lock(&self.session).now;
        let line = format!(
            "{} {:<7} {}: {text}",
            format_timestamp(now),
            level.as_str(),
            self.name
        );
        if self.sink.echo && level >= self.sink.echo_level {
            crate::above_status!("{line}");
        }
        self.sink
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        Ok(())
    }
}

#[pymethods]
impl Logger {
    #[pyo3(signature = (message, *args))]
    fn debug(&self, message: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.emit(crate::console::LogLevel::Debug, message, args)
    }

    #[pyo3(signature = (message, *args))]
    fn info(&self, message: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.emit(crate::console::LogLevel::Info, message, args)
    }

    #[pyo3(signature = (message, *args))]
    fn warning(&self, message: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.emit(crate::console::LogLevel::Warning, message, args)
    }

    #[pyo3(signature = (message, *args))]
    fn error(&self, message: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.emit(crate::console::LogLevel::Error, message, args)
    }
}

/// One order state change, as passed to `Algorithm.on_order`.
#[pyclass(module = "_rustybt", frozen, get_all)]
pub struct OrderEvent {
    pub order: Py<Order>,
    pub order_id: u64,
    pub symbol: String,
    pub status: &'static str,
    pub time_ns: i64,
    pub fill_quantity: Option<Decimal>,
    pub fill_price: Option<Decimal>,
    pub reason: Option<String>,
}

impl OrderEvent {
    pub fn from_model(
        py: Python<'_>,
        event: &crate::model::OrderEvent,
        symbol: &str,
        session: &SharedSession,
    ) -> PyResult<Self> {
        Ok(OrderEvent {
            order: Py::new(
                py,
                Order {
                    id: event.order_id,
                    session: session.clone(),
                },
            )?,
            order_id: event.order_id.0,
            symbol: symbol.to_string(),
            status: event.status.as_str(),
            time_ns: event.time,
            fill_quantity: event.fill_quantity,
            fill_price: event.fill_price,
            reason: event.reason.clone(),
        })
    }
}

#[pymethods]
impl OrderEvent {
    fn __repr__(&self) -> String {
        format!(
            "<OrderEvent order={} {} {}{}>",
            self.order_id,
            self.symbol,
            self.status,
            self.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    }
}

/// A built-in indicator attached to a symbol: the engine updates it once per closed bar of
/// that symbol; reading it costs an attribute access, and its arrays are zero-copy views.
#[pyclass(module = "_rustybt", frozen)]
pub struct IndicatorHandle {
    name: String,
    symbol: String,
    warm_up_period: usize,
    primary: Py<OutputBuffer>,
    outputs: Vec<(String, Py<OutputBuffer>)>,
}

impl IndicatorHandle {
    /// A handle over an indicator's output columns; `primary` indexes the `value` output.
    pub(crate) fn new(
        py: Python<'_>,
        name: String,
        symbol: String,
        warm_up_period: usize,
        outputs: Vec<(String, Arc<crate::market::SharedColumn>)>,
        primary: usize,
    ) -> PyResult<Self> {
        let mut buffers = Vec::with_capacity(outputs.len());
        for (output_name, column) in outputs {
            buffers.push((output_name, Py::new(py, OutputBuffer { column })?));
        }
        Ok(IndicatorHandle {
            name,
            symbol,
            warm_up_period,
            primary: buffers[primary.min(buffers.len() - 1)].1.clone_ref(py),
            outputs: buffers,
        })
    }
}

#[pymethods]
impl IndicatorHandle {
    /// The latest value of the primary output; NaN until the indicator is ready.
    #[getter]
    fn value(&self) -> f64 {
        self.primary.get().column.last()
    }

    /// True once the warm-up period has passed (values are no longer NaN).
    #[getter]
    fn ready(&self) -> bool {
        self.primary.get().column.len() >= self.warm_up_period
    }

    /// Every value of the primary output so far, one per closed bar (read-only view).
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        output_view(self.primary.bind(py))
    }

    /// Names of the outputs (e.g. macd, macdsignal, macdhist), the first being `value`'s.
    #[getter]
    fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The values of one named output (read-only view).
    fn output<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<f64>>> {
        match self.outputs.iter().find(|(n, _)| n == name) {
            Some((_, buffer)) => output_view(buffer.bind(py)),
            None => Err(indicator_error(
                py,
                format!(
                    "`{}` has no output `{name}`; outputs: {}",
                    self.name,
                    self.output_names().join(", ")
                ),
            )),
        }
    }

    /// The latest value of every output, by name.
    #[getter]
    fn latest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, buffer) in &self.outputs {
            dict.set_item(name, buffer.get().column.last())?;
        }
        Ok(dict)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn symbol(&self) -> &str {
        &self.symbol
    }

    /// Bars needed before the first value.
    #[getter]
    fn warm_up_period(&self) -> usize {
        self.warm_up_period
    }

    fn __len__(&self) -> usize {
        self.primary.get().column.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Indicator {} on {} value={}>",
            self.name,
            self.symbol,
            self.value()
        )
    }
}

/// The channel from an `Algorithm` to the engine: orders in, handles out.
#[pyclass(module = "_rustybt", frozen)]
pub struct Broker {
    session: SharedSession,
    logger: Py<Logger>,
    context: Py<Context>,
    custom: Arc<super::custom::PythonIndicators>,
    schedules: Py<super::schedule::Schedules>,
}

impl Broker {
    pub fn new(
        py: Python<'_>,
        context: Py<Context>,
        sink: Arc<LogSink>,
        algorithm_name: &str,
        custom: Arc<super::custom::PythonIndicators>,
        schedules: Py<super::schedule::Schedules>,
    ) -> PyResult<Self> {
        let session = context.get().session.clone();
        Ok(Broker {
            custom,
            schedules,
            logger: Py::new(
                py,
                Logger {
                    session: session.clone(),
                    sink,
                    name: algorithm_name.to_string(),
                },
            )?,
            session,
            context,
        })
    }

    fn handle(&self, id: OrderId) -> Order {
        Order {
            id,
            session: self.session.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        py: Python<'_>,
        symbol: &Bound<'_, PyAny>,
        side: &str,
        quantity: &Bound<'_, PyAny>,
        prices: OrderPrices<'_, '_>,
        tif: Option<&str>,
        good_till: Option<i64>,
    ) -> PyResult<OrderRequest> {
        let side = match side {
            "buy" => OrderSide::Buy,
            "sell" => OrderSide::Sell,
            other => {
                return Err(order_error(
                    py,
                    format!("side must be \"buy\" or \"sell\", got `{other}`"),
                ));
            }
        };
        let symbol = symbol
            .cast::<PyString>()
            .map_err(|_| order_error(py, "symbol must be a str"))?
            .to_str()?
            .to_string();
        let quantity = quantity_from_py(quantity)?;
        let price = |value: Option<&Bound<'_, PyAny>>, name| {
            value.map(|v| price_from_py(v, name)).transpose()
        };
        let limit = price(prices.limit, "limit")?;
        let stop = price(prices.stop, "stop")?;
        let trail = price(prices.trail, "trail")?;
        let trail_percent = price(prices.trail_percent, "trail_percent")?;
        let kind = match (limit, stop, trail, trail_percent, prices.at) {
            (None, None, None, None, None) => OrderKind::Market,
            (Some(limit), None, None, None, None) => OrderKind::Limit { limit },
            (None, Some(stop), None, None, None) => OrderKind::Stop { stop },
            (Some(limit), Some(stop), None, None, None) => OrderKind::StopLimit { stop, limit },
            (None, None, Some(amount), None, None) => OrderKind::TrailingStop {
                trail: Trail::Amount(amount),
            },
            (None, None, None, Some(fraction), None) => {
                if fraction >= Decimal::ONE {
                    return Err(order_error(
                        py,
                        format!("trail_percent is a fraction below 1 (0.02 = 2%), got {fraction}"),
                    ));
                }
                OrderKind::TrailingStop {
                    trail: Trail::Percent(fraction),
                }
            }
            (None, None, None, None, Some("open")) => OrderKind::MarketOnOpen,
            (None, None, None, None, Some("close")) => OrderKind::MarketOnClose,
            (None, None, None, None, Some(other)) => {
                return Err(order_error(
                    py,
                    format!("at must be \"open\" or \"close\", got `{other}`"),
                ));
            }
            _ => {
                return Err(order_error(
                    py,
                    "combine only limit with stop (a stop-limit); trail, trail_percent and at stand alone",
                ));
            }
        };
        let tif = match (
            tif.unwrap_or(if good_till.is_some() { "gtd" } else { "gtc" }),
            good_till,
        ) {
            ("gtc", None) => TimeInForce::Gtc,
            ("day", None) => TimeInForce::Day,
            ("ioc", None) => TimeInForce::Ioc,
            ("fok", None) => TimeInForce::Fok,
            ("gtd", Some(until)) => TimeInForce::Gtd(until),
            ("gtd", None) => return Err(order_error(py, "tif=\"gtd\" needs good_till")),
            (_, Some(_)) => return Err(order_error(py, "good_till goes with tif=\"gtd\" only")),
            (other, None) => {
                return Err(order_error(
                    py,
                    format!("tif must be gtc, day, ioc, fok or gtd, got `{other}`"),
                ));
            }
        };
        let s = lock(&self.session);
        let id = resolve(py, &s, &symbol)?;
        Ok(OrderRequest {
            symbol: id,
            side,
            quantity,
            kind,
            tif,
            oco_group: None,
            parent: None,
        })
    }
}

/// The optional prices of an order request, as Python passed them.
#[derive(Default)]
struct OrderPrices<'a, 'py> {
    limit: Option<&'a Bound<'py, PyAny>>,
    stop: Option<&'a Bound<'py, PyAny>>,
    trail: Option<&'a Bound<'py, PyAny>>,
    trail_percent: Option<&'a Bound<'py, PyAny>>,
    at: Option<&'a str>,
}

#[pymethods]
impl Broker {
    /// Submits an order. `side` is "buy" or "sell"; `quantity` a Decimal, int or str. With
    /// `limit` a limit order, `stop` a stop, both a stop-limit; `trail` (an amount) or
    /// `trail_percent` (a fraction) a trailing stop; `at="open"`/`"close"` market-on-open/close.
    /// `tif`: gtc (default), day, ioc, fok, or gtd with `good_till` (ns since the epoch).
    #[pyo3(signature = (symbol, side, quantity, limit = None, stop = None, trail = None, trail_percent = None, tif = None, good_till = None, at = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        symbol: &Bound<'_, PyAny>,
        side: &str,
        quantity: &Bound<'_, PyAny>,
        limit: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
        trail: Option<&Bound<'_, PyAny>>,
        trail_percent: Option<&Bound<'_, PyAny>>,
        tif: Option<&str>,
        good_till: Option<i64>,
        at: Option<&str>,
    ) -> PyResult<Order> {
        let request = self.request(
            py,
            symbol,
            side,
            quantity,
            OrderPrices {
                limit,
                stop,
                trail,
                trail_percent,
                at,
            },
            tif,
            good_till,
        )?;
        let id = lock(&self.session)
            .submit(request)
            .map_err(|e| order_error(py, e.to_string()))?;
        Ok(self.handle(id))
    }

    /// Market orders (good till cancelled) for many symbols in one call: `quantities[i]` of
    /// `symbols[i]` (default: every symbol, in `ctx.symbols` order), bought when positive, sold
    /// when negative, nothing when zero. `quantities` is an integer NumPy array or a sequence of
    /// Decimal, int or str. Every order passes the checks `submit` applies, in the given order.
    /// Returns the orders placed, in that order.
    #[pyo3(signature = (quantities, symbols = None))]
    fn submit_many(
        &self,
        py: Python<'_>,
        quantities: &Bound<'_, PyAny>,
        symbols: Option<Vec<String>>,
    ) -> PyResult<Vec<Order>> {
        let quantities = quantities_from_py(quantities)?;
        let mut s = lock(&self.session);
        let ids: Vec<SymbolId> = match &symbols {
            None => (0..s.market.symbol_count() as u32).map(SymbolId).collect(),
            Some(names) => names
                .iter()
                .map(|name| resolve(py, &s, name))
                .collect::<PyResult<_>>()?,
        };
        if ids.len() != quantities.len() {
            return Err(order_error(
                py,
                format!(
                    "{} quantities for {} symbols: give one per symbol{}",
                    quantities.len(),
                    ids.len(),
                    if symbols.is_none() {
                        " of ctx.symbols"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let mut placed = Vec::new();
        for (&id, quantity) in ids.iter().zip(quantities) {
            if quantity.is_zero() {
                continue;
            }
            let side = if quantity.is_sign_positive() {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            };
            let order = s
                .submit(OrderRequest::market(id, side, quantity.abs()))
                .map_err(|e| order_error(py, e.to_string()))?;
            placed.push(self.handle(order));
        }
        Ok(placed)
    }

    /// An entry and its two exits: a take-profit limit and a stop-loss stop on the other side,
    /// which wait until the entry fills (for the quantity that filled) and cancel each other.
    /// The entry is a market order, or a limit order with `limit`. Returns (entry, take
    /// profit, stop loss).
    #[pyo3(signature = (symbol, side, quantity, take_profit, stop_loss, limit = None, tif = None))]
    #[allow(clippy::too_many_arguments)]
    fn bracket(
        &self,
        py: Python<'_>,
        symbol: &Bound<'_, PyAny>,
        side: &str,
        quantity: &Bound<'_, PyAny>,
        take_profit: &Bound<'_, PyAny>,
        stop_loss: &Bound<'_, PyAny>,
        limit: Option<&Bound<'_, PyAny>>,
        tif: Option<&str>,
    ) -> PyResult<(Order, Order, Order)> {
        let entry = self.request(
            py,
            symbol,
            side,
            quantity,
            OrderPrices {
                limit,
                ..Default::default()
            },
            tif,
            None,
        )?;
        let take = price_from_py(take_profit, "take_profit")?;
        let stop = price_from_py(stop_loss, "stop_loss")?;
        let mut s = lock(&self.session);
        let entry_id = s
            .submit(entry.clone())
            .map_err(|e| order_error(py, e.to_string()))?;
        if s.orders.get(entry_id).map(|o| o.status) == Some(OrderStatus::Rejected) {
            return Err(order_error(
                py,
                format!(
                    "bracket entry rejected: {}",
                    s.orders
                        .get(entry_id)
                        .and_then(|o| o.reason.clone())
                        .unwrap_or_default()
                ),
            ));
        }
        let group = s.orders.new_group();
        let exit = |kind| OrderRequest {
            symbol: entry.symbol,
            side: entry.side.opposite(),
            quantity: entry.quantity,
            kind,
            tif: TimeInForce::Gtc,
            oco_group: Some(group),
            parent: Some(entry_id),
        };
        let take_id = s
            .submit(exit(OrderKind::Limit { limit: take }))
            .map_err(|e| order_error(py, e.to_string()))?;
        let stop_id = s
            .submit(exit(OrderKind::Stop { stop }))
            .map_err(|e| order_error(py, e.to_string()))?;
        Ok((
            self.handle(entry_id),
            self.handle(take_id),
            self.handle(stop_id),
        ))
    }

    /// Links open orders so that a fill of one cancels the others (one-cancels-other).
    fn oco(&self, py: Python<'_>, orders: Vec<PyRef<'_, Order>>) -> PyResult<()> {
        if orders.len() < 2 {
            return Err(order_error(py, "oco needs at least two orders"));
        }
        let mut s = lock(&self.session);
        let ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
        s.orders
            .link_oco(&ids)
            .map_err(|e| order_error(py, e.to_string()))
    }

    /// Submits the market order that flattens `symbol` once every open order of it has filled
    /// too; None when that is already flat.
    fn close(&self, py: Python<'_>, symbol: &str) -> PyResult<Option<Order>> {
        let mut s = lock(&self.session);
        let id = resolve(py, &s, symbol)?;
        let held = s
            .ledger
            .position(id)
            .map(|p| p.quantity)
            .unwrap_or_default();
        // What open orders will still add: their unfilled part, not counting bracket exits and
        // OCO members, which only close what is there.
        let pending: Decimal = s
            .orders
            .open_orders(id)
            .filter(|o| o.parent.is_none() && o.oco_group.is_none())
            .map(|o| o.side.sign() * o.remaining())
            .sum();
        let quantity = held + pending;
        if quantity.is_zero() {
            return Ok(None);
        }
        let side = if quantity > Decimal::ZERO {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        let id = s
            .submit_market_order(symbol, side, quantity.abs())
            .map_err(|e| order_error(py, e.to_string()))?;
        Ok(Some(self.handle(id)))
    }

    /// The algorithm's scheduled callbacks (`Algorithm.schedule`).
    #[getter]
    fn schedules(&self, py: Python<'_>) -> Py<super::schedule::Schedules> {
        self.schedules.clone_ref(py)
    }

    /// Open orders, of one symbol or of all.
    #[pyo3(signature = (symbol = None))]
    fn open_orders(&self, py: Python<'_>, symbol: Option<&str>) -> PyResult<Vec<Order>> {
        let s = lock(&self.session);
        let ids: Vec<OrderId> = match symbol {
            Some(symbol) => {
                let id = resolve(py, &s, symbol)?;
                s.orders.open_orders(id).map(|o| o.id).collect()
            }
            None => (0..s.market.symbol_count())
                .flat_map(|i| s.orders.open_orders(SymbolId(i as u32)).map(|o| o.id))
                .collect(),
        };
        Ok(ids.into_iter().map(|id| self.handle(id)).collect())
    }

    /// Attaches the built-in indicator `name` to `symbol`; `params` by TA-Lib's names
    /// (`timeperiod`, `fastperiod`, ...; `period` is accepted for `timeperiod`).
    #[pyo3(signature = (name, symbol, params = None, timeframe = None))]
    fn indicator(
        &self,
        py: Python<'_>,
        name: &str,
        symbol: &str,
        params: Option<&Bound<'_, PyDict>>,
        timeframe: Option<&str>,
    ) -> PyResult<IndicatorHandle> {
        let mut settings = Vec::new();
        if let Some(params) = params {
            for (key, value) in params.iter() {
                let key: String = key.extract()?;
                let number: f64 = value.extract().map_err(|_| {
                    indicator_error(py, format!("parameter `{key}` must be a number"))
                })?;
                let key = if key == "period" {
                    "timeperiod".to_string()
                } else {
                    key
                };
                settings.push((key, number));
            }
        }
        let frame = timeframe
            .map(Timeframe::parse)
            .transpose()
            .map_err(|e| indicator_error(py, e))?;
        let mut guard = lock(&self.session);
        let s = &mut *guard;
        let id = resolve(py, s, symbol)?;
        let closed = s.market.closed_count(id);
        let attached = match frame {
            None => s
                .indicators
                .attach(id, name, &settings, s.market.series(id), closed),
            Some(frame) => {
                let aggregation_id = s.aggregation(id, frame);
                let aggregation = s
                    .aggregations
                    .get(aggregation_id)
                    .expect("invariant: an id from get_or_attach");
                s.indicators.attach_on_timeframe(
                    s.market.symbol_name(id),
                    name,
                    &settings,
                    aggregation,
                    aggregation_id,
                )
            }
        };
        let attached_id = attached.map_err(|e| indicator_error(py, e.to_string()))?;
        let attached = s
            .indicators
            .get(attached_id)
            .expect("invariant: attach returned a valid id");
        let outputs = attached
            .output_names
            .iter()
            .map(|name| name.to_string())
            .zip(attached.outputs.iter().cloned())
            .collect();
        IndicatorHandle::new(
            py,
            attached.name.clone(),
            symbol.to_string(),
            attached.warm_up_period,
            outputs,
            attached.primary,
        )
    }

    /// Attaches a custom Python indicator (an `rustybt_api.Indicator` instance) to `symbol`;
    /// `key` identifies it (class, parameters, symbol, timeframe) so attaching the same one
    /// twice returns the same handle.
    #[pyo3(signature = (instance, symbol, timeframe, key))]
    fn custom_indicator(
        &self,
        py: Python<'_>,
        instance: &Bound<'_, PyAny>,
        symbol: &str,
        timeframe: Option<&str>,
        key: String,
    ) -> PyResult<Py<IndicatorHandle>> {
        self.custom.attach(
            py,
            self.context.get(),
            super::custom::AttachRequest {
                key,
                instance,
                symbol,
                timeframe,
            },
        )
    }

    /// Records `value` (a number) under `name` at the current simulated time; the series go
    /// to `records.parquet` and the report draws them.
    fn record(&self, name: &str, value: f64) -> PyResult<()> {
        if name.is_empty() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "record() needs a non-empty name",
            ));
        }
        let mut session = lock(&self.session);
        let now = session.now;
        session.records.record(now, name, value);
        Ok(())
    }

    #[getter]
    fn log<'py>(&self, py: Python<'py>) -> Bound<'py, Logger> {
        self.logger.bind(py).clone()
    }

    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, Context> {
        self.context.bind(py).clone()
    }
}

/// The `_rustybt` built-in module, registered before the interpreter starts.
#[pymodule]
pub fn _rustybt(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<Context>()?;
    module.add_class::<Bars>()?;
    module.add_class::<Portfolio>()?;
    module.add_class::<Order>()?;
    module.add_class::<Fill>()?;
    module.add_class::<OrderEvent>()?;
    module.add_class::<Logger>()?;
    module.add_class::<Broker>()?;
    module.add_class::<SeriesBuffer>()?;
    module.add_class::<OutputBuffer>()?;
    module.add_class::<AggregateBuffer>()?;
    module.add_class::<CrossSectionBuffer>()?;
    module.add_class::<IndicatorHandle>()?;
    module.add_class::<super::schedule::Schedules>()?;
    module.add_class::<super::custom::Bar>()?;
    Ok(())
}
