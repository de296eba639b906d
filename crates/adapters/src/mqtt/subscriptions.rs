//! What a persistent broker session is subscribed to, remembered in
//! `{state_dir}/mqtt-subscriptions.json`.
//!
//! A broker keeps a persistent session's subscriptions until they are
//! unsubscribed, whatever the client subscribes to when it comes back, and
//! MQTT 3.1.1 has no way to ask which it holds. A topic removed from
//! `topics` (by a reload, or while the gateway was stopped) went on
//! arriving, each message an `unmatched_topic` error, for as long as the
//! session lived. So the adapter writes down the filters it subscribes,
//! per broker and client id (the session's identity: a rename that keeps
//! `client_id` keeps the session, and so its record), and unsubscribes
//! those the config no longer has.
//!
//! Persist, then act: a filter is written down before it is subscribed, so
//! a crash in between cannot leave a subscription nobody remembers; it is
//! crossed out only once the broker's UNSUBACK says it is gone. A record
//! that is missing (a first start, the first start after an upgrade, a
//! damaged file moved aside) unsubscribes nothing: what the session holds
//! is then unknown, and only the broker's own expiry (or a clean session)
//! can clear it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use serde::{Deserialize, Serialize};

/// Filters of one session, ordered: the file reads the same after each
/// save, and a comparison is one walk.
pub(super) type Filters = BTreeSet<String>;

/// Every session the adapters of this gateway hold, on any broker.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Sessions {
    /// `host:port` → client id → the filters subscribed. A session is the
    /// broker's: the same client id on another broker is another one.
    #[serde(default)]
    brokers: BTreeMap<String, BTreeMap<String, Filters>>,
}

impl StateDocument for Sessions {
    const FILE_NAME: &'static str = inventory::MQTT_SUBSCRIPTIONS;
}

/// The MQTT adapters of one gateway share the file, and each replaces it
/// with its own session changed: loaded and saved under this lock, two
/// adapters connecting at once cannot lose each other's record. One
/// gateway per state directory (`gateway.lock`) leaves no other writer.
static FILE: Mutex<()> = Mutex::new(());

/// Why the record of a session could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MemoryError {
    #[error(transparent)]
    State(#[from] JsonStateError),
    /// The blocking task doing the file's work ended without an answer.
    #[error("the task reading or writing {0} ended before it finished")]
    Aborted(&'static str),
}

/// One session's record in the shared file.
#[derive(Clone, Debug)]
pub(super) struct Memory {
    file: JsonStateFile<Sessions>,
    broker: String,
    client_id: String,
}

impl Memory {
    /// Without a state directory (`decode`, tests) nothing is remembered,
    /// and so nothing is ever unsubscribed.
    pub(super) fn new(state_dir: Option<&Path>, broker: String, client_id: String) -> Self {
        Self {
            file: state_dir.map_or_else(JsonStateFile::in_memory, JsonStateFile::in_state_dir),
            broker,
            client_id,
        }
    }

    /// The filters remembered for this session; `None` when there is no
    /// record of it.
    ///
    /// # Errors
    /// The file cannot be read (left in place), or was damaged (moved
    /// aside): either way nothing is known.
    pub(super) async fn recall(&self) -> Result<Option<Filters>, MemoryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.recall_now())
            .await
            .map_err(|_| MemoryError::Aborted(inventory::MQTT_SUBSCRIPTIONS))?
    }

    /// Replaces this session's record with `filters`, or drops it (`None`).
    ///
    /// # Errors
    /// The file cannot be read or written; the previous one stays.
    pub(super) async fn remember(&self, filters: Option<Filters>) -> Result<(), MemoryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.remember_now(filters))
            .await
            .map_err(|_| MemoryError::Aborted(inventory::MQTT_SUBSCRIPTIONS))?
    }

    fn recall_now(&self) -> Result<Option<Filters>, MemoryError> {
        let _only_writer = FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(self.file.load()?.and_then(|mut sessions| {
            sessions
                .brokers
                .get_mut(&self.broker)?
                .remove(&self.client_id)
        }))
    }

    fn remember_now(&self, filters: Option<Filters>) -> Result<(), MemoryError> {
        let _only_writer = FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sessions = match self.file.load() {
            Ok(loaded) => loaded.unwrap_or_default(),
            // Moved aside already, and reported by the `recall` that found
            // it first: what is written now starts the file afresh.
            Err(JsonStateError::Damaged { .. }) => Sessions::default(),
            // It may read next time: overwriting it would lose the other
            // sessions' records.
            Err(e) => return Err(e.into()),
        };
        let before = sessions
            .brokers
            .get(&self.broker)
            .and_then(|clients| clients.get(&self.client_id));
        if before == filters.as_ref() {
            return Ok(());
        }
        match filters {
            Some(filters) => {
                sessions
                    .brokers
                    .entry(self.broker.clone())
                    .or_default()
                    .insert(self.client_id.clone(), filters);
            }
            None => {
                if let Some(clients) = sessions.brokers.get_mut(&self.broker) {
                    clients.remove(&self.client_id);
                    if clients.is_empty() {
                        sessions.brokers.remove(&self.broker);
                    }
                }
            }
        }
        self.file.save(&sessions)?;
        Ok(())
    }
}

/// What a new connection of a persistent session does about what the
/// broker kept.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// To write down before anything is sent, when it is not what is
    /// remembered already: every filter the session may hold once the
    /// SUBSCRIBE is done.
    pub(super) write: Option<Filters>,
    /// The filters the session holds that the config no longer asks for.
    pub(super) unsubscribe: Vec<String>,
}

