//! The apply journal: one small document, replaced atomically at every
//! step, that says which pushed layer runs, which one is being tried, the
//! highest serial processed, and the state last reported. Whatever step a
//! kill -9 lands on, the next start reads one of these and runs either
//! the old layer or the new one, whole:
//!
//! | journal says                  | the next start                          |
//! |-------------------------------|-----------------------------------------|
//! | no candidate                  | runs `applied`                          |
//! | candidate `staged`            | marks it `checking`, runs it, health gate |
//! | candidate `checking`          | it was being judged when the process died: rolls back, runs `applied` |
//!
//! A candidate gets one start: a configuration that kills the gateway
//! while it is being judged is rolled back, never retried in a loop.
//! Judging a message ([`Journal::judge`]) is pure; the gateway validates
//! a trusted one against its files, then stages, commits or rolls back.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::message::{DesiredMessage, Untrusted};
use crate::report::{Report, Status};

/// A pushed configuration, as the journal names it; its layer is the file
/// `<sha256>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub version: String,
    pub serial: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Pushed {
    pub fn of(message: &DesiredMessage) -> Self {
        Self {
            version: message.version.clone(),
            serial: message.serial,
            sha256: message.digest(),
        }
    }
}

/// How far a candidate got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Its layer is written and the journal names it; the running gateway
    /// is about to stop and start again on it.
    Staged,
    /// A gateway started on it and is judging its health.
    Checking,
}

/// The configuration being tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    #[serde(flatten)]
    pub pushed: Pushed,
    pub step: Step,
}

/// The journal document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The last validly signed push processed (applied, rejected or rolled
    /// back): its serial is the mark a new push must exceed.
    #[serde(default)]
    pub processed: Option<Pushed>,
    /// The pushed layer the gateway runs; `None`: the local files alone.
    #[serde(default)]
    pub applied: Option<Pushed>,
    #[serde(default)]
    pub candidate: Option<Candidate>,
    /// The state last reported (re-published at every start).
    #[serde(default)]
    pub report: Option<Report>,
    /// A mark recovered from elsewhere than `processed` (the separate mark
    /// file, when this journal was damaged and set aside): the push it
    /// named is gone with the damaged journal, but its serial must stay
    /// refused, or every older signed push recorded off the broker could
    /// be replayed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mark_floor: u64,
    /// No record of the mark could be read (the journal and the mark file
    /// both damaged): no serial can be proven new, so every push is
    /// refused (`mark_lost`) until an operator resets the directory.
    /// Journaled, so the refusal outlives the damaged files being cleared
    /// away by anything but that deliberate reset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_lost: bool,
    /// The push the separate mark file names when this journal does not
    /// know it: a power cut came between writing the mark file and the
    /// journal, while that push was being staged or refused. Its serial is
    /// the mark it set itself, so its retained copy is judged again rather
    /// than refused as `stale`; an older push, or another one with that
    /// serial, still is. Found again from the mark file at every start
    /// until the journal names it, so never saved here.
    #[serde(skip)]
    pub unjournaled: Option<Pushed>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The reason a push is refused while the mark is lost.
pub const MARK_LOST: &str = "mark_lost";

/// What the operator is told while the mark is lost.
pub const MARK_LOST_DETAIL: &str = "the replay mark (the highest serial processed) could not be read from state_dir/remote-config/journal.json nor mark.json (damaged or unreadable): no push can be proven newer than the ones recorded off the broker, so every push is refused. To recover, on the gateway: check the disk, stop the gateway, delete state_dir/remote-config/ (the pushed configuration goes with it: the local files run), make sure the retained push on the broker is the one you want (push it again), and start the gateway";

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// Empty (a retained message being cleared), or the message processed
    /// last once more (the broker's retained copy at every reconnect):
    /// nothing changes and nothing is reported.
    Same,
    /// Refused: report it. `signed`: validly signed, so its serial is
    /// processed (a stale one is not: the mark is already above it).
    Refuse {
        pushed: Option<Pushed>,
        reason: &'static str,
        detail: String,
        signed: bool,
    },
    /// Trusted and newer than anything processed: validate it against the
    /// local files, then stage it.
    Take(DesiredMessage),
}

/// How the gateway starts, as the journal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Run this layer (none: the local files alone).
    Run(Option<Pushed>),
    /// Run the candidate and judge its health; `applied` is what a
    /// rollback goes back to.
    Check(Pushed),
}

impl Journal {
    /// The serial a new push must exceed.
    pub fn mark(&self) -> u64 {
        self.processed
            .as_ref()
            .map_or(0, |p| p.serial)
            .max(self.mark_floor)
    }

