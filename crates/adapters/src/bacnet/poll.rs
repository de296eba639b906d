//! A poll: the present value and status flags of a device's objects,
//! batched in ReadPropertyMultiple requests within the device's max APDU
//! (what worked kept in [`Capabilities`]), each object's answer matched
//! to what was asked, and ReadProperty one at a time for a device without
//! RPM. Apart from [`super::reader`], which finds and describes the
//! objects once.

use std::net::SocketAddr;

use super::client::{Client, ClientError};
use super::reader::{one_object_refused, refuses_service, too_big, Capabilities, Sample};
use super::services::{ErrorCode, PropertyRef, PropertyResult};
use super::tags::{property, ObjectId};

/// What ReadPropertyMultiple answers held that the requests did not ask
/// for, or lacked: each dropped (an object's second result, a result under
/// an object id not asked) or absent from the poll (an object asked and
/// not answered), and counted, so one poll is one value per object, never
/// two and never one filed under another object.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Discrepancies {
    /// Results for an object already answered in the same answer.
    pub duplicate: u64,
    /// Results under an object id the request did not ask for.
    pub unasked: u64,
    /// Objects asked for that the answer left out.
    pub missing: u64,
}

impl Discrepancies {
    /// Each kind with its count and the `error_type` it is counted as.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        [
            ("answer_duplicate", self.duplicate),
            ("answer_unasked", self.unasked),
            ("answer_missing", self.missing),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }
}

/// A poll's samples, each for an object asked for, at most once.
#[derive(Debug, Default)]
pub struct Polled {
    pub samples: Vec<(ObjectId, Result<Sample, ErrorCode>)>,
    pub discrepancies: Discrepancies,
}

/// Keeps from one RPM answer the first result of each object `asked`,
/// counting what does not fit.
pub(super) fn match_answer<T>(
    asked: &[ObjectId],
    answer: Vec<(ObjectId, T)>,
    d: &mut Discrepancies,
) -> Vec<(ObjectId, T)> {
    let mut seen = vec![false; asked.len()];
    let mut out = Vec::with_capacity(asked.len());
    for (id, results) in answer {
        match asked.iter().position(|a| *a == id) {
            Some(k) if !seen[k] => {
                seen[k] = true;
                out.push((id, results));
            }
            Some(_) => d.duplicate += 1,
            None => d.unasked += 1,
        }
    }
    d.missing += seen.iter().filter(|s| !**s).count() as u64;
    out
}

/// At most this many objects are polled alone ([`Capabilities::alone`]);
/// beyond, a refused object is searched for in its batch again.
const MOST_ALONE: usize = 1024;

