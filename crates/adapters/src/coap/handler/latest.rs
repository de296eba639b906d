//! The latest value of every metric of every device heard, for
//! `GET /s/{device}` and `/.well-known/core`.

use std::collections::HashMap;

use coap_lite::ResponseType;
use gateway_core::hash::SeededState;
use gateway_core::{DeviceId, MetricName, Reading, Timestamp};

use super::answer::Answer;
use super::options::{CF_JSON, CF_LINK_FORMAT, CF_SENML_CBOR, CF_SENML_JSON, CF_TEXT, URI_QUERY};
use super::{Handler, Outcome};
use crate::coap::message::Request;

/// The error type counted when `/.well-known/core` lists only part of the
/// devices: not a refusal of the request, so the server logs it as such.
pub(crate) const LISTING_TRUNCATED: &str = "listing_truncated";

/// Largest response payload in one datagram (the §4.6 bound): a larger
/// `/.well-known/core` or `GET /s/{device}` goes in Block2 blocks.
pub(super) const MAX_RESPONSE_PAYLOAD: usize = 1024;
/// Largest `/.well-known/core` listing (about 1 500 devices): every block
/// request builds the listing again, so its size bounds what one datagram
/// can make the server do.
pub(super) const MAX_LISTING: usize = 64 * 1024;
/// Metrics remembered per device for `GET /s/{device}`.
pub(super) const MAX_METRICS_PER_DEVICE: usize = 24;

/// A device's latest value and time per metric, in the order first
/// heard: a scan of its few metrics, each name told first by where its
/// text lies (the same name is one text datagram after datagram), was a
/// B-tree's search by string and a `String` per metric (issue 69).
pub(super) type Latest = Vec<(MetricName, f64, Timestamp)>;

/// Slots of [`Devices::recent`].
const RECENT_DEVICES: usize = 256;

/// Each device's [`Latest`], in the order first heard, by its id; never
/// more than the handler's `max_devices` and none let go.
pub(super) struct Devices {
    index: HashMap<DeviceId, u32, SeededState>,
    kept: Vec<(DeviceId, Latest)>,
    /// Where in `kept` the device last found in each slot is, the slot
    /// picked by its text as the ids' recent slots are: a reading's id is
    /// the ids' clone, its text where the kept one's is, so the slot's
    /// check is two compares where the map hashed the text and compared
    /// it (about 180 instructions of a CoAP datagram, issue 69). Ids
    /// whose texts lie apart are looked up in `index`.
    recent: Vec<u32>,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            kept: Vec::new(),
            recent: vec![u32::MAX; RECENT_DEVICES],
        }
    }
}

impl Devices {
    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    pub(super) fn get(&self, id: &DeviceId) -> Option<&Latest> {
        let at = *self.index.get(id)?;
        self.kept.get(at as usize).map(|(_, latest)| latest)
    }

    /// The ids kept, in the order first heard.
    pub(super) fn ids(&self) -> impl Iterator<Item = &DeviceId> {
        self.kept.iter().map(|(id, _)| id)
    }

    /// Where in `kept` `id` is.
    fn position(&mut self, id: &DeviceId) -> Option<usize> {
        let slot = super::super::names::Ids::slot(id.as_str().as_bytes());
        let recent = self.recent.get(slot).copied().unwrap_or(u32::MAX);
        let at = match self.kept.get(recent as usize) {
            // Where a live id's text lies no other text lies.
            Some((kept, _)) if kept.same_text(id) && kept.as_str().len() == id.as_str().len() => {
                recent
            }
            _ => {
                let at = *self.index.get(id)?;
                if let Some(r) = self.recent.get_mut(slot) {
                    *r = at;
                }
                at
            }
        };
        Some(at as usize)
    }

    /// Keeps `r`'s value as its metric's latest, its device's first
    /// while fewer than `max_devices` are kept.
    fn remember(&mut self, r: &Reading, max_devices: usize) {
        // A known device, the case of every datagram after its first, has
        // its known metric updated in place: no key is copied (two
        // allocations a reading otherwise), no second lookup.
        // One call of remember_in, which is then inlined: with two, one
        // build kept it out of line, its call a third of its cost.
        let metrics = match self.position(r.device()) {
            Some(at) => self.kept.get_mut(at).map(|(_, metrics)| metrics),
            None if self.len() < max_devices => Some(self.insert(r.device().clone())),
            None => None,
        };
        if let Some(metrics) = metrics {
            remember_in(metrics, r);
        }
    }

    /// Keeps `id`, not kept yet, with nothing heard.
    fn insert(&mut self, id: DeviceId) -> &mut Latest {
        let at = u32::try_from(self.kept.len()).unwrap_or(u32::MAX);
        self.index.insert(id.clone(), at);
        self.kept.push((id, Latest::new()));
        let last = self.kept.len() - 1;
        &mut self.kept[last].1
    }
}

