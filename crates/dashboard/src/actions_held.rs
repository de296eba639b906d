//! Which active alerts hold each local action on. Alerts of rules whose
//! actions drive the same actuator (same broker, topic and payloads) share
//! it: the clear is sent only when the last of them clears
//! (`rules::alerts`), so a person looking at an actuator left on must see
//! who holds it.

use std::fmt::Write as _;

use gateway_core::config::{ActionConfig, RuleConfig};

use super::history::AlertRow;
use super::pages::{device_name, esc};
use super::AppState;

/// One actuator and the active alerts holding it on.
pub struct Held<'a> {
    pub action: &'a ActionConfig,
    pub by: Vec<&'a AlertRow>,
}

/// Every action of `rules` (one entry per actuator), with the alerts of
/// `active` that hold it on; in the rules' order.
pub fn held<'a>(rules: &'a [RuleConfig], active: &'a [AlertRow]) -> Vec<Held<'a>> {
    let mut out: Vec<Held<'a>> = Vec::new();
    for rule in rules {
        let Some(action) = &rule.action else { continue };
        let at = match out.iter().position(|h| h.action.same_actuator(action)) {
            Some(at) => at,
            None => {
                out.push(Held {
                    action,
                    by: Vec::new(),
                });
                out.len() - 1
            }
        };
        let holders = active.iter().filter(|a| a.rule == rule.name);
        if let Some(h) = out.get_mut(at) {
            h.by.extend(holders);
        }
    }
    out
}

/// The Alerts page's section: nothing when no rule has an action.
pub fn section(state: &AppState, active: &[AlertRow]) -> String {
    let held = held(&state.rules, active);
    if held.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"<h1>Actions</h1><table id="actions"><thead><tr><th>Action</th><th>On</th><th>Held on by</th></tr></thead><tbody>"#,
    );
    for h in held {
        let by: Vec<String> =
            h.by.iter()
                .map(|a| format!("{} · {}", esc(&device_name(state, &a.device)), esc(&a.rule)))
                .collect();
        let (class, by) = if by.is_empty() {
            ("", "nobody: off".to_string())
        } else {
            (r#" class="alert""#, by.join(", "))
        };
        let _ = write!(
            out,
            r#"<tr{class}><td>{}</td><td>{}</td><td>{by}</td></tr>"#,
            esc(&h.action.target()),
            esc(&h.action.payload.to_string()),
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<RuleConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        let action = r#"action = { publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation", clear_payload = "normal_ventilation" }"#;
        let text = format!(
            "[[rule]]\nname = \"co2-high\"\nkind = \"threshold\"\nmetric = \"co2\"\nmax = 1000.0\n{action}\n\
             [[rule]]\nname = \"co2-rising\"\nkind = \"rate\"\nmetric = \"co2\"\nrate = \"+200 per 10m\"\n{action}\n\
             [[rule]]\nname = \"fridge\"\nkind = \"threshold\"\nmetric = \"t\"\nmax = 8.0\naction = {{ publish = \"fridge/alarm\", payload = \"on\" }}\n"
        );
        toml::from_str::<File>(&text)
            .map(|f| f.rule)
            .unwrap_or_default()
    }

    fn active(device: &str, rule: &str) -> AlertRow {
        AlertRow {
            device: device.into(),
            rule: rule.into(),
            metric: "co2".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: 1200.0,
            limit: 1000.0,
            at: 0,
            reason: None,
            expected: None,
        }
    }

    #[test]
    fn alerts_of_rules_driving_one_actuator_hold_it_together() {
        let rules = rules();
        assert_eq!(rules.len(), 3);
        let active = [active("room-a", "co2-high"), active("room-b", "co2-rising")];
        let held = held(&rules, &active);
        assert_eq!(held.len(), 2, "the two co2 rules share one actuator");
        let by: Vec<(&str, &str)> = held[0]
            .by
            .iter()
            .map(|a| (a.device.as_str(), a.rule.as_str()))
            .collect();
        assert_eq!(by, [("room-a", "co2-high"), ("room-b", "co2-rising")]);
        assert_eq!(
            held[0].action.target(),
            "actuators/hvac_zone_1/command on mqtt://127.0.0.1:1883"
        );
        assert!(held[1].by.is_empty(), "the fridge alarm is off");
    }
}