/// Present value and status flags of `objects`: each object's sample or
/// the error the device gave for it.
pub async fn poll(
    client: &Client,
    peer: SocketAddr,
    objects: &[ObjectId],
    caps: &mut Capabilities,
) -> Result<Polled, ClientError> {
    let props = vec![
        PropertyRef::whole(property::PRESENT_VALUE),
        PropertyRef::whole(property::STATUS_FLAGS),
    ];
    let mut out = Vec::with_capacity(objects.len());
    let mut discrepancies = Discrepancies::default();
    let (alone, objects): (Vec<ObjectId>, Vec<ObjectId>) =
        objects.iter().partition(|id| caps.alone.contains(id));
    let mut at = 0;
    // Narrowed, for this poll only, around an object the device refuses
    // the whole request for; back to the batch after each answer, so the
    // objects after it are not read one by one.
    let mut span = caps.batch;
    while at < objects.len() && caps.rpm {
        let end = (at + span.min(caps.batch)).min(objects.len());
        let items: Vec<_> = objects[at..end]
            .iter()
            .map(|id| (*id, props.clone()))
            .collect();
        match client.read_property_multiple(peer, &items).await {
            Ok(r) => {
                for (id, results) in match_answer(&objects[at..end], r, &mut discrepancies) {
                    out.push((id, sample_of(&results)));
                }
                at = end;
                span = caps.batch;
            }
            Err(e) if too_big(&e) && caps.batch > 1 => caps.batch = (caps.batch / 2).max(1),
            Err(e) if refuses_service(&e) => caps.rpm = false,
            Err(e) => match one_object_refused(&e) {
                Some(_) if end - at > 1 => span = (end - at) / 2,
                Some(code) => {
                    out.push((objects[at], Err(code)));
                    if caps.alone.len() < MOST_ALONE {
                        caps.alone.push(objects[at]);
                    }
                    at = end;
                    span = caps.batch;
                }
                None => return Err(e),
            },
        }
    }
    let mut by_property = objects[at..].to_vec();
    for id in alone {
        if !caps.rpm {
            by_property.push(id);
            continue;
        }
        match client
            .read_property_multiple(peer, &[(id, props.clone())])
            .await
        {
            Ok(r) => {
                for (id, results) in match_answer(&[id], r, &mut discrepancies) {
                    let sample = sample_of(&results);
                    if sample.is_ok() {
                        // Back (created again, or a passing fault): it
                        // joins the batches, and leaves them again if
                        // it fails one.
                        caps.alone.retain(|a| *a != id);
                    }
                    out.push((id, sample));
                }
            }
            Err(e) if refuses_service(&e) => {
                caps.rpm = false;
                by_property.push(id);
            }
            Err(e) => match one_object_refused(&e) {
                Some(code) => out.push((id, Err(code))),
                None => return Err(e),
            },
        }
    }
    for id in &by_property {
        let pv = client.read_property(peer, *id, props[0]).await;
        let sample = match pv {
            Ok(pv) => {
                let flags = match client.read_property(peer, *id, props[1]).await {
                    Ok(flags) => Some(flags),
                    Err(ClientError::Mismatch(_)) => {
                        discrepancies.unasked += 1;
                        None
                    }
                    Err(_) => None,
                };
                Sample::from_values(&pv, flags.as_deref()).ok_or(NOT_A_NUMBER)
            }
            Err(ClientError::Error(code)) => Err(code),
            // Another object's value is no value of this one: left out of
            // this poll, counted, and the other objects still read.
            Err(ClientError::Mismatch(_)) => {
                discrepancies.unasked += 1;
                discrepancies.missing += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push((*id, sample));
    }
    Ok(Polled {
        samples: out,
        discrepancies,
    })
}

/// A present value that is no finite number (a NaN, as controllers report
/// a failed sensor, an infinity, a string): not a code a device sends (it
/// answered, with a value), so it is told apart from the device's own
/// Errors and counted as `not_finite`, as Modbus counts a NaN.
pub const NOT_A_NUMBER: ErrorCode = ErrorCode {
    class: u32::MAX,
    code: u32::MAX,
};

fn sample_of(results: &[PropertyResult]) -> Result<Sample, ErrorCode> {
    let mut pv = None;
    let mut flags = None;
    for r in results {
        match (r.property.property, &r.value) {
            (property::PRESENT_VALUE, Ok(v)) => pv = Some(v.as_slice()),
            (property::PRESENT_VALUE, Err(e)) => return Err(*e),
            (property::STATUS_FLAGS, Ok(v)) => flags = Some(v.as_slice()),
            _ => {}
        }
    }
    Sample::from_values(pv.ok_or(NOT_A_NUMBER)?, flags).ok_or(NOT_A_NUMBER)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_one_result_per_object_asked_and_counts_the_rest() {
        let id = |s: &str| s.parse::<ObjectId>().unwrap();
        let asked = [id("av:1"), id("av:2"), id("av:3")];
        let answer = vec![
            (id("av:1"), 1),
            (id("av:1"), 777),
            (id("av:9"), 2),
            (id("av:3"), 3),
            (id("av:3"), 4),
        ];
        let mut d = Discrepancies::default();
        let kept = match_answer(&asked, answer, &mut d);
        assert_eq!(kept, vec![(id("av:1"), 1), (id("av:3"), 3)]);
        assert_eq!(
            d,
            Discrepancies {
                duplicate: 2,
                unasked: 1,
                missing: 1
            }
        );
    }
}
