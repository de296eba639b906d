//! The device a payload names, checked as the kind of id its field
//! declares: any id in a `device` field, a MAC in a `mac` one.

use gateway_core::DeviceId;

use super::{clip, DecodeError};

/// The device a payload names by `id`; an unusable id is refused with
/// the id itself, clipped.
pub(super) fn named_device_id(id: &str) -> Result<DeviceId, DecodeError> {
    device_id_of_kind(id, IdKind::Any)
}

/// What a column or key naming the device declares it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// Any usable device id (a `device` column or key).
    Any,
    /// A MAC address, in any notation (a `mac` column or key): anything
    /// else there is noise (a boot banner glued to the line), not a device.
    Mac,
}

/// The device `id` names as an id of `kind`; refused with the id itself,
/// clipped, when it is not one.
pub(crate) fn device_id_of_kind(id: &str, kind: IdKind) -> Result<DeviceId, DecodeError> {
    let made = match kind {
        IdKind::Any => DeviceId::new(id),
        IdKind::Mac => DeviceId::mac(id),
    };
    made.map_err(|source| DecodeError::InvalidDevice {
        id: clip(id),
        source,
    })
}
