//! What a push may change: the sections `[remote_config] allow` lists
//! (every section by default), never `[remote_config]` itself (the trust
//! anchor) and never the keys that would cut the gateway off from the
//! cloud or move its state: the upstream's credentials and identity, its
//! `enabled`, and `gateway.id` / `gateway.state_dir`.
//!
//! Judged on the merged tables, before and after the pushed layer: a push
//! that repeats a protected value unchanged (a fleet tool pushing a whole
//! file) is accepted; one that changes it is refused with its key path.

/// The section that holds the trust anchor.
pub const SECTION: &str = "remote_config";

/// Keys no push may change, whatever `allow` says, and why.
pub const PROTECTED: &[(&str, &str)] = &[
    (
        "upstream.enabled",
        "the cloud broker is where pushes come from",
    ),
    ("upstream.username", "the upstream credentials stay local"),
    (
        "upstream.password_env",
        "the upstream credentials stay local",
    ),
    ("upstream.ca_file", "the upstream credentials stay local"),
    (
        "upstream.client_cert",
        "the upstream credentials stay local",
    ),
    ("upstream.client_key", "the upstream credentials stay local"),
    ("upstream.client_id", "the upstream credentials stay local"),
    (
        "gateway.id",
        "the gateway's identity names the topic pushes come from",
    ),
    (
        "gateway.state_dir",
        "the pushed configuration and its journal live there",
    ),
];

/// One refused change: the key path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAllowed {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every change of `pushed` (the layer) that is not allowed: `before` is
/// the merged config without the layer, `after` with it. `allow`: the
/// sections a push may change, `None` for every one.
pub fn check(
    before: &toml::Table,
    after: &toml::Table,
    pushed: &toml::Table,
    allow: Option<&[String]>,
) -> Vec<NotAllowed> {
    let mut refused = Vec::new();
    for section in pushed.keys() {
        if before.get(section) == after.get(section) {
            continue;
        }
        if section == SECTION {
            refused.push(NotAllowed {
                path: section.clone(),
                message: "a push can never change [remote_config] (its keys are the trust anchor): change it in the local files".into(),
            });
        } else if allow.is_some_and(|a| !a.iter().any(|s| s == section)) {
            refused.push(NotAllowed {
                path: section.clone(),
                message: format!(
                    "[remote_config] allow does not list \"{section}\": this gateway takes no pushed change to it"
                ),
            });
        }
    }
    for (path, why) in PROTECTED {
        if lookup(before, path) != lookup(after, path) {
            refused.push(NotAllowed {
                path: (*path).to_string(),
                message: format!("a push cannot change it ({why})"),
            });
        }
    }
    refused
}

/// The value at a dotted path of tables.
fn lookup<'a>(root: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut value = root.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    /// The merge of the gateway's layers, enough for these cases: tables
    /// key by key, arrays appended.
    fn merge(base: &toml::Table, layer: &toml::Table) -> toml::Table {
        let mut out = base.clone();
        for (k, v) in layer {
            match (out.get_mut(k), v) {
                (Some(toml::Value::Table(b)), toml::Value::Table(l)) => {
                    *b = merge(b, l);
                }
                (Some(toml::Value::Array(b)), toml::Value::Array(l)) => b.extend(l.clone()),
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    const LOCAL: &str = r#"
[gateway]
id = "gw-1"
state_dir = "/var/lib/edge-gateway"
[upstream]
url = "mqtts://cloud:8883"
username = "gw-1"
password_env = "PW"
[remote_config]
enabled = true
public_keys = ["k"]
"#;

    fn refused(push: &str, allow: Option<&[String]>) -> Vec<String> {
        let before = table(LOCAL);
        let pushed = table(push);
        let after = merge(&before, &pushed);
        check(&before, &after, &pushed, allow)
            .into_iter()
            .map(|n| n.path)
            .collect()
    }

    #[test]
    fn adapters_devices_rules_and_the_upstream_url_may_change() {
        let push = r#"
[[adapter]]
type = "coap"
name = "coap"
[[device]]
id = "d1"
[upstream]
url = "mqtts://other:8883"
"#;
        assert_eq!(refused(push, None), Vec::<String>::new());
    }

    #[test]
    fn the_trust_anchor_and_credentials_never_change() {
        assert_eq!(
            refused("[remote_config]\npublic_keys = [\"mine\"]\n", None),
            ["remote_config"]
        );
        let all = vec!["remote_config".to_string(), "upstream".to_string()];
        assert_eq!(
            refused("[remote_config]\nenabled = false\n", Some(&all)),
            ["remote_config"],
            "allow cannot open it"
        );
        assert_eq!(
            refused("[upstream]\nusername = \"x\"\npassword_env = \"Y\"\n", None),
            ["upstream.username", "upstream.password_env"]
        );
        assert_eq!(
            refused("[upstream]\nenabled = false\n", None),
            ["upstream.enabled"]
        );
        assert_eq!(
            refused("[gateway]\nstate_dir = \"/tmp\"\nid = \"gw-2\"\n", None),
            ["gateway.id", "gateway.state_dir"]
        );
        // Repeating them unchanged is no change.
        assert_eq!(
            refused(
                "[upstream]\nusername = \"gw-1\"\n[remote_config]\nenabled = true\n",
                None
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn sections_outside_allow_are_refused_by_name() {
        let allow = vec!["device".to_string(), "rule".to_string()];
        assert_eq!(
            refused(
                "[[device]]\nid = \"d\"\n[[adapter]]\ntype = \"coap\"\nname = \"c\"\n",
                Some(&allow)
            ),
            ["adapter"]
        );
    }
}
