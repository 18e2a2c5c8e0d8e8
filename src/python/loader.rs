//! Loading the user's algorithm file.
//!
//! The source is compiled with its absolute path as the file name (tracebacks and debugger
//! breakpoints map to the real file) and executed into a fresh module object, which replaces
//! any earlier one only when it succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyType};

use super::errors::algorithm_error;
use crate::error::{AlgorithmError, Error};

/// An algorithm instance ready to run, with its effective parameters.
pub struct LoadedAlgorithm {
    pub instance: Py<PyAny>,
    pub class_name: String,
    pub path: PathBuf,
    /// Parameter name → `repr()` of the value the run uses.
    pub parameters: BTreeMap<String, String>,
    /// The algorithm's file and the local modules its load imported (canonical paths): the
    /// files whose change reloads it in a book. Empty for an instance built in Python.
    pub source_files: Vec<PathBuf>,
}

pub fn load_algorithm(
    py: Python<'_>,
    path: &Path,
    class_name: Option<&str>,
    overrides: &[(String, String)],
) -> Result<LoadedAlgorithm, Error> {
    let path = std::path::absolute(path).map_err(|source| Error::Io {
        context: "cannot resolve the algorithm path",
        path: path.to_path_buf(),
        source,
    })?;
    let source = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        context: "cannot read the algorithm file",
        path: path.clone(),
        source,
    })?;
    let root = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let loading_error = |py: Python<'_>, err: PyErr| -> Error {
        if super::errors::is_keyboard_interrupt(py, &err) {
            return Error::Interrupted;
        }
        algorithm_error(py, &err, "loading", None, &root).into()
    };
    let python_setup_error = |err: PyErr| Error::Python {
        message: err.to_string(),
        hint: Some("run `rustybt doctor` to check the interpreter and sys.path".into()),
    };

    let base = py
        .import("rustybt_api")
        .and_then(|m| m.getattr("Algorithm"))
        .map_err(python_setup_error)?;
    // The project folder goes after the algorithm's own, so `from indicators.x import X`
    // works for a project laid out as algorithms/ beside indicators/.
    if let Some(project) = root.parent().filter(|p| p.join("indicators").is_dir()) {
        add_to_sys_path(py, project).map_err(python_setup_error)?;
    }
    add_to_sys_path(py, &root).map_err(python_setup_error)?;

    // A private name: an algorithm file called `time.py` must not replace the `time` module.
    let module_name = format!("{MODULE_PREFIX}{}", module_name_for(&path));
    let builtins = py.import("builtins").map_err(python_setup_error)?;
    let code = builtins
        .call_method1("compile", (source, path.to_string_lossy().as_ref(), "exec"))
        .map_err(|e| loading_error(py, e))?;
    let module = PyModule::new(py, &module_name).map_err(python_setup_error)?;
    module
        .setattr("__file__", path.to_string_lossy().as_ref())
        .map_err(python_setup_error)?;
    let modules = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .map_err(python_setup_error)?;
    // A reload must not disturb the running code until the new code has loaded: remember the
    // module it replaces and the user's helper modules it purges, and put them back on failure.
    let host = py.import("rustybt_api._host").map_err(python_setup_error)?;
    let previous = modules.get_item(&module_name).ok().filter(|m| !m.is_none());
    let purged = host
        .call_method1(
            "purge_modules",
            (vec![root.to_string_lossy().to_string()], &module_name),
        )
        .map_err(python_setup_error)?;
    let restore = || {
        match &previous {
            Some(old) => {
                let _ = modules.set_item(&module_name, old);
            }
            None => {
                let _ = modules.del_item(&module_name);
            }
        }
        let _ = host.call_method1("restore_modules", (&purged,));
    };
    modules
        .set_item(&module_name, &module)
        .map_err(python_setup_error)?;
    let globals = module.dict();
    // The modules present before the file runs: those it imports are the ones added since.
    let before = builtins.call_method1("set", (&modules,)).ok();
    if let Err(err) = builtins.call_method1("exec", (code, &globals)) {
        restore();
        return Err(loading_error(py, err));
    }
    let source_files = imported_files(&host, &path, &module_name, before);

    let built = pick_class(py, &module, &base, &module_name, class_name, &path).and_then(|class| {
        let class_name = class
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Algorithm".into());
        let instance = class
            .call0()
            .map_err(|err| Error::from(algorithm_error(py, &err, "__init__", None, &root)))?;
        let parameters = apply_parameters(py, &instance, overrides)?;
        Ok(LoadedAlgorithm {
            instance: instance.unbind(),
            class_name,
            path: path.clone(),
            parameters,
            source_files,
        })
    });
    if built.is_err() {
        restore();
    }
    built
}

