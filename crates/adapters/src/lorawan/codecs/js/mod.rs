//! Vendors' JavaScript payload codecs (`codec = "js:FILE"`), run the way
//! ChirpStack v4 and The Things Stack run them: `decodeUplink({bytes,
//! fPort, recvTime, variables})` → `{data, warnings, errors}`,
//! `encodeDownlink({data, variables})` → `{bytes, fPort, warnings,
//! errors}`, and the older `Decode`/`Decoder`/`Encode`/`Encoder`; a
//! `Buffer` (feross/buffer, as ChirpStack preloads) for files that use one.
//!
//! - `engine`: one file in QuickJS, compiled once; each call starts from a
//!   fresh run of the file's top level (see `driver.js`), so no state
//!   passes from one uplink, or one device, to the next.
//! - `pool`: the worker threads that run engines, never the async
//!   runtime's; one call at a time per file, and a file whose calls hit
//!   their limits never holds every worker.
//! - `readings`: a decoded object to metric names and values.
//! - `vectors`: ChirpStack's device-profile test vectors (`codec test`).
//!
//! docs/lorawan.md has the isolation and its costs.

mod clip;
mod engine;
mod nesting;
mod pool;
pub mod readings;
pub mod vectors;
mod vectors_ttn;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use clip::{clipped, clipped_key, clipped_list, MAX_KEY, MAX_TEXT};
pub use engine::Entries;
use engine::{Engine, UplinkInput};
use pool::Unit;

/// The prefix of a script codec's name in `codec = "js:FILE"`.
pub const PREFIX: &str = "js:";

/// What one call may use. Each is enforced: the time by QuickJS's
/// interrupt handler, the heap by its allocator, the stack by its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Wall time of one call (ChirpStack's `max_execution_time`).
    pub time: Duration,
    /// Heap a call may add to what the loaded file holds.
    pub memory: usize,
    /// Native stack of the interpreter (deep recursion).
    pub stack: usize,
}

impl Limits {
    pub const DEFAULT_TIME: Duration = Duration::from_millis(100);
    pub const DEFAULT_MEMORY: usize = 8 << 20;
    pub const DEFAULT_STACK: usize = 256 << 10;
    /// The workers' own stacks are 4 MiB: the interpreter's limit must
    /// leave room for the native frames around it.
    pub const MAX_STACK: usize = 2 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Self::DEFAULT_TIME,
            memory: Self::DEFAULT_MEMORY,
            stack: Self::DEFAULT_STACK,
        }
    }
}

/// Bytes of a codec file read at most. A vendor's file is kilobytes (a
/// bundle with its libraries a few hundred); a path to anything else (a
/// device, a growing log) was read whole, without end for `/dev/zero`.
pub const MAX_FILE: u64 = 16 << 20;

/// Why a script call gave no result. Count it by [`ScriptError::kind`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read {file}: {error}")]
    Io { file: String, error: String },
    #[error("{file}:{}: SyntaxError: {message}", line.map_or_else(|| "?".to_string(), |l| l.to_string()))]
    Syntax {
        file: String,
        line: Option<u32>,
        message: String,
    },
    /// The file's top level threw when it was loaded.
    #[error("the script's top level threw: {0}")]
    TopLevel(String),
    /// The script threw (a `TypeError` on a short payload, its own error).
    #[error("{0}")]
    Thrown(String),
    /// The script returned something that is not a codec's result.
    #[error("{0}")]
    Result(String),
    /// `errors` of `decodeUplink`/`encodeDownlink`, non-empty.
    #[error("the codec reported errors: {}", .0.join("; "))]
    Reported(Vec<String>),
    #[error("stopped after the time limit of {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("out of memory (the heap limit was reached)")]
    OutOfMemory,
    #[error("stack overflow (the stack limit was reached)")]
    StackOverflow,
    /// More calls of this file waiting than are kept: its calls are slower
    /// than its devices' uplinks.
    #[error("too many calls of this codec waiting ({0}); this one was dropped")]
    Backlog(usize),
    #[error("the engine failed: {0}")]
    Engine(String),
}

impl ScriptError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "js_io",
            Self::Syntax { .. } => "js_syntax",
            Self::TopLevel(_) => "js_top_level",
            Self::Thrown(_) => "js_exception",
            Self::Result(_) => "js_result",
            Self::Reported(_) => "js_errors",
            Self::Timeout(_) => "js_timeout",
            Self::OutOfMemory => "js_out_of_memory",
            Self::StackOverflow => "js_stack_overflow",
            Self::Backlog(_) => "js_backlog",
            Self::Engine(_) => "js_engine",
        }
    }

    /// A call cut short by a limit: the heap may be half-updated.
    fn spoils(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::OutOfMemory | Self::StackOverflow | Self::Engine(_)
        )
    }
}

