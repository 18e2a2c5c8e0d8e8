//! [`PyVenue`]: the [`Venue`] trait over the Python facade `rustybt_api._live.host` (the ccxt
//! client layer). Each call attaches to the interpreter only for the Python call itself, takes
//! the JSON text it returns and parses it after the interpreter is released. A Python
//! `VenueError` keeps its `kind`; any other Python exception is a bug and becomes `internal`
//! with its traceback. Every message is masked with the credentials once more on this side.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use crate::live::config::{Secret, mask};
use crate::live::journal::OrderIntent;
use crate::live::reconcile::AccountView;
use crate::live::venue::{
    AccountStream, AccountUpdate, Candle, CandleStream, MarketRules, StreamEvent, StreamSource,
    StreamUpdate, Venue, VenueConfig, VenueError, VenueErrorKind, VenueEvent, VenueFill,
    VenueOrder, intent_json, parse_json,
};

const HOST_MODULE: &str = "rustybt_api._live.host";

/// One exchange connection through the facade's `HostVenue`.
pub struct PyVenue {
    host: Py<PyAny>,
    venue_error: Py<PyAny>,
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for PyVenue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PyVenue { .. }")
    }
}

impl PyVenue {
    /// Connects (the facade makes no request yet). Needs `pylib` on `sys.path` and ccxt
    /// importable: `python::start` has prepared both.
    pub fn open(
        py: Python<'_>,
        exchange_id: &str,
        config: &VenueConfig,
    ) -> Result<PyVenue, VenueError> {
        let secrets = config.secrets();
        let module = py
            .import(HOST_MODULE)
            .map_err(|err| internal(py, &err, &secrets, "importing the venue facade"))?;
        let venue_error = module
            .getattr("VenueError")
            .map_err(|err| internal(py, &err, &secrets, "importing the venue facade"))?;
        let host = module
            .call_method1("open_venue", (exchange_id, config.to_host_json()))
            .map_err(|err| translate(py, &err, &venue_error, &secrets, "open_venue"))?;
        Ok(PyVenue {
            host: host.unbind(),
            venue_error: venue_error.unbind(),
            secrets,
        })
    }

    /// Calls `method` (the closure passes the arguments), returns its JSON text.
    fn call_text(
        &self,
        method: &str,
        call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> + Send,
    ) -> Result<String, VenueError> {
        Python::attach(|py| {
            let host = self.host.bind(py);
            let reply = call(host).map_err(|err| {
                translate(py, &err, self.venue_error.bind(py), &self.secrets, method)
            })?;
            reply.extract::<String>().map_err(|err| {
                internal(
                    py,
                    &err,
                    &self.secrets,
                    &format!("{method} did not return a str"),
                )
            })
        })
    }

    /// Calls a method that starts one of the facade's streams.
    fn start_stream(
        &self,
        method: &str,
        call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) -> Result<PyStream, VenueError> {
        Python::attach(|py| {
            let stream = call(self.host.bind(py)).map_err(|err| {
                translate(py, &err, self.venue_error.bind(py), &self.secrets, method)
            })?;
            Ok(PyStream {
                stream: stream.unbind(),
                secrets: self.secrets.clone(),
            })
        })
    }

    /// Calls and parses; the parsing runs after the interpreter is released.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> + Send,
    ) -> Result<T, VenueError> {
        let text = self.call_text(method, call)?;
        parse_json(method, &text)
    }
}

/// A stream of the facade (`rustybt_api._live.ws_feed`: `CandleStream`, `AccountStream`): its
/// asyncio thread collects what arrives; `take` only drains its queues (a short call holding
/// the interpreter) and returns JSON.
pub struct PyStream {
    stream: Py<PyAny>,
    secrets: Vec<Secret>,
}

impl PyStream {
    /// `take()`'s JSON, parsed, with credentials masked in its events' reasons.
    fn take_parsed<T: DeserializeOwned>(
        &self,
        what: &str,
        events: impl FnOnce(&mut T) -> &mut Vec<StreamEvent>,
    ) -> Result<T, VenueError> {
        let text = Python::attach(|py| {
            self.stream
                .bind(py)
                .call_method0("take")
                .and_then(|reply| reply.extract::<String>())
                .map_err(|err| internal(py, &err, &self.secrets, what))
        })?;
        let mut update: T = parse_json(what, &text)?;
        for event in events(&mut update) {
            event.mask(&self.secrets);
        }
        Ok(update)
    }
}

