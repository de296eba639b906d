//! One config from layers: the file given with `-c`, then every
//! `conf.d/*.toml` beside it in name order, then the configuration pushed
//! from the cloud when `[remote_config]` is on ([`read_with_pushed`],
//! read like one more drop-in), then `EDGE_GATEWAY__SECTION__KEY`
//! environment variables.
//!
//! Debian packages and operators add an adapter by dropping a file into
//! `conf.d/` without editing the conffile (which would make every upgrade
//! ask about it); container users set URLs and secrets from the environment.
//!
//! Merge rules:
//! - tables merge key by key, and a later layer's value wins;
//! - an array whose elements are all tables (`[[adapter]]`, `[[device]]`,
//!   `[[rule]]`, `[[lorawan.device]]`, and any later one) is **appended** to
//!   the same array of earlier layers, so a drop-in adds an adapter; any
//!   other array (`topics = [...]`) is replaced as a whole, like a scalar;
//! - a variable `EDGE_GATEWAY__A__B__C` sets key `c` of table `a.b`: the
//!   prefix and the separator are double underscores so that keys keep their
//!   own single ones (`EDGE_GATEWAY__UPSTREAM__MAX_BACKOFF`), and names are
//!   lowercased. Entries of arrays of tables cannot be addressed (their
//!   index depends on which drop-ins exist): that is what drop-ins are for.
//!   The value is a TOML value where it reads as one (`7`, `true`, `1.5`,
//!   `["a", "b"]`, `"quoted"`), else the text itself; when the files already
//!   set that key to a string, the text is taken as a string as it is (so
//!   `EDGE_GATEWAY__GATEWAY__ID=1234` stays the id `"1234"`).
//!
//! Every value remembers the layer that last set it, so a problem found by
//! the typed parse of the merged table is reported with the drop-in or the
//! variable it came from ([`Layers::source_of`]).
//!
//! This is a small merge of `toml::Value`s rather than the `config` crate:
//! measured with config 0.15.27, arrays from a later source replace earlier
//! ones (config-rs #67) so `[[adapter]]` would have to be split out of every
//! file and appended here anyway; array elements lose their origin; the
//! origin of a file is its path relative to the process's working
//! directory; and every environment value's origin is just "the
//! environment", not the variable. The typed parse, its `deny_unknown_fields`
//! messages and its key paths all work on `toml::Value`, which this keeps.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::load::{join, Problems};

/// Prefix of the variables that override keys.
pub const ENV_PREFIX: &str = "EDGE_GATEWAY__";
/// Separates sections and keys in a variable's name.
pub const ENV_SEPARATOR: &str = "__";
/// The drop-in directory, beside the `-c` file.
pub const DROP_IN_DIR: &str = "conf.d";
/// What `--print` shows instead of a secret.
pub const REDACTED: &str = super::secret::REDACTED;

/// Which layer set a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The file given with `-c`.
    Main,
    /// A drop-in, named relative to the main file's directory
    /// (`conf.d/20-site.toml`): the name an operator recognises.
    DropIn(String),
    /// The layer pushed from the cloud (`[remote_config]`), by how logs
    /// name it (`pushed configuration v2 (serial 2)`).
    Pushed(String),
    /// An environment variable, by name.
    Env(String),
}

impl Origin {
    /// How problems name it; the main file is named once by the caller.
    fn label(&self) -> Option<String> {
        match self {
            Self::Main => None,
            Self::DropIn(name) | Self::Pushed(name) | Self::Env(name) => Some(name.clone()),
        }
    }
}

/// A file or directory of the config that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    /// The file or directory, as it was reached from the `-c` path.
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The merged table, where each value came from, and the problems found
/// while merging (a drop-in that is not TOML, a malformed variable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layers {
    root: toml::Table,
    /// Key path → the layer that last set it. A path not listed inherits
    /// its parent's origin (a key of a table that one layer inserted whole).
    origins: BTreeMap<String, Origin>,
    /// Every layer applied, in order, as named in `--print`'s header.
    sources: Vec<String>,
    problems: Problems,
}

impl Layers {
    /// The merged root table.
    pub fn root(&self) -> &toml::Table {
        &self.root
    }

    /// Problems found while reading and merging (before the typed parse).
    pub fn problems(&self) -> &Problems {
        &self.problems
    }

    /// The layers applied, in order: the main file, drop-ins, variables.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The layer that set `path` (`adapter[2].colour`), or the nearest
    /// enclosing value's.
    pub fn origin_of(&self, path: &str) -> Option<&Origin> {
        let mut at = path;
        loop {
            if let Some(origin) = self.origins.get(at) {
                return Some(origin);
            }
            at = parent(at)?;
        }
    }

    /// The drop-in or variable that set `path`; `None` for the main file.
    pub fn source_of(&self, path: &str) -> Option<String> {
        self.origin_of(path).and_then(Origin::label)
    }

