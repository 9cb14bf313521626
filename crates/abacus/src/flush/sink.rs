use crate::error::SinkError;
use crate::snapshot::Snapshot;

/// A destination of flushed windows.
///
/// `export` is called from the flusher thread (or a manual flush) with each delta window in
/// order; an error is logged and counted, and the next window is still delivered.
pub trait Sink: Send {
    /// A short name for logs.
    fn name(&self) -> &'static str {
        "sink"
    }

    /// Delivers one window.
    ///
    /// # Errors
    /// Whatever the destination reports; the flusher logs and counts it.
    fn export(&mut self, window: &Snapshot) -> Result<(), SinkError>;

    /// Pushes buffered output.
    ///
    /// # Errors
    /// I/O errors of the destination.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once after the last window.
    ///
    /// # Errors
    /// I/O errors of the destination.
    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
