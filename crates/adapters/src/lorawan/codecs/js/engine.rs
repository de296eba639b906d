//! One codec file in QuickJS: its own runtime (so its own heap limit,
//! stack limit and clock), one context, the file compiled once into a
//! factory function, and the driver (`driver.js`) that runs each call from
//! a fresh instance of the file's top level.
//!
//! Synchronous and `Send`: the pool's worker threads own engines, never
//! the async runtime's threads. An engine whose call ran out of time,
//! memory or stack is rebuilt from its source before the next call: a
//! call cut short may have left the heap half-updated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Runtime};

use super::{Limits, ScriptError};

/// The driver's property on the global object (non-enumerable, read-only).
const DRIVER: &str = "__edge_gateway_codec__";
const DRIVER_JS: &str = include_str!("driver.js");

/// feross/buffer 6.0.3 with base64-js 1.5.1 and ieee754 1.2.1, the
/// libraries ChirpStack preloads, as one script that yields `Buffer`.
pub(super) const BUFFER_JS: &str = concat!(
    "(function () {\nvar mods = {};\n",
    "function define(name, body) { var module = { exports: {} }; ",
    "body(module.exports, function (n) { return mods[n]; }, module); ",
    "mods[name] = module.exports; }\n",
    "define('base64-js', function (exports, require, module) {\n",
    include_str!("vendor/base64-js.js"),
    "\n});\ndefine('ieee754', function (exports, require, module) {\n",
    include_str!("vendor/ieee754.js"),
    "\n});\ndefine('buffer', function (exports, require, module) {\n",
    include_str!("vendor/buffer.js"),
    "\n});\nreturn mods.buffer.Buffer;\n})()"
);

/// Heap a file may take to load, beyond a call's limit: Buffer and a
/// large vendor file compiled take a few MB.
const LOAD_HEAP: usize = 32 << 20;

/// Which entry points a file defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    pub decode: bool,
    pub encode: bool,
    pub normalize: bool,
}

/// A decode call's input, as `decodeUplink` receives it.
#[derive(Debug, Clone, Copy)]
pub struct UplinkInput<'a> {
    pub bytes: &'a [u8],
    /// `None` only for a test vector without one (`undefined`, as a
    /// JavaScript runner passes it).
    pub fport: Option<u8>,
    /// `recvTime`, in milliseconds since the Unix epoch (a `Date`).
    pub recv_ms: i64,
    /// `recvTime` as a test vector gives it (its text, not a `Date`), as
    /// a JavaScript runner hands the vector's input over.
    pub recv_text: Option<&'a str>,
    pub variables: &'a BTreeMap<String, String>,
    /// The instant, in milliseconds since the Unix epoch, that `new
    /// Date()` and `Date.now()` read during the call (a test's fixed
    /// clock); `None`: the machine's clock, as every uplink gets.
    pub clock_ms: Option<i64>,
}

