//! Typed `gateway.toml`.
//!
//! Each section has one `Default` holding the real default values; the
//! `configfile` template is rendered from those same values, so the shipped
//! file and the code cannot disagree. Loading reports every problem with its
//! key path (see [`load`]); adapters plug their own `[[adapter]]` kinds, and
//! the top-level sections a protocol family needs (`[[lorawan.device]]`), in
//! through [`AdapterSpec`] without this crate knowing any protocol. A config
//! is the `-c` file with its `conf.d/` drop-ins and `EDGE_GATEWAY__`
//! variables merged over it ([`layers`]); the typed parse runs on the merged
//! table and names the drop-in or variable of each problem.

pub mod action;
pub mod base_dir;
pub mod broker;
pub mod commands;
pub mod dashboard;
pub mod home_assistant;
pub mod js_codecs;
mod kinds;
pub mod layers;
mod listeners;
pub mod load;
pub mod metrics;
pub mod names;
pub mod remote;
pub mod report;
pub mod rule;
pub mod secret;
mod sections;
pub mod syntax;
pub mod template;
pub mod values;

use std::collections::HashMap;
use std::fmt;

pub use action::{ActionConfig, ActionValue};
pub use broker::{BrokerSection, BROKER_KEYS};
pub use commands::CommandsConfig;
pub use dashboard::{DashboardConfig, DashboardUser};
pub use home_assistant::{HaState, HomeAssistantConfig};
pub use layers::{Layers, Origin};
pub use listeners::{Listener, Transport};
pub use load::{Problem, Problems};
pub use metrics::MetricsConfig;
pub use remote::RemoteConfig;
pub use rule::{Direction, RateSpec, RuleConfig, RuleKind, DEFAULT_SENSITIVITY};
pub use sections::*;
pub use values::{BrokerScheme, BrokerUrl, Qos};

/// The `[[adapter]]` kinds a build knows. Implemented by the adapters crate.
pub trait AdapterSpec: Sized {
    /// Every accepted `type` value.
    const KINDS: &'static [&'static str];

    /// Top-level sections owned by adapter families (`lorawan` for
    /// `[[lorawan.device]]`), accepted next to the core ones.
    const SECTIONS: &'static [&'static str];

    /// What those sections parse to (`()` when there are none). Its `Debug`
    /// ends up in logs: secrets in it must redact themselves.
    type Sections: fmt::Debug + Clone + PartialEq + Default;

    /// Parses the owned sections from the file's root table (only the keys
    /// in [`Self::SECTIONS`] are meant for it), recording problems with
    /// their full key paths.
    fn sections(root: &toml::Table, problems: &mut Problems) -> Self::Sections;

    /// Builds one adapter's config from its table (with `type` already
    /// removed), recording problems under `path`.
    fn from_table(
        kind: &str,
        table: toml::Value,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Self>;

    /// The adapter's unique name.
    fn name(&self) -> &str;

    /// The socket it listens on (its `bind`), if it listens at all.
    fn listens_on(&self) -> Option<(Transport, std::net::SocketAddr)> {
        None
    }
}

/// The `[[sink]]` kinds a build knows (outputs beside the MQTT upstream).
/// Implemented by the sinks crate, the way [`AdapterSpec`] is by adapters.
pub trait SinkSpec: Sized + fmt::Debug + Clone + PartialEq {
    /// Every accepted `type` value.
    const KINDS: &'static [&'static str];

    /// Builds one sink's config from its table (with `type` already
    /// removed), recording problems (unknown keys, unset secret variables)
    /// under `path`.
    fn from_table(
        kind: &str,
        table: toml::Value,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Self>;

    /// The sink's unique name.
    fn name(&self) -> &str;
}

/// A build without `[[sink]]` kinds: any `[[sink]]` table is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum NoSinks {}

