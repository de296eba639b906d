//! ETS's group-address export (ETS: Group Addresses, Export, CSV), read
//! into groups by one rule:
//!
//! - the **device** is the middle group's name (the main group's, in a
//!   2-level project), folded to lower case with `-` between words
//!   ("Living Room" → `living-room`, "Küche" → `kueche`, "Café" →
//!   `cafe`); a project whose
//!   main groups are the rooms sets `ets_device = "main"`, one whose
//!   middle names repeat under each floor `ets_device = "main_middle"`
//!   (`ground-floor-kitchen`);
//! - the **metric** is the address's own name, folded with `_`
//!   ("Temperature Actual" → `temperature_actual`); a name that two
//!   addresses of one device share takes the address
//!   (`temperature_1_2_3`), the name shortened to leave room for it in
//!   the 64 characters of a metric name;
//! - the **DPT** is the `DatapointType` column (`DPST-9-1` or `DPT-9`);
//!   an address without one, or with a type the gateway does not read,
//!   is left out (listed by `validate` and in the log at start);
//! - a `[[knx.group]]` with the same address replaces the row entirely
//!   (another device, metric, unit, `read_on_start`, `poll`, `writable`).
//!
//! ETS's three layouts are read: "1/1" (`Group name`, `Address`, …),
//! "3/1" (`Main`, `Middle`, `Sub`, `Address`, …) and "3/3" (three name
//! columns, then the address in three), with or without their header
//! line, separated by tabs,
//! semicolons or commas, every field quoted (a quoted field may hold line
//! breaks), in UTF-8 (with or without BOM), UTF-16 (ETS's "Unicode") or
//! Windows-1252 (ETS's "ANSI").

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gateway_core::config::Problems;
use gateway_core::model::{MAX_DEVICE_ID_LEN, MAX_METRIC_LEN};
use gateway_core::{DeviceId, MetricName};

use super::address::GroupAddress;
use super::dpt::Dpt;
use super::groups::KnxGroup;

// How names become ids: a file of its own, as the letters' table is long.
#[path = "ets_names.rs"]
mod names;
pub use names::fold;
use names::{cut, suffixed};

/// The export, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EtsExport {
    pub groups: Vec<KnxGroup>,
    /// "1/2/3 Ceiling light: no DPT", one per address left out (and per
    /// row whose address is not a group address).
    pub skipped: Vec<String>,
    /// What else was wrong with the file, where ("line 7: a quote is not
    /// closed; …").
    pub notes: Vec<String>,
}

/// Which group names an address's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceRule {
    /// The middle group (the main group's in a 2-level project).
    #[default]
    Middle,
    /// The main group.
    Main,
    /// Both, main first.
    MainMiddle,
}

/// The export of one knx adapter, read with the config.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterExport {
    /// The adapter's place in `[[adapter]]`, for the key paths of notes.
    pub index: usize,
    pub adapter: String,
    pub file: PathBuf,
    pub export: EtsExport,
}

/// Reads the export of each `type = "knx"` adapter of `root` that names
/// one (`group_addresses`); a file that cannot be read is a problem of
/// `adapter[i].group_addresses`. The adapter's other keys are checked
/// where the adapter is read.
pub fn of_adapters(root: &toml::Table, problems: &mut Problems) -> Vec<AdapterExport> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (index, a) in list.iter().enumerate() {
        let Some(a) = a.as_table() else { continue };
        if a.get("type").and_then(toml::Value::as_str) != Some(super::config::KIND) {
            continue;
        }
        let (Some(adapter), Some(file)) = (
            a.get("name").and_then(toml::Value::as_str),
            a.get("group_addresses").and_then(toml::Value::as_str),
        ) else {
            continue;
        };
        let rule = a
            .get("ets_device")
            .and_then(|v| v.clone().try_into::<DeviceRule>().ok())
            .unwrap_or_default();
        let file = beside_config(PathBuf::from(file));
        match read_file(&file, adapter, rule) {
            Ok(export) => out.push(AdapterExport {
                index,
                adapter: adapter.to_string(),
                file,
                export,
            }),
            Err(e) => problems.push(format!("adapter[{index}].group_addresses"), e),
        }
    }
    out
}

