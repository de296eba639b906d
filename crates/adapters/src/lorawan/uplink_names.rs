//! The metric names of an uplink's readings, made once and shared.

use std::borrow::Cow;
use std::collections::HashMap;

use gateway_core::MetricName;

use super::super::codecs::DecodedValue;

/// Metric names already made, by their text. A reading's name was made
/// anew for each reading (an allocation, checked and copied again into an
/// `Arc`) and freed when the pipeline dropped it; six times per uplink.
/// Now a name is made once and its readings share it.
#[derive(Debug, Default)]
pub struct MetricNames {
    /// The first names made, searched in order before `known`: a fleet's
    /// few codecs name a handful, and comparing short strings costs less
    /// than hashing one (six lookups an uplink).
    pub(super) first: Vec<MetricName>,
    pub(super) known: HashMap<String, MetricName>,
    /// Names given as `&'static str` (the built-in codecs' and `rssi`,
    /// `snr`, `gateways`), by their address and length: text that cannot
    /// change behind a pointer, so an equal pointer is an equal name and
    /// no bytes are compared. The text search was about 100 instructions
    /// a name, 600 an uplink (callgrind, issue 69).
    pub(super) statics: Vec<(&'static str, MetricName)>,
    /// [`ARRIVAL`]'s names, in its order, once asked for: the three every
    /// uplink adds came after the codec's in `statics`, so each was found
    /// by the longest scan (about 70 instructions a name, callgrind).
    arrival: [Option<MetricName>; 3],
    /// The list a codec decodes an uplink's payload into, kept for the
    /// next uplink (`uplink::decode`): one of its own per payload was an
    /// allocation and a free an uplink (callgrind, issue 69).
    pub(super) decoded: Vec<DecodedValue>,
}

/// The readings `finish` adds to every uplink, by [`MetricNames::arrival`].
const ARRIVAL: [&str; 3] = ["rssi", "snr", "gateways"];

impl MetricNames {
    /// Names kept at most: codecs name a fixed set (Cayenne adds a channel
    /// number), so this bounds a device sending every channel in turn.
    pub(super) const MAX: usize = 1024;
    pub(super) const FIRST: usize = 16;
    /// Values a kept [`Self::decoded`] has room for at most.
    pub(super) const MAX_DECODED: usize = 32;

    /// [`Self::get`] of a static name, found by its address first.
    /// Inlined: the call's own cost was most of a name found in the first
    /// places (six an uplink).
    #[inline]
    pub fn get_static(&mut self, name: &'static str) -> Option<MetricName> {
        if let Some((_, m)) = self.statics.iter().find(|(s, _)| std::ptr::eq(*s, name)) {
            return Some(m.clone());
        }
        self.add_static(name)
    }

    /// [`Self::get_static`] of a name not yet seen.
    #[inline(never)]
    fn add_static(&mut self, name: &'static str) -> Option<MetricName> {
        let m = self.get(name)?.interned();
        if self.statics.len() < Self::FIRST {
            self.statics.push((name, m.clone()));
        }
        Some(m)
    }

    /// The name `ARRIVAL[i]`, as [`Self::get_static`] gives it.
    #[inline]
    pub(super) fn arrival(&mut self, i: usize) -> Option<MetricName> {
        if let Some(Some(m)) = self.arrival.get(i) {
            return Some(m.clone());
        }
        let m = self.get_static(ARRIVAL.get(i)?)?;
        if let Some(slot) = self.arrival.get_mut(i) {
            *slot = Some(m.clone());
        }
        Some(m)
    }

    /// A codec's name: [`Self::get_static`] when it is static.
    #[inline]
    pub fn get_cow(&mut self, name: Cow<'static, str>) -> Option<MetricName> {
        match name {
            Cow::Borrowed(s) => self.get_static(s),
            Cow::Owned(s) => self.get(&s),
        }
    }

    /// The name `name`, or `None` when it is not a valid one.
    pub fn get(&mut self, name: &str) -> Option<MetricName> {
        if let Some(m) = self.first.iter().find(|m| m.as_str() == name) {
            return Some(m.clone());
        }
        if let Some(m) = self.known.get(name) {
            return Some(m.clone());
        }
        let mut m = MetricName::new(name).ok()?;
        if self.first.len() < Self::FIRST {
            // Interned as the device ids are (`Session::new`): only these
            // few, the names a fleet's codecs give on every uplink.
            m = m.interned();
            self.first.push(m.clone());
        } else if self.known.len() < Self::MAX {
            self.known.insert(name.to_string(), m.clone());
        }
        Some(m)
    }
}
