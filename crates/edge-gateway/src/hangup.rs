//! SIGHUP from the start of `run` until the reload handler is listening.
//!
//! A restart in place (`exec` of itself) resets every handled signal to
//! its default action, which for SIGHUP is to terminate; the handler is
//! installed again only once the new start has loaded its configuration
//! and locked the state directory. A `systemctl reload` (or a fleet
//! script sending SIGHUP) that landed in that window killed the gateway.
//! A blocked signal survives `exec`, mask and pending state alike, so
//! SIGHUP is blocked from the start of `run` and before every `exec`, and
//! unblocked once the reload handler is installed: a SIGHUP received
//! meanwhile is then taken as a reload, never fatal. No unsafe code is
//! needed (setting `SIG_IGN` would need it).
//!
//! Threads inherit the mask of the thread that starts them, so every
//! thread of the gateway keeps SIGHUP blocked but the one that unblocks it
//! (the main thread, which runs the run loop): the kernel delivers a
//! process-wide SIGHUP to that one.

use nix::sys::signal::{SigSet, Signal};

fn sighup() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set
}

/// Holds SIGHUP on this thread (and the threads it starts from now on):
/// one that arrives stays pending, harmlessly, until [`release`].
pub fn hold() {
    if let Err(e) = sighup().thread_block() {
        tracing::warn!(error = %e, "Cannot hold SIGHUP back: one received while the gateway starts may stop it.");
    }
}

/// Lets SIGHUP through on this thread again, once the reload handler is
/// installed: a SIGHUP held meanwhile is delivered now.
pub fn release() {
    if let Err(e) = sighup().thread_unblock() {
        tracing::warn!(error = %e, "Cannot let SIGHUP through again: reloads by SIGHUP will not happen.");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use nix::sys::pthread::{pthread_kill, pthread_self};
    use tokio::signal::unix::{signal, SignalKind};

    use super::*;

    /// A SIGHUP before the handler exists is held, not fatal, and taken
    /// once the handler is there. Signalled to this thread alone, so the
    /// other tests' threads, which do not hold it, cannot receive it.
    #[test]
    fn a_sighup_before_the_handler_is_held_and_taken_once_released() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        hold();
        pthread_kill(pthread_self(), Signal::SIGHUP).unwrap();
        // Still alive: the default action (terminate) did not run.
        assert!(SigSet::thread_get_mask().unwrap().contains(Signal::SIGHUP));
        rt.block_on(async {
            let mut hup = signal(SignalKind::hangup()).unwrap();
            release();
            tokio::time::timeout(Duration::from_secs(10), hup.recv())
                .await
                .expect("the held SIGHUP arrives once released");
        });
    }
}