pub struct Engine {
    // Declared before `runtime`: a context is freed before its runtime.
    context: Context,
    runtime: Runtime,
    /// The current call's deadline in nanoseconds since `epoch`; 0: none.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    source: Arc<str>,
    file: String,
    limits: Limits,
    entries: Entries,
    /// A call ended by a limit: rebuild before the next one.
    spoilt: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("file", &self.file)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Compiles `source` (named `file` in messages) and runs its top level
    /// once to find its entry points.
    ///
    /// # Errors
    /// [`ScriptError::Syntax`] with the line; what the top level threw.
    pub fn new(source: Arc<str>, file: &str, limits: Limits) -> Result<Self, ScriptError> {
        let runtime = Runtime::new().map_err(|e| ScriptError::Engine(e.to_string()))?;
        runtime.set_max_stack_size(limits.stack);
        // Loading (Buffer, the file, its top level once) is bounded too;
        // the call's own limit is set once the loaded size is known.
        runtime.set_memory_limit(limits.memory.saturating_add(LOAD_HEAP));
        let deadline = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let watched = Arc::clone(&deadline);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let due = watched.load(Ordering::Relaxed);
            due != 0 && epoch.elapsed().as_nanos() as u64 > due
        })));
        let context = Context::full(&runtime).map_err(|e| ScriptError::Engine(e.to_string()))?;
        let mut engine = Self {
            context,
            runtime,
            deadline,
            epoch,
            source,
            file: file.to_string(),
            limits,
            entries: Entries::default(),
            spoilt: false,
        };
        engine.load()?;
        Ok(engine)
    }

    pub fn entries(&self) -> &Entries {
        &self.entries
    }

    /// Heap bytes the loaded file holds between calls.
    pub fn heap_bytes(&self) -> usize {
        usize::try_from(self.runtime.memory_usage().malloc_size).unwrap_or(0)
    }

    fn load(&mut self) -> Result<(), ScriptError> {
        let file = self.file.clone();
        let uses_buffer = self.source.contains("Buffer");
        // A `#!` line is only valid at the very start of a script; inside
        // the factory it must become a comment (same length, same lines).
        let text = self.source.strip_prefix('\u{feff}').unwrap_or(&self.source);
        let source_text = text.to_string();
        let body = match text.strip_prefix("#!") {
            Some(rest) => format!("//{rest}"),
            None => text.to_string(),
        };
        // The file's top level inside a function: compiled once, it runs
        // again per call with fresh `var`s and functions. No newline
        // before the source, so its line numbers are the file's.
        let wrapped = format!(
            "(function () {{{}\n;return {{ decodeUplink: typeof decodeUplink === 'function' ? decodeUplink : undefined, \
             encodeDownlink: typeof encodeDownlink === 'function' ? encodeDownlink : undefined, \
             Decode: typeof Decode === 'function' ? Decode : undefined, \
             Decoder: typeof Decoder === 'function' ? Decoder : undefined, \
             Encode: typeof Encode === 'function' ? Encode : undefined, \
             Encoder: typeof Encoder === 'function' ? Encoder : undefined, \
             normalizeUplink: typeof normalizeUplink === 'function' ? normalizeUplink : undefined }};\n}})",
            body
        );
        let loaded = self.context.with(|ctx| -> Result<(), ScriptError> {
            let globals = ctx.globals();
            if uses_buffer {
                let buffer: rquickjs::Value = ctx
                    .eval(BUFFER_JS)
                    .catch(&ctx)
                    .map_err(|e| ScriptError::Engine(format!("Buffer: {e}")))?;
                globals
                    .set("Buffer", buffer)
                    .map_err(|e| ScriptError::Engine(e.to_string()))?;
            }
            let mut options = EvalOptions::default();
            options.strict = false;
            options.global = true;
            options.filename = Some(file.clone());
            let factory: Function = ctx
                .eval_with_options(wrapped, options)
                .catch(&ctx)
                .map_err(|e| syntax_error(&file, e))?;
            let driver: Function = ctx
                .eval(DRIVER_JS)
                .catch(&ctx)
                .map_err(|e| ScriptError::Engine(format!("driver: {e}")))?;
            // The source too: the driver guards the built-ins its text
            // could change.
            driver
                .call::<_, ()>((factory, globals, DRIVER, source_text))
                .catch(&ctx)
                .map_err(|e| ScriptError::Engine(format!("driver: {e}")))?;
            Ok(())
        });
        loaded?;
        let names = self
            .call(|_, api| {
                let entries: Function = api.get("entries")?;
                entries.call::<_, String>(())
            })?
            .map_err(|e| match e {
                ScriptError::Thrown(m) => ScriptError::TopLevel(m),
                other => other,
            })?;
        let has = |name: &str| names.split(',').any(|n| n == name);
        self.entries = Entries {
            decode: has("decodeUplink") || has("Decode") || has("Decoder"),
            encode: has("encodeDownlink") || has("Encode") || has("Encoder"),
            normalize: has("normalizeUplink"),
        };
        // The limit is on what a call adds to what the loaded file holds.
        self.runtime.run_gc();
        self.runtime
            .set_memory_limit(self.heap_bytes().saturating_add(self.limits.memory));
        Ok(())
    }

    /// Runs `decodeUplink` (or `Decode`, `Decoder`): the JSON of
    /// `{data, errors, warnings}` (and `normalized`).
    ///
    /// # Errors
    /// What the script threw, or the limit it reached.
    pub fn decode(&mut self, input: &UplinkInput<'_>) -> Result<serde_json::Value, ScriptError> {
        let text = self.call(|ctx, api| {
            let decode: Function = api.get("decode")?;
            let variables = variables(&ctx, input.variables)?;
            let recv = match input.recv_text {
                Some(text) => rquickjs::String::from_str(ctx.clone(), text)?.into_value(),
                None => rquickjs::Value::new_number(ctx.clone(), input.recv_ms as f64),
            };
            let clock = clock_value(&ctx, input.clock_ms);
            decode.call::<_, String>((input.bytes, input.fport, recv, variables, clock))
        })??;
        parse(&text)
    }

    /// Runs `encodeDownlink` (or `Encode`, `Encoder`) on `data` (JSON):
    /// the JSON of `{bytes, fPort, errors, warnings}`.
    ///
    /// # Errors
    /// What the script threw, or the limit it reached.
    /// `clock_ms` as [`UplinkInput::clock_ms`].
    pub fn encode(
        &mut self,
        data: &serde_json::Value,
        fport: Option<u8>,
        variables: &BTreeMap<String, String>,
        clock_ms: Option<i64>,
    ) -> Result<serde_json::Value, ScriptError> {
        let json = data.to_string();
        let text = self.call(|ctx, api| {
            let encode: Function = api.get("encode")?;
            let data = ctx.json_parse(json)?;
            let variables = self::variables(&ctx, variables)?;
            let clock = clock_value(&ctx, clock_ms);
            encode.call::<_, String>((data, fport, variables, clock))
        })??;
        parse(&text)
    }

    /// Evaluates JavaScript `text` (a test-vector file: an object literal
    /// with comments and hex numbers) to JSON, in this engine's context.
    ///
    /// # Errors
    /// Its syntax error, or a value JSON cannot hold.
    pub fn literal(&mut self, text: &str, file: &str) -> Result<serde_json::Value, ScriptError> {
        // A byte-order mark or a closing `;` would break the parentheses.
        let text = text.trim_start_matches('\u{feff}').trim_end();
        let text = text.strip_suffix(';').unwrap_or(text);
        let wrapped = format!("JSON.stringify(({text}\n))");
        let file = file.to_string();
        let limit = self.limits.time;
        let started = Instant::now();
        self.arm();
        let out = self.context.with(|ctx| -> Result<String, ScriptError> {
            let mut options = EvalOptions::default();
            options.strict = false;
            options.global = true;
            options.filename = Some(file.clone());
            ctx.eval_with_options::<String, _>(wrapped, options)
                .catch(&ctx)
                .map_err(|e| match classify(e, started.elapsed(), limit) {
                    ScriptError::Thrown(m) => ScriptError::Thrown(m),
                    other => other,
                })
        });
        self.deadline.store(0, Ordering::Relaxed);
        parse(&out?)
    }

    /// Runs `f` on the driver under the time limit; rebuilds the engine
    /// first when the last call was cut short.
    fn call<R>(
        &mut self,
        f: impl for<'js> FnOnce(Ctx<'js>, Object<'js>) -> rquickjs::Result<R>,
    ) -> Result<Result<R, ScriptError>, ScriptError> {
        if self.spoilt {
            let fresh = Self::new(Arc::clone(&self.source), &self.file, self.limits)?;
            *self = fresh;
        }
        let limit = self.limits.time;
        let started = Instant::now();
        self.arm();
        let result = self.context.with(|ctx| {
            let api: Object = match ctx.globals().get(DRIVER) {
                Ok(api) => api,
                Err(e) => return Err(ScriptError::Engine(e.to_string())),
            };
            let result = f(ctx.clone(), api.clone())
                .catch(&ctx)
                .map_err(|e| classify(e, started.elapsed(), limit));
            // A built-in the call changed and the driver could not put
            // back (frozen, made non-configurable) would reach the next
            // call: that engine is not used again.
            let intact = api
                .get::<_, Function>("intact")
                .and_then(|f| f.call::<_, bool>(()))
                .unwrap_or(false);
            Ok((result, intact))
        });
        self.deadline.store(0, Ordering::Relaxed);
        let (result, intact) = match result {
            Ok(both) => both,
            Err(e) => (Err(e), true),
        };
        // Nothing runs a job a call queued (a promise reaction, a
        // microtask, a finalizer), as under ChirpStack's runtime dropped
        // after each call; kept, each would hold the call's closures until
        // the heap limit failed an uplink. Only a fresh runtime frees them.
        if !intact || self.runtime.is_job_pending() {
            self.spoilt = true;
        }
        if let Err(e) = &result {
            if e.spoils() {
                self.spoilt = true;
            }
        }
        Ok(result)
    }
}

