//! A device task's values: a polled sample or a COV notification becomes
//! a reading unless its status flags, its type's range or its number say
//! it is not the process's value (`device` holds the task itself).

use std::collections::HashMap;

use gateway_core::{AdapterContext, Reading, TimeSource};

use super::device::{State, BACNET_STATUS_FLAGS};
use super::point::Point;
use super::reader::{self, flag_name, Sample};
use super::services::CovNotification;
use super::tags::{property, ObjectId};

/// A sample as a reading, unless a flag says it is not live.
pub(super) fn push_sample(
    st: &State,
    ctx: &AdapterContext,
    p: &mut Point,
    s: &Sample,
    out: &mut Vec<Reading>,
) {
    p.flagged = s.flags.iter().any(|f| *f);
    for (i, set) in s.flags.iter().enumerate() {
        if *set {
            ctx.telemetry
                .counter(
                    BACNET_STATUS_FLAGS,
                    &[
                        ("adapter", st.adapter.as_str()),
                        ("device", st.label.as_str()),
                        ("flag", flag_name(i)),
                    ],
                )
                .inc();
        }
    }
    // fault (1) and out-of-service (3): the value is not the process's.
    if s.flags[1] || s.flags[3] {
        return;
    }
    if !reader::in_range(p.id.kind, s.value, p.states) {
        gateway_core::refuse!(st.stats, st.throttle, "out_of_range", per format!("out_of_range:{}", p.id);
            adapter = %st.adapter, device = %st.label, object = %p.id, value = s.value, states = ?p.states,
            "The device's present value is no state of the object (binary: 0 or 1; multi-state: 1 to its number of states): no reading.");
        return;
    }
    if let Ok(r) = Reading::new(
        st.id.clone(),
        p.metric.clone(),
        s.value,
        ctx.clock.now(),
        TimeSource::Arrival,
    ) {
        out.push(r);
    }
}

/// Notifications taken into one pipeline message at most: a device that
/// never stops notifying still yields to its polls and renewals.
pub(super) const COV_BATCH: usize = 256;

/// One COV notification's present value (with its status flags) as a
/// reading added to `out`; an object this task does not follow is counted.
pub(super) fn take_cov(
    st: &State,
    ctx: &AdapterContext,
    index: &HashMap<ObjectId, usize>,
    points: &mut [Point],
    n: &CovNotification,
    out: &mut Vec<Reading>,
) {
    let Some(&i) = index.get(&n.object) else {
        st.stats.error("cov_unknown");
        return;
    };
    let pv = n
        .values
        .iter()
        .find(|(p, _)| p.property == property::PRESENT_VALUE);
    let flags = n
        .values
        .iter()
        .find(|(p, _)| p.property == property::STATUS_FLAGS);
    st.cov_notifications.inc();
    st.stats.received.inc();
    points[i].notified();
    match pv.and_then(|(_, v)| Sample::from_values(v, flags.map(|f| f.1.as_slice()))) {
        Some(s) => push_sample(st, ctx, &mut points[i], &s, out),
        // A NaN (a failed sensor) or no present value: said and counted,
        // where it was dropped without a word.
        None => not_finite(st, n.object),
    }
}

/// A subscription the device accepted and never notified: its values are
/// taken from the polls, said once per interval per object.
pub(super) fn cov_silent(st: &State, id: ObjectId) {
    gateway_core::refuse!(st.stats, st.throttle, "cov_silent", per format!("cov_silent:{id}");
        adapter = %st.adapter, device = %st.label, object = %id,
        "The device accepted a COV subscription but sent no notification, not even the first: the object's values are taken from the polls. Check that notifications can reach the gateway's address.");
}

/// A present value that is no finite number: no reading, counted as
/// `not_finite` and logged once per interval per object.
pub(super) fn not_finite(st: &State, id: ObjectId) {
    gateway_core::refuse!(st.stats, st.throttle, "not_finite", per format!("not_finite:{id}");
        adapter = %st.adapter, device = %st.label, object = %id,
        "The device's present value is not a finite number (a failed sensor reports NaN), or not a number at all: no reading.");
}
