//! `rustybt --version` and `rustybt doctor`.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;

use crate::error::{Error, ExitCode};
use crate::python::{self, InterpreterChoice};

/// Chooses the interpreter (searching from the working directory), starts it and returns the
/// choice and the project root it took `pylib` from.
pub(crate) fn start_python(
    explicit: Option<&Path>,
    extra_search: &[PathBuf],
) -> Result<(InterpreterChoice, PathBuf), Error> {
    let root = python::project_root().ok_or_else(|| Error::Python {
        message: "cannot find `pylib/rustybt_api` (the Python API package)".into(),
        hint: Some("set RUSTYBT_HOME to the rustybt checkout".into()),
    })?;
    let mut search = extra_search.to_vec();
    if let Ok(cwd) = std::env::current_dir() {
        search.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        search.push(exe);
    }
    search.push(root.clone());
    let choice = python::choose_interpreter(explicit, &search)?;
    python::start(&choice, &root.join("pylib"))?;
    Python::attach(super::harness::register)
        .map_err(|e| Error::Internal(format!("registering the test harness: {e}")))?;
    Ok((choice, root))
}

pub fn version(explicit: Option<&Path>) -> Result<ExitCode, Error> {
    outln!("rustybt {}", env!("CARGO_PKG_VERSION"));
    let (choice, _) = start_python(explicit, &[])?;
    Python::attach(|py| {
        outln!(
            "python {} ({})",
            python::python_version(py),
            choice.executable.display()
        );
    });
    Ok(ExitCode::Success)
}

/// CPython versions rustybt is tested with (`make test` runs the suite under each installed).
pub const SUPPORTED_PYTHON: [&str; 3] = ["3.12", "3.11", "3.13"];

/// `3.12 (supported)` or a warning naming the supported versions.
fn support_note(version: &str) -> String {
    let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    if SUPPORTED_PYTHON.contains(&minor.as_str()) {
        format!("{version} (supported: {})", SUPPORTED_PYTHON.join(", "))
    } else {
        format!(
            "{version} (NOT a tested version; supported: {})",
            SUPPORTED_PYTHON.join(", ")
        )
    }
}

const CHECKED_PACKAGES: [(&str, &str); 7] = [
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("polars", "polars"),
    ("talib", "TA-Lib"),
    ("ccxt", "ccxt"),
    ("debugpy", "debugpy"),
    ("rustybt_api", "rustybt_api (pylib)"),
];

pub fn doctor(explicit: Option<&Path>) -> Result<ExitCode, Error> {
    let (choice, root) = start_python(explicit, &[])?;
    Python::attach(|py| -> PyResult<ExitCode> {
        let sys = py.import("sys")?;
        outln!("rustybt {}", env!("CARGO_PKG_VERSION"));
        outln!("project root:     {}", root.display());
        outln!("interpreter:      {}", choice.executable.display());
        outln!("chosen from:      {}", choice.source);
        outln!(
            "python version:   {}",
            support_note(&python::python_version(py))
        );
        outln!("sys.executable:   {}", sys.getattr("executable")?);
        outln!("sys.prefix:       {}", sys.getattr("prefix")?);
        outln!("sys.base_prefix:  {}", sys.getattr("base_prefix")?);
        outln!("sys.path:");
        for entry in sys.getattr("path")?.try_iter()? {
            outln!("  {}", entry?);
        }
        outln!("packages:");
        let mut missing = 0;
        for (module, label) in CHECKED_PACKAGES {
            match py.import(module) {
                Ok(m) => {
                    let version = m
                        .getattr("__version__")
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| "?".into());
                    outln!("  ok       {label} {version}");
                }
                Err(err) => {
                    missing += 1;
                    outln!("  MISSING  {label}: {}", err.value(py));
                }
            }
        }
        if missing > 0 {
            outln!("hint: install the requirements with `make setup`");
            Ok(ExitCode::Usage)
        } else {
            Ok(ExitCode::Success)
        }
    })
    .map_err(|e| Error::Python {
        message: e.to_string(),
        hint: None,
    })
}