impl Engine {
    /// Starts the clock of a call.
    fn arm(&self) {
        let due = self.epoch.elapsed().saturating_add(self.limits.time);
        self.deadline.store(
            u64::try_from(due.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

fn variables<'js>(
    ctx: &Ctx<'js>,
    vars: &BTreeMap<String, String>,
) -> rquickjs::Result<Object<'js>> {
    let obj = Object::new(ctx.clone())?;
    for (k, v) in vars {
        obj.set(k.as_str(), v.as_str())?;
    }
    Ok(obj)
}

/// A test's fixed clock for the driver: a number, or `undefined` for the
/// machine's clock.
fn clock_value<'js>(ctx: &Ctx<'js>, clock_ms: Option<i64>) -> rquickjs::Value<'js> {
    match clock_ms {
        Some(ms) => rquickjs::Value::new_number(ctx.clone(), ms as f64),
        None => rquickjs::Value::new_undefined(ctx.clone()),
    }
}

fn parse(text: &str) -> Result<serde_json::Value, ScriptError> {
    serde_json::from_str(&lone_surrogates_replaced(&super::nesting::cut(text)))
        .map_err(|e| ScriptError::Result(format!("not JSON: {e}")))
}

/// `text` with each `\u` escape of a lone surrogate as `\ufffd`, as
/// Node's `TextEncoder` and a UTF-8 reader replace one. A codec building
/// a string from 16-bit words (`String.fromCharCode(b[0] << 8 | b[1])`)
/// can make half a pair, which `JSON.stringify` writes as such an escape
/// and serde refuses: the whole decode failed where Node returns it.
fn lone_surrogates_replaced(text: &str) -> std::borrow::Cow<'_, str> {
    fn unit_at(b: &[u8], at: usize) -> Option<u16> {
        let hex = b.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut at, mut copied) = (0, 0);
    while at < b.len() {
        if b[at] != b'\\' {
            at += 1;
            continue;
        }
        let Some(unit) = unit_at(b, at) else {
            at += 2; // another escape: `\\`, `\"`, …
            continue;
        };
        let paired = match unit {
            0xD800..=0xDBFF => unit_at(b, at + 6).is_some_and(|u| (0xDC00..=0xDFFF).contains(&u)),
            0xDC00..=0xDFFF => false,
            _ => {
                at += 6;
                continue;
            }
        };
        if paired {
            at += 12;
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..at]);
        o.push_str("\\ufffd");
        at += 6;
        copied = at;
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

