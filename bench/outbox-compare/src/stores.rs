//! The same outbox contract on three stores: append a batch durably (it is
//! on disk when the call returns), read live messages in order, acknowledge
//! one message without waiting for the disk (a lost ACK only means the
//! message is sent again).

use std::path::{Path, PathBuf};

use sinks::outbox::{FullPolicy, Outbox, OutboxSettings};
use gateway_core::OutboundMessage;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use rusqlite::{params, Connection};

pub type Res<T> = Result<T, String>;

pub trait Store {
    /// Stores `batch` under `first_seq..`; durable when this returns.
    fn append(&mut self, first_seq: u64, batch: &[OutboundMessage]) -> Res<()>;
    /// Up to `limit` live messages with a sequence number above `after`,
    /// oldest first.
    fn read_after(&mut self, after: u64, limit: usize) -> Res<Vec<(u64, OutboundMessage)>>;
    /// Removes `seq`; may be lost in a crash.
    fn ack(&mut self, seq: u64) -> Res<()>;
    /// Leaves the files as a power cut would: no close, no checkpoint.
    fn crash(self: Box<Self>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The sinks crate's segmented log.
    Log,
    Redb,
    /// SQLite WAL; appends `synchronous=FULL`, deletes `NORMAL`.
    SqliteFull,
    /// SQLite WAL, everything `synchronous=NORMAL`: appends may roll back
    /// after a power cut. For reference only, it is not equal durability.
    SqliteNormal,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Log, Kind::Redb, Kind::SqliteFull, Kind::SqliteNormal];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Log => "gateway log",
            Kind::Redb => "redb 4.5",
            Kind::SqliteFull => "SQLite WAL FULL",
            Kind::SqliteNormal => "SQLite WAL NORMAL*",
        }
    }

    pub fn open(self, dir: &Path) -> Res<Box<dyn Store>> {
        Ok(match self {
            Kind::Log => Box::new(LogStore::open(dir)?),
            Kind::Redb => Box::new(RedbStore::open(dir)?),
            Kind::SqliteFull => Box::new(SqliteStore::open(dir, true)?),
            Kind::SqliteNormal => Box::new(SqliteStore::open(dir, false)?),
        })
    }

    /// The files holding the messages, biggest role first.
    pub fn files(self, dir: &Path) -> Vec<PathBuf> {
        match self {
            Kind::Log => {
                let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "log"))
                            .collect()
                    })
                    .unwrap_or_default();
                segs.sort();
                segs
            }
            Kind::Redb => vec![dir.join("outbox.redb")],
            Kind::SqliteFull | Kind::SqliteNormal => {
                vec![dir.join("outbox.db"), dir.join("outbox.db-wal")]
            }
        }
    }
}

/// `[retain][topic length, u16 LE][topic][payload]`: redb stores bytes.
fn encode(m: &OutboundMessage) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + m.topic.len() + m.payload.len());
    v.push(u8::from(m.retain));
    v.extend_from_slice(&(m.topic.len() as u16).to_le_bytes());
    v.extend_from_slice(m.topic.as_bytes());
    v.extend_from_slice(&m.payload);
    v
}

fn decode(v: &[u8]) -> Res<OutboundMessage> {
    let short = || "value shorter than its header".to_string();
    let retain = *v.first().ok_or_else(short)? != 0;
    let n = u16::from_le_bytes([*v.get(1).ok_or_else(short)?, *v.get(2).ok_or_else(short)?]);
    let end = 3 + n as usize;
    let topic = v.get(3..end).ok_or_else(short)?;
    Ok(OutboundMessage {
        topic: String::from_utf8(topic.to_vec()).map_err(|e| e.to_string())?,
        payload: v[end..].to_vec(),
        retain,
    })
}

pub struct LogStore(Outbox);

impl LogStore {
    pub fn open(dir: &Path) -> Res<Self> {
        let settings = OutboxSettings {
            max_bytes: 1 << 30,
            policy: FullPolicy::DropOldest,
            max_age: None,
        };
        let (outbox, _recovery) = Outbox::open(dir, settings).map_err(|e| e.to_string())?;
        Ok(Self(outbox))
    }
}

