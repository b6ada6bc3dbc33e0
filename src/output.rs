//! The CLI's standard output and standard error, without panics.
//!
//! `println!` panics when a write fails: `switchyard id > /dev/full`
//! (`ENOSPC`), or `switchyard id | head -1` once `head` has exited
//! (`EPIPE`; Rust ignores `SIGPIPE`, so the write returns the error). Every
//! line the CLI prints goes through [`line`] instead, which returns an
//! [`OutputError`]; `main` turns it into the CLI's promise:
//!
//! * the reader went away (`EPIPE`): exit quietly, status 0 — as `head`
//!   expects of the command before it;
//! * any other write error: one line on standard error (`error: writing to
//!   standard output: No space left on device (os error 28)`), status 1.
//!
//! A running node (`switchyard run`) is not stopped by its standard output:
//! its startup lines go through [`notice`], which drops them if the reader
//! is gone and logs any other failure once. Standard error is written with
//! [`error_line`], which ignores failures (there is nowhere left to report
//! them).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// A write to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard output: {0}")]
pub struct OutputError(io::Error);

impl OutputError {
    /// Whether the reader went away (`EPIPE`): the CLI then exits quietly.
    pub fn is_broken_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes one line to standard output and flushes it, so a failure shows
/// here and not at exit.
pub fn line(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(OutputError)
}

/// Writes `text` (several lines at once) to standard output and flushes it.
pub fn text(text: &str) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(OutputError)
}

/// Flushes standard output (what is left at exit).
pub fn flush() -> Result<(), OutputError> {
    io::stdout().flush().map_err(OutputError)
}

/// Whether [`notice`] has already logged a failure.
static NOTICE_FAILED: AtomicBool = AtomicBool::new(false);

/// A line for a long-running command (`run`): printed if standard output
/// takes it. A reader that went away is ignored; another failure is logged
/// once, at WARN, and the node goes on.
pub fn notice(args: fmt::Arguments<'_>) {
    if let Err(error) = line(args)
        && !error.is_broken_pipe()
        && !NOTICE_FAILED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(%error, "standard output fails; the node goes on without it");
    }
}

/// Writes one line to standard error, ignoring a failure.
pub fn error_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Whether `error` (or any error in its chain) is a write to standard
/// output whose reader went away.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<OutputError>())
        .any(OutputError::is_broken_pipe)
}

/// Prints a line to standard output, returning an [`OutputError`] instead
/// of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