/// What a thrown value means: a limit reached, or the script's own error.
fn classify(e: CaughtError<'_>, took: Duration, limit: Duration) -> ScriptError {
    let (message, stack) = match &e {
        CaughtError::Exception(x) => (x.message().unwrap_or_default(), x.stack()),
        // QuickJS throws null when it cannot even allocate the error of an
        // out-of-memory (quickjs.c: "throw JS_NULL to avoid recursing"). A
        // codec that throws null itself is taken for one too: its engine
        // is rebuilt, which costs it nothing.
        CaughtError::Value(v) if v.is_null() => return ScriptError::OutOfMemory,
        CaughtError::Value(v) => (thrown_value(v), None),
        CaughtError::Error(rquickjs::Error::Allocation) => ("out of memory".into(), None),
        CaughtError::Error(other) => (other.to_string(), None),
    };
    if message == "interrupted" && took >= limit {
        return ScriptError::Timeout(limit);
    }
    // QuickJS's own words, whole: a codec's `new Error("sensor out of
    // memory flag")` is its error, not a limit reached.
    if message == "out of memory" {
        return ScriptError::OutOfMemory;
    }
    if message == "stack overflow" || message.starts_with("Maximum call stack") {
        return ScriptError::StackOverflow;
    }
    let name = match &e {
        CaughtError::Exception(x) => x
            .as_object()
            .get::<_, String>("name")
            .unwrap_or_else(|_| "Error".into()),
        _ => "thrown".into(),
    };
    let gateway = match &e {
        CaughtError::Exception(x) => x
            .as_object()
            .get::<_, bool>("gatewayResult")
            .unwrap_or(false),
        _ => false,
    };
    if gateway {
        return ScriptError::Result(super::clipped(&message).into_owned());
    }
    let at = stack
        .as_deref()
        .and_then(|s| s.lines().find(|l| l.trim_start().starts_with("at ")))
        .map(|l| format!(" ({})", l.trim()))
        .unwrap_or_default();
    ScriptError::Thrown(format!(
        "{}: {}{}",
        super::clipped(&name),
        super::clipped(&message),
        super::clipped(&at)
    ))
}

/// A thrown value that is not an `Error`, as a person reads it: a string
/// as it is, a number or boolean as written, anything else by its type
/// (converting an object to text would run its code again, after the call).
fn thrown_value(v: &rquickjs::Value<'_>) -> String {
    if let Some(text) = v.as_string().and_then(|s| s.to_string().ok()) {
        return text;
    }
    if let Some(n) = v.as_number() {
        return n.to_string();
    }
    if let Some(b) = v.as_bool() {
        return b.to_string();
    }
    if v.is_undefined() {
        return "undefined".into();
    }
    format!("{} (not an Error)", v.type_name())
}

/// A compile error as `file:line: message`.
fn syntax_error(file: &str, e: CaughtError<'_>) -> ScriptError {
    match e {
        CaughtError::Exception(x) => {
            let message = x.message().unwrap_or_default();
            let line = x.as_object().get::<_, i64>("lineNumber").ok().or_else(|| {
                x.stack().and_then(|s| {
                    let at = s.find(&format!("{file}:"))?;
                    let rest = &s[at + file.len() + 1..];
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
            });
            ScriptError::Syntax {
                file: file.to_string(),
                line: line.and_then(|l| u32::try_from(l).ok()),
                message,
            }
        }
        other => ScriptError::Syntax {
            file: file.to_string(),
            line: None,
            message: other.to_string(),
        },
    }
}