impl CandleStream for PyStream {
    fn take(&mut self) -> Result<StreamUpdate, VenueError> {
        self.take_parsed("the candle stream", |u: &mut StreamUpdate| &mut u.events)
    }

    fn describe(&self) -> String {
        Python::attach(|py| {
            self.stream
                .bind(py)
                .call_method0("describe")
                .and_then(|text| text.extract::<String>())
                .unwrap_or_else(|_| "websocket stream".into())
        })
    }
}

impl AccountStream for PyStream {
    fn take(&mut self) -> Result<AccountUpdate, VenueError> {
        self.take_parsed("the order stream", |u: &mut AccountUpdate| &mut u.events)
    }
}

impl Drop for PyStream {
    /// Stops the stream's thread and closes its socket.
    fn drop(&mut self) {
        Python::attach(|py| {
            let _ = self.stream.bind(py).call_method0("close");
        });
    }
}

/// A Ctrl-C or SIGTERM landed inside an exchange request: the loop stops at its next look at
/// signals. Python's re-armed interrupt alone is not enough: it can be consumed before the
/// loop looks (by Python code that runs while the interrupted request's frames are torn down,
/// e.g. a generator's `finally`), and would then be lost.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a request was interrupted by a signal since the last call (and forgets it).
pub fn take_interrupted() -> bool {
    INTERRUPTED.swap(false, std::sync::atomic::Ordering::SeqCst)
}

/// A facade `VenueError` keeps its kind; anything else is `internal` with the traceback.
fn translate(
    py: Python<'_>,
    err: &PyErr,
    venue_error: &Bound<'_, PyAny>,
    secrets: &[Secret],
    what: &str,
) -> VenueError {
    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        // Ctrl-C or SIGTERM landed inside the client. Re-arm it for the loop, which stops the
        // session cleanly at its next look at signals; the request's outcome is unknown.
        // SAFETY: called with the interpreter attached; it only sets Python's signal flag.
        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        return VenueError::new(
            VenueErrorKind::OutcomeUnknown,
            format!("{what}: interrupted by a signal before the reply; the session is stopping"),
        );
    }
    let value = err.value(py);
    if !value.is_instance(venue_error).unwrap_or(false) {
        return internal(py, err, secrets, what);
    }
    let text = |name: &str| -> Option<String> {
        value
            .getattr(name)
            .ok()
            .and_then(|v| v.extract::<Option<String>>().ok())
            .flatten()
    };
    let retry_after_s = value
        .getattr("retry_after_s")
        .ok()
        .and_then(|v| v.extract::<Option<f64>>().ok())
        .flatten();
    let kind = text("kind").unwrap_or_default();
    let message = mask(
        &text("message").unwrap_or_else(|| value.to_string()),
        secrets,
    );
    VenueError::from_parts(&kind, message, retry_after_s, text("state_json").as_deref())
}

fn internal(py: Python<'_>, err: &PyErr, secrets: &[Secret], what: &str) -> VenueError {
    let traceback = format_exception(py, err).unwrap_or_else(|_| err.to_string());
    VenueError::new(
        VenueErrorKind::Internal,
        mask(&format!("{what}: {}", traceback.trim_end()), secrets),
    )
}

fn format_exception(py: Python<'_>, err: &PyErr) -> PyResult<String> {
    // pass the traceback explicitly: on 3.11 a fetched exception's __traceback__ may be unset
    let lines = py.import("traceback")?.call_method1(
        "format_exception",
        (err.get_type(py), err.value(py), err.traceback(py)),
    )?;
    Ok(lines.extract::<Vec<String>>()?.concat())
}

impl Venue for PyVenue {
    fn markets(&mut self, symbols: &[String]) -> Result<BTreeMap<String, MarketRules>, VenueError> {
        let list = serde_json::to_string(symbols).expect("a list of strings serializes");
        self.call("markets", move |h| h.call_method1("markets", (list,)))
    }

    fn closed_candles(
        &mut self,
        symbol: &str,
        timeframe: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        self.call("closed_candles", move |h| {
            h.call_method1("closed_candles", (symbol, timeframe, since_ms, now_ms))
        })
    }

    fn submit(
        &mut self,
        intent: &OrderIntent,
        reference_price: Option<Decimal>,
    ) -> Result<VenueOrder, VenueError> {
        let json = intent_json(intent, reference_price)?;
        self.call("submit", move |h| h.call_method1("submit", (json,)))
    }

    fn resume(&mut self, intent: &OrderIntent, sent_at_ms: i64) -> Result<VenueOrder, VenueError> {
        let json = intent_json(intent, None)?;
        self.call("resume", move |h| {
            h.call_method1("resume", (json, sent_at_ms))
        })
    }