/// A relative `group_addresses` is the config file's neighbour
/// (`/etc/edge-gateway/knx-ga.csv` for `"knx-ga.csv"`), as a `js:` codec's
/// script is: the packaged service runs in `/`, where nobody would look.
pub fn beside_config(file: PathBuf) -> PathBuf {
    match gateway_core::config::base_dir::get() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file,
    }
}

/// Reads the export at `path` for adapter `adapter`.
///
/// # Errors
/// A message for people: the file cannot be read, or is no ETS export.
pub fn read_file(path: &Path, adapter: &str, rule: DeviceRule) -> Result<EtsExport, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the ETS export {}: {e}", path.display()))?;
    parse_with(&text(&bytes), adapter, rule).map_err(|e| format!("{}: {e}", path.display()))
}

/// The file's text, whichever encoding ETS wrote it in.
fn text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |rest: &[u8], le: bool| -> String {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        // ETS's "ANSI": Windows-1252, Latin-1 but for 0x80 to 0x9F.
        Err(_) => bytes.iter().map(|&b| windows_1252(b)).collect(),
    }
}

/// Windows-1252's 0x80 to 0x9F: letters (`Š`, `œ`, `Ž`, …) and signs where
/// Latin-1 has control characters, which names would otherwise lose. Its
/// five unassigned bytes stay what Windows makes of them, the controls.
const WINDOWS_1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
];

fn windows_1252(b: u8) -> char {
    match b {
        0x80..=0x9F => WINDOWS_1252_HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// One record of the export, read from the start of a text.
struct Record {
    fields: Vec<String>,
    /// Bytes it took, its line break included.
    len: usize,
    /// Line breaks it took.
    lines: usize,
    /// The text ended inside a quoted field.
    open: bool,
}

/// The record at the start of `text`: fields separated by `sep`, quoted
/// or bare, `""` inside quotes a quote. A quoted field runs over line
/// breaks (RFC 4180: an ETS Description may hold several lines) when
/// `across_lines`; otherwise a line break ends the record wherever it is.
fn record(text: &str, sep: char, across_lines: bool) -> Record {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut lines = 0;
    let mut end = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' if quoted && chars.peek().map(|&(_, c)| c) == Some('"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted || !across_lines => {
                let mut e = i + 1;
                if c == '\r' && chars.peek().map(|&(_, c)| c) == Some('\n') {
                    e += 1;
                }
                lines += 1;
                end = Some(e);
                break;
            }
            c if c == sep && !quoted => fields.push(std::mem::take(&mut field)),
            c => {
                lines += usize::from(c == '\n');
                field.push(c);
            }
        }
    }
    fields.push(field);
    Record {
        fields: fields.into_iter().map(|f| f.trim().to_string()).collect(),
        len: end.unwrap_or(text.len()),
        lines,
        open: end.is_none() && quoted && across_lines,
    }
}

/// The export's records, blank ones left out. A quote never closed would
/// make the rest of the file one field: the record it opens in is read
/// line by line instead, as are the ones after it until the quotes pair
/// again, and `notes` says where.
fn records(text: &str, sep: char, notes: &mut Vec<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while !rest.is_empty() {
        let mut r = record(rest, sep, true);
        if r.open {
            notes.push(format!(
                "line {line}: a quote is not closed; the line was read on its own"
            ));
            r = record(rest, sep, false);
        }
        line += r.lines;
        rest = rest.get(r.len..).unwrap_or_default();
        if r.fields.iter().any(|f| !f.is_empty()) {
            out.push(r.fields);
        }
    }
    out
}

/// The separator of the export: a tab, else a semicolon, else a comma,
/// whichever is in its first record outside quotes (a name may hold
/// any of them).
fn separator(text: &str) -> char {
    let mut seen = [false; 3];
    let mut quoted = false;
    let mut content = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted && content => break,
            '\t' | ';' | ',' if !quoted => {
                let i = match c {
                    '\t' => 0,
                    ';' => 1,
                    _ => 2,
                };
                seen[i] = true;
                content = true;
            }
            c if !c.is_whitespace() => content = true,
            _ => {}
        }
    }
    ['\t', ';', ',']
        .into_iter()
        .zip(seen)
        .find_map(|(c, seen)| seen.then_some(c))
        .unwrap_or('\t')
}

