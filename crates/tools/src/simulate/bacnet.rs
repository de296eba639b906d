//! `simulate --protocol bacnet`: small BACnet/IP controllers for the demo
//! and for trying the `bacnet` adapter or `bacnet discover` without a
//! building. Device `i` (of `--devices`) is instance 1001+i on UDP port
//! `--target`+i; each answers Who-Is with I-Am, and ReadProperty and
//! ReadPropertyMultiple of its device object (object list, name) and of
//! six points of an air handler whose values drift. Built on the
//! adapter's own codec, so it shows the gateway working, and proves nothing
//! about it: the tests read bacpypes3 devices. No COV, no segmentation
//! (the object list is short), no writes (rejected).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use adapters::bacnet::apdu::{self, confirmed, unconfirmed, Apdu};
use adapters::bacnet::frame::{self, Frame};
use adapters::bacnet::services::{self, IAm};
use adapters::bacnet::tags::{self, object_type as ot, property, ObjectId, Reader, Tag, Value};
use adapters::bacnet::CodecError;
use anyhow::Context as _;
use tokio::net::UdpSocket;

use super::SimulateArgs;

/// Not 47808: a gateway on the same host binds that.
pub const DEFAULT_TARGET: &str = "127.0.0.1:47809";
const FIRST_INSTANCE: u32 = 1001;
/// Sockets, one per device: a demo, not a campus.
const MAX_DEVICES: u32 = 100;
/// A vendor id for tests and examples (ASHRAE's list has none reserved;
/// 999 is what bacpypes3's samples use).
const VENDOR: u32 = 999;
/// PDU types in the APDU's first octet (§20.1): ComplexACK, Error,
/// Reject, Abort with the server bit.
const COMPLEX_ACK: u8 = 0x30;
const ERROR: u8 = 0x50;
const REJECT: u8 = 0x60;
const ABORT_BY_SERVER: u8 = 0x71;
/// Reject reason unrecognized-service (§20.1.7.3).
const UNRECOGNIZED_SERVICE: u8 = 9;
/// Error classes and codes (§21): object/unknown-object,
/// property/unknown-property.
const UNKNOWN_OBJECT: (u32, u32) = (1, 31);
const UNKNOWN_PROPERTY: (u32, u32) = (2, 32);
/// BACnetEngineeringUnits.
const DEGREES_CELSIUS: u32 = 62;
const PERCENT_RH: u32 = 29;
const PPM: u32 = 96;
const PASCALS: u32 = 53;

/// One point: its object, name, units (analog only) and value at `t` s.
struct Point {
    id: ObjectId,
    name: &'static str,
    units: Option<u32>,
    value: fn(f64, f64) -> f64,
}

const POINTS: [Point; 6] = [
    Point {
        id: ObjectId {
            kind: ot::ANALOG_INPUT,
            instance: 1,
        },
        name: "Zone Temp",
        units: Some(DEGREES_CELSIUS),
        value: |t, p| 21.0 + 1.5 * (t / 300.0 + p).sin(),
    },
    Point {
        id: ObjectId {
            kind: ot::ANALOG_INPUT,
            instance: 2,
        },
        name: "Zone Humidity",
        units: Some(PERCENT_RH),
        value: |t, p| 45.0 + 5.0 * (t / 600.0 + p).sin(),
    },
    Point {
        id: ObjectId {
            kind: ot::ANALOG_INPUT,
            instance: 3,
        },
        name: "Zone CO2",
        units: Some(PPM),
        value: |t, p| 650.0 + 150.0 * (t / 900.0 + p).sin(),
    },
    Point {
        id: ObjectId {
            kind: ot::ANALOG_INPUT,
            instance: 4,
        },
        name: "Supply Air",
        units: Some(DEGREES_CELSIUS),
        value: |t, p| 16.0 + 0.8 * (t / 120.0 + p).sin(),
    },
    Point {
        id: ObjectId {
            kind: ot::ANALOG_INPUT,
            instance: 5,
        },
        name: "Duct Pressure",
        units: Some(PASCALS),
        value: |t, p| 250.0 + 20.0 * (t / 60.0 + p).sin(),
    },
    Point {
        id: ObjectId {
            kind: ot::BINARY_INPUT,
            instance: 6,
        },
        name: "Fan Status",
        units: None,
        value: |_, _| 1.0,
    },
];

struct Device {
    instance: u32,
    start: Instant,
    served: Arc<AtomicU64>,
}