/// A decoded uplink: `data` and the codec's own `warnings` (its non-empty
/// `errors` are [`ScriptError::Reported`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The whole result, as JSON: `data`, `errors`, `warnings` (and
    /// `normalized`, from `normalizeUplink`).
    pub result: serde_json::Value,
}

impl Decoded {
    pub fn data(&self) -> &serde_json::Value {
        self.result.get("data").unwrap_or(&serde_json::Value::Null)
    }

    pub fn errors(&self) -> Vec<String> {
        strings(self.result.get("errors"))
    }

    pub fn warnings(&self) -> Vec<String> {
        strings(self.result.get("warnings"))
    }

    /// The values of `data` as the gateway takes them ([`readings::fields`]),
    /// with those that were not finite numbers (`null` in `data`, named
    /// by the driver) said to be left out.
    pub fn fields(&self) -> readings::Fields {
        let mut taken = readings::fields(self.data());
        if let Some(serde_json::Value::Array(items)) = self.result.get("nonFinite") {
            for item in items {
                if let (Some(name), Some(kind)) = (
                    item.get(0).and_then(serde_json::Value::as_str),
                    item.get(1).and_then(serde_json::Value::as_str),
                ) {
                    let value = match kind {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        _ => f64::NAN,
                    };
                    taken.fields.push((
                        name.to_string(),
                        readings::Leaf::Number(value),
                        readings::Fate::Dropped(format!("not a finite number: {kind}")),
                    ));
                }
            }
        }
        taken
    }
}

/// An encoded downlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// The codec's `fPort`, when it gave one.
    pub fport: Option<u8>,
    pub warnings: Vec<String>,
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A loaded codec file with a device's `codec_variables`: cheap to clone,
/// every clone shares the one compiled file.
#[derive(Clone)]
pub struct ScriptCodec {
    /// As configured (`codecs/em300-th.js`), for messages.
    name: Arc<str>,
    path: Arc<Path>,
    variables: Arc<BTreeMap<String, String>>,
    unit: Arc<Unit>,
}

impl std::fmt::Debug for ScriptCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptCodec")
            .field("path", &self.path)
            .field("variables", &self.variables)
            .finish_non_exhaustive()
    }
}

/// Two devices have the same codec when they name the same file with the
/// same variables and limits; a changed file is the same codec, reloaded.
impl PartialEq for ScriptCodec {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.variables == other.variables
            && self.unit.limits() == other.unit.limits()
    }
}

impl Eq for ScriptCodec {}

/// Files loaded in this process, by path and limits: a file named by many
/// devices (or loaded again by a reload) is compiled once; a file whose
/// text changed is compiled again and replaces the old one in place.
type Loaded = HashMap<(PathBuf, Limits), Weak<Unit>>;
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

impl ScriptCodec {
    /// Loads `path` (named `name` in messages), compiling it unless this
    /// process already has this text of it.
    ///
    /// # Errors
    /// The file cannot be read, does not compile, or its top level throws.
    pub fn load(
        name: &str,
        path: &Path,
        variables: BTreeMap<String, String>,
        limits: Limits,
    ) -> Result<Self, ScriptError> {
        let source: Arc<str> = read_source(path)
            .map_err(|e| ScriptError::Io {
                file: name.to_string(),
                error: e.to_string(),
            })?
            .into();
        Self::from_text(name, path, source, variables, limits)
    }

    /// A `js:` codec as the config names it: a `[js_codecs]` entry of that
    /// name, else a file (relative to the config's directory).
    ///
    /// # Errors
    /// The problem to report for the `codec` key.
    pub fn configured(
        name: &str,
        variables: BTreeMap<String, String>,
        limits: Limits,
    ) -> Result<Self, String> {
        if let Some(text) = gateway_core::config::js_codecs::get(name) {
            // Keyed apart from every file (those are resolved to absolute
            // paths): the same entry is compiled once, and a changed one
            // replaces the running text at a reload, as a changed file does.
            let key = PathBuf::from(format!("[js_codecs].{name}"));
            return Self::from_text(name, &key, text, variables, limits).map_err(|e| e.to_string());
        }
        let path = resolve(name);
        Self::load(name, &path, variables, limits).map_err(|e| match &e {
            ScriptError::Io { .. } if !name.contains(['/', '.']) => format!(
                "{e} (looked for {}, and [js_codecs] has no codec of that name)",
                path.display()
            ),
            ScriptError::Io { .. } => format!("{e} (looked for {})", path.display()),
            _ => e.to_string(),
        })
    }

