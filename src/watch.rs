//! Watching the user's source folders for saved Python files, debounced.
//!
//! Folders are watched (not files), so editors that save by writing a temporary file and
//! renaming it over the original are seen like any other save, and a burst of saves within the
//! debounce window arrives as one change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// How long the folders must be quiet before a change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(60);

pub struct SourceWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    events: Receiver<DebounceEventResult>,
    folders: Vec<PathBuf>,
}

impl SourceWatcher {
    /// Watches each existing folder (not its subfolders: a `.venv` or `target/` below the
    /// algorithm must not be watched; local packages are watched as their own folders).
    pub fn new(folders: &[PathBuf]) -> Result<Self, String> {
        let (sender, events) = channel();
        let mut debouncer = new_debouncer(DEBOUNCE, None, sender)
            .map_err(|e| format!("cannot start the file watcher: {e}"))?;
        let mut watched = Vec::new();
        for folder in folders {
            if folder.is_dir() && !watched.contains(folder) {
                debouncer
                    .watch(folder, RecursiveMode::NonRecursive)
                    .map_err(|e| format!("cannot watch `{}`: {e}", folder.display()))?;
                watched.push(folder.clone());
            }
        }
        Ok(SourceWatcher {
            _debouncer: debouncer,
            events,
            folders: watched,
        })
    }

    /// The folders holding `files`, each once, in order.
    pub fn folders_of(files: &[PathBuf]) -> Vec<PathBuf> {
        let mut folders: Vec<PathBuf> = Vec::new();
        for folder in files.iter().filter_map(|f| f.parent()) {
            if !folders.iter().any(|known| known == folder) {
                folders.push(folder.to_path_buf());
            }
        }
        folders
    }

    pub fn folders(&self) -> &[PathBuf] {
        &self.folders
    }

    /// Changed Python files reported so far, without waiting.
    pub fn poll(&self) -> Vec<PathBuf> {
        let mut changed = BTreeSet::new();
        while let Ok(result) = self.events.try_recv() {
            collect(result, &mut changed);
        }
        changed.into_iter().collect()
    }

    /// Waits up to `timeout` for changed Python files; empty when nothing changed.
    pub fn wait(&self, timeout: Duration) -> Vec<PathBuf> {
        let mut changed = BTreeSet::new();
        match self.events.recv_timeout(timeout) {
            Ok(result) => collect(result, &mut changed),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        changed.extend(self.poll());
        changed.into_iter().collect()
    }
}

fn collect(result: DebounceEventResult, changed: &mut BTreeSet<PathBuf>) {
    let Ok(events) = result else {
        return;
    };
    for event in events {
        if event.kind.is_access() {
            continue;
        }
        for path in &event.paths {
            if is_python_source(path) {
                changed.insert(path.clone());
            }
        }
    }
}

fn is_python_source(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.extension().is_some_and(|e| e == "py")
        && !name.starts_with(".#") // Emacs lock files
        && !path.components().any(|c| c.as_os_str() == "__pycache__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_saved_python_file_once_and_ignores_others() {
        let dir = tempfile::tempdir().unwrap();
        let watcher = SourceWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        assert!(watcher.wait(Duration::from_millis(100)).is_empty());
        let file = dir.path().join("algo.py");
        // A burst of saves, the last through a temporary file renamed over the original.
        for i in 0..5 {
            std::fs::write(&file, format!("x = {i}\n")).unwrap();
        }
        let temporary = dir.path().join(".algo.py.tmp");
        std::fs::write(&temporary, "x = 9\n").unwrap();
        std::fs::rename(&temporary, &file).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not python").unwrap();
        let mut changed = Vec::new();
        for _ in 0..40 {
            changed.extend(watcher.wait(Duration::from_millis(100)));
            if !changed.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        changed.extend(watcher.poll());
        changed.sort();
        changed.dedup();
        assert_eq!(changed, vec![file]);
    }
}