    /// The start found this journal damaged or unreadable (`why`) and
    /// began from an empty one: `mark` is the highest serial a readable
    /// source still proves (`None`: none could be read, and every push is
    /// refused from now on). The pushed layer the damaged journal named is
    /// no longer applied; the report says so and how to recover.
    /// `processed`: the push that set the recovered mark, when known, so
    /// the broker's retained copy of it is recognised ([`Judged::Same`])
    /// rather than refused as `stale`.
    pub fn recovered(&mut self, mark: Option<u64>, processed: Option<Pushed>, why: &str, ts: &str) {
        let detail = match mark {
            Some(mark) => {
                self.mark_floor = self.mark_floor.max(mark);
                if processed.as_ref().is_some_and(|p| p.serial <= mark) {
                    self.processed = processed;
                }
                format!("{why}; the local files run. The replay mark {mark} was recovered from state_dir/remote-config/mark.json: a push must still be numbered above it")
            }
            None => {
                self.mark_lost = true;
                format!("{why}; the local files run. {MARK_LOST_DETAIL}")
            }
        };
        let reason = if mark.is_some() { "layer" } else { MARK_LOST };
        self.report = Some(self.report_of(None, Status::RolledBack, reason, &detail, ts));
    }

    /// Judges a message received on the config topic of `gateway_id`.
    pub fn judge(&self, payload: &[u8], keys: &[VerifyingKey], gateway_id: &str) -> Judged {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Judged::Same;
        }
        let message = match DesiredMessage::parse(payload) {
            Ok(m) => m,
            Err(e) => return untrusted(None, &e),
        };
        let pushed = Pushed::of(&message);
        if let Err(e) = message.verify(keys, gateway_id) {
            return untrusted(Some(pushed), &e);
        }
        if self.processed.as_ref() == Some(&pushed) {
            return Judged::Same;
        }
        if self.mark_lost {
            return Judged::Refuse {
                detail: MARK_LOST_DETAIL.to_string(),
                pushed: Some(pushed),
                reason: MARK_LOST,
                signed: false,
            };
        }
        if self.unjournaled.as_ref() == Some(&pushed) {
            return Judged::Take(message);
        }
        if pushed.serial <= self.mark() {
            return Judged::Refuse {
                detail: format!(
                    "serial {} is not above {}, the highest this gateway has processed: an old push replayed is not applied again; to go back, sign the old configuration again with a new serial",
                    pushed.serial,
                    self.mark()
                ),
                pushed: Some(pushed),
                reason: "stale",
                signed: false,
            };
        }
        Judged::Take(message)
    }

    /// Records a refusal and the report that says so.
    pub fn refuse(
        &mut self,
        pushed: Option<Pushed>,
        reason: &str,
        detail: &str,
        signed: bool,
        ts: &str,
    ) {
        if signed {
            self.processed.clone_from(&pushed);
        }
        self.report = Some(self.report_of(pushed.as_ref(), Status::Rejected, reason, detail, ts));
    }

    /// The candidate's layer is on disk: name it, and report `applying`.
    pub fn stage(&mut self, pushed: Pushed, ts: &str) {
        self.processed = Some(pushed.clone());
        self.report = Some(self.report_of(Some(&pushed), Status::Applying, "", "", ts));
        self.candidate = Some(Candidate {
            pushed,
            step: Step::Staged,
        });
    }

    /// At start: what to run. A `staged` candidate becomes `checking` (the
    /// caller saves that before starting on it); one already `checking`
    /// is rolled back.
    pub fn boot(&mut self, ts: &str) -> Boot {
        match self.candidate.clone() {
            None => Boot::Run(self.applied.clone()),
            Some(Candidate {
                pushed,
                step: Step::Staged,
            }) => {
                if let Some(c) = &mut self.candidate {
                    c.step = Step::Checking;
                }
                Boot::Check(pushed)
            }
            Some(Candidate {
                step: Step::Checking,
                ..
            }) => {
                self.roll_back(
                    "interrupted",
                    "the gateway stopped while the configuration's health was being judged",
                    ts,
                );
                Boot::Run(self.applied.clone())
            }
        }
    }

    /// The gateway stops cleanly while judging the candidate: the next
    /// start judges it again (a crash leaves `checking`, and rolls back).
    pub fn restage(&mut self) {
        if let Some(c) = &mut self.candidate {
            c.step = Step::Staged;
        }
    }

    /// The candidate is healthy: it is the applied layer now.
    pub fn commit(&mut self, ts: &str) {
        if let Some(c) = self.candidate.take() {
            self.applied = Some(c.pushed);
        }
        let applied = self.applied.clone();
        self.report = Some(self.report_of(applied.as_ref(), Status::Applied, "", "", ts));
    }

    /// The candidate failed `reason`: the applied layer stays.
    pub fn roll_back(&mut self, reason: &str, detail: &str, ts: &str) {
        let tried = self.candidate.take().map(|c| c.pushed);
        self.report = Some(self.report_of(tried.as_ref(), Status::RolledBack, reason, detail, ts));
    }

    /// The applied layer can no longer be used (its file is damaged, or it
    /// no longer validates over the local files): the local files alone
    /// run, and the report says so.
    pub fn drop_applied(&mut self, reason: &str, detail: &str, ts: &str) {
        let dropped = self.applied.take();
        self.report =
            Some(self.report_of(dropped.as_ref(), Status::RolledBack, reason, detail, ts));
    }

    fn report_of(
        &self,
        desired: Option<&Pushed>,
        status: Status,
        reason: &str,
        detail: &str,
        ts: &str,
    ) -> Report {
        Report {
            desired: desired.map(|p| p.version.clone()),
            serial: desired.map(|p| p.serial),
            sha256: desired.map(|p| p.sha256.clone()),
            applied: self.applied.as_ref().map(|p| p.version.clone()),
            applied_serial: self.applied.as_ref().map(|p| p.serial),
            applied_sha256: self.applied.as_ref().map(|p| p.sha256.clone()),
            status,
            reason: reason.to_string(),
            detail: detail.to_string(),
            ts: ts.to_string(),
            highest_serial: self.mark(),
        }
    }
}

