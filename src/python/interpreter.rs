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
/// then the interpreter rustybt was built against. A virtualenv of another Python version than
/// the libpython this binary links is passed over (its packages would not import), and an
/// explicit interpreter of another version is refused.
pub fn choose_interpreter(
    explicit: Option<&Path>,
    search_from: &[PathBuf],
) -> Result<InterpreterChoice, Error> {
    choose_for(BUILD_VERSION, explicit, search_from)
}

/// `major.minor` of the libpython this binary links (None in builds without the build script).
const BUILD_VERSION: Option<&str> = option_env!("RUSTYBT_BUILD_PYTHON_VERSION");

fn choose_for(
    built: Option<&str>,
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
        if let Some(mismatch) = version_mismatch(built, path) {
            return Err(Error::Python {
                message: format!("interpreter `{}` {mismatch}", path.display()),
                hint: Some(format!(
                    "pass a Python {} interpreter, or rebuild rustybt against this one \
                     (`make build PYTHON={}`)",
                    built.unwrap_or("?"),
                    path.display()
                )),
            });
        }
        return Ok(InterpreterChoice {
            executable: path.to_path_buf(),
            source: "--python / RUSTYBT_PYTHON".into(),
        });
    }
    // Virtualenvs passed over for their version, named if nothing else is found.
    let mut passed_over = Vec::new();
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        candidates.push((PathBuf::from(venv), "VIRTUAL_ENV".to_string()));
    }
    for start in search_from {
        for dir in start.ancestors() {
            candidates.push((dir.join(".venv"), format!(".venv in {}", dir.display())));
        }
    }
    for (venv, source) in candidates {
        let python = venv_python(&venv);
        if !python.exists() {
            continue;
        }
        match version_mismatch(built, &python) {
            None => {
                return Ok(InterpreterChoice {
                    executable: python,
                    source: with_passed_over(source, &passed_over),
                });
            }
            Some(mismatch) => passed_over.push(format!("{} {mismatch}", venv.display())),
        }
    }
    match option_env!("RUSTYBT_BUILD_PYTHON") {
        Some(python) if Path::new(python).exists() => Ok(InterpreterChoice {
            executable: PathBuf::from(python),
            source: with_passed_over(
                "the build-time interpreter (no usable virtualenv found)".into(),
                &passed_over,
            ),
        }),
        _ => Err(Error::Python {
            message: with_passed_over("no Python interpreter found".into(), &passed_over),
            hint: Some(
                "create the project virtualenv with `make setup`, or pass `--python`".into(),
            ),
        }),
    }
}

/// Names the virtualenvs skipped for their version, so `doctor` and errors explain the choice.
fn with_passed_over(text: String, passed_over: &[String]) -> String {
    if passed_over.is_empty() {
        text
    } else {
        format!("{text}; passed over: {}", passed_over.join("; "))
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// "is Python 3.12 but this rustybt embeds 3.11" when the versions are known and differ.
fn version_mismatch(built: Option<&str>, python: &Path) -> Option<String> {
    let built = built?;
    let found = interpreter_version(python)?;
    (found != built).then(|| format!("is Python {found} but this rustybt embeds Python {built}"))
}

/// `major.minor` of an interpreter without starting it: a virtualenv's `pyvenv.cfg`, else the
/// `pythonX.Y` name the executable resolves to.
fn interpreter_version(python: &Path) -> Option<String> {
    let cfg = python.parent()?.parent()?.join("pyvenv.cfg");
    if let Ok(text) = std::fs::read_to_string(cfg) {
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            // `venv` writes `version`, uv and virtualenv `version_info`.
            if matches!(key.trim(), "version" | "version_info") {
                return major_minor(value.trim());
            }
        }
    }
    let resolved = std::fs::canonicalize(python).ok()?;
    let name = resolved.file_name()?.to_str()?;
    major_minor(name.strip_prefix("python")?)
}

fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("{major}.{minor}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtualenv folder with `bin/python` and a `pyvenv.cfg` naming `version`.
    fn fake_venv(dir: &Path, version: &str) -> PathBuf {
        let venv = dir.join(".venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!("home = /usr/bin\nversion = {version}\n"),
        )
        .unwrap();
        venv
    }

    #[test]
    fn a_venv_of_another_version_is_passed_over_for_one_further_up() {
        let root = tempfile::tempdir().unwrap();
        let outer = fake_venv(root.path(), "3.11.7");
        let project = root.path().join("project");
        fake_venv(&project, "3.12.1");
        let choice = choose_for(Some("3.11"), None, &[project]).unwrap();
        assert_eq!(choice.executable, venv_python(&outer));
        assert_eq!(
            choice.source,
            format!(
                ".venv in {}; passed over: {}/project/.venv is Python 3.12 but this rustybt \
                 embeds Python 3.11",
                root.path().display(),
                root.path().display()
            )
        );
    }

    #[test]
    fn a_venv_of_the_built_version_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        let venv = fake_venv(root.path(), "3.12.1");
        let choice = choose_for(Some("3.12"), None, &[root.path().to_path_buf()]).unwrap();
        assert_eq!(choice.executable, venv_python(&venv));
    }

    #[test]
    fn an_explicit_interpreter_of_another_version_is_refused_with_both_versions() {
        let root = tempfile::tempdir().unwrap();
        let venv = fake_venv(root.path(), "3.13.0");
        let err = choose_for(Some("3.11"), Some(&venv_python(&venv)), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("is Python 3.13 but this rustybt embeds Python 3.11"),
            "{text}"
        );
    }

    #[test]
    fn uv_style_version_info_and_unknown_versions() {
        let root = tempfile::tempdir().unwrap();
        let venv = root.path().join("uv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "version_info = 3.12.1.final.0\n").unwrap();
        assert_eq!(
            interpreter_version(&venv_python(&venv)).as_deref(),
            Some("3.12")
        );
        // No pyvenv.cfg and a name without a version: unknown, so never refused.
        let bare = root.path().join("python");
        std::fs::write(&bare, "").unwrap();
        assert_eq!(interpreter_version(&bare), None);
        assert_eq!(version_mismatch(Some("3.11"), &bare), None);
    }
}