impl SinkSpec for NoSinks {
    const KINDS: &'static [&'static str] = &[];

    fn from_table(_: &str, _: toml::Value, _: &str, _: &mut Problems) -> Option<Self> {
        None
    }

    fn name(&self) -> &str {
        match *self {}
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config<A: AdapterSpec, S: SinkSpec = NoSinks> {
    pub gateway: GatewayConfig,
    pub upstream: UpstreamConfig,
    pub aggregation: AggregationConfig,
    pub log: LogConfig,
    pub outbox: OutboxConfig,
    pub metrics: MetricsConfig,
    /// `[dashboard]`: local pages and on-device history.
    pub dashboard: DashboardConfig,
    /// `[home_assistant]`: MQTT discovery for Home Assistant.
    pub home_assistant: HomeAssistantConfig,
    /// `[commands]`: writes from the cloud broker to declared points.
    pub commands: CommandsConfig,
    /// `[remote_config]`: configuration pushed from the cloud broker.
    pub remote_config: RemoteConfig,
    pub adapters: Vec<A>,
    /// `[[sink]]`: outputs beside the MQTT upstream.
    pub sinks: Vec<S>,
    pub devices: Vec<DeviceConfig>,
    /// The adapter families' own sections.
    pub sections: A::Sections,
    pub rules: Vec<RuleConfig>,
    /// `[units]`: metric → unit where the usual one is wrong for every
    /// device (`battery = "V"`); see [`crate::units`].
    pub units: std::collections::BTreeMap<String, String>,
    /// `[[adapter]] units`, by adapter name: metric → unit for every
    /// device the adapter hears, between `[[device]] units` and `[units]`.
    pub adapter_units:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

const SECTIONS: &[&str] = &[
    "gateway",
    "upstream",
    "aggregation",
    "outbox",
    "log",
    "metrics",
    "dashboard",
    "home_assistant",
    "commands",
    "remote_config",
    "adapter",
    "sink",
    "device",
    "rule",
    "units",
    "js_codecs",
];

impl<A: AdapterSpec, S: SinkSpec> Config<A, S> {
    /// Parses and checks a config file's text.
    ///
    /// # Errors
    /// Every problem found, each with its key path.
    pub fn parse(text: &str) -> Result<Self, Problems> {
        let root: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let mut problems = Problems::default();
                let found = syntax::describe(text, &e);
                problems.push(found.path, found.message);
                return Err(problems);
            }
        };
        Self::parse_table(&root)
    }

    /// Checks the merged config of a file, its `conf.d/` drop-ins and the
    /// environment, and names the drop-in or variable each problem came from.
    ///
    /// # Errors
    /// Every problem found, each with its key path and source.
    pub fn from_layers(layers: &Layers) -> Result<Self, Problems> {
        // Merge problems (a drop-in that is not TOML, a variable naming a
        // table) first, then whatever the typed parse finds in the rest.
        let mut problems = layers.problems().clone();
        match Self::parse_table(layers.root()) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(problems),
            Err(mut found) => {
                found.attribute(|path| layers.source_of(path));
                problems.extend(found);
                Err(problems)
            }
        }
    }

    /// Checks an already parsed root table.
    ///
    /// # Errors
    /// Every problem found, each with its key path.
    pub fn parse_table(root: &toml::Table) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        for key in root.keys() {
            if !SECTIONS.contains(&key.as_str()) && !A::SECTIONS.contains(&key.as_str()) {
                let known: Vec<&str> = SECTIONS.iter().chain(A::SECTIONS).copied().collect();
                problems.push(
                    key.clone(),
                    format!("unknown section, expected one of {}", known.join(", ")),
                );
            }
        }
        let table = |name: &str| {
            root.get(name)
                .cloned()
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()))
        };
        // Known to every section that names a codec by `js:` while they
        // are parsed (compiled there, so `validate` names their errors).
        let _codecs = js_codecs::scope(js_codecs::parse(root.get("js_codecs"), &mut problems));
        let gateway = load::section::<GatewayConfig>(table("gateway"), "gateway", &mut problems);
        let upstream = UpstreamConfig::load(root.get("upstream").cloned(), &mut problems);
        let aggregation =
            load::section::<AggregationConfig>(table("aggregation"), "aggregation", &mut problems);
        let log = load::section::<LogConfig>(table("log"), "log", &mut problems);
        let outbox = load::section::<OutboxConfig>(table("outbox"), "outbox", &mut problems);
        let metrics = load::section::<MetricsConfig>(table("metrics"), "metrics", &mut problems);
        let dashboard =
            load::section::<DashboardConfig>(table("dashboard"), "dashboard", &mut problems);
        if let Some(d) = &dashboard {
            d.validate(&mut problems);
        }
        let home_assistant = load::section::<HomeAssistantConfig>(
            table("home_assistant"),
            "home_assistant",
            &mut problems,
        );
        if let Some(h) = &home_assistant {
            h.validate(&mut problems);
        }
        if let Some(o) = &outbox {
            o.validate(&mut problems);
        }
        let commands =
            load::section::<CommandsConfig>(table("commands"), "commands", &mut problems);
        if let (Some(c), Some(u)) = (&commands, &upstream) {
            let ha_commands = home_assistant
                .as_ref()
                .is_some_and(|h| h.enabled && h.commands);
            // Rule actions run under its limits too.
            let actions = root
                .get("rule")
                .and_then(toml::Value::as_array)
                .is_some_and(|rules| rules.iter().any(|r| r.get("action").is_some()));
            c.validate(u.enabled, ha_commands || actions, &mut problems);
        }
        let remote_config =
            load::section::<RemoteConfig>(table("remote_config"), "remote_config", &mut problems);
        if let (Some(r), Some(u)) = (&remote_config, &upstream) {
            let sections: Vec<&str> = SECTIONS.iter().chain(A::SECTIONS).copied().collect();
            r.validate(u.enabled, &sections, &mut problems);
        }
        // `units` is the same key on every kind: taken out here, so no
        // adapter kind has to know it.
        let (adapter_tables, units_by_index) =
            take_adapter_units(root.get("adapter"), &mut problems);
        let adapters = parse_kinds(
            adapter_tables.as_ref(),
            "adapter",
            A::KINDS,
            A::from_table,
            &mut problems,
        );
        let sinks = parse_kinds(
            root.get("sink"),
            "sink",
            S::KINDS,
            S::from_table,
            &mut problems,
        );
        let devices = parse_array::<DeviceConfig>(root.get("device"), "device", &mut problems);
        let sections = A::sections(root, &mut problems);
        let rules = parse_array::<RuleConfig>(root.get("rule"), "rule", &mut problems);
        let units = load::section::<std::collections::BTreeMap<String, String>>(
            table("units"),
            "units",
            &mut problems,
        )
        .unwrap_or_default();
        for (i, r) in &rules {
            r.validate(&format!("rule[{i}]"), &mut problems);
        }
        check_unique(
            rules.iter().map(|(i, r)| (*i, r.name.as_str())),
            "rule",
            "name",
            "rule name",
            &mut problems,
        );

        if let Some(g) = &gateway {
            g.validate(&mut problems);
        }
        // A disabled upstream's keys are parsed (a misspelt one is still
        // named) but not checked: its password variable need not be set.
        if let Some(u) = upstream.as_ref().filter(|u| u.enabled) {
            u.validate(&mut problems);
        }
        if let Some(a) = &aggregation {
            a.validate(&mut problems);
        }
        check_unique(
            devices.iter().map(|(i, d)| (*i, d.id.as_str())),
            "device",
            "id",
            "device id",
            &mut problems,
        );
        check_unique(
            adapters.iter().map(|(i, a)| (*i, a.name())),
            "adapter",
            "name",
            "adapter name",
            &mut problems,
        );
        check_unique(
            sinks.iter().map(|(i, s)| (*i, s.name())),
            "sink",
            "name",
            "sink name",
            &mut problems,
        );
        let mut listening: Vec<Listener> = adapters
            .iter()
            .filter_map(|(i, a)| {
                let (transport, addr) = a.listens_on()?;
                Some(Listener {
                    key: format!("adapter[{i}]"),
                    transport,
                    addr,
                })
            })
            .collect();
        let http = [
            (
                "metrics",
                metrics.as_ref().filter(|m| m.enabled).map(|m| m.bind),
            ),
            (
                "dashboard",
                dashboard.as_ref().filter(|d| d.enabled).map(|d| d.bind),
            ),
        ];
        for (key, bind) in http {
            if let Some(addr) = bind {
                listening.push(Listener {
                    key: key.into(),
                    transport: Transport::Tcp,
                    addr,
                });
            }
        }
        listeners::check(&listening, &mut problems);
        let named = adapters
            .iter()
            .map(|(i, a)| ("adapter", *i, a.name()))
            .chain(sinks.iter().map(|(i, s)| ("sink", *i, s.name())))
            .chain(rules.iter().map(|(i, r)| ("rule", *i, r.name.as_str())));
        for (section, i, name) in named {
            if let Err(e) = names::check(name, &[]) {
                problems.push(format!("{section}[{i}].name"), e);
            }
        }

        match (
            gateway,
            upstream,
            aggregation,
            log,
            outbox,
            metrics,
            dashboard,
            home_assistant,
            commands,
            remote_config,
        ) {
            (
                Some(gateway),
                Some(upstream),
                Some(aggregation),
                Some(log),
                Some(outbox),
                Some(metrics),
                Some(dashboard),
                Some(home_assistant),
                Some(commands),
                Some(remote_config),
            ) if problems.is_empty() => Ok(Self {
                gateway,
                upstream,
                aggregation,
                log,
                outbox,
                metrics,
                dashboard,
                home_assistant,
                commands,
                remote_config,
                sinks: sinks.into_iter().map(|(_, s)| s).collect(),
                devices: devices.into_iter().map(|(_, d)| d).collect(),
                sections,
                rules: rules.into_iter().map(|(_, r)| r).collect(),
                units,
                adapter_units: adapters
                    .iter()
                    .filter_map(|(i, a)| {
                        let units = units_by_index.get(i)?.clone();
                        Some((a.name().to_string(), units))
                    })
                    .collect(),
                adapters: adapters.into_iter().map(|(_, a)| a).collect(),
            }),
            _ => Err(problems),
        }
    }

    /// `[units]` and every `[[adapter]] units`, found through `sources`.
    pub fn units(&self, sources: crate::component::Sources) -> crate::units::Units {
        crate::units::Units::new(self.units.clone())
            .with_adapters(self.adapter_units.clone(), sources)
    }

    /// Home Assistant's controls are on: its command topics are taken.
    pub fn home_assistant_commands(&self) -> bool {
        self.home_assistant.enabled && self.home_assistant.commands
    }

    /// A rule has a local action (each runs as a command).
    pub fn rule_actions(&self) -> bool {
        self.rules.iter().any(|r| r.action.is_some())
    }

    /// Commands run at all: from the cloud broker (which needs the
    /// upstream), from Home Assistant's or from the rules' actions.
    pub fn commands_run(&self) -> bool {
        (self.commands.enabled && self.upstream.enabled)
            || self.home_assistant_commands()
            || self.rule_actions()
    }

    /// The upstream topic prefix with `{site}` and `{gateway}` filled in.
    pub fn topic_prefix(&self) -> String {
        self.upstream
            .forwarding
            .topic_prefix
            .replace("{site}", &self.gateway.site)
            .replace("{gateway}", &self.gateway.id)
    }
}

