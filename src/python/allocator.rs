//! A portfolio's custom allocator (`allocator = "module:Class"`): a `rustybt_api.Allocator`
//! subclass as the book's [`Allocator`]. Its answer is checked like any user input: one
//! weight per strategy, Decimal or int, zero or more.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rust_decimal::Decimal;

use super::convert::datetime_from_ns;
use super::errors::algorithm_error;
use super::slippage::decimal_answer;
use crate::error::AlgorithmError;
use crate::portfolio::{AllocationInput, Allocator};

pub struct PyAllocator {
    instance: Py<PyAny>,
    state_class: Py<PyAny>,
    name: String,
    user_root: PathBuf,
}

impl PyAllocator {
    /// Imports `module:Class` and builds it with `params` (name, value text) as keyword
    /// arguments; values that read as Python literals are passed as such, others as text.
    pub fn from_spec(
        py: Python<'_>,
        spec: &str,
        params: &[(String, String)],
        user_root: PathBuf,
    ) -> Result<Self, Box<AlgorithmError>> {
        let failed =
            |err: PyErr| Box::new(algorithm_error(py, &err, "allocator", None, &user_root));
        let (module, class) = spec.split_once(':').ok_or_else(|| {
            failed(PyValueError::new_err(format!(
                "allocator `{spec}` is not of the form \"module:Class\""
            )))
        })?;
        // The module may sit beside the portfolio file.
        super::loader::add_to_sys_path(py, &user_root).map_err(failed)?;
        let api = py.import("rustybt_api.allocator").map_err(failed)?;
        let kwargs = PyDict::new(py);
        let literal = py
            .import("ast")
            .and_then(|a| a.getattr("literal_eval"))
            .map_err(failed)?;
        for (name, text) in params {
            let value = literal
                .call1((text.as_str(),))
                .unwrap_or_else(|_| pyo3::types::PyString::new(py, text).into_any());
            kwargs.set_item(name, value).map_err(failed)?;
        }
        let instance = py
            .import(module)
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.call((), Some(&kwargs)))
            .map_err(failed)?;
        if !instance
            .is_instance(&api.getattr("Allocator").map_err(failed)?)
            .map_err(failed)?
        {
            return Err(failed(PyTypeError::new_err(format!(
                "allocator `{spec}` must subclass rustybt_api.Allocator"
            ))));
        }
        Ok(PyAllocator {
            state_class: api.getattr("AllocationState").map_err(failed)?.unbind(),
            instance: instance.unbind(),
            name: format!("{class}.weights()"),
            user_root,
        })
    }

    fn call(&self, py: Python<'_>, input: &AllocationInput<'_>) -> PyResult<Vec<Decimal>> {
        let by_id = |values: &[Decimal]| -> PyResult<Bound<'_, PyDict>> {
            let d = PyDict::new(py);
            for (id, v) in input.ids.iter().zip(values) {
                d.set_item(id, *v)?;
            }
            Ok(d)
        };
        let returns = PyDict::new(py);
        for (id, r) in input.ids.iter().zip(input.returns) {
            returns.set_item(id, PyList::new(py, r)?)?;
        }
        let state = self.state_class.bind(py).call1((
            datetime_from_ns(py, input.time)?,
            PyList::new(py, input.ids)?,
            by_id(input.base)?,
            returns,
            by_id(input.drawdown)?,
            by_id(input.equity)?,
        ))?;
        let answer = self.instance.bind(py).call_method1("weights", (state,))?;
        let answer = answer.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{} must return a dict of strategy id to weight",
                self.name
            ))
        })?;
        let mut weights = Vec::with_capacity(input.ids.len());
        for id in input.ids {
            let value = answer.get_item(id)?.ok_or_else(|| {
                PyValueError::new_err(format!("{} gave no weight for strategy `{id}`", self.name))
            })?;
            let w = decimal_answer(&value, &self.name)?;
            if w < Decimal::ZERO {
                return Err(PyValueError::new_err(format!(
                    "{} gave strategy `{id}` the negative weight {w}",
                    self.name
                )));
            }
            weights.push(w);
        }
        for key in answer.keys() {
            let key = key.str()?.to_string();
            if !input.ids.contains(&key) {
                return Err(PyValueError::new_err(format!(
                    "{} gave a weight to `{key}`, which is not a running strategy",
                    self.name
                )));
            }
        }
        Ok(weights)
    }
}

impl Allocator for PyAllocator {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        Python::attach(|py| {
            self.call(py, input).map_err(|err| {
                Box::new(algorithm_error(
                    py,
                    &err,
                    "allocator",
                    Some(input.time),
                    &self.user_root,
                ))
            })
        })
    }
}
