//! Trials on a Ray cluster: `rustybt_api._ray_executor.RayExecutor` starts one actor per
//! cluster CPU, each running `rustybt optimize worker --study DIR` (the same worker loop as a
//! forked local worker, reading the same data through the study's stored command). Ray does
//! the placement and the transport; this is only the [`Executor`] face of it.

use std::path::Path;
use std::time::Duration;

use pyo3::prelude::*;

use super::study::Executor;
use super::trial::{TrialRequest, TrialResult};
use super::worker::Message;
use crate::error::Error;

pub struct RayExecutor {
    object: Py<PyAny>,
}

fn ray_error(py: Python<'_>, err: PyErr) -> Error {
    let value = err.value(py);
    let hint = crate::python::errors::hint_of(value);
    match hint {
        Some(hint) => Error::usage_with_hint(format!("Ray: {value}"), hint),
        None => Error::Internal(format!("Ray: {value}")),
    }
}

impl RayExecutor {
    pub fn new(
        py: Python<'_>,
        address: &str,
        study_dir: &Path,
        binary: &Path,
        workers: Option<usize>,
        python: Option<&Path>,
    ) -> Result<RayExecutor, Error> {
        let object = py
            .import("rustybt_api._ray_executor")
            .and_then(|m| m.getattr("RayExecutor"))
            .and_then(|class| {
                class.call1((
                    address,
                    study_dir.display().to_string(),
                    binary.display().to_string(),
                    workers,
                    python.map(|p| p.display().to_string()),
                ))
            })
            .map_err(|e| ray_error(py, e))?;
        Ok(RayExecutor {
            object: object.unbind(),
        })
    }

    pub fn close(&mut self) {
        Python::attach(|py| {
            let _ = self.object.bind(py).call_method0("close");
        });
    }
}

impl Executor for RayExecutor {
    fn slots(&self) -> Vec<usize> {
        Python::attach(|py| {
            self.object
                .bind(py)
                .call_method0("slots")
                .and_then(|s| s.extract())
                .unwrap_or_default()
        })
    }

    fn submit(&mut self, slot: usize, request: &TrialRequest) -> Result<(), Error> {
        let line = serde_json::to_string(request)
            .map_err(|e| Error::Internal(format!("a trial request: {e}")))?;
        Python::attach(|py| {
            self.object
                .bind(py)
                .call_method1("submit", (slot, line))
                .map(|_| ())
                .map_err(|e| ray_error(py, e))
        })
    }

    fn next(&mut self, wait: Duration) -> Option<Message> {
        Python::attach(|py| {
            let answer = self
                .object
                .bind(py)
                .call_method1("next", (wait.as_secs_f64(),))
                .ok()?;
            let (slot, line, why): (usize, Option<String>, Option<String>) =
                answer.extract().ok()?;
            Some(match (line, why) {
                (Some(line), _) => match serde_json::from_str::<TrialResult>(&line) {
                    Ok(result) => Message::Result(slot, result),
                    Err(e) => Message::Gone(slot, format!("sent a line that is not a result: {e}")),
                },
                (None, why) => Message::Gone(slot, why.unwrap_or_else(|| "exited".into())),
            })
        })
    }

    fn retire(&mut self, slot: usize) {
        Python::attach(|py| {
            let _ = self.object.bind(py).call_method1("retire", (slot,));
        });
    }
}
