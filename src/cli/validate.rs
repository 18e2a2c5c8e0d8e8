//! `rustybt validate`: checks a strategy before a full backtest.
//!
//! Thin on purpose: the checks (syntax, structure, dry run on generated scenarios, profiling,
//! leak detection, metrics) live in the Python driver `rustybt_api._validate`, which runs
//! inside this process so the dry run uses the real engine through `rustybt_api.testing.backtest`.

use std::io::Write;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ValidateArgs;
use super::doctor::start_python;
use crate::config::parse_duration;
use crate::error::{Error, ExitCode};

pub fn validate(explicit_python: Option<&Path>, args: ValidateArgs) -> Result<ExitCode, Error> {
    if !args.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            args.algo.display()
        )));
    }
    let tick_timeout_ns = parse_duration(&args.tick_timeout)?;
    if args.bars == 0 {
        return Err(Error::usage("`--bars` must be at least 1"));
    }
    let algo = std::path::absolute(&args.algo).map_err(|source| Error::Io {
        context: "cannot resolve the algorithm path",
        path: args.algo.clone(),
        source,
    })?;
    let algo_dir = algo.parent().map(Path::to_path_buf).unwrap_or_default();
    start_python(explicit_python, std::slice::from_ref(&algo_dir))?;
    let data: Vec<String> = args
        .data
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .map(|p: PathBuf| p.display().to_string())
        .collect();

    Python::attach(|py| -> Result<ExitCode, Error> {
        let driver_error = |err: PyErr| {
            if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                return Error::Interrupted;
            }
            let traceback = py
                .import("traceback")
                .and_then(|tb| tb.call_method1("format_exception", (err.value(py),)))
                .and_then(|lines| lines.extract::<Vec<String>>())
                .map(|lines| lines.concat())
                .unwrap_or_else(|_| err.to_string());
            Error::Internal(format!("the validate driver failed:\n{traceback}"))
        };
        let kwargs = PyDict::new(py);
        (|| -> PyResult<()> {
            kwargs.set_item("algo", algo.display().to_string())?;
            kwargs.set_item("class_name", args.class_name.clone())?;
            kwargs.set_item("data", data.clone())?;
            kwargs.set_item("bars", args.bars)?;
            kwargs.set_item("as_json", args.json)?;
            kwargs.set_item("tick_timeout", tick_timeout_ns as f64 / 1e9)?;
            kwargs.set_item("seed", args.seed)?;
            Ok(())
        })()
        .map_err(driver_error)?;
        let outcome = py
            .import("rustybt_api._validate")
            .and_then(|m| m.getattr("main"))
            .and_then(|main| main.call((), Some(&kwargs)))
            .map_err(driver_error)?;
        let get = |key: &str| outcome.get_item(key).map_err(driver_error);
        let error: Option<String> = get("error")?.extract().map_err(driver_error)?;
        let code: i32 = get("exit")?.extract().map_err(driver_error)?;
        if let Some(message) = error {
            let hint: Option<String> = get("hint")?.extract().map_err(driver_error)?;
            return Err(match code {
                3 => Error::Market(message),
                _ => Error::Usage { message, hint },
            });
        }
        let output: String = get("output")?.extract().map_err(driver_error)?;
        // stdout may be a closed pipe (`| head`); the exit code still says the verdict.
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, "{output}");
        let _ = stdout.flush();
        Ok(match code {
            0 => ExitCode::Success,
            _ => ExitCode::Algorithm,
        })
    })
}