fn array_elements<'a>(
    value: Option<&'a toml::Value>,
    key: &str,
    problems: &mut Problems,
) -> Vec<(usize, &'a toml::Value)> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items.iter().enumerate().collect(),
        Some(_) => {
            problems.push(
                key,
                format!("expected an array of tables, write it as [[{key}]]"),
            );
            Vec::new()
        }
    }
}

fn parse_array<T: serde::de::DeserializeOwned>(
    value: Option<&toml::Value>,
    key: &str,
    problems: &mut Problems,
) -> Vec<(usize, T)> {
    array_elements(value, key, problems)
        .into_iter()
        .filter_map(|(i, v)| {
            load::section::<T>(v.clone(), &format!("{key}[{i}]"), problems).map(|t| (i, t))
        })
        .collect()
}

/// The `[[adapter]]` tables without their `units` key, and each one's
/// `units` (metric → unit) by index.
fn take_adapter_units(
    value: Option<&toml::Value>,
    problems: &mut Problems,
) -> (
    Option<toml::Value>,
    std::collections::BTreeMap<usize, std::collections::BTreeMap<String, String>>,
) {
    let mut found = std::collections::BTreeMap::new();
    let Some(toml::Value::Array(items)) = value else {
        return (value.cloned(), found);
    };
    let mut items = items.clone();
    for (i, item) in items.iter_mut().enumerate() {
        let Some(units) = item.as_table_mut().and_then(|t| t.remove("units")) else {
            continue;
        };
        let path = format!("adapter[{i}].units");
        if let Some(u) =
            load::section::<std::collections::BTreeMap<String, String>>(units, &path, problems)
        {
            found.insert(i, u);
        }
    }
    (Some(toml::Value::Array(items)), found)
}

