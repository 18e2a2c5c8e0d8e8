//! `rustybt test`: pytest inside the embedded interpreter, so tests can run algorithms and
//! indicators on the real engine (`rustybt_api.testing.backtest`).

use std::path::{Path, PathBuf};

use pyo3::prelude::*;

use super::TestArgs;
use super::doctor::start_python;
use crate::error::{Error, ExitCode};

pub fn test(explicit_python: Option<&Path>, args: TestArgs) -> Result<ExitCode, Error> {
    for path in &args.paths {
        if !path.exists() {
            return Err(Error::usage(format!(
                "test path `{}` does not exist",
                path.display()
            )));
        }
    }
    let search: Vec<PathBuf> = args
        .paths
        .iter()
        .filter_map(|p| std::path::absolute(p).ok())
        .collect();
    start_python(explicit_python, &search)?;
    let mut argv: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    argv.extend(args.pytest_args.iter().cloned());
    let code = Python::attach(|py| -> Result<i64, Error> {
        let python_error = |e: PyErr| Error::Python {
            message: e.to_string(),
            hint: None,
        };
        let pytest = py.import("pytest").map_err(|_| Error::Python {
            message: "pytest is not installed in the embedded interpreter".into(),
            hint: Some("install it with `pip install pytest` (see requirements.txt)".into()),
        })?;
        // As `python -m pytest` does: the working directory is importable, so a project's
        // tests can `from algorithms.sma_cross import SmaCross`.
        let sys = py.import("sys").map_err(python_error)?;
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        sys.getattr("path")
            .and_then(|path| path.call_method1("insert", (0, cwd)))
            .map_err(python_error)?;
        let mut sys_argv = vec!["rustybt test".to_string()];
        sys_argv.extend(argv.iter().cloned());
        sys.setattr("argv", sys_argv).map_err(python_error)?;
        let code = pytest.call_method1("main", (argv,)).map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                Error::Interrupted
            } else {
                python_error(e)
            }
        })?;
        // pytest returns an `ExitCode` enum (an int) or, from some plugins, a plain int.
        code.extract::<i64>()
            .or_else(|_| code.getattr("value").and_then(|v| v.extract::<i64>()))
            .map_err(python_error)
    })?;
    Ok(match code {
        0 => ExitCode::Success,
        1 => ExitCode::Algorithm,
        2 => ExitCode::Interrupted,
        4 | 5 => ExitCode::Usage,
        _ => ExitCode::Internal,
    })
}
