//! The data directory's lock: one switchboard at a time per directory. Two
//! servers writing the same database would each give the same ids, so the
//! second one must not start. The lock is an exclusive `flock` on a file in
//! the directory (std's [`File::try_lock`]), released by the kernel when the
//! process ends, however it ends: no stale lock to clean up after a crash.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::describe_io;
use crate::log::LogError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "switchboard.lock";

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` without waiting.
    ///
    /// # Errors
    /// [`LogError::Open`] naming `dir` when another switchboard holds it, or
    /// when the lock file cannot be created there.
    pub fn acquire(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LOCK_FILE);
        let open_error = |reason: String| LogError::Open {
            path: dir.display().to_string(),
            reason,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| {
                open_error(format!(
                    "cannot create the lock file {}: {}",
                    path.display(),
                    describe_io(&err)
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(open_error(format!(
                "the directory is in use by another switchboard (it holds the lock on {}); \
                 stop it or give another directory",
                path.display()
            ))),
            Err(TryLockError::Error(err)) => Err(open_error(format!(
                "cannot lock {}: {}",
                path.display(),
                describe_io(&err)
            ))),
        }
    }
}
