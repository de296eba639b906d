//! The last accepted frame counter of each device, on disk.
//!
//! Replay protection is only as good as its memory: a gateway that forgot
//! the counters at restart would accept every recorded frame again. So each
//! accepted uplink's counter is written to `{state_dir}/lorawan-fcnt.json`
//! *before* its readings leave the adapter (FAULTS §3.4: persist, then act),
//! atomically: a temporary file, fsync, rename, directory fsync, as the
//! window checkpoint does. A power cut leaves the old file or the new one.
//! Uplinks that come due together are staged and written once (the fsyncs
//! cost ~10 ms here, the rest of an uplink ~2 µs).
//!
//! If the file cannot be written, the uplink is refused: a frame whose
//! counter cannot be remembered could be replayed after a restart (FAULTS
//! §3.8, ENOSPC on the state store).
//!
//! The same file holds the OTAA state: each joined device's session (its
//! DevAddr and keys, the downlink counter), the DevNonces it has used, and
//! the JoinNonce/DevAddr counters. A join changes the session, the used
//! nonces and the device's uplink counter in *one* atomic write, before
//! the join-accept is sent: a kill at any point leaves the old session
//! (the device retries its join) or the new one, never a mix. The file
//! holds session keys, so it lives in the gateway's private state
//! directory, like the config that holds the AppKeys.
//!
//! ABP devices have a fixed session but a downlink counter all the same:
//! it is kept here too, by device id, so a restart never sends a counter
//! the device has seen (it would drop the downlink as a replay).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use gateway_core::hash::SeededState;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use serde::{Deserialize, Serialize};

use super::frame::Key;
use super::join::Eui;

/// Device id → last accepted 32-bit FCnt. Hashed, not ordered: each
/// uplink looks its device up once, and a B-tree search comparing ids was
/// about 420 instructions an uplink with 100 devices (callgrind, issue 69),
/// more with more devices. The file lists them in the map's order, which
/// a reader does not depend on.
type Counters = HashMap<String, u32, SeededState>;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = gateway_core::state_file::inventory::LORAWAN_FCNT;

/// Why the counters could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    State(#[from] JsonStateError),
    #[error("device {0} has no OTAA session")]
    NoSession(String),
    /// The thread writing the file ended before it could say how it went.
    #[error("the write of the frame counters did not finish")]
    WriteAborted,
}

/// The maps are shared with the store (copy on write): a batch's write
/// takes the store as it stands without copying it. Cloning the counter
/// map (a `String` per device) and freeing the copy was 4 % of an
/// uplink's instructions with 100 devices, more with more devices. A
/// change while a write still holds them (the adapter stages nothing
/// while its write is in flight) copies them then, so a write always
/// carries the moment [`FcntStore::write`] was called.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    /// Device id → last accepted 32-bit FCnt.
    #[serde(with = "shared")]
    last_fcnt: Arc<Counters>,
    /// DevEUI (16 hex digits) → OTAA state. Absent in files of versions
    /// that knew only ABP.
    #[serde(default, skip_serializing_if = "shared::is_empty", with = "shared")]
    otaa: Arc<BTreeMap<String, OtaaRecord>>,
    #[serde(default)]
    next_join_nonce: u32,
    #[serde(default)]
    next_nwk_addr: u32,
    /// ABP device id → next downlink counter. Absent in files written
    /// before ABP devices got downlinks.
    #[serde(default, skip_serializing_if = "shared::is_empty", with = "shared")]
    abp_fcnt_down: Arc<BTreeMap<String, u32>>,
}

/// An `Arc`'d map in the file as the map itself (serde's `rc` feature,
/// for these fields only).
mod shared {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(value, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }

    pub fn is_empty<K, V>(map: &Arc<BTreeMap<K, V>>) -> bool {
        map.is_empty()
    }
}

impl StateDocument for OnDisk {
    const FILE_NAME: &'static str = FILE_NAME;
    /// Saved once per batch of uplinks: pretty-printing 100 devices' counters
    /// cost about 60 000 instructions a batch. Files of earlier builds
    /// (indented) read as before.
    const COMPACT: bool = true;

