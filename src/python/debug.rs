//! `rustybt run --debug`: debugpy inside the embedded interpreter, so a DAP client (VS Code or
//! any other) can attach and stop at breakpoints in the algorithm and `indicators/`.
//!
//! Breakpoints bind by a code object's file name; the loader compiles the algorithm with its
//! absolute path and `indicators/` is imported from an absolute `sys.path` entry, so both map
//! to the real files. The Python side is `debug.py` beside this file, compiled into the binary.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::InterpreterChoice;
use super::errors::is_keyboard_interrupt;
use crate::cli::RunArgs;
use crate::error::Error;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 5678;

const HELPER: &str = include_str!("debug.py");

/// Where and how to listen for a debugger, validated before anything is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct DebugOptions {
    pub host: String,
    /// 0 lets the system pick a free port (the one chosen is printed).
    pub port: u16,
    pub wait_for_client: bool,
}

impl DebugOptions {
    /// `None` without `--debug`. The debug flags without `--debug`, and a host that is not an
    /// IP address or a host name that resolves, are usage errors.
    pub fn from_args(args: &RunArgs) -> Result<Option<Self>, Error> {
        if !args.debug {
            let stray = [
                (args.wait_for_client, "--wait-for-client"),
                (args.debug_port.is_some(), "--debug-port"),
                (args.debug_host.is_some(), "--debug-host"),
            ]
            .into_iter()
            .find(|(given, _)| *given);
            return match stray {
                Some((_, flag)) => Err(Error::usage_with_hint(
                    format!("`{flag}` needs `--debug`"),
                    "start the debugger with `rustybt run --debug ...`",
                )),
                None => Ok(None),
            };
        }
        let host = args
            .debug_host
            .clone()
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let port = args.debug_port.unwrap_or(DEFAULT_PORT);
        let addresses = resolve(&host, port)?;
        if let Some(outside) = addresses.iter().find(|a| !a.ip().is_loopback()) {
            let reach = if outside.ip().is_unspecified() {
                "every network interface".to_string()
            } else {
                format!("{} (not loopback)", outside.ip())
            };
            errln!(
                "warning: the debugger will listen on {reach}: anyone who can connect to it can \
                 run any code as you. Use it only on a trusted network, or an SSH tunnel to \
                 127.0.0.1 instead"
            );
        }
        Ok(Some(DebugOptions {
            host,
            port,
            wait_for_client: args.wait_for_client,
        }))
    }

    /// Starts debugpy (its adapter runs with `choice`'s interpreter) and, with
    /// `--wait-for-client`, blocks until a client has attached and configured its breakpoints.
    /// Call after Python has started and before the algorithm is loaded.
    pub fn start(&self, choice: &InterpreterChoice) -> Result<(), Error> {
        let python = choice.executable.to_string_lossy().to_string();
        Python::attach(|py| -> Result<(), Error> {
            let module = helper(py).map_err(|e| internal(py, "loading the debugger helper", &e))?;
            let listened = module.call_method1("listen", (self.host.as_str(), self.port, &python));
            let (host, port, version): (String, u16, String) = match listened {
                Ok(address) => address
                    .extract()
                    .map_err(|e| internal(py, "reading the debugger's address", &e))?,
                Err(err) => return Err(self.start_error(py, &err, &python)),
            };
            let shown = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            errln!("debugger (debugpy {version}) listening on {shown}");
            if self.wait_for_client {
                errln!(
                    "waiting for a debugger to attach to {shown} before the algorithm is \
                     loaded (Ctrl-C to stop)"
                );
                module.call_method0("wait_for_client").map_err(|err| {
                    if is_keyboard_interrupt(py, &err) {
                        Error::Interrupted
                    } else {
                        internal(py, "waiting for the debugger", &err)
                    }
                })?;
                errln!("debugger attached");
            }
            Ok(())
        })
    }