/// A `[[section]]` list of tables selected by `type` (`[[adapter]]`,
/// `[[sink]]`), each parsed by its kind's `from_table`.
fn parse_kinds<T>(
    value: Option<&toml::Value>,
    section: &str,
    known: &[&str],
    from_table: impl Fn(&str, toml::Value, &str, &mut Problems) -> Option<T>,
    problems: &mut Problems,
) -> Vec<(usize, T)> {
    let kinds = known.join(", ");
    array_elements(value, section, problems)
        .into_iter()
        .filter_map(|(i, v)| {
            let path = format!("{section}[{i}]");
            let mut table = match v {
                toml::Value::Table(t) => t.clone(),
                _ => {
                    problems.push(path, "expected a table");
                    return None;
                }
            };
            let kind = match table.remove("type") {
                Some(toml::Value::String(s)) => s,
                Some(other) => {
                    problems.push(
                        format!("{path}.type"),
                        format!("expected a string (one of {kinds}), got {other}"),
                    );
                    return None;
                }
                None => {
                    problems.push(
                        format!("{path}.type"),
                        format!("missing required key (one of {kinds})"),
                    );
                    return None;
                }
            };
            if !known.contains(&kind.as_str()) {
                problems.push(
                    format!("{path}.type"),
                    format!("unknown {section} type \"{kind}\", expected one of {kinds}"),
                );
                return None;
            }
            from_table(&kind, toml::Value::Table(table), &path, problems).map(|a| (i, a))
        })
        .collect()
}

fn check_unique<'a>(
    items: impl Iterator<Item = (usize, &'a str)>,
    section: &str,
    key: &str,
    what: &str,
    problems: &mut Problems,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, value) in items {
        if let Some(first) = seen.get(value) {
            problems.push(
                format!("{section}[{i}].{key}"),
                format!("duplicate {what} \"{value}\" (first used by {section}[{first}])"),
            );
        } else {
            seen.insert(value, i);
        }
    }
}

#[cfg(test)]
mod tests;