    /// Compiles `source` (named `name` in messages), known by `path`,
    /// unless this process already has this text under that key.
    fn from_text(
        name: &str,
        path: &Path,
        source: Arc<str>,
        variables: BTreeMap<String, String>,
        limits: Limits,
    ) -> Result<Self, ScriptError> {
        let key = (path.to_path_buf(), limits);
        let existing = LOADED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .get(&key)
            .and_then(Weak::upgrade);
        let unit = match existing {
            Some(unit) if unit.source() == source => unit,
            Some(unit) => {
                unit.replace(compile(&source, name, limits)?, Arc::clone(&source));
                unit
            }
            None => {
                let engine = compile(&source, name, limits)?;
                let unit = Unit::new(engine, source, limits);
                let mut loaded = LOADED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let loaded = loaded.get_or_insert_with(HashMap::new);
                // Files no device names any more (a reload dropped them).
                loaded.retain(|_, unit| unit.strong_count() > 0);
                loaded.insert(key, Arc::downgrade(&unit));
                unit
            }
        };
        Ok(Self {
            name: name.into(),
            path: path.into(),
            variables: Arc::new(variables),
            unit,
        })
    }

    /// The file as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn entries(&self) -> Entries {
        self.unit.entries()
    }

    /// Decodes on a worker thread; `reply` gets the outcome there (keep
    /// it short: send it on).
    ///
    /// # Errors
    /// [`ScriptError::Backlog`] when the file has too many calls waiting.
    pub fn decode(
        &self,
        bytes: Vec<u8>,
        fport: u8,
        recv_ms: i64,
        reply: impl FnOnce(Result<Decoded, ScriptError>) + Send + 'static,
    ) -> Result<(), ScriptError> {
        self.decode_returning(bytes, fport, recv_ms, move |outcome, _| reply(outcome))
    }

    /// [`Self::decode`], the payload handed back with the outcome: a
    /// failure's log line shows it, so that it can be decoded again
    /// (`edge-gateway decode`), without a copy of every uplink's.
    ///
    /// # Errors
    /// [`ScriptError::Backlog`] when the file has too many calls waiting.
    pub fn decode_returning(
        &self,
        bytes: Vec<u8>,
        fport: u8,
        recv_ms: i64,
        reply: impl FnOnce(Result<Decoded, ScriptError>, Vec<u8>) + Send + 'static,
    ) -> Result<(), ScriptError> {
        let variables = Arc::clone(&self.variables);
        self.unit.submit(Box::new(move |engine: &mut Engine| {
            let input = UplinkInput {
                bytes: &bytes,
                fport: Some(fport),
                recv_ms,
                recv_text: None,
                variables: &variables,
                clock_ms: None,
            };
            let outcome = engine.decode(&input).and_then(checked_decode);
            let hit_limit = outcome.as_ref().is_err_and(ScriptError::spoils);
            reply(outcome, bytes);
            hit_limit
        }))
    }

    /// Encodes `data` on a worker thread; `reply` gets the outcome there.
    ///
    /// # Errors
    /// [`ScriptError::Backlog`] when the file has too many calls waiting.
    pub fn encode(
        &self,
        data: serde_json::Value,
        fport: Option<u8>,
        reply: impl FnOnce(Result<Encoded, ScriptError>) + Send + 'static,
    ) -> Result<(), ScriptError> {
        let variables = Arc::clone(&self.variables);
        self.unit.submit(Box::new(move |engine: &mut Engine| {
            let outcome = engine
                .encode(&data, fport, &variables, None)
                .and_then(checked_encode);
            let hit_limit = outcome.as_ref().is_err_and(ScriptError::spoils);
            reply(outcome);
            hit_limit
        }))
    }

    /// Decodes and waits for the whole result, `errors` included (not
    /// turned into [`ScriptError::Reported`]): for tools, not for the
    /// async runtime's threads.
    ///
    /// # Errors
    /// What the script threw, or the limit it reached.
    pub fn decode_blocking(
        &self,
        bytes: Vec<u8>,
        fport: u8,
        recv_ms: i64,
    ) -> Result<Decoded, ScriptError> {
        self.decode_blocking_at(bytes, fport, recv_ms, None)
    }

    /// [`Self::decode_blocking`] with the codec's clock stopped at
    /// `clock_ms` (`new Date()` reads it; `None`: the machine's clock),
    /// for a payload decoded after the fact.
    ///
    /// # Errors
    /// What the script threw, or the limit it reached.
    pub fn decode_blocking_at(
        &self,
        bytes: Vec<u8>,
        fport: u8,
        recv_ms: i64,
        clock_ms: Option<i64>,
    ) -> Result<Decoded, ScriptError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let variables = Arc::clone(&self.variables);
        self.unit.submit(Box::new(move |engine: &mut Engine| {
            let input = UplinkInput {
                bytes: &bytes,
                fport: Some(fport),
                recv_ms,
                recv_text: None,
                variables: &variables,
                clock_ms,
            };
            let outcome = engine.decode(&input).map(|result| Decoded { result });
            let hit_limit = outcome.as_ref().is_err_and(ScriptError::spoils);
            let _ = tx.send(outcome);
            hit_limit
        }))?;
        rx.recv()
            .unwrap_or_else(|_| Err(ScriptError::Engine("the worker stopped".into())))
    }

    /// [`Self::decode_blocking`] from a task of the async runtime: the
    /// script runs on a codec worker while this thread waits outside the
    /// runtime's workers (`block_in_place`), so the runtime's other tasks
    /// go on meanwhile. On a current-thread runtime (or none) it waits
    /// where it is.
    ///
    /// # Errors
    /// What the script threw, or the limit it reached.
    pub fn decode_waiting(
        &self,
        bytes: Vec<u8>,
        fport: u8,
        recv_ms: i64,
    ) -> Result<Decoded, ScriptError> {
        let wait = || self.decode_blocking(bytes, fport, recv_ms);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// [`Self::encode`], waiting for the outcome.
    ///
    /// # Errors
    /// What the call gave.
    pub fn encode_blocking(
        &self,
        data: serde_json::Value,
        fport: Option<u8>,
    ) -> Result<Encoded, ScriptError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.encode(data, fport, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv()
            .unwrap_or_else(|_| Err(ScriptError::Engine("the worker stopped".into())))
    }
}