    /// `last_fcnt` by hand, the rest by serde: serde's map encoding was
    /// about 530 instructions a device, 53 000 a batch of 100 devices,
    /// where copying an id and formatting a number takes a tenth of that.
    /// A test compares the bytes with serde's.
    fn write_compact(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(br#"{"last_fcnt":{"#);
        for (i, (device, fcnt)) in self.last_fcnt.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, device)?;
            out.push(b':');
            push_u32(out, *fcnt);
        }
        out.push(b'}');
        let at = out.len();
        serde_json::to_writer(
            &mut *out,
            &Rest {
                otaa: &self.otaa,
                next_join_nonce: self.next_join_nonce,
                next_nwk_addr: self.next_nwk_addr,
                abp_fcnt_down: &self.abp_fcnt_down,
            },
        )?;
        // `Rest` always has its two numbers: `{"next_join_nonce":…}`
        // continues the object begun above.
        if let Some(open) = out.get_mut(at) {
            *open = b',';
        }
        Ok(())
    }
}

/// The fields of [`OnDisk`] after `last_fcnt`, in its order.
#[derive(Serialize)]
struct Rest<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    otaa: &'a BTreeMap<String, OtaaRecord>,
    next_join_nonce: u32,
    next_nwk_addr: u32,
    #[serde(skip_serializing_if = "is_empty")]
    abp_fcnt_down: &'a BTreeMap<String, u32>,
}

fn is_empty<K, V>(map: &&BTreeMap<K, V>) -> bool {
    map.is_empty()
}

/// A JSON string: copied between quotes when nothing in it needs an
/// escape (device ids are printable), serde's escaping otherwise.
fn push_json_str(out: &mut Vec<u8>, text: &str) -> Result<(), serde_json::Error> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, text)
    }
}

fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// What is remembered of one OTAA device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaaRecord {
    /// Every DevNonce accepted so far: a join-request reusing one is a
    /// replay (spec §6.2.4). At most 65 536 two-byte values.
    #[serde(default)]
    pub dev_nonces: BTreeSet<u16>,
    pub session: Option<Session>,
}

/// An OTAA device's current session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub dev_addr: u32,
    #[serde(with = "key_hex")]
    pub nwk_s_key: Key,
    #[serde(with = "key_hex")]
    pub app_s_key: Key,
    pub join_nonce: u32,
    pub dev_nonce: u16,
    /// The next downlink frame counter.
    #[serde(default)]
    pub fcnt_down: u32,
}

mod key_hex {
    use super::Key;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &Key, s: S) -> Result<S::Ok, S::Error> {
        let text: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("session key: {e}")))
    }
}

/// The least JoinNonce a join takes: the minutes since 2025 (24 bits
/// last until 2056). LoRaWAN 1.0.4 devices refuse a join-accept whose
/// JoinNonce is not above the last they took, so a store lost (a damaged
/// file, a new SD card) and started again at 0 could not join them again;
/// the minutes are above any nonce the lost store gave unless it gave
/// more than one join a minute on average.
pub fn join_nonce_floor() -> u32 {
    const SINCE_2025: u64 = 1_735_689_600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let minutes = now.saturating_sub(SINCE_2025) / 60;
    u32::try_from(minutes & 0x00FF_FFFF).unwrap_or(0)
}

/// Last accepted FCnt per device id, and the OTAA sessions.
#[derive(Debug, Default)]
pub struct FcntStore {
    /// In memory only for tests and benches.
    file: JsonStateFile<OnDisk>,
    last: Arc<Counters>,
    otaa: Arc<BTreeMap<String, OtaaRecord>>,
    next_join_nonce: u32,
    next_nwk_addr: u32,
    abp_fcnt_down: Arc<BTreeMap<String, u32>>,
}

impl FcntStore {
    /// A store that never touches the disk.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens the store in `state_dir`. A missing file is an empty store; a
    /// damaged one is moved aside (`.damaged`) and the store starts empty,
    /// with the error returned for the caller to log: refusing to start
    /// would stop every device, not just replays.
    pub fn open(state_dir: &Path) -> (Self, Option<StoreError>) {
        let mut store = Self {
            file: JsonStateFile::in_state_dir(state_dir),
            ..Self::default()
        };
        match store.file.load() {
            Ok(Some(d)) => {
                store.last = d.last_fcnt;
                store.otaa = d.otaa;
                store.next_join_nonce = d.next_join_nonce;
                store.next_nwk_addr = d.next_nwk_addr;
                store.abp_fcnt_down = d.abp_fcnt_down;
                (store, None)
            }
            Ok(None) => (store, None),
            Err(e) => (store, Some(e.into())),
        }
    }

