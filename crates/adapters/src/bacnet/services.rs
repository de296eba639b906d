//! The service parameters the gateway sends and reads (ASHRAE 135-2020):
//! Who-Is/I-Am (§16.10, §16.1), ReadProperty (§15.5), ReadPropertyMultiple
//! (§15.7), WriteProperty (§15.9), SubscribeCOV (§13.14) and COV
//! notifications (§13.6, §13.7), and the Error PDU's class and code.

use super::tags::{self, ObjectId, Reader, Tag, Value};
use super::CodecError;

/// Who-Is, for every device or a range of instances.
pub fn who_is(range: Option<(u32, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((low, high)) = range {
        tags::put_context_unsigned(&mut out, 0, u64::from(low));
        tags::put_context_unsigned(&mut out, 1, u64::from(high));
    }
    out
}

/// A decoded I-Am.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IAm {
    pub device: u32,
    pub max_apdu: usize,
    /// BACnetSegmentation: 0 both, 1 transmit, 2 receive, 3 none.
    pub segmentation: u32,
    pub vendor: u32,
}

impl IAm {
    /// Whether the device can send a segmented answer.
    pub fn segments_answers(&self) -> bool {
        matches!(self.segmentation, 0 | 1)
    }
}

pub fn decode_i_am(b: &[u8]) -> Result<IAm, CodecError> {
    let mut r = Reader::new(b);
    let Value::ObjectId(id) = r.value()? else {
        return Err(CodecError::Unexpected("an object identifier"));
    };
    if id.kind != tags::object_type::DEVICE {
        return Err(CodecError::Unexpected("a device object"));
    }
    let Value::Unsigned(max_apdu) = r.value()? else {
        return Err(CodecError::Unexpected("the max APDU length"));
    };
    let Value::Enumerated(segmentation) = r.value()? else {
        return Err(CodecError::Unexpected("the segmentation supported"));
    };
    let Value::Unsigned(vendor) = r.value()? else {
        return Err(CodecError::Unexpected("the vendor identifier"));
    };
    Ok(IAm {
        device: id.instance,
        max_apdu: usize::try_from(max_apdu)
            .unwrap_or(usize::MAX)
            .clamp(50, super::apdu::MAX_APDU_IP),
        segmentation,
        vendor: u32::try_from(vendor).unwrap_or(u32::MAX),
    })
}

/// I-Am, for tests and `simulate`.
pub fn i_am(a: &IAm) -> Vec<u8> {
    let mut out = Vec::new();
    tags::put_value(&mut out, &Value::ObjectId(ObjectId::device(a.device)));
    tags::put_value(&mut out, &Value::Unsigned(a.max_apdu as u64));
    tags::put_value(&mut out, &Value::Enumerated(a.segmentation));
    tags::put_value(&mut out, &Value::Unsigned(u64::from(a.vendor)));
    out
}

/// One property to read, with an optional array index (0 = the array's
/// length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropertyRef {
    pub property: u32,
    pub index: Option<u32>,
}

impl PropertyRef {
    pub const fn whole(property: u32) -> Self {
        Self {
            property,
            index: None,
        }
    }
}

pub fn read_property(object: ObjectId, p: PropertyRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    tags::put_context_object(&mut out, 0, object);
    tags::put_context_unsigned(&mut out, 1, u64::from(p.property));
    if let Some(i) = p.index {
        tags::put_context_unsigned(&mut out, 2, u64::from(i));
    }
    out
}

/// A ReadProperty-ACK: the object, the property and its values.
pub fn decode_read_property_ack(
    b: &[u8],
) -> Result<(ObjectId, PropertyRef, Vec<Value>), CodecError> {
    let mut r = Reader::new(b);
    let object = r.context_object(0)?;
    let property = u32_of(r.context_unsigned(1)?)?;
    let index = r.optional_unsigned(2)?.map(u32_of).transpose()?;
    r.open(3)?;
    let values = r.values_until_close(3)?;
    Ok((object, PropertyRef { property, index }, values))
}

