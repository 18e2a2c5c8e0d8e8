//! The only module that touches pyo3 and numpy: interpreter start-up, loading user code, the
//! engine's Python objects, zero-copy arrays, conversions and error capture.

pub mod allocator;
pub mod arrays;
pub mod convert;
pub mod custom;
pub mod debug;
pub mod errors;
pub mod fetch;
pub mod interpreter;
pub mod live_state;
pub mod loader;
pub mod objects;
pub mod schedule;
pub mod slippage;
pub mod strategy;
pub mod venue;

use std::path::{Path, PathBuf};

use crate::error::Error;
pub use custom::PythonIndicators;
pub use interpreter::{InterpreterChoice, choose_interpreter, python_version};
pub use loader::{LoadedAlgorithm, load_algorithm};
pub use objects::LogSink;
pub use strategy::{HookTiming, PyStrategy};

/// Registers the `_rustybt` built-in module, starts the chosen interpreter and prepares
/// `sys.path` with `pylib`. Call once per process.
pub fn start(choice: &InterpreterChoice, pylib: &Path) -> Result<(), Error> {
    // SAFETY: appending to the inittab is allowed only before the interpreter starts,
    // which `initialize` checks right after.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        use objects::_rustybt;
        pyo3::append_to_inittab!(_rustybt);
    }
    interpreter::initialize(choice)?;
    pyo3::Python::attach(|py| interpreter::prepare(py, pylib)).map_err(|e| Error::Python {
        message: e.to_string(),
        hint: None,
    })
}

/// The folder holding `pylib/rustybt_api`: `RUSTYBT_HOME`, else the first ancestor of the
/// binary or of the working directory that has it, else the source tree rustybt was built in.
pub fn project_root() -> Option<PathBuf> {
    let has_pylib = |dir: &Path| dir.join("pylib/rustybt_api/__init__.py").is_file();
    if let Some(home) = std::env::var_os("RUSTYBT_HOME") {
        let home = PathBuf::from(home);
        if has_pylib(&home) {
            return Some(home);
        }
    }
    let mut starts = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    starts
        .iter()
        .flat_map(|start| start.ancestors())
        .find(|dir| has_pylib(dir))
        .map(Path::to_path_buf)
}