/// The columns of an export written without its header line (ETS's
/// "Export header line" unticked), told by where the first row (a main
/// group's) has its address; `None` when `first` is no such row.
fn headerless_columns(first: &[String]) -> Option<Vec<String>> {
    const TAIL: [&str; 5] = [
        "central",
        "unfiltered",
        "description",
        "datapointtype",
        "security",
    ];
    let is_address = |i: usize| first.get(i).is_some_and(|c| row(c).is_some());
    let head: &[&str] = if is_address(1) {
        &["group name", "address"]
    } else if is_address(3) && first.get(3).is_some_and(|c| c.contains('/')) {
        &["main", "middle", "sub", "address"]
    } else if first.len() == 11 && first.get(3).is_some_and(|c| c.parse::<u16>().is_ok()) {
        &["main", "middle", "sub", "main", "middle", "sub"]
    } else {
        return None;
    };
    Some(
        head.iter()
            .chain(TAIL.iter())
            .map(|c| c.to_string())
            .collect(),
    )
}

/// Where a row's address is: the `Address` column ("1/1", "3/1"), or
/// the second Main, Middle and Sub columns ("3/3").
#[derive(Clone, Copy)]
enum AddressColumns {
    One(usize),
    Three(usize, Option<usize>, Option<usize>),
}

/// What an `Address` cell names: a main group, a middle group, or an address.
enum Row {
    Main(u16),
    Middle(u16, u16),
    Address(GroupAddress),
}

fn row(address: &str) -> Option<Row> {
    let parts: Vec<&str> = address.split('/').collect();
    match parts.as_slice() {
        [main, "-", "-"] | [main, "-"] => main.parse().ok().map(Row::Main),
        [main, middle, "-"] => Some(Row::Middle(main.parse().ok()?, middle.parse().ok()?)),
        _ => address.parse().ok().map(Row::Address),
    }
}

/// Reads the export's text by the default rule (the middle group names
/// the device).
///
/// # Errors
/// A message for people when it has no `Address` column.
pub fn parse(text: &str, adapter: &str) -> Result<EtsExport, String> {
    parse_with(text, adapter, DeviceRule::Middle)
}