    /// The last accepted counter of `device`, if any.
    pub fn last(&self, device: &str) -> Option<u32> {
        self.last.get(device).copied()
    }

    /// The last accepted counter of a device already known, to read and
    /// then replace in place: one lookup where [`Self::last`] and
    /// [`Self::stage`] are two (each a lookup by id; as B-tree searches
    /// they were about 430 instructions with 100 devices). `None` for a
    /// new device, or while a write in flight shares the counters: then
    /// those two.
    pub fn last_mut(&mut self, device: &str) -> Option<&mut u32> {
        Arc::get_mut(&mut self.last)?.get_mut(device)
    }

    /// Records `fcnt` as `device`'s last accepted counter, on disk first.
    ///
    /// # Errors
    /// The write failed; memory is unchanged, so the uplink must be refused.
    pub fn commit(&mut self, device: &str, fcnt: u32) -> Result<(), StoreError> {
        let previous = self.stage(device, fcnt);
        let result = self.flush();
        if result.is_err() {
            self.restore(device, previous);
        }
        result
    }

    /// Records `fcnt` in memory only, returning the previous counter for
    /// [`Self::restore`]; [`Self::flush`] makes every staged counter durable
    /// in one write, so a burst of uplinks costs one fsync, not one each.
    pub fn stage(&mut self, device: &str, fcnt: u32) -> Option<u32> {
        // A known device's counter is replaced in place: no new key.
        match Arc::make_mut(&mut self.last).get_mut(device) {
            Some(last) => Some(std::mem::replace(last, fcnt)),
            None => Arc::make_mut(&mut self.last).insert(device.to_string(), fcnt),
        }
    }

    /// Undoes a [`Self::stage`] whose flush failed (in reverse order of
    /// staging when a device was staged twice).
    pub fn restore(&mut self, device: &str, previous: Option<u32>) {
        match previous {
            Some(p) => Arc::make_mut(&mut self.last).insert(device.to_string(), p),
            None => Arc::make_mut(&mut self.last).remove(device),
        };
    }

