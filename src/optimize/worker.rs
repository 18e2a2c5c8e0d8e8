//! Trial workers. A worker is a process that starts Python once, then runs trials it reads
//! as JSON lines and answers each with one JSON line. Local workers are forked after the data
//! is loaded, so every worker reads the parent's bars (copy-on-write pages, never written)
//! instead of a copy of its own; a Ray worker is the same loop in `rustybt optimize worker`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use pyo3::prelude::*;

use super::trial::{TrialRequest, TrialResult, run_trial};
use crate::config::RunSettings;
use crate::error::Error;
use crate::pipeline::Prepared;

/// Serves trials from `input` until it closes: one request line in, one result line out.
/// Returns when the input ends (the study is over) or the worker is interrupted.
pub fn serve(
    settings: &RunSettings,
    prepared: &Prepared,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), Error> {
    keep_large_blocks_apart();
    Python::attach(|py| -> Result<(), Error> {
        for line in input.lines() {
            let line = line.map_err(|e| Error::Internal(format!("reading a trial: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let request: TrialRequest = serde_json::from_str(&line)
                .map_err(|e| Error::Internal(format!("a trial request is not valid: {e}")))?;
            let result = run_trial(py, settings, prepared, &request)?;
            let mut text = serde_json::to_string(&result)
                .map_err(|e| Error::Internal(format!("a trial result: {e}")))?;
            text.push('\n');
            // The study has gone when its end of the pipe is closed: stop quietly.
            if output
                .write_all(text.as_bytes())
                .and_then(|()| output.flush())
                .is_err()
            {
                return Ok(());
            }
            release_memory(py);
        }
        Ok(())
    })
}

/// A trial's large buffers (indicator columns, the order list) each in pages of their own,
/// given back to the system when freed and grown without a copy (`mremap`). By default glibc
/// raises its mmap threshold to the largest block freed so far (up to 32 MB), so from the
/// second trial on those buffers would come from the heap: grown by copying (old and new alive
/// at once) and kept after the trial.
fn keep_large_blocks_apart() {
    // SAFETY: mallopt only changes the allocator's settings.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Hands a finished trial's memory back, so a worker waits for the next trial holding little
/// more than its interpreter: the trial's Python objects that refer to each other (collected
/// now, not whenever the collector's thresholds next say), and the pages the allocator keeps
/// for reuse (glibc's `malloc_trim`).
fn release_memory(py: Python<'_>) {
    let _ = py.import("gc").and_then(|gc| gc.call_method0("collect"));
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the system.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a worker sent back: a result, or that it is gone (crashed, killed, or interrupted).
pub enum Message {
    Result(usize, TrialResult),
    Gone(usize, String),
}

/// The parent's end of one forked worker.
pub struct ForkedWorker {
    pub pid: libc::pid_t,
    stream: UnixStream,
}

impl Drop for ForkedWorker {
    fn drop(&mut self) {
        // The reader thread holds a clone of this socket: only a shutdown ends the worker's
        // input (closing one descriptor of two would not).
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

impl ForkedWorker {
    pub fn send(&mut self, request: &TrialRequest) -> std::io::Result<()> {
        let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
        text.push('\n');
        self.stream.write_all(text.as_bytes())
    }
}

/// Forks `count` workers. Each child runs `child(stream)` (which must call [`serve`]) and
/// exits with its return value; it never returns here. Results arrive on the returned channel
/// from one reader thread per worker.
///
/// Must be called after this process started Python (the children share its interpreter, see
/// [`fork_with_python`]) and before it starts any thread: a forked child has only the forking
/// thread, so any lock another thread held would stay locked forever.
pub fn fork_workers(
    count: usize,
    child: &dyn Fn(UnixStream) -> i32,
) -> Result<(Vec<ForkedWorker>, mpsc::Receiver<Message>), Error> {
    Python::attach(|py| {
        // What every trial imports (`seed_python`), mapped once for all workers.
        for module in ["random", "numpy"] {
            py.import(module).map_err(|e| Error::Python {
                message: format!("importing {module}: {e}"),
                hint: None,
            })?;
        }
        // Objects that exist now are never scanned by a collection again: a worker's collector
        // would otherwise write to every object's header and copy the pages it shares.
        py.import("gc")
            .and_then(|gc| gc.call_method0("freeze"))
            .map_err(|e| Error::Internal(format!("freezing the interpreter's objects: {e}")))?;
        fork_all(count, child)
    })
}

/// `fork()` with CPython's own fork hooks (as `os.fork` does): the child's interpreter takes
/// the forking thread as its only thread. Called with the interpreter attached.
fn fork_with_python() -> libc::pid_t {
    // SAFETY: the GIL is held by this thread (the callers run inside `Python::attach`), as
    // PyOS_BeforeFork requires; each branch calls the matching after-fork hook.
    unsafe {
        pyo3::ffi::PyOS_BeforeFork();
        let pid = libc::fork();
        if pid == 0 {
            pyo3::ffi::PyOS_AfterFork_Child();
        } else {
            pyo3::ffi::PyOS_AfterFork_Parent();
        }
        pid
    }
}

fn fork_all(
    count: usize,
    child: &dyn Fn(UnixStream) -> i32,
) -> Result<(Vec<ForkedWorker>, mpsc::Receiver<Message>), Error> {
    let parent_pid = std::process::id() as libc::pid_t;
    let mut workers: Vec<ForkedWorker> = Vec::with_capacity(count);
    let mut ends: Vec<UnixStream> = Vec::with_capacity(count);
    for _ in 0..count {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| Error::Internal(format!("creating a worker's pipe: {e}")))?;
        // Output buffered by this process would be written twice: once by each child.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // No other thread runs yet (see above); the child only uses its own copy of this
        // thread's memory and leaves through `_exit`.
        let pid = fork_with_python();
        if pid < 0 {
            return Err(Error::Internal(format!(
                "cannot start a worker process: {}",
                std::io::Error::last_os_error()
            )));
        }
        if pid == 0 {
            // The other workers' pipes are not this child's: close them, so a worker sees
            // the end of its input as soon as the study closes it.
            drop(ours);
            drop(std::mem::take(&mut ends));
            // Forgotten, not dropped: their Drop would shut the sockets down for the parent too.
            for w in workers.drain(..) {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&w.stream);
                std::mem::forget(w);
                // SAFETY: closes this child's copy of a descriptor it owns and never uses.
                unsafe { libc::close(fd) };
            }
            // SAFETY: prctl and getppid have no memory effects; a worker dies with the study
            // (even after `kill -9` of the study), and not before it has checked the parent is
            // still the one that forked it.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent_pid {
                    libc::_exit(1);
                }
            }
            let code = child(theirs);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: ends the child without running the parent's exit handlers twice.
            unsafe { libc::_exit(code) };
        }
        drop(theirs);
        ends.push(
            ours.try_clone()
                .map_err(|e| Error::Internal(format!("a worker's pipe: {e}")))?,
        );
        workers.push(ForkedWorker { pid, stream: ours });
    }
    let (sender, receiver) = mpsc::channel();
    for (index, stream) in ends.into_iter().enumerate() {
        let sender = sender.clone();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || read_results(index, stream, &sender))
            .map_err(|e| Error::Internal(format!("a worker's reader thread: {e}")))?;
    }
    Ok((workers, receiver))
}

/// Forwards a worker's result lines until it closes its end.
pub fn read_results(index: usize, stream: impl std::io::Read, sender: &mpsc::Sender<Message>) {
    for line in BufReader::new(stream).lines() {
        let message = match line {
            Ok(text) => match serde_json::from_str::<TrialResult>(&text) {
                Ok(result) => Message::Result(index, result),
                Err(e) => Message::Gone(index, format!("sent a line that is not a result: {e}")),
            },
            Err(e) => Message::Gone(index, format!("cannot be read: {e}")),
        };
        let gone = matches!(message, Message::Gone(..));
        if sender.send(message).is_err() || gone {
            return;
        }
    }
    let _ = sender.send(Message::Gone(index, "exited".into()));
}

/// Waits for a forked worker and says how it ended.
pub fn reap(pid: libc::pid_t) -> String {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    if waited != pid {
        return "exited".into();
    }
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}