    fn lookup(
        &mut self,
        client_order_id: &str,
        symbol: &str,
    ) -> Result<Option<VenueOrder>, VenueError> {
        self.call("lookup", move |h| {
            h.call_method1("lookup", (client_order_id, symbol))
        })
    }

    fn cancel(&mut self, client_order_id: &str, symbol: &str) -> Result<VenueOrder, VenueError> {
        self.call("cancel", move |h| {
            h.call_method1("cancel", (client_order_id, symbol))
        })
    }

    fn open_orders(&mut self) -> Result<Vec<VenueOrder>, VenueError> {
        self.call("open_orders", |h| h.call_method0("open_orders"))
    }

    fn fills(
        &mut self,
        symbol: &str,
        from_trade_id: Option<&str>,
        since_ms: Option<i64>,
    ) -> Result<Vec<VenueFill>, VenueError> {
        self.call("fills", move |h| {
            h.call_method1("fills", (symbol, from_trade_id, since_ms))
        })
    }

    fn account_view(&mut self, cash_asset: &str) -> Result<AccountView, VenueError> {
        self.call("account_view", move |h| {
            h.call_method1("account_view", (cash_asset,))
        })
    }

    fn open_stream(
        &mut self,
        symbols: &[String],
        timeframe: &str,
        source: StreamSource,
    ) -> Result<Box<dyn CandleStream>, VenueError> {
        let list = serde_json::to_string(symbols).expect("a list of strings serializes");
        let stream = self.start_stream("open_stream", |h| {
            h.call_method1("open_stream", (list, timeframe, source.name()))
        })?;
        Ok(Box::new(stream))
    }

    fn open_account_stream(&mut self) -> Result<Box<dyn AccountStream>, VenueError> {
        let stream = self.start_stream("open_account_stream", |h| {
            h.call_method0("open_account_stream")
        })?;
        Ok(Box::new(stream))
    }

