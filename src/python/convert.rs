//! Conversions at the Python boundary: quantities to exact Decimals, timestamps to datetimes.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike};
use numpy::{PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDateTime, PyFloat, PyInt, PyString, PyTzInfo};
use rust_decimal::Decimal;

use super::errors::order_error;
use crate::model::TimestampNs;

/// Accepts `decimal.Decimal`, `int` (or an exact integer type such as NumPy's `int64`) or
/// `str` and returns the exact value. Floats are refused:
/// `0.1` is not one tenth, and an order must say exactly what it means.
/// Order quantities from an integer NumPy array (exact; read without a copy) or a sequence of
/// Decimal, int or str (each as [`quantity_from_py`]). A float array is refused: floats are
/// inexact, and a float quantity is refused one by one too.
pub fn quantities_from_py(value: &Bound<'_, PyAny>) -> PyResult<Vec<Decimal>> {
    let py = value.py();
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        let dtype = array.dtype();
        if dtype.is_equiv_to(&numpy::dtype::<i64>(py)) {
            return exact_ints::<i64>(value);
        }
        if dtype.is_equiv_to(&numpy::dtype::<i32>(py)) {
            return exact_ints::<i32>(value);
        }
        if dtype.kind() != b'O' {
            return Err(order_error(
                py,
                format!(
                    "quantities must be an integer array (int64 or int32) or a sequence of \
                     Decimal, int or str, got a {dtype} array{}",
                    if dtype.kind() == b'f' {
                        " (floats are inexact): round first, e.g. `np.floor(x).astype(np.int64)`"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    value
        .try_iter()
        .map_err(|_| order_error(py, "quantities must be an array or a sequence"))?
        .map(|item| quantity_from_py(&item?))
        .collect()
}

/// An integer array's values as Decimals, read in place.
fn exact_ints<T: numpy::Element + Copy + Into<Decimal>>(
    value: &Bound<'_, PyAny>,
) -> PyResult<Vec<Decimal>> {
    let ints = value.extract::<PyReadonlyArray1<'_, T>>()?;
    Ok(ints.as_array().iter().map(|&q| q.into()).collect())
}

pub fn quantity_from_py(value: &Bound<'_, PyAny>) -> PyResult<Decimal> {
    let py = value.py();
    if value.is_instance_of::<PyBool>() {
        return Err(order_error(py, "quantity must be a number, got a bool"));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        let v = float.value();
        let message = if v.is_nan() {
            "quantity is NaN".to_string()
        } else {
            format!(
                "quantity must be Decimal, int or str, got float {v} (floats are inexact); \
                 pass Decimal(\"{v}\") or \"{v}\""
            )
        };
        return Err(order_error(py, message));
    }
    if let Ok(int) = value.cast::<PyInt>() {
        return match int.extract::<i128>() {
            Ok(v) => Decimal::try_from_i128_with_scale(v, 0)
                .map_err(|_| order_error(py, "quantity is too large")),
            Err(_) => Err(order_error(py, "quantity is too large")),
        };
    }
    let text = if let Ok(s) = value.cast::<PyString>() {
        s.to_str()?.trim().to_string()
    } else if is_decimal(value)? {
        value.str()?.to_str()?.to_string()
    } else if let Ok(int) = value
        .call_method0("__index__")
        .and_then(|i| i.cast_into::<PyInt>().map_err(PyErr::from))
    {
        // An exact integer of another type (a NumPy int64 from an array).
        return quantity_from_py(int.as_any());
    } else {
        let type_name = value.get_type().name()?.to_string();
        return Err(order_error(
            py,
            format!("quantity must be Decimal, int or str, got {type_name}"),
        ));
    };
    parse_exact(&text).ok_or_else(|| {
        order_error(
            py,
            if text.to_ascii_lowercase().contains("nan") {
                "quantity is NaN".to_string()
            } else if text.to_ascii_lowercase().contains("inf") {
                format!("quantity `{text}` is not a finite decimal number")
            } else {
                match crate::config::decimal_refusal(&text) {
                    (message, Some(hint)) => format!("quantity {message}: {hint}"),
                    (message, None) => format!("quantity {message}"),
                }
            },
        )
    })
}

fn is_decimal(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    let decimal_type = value.py().import("decimal")?.getattr("Decimal")?;
    value.is_instance(&decimal_type)
}

/// Exact decimal text, including scientific notation (`1E+2`, as `Decimal` prints).
pub fn parse_exact(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
        .or_else(|| {
            Decimal::from_str(text)
                .ok()
                .filter(|d| d.to_string() == text)
        })
}

/// A timezone-aware UTC `datetime` (microsecond precision, as Python's datetime has).
pub fn datetime_from_ns(py: Python<'_>, ns: TimestampNs) -> PyResult<Bound<'_, PyDateTime>> {
    let dt = DateTime::from_timestamp_nanos(ns);
    let utc = PyTzInfo::utc(py)?.to_owned();
    PyDateTime::new(
        py,
        dt.year(),
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
        dt.timestamp_subsec_micros(),
        Some(&utc),
    )
}

/// A price from Python: Decimal, int or str (floats are inexact and refused), finite and
/// positive.
pub fn price_from_py(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Decimal> {
    let py = value.py();
    if let Ok(float) = value.cast::<PyFloat>() {
        let v = float.value();
        return Err(order_error(
            py,
            format!(
                "{name} must be Decimal, int or str, got float {v} (floats are inexact); pass Decimal(\"{v}\")"
            ),
        ));
    }
    let price = quantity_from_py(value)
        .map_err(|e| order_error(py, e.value(py).to_string().replace("quantity", name)))?;
    if price <= Decimal::ZERO {
        return Err(order_error(
            py,
            format!("{name} must be positive, got {price}"),
        ));
    }
    Ok(price)
}
