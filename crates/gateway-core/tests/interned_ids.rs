//! Interned ids in a process of their own: the table is per process, and
//! filling it here must not change what other tests see.

use std::collections::HashSet;

use gateway_core::id_text::INTERN_LIMIT;
use gateway_core::{DeviceId, MetricName, Reading};

#[test]
fn interning_stops_at_the_limit_and_ids_stay_equal_either_way() {
    // What every reading carries stays two words each.
    assert_eq!(std::mem::size_of::<DeviceId>(), 16);
    assert_eq!(std::mem::size_of::<MetricName>(), 16);
    assert_eq!(std::mem::size_of::<Reading>(), 56);

    let first = DeviceId::new("node-0").unwrap().interned();
    assert!(first.is_interned());
    // A client naming a new device on every line.
    let flood: Vec<DeviceId> = (0..INTERN_LIMIT + 100)
        .map(|i| DeviceId::new(format!("node-{i}")).unwrap().interned())
        .collect();
    let interned = flood.iter().filter(|d| d.is_interned()).count();
    assert_eq!(interned, INTERN_LIMIT, "the table holds at most the limit");
    assert!(!flood[INTERN_LIMIT + 50].is_interned(), "past it, counted");

    // Known texts are still found once the table is full.
    let again = DeviceId::new("node-0").unwrap().interned();
    assert!(again.is_interned() && again.same_text(&first));

    // Interned or counted, an id is one key, by its text.
    let late = DeviceId::new(format!("node-{}", INTERN_LIMIT + 50)).unwrap();
    let set: HashSet<DeviceId> = flood.iter().cloned().collect();
    assert!(set.contains(&late));
    assert!(set.contains(&DeviceId::new("node-0").unwrap()));
    assert_eq!(set.len(), INTERN_LIMIT + 100);
    assert_eq!(flood[INTERN_LIMIT + 50], late);
    assert_eq!(flood[0].to_string(), "node-0");
    assert_eq!(
        serde_json::to_string(&flood[0]).unwrap(),
        "\"node-0\"",
        "serialised as its text"
    );
}