/// Reads the export's text, devices named by `rule`.
///
/// # Errors
/// A message for people when it has no `Address` column.
pub fn parse_with(text: &str, adapter: &str, rule: DeviceRule) -> Result<EtsExport, String> {
    let mut notes = Vec::new();
    let mut lines = records(text, separator(text), &mut notes).into_iter().peekable();
    let first = lines.peek().ok_or("the file is empty")?.clone();
    // ETS writes its column names in the language it runs in: the German
    // ones are read as their English twins.
    let named: Vec<String> = first
        .iter()
        .map(|c| {
            let c = c.to_lowercase();
            match c.as_str() {
                "adresse" => "address".to_string(),
                "datenpunkttyp" => "datapointtype".to_string(),
                "gruppenname" => "group name".to_string(),
                "hauptgruppe" => "main".to_string(),
                "mittelgruppe" => "middle".to_string(),
                "untergruppe" => "sub".to_string(),
                _ => c,
            }
        })
        .collect();
    let columns = match headerless_columns(&first) {
        Some(columns) if !named.iter().any(|c| c == "address" || c == "main") => columns,
        _ => {
            lines.next();
            named
        }
    };
    let col = |name: &str| columns.iter().position(|c| c == name);
    // "3/3" has no Address column: its second Main, Middle and Sub
    // columns hold the address's numbers.
    let second = |name: &str| {
        let first = col(name)?;
        Some(first + 1 + columns[first + 1..].iter().position(|c| c == name)?)
    };
    let address_cols = match (col("address"), second("main")) {
        (Some(c), _) => AddressColumns::One(c),
        (None, Some(main)) => AddressColumns::Three(main, second("middle"), second("sub")),
        (None, None) => {
            return Err(
                "expected ETS's group address export (a header with \"Address\" and \"DatapointType\"): \
                 no Address column"
                    .into(),
            )
        }
    };
    let dpt_col = col("datapointtype");
    // "1/1": one name column; "3/1": the name in Main, Middle or Sub.
    let name_cols: Vec<usize> = match col("group name") {
        Some(c) => vec![c],
        None => ["sub", "middle", "main"]
            .iter()
            .filter_map(|n| col(n))
            .collect(),
    };
    let mut mains: HashMap<u16, String> = HashMap::new();
    let mut middles: HashMap<(u16, u16), String> = HashMap::new();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for f in lines {
        let cell = |i: Option<usize>| i.and_then(|i| f.get(i)).map(String::as_str).unwrap_or("");
        let name = name_cols
            .iter()
            .map(|&i| cell(Some(i)))
            .find(|n| !n.is_empty())
            .unwrap_or("")
            .to_string();
        let address = match address_cols {
            AddressColumns::One(c) => cell(Some(c)).to_string(),
            AddressColumns::Three(main, middle, sub) => {
                let (middle, sub) = (cell(middle), cell(sub));
                match (middle.is_empty(), sub.is_empty()) {
                    (true, true) => format!("{}/-/-", cell(Some(main))),
                    (false, true) => format!("{}/{middle}/-", cell(Some(main))),
                    // A 2-level project: main and sub.
                    (true, false) => format!("{}/{sub}", cell(Some(main))),
                    (false, false) => format!("{}/{middle}/{sub}", cell(Some(main))),
                }
            }
        };
        match row(&address) {
            Some(Row::Main(m)) => {
                mains.insert(m, name);
            }
            Some(Row::Middle(m, s)) => {
                middles.insert((m, s), name);
            }
            Some(Row::Address(a)) => rows.push((a, name, cell(dpt_col).to_string())),
            // A cell with digits that names no group ("99999/1/1",
            // "1/2/3/4") is a typo worth a line; an empty one is not.
            None if address.bytes().any(|b| b.is_ascii_digit()) => {
                unreadable.push(format!("{address} {name}: not a group address"));
            }
            None => {}
        }
    }
    let mut out = EtsExport {
        skipped: unreadable,
        notes,
        ..EtsExport::default()
    };
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut made = Vec::new();
    for (address, name, dpt_text) in rows {
        let (main, middle) = (address.0 >> 11, (address.0 >> 8) & 0x7);
        let three_level = middles.keys().any(|(m, _)| *m == main) || mains.is_empty();
        let main_name = mains.get(&main).map(|n| fold(n, '-')).unwrap_or_default();
        let middle_name = if three_level {
            middles
                .get(&(main, middle))
                .map(|n| fold(n, '-'))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut device = match rule {
            DeviceRule::Middle if middle_name.is_empty() => main_name,
            DeviceRule::Middle => middle_name,
            DeviceRule::Main => main_name,
            DeviceRule::MainMiddle => [main_name, middle_name]
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
                .join("-"),
        };
        if device.is_empty() {
            device = format!("knx-{main}-{middle}");
        }
        // Two names of 64 characters joined are one too long for an id.
        cut(&mut device, MAX_DEVICE_ID_LEN, '-');
        let dpt = match dpt_text.parse::<Dpt>() {
            Ok(d) => d,
            Err(_) if dpt_text.is_empty() => {
                out.skipped.push(format!("{address} {name}: no DPT"));
                continue;
            }
            Err(_) => {
                out.skipped
                    .push(format!("{address} {name}: DPT {dpt_text} is not read"));
                continue;
            }
        };
        let mut metric = fold(&name, '_');
        if metric.is_empty() || metric.starts_with(|c: char| c.is_ascii_digit()) {
            metric = format!("ga_{}", address.to_string().replace('/', "_"));
        }
        *seen.entry((device.clone(), metric.clone())).or_default() += 1;
        made.push((address, device, metric, dpt));
    }
    for (address, device, metric, dpt) in made {
        let metric = if seen
            .get(&(device.clone(), metric.clone()))
            .copied()
            .unwrap_or(0)
            > 1
        {
            suffixed(
                &metric,
                &address.to_string().replace('/', "_"),
                MAX_METRIC_LEN,
            )
        } else {
            metric
        };
        let (Ok(device), Ok(metric)) = (DeviceId::new(device), MetricName::new(metric)) else {
            out.skipped
                .push(format!("{address}: no usable device or metric name"));
            continue;
        };
        out.groups.push(KnxGroup {
            adapter: Some(adapter.to_string()),
            address,
            state_address: None,
            dpt,
            device,
            metric,
            unit: dpt.unit().map(str::to_string),
            read_on_start: false,
            poll: None,
            writable: false,
            min: None,
            max: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "ets_tests.rs"]
mod tests;