/// Prefix of the host's private module names for algorithm files.
const MODULE_PREFIX: &str = "_rustybt_algo_";

/// The algorithm's own file and every local module the load just imported. The load purged the
/// user's modules first, so each one it needed was imported afresh: it is among the modules
/// added to `sys.modules` since `before` (all of them are looked at when that is missing).
/// When Python cannot say, the algorithm's file alone (a reload then follows that file only).
fn imported_files(
    host: &Bound<'_, PyModule>,
    path: &Path,
    module_name: &str,
    before: Option<Bound<'_, PyAny>>,
) -> Vec<PathBuf> {
    let own = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut files: Vec<PathBuf> = host
        .call_method1("user_module_files", (MODULE_PREFIX, module_name, before))
        .and_then(|found| found.extract())
        .unwrap_or_default();
    if !files.contains(&own) {
        files.push(own);
    }
    files.sort();
    files
}

/// Methods of the algorithm's class that look like a misspelt hook (`on_bar`): the engine
/// never calls them. One `file:line: message (did you mean ...)` line each; empty when the
/// check itself cannot run (it is advice, never a reason to stop).
pub fn hook_warnings(py: Python<'_>, loaded: &LoadedAlgorithm) -> Vec<String> {
    let class = loaded.instance.bind(py).get_type();
    py.import("rustybt_api._hooks")
        .and_then(|m| m.call_method1("misnamed_hook_warnings", (class,)))
        .and_then(|lines| lines.extract())
        .unwrap_or_default()
}

fn module_name_for(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "algorithm".into());
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        format!("_{clean}")
    } else {
        clean
    }
}

pub(crate) fn add_to_sys_path(py: Python<'_>, dir: &Path) -> PyResult<()> {
    let path = py.import("sys")?.getattr("path")?;
    let dir = dir.to_string_lossy();
    if !path.contains(dir.as_ref())? {
        path.call_method1("insert", (0, dir.as_ref()))?;
    }
    Ok(())
}

fn pick_class<'py>(
    py: Python<'py>,
    module: &Bound<'py, PyModule>,
    base: &Bound<'py, PyAny>,
    module_name: &str,
    wanted: Option<&str>,
    path: &Path,
) -> Result<Bound<'py, PyType>, Error> {
    let mut candidates: Vec<Bound<'py, PyType>> = Vec::new();
    for (_, value) in module.dict().iter() {
        let Ok(class) = value.cast_into::<PyType>() else {
            continue;
        };
        let defined_here = class
            .getattr("__module__")
            .and_then(|m| m.extract::<String>())
            .is_ok_and(|m| m == module_name);
        if defined_here && !class.is(base) && class.is_subclass(base).unwrap_or(false) {
            candidates.push(class);
        }
    }
    let names: Vec<String> = candidates
        .iter()
        .map(|c| c.name().map(|n| n.to_string()).unwrap_or_default())
        .collect();
    let problem = |message: String, hint: &str| -> Error {
        AlgorithmError {
            phase: "loading".into(),
            sim_time: None,
            exception: "AlgorithmNotFound".into(),
            message,
            location: None,
            traceback: String::new(),
            hint: Some(hint.into()),
        }
        .into()
    };
    let shown = path.display();
    match wanted {
        Some(wanted) => candidates
            .into_iter()
            .zip(&names)
            .find(|(_, name)| name.as_str() == wanted)
            .map(|(class, _)| class)
            .ok_or_else(|| {
                problem(
                    format!("`{shown}` has no Algorithm subclass named `{wanted}`"),
                    &if names.is_empty() {
                        "define `class MyStrategy(Algorithm):` (with `from rustybt_api import Algorithm`)".to_string()
                    } else {
                        format!("Algorithm subclasses in the file: {}", names.join(", "))
                    },
                )
            }),
        None => match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(problem(
                format!("`{shown}` defines no subclass of `rustybt_api.Algorithm`"),
                "define `class MyStrategy(Algorithm):` (with `from rustybt_api import Algorithm`)",
            )),
            _ => {
                let _ = py;
                Err(problem(
                    format!(
                        "`{shown}` defines {} Algorithm subclasses: {}",
                        names.len(),
                        names.join(", ")
                    ),
                    "choose one with `--class NAME`",
                ))
            }
        },
    }
}