    /// Events are bookkeeping: if reading them fails, the failure comes back as one
    /// `Unreadable` event for the log instead of being lost.
    fn take_events(&mut self) -> Vec<VenueEvent> {
        self.call::<Vec<VenueEvent>>("take_events", |h| h.call_method0("take_events"))
            .unwrap_or_else(|err| {
                vec![VenueEvent::Unreadable {
                    error: err.to_string(),
                }]
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rust_decimal::dec;

    use super::*;
    use crate::live::journal::{OrderType, TimeInForce};
    use crate::live::reconcile::Lookup;
    use crate::live::venue::{RetrySettings, VenueUrls, lookup_for_reconcile};
    use crate::model::{OrderSide, OrderStatus};

    /// The embedded interpreter (the project's .venv) with the fake exchange of
    /// `tests/support/venue_fixtures.py` running in it; returns (url, api key, secret).
    fn start_fake() -> (String, String, String) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let choice = crate::python::choose_interpreter(None, std::slice::from_ref(&root))
            .expect("the project's .venv (make setup)");
        crate::python::start(&choice, &root.join("pylib")).expect("python starts");
        Python::attach(|py| -> PyResult<(String, String, String)> {
            let path = py.import("sys")?.getattr("path")?;
            let root = root.to_string_lossy();
            if !path.contains(root.as_ref())? {
                path.call_method1("insert", (0, root.as_ref()))?;
            }
            let fake = py
                .import("tests.support.venue_fixtures")?
                .call_method0("new_fake")?
                .call_method0("start")?;
            Ok((
                fake.getattr("url")?.extract()?,
                fake.getattr("api_key")?.extract()?,
                fake.getattr("secret")?.extract()?,
            ))
        })
        .expect("the fake exchange starts")
    }

    fn config(url: &str, key: &str, secret: &str) -> VenueConfig {
        let mut config = VenueConfig::new(Secret::new(key), Secret::new(secret));
        config.urls = Some(VenueUrls::One(url.to_string()));
        config.timeout_ms = 1_000;
        config.recv_window_ms = 300;
        config.rate_limit_ms = Some(1.0);
        config.settle_margin_ms = Some(0);
        config.retry = Some(RetrySettings {
            max_attempts: 2,
            base_delay_s: 0.01,
            max_delay_s: 0.02,
            seed: Some(7),
        });
        config
    }

    fn market_buy(id: &str) -> OrderIntent {
        OrderIntent {
            client_order_id: id.into(),
            symbol: "BTC/USDT".into(),
            side: OrderSide::Buy,
            quantity: dec!(0.001),
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            created_at: 0,
        }
    }

    // One test: the interpreter and the fake are process-wide.
    #[test]
    fn py_venue_against_the_fake_exchange() {
        let (url, key, secret) = start_fake();
        let mut venue =
            Python::attach(|py| PyVenue::open(py, "binance", &config(&url, &key, &secret)))
                .expect("open");

        let markets = venue.markets(&["BTC/USDT".into()]).unwrap();
        assert_eq!(markets["BTC/USDT"].lot_step, Some(dec!(0.00001)));
        let err = venue.markets(&["BTC/USTD".into()]).unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::UnknownSymbol);
        assert!(err.message.contains("did you mean BTC/USDT"), "{err}");

        let candles = venue
            .closed_candles("BTC/USDT", "1m", 0, i64::MAX / 2)
            .unwrap();
        assert_eq!(candles.len(), 3);
        assert_eq!(candles[0].open, dec!(64000.10));

        let order = venue
            .submit(&market_buy("rbt-py-1"), Some(dec!(64000.10)))
            .unwrap();
        assert_eq!(
            (order.status, order.filled),
            (OrderStatus::Filled, dec!(0.001))
        );
        let update = order.to_update(1);
        assert_eq!(
            update.exchange_id.as_deref(),
            Some(order.exchange_order_id.as_str())
        );
        assert_eq!(
            venue
                .resume(&market_buy("rbt-py-1"), 0)
                .unwrap()
                .exchange_order_id,
            order.exchange_order_id
        );

        assert_eq!(venue.lookup("rbt-py-404", "BTC/USDT").unwrap(), None);
        let found = venue.lookup("rbt-py-1", "BTC/USDT").unwrap();
        assert_eq!(
            lookup_for_reconcile(found),
            Some(Lookup::Closed {
                status: "filled".into(),
                filled_quantity: dec!(0.001)
            })
        );
        let err = venue.cancel("rbt-py-1", "BTC/USDT").unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::NotCancellable);
        assert_eq!(err.state.map(|s| s.status), Some(OrderStatus::Filled));
        assert_eq!(
            venue.cancel("rbt-py-404", "BTC/USDT").unwrap_err().kind,
            VenueErrorKind::UnknownOrder
        );
        assert!(venue.open_orders().unwrap().is_empty());

        let fills = venue.fills("BTC/USDT", None, None).unwrap();
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].to_record("rbt-py-1").fee, dec!(0.000001));
        let view = venue.account_view("USDT").unwrap();
        assert_eq!(view.positions["BTC/USDT"], dec!(1.000999));

        let events = venue.take_events();
        assert!(events.iter().any(
            |e| matches!(e, VenueEvent::Request { endpoint, .. } if endpoint == "/api/v3/order")
        ));
        assert!(venue.take_events().is_empty());

        // a Python exception that is not a VenueError is a bug: internal, with the traceback
        let err = venue
            .call::<serde_json::Value>("markets", |h| h.call_method1("markets", ("not json",)))
            .unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::Internal);
        assert!(
            err.message.contains("Traceback") && err.message.contains("JSONDecodeError"),
            "{err}"
        );

        // stop orders never reach Python
        let mut stop = market_buy("rbt-py-2");
        stop.order_type = OrderType::Stop;
        stop.stop_price = Some(dec!(1));
        assert_eq!(
            venue.submit(&stop, None).unwrap_err().kind,
            VenueErrorKind::RuleViolation
        );

        // wrong credentials: authentication, and neither secret in the message
        let mut bad = Python::attach(|py| {
            PyVenue::open(
                py,
                "binance",
                &config(&url, "key-WRONG-123456", "secret-WRONG-654321"),
            )
        })
        .unwrap();
        let err = bad.account_view("USDT").unwrap_err();
        assert_eq!(err.kind, VenueErrorKind::Authentication);
        let text = format!("{err} {err:?} {bad:?}");
        assert!(
            !text.contains("key-WRONG")
                && !text.contains("secret-WRONG")
                && !text.contains(&secret),
            "{text}"
        );

        // an unknown exchange id: the facade's internal error, masked
        let err = Python::attach(|py| {
            PyVenue::open(py, "no-such-exchange", &config(&url, &key, &secret)).unwrap_err()
        });
        assert_eq!(err.kind, VenueErrorKind::Internal);
        assert!(
            err.message.contains("no-such-exchange") && !err.message.contains(&secret),
            "{err}"
        );
    }
}
