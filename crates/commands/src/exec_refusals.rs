//! A refusal made before its command took an allowance (expired, ahead of
//! the clock, over the rate): journaled so that it is final, within the
//! bounds that keep a flood of them from growing the journal.

use gateway_core::command::Command;
use tracing::warn;

use super::{Executor, REFUSALS_REMEMBERED};
use crate::age::Made;
use crate::journal::{Recorded, Sync, FAR_AHEAD_REMEMBERED};
use crate::COMMANDS_REFUSALS_UNREMEMBERED;

impl Executor {
    /// Journals the refusal without a sync of its own, and sends it: while
    /// the journal holds fewer than [`REFUSALS_REMEMBERED`] ids, or, for a
    /// command made further ahead of the clock than any id is kept, among
    /// the [`FAR_AHEAD_REMEMBERED`] nearest such refusals. Beyond, it gets
    /// no line: its device's flood mark keeps it final where a mark can,
    /// else its `detail` says it is not.
    pub(super) async fn conclude_refusal(
        &mut self,
        command: &Command,
        made: Made,
        mut recorded: Recorded,
    ) {
        let now = self.clock.now();
        let Some(journal) = self.journal.as_ref() else {
            self.send(&command.id, &recorded).await;
            return;
        };
        let far_ahead = made.ts().filter(|ts| journal.is_far_ahead(*ts, now));
        let remembered = match far_ahead {
            // Its id would be kept until its own `ts` is old: years, for a
            // forged one. A flood of those stayed in the journal until then,
            // and kept it full for every other refusal.
            Some(ts) => journal.has_room_ahead(ts),
            None => journal.len_within_keep() < REFUSALS_REMEMBERED,
        };
        if remembered {
            self.finish(&command.id, made.ts(), recorded, Sync::WithTheNext)
                .await;
            return;
        }
        self.telemetry
            .counter(COMMANDS_REFUSALS_UNREMEMBERED, &[])
            .inc();
        if far_ahead.is_some() {
            if let Some(suppressed) = self.log.allow("refusals-far-ahead") {
                warn!(suppressed, remembered = FAR_AHEAD_REMEMBERED, "The command journal holds as many refusals of commands made far ahead of the clock as it keeps: this one, made further ahead, is sent but not journaled, so the same id sent again is judged again (a flood of forged ts?).");
            }
            recorded.detail = format!(
                "{}; not journaled ({FAR_AHEAD_REMEMBERED} refusals of commands made nearer ahead held), so this id sent again is judged again: send a new id",
                recorded.detail
            );
        } else if !self.mark_flood(command, made) {
            if let Some(suppressed) = self.log.allow("refusals-unremembered") {
                warn!(suppressed, remembered = REFUSALS_REMEMBERED, "The command journal holds as many ids as it may: this refusal of a command without ts is sent but not journaled, so the same id sent again is judged again (a flood of refused commands?).");
            }
            // The sender must know this refusal is not final, so as
            // not to send the id again expecting the same answer.
            recorded.detail = format!(
                "{}; not journaled (a flood: {REFUSALS_REMEMBERED} ids held), so this id sent again is judged again: send a new id",
                recorded.detail
            );
        }
        self.send(&command.id, &recorded).await;
    }

    /// Makes a refusal without a journal line final all the same: raises
    /// its device's flood mark past its `ts`. `false` when it cannot: no
    /// `ts`, or a device no target serves, whose commands are refused
    /// whatever they are (and whose number a sender can make endless).
    fn mark_flood(&mut self, command: &Command, made: Made) -> bool {
        let Some(ts) = made.ts() else {
            return false;
        };
        if self.targets.find(&command.device).is_none() {
            return false;
        }
        let now = self.clock.now();
        let Some(journal) = self.journal.as_mut() else {
            return false;
        };
        match journal.refused_unremembered(command.device.as_str(), ts, now) {
            Ok(false) => false,
            Ok(true) => {
                if let Some(suppressed) = self.log.allow("refusals-marked") {
                    warn!(suppressed, remembered = REFUSALS_REMEMBERED, device = %command.device.as_str(), "The command journal holds as many ids as it may (a flood of refused commands?): refusals for this device are no longer journaled one by one; its commands made no later than the newest refused are refused too, so none of them can run later.");
                }
                true
            }
            Err(e) => {
                if let Some(suppressed) = self.log.allow("journal-mark") {
                    warn!(error = %e, suppressed, "Cannot journal a device's flood mark; its refusal is sent as not final.");
                }
                false
            }
        }
    }
}