// Once per reading; left out of line by some builds, its call cost more
// than its scan.
#[inline]
fn remember_in(metrics: &mut Latest, r: &Reading) {
    // A clone of the kept name shares its text: equal by the address,
    // without the call that compares texts (a fifth of this scan).
    let same = |m: &MetricName| m.same_text(r.metric()) || m == r.metric();
    if let Some(latest) = metrics.iter_mut().find(|(m, ..)| same(m)) {
        (latest.1, latest.2) = (r.value(), r.time());
    } else if metrics.len() < MAX_METRICS_PER_DEVICE {
        metrics.push((r.metric().clone(), r.value(), r.time()));
    }
}

impl Handler {
    pub(super) fn remember(&mut self, readings: &[Reading]) {
        for r in readings {
            self.latest.remember(r, self.limits.max_devices);
        }
    }

    pub(super) fn latest_json(&self, device: &str, out: &mut Outcome) -> Answer {
        let Some(metrics) = DeviceId::new(device).ok().and_then(|d| self.latest.get(&d)) else {
            out.error("not_found", format!("no readings from {device}"));
            return Answer::new(ResponseType::NotFound);
        };
        // By name, as the map keeps them whatever serde_json's features.
        let mut sorted: Vec<_> = metrics.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let entries: Vec<(String, serde_json::Value)> = sorted
            .into_iter()
            .map(|(name, value, time)| {
                let entry = serde_json::json!({ "v": value, "t": time.to_rfc3339() });
                (name.to_string(), entry)
            })
            .collect();
        let whole = serde_json::json!({
            "device": device,
            "metrics": entries.into_iter().collect::<serde_json::Map<_, _>>(),
        });
        // At most MAX_METRICS_PER_DEVICE entries: a few blocks at most
        // when a client follows Block2.
        Answer::content(CF_JSON, whole.to_string().into_bytes())
    }

    /// `GET /.well-known/core[?attribute=value]`. A listing the cap cut
    /// short is still answered, and reported (`listing_truncated`) with
    /// how to read the rest, so that a gateway with thousands of devices
    /// does not look, to the one who asks, as if it had only 1 500.
    pub(super) fn discovery(&self, request: &Request<'_>, out: &mut Outcome) -> Answer {
        let query = request.option(URI_QUERY).next();
        let filter = match query.map(LinkFilter::parse) {
            None => None,
            Some(Some(filter)) => Some(filter),
            Some(None) => {
                let query = String::from_utf8_lossy(query.unwrap_or_default());
                out.error("invalid_query", format!("/.well-known/core?{query}"));
                return Answer::error(
                    ResponseType::BadRequest,
                    "a discovery query is attribute=value (RFC 6690 4.1)",
                );
            }
        };
        let (listing, left_out) = self.link_format(filter.as_ref());
        if left_out > 0 {
            out.error(
                LISTING_TRUNCATED,
                format!(
                    "{left_out} devices left out of a {} KiB listing; ask for a prefix at a time: /.well-known/core?href=/s/PREFIX*",
                    MAX_LISTING / 1024
                ),
            );
        }
        Answer::content(CF_LINK_FORMAT, listing.into_bytes())
    }

    /// RFC 6690 link format: the ingest collection, then one link per known
    /// device while the body stays under [`MAX_LISTING`], each kept only
    /// if `filter` holds it. The second value is how many matching devices
    /// the cap left out.
    pub(super) fn link_format(&self, filter: Option<&LinkFilter<'_>>) -> (String, usize) {
        let mut out = String::new();
        let ingest_ct = format!("{CF_TEXT} {CF_JSON} {CF_SENML_JSON} {CF_SENML_CBOR}");
        let ingest = [
            ("href", "/s"),
            ("rt", INGEST_RT),
            ("ct", ingest_ct.as_str()),
            ("title", INGEST_TITLE),
        ];
        if filter.is_none_or(|f| f.holds(&ingest)) {
            out = format!(
                "</s>;rt=\"{INGEST_RT}\";ct=\"{ingest_ct}\";title=\"{INGEST_TITLE}\""
            );
        }
        let mut devices: Vec<&str> = self.latest.ids().map(DeviceId::as_str).collect();
        devices.sort_unstable();
        let latest_ct = CF_JSON.to_string();
        let mut left_out = 0;
        for (i, d) in devices.iter().enumerate() {
            if let Some(f) = filter {
                let href = format!("/s/{d}");
                let attributes = [
                    ("href", href.as_str()),
                    ("rt", LATEST_RT),
                    ("ct", latest_ct.as_str()),
                ];
                if !f.holds(&attributes) {
                    continue;
                }
            }
            if left_out > 0 {
                left_out += 1;
                continue;
            }
            let comma = if out.is_empty() { "" } else { "," };
            let link = format!("{comma}</s/{d}>;rt=\"{LATEST_RT}\";ct={CF_JSON}");
            if out.len() + link.len() > MAX_LISTING {
                // Unfiltered, every device left is left out: counted, not
                // formatted (each block request builds the listing again).
                if filter.is_none() {
                    left_out = devices.len() - i;
                    break;
                }
                left_out = 1;
                continue;
            }
            out.push_str(&link);
        }
        (out, left_out)
    }
}