impl Store for LogStore {
    fn append(&mut self, _first_seq: u64, batch: &[OutboundMessage]) -> Res<()> {
        // The log numbers messages itself, from 1, as the others are told to.
        self.0
            .append(batch.to_vec(), 0)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Res<Vec<(u64, OutboundMessage)>> {
        let mut out = Vec::new();
        for seq in self.0.seqs_after(after, limit) {
            if let Some(m) = self.0.read(seq).map_err(|e| e.to_string())? {
                out.push((seq, m));
            }
        }
        Ok(out)
    }

    fn ack(&mut self, seq: u64) -> Res<()> {
        self.0.ack(seq).map(|_| ()).map_err(|e| e.to_string())
    }

    fn crash(self: Box<Self>) {
        std::mem::forget(self);
    }
}

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

pub struct RedbStore(Database);

impl RedbStore {
    pub fn open(dir: &Path) -> Res<Self> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let db = Database::create(dir.join("outbox.redb")).map_err(|e| e.to_string())?;
        Ok(Self(db))
    }
}

impl Store for RedbStore {
    fn append(&mut self, first_seq: u64, batch: &[OutboundMessage]) -> Res<()> {
        // Default durability is Immediate: the commit fsyncs.
        let txn = self.0.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(TABLE).map_err(|e| e.to_string())?;
            for (i, m) in batch.iter().enumerate() {
                t.insert(first_seq + i as u64, encode(m).as_slice())
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Res<Vec<(u64, OutboundMessage)>> {
        let txn = self.0.begin_read().map_err(|e| e.to_string())?;
        let t = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in t.range(after + 1..).map_err(|e| e.to_string())?.take(limit) {
            let (k, v) = row.map_err(|e| e.to_string())?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }

    fn ack(&mut self, seq: u64) -> Res<()> {
        let mut txn = self.0.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::None)
            .map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(TABLE).map_err(|e| e.to_string())?;
            t.remove(seq).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }

    fn crash(self: Box<Self>) {
        std::mem::forget(self);
    }
}

pub struct SqliteStore {
    conn: Connection,
    durable_appends: bool,
    /// The `synchronous` level in force, to switch only when it changes.
    full_now: bool,
}

impl SqliteStore {
    pub fn open(dir: &Path, durable_appends: bool) -> Res<Self> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let conn = Connection::open(dir.join("outbox.db")).map_err(|e| e.to_string())?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                retain INTEGER NOT NULL)",
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            conn,
            durable_appends,
            full_now: false,
        })
    }

    /// FULL for appends (the WAL is fsynced at each commit), NORMAL for
    /// deletes (not fsynced, may roll back, never corrupts). Switching per
    /// transaction is allowed: the next FULL commit syncs the deletes too.
    fn synchronous(&mut self, full: bool) -> Res<()> {
        if self.full_now != full {
            let level = if full { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", level)
                .map_err(|e| e.to_string())?;
            self.full_now = full;
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn append(&mut self, first_seq: u64, batch: &[OutboundMessage]) -> Res<()> {
        self.synchronous(self.durable_appends)?;
        let txn = self.conn.transaction().map_err(|e| e.to_string())?;
        {
            let mut st = txn
                .prepare_cached(
                    "INSERT INTO outbox (seq, topic, payload, retain) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| e.to_string())?;
            for (i, m) in batch.iter().enumerate() {
                st.execute(params![
                    (first_seq + i as u64) as i64,
                    m.topic,
                    m.payload,
                    m.retain
                ])
                .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Res<Vec<(u64, OutboundMessage)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, topic, payload, retain FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(params![after as i64, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    OutboundMessage {
                        topic: r.get(1)?,
                        payload: r.get(2)?,
                        retain: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn ack(&mut self, seq: u64) -> Res<()> {
        self.synchronous(false)?;
        self.conn
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
            .and_then(|mut st| st.execute(params![seq as i64]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn crash(self: Box<Self>) {
        std::mem::forget(self);
    }
}