    /// Parses `text` and merges it as the next layer; a syntax error is
    /// recorded as a problem of that layer, which is then left out.
    pub fn merge_text(&mut self, text: &str, origin: Origin, name: &str) {
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => self.merge(table, origin, name),
            Err(e) => {
                let found = super::syntax::describe(text, &e);
                match origin.label() {
                    Some(source) => self.problems.push_from(source, found.path, found.message),
                    None => self.problems.push(found.path, found.message),
                }
            }
        }
    }

    /// Merges `layer` over what is there: tables key by key, arrays of
    /// tables appended, everything else replaced.
    pub fn merge(&mut self, layer: toml::Table, origin: Origin, name: &str) {
        merge_table(&mut self.root, layer, "", &origin, &mut self.origins);
        self.sources.push(name.to_string());
    }

    /// Applies every `EDGE_GATEWAY__…` variable of `vars` (others are
    /// ignored), in name order so the result does not depend on the order
    /// the process environment happens to list them.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) {
        let mut ours: Vec<(String, Option<String>)> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(ENV_PREFIX)
                    .then(|| (name, value.into_string().ok()))
            })
            .collect();
        ours.sort();
        for (name, value) in ours {
            self.set_from_env(&name, value);
        }
    }

    fn set_from_env(&mut self, name: &str, value: Option<String>) {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        let Some((last, parents)) = segments.split_last() else {
            return;
        };
        if segments.iter().any(String::is_empty) {
            self.problems.push_from(
                name,
                "",
                "expected EDGE_GATEWAY__SECTION__KEY: names separated by \"__\", none empty",
            );
            return;
        }
        let path = segments.join(".");
        let Some(raw) = value else {
            self.problems.push_from(name, path, "value is not UTF-8");
            return;
        };
        let origin = Origin::Env(name.to_string());
        let mut table = &mut self.root;
        let mut at = String::new();
        for segment in parents {
            at = join(&at, segment);
            if !table.contains_key(segment) {
                // A table only this variable created: problems about it
                // (an unknown section) must name the variable.
                self.origins.insert(at.clone(), origin.clone());
            }
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => table = t,
                toml::Value::Array(_) => {
                    self.problems.push_from(
                        name,
                        at,
                        "an array of tables: its entries cannot be set from the environment (add or change them in a conf.d drop-in)",
                    );
                    return;
                }
                _ => {
                    self.problems
                        .push_from(name, at, "not a table, so it has no keys to set");
                    return;
                }
            }
        }
        let current = table.get(last);
        let is_tables = match current {
            Some(toml::Value::Table(_)) => true,
            Some(toml::Value::Array(items)) => {
                !items.is_empty() && items.iter().all(toml::Value::is_table)
            }
            _ => false,
        };
        if is_tables {
            self.problems.push_from(
                name,
                path,
                "a table: set its keys one by one (EDGE_GATEWAY__SECTION__KEY), or use a conf.d drop-in",
            );
            return;
        }
        let value = env_value(&raw, current);
        table.insert(last.clone(), value);
        forget_below(&mut self.origins, &path);
        self.origins.insert(path, origin);
        self.sources.push(name.to_string());
    }

    /// The merged config as TOML with every secret replaced by
    /// `"<redacted>"`, headed by the layers it was merged from.
    ///
    /// # Errors
    /// When the table cannot be written as TOML (not expected of a table
    /// that was parsed from TOML).
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut root = self.root.clone();
        redact_table(&mut root);
        let body = toml::to_string(&root)?;
        let mut out = String::from("# Merged, in this order, from:\n");
        for source in &self.sources {
            out.push_str("#   ");
            out.push_str(source);
            out.push('\n');
        }
        out.push_str("# Keys not shown take their defaults (see `edge-gateway configfile`).\n\n");
        out.push_str(&body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }
}

/// Reads the file at `main`, then `conf.d/*.toml` beside it in name order,
/// then applies the `EDGE_GATEWAY__` variables of `env`.
///
/// # Errors
/// A file or the drop-in directory that exists but cannot be read. Syntax
/// errors and malformed variables are not errors here: they are collected
/// in [`Layers::problems`] with everything the typed parse finds.
pub fn read(
    main: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Layers, ReadError> {
    read_with_pushed(main, None, env)
}

/// A layer pushed from the cloud: its TOML and how problems name it.
#[derive(Debug, Clone, Copy)]
pub struct PushedLayer<'a> {
    pub label: &'a str,
    pub text: &'a str,
}