const INGEST_RT: &str = "edge-gateway.ingest";
const INGEST_TITLE: &str = "POST or PUT /s/{device}[/{metric}]";
const LATEST_RT: &str = "edge-gateway.latest";

/// An RFC 6690 §4.1 query on `/.well-known/core`
/// (`?href=/s/boiler-*`, `?rt=edge-gateway.latest`): a link is listed only
/// if it has the attribute and one of the attribute's values (space
/// separated, as `rt` and `ct` are) is the query's value, or starts with
/// it when the value ends in `*`. A gateway with more devices than one
/// listing holds is read a prefix at a time.
pub(super) struct LinkFilter<'a> {
    attribute: &'a str,
    value: &'a str,
    prefix: bool,
}

impl<'a> LinkFilter<'a> {
    /// The filter a Uri-Query option asks for; `None` for a query that is
    /// not `name=value` (§4.1 defines no other form), or not text.
    pub(super) fn parse(query: &'a [u8]) -> Option<Self> {
        let (attribute, value) = std::str::from_utf8(query).ok()?.split_once('=')?;
        if attribute.is_empty() {
            return None;
        }
        let (value, prefix) = match value.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (value, false),
        };
        Some(Self {
            attribute,
            value,
            prefix,
        })
    }

    fn holds(&self, attributes: &[(&str, &str)]) -> bool {
        attributes
            .iter()
            .filter(|(name, _)| *name == self.attribute)
            .flat_map(|(name, values)| {
                // `href` is one URI and `title` one text; `rt` and `ct`
                // are lists of values.
                let single = matches!(*name, "href" | "title");
                let whole = std::iter::once(*values).filter(move |_| single);
                let listed = values.split(' ').filter(move |_| !single);
                whole.chain(listed)
            })
            .any(|v| {
                if self.prefix {
                    v.starts_with(self.value)
                } else {
                    v == self.value
                }
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

    use super::{remember_in, Devices, Latest};

    /// The devices' latest values against a map of them, as the handler
    /// kept them before: ids that share a slot, equal ids whose texts lie
    /// apart (made twice, one of them interned), more devices than kept.
    #[test]
    fn the_latest_values_are_a_maps() {
        let names = [
            "a01", "b01", "q01", "a02", "sim-00001", "sim-00011", "x", "y1", "z-9f", "w-8f",
            "long-device-name-0001", "long-device-name-0101", "m1", "n1",
        ];
        let mut pool: Vec<DeviceId> = Vec::new();
        for n in names {
            pool.push(DeviceId::new(n).unwrap());
            pool.push(DeviceId::new(n).unwrap());
            pool.push(DeviceId::new(n).unwrap().interned());
        }
        let metrics: Vec<MetricName> = ["t", "h", "co2"]
            .iter()
            .map(|m| MetricName::new(*m).unwrap())
            .collect();
        let max_devices = 11;
        let mut devices = Devices::default();
        let mut model: HashMap<DeviceId, Latest> = HashMap::new();
        let mut next = crate::test_rng::xorshift(0x5eed_1a7e);
        for step in 0..20_000u32 {
            let id = pool[next() as usize % pool.len()].clone();
            let metric = metrics[next() as usize % metrics.len()].clone();
            let time = Timestamp::from_millis(1_700_000_000_000 + i64::from(step)).unwrap();
            let r = Reading::new(id, metric, f64::from(step), time, TimeSource::Arrival)
                .unwrap();
            devices.remember(&r, max_devices);
            if let Some(m) = model.get_mut(r.device()) {
                remember_in(m, &r);
            } else if model.len() < max_devices {
                remember_in(model.entry(r.device().clone()).or_default(), &r);
            }
            assert_eq!(devices.len(), model.len());
            for (id, want) in &model {
                assert_eq!(devices.get(id), Some(want), "{id} at {step}");
            }
        }
        let mut ids: Vec<&str> = devices.ids().map(DeviceId::as_str).collect();
        let mut want: Vec<&str> = model.keys().map(DeviceId::as_str).collect();
        ids.sort_unstable();
        want.sort_unstable();
        assert_eq!(ids, want);
    }
}