    /// Writes every counter atomically.
    ///
    /// # Errors
    /// The write failed; the file keeps its previous content.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.save()
    }

    /// [`Self::flush`] in two halves: everything as it stands now, to be
    /// written by [`Write::run`] on a thread that may block on the disk.
    /// Runs one at a time: two in flight could interleave on disk.
    pub fn write(&self) -> Write {
        Write {
            file: self.file.clone(),
            document: self.document(),
        }
    }

    /// Whether `dev_eui` has used `dev_nonce` in an accepted join before.
    pub fn dev_nonce_used(&self, dev_eui: Eui, dev_nonce: u16) -> bool {
        self.otaa
            .get(&dev_eui.to_string())
            .is_some_and(|r| r.dev_nonces.contains(&dev_nonce))
    }

    /// Records `dev_nonce` as used by `dev_eui`, on disk first, without
    /// a session: a join-request whose MIC verified but that got no accept
    /// (no downlink path, too late) has spent its nonce all the same. Left
    /// usable, a recording of it replayed later through any forwarder
    /// would be accepted and replace the device's real session.
    ///
    /// # Errors
    /// The write failed; memory is unchanged.
    pub fn spend_dev_nonce(&mut self, dev_eui: Eui, dev_nonce: u16) -> Result<(), StoreError> {
        let key = dev_eui.to_string();
        let existed = self.otaa.contains_key(&key);
        let record = Arc::make_mut(&mut self.otaa).entry(key.clone()).or_default();
        if !record.dev_nonces.insert(dev_nonce) {
            return Ok(());
        }
        let result = self.flush();
        if result.is_err() {
            match Arc::make_mut(&mut self.otaa).get_mut(&key) {
                Some(r) if existed => {
                    r.dev_nonces.remove(&dev_nonce);
                }
                _ => {
                    Arc::make_mut(&mut self.otaa).remove(&key);
                }
            }
        }
        result
    }

    /// The current session of `dev_eui`, if it ever joined.
    pub fn session(&self, dev_eui: Eui) -> Option<&Session> {
        self.otaa.get(&dev_eui.to_string())?.session.as_ref()
    }

    /// The JoinNonce and NwkAddr stored for the next join (24 and 25
    /// bits); the join takes the nonce no lower than
    /// [`join_nonce_floor`].
    pub fn next_join_numbers(&self) -> (u32, u32) {
        (
            self.next_join_nonce & 0x00FF_FFFF,
            self.next_nwk_addr & 0x01FF_FFFF,
        )
    }

    /// Makes `session` the session of `dev_eui` (device `device_id`):
    /// records its DevNonce, forgets the previous session's uplink counter
    /// and advances the join counters, all in one atomic write.
    ///
    /// # Errors
    /// The write failed; memory is unchanged and the accept must not leave.
    pub fn commit_join(
        &mut self,
        device_id: &str,
        dev_eui: Eui,
        session: Session,
    ) -> Result<(), StoreError> {
        let key = dev_eui.to_string();
        let old_record = self.otaa.get(&key).cloned();
        let old_fcnt = Arc::make_mut(&mut self.last).remove(device_id);
        let old_numbers = (self.next_join_nonce, self.next_nwk_addr);
        self.next_join_nonce = session.join_nonce.wrapping_add(1) & 0x00FF_FFFF;
        self.next_nwk_addr = self.next_nwk_addr.wrapping_add(1) & 0x01FF_FFFF;
        let record = Arc::make_mut(&mut self.otaa).entry(key.clone()).or_default();
        record.dev_nonces.insert(session.dev_nonce);
        record.session = Some(session);
        let result = self.flush();
        if result.is_err() {
            match old_record {
                Some(r) => Arc::make_mut(&mut self.otaa).insert(key, r),
                None => Arc::make_mut(&mut self.otaa).remove(&key),
            };
            if let Some(f) = old_fcnt {
                Arc::make_mut(&mut self.last).insert(device_id.to_string(), f);
            }
            (self.next_join_nonce, self.next_nwk_addr) = old_numbers;
        }
        result
    }

    /// Takes the next downlink counter of `dev_eui`'s session, durable
    /// before the downlink leaves: a counter sent twice would be refused
    /// by the device as a replay.
    ///
    /// # Errors
    /// The write failed (the counter is not advanced), or no session.
    pub fn take_fcnt_down(&mut self, dev_eui: Eui) -> Result<u32, StoreError> {
        let key = dev_eui.to_string();
        let Some(session) = Arc::make_mut(&mut self.otaa).get_mut(&key).and_then(|r| r.session.as_mut()) else {
            return Err(StoreError::NoSession(key));
        };
        let fcnt = session.fcnt_down;
        session.fcnt_down = fcnt.wrapping_add(1);
        let result = self.flush();
        if result.is_err() {
            if let Some(s) = Arc::make_mut(&mut self.otaa).get_mut(&key).and_then(|r| r.session.as_mut()) {
                s.fcnt_down = fcnt;
            }
        }
        result.map(|()| fcnt)
    }

    /// Takes the next downlink counter of the ABP device `device`, durable
    /// before the downlink leaves, as [`Self::take_fcnt_down`] does for a
    /// joined device.
    ///
    /// # Errors
    /// The write failed; the counter is not advanced.
    pub fn take_abp_fcnt_down(&mut self, device: &str) -> Result<u32, StoreError> {
        let previous = self.abp_fcnt_down.get(device).copied();
        let fcnt = previous.unwrap_or(0);
        Arc::make_mut(&mut self.abp_fcnt_down).insert(device.to_string(), fcnt.wrapping_add(1));
        let result = self.flush();
        if result.is_err() {
            match previous {
                Some(p) => Arc::make_mut(&mut self.abp_fcnt_down).insert(device.to_string(), p),
                None => Arc::make_mut(&mut self.abp_fcnt_down).remove(device),
            };
        }
        result.map(|()| fcnt)
    }

    fn save(&self) -> Result<(), StoreError> {
        self.write().run()
    }

    fn document(&self) -> OnDisk {
        OnDisk {
            last_fcnt: Arc::clone(&self.last),
            otaa: Arc::clone(&self.otaa),
            next_join_nonce: self.next_join_nonce,
            next_nwk_addr: self.next_nwk_addr,
            abp_fcnt_down: Arc::clone(&self.abp_fcnt_down),
        }
    }
}

/// The store's content at one moment, not yet on disk.
pub struct Write {
    file: JsonStateFile<OnDisk>,
    document: OnDisk,
}