/// The most of an untrusted message's own words (its version label, its
/// digest) that its refusal repeats. Whoever can publish on the broker
/// writes them, up to the 1 MiB a message may have: repeated whole, a
/// flood of forgeries became a megabyte report a second in the outbox on
/// flash, the retained state, a log line and a `/metrics` label.
pub const MAX_UNTRUSTED_LABEL: usize = 128;

/// The most of a refusal's detail about an untrusted message (a parse
/// error quotes the offending value).
pub const MAX_UNTRUSTED_DETAIL: usize = 512;

/// `text` cut to at most `max` bytes (on a character boundary), marked
/// with an ellipsis when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn untrusted(pushed: Option<Pushed>, e: &Untrusted) -> Judged {
    Judged::Refuse {
        pushed: pushed.map(|p| Pushed {
            version: bounded(&p.version, MAX_UNTRUSTED_LABEL),
            serial: p.serial,
            sha256: bounded(&p.sha256, MAX_UNTRUSTED_LABEL),
        }),
        reason: e.reason(),
        detail: bounded(&e.to_string(), MAX_UNTRUSTED_DETAIL),
        signed: false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn push(serial: u64, version: &str) -> Vec<u8> {
        DesiredMessage::signed(&key(), serial, version, &format!("# {version}\n"), None)
            .to_json()
            .into_bytes()
    }

    fn take(j: &Journal, payload: &[u8]) -> Pushed {
        match j.judge(payload, &[key().verifying_key()], "gw-1") {
            Judged::Take(m) => Pushed::of(&m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_apply_commits_and_the_same_message_again_is_nothing() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let v1 = take(&j, &push(1, "v1"));
        j.stage(v1.clone(), "t1");
        assert_eq!(j.report.as_ref().unwrap().status, Status::Applying);
        assert_eq!(j.boot("t2"), Boot::Check(v1.clone()));
        assert_eq!(j.candidate.as_ref().unwrap().step, Step::Checking);
        j.commit("t3");
        let r = j.report.clone().unwrap();
        assert_eq!(
            (r.status, r.applied.as_deref()),
            (Status::Applied, Some("v1"))
        );
        assert_eq!(j.judge(&push(1, "v1"), &keys, "gw-1"), Judged::Same);
        assert_eq!(j.boot("t4"), Boot::Run(Some(v1)));
    }

    /// The mark file names push 5, the journal (cut short by a power cut)
    /// only push 3: push 5 itself is judged again; an older one, or another
    /// push numbered 5, is still stale.
    #[test]
    fn the_push_the_mark_file_names_and_the_journal_does_not_is_judged_again() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let v3 = take(&j, &push(3, "v3"));
        j.stage(v3, "t");
        j.boot("t");
        j.commit("t");
        let v5 = Pushed::of(&DesiredMessage::parse(&push(5, "v5")).unwrap());
        j.mark_floor = 5;
        let stale = |j: &Journal, payload: &[u8]| {
            matches!(
                j.judge(payload, &keys, "gw-1"),
                Judged::Refuse {
                    reason: "stale",
                    ..
                }
            )
        };
        assert!(stale(&j, &push(5, "v5")), "unknown to the journal: refused");
        j.unjournaled = Some(v5.clone());
        assert_eq!(take(&j, &push(5, "v5")), v5);
        assert!(stale(&j, &push(5, "v5b")), "another push at its serial");
        assert!(stale(&j, &push(4, "v4")));
        j.stage(v5, "t");
        assert_eq!(j.judge(&push(5, "v5"), &keys, "gw-1"), Judged::Same);
    }

    #[test]
    fn a_replayed_older_push_is_stale_and_a_forged_one_moves_no_mark() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let v2 = take(&j, &push(2, "v2"));
        j.stage(v2, "t");
        j.boot("t");
        j.commit("t");
        match j.judge(&push(1, "v1"), &keys, "gw-1") {
            Judged::Refuse {
                reason: "stale",
                signed: false,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        // Same serial, other content: not above the mark either.
        assert!(matches!(
            j.judge(&push(2, "v2b"), &keys, "gw-1"),
            Judged::Refuse {
                reason: "stale",
                ..
            }
        ));
        let forged =
            DesiredMessage::signed(&SigningKey::from_bytes(&[1; 32]), 1 << 63, "evil", "", None);
        let Judged::Refuse {
            pushed,
            reason,
            detail,
            signed,
        } = j.judge(forged.to_json().as_bytes(), &keys, "gw-1")
        else {
            panic!()
        };
        assert_eq!((reason, signed), ("signature", false));
        j.refuse(pushed, reason, &detail, signed, "t");
        assert_eq!(j.mark(), 2, "a forged serial moves nothing");
        assert_eq!(j.report.as_ref().unwrap().highest_serial, 2);
        assert_eq!(j.report.as_ref().unwrap().applied.as_deref(), Some("v2"));
        take(&j, &push(3, "v3"));
    }

    #[test]
    fn a_rejected_signed_push_is_processed_and_not_retried() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let v1 = take(&j, &push(1, "v1"));
        j.refuse(Some(v1), "schema", "adapter[0].port: bad", true, "t");
        assert_eq!(j.judge(&push(1, "v1"), &keys, "gw-1"), Judged::Same);
        assert_eq!(j.report.as_ref().unwrap().status, Status::Rejected);
        assert_eq!(j.report.as_ref().unwrap().applied, None);
    }

    #[test]
    fn a_kill_while_checking_rolls_back_once_and_never_loops() {
        let mut j = Journal::default();
        let v1 = take(&j, &push(1, "v1"));
        j.stage(v1.clone(), "t");
        j.boot("t");
        j.commit("t");
        let v2 = take(&j, &push(2, "v2"));
        j.stage(v2.clone(), "t");
        assert_eq!(j.boot("t"), Boot::Check(v2.clone()));
        // Stopped cleanly while checking: judged again at the next start.
        j.restage();
        assert_eq!(j.boot("t"), Boot::Check(v2));
        // Killed while checking: the next start runs v1.
        assert_eq!(j.boot("t"), Boot::Run(Some(v1.clone())));
        let r = j.report.clone().unwrap();
        assert_eq!(r.status, Status::RolledBack);
        assert_eq!(r.reason, "interrupted");
        assert_eq!(
            (r.desired.as_deref(), r.applied.as_deref()),
            (Some("v2"), Some("v1"))
        );
        assert_eq!(j.boot("t"), Boot::Run(Some(v1)));
    }

    /// Whoever can publish on the broker writes a forged message's label:
    /// its refusal (reported, logged, shown on `/metrics`) repeats a
    /// bounded part of it, not the megabyte it may have.
    #[test]
    fn a_forged_push_with_a_huge_label_is_refused_with_a_bounded_report() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let huge = "é".repeat(300_000);
        let forged = DesiredMessage {
            sha256: "f".repeat(200_000),
            ..DesiredMessage::signed(&SigningKey::from_bytes(&[1; 32]), 9, &huge, "", None)
        };
        let Judged::Refuse {
            pushed,
            reason,
            detail,
            signed,
        } = j.judge(forged.to_json().as_bytes(), &keys, "gw-1")
        else {
            panic!()
        };
        assert_eq!(reason, "signature");
        let p = pushed.clone().unwrap();
        assert!(
            p.version.len() <= MAX_UNTRUSTED_LABEL + 3,
            "{}",
            p.version.len()
        );
        assert!(p.version.starts_with("éé") && p.version.ends_with('…'));
        assert!(p.sha256.len() <= MAX_UNTRUSTED_LABEL + 3);
        assert_eq!(p.serial, 9);
        j.refuse(pushed, reason, &detail, signed, "t");
        let report = serde_json::to_string(j.report.as_ref().unwrap()).unwrap();
        assert!(report.len() < 2048, "{} bytes reported", report.len());
        // A parse error quotes the value it choked on.
        let damaged = format!(
            r#"{{"version":"v","serial":"{}","sha256":"","config":""}}"#,
            "9".repeat(500_000)
        );
        let Judged::Refuse { detail, reason, .. } = j.judge(damaged.as_bytes(), &keys, "gw-1")
        else {
            panic!()
        };
        assert_eq!(reason, "format");
        assert!(detail.len() <= MAX_UNTRUSTED_DETAIL + 3, "{}", detail.len());
        // A short label is told as it is.
        let small = DesiredMessage::signed(&SigningKey::from_bytes(&[1; 32]), 9, "v9", "", None);
        let Judged::Refuse { pushed, .. } = j.judge(small.to_json().as_bytes(), &keys, "gw-1")
        else {
            panic!()
        };
        assert_eq!(pushed.unwrap().version, "v9");
    }

    /// A damaged journal is started afresh: the mark recovered from the
    /// mark file still refuses every older push recorded off the broker.
    #[test]
    fn a_mark_recovered_after_the_journal_was_lost_still_refuses_a_replay() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        let v5 = take(&j, &push(5, "v5"));
        j.recovered(Some(5), Some(v5), "journal.json is damaged", "t");
        // The broker's retained copy of the push that set the mark.
        assert_eq!(j.judge(&push(5, "v5"), &keys, "gw-1"), Judged::Same);
        assert_eq!(j.mark(), 5);
        for old in [1, 4] {
            assert!(
                matches!(
                    j.judge(&push(old, "old"), &keys, "gw-1"),
                    Judged::Refuse {
                        reason: "stale",
                        ..
                    }
                ),
                "serial {old}"
            );
        }
        let r = j.report.clone().unwrap();
        assert_eq!((r.status, r.reason.as_str()), (Status::RolledBack, "layer"));
        assert_eq!(r.highest_serial, 5);
        assert!(r.detail.contains("mark.json"), "{}", r.detail);
        let v6 = take(&j, &push(6, "v6"));
        j.stage(v6, "t");
        assert_eq!(j.mark(), 6);
        // A floor over the journal's own mark holds too.
        j.mark_floor = 9;
        assert!(matches!(
            j.judge(&push(8, "v8"), &keys, "gw-1"),
            Judged::Refuse {
                reason: "stale",
                ..
            }
        ));
    }

    /// Nothing readable proves the mark: nothing can be proven newer
    /// than a recorded push, so every push is refused, and the refusal
    /// is journaled.
    #[test]
    fn with_no_readable_mark_every_push_is_refused_and_says_how_to_recover() {
        let keys = [key().verifying_key()];
        let mut j = Journal::default();
        j.recovered(None, None, "journal.json is damaged", "t");
        for serial in [1, 1 << 40] {
            let Judged::Refuse {
                reason,
                detail,
                signed,
                ..
            } = j.judge(&push(serial, "v"), &keys, "gw-1")
            else {
                panic!("serial {serial} taken")
            };
            assert_eq!((reason, signed), (MARK_LOST, false));
            assert!(
                detail.contains("delete state_dir/remote-config/"),
                "{detail}"
            );
        }
        let r = j.report.clone().unwrap();
        assert_eq!(r.reason, MARK_LOST);
        let text = serde_json::to_string(&j).unwrap();
        let back: Journal = serde_json::from_str(&text).unwrap();
        assert!(back.mark_lost);
        assert_eq!(back, j);
        // A journal written before these fields reads as before.
        let old: Journal =
            serde_json::from_str(r#"{"processed":{"version":"v","serial":3,"sha256":"ab"}}"#)
                .unwrap();
        assert_eq!((old.mark(), old.mark_lost), (3, false));
    }

    #[test]
    fn the_journal_reads_back_what_it_wrote() {
        let mut j = Journal::default();
        let v1 = take(&j, &push(1, "v1"));
        j.stage(v1, "2026-11-27T10:00:00Z");
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
    }
}
