//! Metric names from objects' `object-name`s: lower case, every run of
//! other characters one `_`, so "Zone Temp (°C)" becomes `zone_temp_c`.
//! Two objects of one device whose names fold to the same metric both
//! take their object's short type and instance (`zone_temp_ai1`,
//! `zone_temp_av3`): neither name then depends on which object the
//! device lists first, nor changes when another object is added later
//! unless that one clashes too. A name so made that is another object's
//! own makes that object take its type and instance too: two objects
//! never share a metric.

use std::collections::HashMap;

use super::tags::{type_short, ObjectId};

/// Longest metric name made (the window payload's keys stay readable).
const MAX_LEN: usize = 64;

/// `name` as a metric name; `None` when nothing of it is left.
pub fn fold(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out.truncate(MAX_LEN);
    while out.ends_with('_') {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

fn suffixed(base: &str, id: ObjectId) -> String {
    let suffix = format!("_{}{}", type_short(id.kind), id.instance);
    let keep = MAX_LEN.saturating_sub(suffix.len()).min(base.len());
    format!("{}{suffix}", &base[..keep])
}

/// The metric of each object, from its object-name (`None`: the device
/// did not give one; the type and instance then name it).
pub fn metric_names(objects: &[(ObjectId, Option<String>)]) -> Vec<String> {
    let base: Vec<String> = objects
        .iter()
        .map(|(id, name)| {
            let folded = name.as_deref().and_then(fold);
            match folded {
                // A leading digit reads as a number in some outputs.
                Some(f) if f.starts_with(|c: char| c.is_ascii_digit()) => {
                    format!("{}_{f}", type_short(id.kind))
                }
                Some(f) => f,
                None => format!("{}{}", type_short(id.kind), id.instance),
            }
        })
        .collect();
    let mut names = base.clone();
    let mut suffixed_yet = vec![false; names.len()];
    // A suffixed name may be another object's own ("Zone Temp" ai1 and
    // av3, and an av5 named "Zone Temp AI1"): that object is suffixed in
    // turn, until no two objects share a metric. Each round suffixes at
    // least one more object, and two suffixed names never clash (their
    // type and instance differ).
    loop {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for n in &names {
            *count.entry(n.as_str()).or_default() += 1;
        }
        let clashing: Vec<usize> = (0..names.len())
            .filter(|&i| !suffixed_yet[i] && count.get(names[i].as_str()).is_some_and(|n| *n > 1))
            .collect();
        if clashing.is_empty() {
            return names;
        }
        for i in clashing {
            names[i] = suffixed(&base[i], objects[i].0);
            suffixed_yet[i] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bacnet::tags::object_type::{ANALOG_INPUT, ANALOG_VALUE, BINARY_INPUT};

    #[test]
    fn names_fold_to_valid_metrics() {
        assert_eq!(fold("Zone Temp (°C)").as_deref(), Some("zone_temp_c"));
        assert_eq!(
            fold("AHU-1.SupplyAir/Temp").as_deref(),
            Some("ahu_1_supplyair_temp")
        );
        assert_eq!(fold("  ##  "), None);
        assert_eq!(fold(&"x".repeat(200)).map(|s| s.len()), Some(MAX_LEN));
    }

    #[test]
    fn clashes_take_type_and_instance_whatever_the_order() {
        let a = (
            ObjectId::new(ANALOG_INPUT, 1),
            Some("Zone Temp".to_string()),
        );
        let b = (
            ObjectId::new(ANALOG_VALUE, 3),
            Some("zone-temp".to_string()),
        );
        let c = (ObjectId::new(BINARY_INPUT, 7), Some("Fan".to_string()));
        let d = (ObjectId::new(BINARY_INPUT, 8), None);
        let e = (
            ObjectId::new(ANALOG_INPUT, 9),
            Some("1st floor".to_string()),
        );
        let names = metric_names(&[a.clone(), b.clone(), c.clone(), d.clone(), e.clone()]);
        assert_eq!(
            names,
            [
                "zone_temp_ai1",
                "zone_temp_av3",
                "fan",
                "bi8",
                "ai_1st_floor"
            ]
        );
        let reversed = metric_names(&[e, d, c, b, a]);
        assert_eq!(
            reversed,
            [
                "ai_1st_floor",
                "bi8",
                "fan",
                "zone_temp_av3",
                "zone_temp_ai1"
            ]
        );
    }

    /// "Zone Temp AI1" folds to what the clash of two "Zone Temp" gave
    /// one of them: two objects under one metric had their values mixed
    /// into one window and a write to it went to either.
    #[test]
    fn a_suffixed_name_never_takes_another_objects_own() {
        let named = |kind, instance, name: &str| (ObjectId::new(kind, instance), Some(name.into()));
        let objects = [
            named(ANALOG_INPUT, 1, "Zone Temp"),
            named(ANALOG_VALUE, 3, "Zone Temp"),
            named(ANALOG_VALUE, 5, "Zone Temp AI1"),
            named(ANALOG_VALUE, 6, "Zone Temp AI1 AV5"),
        ];
        let names = metric_names(&objects);
        assert_eq!(
            names,
            [
                "zone_temp_ai1",
                "zone_temp_av3",
                "zone_temp_ai1_av5",
                "zone_temp_ai1_av5_av6"
            ]
        );
        let mut reversed = objects.clone();
        reversed.reverse();
        let mut again = metric_names(&reversed);
        again.reverse();
        assert_eq!(again, names, "whatever the order");
    }
}