/// Like [`read`], with the pushed layer (`[remote_config]`) merged after
/// the drop-ins and before the variables: the cloud's configuration
/// overrides the local files the way a last drop-in would, and the
/// process's environment (the service's secrets and overrides) stays last.
///
/// # Errors
/// As [`read`].
pub fn read_with_pushed(
    main: &Path,
    pushed: Option<PushedLayer<'_>>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Layers, ReadError> {
    let mut layers = Layers::default();
    layers.merge_text(&read_text(main)?, Origin::Main, &main.display().to_string());
    for file in drop_in_files(&drop_in_dir(main))? {
        let label = format!(
            "{DROP_IN_DIR}/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        layers.merge_text(&read_text(&file)?, Origin::DropIn(label.clone()), &label);
    }
    if let Some(p) = pushed {
        layers.merge_text(p.text, Origin::Pushed(p.label.to_string()), p.label);
    }
    layers.apply_env(env);
    Ok(layers)
}

/// `conf.d/` beside the config file.
pub fn drop_in_dir(main: &Path) -> PathBuf {
    main.parent().unwrap_or(Path::new("")).join(DROP_IN_DIR)
}

/// The drop-ins of `dir` in name (byte) order: regular files (or links to
/// them) named `*.toml`, except hidden ones (editors' and dpkg's temporary
/// files start with a dot). No directory means no drop-ins.
///
/// # Errors
/// `dir` exists but cannot be listed, or one of its entries cannot be
/// examined (a dangling link).
pub fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(err(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        if std::fs::metadata(&path).map_err(err(&path))?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_text(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_path_buf(),
        source,
    })
}

fn is_array_of_tables(items: &[toml::Value]) -> bool {
    items.iter().all(toml::Value::is_table)
}

fn merge_table(
    base: &mut toml::Table,
    layer: toml::Table,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in layer {
        let path = join(prefix, &key);
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => {
                merge_table(b, l, &path, origin, origins);
            }
            // Both arrays of tables (an empty array counts as one: it adds
            // nothing, rather than deleting what earlier files declared).
            (Some(toml::Value::Array(b)), toml::Value::Array(l))
                if is_array_of_tables(b) && is_array_of_tables(&l) =>
            {
                for item in l {
                    origins.insert(format!("{path}[{}]", b.len()), origin.clone());
                    b.push(item);
                }
            }
            (_, value) => {
                forget_below(origins, &path);
                origins.insert(path, origin.clone());
                base.insert(key, value);
            }
        }
    }
}

/// Drops the origins recorded inside `path`, whose value was just replaced.
fn forget_below(origins: &mut BTreeMap<String, Origin>, path: &str) {
    origins.retain(|k, _| {
        !(k.len() > path.len()
            && k.starts_with(path)
            && matches!(k.as_bytes()[path.len()], b'.' | b'['))
    });
}

/// `adapter[2].colour` → `adapter[2]` → `adapter` → none.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// A variable's text as a TOML value (see the module doc).
fn env_value(raw: &str, current: Option<&toml::Value>) -> toml::Value {
    let quoted = raw.starts_with(['"', '\'']);
    if matches!(current, Some(toml::Value::String(_))) && !quoted {
        return toml::Value::String(raw.to_string());
    }
    match toml::from_str::<toml::Table>(&format!("value = {raw}")) {
        Ok(mut t) if t.len() == 1 => match t.remove("value") {
            Some(v) if !v.is_table() => v,
            _ => toml::Value::String(raw.to_string()),
        },
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Whether a key holds a secret itself, as opposed to naming one
/// (`password_env` names a variable; `client_key` is a file path).
///
/// The LoRaWAN session keys (`nwk_s_key`, `app_s_key`) are the only
/// literal secrets today; the word list covers the obvious names of any to
/// come (an InfluxDB `token`, a broker `password`, a DTLS `psk`). A
/// dashboard user's `password_hash` can be attacked offline: redacted too.
pub fn is_secret_key(key: &str) -> bool {
    key.ends_with("_s_key")
        || matches!(
            key,
            "app_key" | "nwk_key" | "key" | "key_hex" | "password_hash" | "bindkey"
        )
        || ["password", "token", "secret", "psk"]
            .iter()
            .any(|word| key == *word || key.ends_with(&format!("_{word}")))
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        // A section named like a secret (`[[coap.psk]]`) holds secrets and
        // names: its own secret keys are redacted one by one.
        let nested = value.is_table()
            || value
                .as_array()
                .is_some_and(|a| a.iter().all(toml::Value::is_table));
        if is_secret_key(key) && !nested {
            // `env:VAR` (LoRaWAN keys) names a variable: showing it helps
            // and gives nothing away.
            let reference = value.as_str().is_some_and(|s| s.starts_with("env:"));
            if !reference {
                *value = toml::Value::String(REDACTED.to_string());
            }
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        // A URL under any key (`url`, an action's `broker`, a key to come)
        // loses its user info: by the value's shape, not the key's name.
        toml::Value::String(text) => {
            if let std::borrow::Cow::Owned(shown) = super::secret::redact_url(text) {
                *text = shown;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "layers_tests.rs"]
mod tests;
