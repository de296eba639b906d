//! What the gateway reads from a device, over the [`Client`]: its object
//! list (whole, or element by element when the device cannot send it in
//! one answer) and each object's name and units, batched in
//! ReadPropertyMultiple requests within the device's max APDU, halved
//! when the device says an answer would not fit. What worked is kept in
//! [`Capabilities`], which the polls ([`super::poll`]) start from.

use std::net::SocketAddr;

use super::apdu::abort;
use super::client::{Client, ClientError};
use super::services::{ErrorCode, PropertyRef, PropertyResult};
use super::tags::{object_type as ot, property, ObjectId, Value};

pub use super::poll::{poll, Discrepancies, Polled, NOT_A_NUMBER};
use super::poll::match_answer;

/// Reject reasons and error codes that say "no RPM here".
const REJECT_UNRECOGNIZED_SERVICE: u8 = 9;
/// Error class services (5), code service-request-denied (29) or
/// optional-functionality-not-supported (45).
pub(super) fn refuses_service(e: &ClientError) -> bool {
    match e {
        ClientError::Reject(r) => *r == REJECT_UNRECOGNIZED_SERVICE,
        ClientError::Error(ErrorCode { class: 5, code }) => matches!(code, 29 | 45),
        _ => false,
    }
}

/// An Error for the whole ReadPropertyMultiple that is about one object
/// or property in it (class object, 1, or property, 2: unknown-object,
/// unknown-property, read-access-denied): what many devices answer when
/// one object of the request cannot be read, instead of an error result
/// for that object alone. The batch is halved until the object is alone,
/// and only it is given the error.
pub(super) fn one_object_refused(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Error(code) if matches!(code.class, 1 | 2) => Some(*code),
        _ => None,
    }
}

/// An answer too big for the device to send (or for it to segment).
pub(super) fn too_big(e: &ClientError) -> bool {
    matches!(e, ClientError::Abort(r) if *r == abort::BUFFER_OVERFLOW || *r == abort::SEGMENTATION_NOT_SUPPORTED)
        || matches!(e, ClientError::Segmentation(_))
}

/// The most objects a device's object list may hold. The whole list in
/// one answer is bounded by reassembly (64 segments, about 18 000 object
/// ids); read element by element, its length is the device's word, which
/// a corrupt or hostile answer makes 4 294 967 295.
pub const MAX_OBJECTS: u64 = 100_000;

/// What a device was found to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub max_apdu: usize,
    pub rpm: bool,
    /// Objects per RPM of a poll (shrinks when the device refuses more).
    pub batch: usize,
    /// The object list came whole (or must be read by index).
    pub whole_list: bool,
    /// Objects the device refused a whole RPM for: polled each alone, so
    /// that one such object does not cost the batch it is in a search
    /// for it at every poll (a dozen requests, on an MS/TP line a second).
    pub alone: Vec<ObjectId>,
}

/// Bytes one object's present value and status flags take in an answer:
/// object id 5, open/close 2, two properties with tags ~6 each, a double
/// 9 or a real 5, the bit string 4; rounded up for safety.
const ANSWER_BYTES_PER_OBJECT: usize = 36;
/// An object's name (up to about 64 characters) and units.
const DESCRIBE_BYTES_PER_OBJECT: usize = 100;
/// The APDU's header and the ComplexACK's own bytes.
const ANSWER_OVERHEAD: usize = 16;

impl Capabilities {
    pub fn new(max_apdu: usize) -> Self {
        Self {
            max_apdu,
            rpm: true,
            batch: per_batch(max_apdu, ANSWER_BYTES_PER_OBJECT),
            whole_list: true,
            alone: Vec::new(),
        }
    }
}

fn per_batch(max_apdu: usize, per_object: usize) -> usize {
    (max_apdu.saturating_sub(ANSWER_OVERHEAD) / per_object).max(1)
}