impl Device {
    fn object_list(&self) -> Vec<Value> {
        std::iter::once(ObjectId::device(self.instance))
            .chain(POINTS.iter().map(|p| p.id))
            .map(Value::ObjectId)
            .collect()
    }

    /// A property's values, or the error class and code to answer.
    fn read(
        &self,
        object: ObjectId,
        prop: u32,
        index: Option<u64>,
    ) -> Result<Vec<Value>, (u32, u32)> {
        let t = self.start.elapsed().as_secs_f64();
        if object == ObjectId::device(self.instance) {
            let all = match prop {
                property::OBJECT_IDENTIFIER => vec![Value::ObjectId(object)],
                property::OBJECT_NAME => {
                    vec![Value::CharacterString(format!("sim-ahu-{}", self.instance))]
                }
                property::OBJECT_LIST => self.object_list(),
                property::MAX_APDU_LENGTH_ACCEPTED => {
                    vec![Value::Unsigned(apdu::MAX_APDU_IP as u64)]
                }
                // no-segmentation
                property::SEGMENTATION_SUPPORTED => vec![Value::Enumerated(3)],
                _ => return Err(UNKNOWN_PROPERTY),
            };
            return match (prop, index) {
                (property::OBJECT_LIST, Some(0)) => Ok(vec![Value::Unsigned(all.len() as u64)]),
                (property::OBJECT_LIST, Some(i)) => usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| all.get(i).cloned())
                    .map(|v| vec![v])
                    // property/invalid-array-index
                    .ok_or((2, 42)),
                _ => Ok(all),
            };
        }
        let p = POINTS
            .iter()
            .find(|p| p.id == object)
            .ok_or(UNKNOWN_OBJECT)?;
        let phase = f64::from(self.instance % 7);
        Ok(vec![match prop {
            property::OBJECT_IDENTIFIER => Value::ObjectId(p.id),
            property::OBJECT_NAME => Value::CharacterString(p.name.to_string()),
            property::PRESENT_VALUE if p.id.kind == ot::BINARY_INPUT => {
                Value::Enumerated((p.value)(t, phase) as u32)
            }
            // Rounded as a controller's display would be.
            property::PRESENT_VALUE => {
                Value::Real(((p.value)(t, phase) * 100.0).round() as f32 / 100.0)
            }
            // in-alarm, fault, overridden, out-of-service: none set.
            property::STATUS_FLAGS => Value::BitString(4, vec![0]),
            property::OUT_OF_SERVICE => Value::Boolean(false),
            property::UNITS => Value::Enumerated(p.units.ok_or(UNKNOWN_PROPERTY)?),
            _ => return Err(UNKNOWN_PROPERTY),
        }])
    }

    /// The APDU answering `service` with `body`, or none (not for us).
    fn answer(&self, apdu: Apdu<'_>) -> Option<Vec<u8>> {
        match apdu {
            Apdu::Unconfirmed {
                service: unconfirmed::WHO_IS,
                body,
            } => {
                let range = who_is_range(body).ok()?;
                if range.is_some_and(|(low, high)| !(low..=high).contains(&self.instance)) {
                    return None;
                }
                let i_am = services::i_am(&IAm {
                    device: self.instance,
                    max_apdu: apdu::MAX_APDU_IP,
                    segmentation: 3,
                    vendor: VENDOR,
                });
                Some(apdu::unconfirmed_request(unconfirmed::I_AM, &i_am))
            }
            Apdu::ConfirmedRequest {
                invoke_id,
                segmented: false,
                service,
                body,
            } => {
                self.served.fetch_add(1, Ordering::Relaxed);
                let result = match service {
                    confirmed::READ_PROPERTY => self.read_property(body),
                    confirmed::READ_PROPERTY_MULTIPLE => self.read_property_multiple(body),
                    _ => return Some(vec![REJECT, invoke_id, UNRECOGNIZED_SERVICE]),
                };
                Some(match result {
                    Ok(Ok(ack)) => {
                        let mut out = vec![COMPLEX_ACK, invoke_id, service];
                        out.extend_from_slice(&ack);
                        out
                    }
                    Ok(Err((class, code))) => {
                        let mut out = vec![ERROR, invoke_id, service];
                        tags::put_value(&mut out, &Value::Enumerated(class));
                        tags::put_value(&mut out, &Value::Enumerated(code));
                        out
                    }
                    // Reject reason 4: invalid-parameter-data-type.
                    Err(_) => vec![REJECT, invoke_id, 4],
                })
            }
            // Segmented requests: abort, segmentation-not-supported.
            Apdu::ConfirmedRequest { invoke_id, .. } => Some(vec![
                ABORT_BY_SERVER,
                invoke_id,
                apdu::abort::SEGMENTATION_NOT_SUPPORTED,
            ]),
            _ => None,
        }
    }

    fn read_property(&self, body: &[u8]) -> Result<Result<Vec<u8>, (u32, u32)>, CodecError> {
        let mut r = Reader::new(body);
        let object = r.context_object(0)?;
        let prop =
            u32::try_from(r.context_unsigned(1)?).map_err(|_| CodecError::Length("property"))?;
        let index = r.optional_unsigned(2)?;
        Ok(self.read(object, prop, index).map(|values| {
            let mut out = Vec::new();
            tags::put_context_object(&mut out, 0, object);
            tags::put_context_unsigned(&mut out, 1, u64::from(prop));
            if let Some(i) = index {
                tags::put_context_unsigned(&mut out, 2, i);
            }
            tags::put_open(&mut out, 3);
            for v in &values {
                tags::put_value(&mut out, v);
            }
            tags::put_close(&mut out, 3);
            out
        }))
    }

    /// Every result in one ACK, an unknown object or property as its
    /// error in place (§15.7.1.3.1).
    fn read_property_multiple(
        &self,
        body: &[u8],
    ) -> Result<Result<Vec<u8>, (u32, u32)>, CodecError> {
        let mut r = Reader::new(body);
        let mut out = Vec::new();
        while !r.is_empty() {
            let object = r.context_object(0)?;
            tags::put_context_object(&mut out, 0, object);
            r.open(1)?;
            tags::put_open(&mut out, 1);
            while !matches!(r.peek()?, Tag::Close(1)) {
                let prop = u32::try_from(r.context_unsigned(0)?)
                    .map_err(|_| CodecError::Length("property"))?;
                let index = r.optional_unsigned(1)?;
                tags::put_context_unsigned(&mut out, 2, u64::from(prop));
                if let Some(i) = index {
                    tags::put_context_unsigned(&mut out, 3, i);
                }
                match self.read(object, prop, index) {
                    Ok(values) => {
                        tags::put_open(&mut out, 4);
                        for v in &values {
                            tags::put_value(&mut out, v);
                        }
                        tags::put_close(&mut out, 4);
                    }
                    Err((class, code)) => {
                        tags::put_open(&mut out, 5);
                        tags::put_value(&mut out, &Value::Enumerated(class));
                        tags::put_value(&mut out, &Value::Enumerated(code));
                        tags::put_close(&mut out, 5);
                    }
                }
            }
            r.close(1)?;
            tags::put_close(&mut out, 1);
        }
        Ok(Ok(out))
    }
}