/// A codec file's text, refused past [`MAX_FILE`] bytes.
fn read_source(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, the most a codec file may be",
                MAX_FILE >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Compiles on a thread of its own: loading runs the file's top level,
/// and the caller may be an async runtime's thread (a reload).
fn compile(source: &Arc<str>, name: &str, limits: Limits) -> Result<Engine, ScriptError> {
    let source = Arc::clone(source);
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("js-codec-load".into())
            .stack_size(pool::WORKER_STACK)
            .spawn_scoped(s, || Engine::new(source, name, limits))
            .map_err(|e| ScriptError::Engine(e.to_string()))?
            .join()
            .unwrap_or_else(|_| Err(ScriptError::Engine("loading panicked".into())))
    })
}

fn checked_decode(result: serde_json::Value) -> Result<Decoded, ScriptError> {
    let decoded = Decoded { result };
    let errors = decoded.errors();
    if !errors.is_empty() {
        return Err(ScriptError::Reported(clipped_list(&errors)));
    }
    Ok(decoded)
}

fn checked_encode(result: serde_json::Value) -> Result<Encoded, ScriptError> {
    let errors = strings(result.get("errors"));
    if !errors.is_empty() {
        return Err(ScriptError::Reported(clipped_list(&errors)));
    }
    // As ChirpStack reads them: numbers cast to bytes (saturating).
    let bytes = match result.get("bytes") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0) as u8)
            .collect(),
        _ => Vec::new(),
    };
    // A port past a byte is refused as given: cast first, 300 was refused
    // as "FPort 255", a port the codec never wrote.
    let fport = match result.get("fPort").and_then(serde_json::Value::as_f64) {
        Some(p) if p.fract() == 0.0 && (0.0..=255.0).contains(&p) => Some(p as u8),
        Some(p) => {
            return Err(ScriptError::Result(format!(
                "fPort {p} is not an application port (1 to 223)"
            )))
        }
        None => None,
    };
    Ok(Encoded {
        bytes,
        fport,
        warnings: strings(result.get("warnings")),
    })
}

/// The Buffer library as a codec's context loads it (one script whose
/// value is `Buffer`): for the benchmark's ChirpStack-way baseline.
pub fn buffer_library() -> &'static str {
    engine::BUFFER_JS
}

/// `js:FILE` → `FILE`, for any `codec` value.
pub fn script_path(codec: &str) -> Option<&str> {
    codec.strip_prefix(PREFIX)
}

/// A `js:` path as configured, resolved against the config file's
/// directory (relative paths) or taken as is.
pub fn resolve(file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match gateway_core::config::base_dir::get() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