/// Whether the gateway reads this object type's present value by default.
pub fn is_point(kind: u16) -> bool {
    matches!(
        kind,
        ot::ANALOG_INPUT
            | ot::ANALOG_OUTPUT
            | ot::ANALOG_VALUE
            | ot::BINARY_INPUT
            | ot::BINARY_OUTPUT
            | ot::BINARY_VALUE
            | ot::MULTI_STATE_INPUT
            | ot::MULTI_STATE_OUTPUT
            | ot::MULTI_STATE_VALUE
    )
}

fn is_analog(kind: u16) -> bool {
    matches!(
        kind,
        ot::ANALOG_INPUT | ot::ANALOG_OUTPUT | ot::ANALOG_VALUE
    )
}

fn is_multi_state(kind: u16) -> bool {
    matches!(
        kind,
        ot::MULTI_STATE_INPUT | ot::MULTI_STATE_OUTPUT | ot::MULTI_STATE_VALUE
    )
}

/// Whether `value` can be the present value of an object of `kind`: a
/// binary one is the enumeration inactive (0) / active (1), a multi-state
/// one a state number from 1 to its number of states (to u32's largest
/// when the device did not say). Anything else is a device fault, not a
/// state: as a reading it would be averaged into the windows.
pub fn in_range(kind: u16, value: f64, states: Option<u32>) -> bool {
    match kind {
        ot::BINARY_INPUT | ot::BINARY_OUTPUT | ot::BINARY_VALUE => value == 0.0 || value == 1.0,
        k if is_multi_state(k) => {
            let max = f64::from(states.unwrap_or(u32::MAX));
            value.fract() == 0.0 && (1.0..=max).contains(&value)
        }
        _ => true,
    }
}

/// The device's object list.
pub async fn object_list(
    client: &Client,
    peer: SocketAddr,
    device: u32,
    caps: &mut Capabilities,
) -> Result<Vec<ObjectId>, ClientError> {
    let dev = ObjectId::device(device);
    if caps.whole_list {
        match client
            .read_property(peer, dev, PropertyRef::whole(property::OBJECT_LIST))
            .await
        {
            Ok(values) => return Ok(distinct(objects_of(&values))),
            Err(e) if too_big(&e) => caps.whole_list = false,
            Err(e) => return Err(e),
        }
    }
    let len = client
        .read_property(
            peer,
            dev,
            PropertyRef {
                property: property::OBJECT_LIST,
                index: Some(0),
            },
        )
        .await?;
    let n = len.first().and_then(Value::as_f64).unwrap_or(0.0);
    if n > MAX_OBJECTS as f64 {
        return Err(ClientError::TooManyObjects(n as u64));
    }
    // At most MAX_OBJECTS (a negative or NaN count is 0).
    let n = n as u32;
    let mut out = Vec::with_capacity(n as usize);
    let indexes: Vec<u32> = (1..=n).collect();
    // By index, many per RPM (an element is about 10 bytes of answer).
    let per = per_batch(caps.max_apdu, 12);
    for chunk in indexes.chunks(per) {
        if caps.rpm {
            let props = chunk
                .iter()
                .map(|i| PropertyRef {
                    property: property::OBJECT_LIST,
                    index: Some(*i),
                })
                .collect();
            match client.read_property_multiple(peer, &[(dev, props)]).await {
                Ok(r) => {
                    for (_, results) in r {
                        for p in results {
                            if let Ok(v) = p.value {
                                out.extend(objects_of(&v));
                            }
                        }
                    }
                    continue;
                }
                Err(e) if refuses_service(&e) => caps.rpm = false,
                Err(e) => return Err(e),
            }
        }
        for i in chunk {
            let v = client
                .read_property(
                    peer,
                    dev,
                    PropertyRef {
                        property: property::OBJECT_LIST,
                        index: Some(*i),
                    },
                )
                .await?;
            out.extend(objects_of(&v));
        }
    }
    Ok(distinct(out))
}

