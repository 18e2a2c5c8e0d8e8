//! Read-only NumPy views over engine-owned columns.

use std::os::raw::c_int;
use std::ptr;
use std::sync::Arc;

use numpy::datetime::{Datetime, units};
use numpy::npyffi::{NpyTypes, PY_ARRAY_API, get_type_object, npy_intp};
use numpy::prelude::*;
use numpy::{Element, PyArray1};
use pyo3::prelude::*;

use crate::market::SharedColumn;

/// Owns one symbol's columns for as long as any NumPy view of them exists: it is the `base` of
/// every array handed to Python. The columns are shared with the engine's `BarSeries`; a live
/// feed appends to them, and when one grows by moving, the old storage stays alive with the
/// column (see `market::column`), so a view's memory never moves or changes.
#[pyclass(module = "_rustybt", frozen)]
pub struct SeriesBuffer {
    /// Open times (i64 ns in the cells).
    pub time: Arc<SharedColumn>,
    pub open: Arc<SharedColumn>,
    pub high: Arc<SharedColumn>,
    pub low: Arc<SharedColumn>,
    pub close: Arc<SharedColumn>,
    pub volume: Arc<SharedColumn>,
}

#[pymethods]
impl SeriesBuffer {
    fn __repr__(&self) -> String {
        format!("<rustybt SeriesBuffer of {} bars>", self.time.len())
    }
}

/// A 1-D read-only array of the first `len` elements of `data`, with `owner` as its base.
///
/// # Safety
/// `data` must be owned (directly or through an `Arc`) by `owner`, its first `len` elements
/// never mutated or freed while `owner` lives, and `len` within the allocation.
pub unsafe fn readonly_view<'py, T: Element>(
    owner: &Bound<'py, PyAny>,
    data: *const T,
    len: usize,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let py = owner.py();
    let mut dims = [len as npy_intp];
    // SAFETY: we pass a valid dtype reference (stolen by NumPy), our dims, NULL strides
    // (C-contiguous) and flags 0, which makes the array non-writeable from the start. The
    // base object then owns the memory, per this function's contract.
    unsafe {
        let array = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            get_type_object(py, NpyTypes::PyArray_Type),
            T::get_dtype(py).into_dtype_ptr(),
            1,
            dims.as_mut_ptr(),
            ptr::null_mut(),
            data as *mut std::ffi::c_void,
            0 as c_int,
            ptr::null_mut(),
        );
        if array.is_null() {
            return Err(PyErr::fetch(py));
        }
        let array = Bound::from_owned_ptr(py, array);
        let base = owner.clone().into_ptr();
        if PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), base) < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(array.cast_into_unchecked())
    }
}

/// Elements `start..end` of a column, clamped to its length (an empty range when reversed).
fn clamp(start: usize, end: usize, len: usize) -> (usize, usize) {
    let end = end.min(len);
    (start.min(end), end)
}

pub fn f64_view<'py>(
    owner: &Bound<'py, SeriesBuffer>,
    column: &SharedColumn,
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    shared_view(owner.as_any(), column, start, end)
}

pub fn time_view<'py>(
    owner: &Bound<'py, SeriesBuffer>,
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyArray1<Datetime<units::Nanoseconds>>>> {
    // Datetime<U> is repr(transparent) over i64: the i64 cells are a datetime64[ns] buffer.
    shared_view(owner.as_any(), &owner.get().time, start, end)
}

pub fn int_time_view<'py>(
    owner: &Bound<'py, SeriesBuffer>,
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    shared_view(owner.as_any(), &owner.get().time, start, end)
}

/// Owns one indicator output column for as long as any NumPy view of it exists.
#[pyclass(module = "_rustybt", frozen)]
pub struct OutputBuffer {
    pub column: Arc<SharedColumn>,
}

/// A read-only view of the values written so far; later bars append beyond its end and never
/// change what it shows.
pub fn output_view<'py>(owner: &Bound<'py, OutputBuffer>) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let column = &owner.get().column;
    shared_view(owner.as_any(), column, 0, column.len())
}

/// Owns the columns of one higher timeframe of one symbol (the base of its views).
#[pyclass(module = "_rustybt", frozen)]
pub struct AggregateBuffer {
    pub time: Arc<SharedColumn>,
    pub open: Arc<SharedColumn>,
    pub high: Arc<SharedColumn>,
    pub low: Arc<SharedColumn>,
    pub close: Arc<SharedColumn>,
    pub volume: Arc<SharedColumn>,
    pub count: Arc<SharedColumn>,
}

/// Owns the cross-section columns (the latest bar of every symbol) for `ctx.latest`.
#[pyclass(module = "_rustybt", frozen)]
pub struct CrossSectionBuffer {
    pub section: Arc<crate::engine::CrossSection>,
}

/// A read-only view of cells `start..end` of a shared column, typed as `T`.
pub fn shared_view<'py, T: Element>(
    owner: &Bound<'py, PyAny>,
    column: &SharedColumn,
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    debug_assert_eq!(std::mem::size_of::<T>(), 8);
    let (start, end) = clamp(start, end, column.len());
    // SAFETY: the column's current chunk is a boxed slice of 8-byte cells owned (through an Arc
    // held by `owner`) until the column drops, even after the column grows into a new chunk;
    // `len` never exceeds the current chunk. Bar, history and indicator cells are
    // written once, before `len` counts them, so the first `len` never change; cross-section
    // cells are overwritten in place by aligned 8-byte atomic stores, made by the engine while
    // user code is not running. Callers use T of 8 bytes (f64, i64, datetime64[ns]) matching
    // what was stored in the cells' bits.
    unsafe { readonly_view(owner, column.as_ptr().add(start).cast::<T>(), end - start) }
}
