//! What each store does with a damaged file: write `N` messages, damage a
//! copy of the files, reopen, and count the messages that come back intact.
//! Every reopen runs under `catch_unwind`: a panic is a result here.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::message;
use crate::stores::{Kind, Res};

pub const N: u64 = 1000;
const BATCH: usize = 16;

#[derive(Debug, Clone, Copy)]
pub enum Damage {
    None,
    /// Cut the file 250 bytes before its end: inside the last record (a
    /// message is ~470 bytes in the log) or the last page.
    Truncate,
    /// 4 KiB of random bytes at the 4 KiB boundary 8 KiB before the end:
    /// a bad flash page near the tail, with intact data after it.
    TailScribble,
    /// 4 KiB of random bytes at the 4 KiB boundary nearest the middle.
    MiddleScribble,
}

impl Damage {
    pub const ALL: [Damage; 4] = [
        Damage::None,
        Damage::Truncate,
        Damage::TailScribble,
        Damage::MiddleScribble,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Damage::None => "none",
            Damage::Truncate => "truncate -250 B",
            Damage::TailScribble => "4 KiB tail",
            Damage::MiddleScribble => "4 KiB middle",
        }
    }
}

/// How the files were left before the damage.
#[derive(Debug, Clone, Copy)]
pub enum Shutdown {
    /// Store closed (SQLite checkpoints its WAL into the database file).
    Clean,
    /// Handles leaked as a power cut would leave them (SQLite data still in
    /// the WAL, redb needing repair).
    Crash,
}

pub struct Outcome {
    pub target: String,
    /// `ok`, the error, or the panic message.
    pub open: String,
    /// Messages read back equal to what was written, before any read error.
    pub intact: u64,
    /// The same, seeking past read errors.
    pub salvaged: u64,
    /// Messages read back that differ from what was written.
    pub wrong: u64,
    /// The read that stopped recovery early, if any.
    pub read_error: Option<String>,
}

/// Writes the pristine store that every damage case copies.
pub fn prepare(kind: Kind, dir: &Path, shutdown: Shutdown) -> Res<()> {
    let mut store = kind.open(dir)?;
    let msgs: Vec<_> = (0..N).map(message).collect();
    for (i, chunk) in msgs.chunks(BATCH).enumerate() {
        store.append(1 + (i * BATCH) as u64, chunk)?;
    }
    match shutdown {
        Shutdown::Clean => drop(store),
        Shutdown::Crash => store.crash(),
    }
    Ok(())
}

fn copy_files(kind: Kind, from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for f in kind.files(from) {
        if f.exists() {
            let name = f.file_name().ok_or("file without a name")?;
            std::fs::copy(&f, to.join(name)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The file the damage goes to: the one holding the newest messages.
fn target(kind: Kind, dir: &Path) -> Option<PathBuf> {
    let files: Vec<PathBuf> = kind.files(dir).into_iter().filter(|f| f.exists()).collect();
    let nonempty = |f: &PathBuf| std::fs::metadata(f).is_ok_and(|m| m.len() > 0);
    // The log's newest segment with data; SQLite's WAL when a crash left
    // one, else its database file; redb's only file.
    files.iter().rev().find(|f| nonempty(f)).cloned()
}

/// Deterministic noise (xorshift64), so every run damages alike.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn apply(damage: Damage, file: &Path) -> Res<()> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let page = 4096;
    let scribble = |at: u64| f.write_all_at(&noise(4096, 0x9e37_79b9_7f4a_7c15 ^ at), at);
    match damage {
        Damage::None => Ok(()),
        Damage::Truncate => f.set_len(len.saturating_sub(250)),
        Damage::TailScribble => scribble(len.saturating_sub(2 * page) / page * page),
        Damage::MiddleScribble => scribble(len / 2 / page * page),
    }
    .map_err(|e| e.to_string())
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    format!("PANIC: {s}")
}

/// Reopens `dir` and reads everything back in order. A read error stops
/// the plain read; the salvage then goes on by seeking past the failing
/// key one at a time up to the last one written, which a real outbox would
/// have to know from elsewhere.
fn recover(kind: Kind, dir: &Path) -> Outcome {
    let mut out = Outcome {
        target: String::new(),
        open: "ok".into(),
        intact: 0,
        salvaged: 0,
        wrong: 0,
        read_error: None,
    };
    let opened = catch_unwind(AssertUnwindSafe(|| kind.open(dir)));
    let mut store = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            out.open = format!("error: {e}");
            return out;
        }
        Err(p) => {
            out.open = panic_text(&*p);
            return out;
        }
    };
    let mut cursor = 0;
    while cursor < N {
        let batch = catch_unwind(AssertUnwindSafe(|| store.read_after(cursor, 256)));
        let error = match batch {
            Ok(Ok(b)) if b.is_empty() => break,
            Ok(Ok(b)) => {
                for (seq, m) in b {
                    if (1..=N).contains(&seq) && m == message(seq - 1) {
                        out.salvaged += 1;
                        if out.read_error.is_none() {
                            out.intact += 1;
                        }
                    } else {
                        out.wrong += 1;
                    }
                    cursor = seq;
                }
                continue;
            }
            Ok(Err(e)) => e,
            Err(p) => panic_text(&*p),
        };
        out.read_error.get_or_insert(error);
        cursor += 1;
    }
    out
}

pub fn run(kind: Kind, base: &Path, shutdown: Shutdown) -> Res<Vec<(Damage, Outcome)>> {
    let pristine = base.join("pristine");
    prepare(kind, &pristine, shutdown)?;
    let mut out = Vec::new();
    for (i, damage) in Damage::ALL.into_iter().enumerate() {
        let dir = base.join(format!("case-{i}"));
        copy_files(kind, &pristine, &dir)?;
        let file = target(kind, &dir).ok_or("no file to damage")?;
        apply(damage, &file)?;
        let mut outcome = recover(kind, &dir);
        outcome.target = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((damage, outcome));
    }
    Ok(out)
}
