//! What the webhook logs, captured on the test's thread: the admission line is the fields of its
//! span, so a test that asserts "no value in the log" has to look at what a subscriber wrote.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The text log lines written on this thread while the guard from [`CapturedLog::install`]
/// lives (without colours, the fields of each line's spans included).
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = CapturedLog::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far, emptying the capture.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8(bytes).expect("log lines are UTF-8")
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