/// The plan for a connection that wants `wanted`, the broker saying
/// whether it `resumed` the session.
pub(super) fn plan(remembered: Option<&Filters>, wanted: &Filters, resumed: bool) -> Plan {
    // A session the broker did not resume holds nothing: what was
    // remembered of it went with it.
    let held = match remembered {
        Some(held) if resumed => held.clone(),
        _ => Filters::new(),
    };
    // Only filters equal to none wanted: unsubscribing a filter also asked
    // for now would drop its subscription (and the messages the broker
    // queued for it), whatever is subscribed again after it.
    let unsubscribe = held.difference(wanted).cloned().collect();
    let record: Filters = held.union(wanted).cloned().collect();
    Plan {
        write: (remembered != Some(&record)).then_some(record),
        unsubscribe,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(filters: &[&str]) -> Filters {
        filters.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn only_what_the_session_kept_and_the_config_dropped_is_unsubscribed() {
        let wanted = set(&["sensors/data/+/+", "sensors/status/+"]);
        // A first start, or the first after an upgrade: nothing is known,
        // nothing is dropped, and what is subscribed now is written down.
        assert_eq!(
            plan(None, &wanted, true),
            Plan {
                write: Some(wanted.clone()),
                unsubscribe: vec![],
            }
        );
        // The same topics again: nothing to write, nothing to drop.
        assert_eq!(
            plan(Some(&wanted), &wanted, true),
            Plan {
                write: None,
                unsubscribe: vec![],
            }
        );
        // A topic removed: dropped, and remembered until its UNSUBACK.
        let before = set(&["legacy/+/+", "sensors/data/+/+", "sensors/status/+"]);
        assert_eq!(
            plan(Some(&before), &wanted, true),
            Plan {
                write: None,
                unsubscribe: vec!["legacy/+/+".to_string()],
            }
        );
        // A topic added while one is removed: the new one is written down
        // before it is subscribed, the old one kept until it is gone.
        let more = set(&["sensors/data/+/+", "sensors/status/+", "zigbee2mqtt/+"]);
        assert_eq!(
            plan(Some(&before), &more, true),
            Plan {
                write: Some(set(&[
                    "legacy/+/+",
                    "sensors/data/+/+",
                    "sensors/status/+",
                    "zigbee2mqtt/+"
                ])),
                unsubscribe: vec!["legacy/+/+".to_string()],
            }
        );
    }

    #[test]
    fn a_filter_overlapping_a_wanted_one_is_dropped_but_an_equal_one_never() {
        // `sensors/#` covers the wanted `sensors/+/temp`, yet it is its own
        // subscription: unsubscribing it leaves the wanted one.
        let plan = plan(
            Some(&set(&["sensors/#", "sensors/+/temp"])),
            &set(&["sensors/+/temp"]),
            true,
        );
        assert_eq!(plan.unsubscribe, vec!["sensors/#".to_string()]);
    }

    #[test]
    fn a_session_the_broker_did_not_resume_holds_nothing_to_drop() {
        let wanted = set(&["a/+"]);
        assert_eq!(
            plan(Some(&set(&["a/+", "old/+"])), &wanted, false),
            Plan {
                write: Some(wanted.clone()),
                unsubscribe: vec![],
            }
        );
    }

    fn memory(dir: &Path, broker: &str, client_id: &str) -> Memory {
        Memory::new(Some(dir), broker.to_string(), client_id.to_string())
    }

    #[tokio::test]
    async fn sessions_are_kept_apart_by_broker_and_client_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = memory(dir.path(), "127.0.0.1:1883", "edge-gateway-gw-a");
        let b = memory(dir.path(), "127.0.0.1:1883", "edge-gateway-gw-b");
        let elsewhere = memory(dir.path(), "10.0.0.9:1883", "edge-gateway-gw-a");
        assert_eq!(a.recall().await.unwrap(), None);
        // Two adapters connecting at once each keep their record.
        let (ra, rb) = tokio::join!(
            a.remember(Some(set(&["a/+"]))),
            b.remember(Some(set(&["b/+"])))
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(a.recall().await.unwrap(), Some(set(&["a/+"])));
        assert_eq!(b.recall().await.unwrap(), Some(set(&["b/+"])));
        assert_eq!(elsewhere.recall().await.unwrap(), None);
        // A renamed adapter with the same client id finds its session.
        let renamed = memory(dir.path(), "127.0.0.1:1883", "edge-gateway-gw-a");
        assert_eq!(renamed.recall().await.unwrap(), Some(set(&["a/+"])));
        a.remember(None).await.unwrap();
        assert_eq!(a.recall().await.unwrap(), None);
        assert_eq!(b.recall().await.unwrap(), Some(set(&["b/+"])));
    }

    #[tokio::test]
    async fn a_damaged_file_is_moved_aside_and_nothing_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(inventory::MQTT_SUBSCRIPTIONS);
        std::fs::write(&path, b"{\"version\":1,\"brokers\":{\"x\":[").unwrap();
        let a = memory(dir.path(), "127.0.0.1:1883", "c");
        let err = a.recall().await.unwrap_err();
        assert!(
            matches!(err, MemoryError::State(JsonStateError::Damaged { .. })),
            "{err}"
        );
        assert!(dir
            .path()
            .join(format!("{}.damaged", inventory::MQTT_SUBSCRIPTIONS))
            .exists());
        // The next record starts the file afresh.
        a.remember(Some(set(&["a/+"]))).await.unwrap();
        assert_eq!(a.recall().await.unwrap(), Some(set(&["a/+"])));
    }

    #[tokio::test]
    async fn an_unwritable_state_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("missing");
        let a = memory(&gone, "127.0.0.1:1883", "c");
        assert_eq!(a.recall().await.unwrap(), None);
        assert!(a.remember(Some(set(&["a/+"]))).await.is_err());
    }
}
