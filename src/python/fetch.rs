//! [`PyBarSource`]: the catalog's [`BarSource`] over the Python adapters of
//! `rustybt_api._fetch` (ccxt, yfinance). Each call attaches to the interpreter for the one
//! request; a page comes back as Python lists of ints and decimal texts. A Python `FetchError`
//! keeps its `kind`; any other exception is a bug and becomes `Internal` with its traceback.

use pyo3::prelude::*;

use crate::catalog::fetch::{BarSource, Event, Page, Resolved, SourceError, SourceErrorKind};

const MODULE: &str = "rustybt_api._fetch";

pub struct PyBarSource {
    source: Py<PyAny>,
    fetch_error: Py<PyAny>,
}

/// What `page` returns: times, the five value columns, next, done.
type PageTuple = (
    Vec<i64>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    i64,
    bool,
);

impl PyBarSource {
    /// `spec`: `ccxt:<exchange>` or `yahoo`; `options_json`: `{"url", "timeout_ms", "retry",
    /// "cache_dir"}`. Makes no request yet.
    pub fn open(spec: &str, options_json: &str) -> Result<Self, SourceError> {
        Python::attach(|py| {
            let module = py
                .import(MODULE)
                .map_err(|e| internal(py, &e, "importing the fetch adapters"))?;
            let fetch_error = module
                .getattr("FetchError")
                .map_err(|e| internal(py, &e, "importing the fetch adapters"))?;
            let source = module
                .call_method1("open_source", (spec, options_json))
                .map_err(|e| translate(py, &e, &fetch_error, "open_source"))?;
            Ok(PyBarSource {
                source: source.unbind(),
                fetch_error: fetch_error.unbind(),
            })
        })
    }

    fn call<T: for<'a, 'py> FromPyObject<'a, 'py>>(
        &self,
        method: &str,
        call: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) -> Result<T, SourceError> {
        Python::attach(|py| {
            let reply = call(self.source.bind(py))
                .map_err(|e| translate(py, &e, self.fetch_error.bind(py), method))?;
            reply
                .extract::<T>()
                .map_err(|e| internal(py, &e.into(), &format!("{method} returned the wrong type")))
        })
    }
}

impl BarSource for PyBarSource {
    fn now_ms(&mut self) -> Result<i64, SourceError> {
        self.call("now_ms", |s| s.call_method0("now_ms"))
    }

    fn resolve(&mut self, symbol: &str, timeframe: &str) -> Result<Resolved, SourceError> {
        let text: String = self.call("resolve", |s| {
            s.call_method1("resolve", (symbol, timeframe))
        })?;
        serde_json::from_str(&text).map_err(|e| SourceError {
            kind: SourceErrorKind::Internal,
            message: format!("resolve returned bad JSON: {e}: {text}"),
        })
    }

    fn page(
        &mut self,
        symbol: &str,
        timeframe: &str,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Page, SourceError> {
        let (times_ms, o, h, l, c, v, next_ms, done): PageTuple = self.call("page", |s| {
            s.call_method1("page", (symbol, timeframe, since_ms, until_ms, now_ms))
        })?;
        if [&o, &h, &l, &c, &v]
            .iter()
            .any(|col| col.len() != times_ms.len())
        {
            return Err(SourceError {
                kind: SourceErrorKind::Internal,
                message: "page returned columns of different lengths".into(),
            });
        }
        Ok(Page {
            times_ms,
            columns: [o, h, l, c, v],
            next_ms,
            done,
        })
    }

    fn events(
        &mut self,
        symbol: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<Event>, SourceError> {
        let text: String = self.call("events", |s| {
            s.call_method1("events", (symbol, since_ms, until_ms))
        })?;
        serde_json::from_str(&text).map_err(|e| SourceError {
            kind: SourceErrorKind::Internal,
            message: format!("events returned bad JSON: {e}: {text}"),
        })
    }
}

/// A `FetchError` keeps its kind; Ctrl-C is `Unavailable` (the fetch stops, commits stay);
/// anything else is `Internal` with the traceback.
fn translate(
    py: Python<'_>,
    err: &PyErr,
    fetch_error: &Bound<'_, PyAny>,
    what: &str,
) -> SourceError {
    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        return SourceError {
            kind: SourceErrorKind::Unavailable,
            message: format!("{what}: interrupted; what was fetched before is stored"),
        };
    }
    let value = err.value(py);
    if !value.is_instance(fetch_error).unwrap_or(false) {
        return internal(py, err, what);
    }
    let text = |name: &str| {
        value
            .getattr(name)
            .and_then(|v| v.extract::<String>())
            .unwrap_or_default()
    };
    SourceError {
        kind: SourceErrorKind::parse(&text("kind")),
        message: text("message"),
    }
}

fn internal(py: Python<'_>, err: &PyErr, what: &str) -> SourceError {
    let traceback = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| err.to_string());
    SourceError {
        kind: SourceErrorKind::Internal,
        message: format!("{what}: {}", traceback.trim_end()),
    }
}
