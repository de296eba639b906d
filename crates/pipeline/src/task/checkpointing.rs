//! The pipeline's checkpoints: started in the background while readings
//! keep flowing, or saved at once at the end, each only once the outputs
//! say the windows it no longer holds are in their outboxes.

use std::time::Duration;

use gateway_core::telemetry::{Counter, LogThrottle};
use tokio::sync::oneshot;
use tracing::warn;

use super::Pipeline;
use crate::durability::checkpoint::CheckpointError;

/// How long a checkpoint waits for the outbox to confirm.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

impl Pipeline {
    /// Starts a checkpoint ([`Durability::begin_save`]); the receiver
    /// reports when it is on disk. `None` when it is already done, or
    /// failed (counted and logged).
    pub(super) async fn start_checkpoint(
        &mut self,
        failures: &Counter,
        throttle: &LogThrottle,
    ) -> Option<oneshot::Receiver<Result<(), CheckpointError>>> {
        // Asked before the snapshot: the answer covers every window emitted
        // so far, which the snapshot no longer holds.
        let reply = match &self.outbox_flush {
            Some(flush) => {
                let (tx, rx) = oneshot::channel();
                if flush.send(tx).await.is_err() {
                    warn_checkpoint(&CheckpointError::NotStored, failures, throttle);
                    return None;
                }
                Some(rx)
            }
            None => None,
        };
        let stored = async move {
            match reply {
                Some(rx) => matches!(tokio::time::timeout(FLUSH_WAIT, rx).await, Ok(Ok(true))),
                None => true,
            }
        };
        let started = match self.durability.begin_save(&self.aggregator, stored) {
            Ok(rx) => rx,
            Err(e) => {
                warn_checkpoint(&e, failures, throttle);
                None
            }
        };
        self.tell_sinks_the_journal_epoch().await;
        started
    }

    /// Every reading handed to the sinks from here on is journaled in the
    /// current epoch (a checkpoint may just have started the next one).
    pub(super) async fn tell_sinks_the_journal_epoch(&mut self) {
        if let Some(epoch) = self.durability.journal_epoch() {
            self.outputs.journal_epoch(epoch).await;
        }
    }

    pub(super) async fn save_checkpoint(&mut self) -> Result<(), String> {
        if let Some(flush) = &self.outbox_flush {
            let (tx, rx) = oneshot::channel();
            let stored = flush.send(tx).await.is_ok()
                && matches!(tokio::time::timeout(FLUSH_WAIT, rx).await, Ok(Ok(true)));
            if !stored {
                return Err("the outbox has not stored the closed windows yet".into());
            }
        }
        let saved = self
            .durability
            .save(&self.aggregator)
            .map_err(|e| e.to_string());
        self.tell_sinks_the_journal_epoch().await;
        saved
    }
}

pub(super) fn warn_checkpoint(e: &CheckpointError, failures: &Counter, throttle: &LogThrottle) {
    failures.inc();
    if let Some(suppressed) = throttle.allow("checkpoint") {
        warn!(error = %e, suppressed, "Cannot save the open windows; will retry.");
    }
}
