//! The user's Python `SlippageModel` as the engine's [`ExternalSlippage`]: one call per fill,
//! Decimal in and out, and any failure reported like an exception in the algorithm.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};
use rust_decimal::Decimal;

use super::convert::{datetime_from_ns, parse_exact};
use super::errors::algorithm_error;
use crate::engine::external::{ExternalSlippage, SlippageQuery};
use crate::error::AlgorithmError;

#[derive(Debug)]
pub struct PySlippage {
    model: Py<PyAny>,
    order_class: Py<PyAny>,
    bar_class: Py<PyAny>,
    /// Symbol names by id.
    symbols: Vec<String>,
    user_root: PathBuf,
    name: String,
}

impl PySlippage {
    /// Wraps `model`, which must be a `rustybt_api.SlippageModel` instance.
    pub fn new(
        py: Python<'_>,
        model: Bound<'_, PyAny>,
        symbols: Vec<String>,
        user_root: PathBuf,
    ) -> PyResult<Self> {
        let module = py.import("rustybt_api.slippage")?;
        let base = module.getattr("SlippageModel")?;
        if !model.is_instance(&base)? {
            let type_name = model.get_type().name()?.to_string();
            return Err(PyTypeError::new_err(format!(
                "the slippage model must be a rustybt_api.SlippageModel instance, got {type_name}"
            )));
        }
        let class = model.get_type();
        let name = format!("{}.{}", class.module()?, class.name()?);
        Ok(PySlippage {
            order_class: module.getattr("SlippageOrder")?.unbind(),
            bar_class: module.getattr("SlippageBar")?.unbind(),
            model: model.unbind(),
            symbols,
            user_root,
            name,
        })
    }

    /// `"module:Class"` (from the config file): imported and instantiated without arguments.
    pub fn from_spec(
        py: Python<'_>,
        spec: &str,
        symbols: Vec<String>,
        user_root: PathBuf,
    ) -> PyResult<Self> {
        let (module, class) = spec.split_once(':').ok_or_else(|| {
            PyValueError::new_err(format!(
                "execution.slippage_model `{spec}` is not of the form \"module:Class\""
            ))
        })?;
        let model = py.import(module)?.getattr(class)?.call0()?;
        Self::new(py, model, symbols, user_root)
    }

    fn call(&self, py: Python<'_>, q: &SlippageQuery<'_>) -> PyResult<Decimal> {
        let symbol = self
            .symbols
            .get(q.symbol.index())
            .cloned()
            .unwrap_or_default();
        let order = self.order_class.bind(py).call1((
            q.order.id.0,
            symbol,
            q.order.side.as_str(),
            q.order.kind.as_str(),
            q.quantity,
            q.order.quantity,
            q.reference,
            q.maker,
        ))?;
        let bar = self.bar_class.bind(py).call1((
            datetime_from_ns(py, q.bar_open_time)?,
            q.bar.open,
            q.bar.high,
            q.bar.low,
            q.bar.close,
            q.bar.volume,
        ))?;
        let answer = self.model.bind(py).call_method1("slippage", (order, bar))?;
        decimal_answer(&answer, &format!("{}.slippage()", self.name))
    }
}

/// A Decimal or an int; floats (inexact), bools and anything else are refused. `what` names
/// the call that returned it (`Model.slippage()`).
pub(crate) fn decimal_answer(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Decimal> {
    let type_name = value.get_type().name()?.to_string();
    let refuse = || {
        PyTypeError::new_err(format!(
            "{what} must return a Decimal (or int), got {type_name}{}",
            if value.is_instance_of::<PyFloat>() {
                " (floats are inexact: return Decimal(\"...\"))"
            } else {
                ""
            }
        ))
    };
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() {
        return Err(refuse());
    }
    let decimal_type = value.py().import("decimal")?.getattr("Decimal")?;
    if !value.is_instance_of::<PyInt>() && !value.is_instance(&decimal_type)? {
        return Err(refuse());
    }
    let text = value.str()?.to_string();
    parse_exact(&text).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{what} returned {text}, not a finite decimal number"
        ))
    })
}

impl ExternalSlippage for PySlippage {
    fn adjustment(&mut self, query: &SlippageQuery<'_>) -> Result<Decimal, Box<AlgorithmError>> {
        Python::attach(|py| {
            self.call(py, query).map_err(|err| {
                Box::new(algorithm_error(
                    py,
                    &err,
                    "slippage",
                    Some(query.bar_open_time),
                    &self.user_root,
                ))
            })
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