fn who_is_range(body: &[u8]) -> Result<Option<(u32, u32)>, CodecError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok(None);
    }
    let low = r.context_unsigned(0)?;
    let high = r.context_unsigned(1)?;
    let fit = |v: u64| u32::try_from(v).map_err(|_| CodecError::Length("instance"));
    Ok(Some((fit(low)?, fit(high)?)))
}

async fn serve(socket: UdpSocket, device: Device) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        // Anything not BACnet, or not asked of a device, is ignored.
        let Ok(Frame::Apdu { apdu, .. }) = frame::decode(&buf[..n]) else {
            continue;
        };
        if let Some(answer) = device.answer(apdu) {
            let _ = socket
                .send_to(&frame::unicast(&answer, false, None), from)
                .await;
        }
    }
}

/// Serves until `--duration` passes (or Ctrl-C); returns the confirmed
/// requests answered.
///
/// # Errors
/// A port cannot be bound, or more than 100 devices were asked for.
pub async fn run(args: &SimulateArgs, target: SocketAddr) -> anyhow::Result<u64> {
    anyhow::ensure!(
        args.devices <= MAX_DEVICES,
        "--devices: at most {MAX_DEVICES} BACnet devices (one UDP port each)"
    );
    let served = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let port =
            u16::try_from(u32::from(target.port()) + i).context("--target: ports run out")?;
        let at = SocketAddr::new(target.ip(), port);
        let socket = UdpSocket::bind(at)
            .await
            .with_context(|| format!("bind {at}"))?;
        let instance = FIRST_INSTANCE + i;
        eprintln!(
            "simulate: BACnet device {instance} (sim-ahu-{instance}) on {}",
            socket.local_addr()?
        );
        tasks.spawn(serve(
            socket,
            Device {
                instance,
                start,
                served: served.clone(),
            },
        ));
    }
    match args.duration {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tasks.shutdown().await;
    Ok(served.load(Ordering::Relaxed))
}
