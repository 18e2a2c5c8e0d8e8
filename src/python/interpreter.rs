//! Choosing and starting the embedded interpreter.
//!
//! An embedded CPython takes `sys.executable` (and so `sys.prefix` and site-packages) from the
//! first `python3` on PATH unless told otherwise, which under pyenv or in CI silently loads
//! the wrong standard library. So we pick the interpreter ourselves and initialize Python from
//! a `PyConfig` whose `executable` is that interpreter, before pyo3 ever attaches.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::error::Error;

/// The interpreter the host runs user code with, and why it was chosen.
#[derive(Debug, Clone)]
pub struct InterpreterChoice {
    pub executable: PathBuf,
    pub source: String,
}

/// Order: `--python`/`RUSTYBT_PYTHON`, `$VIRTUAL_ENV/bin/python`, a `.venv` in the project (the
/// algorithm's folder, the working directory or the binary's folder, or any of their parents),
/// then the interpreter rustybt was built against.
pub fn choose_interpreter(
    explicit: Option<&Path>,
    search_from: &[PathBuf],
) -> Result<InterpreterChoice, Error> {
    if let Some(path) = explicit {
        if !path.exists() {
            return Err(Error::Python {
                message: format!("interpreter `{}` does not exist", path.display()),
                hint: Some("pass an existing python with `--python` or RUSTYBT_PYTHON".into()),
            });
        }
        return Ok(InterpreterChoice {
            executable: path.to_path_buf(),
            source: "--python / RUSTYBT_PYTHON".into(),
        });
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let python = venv_python(Path::new(&venv));
        if python.exists() {
            return Ok(InterpreterChoice {
                executable: python,
                source: "VIRTUAL_ENV".into(),
            });
        }
    }
    for start in search_from {
        for dir in start.ancestors() {
            let python = venv_python(&dir.join(".venv"));
            if python.exists() {
                return Ok(InterpreterChoice {
                    executable: python,
                    source: format!(".venv in {}", dir.display()),
                });
            }
        }
    }
    match option_env!("RUSTYBT_BUILD_PYTHON") {
        Some(python) if Path::new(python).exists() => Ok(InterpreterChoice {
            executable: PathBuf::from(python),
            source: "the build-time interpreter (no virtualenv found)".into(),
        }),
        _ => Err(Error::Python {
            message: "no Python interpreter found".into(),
            hint: Some(
                "create the project virtualenv with `make setup`, or pass `--python`".into(),
            ),
        }),
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Initializes CPython with `executable` as `sys.executable`, then releases the GIL so pyo3's
/// `Python::attach` can take it. Must run once, before anything touches Python.
pub fn initialize(choice: &InterpreterChoice) -> Result<(), Error> {
    // SAFETY: plain calls into the CPython init API in the documented order
    // (InitPythonConfig → SetBytesString → InitializeFromConfig → Clear) on a config that
    // lives on this stack frame for the whole sequence.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        let executable =
            CString::new(choice.executable.as_os_str().as_encoded_bytes()).map_err(|_| {
                Error::Python {
                    message: "interpreter path contains a NUL byte".into(),
                    hint: None,
                }
            })?;
        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config_ptr = config.as_mut_ptr();
        (*config_ptr).parse_argv = 0;
        (*config_ptr).install_signal_handlers = 1;
        let status = ffi::PyConfig_SetBytesString(
            config_ptr,
            &mut (*config_ptr).executable,
            executable.as_ptr(),
        );
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(config_ptr);
            return Err(status_error(status, "setting the executable"));
        }
        let status = ffi::Py_InitializeFromConfig(config_ptr);
        ffi::PyConfig_Clear(config_ptr);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_error(status, "initializing"));
        }
        // Hand the GIL back so pyo3 can attach from here on.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn status_error(status: ffi::PyStatus, what: &str) -> Error {
    let detail = if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: CPython sets err_msg to a static NUL-terminated string.
        unsafe { CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    };
    Error::Python {
        message: format!("{what} failed: {detail}"),
        hint: Some("run `rustybt doctor` to see which interpreter was chosen".into()),
    }
}

/// Puts `pylib` first on `sys.path`, stops bytecode caching of user code (whole-second mtime
/// checks can run stale code after a quick edit), makes print() to a closed pipe harmless,
/// and makes Ctrl-C raise KeyboardInterrupt.
pub fn prepare(py: Python<'_>, pylib: &Path) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr("dont_write_bytecode", true)?;
    let path = sys.getattr("path")?;
    let pylib = pylib.to_string_lossy();
    if !path.contains(pylib.as_ref())? {
        path.call_method1("insert", (0, pylib.as_ref()))?;
    }
    // A closed output pipe (`| head`) must not raise into the algorithm's print().
    py.import("rustybt_api._host")?
        .call_method0("guard_streams")?;
    let signal = py.import("signal")?;
    signal.call_method1(
        "signal",
        (
            signal.getattr("SIGINT")?,
            signal.getattr("default_int_handler")?,
        ),
    )?;
    Ok(())
}

/// `major.minor.micro` of the embedded interpreter.
pub fn python_version(py: Python<'_>) -> String {
    let info = py.version_info();
    format!("{}.{}.{}", info.major, info.minor, info.patch)
}