/// A ReadPropertyMultiple request for these objects' properties.
pub fn read_property_multiple(items: &[(ObjectId, Vec<PropertyRef>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (object, props) in items {
        tags::put_context_object(&mut out, 0, *object);
        tags::put_open(&mut out, 1);
        for p in props {
            tags::put_context_unsigned(&mut out, 0, u64::from(p.property));
            if let Some(i) = p.index {
                tags::put_context_unsigned(&mut out, 1, u64::from(i));
            }
        }
        tags::put_close(&mut out, 1);
    }
    out
}

/// The bytes one object with `props` adds to a ReadPropertyMultiple
/// request: what batching counts against the device's max APDU.
pub fn rpm_request_size(props: usize) -> usize {
    // Object id (5), open and close (2), 2-3 bytes per property.
    7 + 3 * props
}

/// An error class and code (§18, `Error` in an Error PDU or RPM result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub class: u32,
    pub code: u32,
}

impl ErrorCode {
    /// "object/unknown-object" as the standard names them; numbers for
    /// a proprietary class or code.
    pub fn describe(&self) -> String {
        let class = match self.class {
            0 => "device",
            1 => "object",
            2 => "property",
            3 => "resources",
            4 => "security",
            5 => "services",
            6 => "vt",
            7 => "communication",
            _ => "",
        };
        let code = super::error_codes::name(self.code).unwrap_or("");
        let class = if class.is_empty() {
            self.class.to_string()
        } else {
            class.to_string()
        };
        let code = if code.is_empty() {
            self.code.to_string()
        } else {
            code.to_string()
        };
        format!("{class}/{code}")
    }
}

/// The body of an Error PDU: class and code as application enumerations.
pub fn decode_error(b: &[u8]) -> Result<ErrorCode, CodecError> {
    let mut r = Reader::new(b);
    // Some services wrap the error in context tag 0 (§21, e.g.
    // ChangeList-Error); the ones the gateway sends do not, but skip it.
    if let Ok(Tag::Open(0)) = r.peek() {
        r.open(0)?;
    }
    let (Value::Enumerated(class), Value::Enumerated(code)) = (r.value()?, r.value()?) else {
        return Err(CodecError::Unexpected("an error class and code"));
    };
    Ok(ErrorCode { class, code })
}

/// One property's result in a ReadPropertyMultiple-ACK.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyResult {
    pub property: PropertyRef,
    pub value: Result<Vec<Value>, ErrorCode>,
}

/// A ReadPropertyMultiple-ACK: each object with its properties' values or
/// errors.
pub fn decode_rpm_ack(b: &[u8]) -> Result<Vec<(ObjectId, Vec<PropertyResult>)>, CodecError> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    while !r.is_empty() {
        let object = r.context_object(0)?;
        r.open(1)?;
        let mut results = Vec::new();
        loop {
            if let Tag::Close(1) = r.peek()? {
                r.close(1)?;
                break;
            }
            let property = u32_of(r.context_unsigned(2)?)?;
            let index = r.optional_unsigned(3)?.map(u32_of).transpose()?;
            let value = match r.tag()? {
                Tag::Open(4) => Ok(r.values_until_close(4)?),
                Tag::Open(5) => {
                    let (Value::Enumerated(class), Value::Enumerated(code)) =
                        (r.value()?, r.value()?)
                    else {
                        return Err(CodecError::Unexpected("an error class and code"));
                    };
                    r.close(5)?;
                    Err(ErrorCode { class, code })
                }
                _ => return Err(CodecError::Unexpected("a property value or error")),
            };
            results.push(PropertyResult {
                property: PropertyRef { property, index },
                value,
            });
        }
        out.push((object, results));
    }
    Ok(out)
}

/// SubscribeCOV (a `lifetime` of `None` with `cancel`: cancellation).
pub fn subscribe_cov(
    process_id: u32,
    object: ObjectId,
    confirmed: bool,
    lifetime_secs: Option<u32>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    tags::put_context_unsigned(&mut out, 0, u64::from(process_id));
    tags::put_context_object(&mut out, 1, object);
    if let Some(l) = lifetime_secs {
        tags::put_context(&mut out, 2, &[u8::from(confirmed)]);
        tags::put_context_unsigned(&mut out, 3, u64::from(l));
    }
    out
}

/// A COV notification, confirmed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct CovNotification {
    pub process_id: u32,
    pub device: ObjectId,
    pub object: ObjectId,
    pub time_remaining: u32,
    pub values: Vec<(PropertyRef, Vec<Value>)>,
}

pub fn decode_cov_notification(b: &[u8]) -> Result<CovNotification, CodecError> {
    let mut r = Reader::new(b);
    let process_id = u32_of(r.context_unsigned(0)?)?;
    let device = r.context_object(1)?;
    let object = r.context_object(2)?;
    let time_remaining = u32_of(r.context_unsigned(3)?)?;
    r.open(4)?;
    let mut values = Vec::new();
    loop {
        if let Tag::Close(4) = r.peek()? {
            break;
        }
        let property = u32_of(r.context_unsigned(0)?)?;
        let index = r.optional_unsigned(1)?.map(u32_of).transpose()?;
        r.open(2)?;
        let v = r.values_until_close(2)?;
        // Priority, only for commandable properties.
        r.optional_unsigned(3)?;
        values.push((PropertyRef { property, index }, v));
    }
    Ok(CovNotification {
        process_id,
        device,
        object,
        time_remaining,
        values,
    })
}

/// WriteProperty of one value at a priority (1-16); `Value::Null`
/// relinquishes the priority's slot (§19.2).
pub fn write_property(
    object: ObjectId,
    p: PropertyRef,
    value: &Value,
    priority: Option<u8>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    tags::put_context_object(&mut out, 0, object);
    tags::put_context_unsigned(&mut out, 1, u64::from(p.property));
    if let Some(i) = p.index {
        tags::put_context_unsigned(&mut out, 2, u64::from(i));
    }
    tags::put_open(&mut out, 3);
    tags::put_value(&mut out, value);
    tags::put_close(&mut out, 3);
    if let Some(prio) = priority {
        tags::put_context_unsigned(&mut out, 4, u64::from(prio));
    }
    out
}

fn u32_of(v: u64) -> Result<u32, CodecError> {
    u32::try_from(v).map_err(|_| CodecError::Length("a 32-bit number"))
}
