//! Fault hook for the soak: a wall clock that steps when a file says so,
//! as NTP steps a Raspberry Pi's clock that ran ahead. Not a setting: with
//! [`CLOCK_STEP_FILE_ENV`] unset (always, in production) the gateway runs
//! on the system clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_core::{Clock, SystemClock, Timestamp};

/// A file holding milliseconds to add to the system clock (`-600000`: ten
/// minutes back); re-read every `REREAD`.
pub const CLOCK_STEP_FILE_ENV: &str = "EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE";

const REREAD: Duration = Duration::from_millis(100);

struct FileSteppedClock {
    file: PathBuf,
    step_ms: AtomicI64,
    read_at: Mutex<Option<Instant>>,
}

impl Clock for FileSteppedClock {
    fn now(&self) -> Timestamp {
        let mut read_at = self.read_at.lock().unwrap_or_else(|p| p.into_inner());
        if read_at.is_none_or(|at| at.elapsed() >= REREAD) {
            *read_at = Some(Instant::now());
            if let Some(ms) = std::fs::read_to_string(&self.file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                self.step_ms.store(ms, Ordering::Relaxed);
            }
        }
        Timestamp::now().saturating_add_millis(self.step_ms.load(Ordering::Relaxed))
    }
}

/// The gateway's wall clock: the system's, or the stepped one of the
/// fault hook.
pub fn wall_clock() -> Arc<dyn Clock> {
    match std::env::var_os(CLOCK_STEP_FILE_ENV) {
        Some(file) => Arc::new(FileSteppedClock {
            file: file.into(),
            step_ms: AtomicI64::new(0),
            read_at: Mutex::new(None),
        }),
        None => Arc::new(SystemClock),
    }
}