/// `objects` with each one once, in the order first listed. A device
/// that lists an object twice must not have it read twice: it would
/// clash with its own name (its metric renamed `<name>_<type><instance>`)
/// and every poll would count the second ask as a duplicate answer and a
/// missing one.
pub fn distinct(objects: Vec<ObjectId>) -> Vec<ObjectId> {
    let mut seen = std::collections::HashSet::with_capacity(objects.len());
    objects.into_iter().filter(|o| seen.insert(*o)).collect()
}

fn objects_of(values: &[Value]) -> Vec<ObjectId> {
    values
        .iter()
        .filter_map(|v| match v {
            Value::ObjectId(id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// An object as the gateway names and reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub name: Option<String>,
    /// BACnetEngineeringUnits (analog objects only).
    pub units: Option<u32>,
    /// Number_Of_States (multi-state objects only, when the device says).
    pub states: Option<u32>,
    /// Why it cannot be read (unknown object, ...): left out of polls.
    pub error: Option<ErrorCode>,
}

/// What describes an object of `id`'s type.
fn props_of(id: &ObjectId) -> Vec<PropertyRef> {
    let mut p = vec![PropertyRef::whole(property::OBJECT_NAME)];
    if is_analog(id.kind) {
        p.push(PropertyRef::whole(property::UNITS));
    }
    // Read with the name, in the same request: what bounds the
    // object's present values (`in_range`).
    if is_multi_state(id.kind) {
        p.push(PropertyRef::whole(property::NUMBER_OF_STATES));
    }
    p
}

/// Reads each object's object-name and (analog) units.
pub async fn describe(
    client: &Client,
    peer: SocketAddr,
    objects: &[ObjectId],
    caps: &mut Capabilities,
) -> Result<Vec<ObjectInfo>, ClientError> {
    let mut out: Vec<ObjectInfo> = objects
        .iter()
        .map(|id| ObjectInfo {
            id: *id,
            name: None,
            units: None,
            states: None,
            error: None,
        })
        .collect();
    let mut per = per_batch(caps.max_apdu, DESCRIBE_BYTES_PER_OBJECT);
    // Narrowed around an object the device refuses the whole request for
    // (see `poll`).
    let mut span = per;
    let mut at = 0;
    while at < objects.len() && caps.rpm {
        let end = (at + span.min(per)).min(objects.len());
        let items: Vec<_> = objects[at..end]
            .iter()
            .map(|id| (*id, props_of(id)))
            .collect();
        match client.read_property_multiple(peer, &items).await {
            Ok(r) => {
                // Names are read once: what does not fit the request is
                // left out here and shows in the polls' counts.
                let mut ignored = Discrepancies::default();
                for (id, results) in match_answer(&objects[at..end], r, &mut ignored) {
                    if let Some(info) = out[at..end].iter_mut().find(|o| o.id == id) {
                        apply_description(info, &results);
                    }
                }
                at = end;
                span = per;
            }
            Err(e) if too_big(&e) && per > 1 => per = (per / 2).max(1),
            Err(e) if refuses_service(&e) => caps.rpm = false,
            Err(e) => match one_object_refused(&e) {
                Some(_) if end - at > 1 => span = (end - at) / 2,
                // Alone, it is read property by property: the Error may
                // be for its units, not the object.
                Some(_) => {
                    describe_one(client, peer, &mut out[at]).await?;
                    at = end;
                    span = per;
                }
                None => return Err(e),
            },
        }
    }
    for info in out.iter_mut().skip(at) {
        describe_one(client, peer, info).await?;
    }
    Ok(out)
}

/// One object's name and units, property by property (ReadProperty):
/// an Error for one of them costs only that one.
async fn describe_one(
    client: &Client,
    peer: SocketAddr,
    info: &mut ObjectInfo,
) -> Result<(), ClientError> {
    for p in props_of(&info.id) {
        match client.read_property(peer, info.id, p).await {
            Ok(v) => apply_description(
                info,
                &[PropertyResult {
                    property: p,
                    value: Ok(v),
                }],
            ),
            Err(ClientError::Error(code)) => {
                if p.property == property::OBJECT_NAME {
                    info.error = Some(code);
                }
            }
            // Another object's name or units: not this one's.
            Err(ClientError::Mismatch(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn apply_description(info: &mut ObjectInfo, results: &[PropertyResult]) {
    for r in results {
        match (&r.value, r.property.property) {
            (Ok(v), property::OBJECT_NAME) => {
                if let Some(Value::CharacterString(s)) = v.first() {
                    info.name = Some(s.clone());
                }
            }
            (Ok(v), property::UNITS) => {
                if let Some(Value::Enumerated(u)) = v.first() {
                    info.units = Some(*u);
                }
            }
            (Ok(v), property::NUMBER_OF_STATES) => {
                // 0 states is no bound a value could meet: taken as unsaid.
                if let Some(Value::Unsigned(n)) = v.first() {
                    info.states = u32::try_from(*n).ok().filter(|n| *n > 0);
                }
            }
            (Err(code), property::OBJECT_NAME) => info.error = Some(*code),
            _ => {}
        }
    }
}

/// One object's state in a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: f64,
    /// in-alarm, fault, overridden, out-of-service (§12.x Status_Flags).
    pub flags: [bool; 4],
}

impl Sample {
    /// From a present value and (when read) status flags.
    pub fn from_values(pv: &[Value], flags: Option<&[Value]>) -> Option<Self> {
        let value = pv.first()?.as_f64()?;
        let mut f = [false; 4];
        if let Some(v) = flags.and_then(|f| f.first()) {
            for (i, slot) in f.iter_mut().enumerate() {
                *slot = v.bit(i).unwrap_or(false);
            }
        }
        Some(Self { value, flags: f })
    }
}

const STATUS_FLAG_NAMES: [&str; 4] = ["in_alarm", "fault", "overridden", "out_of_service"];

/// The label a set status flag is counted under.
pub fn flag_name(i: usize) -> &'static str {
    STATUS_FLAG_NAMES.get(i).copied().unwrap_or("unknown")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_multi_state_values_out_of_range_are_refused() {
        // Binary: the enumeration inactive/active, nothing else.
        for kind in [ot::BINARY_INPUT, ot::BINARY_OUTPUT, ot::BINARY_VALUE] {
            assert!(in_range(kind, 0.0, None));
            assert!(in_range(kind, 1.0, None));
            assert!(!in_range(kind, 7.0, None));
            assert!(!in_range(kind, 0.5, None));
        }
        // Multi-state: states numbered from 1 to Number_Of_States.
        for kind in [
            ot::MULTI_STATE_INPUT,
            ot::MULTI_STATE_OUTPUT,
            ot::MULTI_STATE_VALUE,
        ] {
            assert!(!in_range(kind, 0.0, Some(4)));
            assert!(in_range(kind, 1.0, Some(4)));
            assert!(in_range(kind, 4.0, Some(4)));
            assert!(!in_range(kind, 5.0, Some(4)));
            assert!(!in_range(kind, 2.5, Some(4)));
            // Number_Of_States unknown: any state number of a u32.
            assert!(!in_range(kind, 0.0, None));
            assert!(in_range(kind, 4_294_967_295.0, None));
            assert!(!in_range(kind, 4_294_967_296.0, None));
        }
        assert!(in_range(ot::ANALOG_INPUT, -40.5, None));
    }

    #[test]
    fn number_of_states_is_read_with_the_name_of_a_multi_state_object() {
        let mut info = ObjectInfo {
            id: ObjectId::new(ot::MULTI_STATE_VALUE, 3),
            name: None,
            units: None,
            states: None,
            error: None,
        };
        apply_description(
            &mut info,
            &[PropertyResult {
                property: PropertyRef::whole(property::NUMBER_OF_STATES),
                value: Ok(vec![Value::Unsigned(4)]),
            }],
        );
        assert_eq!(info.states, Some(4));
    }

}
