//! `rustybt --version` and `rustybt doctor`.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;

use crate::error::{Error, ExitCode};
use crate::python::{self, InterpreterChoice};

/// Chooses the interpreter (searching from the working directory), starts it and returns the
/// choice and the project root it took `pylib` from.
/// `println!` that ignores a closed stdout (`rustybt doctor | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

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
    say!("rustybt {}", env!("CARGO_PKG_VERSION"));
    let (choice, _) = start_python(explicit, &[])?;
    Python::attach(|py| {
        say!(
            "python {} ({})",
            python::python_version(py),
            choice.executable.display()
        );
    });
    Ok(ExitCode::Success)
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
        say!("rustybt {}", env!("CARGO_PKG_VERSION"));
        say!("project root:     {}", root.display());
        say!("interpreter:      {}", choice.executable.display());
        say!("chosen from:      {}", choice.source);
        say!("python version:   {}", python::python_version(py));
        say!("sys.executable:   {}", sys.getattr("executable")?);
        say!("sys.prefix:       {}", sys.getattr("prefix")?);
        say!("sys.base_prefix:  {}", sys.getattr("base_prefix")?);
        say!("sys.path:");
        for entry in sys.getattr("path")?.try_iter()? {
            say!("  {}", entry?);
        }
        say!("packages:");
        let mut missing = 0;
        for (module, label) in CHECKED_PACKAGES {
            match py.import(module) {
                Ok(m) => {
                    let version = m
                        .getattr("__version__")
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| "?".into());
                    say!("  ok       {label} {version}");
                }
                Err(err) => {
                    missing += 1;
                    say!("  MISSING  {label}: {}", err.value(py));
                }
            }
        }
        if missing > 0 {
            say!("hint: install the requirements with `make setup`");
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