    fn start_error(&self, py: Python<'_>, err: &PyErr, python: &str) -> Error {
        if is_keyboard_interrupt(py, err) {
            return Error::Interrupted;
        }
        let value = err.value(py);
        let kind: String = value
            .getattr("kind")
            .and_then(|k| k.extract())
            .unwrap_or_else(|_| "failed".into());
        let detail = value.str().map(|s| s.to_string()).unwrap_or_default();
        match kind.as_str() {
            "missing" => Error::usage_with_hint(
                format!("`--debug` needs debugpy, which is not installed in {python} ({detail})"),
                format!("install it with `{python} -m pip install debugpy`"),
            ),
            "in_use" => Error::usage_with_hint(
                format!(
                    "cannot listen for a debugger on {}:{}: the port is in use",
                    self.host, self.port
                ),
                "choose another port with `--debug-port`, or `--debug-port 0` for any free one",
            ),
            _ => Error::usage_with_hint(
                format!(
                    "cannot listen for a debugger on {}:{}: {detail}",
                    self.host, self.port
                ),
                "`--debug-host` must be an address of this machine (default 127.0.0.1)",
            ),
        }
    }
}

/// The addresses `host` names. A literal IP is taken as is; a host name must be made of
/// letters, digits, `-` and `.` and resolve (a malformed one never reaches the resolver).
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let bad = |why: &str| {
        Error::usage_with_hint(
            format!("invalid `--debug-host` `{host}`: {why}"),
            "give an IP address such as 127.0.0.1 (the default) or ::1, or a host name",
        )
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let well_formed = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !well_formed {
        return Err(bad("not an IP address or a host name"));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("it does not resolve ({e})")))?
        .collect();
    if found.is_empty() {
        return Err(bad("it resolves to no address"));
    }
    Ok(found)
}

fn helper(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let code = CString::new(HELPER).expect("invariant: debug.py has no NUL byte");
    PyModule::from_code(py, &code, c"<rustybt debug helper>", c"_rustybt_debug")
}

fn internal(py: Python<'_>, what: &str, err: &PyErr) -> Error {
    Error::Internal(format!("{what}: {}", err.value(py)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(debug: bool) -> RunArgs {
        RunArgs {
            debug,
            ..Default::default()
        }
    }

    #[test]
    fn off_without_debug() {
        assert_eq!(DebugOptions::from_args(&args(false)).unwrap(), None);
    }

    #[test]
    fn defaults_to_loopback_5678() {
        let options = DebugOptions::from_args(&args(true)).unwrap().unwrap();
        assert_eq!(options.host, "127.0.0.1");
        assert_eq!(options.port, 5678);
        assert!(!options.wait_for_client);
    }

    #[test]
    fn debug_flags_need_debug() {
        for (a, flag) in [
            (
                RunArgs {
                    wait_for_client: true,
                    ..Default::default()
                },
                "--wait-for-client",
            ),
            (
                RunArgs {
                    debug_port: Some(1234),
                    ..Default::default()
                },
                "--debug-port",
            ),
            (
                RunArgs {
                    debug_host: Some("127.0.0.1".into()),
                    ..Default::default()
                },
                "--debug-host",
            ),
        ] {
            let err = DebugOptions::from_args(&a).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::Usage);
            assert_eq!(err.to_string(), format!("`{flag}` needs `--debug`"));
        }
    }

    #[test]
    fn hosts() {
        assert!(resolve("127.0.0.1", 1).unwrap()[0].ip().is_loopback());
        assert!(resolve("::1", 1).unwrap()[0].ip().is_loopback());
        assert!(resolve("[::1]", 1).unwrap()[0].ip().is_loopback());
        assert!(resolve("0.0.0.0", 1).unwrap()[0].ip().is_unspecified());
        assert!(resolve("localhost", 1).is_ok());
        for bad in ["", "bad host!", "a..b", "-x", "host:5678", "1.2.3.4.5.6:7"] {
            let err = resolve(bad, 1).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid `--debug-host`"),
                "{bad}: {err}"
            );
        }
    }
}