/// Parameters are the public, non-callable class attributes of the algorithm class and its
/// bases up to `Algorithm` (`rustybt_api.algorithm.apply_parameters`). Overrides are converted
/// to the type of the default value and checked against a `Param`'s declared space.
fn apply_parameters(
    py: Python<'_>,
    instance: &Bound<'_, PyAny>,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, Error> {
    let internal = |err: PyErr| Error::Internal(format!("reading parameters: {err}"));
    let apply = py
        .import("rustybt_api.algorithm")
        .and_then(|m| m.getattr("apply_parameters"))
        .map_err(internal)?;
    let effective = apply
        .call1((instance, overrides.to_vec()))
        .map_err(|err| parameter_error(py, err))?;
    effective.extract().map_err(internal)
}

/// A `ParameterError` raised by `rustybt_api` as a usage error with its hint; any other
/// exception is a bug of rustybt's Python side.
pub fn parameter_error(py: Python<'_>, err: PyErr) -> Error {
    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        return Error::Interrupted;
    }
    let is_parameter_error = py
        .import("rustybt_api._parameters")
        .and_then(|m| m.getattr("ParameterError"))
        .is_ok_and(|class| err.is_instance(py, &class));
    if !is_parameter_error {
        return Error::Internal(format!("reading parameters: {err}"));
    }
    let value = err.value(py);
    let hint = crate::python::errors::hint_of(value);
    match hint {
        Some(hint) => Error::usage_with_hint(value.to_string(), hint),
        None => Error::usage(value.to_string()),
    }
}

/// An algorithm instance made by Python code (the in-process test harness) rather than loaded
/// from a file: its class name, source file and effective parameters.
pub fn describe_instance(
    py: Python<'_>,
    instance: &Bound<'_, PyAny>,
) -> Result<LoadedAlgorithm, Error> {
    let class = instance.get_type();
    let base = py
        .import("rustybt_api")
        .and_then(|m| m.getattr("Algorithm"))
        .map_err(|e| Error::Internal(format!("importing rustybt_api: {e}")))?;
    if !instance.is_instance(&base).unwrap_or(false) {
        let shown = class.name().map(|n| n.to_string()).unwrap_or_default();
        return Err(Error::usage(format!(
            "`{shown}` is not an `Algorithm`: subclass `rustybt_api.Algorithm`"
        )));
    }
    let class_name = class
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Algorithm".into());
    // The class's source file, when Python knows it (not for classes made with `type()`).
    let path = py
        .import("inspect")
        .and_then(|inspect| inspect.call_method1("getsourcefile", (&class,)))
        .ok()
        .and_then(|file| file.extract::<Option<PathBuf>>().ok().flatten())
        .unwrap_or_else(|| PathBuf::from(format!("<{class_name}>")));
    let parameters = apply_parameters(py, instance, &[])?;
    Ok(LoadedAlgorithm {
        instance: instance.clone().unbind(),
        class_name,
        path,
        parameters,
        source_files: Vec::new(),
    })
}