impl Write {
    /// Writes it atomically (fsync'd), as [`FcntStore::flush`] does.
    ///
    /// # Errors
    /// The write failed; the file keeps its previous content.
    pub fn run(self) -> Result<(), StoreError> {
        self.file.save(&self.document)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none());
        assert_eq!(s.last("a"), None);
        s.commit("a", 7).unwrap();
        s.commit("b", 70_000).unwrap();
        s.commit("a", 8).unwrap();
        let (s, err) = FcntStore::open(dir.path());
        assert!(err.is_none());
        assert_eq!((s.last("a"), s.last("b")), (Some(8), Some(70_000)));
        assert!(!dir.path().join("lorawan-fcnt.json.tmp").exists());
    }

    /// The file as the builds before the compact form wrote it: an upgrade
    /// keeps every counter (a reset one would let recorded frames be
    /// replayed), and what it writes next says the same on one line.
    #[test]
    fn an_indented_file_of_an_earlier_build_keeps_its_counters() {
        const EARLIER: &str = r#"{
  "version": 1,
  "last_fcnt": {
    "abp-1": 70000,
    "otaa-1": 12
  },
  "otaa": {
    "70B3D57ED0000001": {
      "dev_nonces": [
        7
      ],
      "session": {
        "dev_addr": 637534209,
        "nwk_s_key": "01010101010101010101010101010101",
        "app_s_key": "02020202020202020202020202020202",
        "join_nonce": 0,
        "dev_nonce": 7,
        "fcnt_down": 1
      }
    }
  },
  "next_join_nonce": 1,
  "next_nwk_addr": 1,
  "abp_fcnt_down": {
    "abp-1": 1
  }
}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, EARLIER).unwrap();
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none(), "{err:?}");
        let eui: Eui = "70B3D57ED0000001".parse().unwrap();
        assert_eq!((s.last("abp-1"), s.last("otaa-1")), (Some(70_000), Some(12)));
        assert_eq!(s.session(eui).map(|x| x.nwk_s_key), Some(Key([1; 16])));
        assert!(s.dev_nonce_used(eui, 7));
        assert_eq!(s.next_join_numbers(), (1, 1));
        s.commit("otaa-1", 12).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains('\n') && text.starts_with(r#"{"version":1,"last_fcnt":{"#));
        let value = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        assert_eq!(value(&text), value(EARLIER));
        assert_eq!(s.take_fcnt_down(eui).unwrap(), 1);
        assert_eq!(s.take_abp_fcnt_down("abp-1").unwrap(), 1);
    }

    /// The hand-written encoding is serde's, byte for byte: ids that need
    /// escapes or are not ASCII, counters at their ends, with and without
    /// the optional maps.
    #[test]
    fn the_compact_encoding_is_serdes_byte_for_byte() {
        let eui: Eui = "70B3D57ED0000001".parse().unwrap();
        let ids = ["a", "lora-0001", "q\"uote", "back\\slash", "tab\tline\n", "é-ü", "\u{7f}x"];
        let mut store = FcntStore::in_memory();
        let check = |store: &FcntStore| {
            let document = store.document();
            let mut ours = Vec::new();
            document.write_compact(&mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&document).unwrap()
            );
        };
        check(&store);
        for (i, id) in ids.iter().enumerate() {
            store.stage(id, [0, 1, 9, 10, 65_535, 70_000, u32::MAX][i]);
            check(&store);
        }
        store.commit_join("otaa-1", eui, session(7, 0)).unwrap();
        check(&store);
        store.take_abp_fcnt_down("a").unwrap();
        check(&store);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,\"last_f").unwrap();
        let (s, err) = FcntStore::open(dir.path());
        assert!(
            matches!(err, Some(StoreError::State(JsonStateError::Damaged { .. }))),
            "{err:?}"
        );
        assert_eq!(s.last("a"), None);
        assert!(dir.path().join("lorawan-fcnt.json.damaged").exists());
        // JoinNonces go on above what the lost file gave (minutes since
        // 2025: far above a few hundred joins), not from 0 again, or
        // LoRaWAN 1.0.4 devices could not join.
        assert_eq!(s.next_join_numbers().0, 0);
        assert!(join_nonce_floor() > 400_000, "{}", join_nonce_floor());
    }

    fn session(dev_nonce: u16, join_nonce: u32) -> Session {
        Session {
            dev_addr: 0x2600_0001,
            nwk_s_key: Key([1; 16]),
            app_s_key: Key([2; 16]),
            join_nonce,
            dev_nonce,
            fcnt_down: 0,
        }
    }

    #[test]
    fn a_join_replaces_the_session_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let eui: Eui = "70B3D57ED0000001".parse().unwrap();
        let (mut s, _) = FcntStore::open(dir.path());
        s.commit("dev", 41).unwrap();
        s.commit_join("dev", eui, session(7, 0)).unwrap();
        assert_eq!(s.last("dev"), None, "a new session counts from 0");
        assert_eq!(s.next_join_numbers(), (1, 1));
        s.commit("dev", 3).unwrap();
        s.commit_join("dev", eui, session(9, 1)).unwrap();
        assert_eq!(s.take_fcnt_down(eui).unwrap(), 0);
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none(), "{err:?}");
        assert!(s.dev_nonce_used(eui, 7) && s.dev_nonce_used(eui, 9));
        assert!(!s.dev_nonce_used(eui, 8));
        assert_eq!(s.session(eui).unwrap().dev_nonce, 9);
        assert_eq!(s.last("dev"), None);
        assert_eq!(s.take_fcnt_down(eui).unwrap(), 1, "persisted before use");
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("0101010101"), "keys are in the private file");
    }

    #[test]
    fn a_spent_nonce_survives_a_reopen_and_a_failed_spend_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let eui: Eui = "70B3D57ED0000001".parse().unwrap();
        let (mut s, _) = FcntStore::open(&state);
        s.spend_dev_nonce(eui, 7).unwrap();
        assert!(
            s.session(eui).is_none(),
            "no session for an unanswered join"
        );
        let (mut s, err) = FcntStore::open(&state);
        assert!(err.is_none(), "{err:?}");
        assert!(s.dev_nonce_used(eui, 7), "durable");
        assert!(s.session(eui).is_none());
        std::fs::remove_dir_all(&state).unwrap();
        assert!(s.spend_dev_nonce(eui, 8).is_err());
        assert!(!s.dev_nonce_used(eui, 8));
        assert!(s.dev_nonce_used(eui, 7));
        let other: Eui = "70B3D57ED0000002".parse().unwrap();
        assert!(s.spend_dev_nonce(other, 1).is_err());
        assert!(!s.dev_nonce_used(other, 1));
    }

    #[test]
    fn a_join_that_cannot_be_stored_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let eui: Eui = "70B3D57ED0000001".parse().unwrap();
        let (mut s, _) = FcntStore::open(&state);
        s.commit_join("dev", eui, session(7, 0)).unwrap();
        s.commit("dev", 5).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        assert!(s.commit_join("dev", eui, session(8, 1)).is_err());
        assert_eq!(s.session(eui).unwrap().dev_nonce, 7);
        assert!(!s.dev_nonce_used(eui, 8));
        assert_eq!(s.last("dev"), Some(5));
        assert_eq!(s.next_join_numbers(), (1, 1));
        assert!(s.take_fcnt_down(eui).is_err());
        assert_eq!(s.session(eui).unwrap().fcnt_down, 0);
    }

    #[test]
    fn abp_downlink_counters_survive_a_reopen_and_old_files_load() {
        let dir = tempfile::tempdir().unwrap();
        // A file written before ABP devices had downlinks.
        std::fs::write(
            dir.path().join(FILE_NAME),
            br#"{"version": 1, "last_fcnt": {"abp": 12}}"#,
        )
        .unwrap();
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(s.last("abp"), Some(12));
        assert_eq!(s.take_abp_fcnt_down("abp").unwrap(), 0);
        assert_eq!(s.take_abp_fcnt_down("abp").unwrap(), 1);
        assert_eq!(s.take_abp_fcnt_down("other").unwrap(), 0);
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(s.last("abp"), Some(12));
        assert_eq!(
            s.take_abp_fcnt_down("abp").unwrap(),
            2,
            "persisted before use"
        );
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let (mut s, _) = FcntStore::open(&state);
        assert_eq!(s.take_abp_fcnt_down("abp").unwrap(), 0);
        std::fs::remove_dir_all(&state).unwrap();
        assert!(s.take_abp_fcnt_down("abp").is_err());
        std::fs::create_dir(&state).unwrap();
        assert_eq!(
            s.take_abp_fcnt_down("abp").unwrap(),
            1,
            "not advanced by the failure"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_counter_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let (mut s, _) = FcntStore::open(&state);
        s.commit("a", 1).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        assert!(s.commit("a", 2).is_err());
        assert!(s.commit("new", 2).is_err());
        assert_eq!((s.last("a"), s.last("new")), (Some(1), None));
    }
}
