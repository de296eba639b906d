//! What every BLE decoder produces: named values in BTHome's names and units.
//!
//! Names are BTHome's object names in snake_case with BTHome's units
//! (temperature °C, humidity %, pressure hPa, battery %, voltage V, power W,
//! energy kWh, illuminance lx, co2 ppm, …), and Ruuvi, PVVX and ATC use the
//! same ones (issue #14), so a room's `temperature` series is one series
//! whatever sensor sits in it.

use std::borrow::Cow;

/// One value of one object in one advertisement.
///
/// Several objects of one type in one frame are several sensors (bthome.io
/// format page, "Multiple measurements of the same type": "A postfix will
/// be added to the measurement name (e.g. temperature_2) in the order of
/// which you define the measurements … If only one measurement of a certain
/// type is sent, no postfix will be used"): `index` counts them from 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The object's name (`temperature`), without the postfix.
    pub name: &'static str,
    /// 1 for the first object of this name in the frame, 2 for the next, …
    pub index: u8,
    /// Scaled to the unit of the name; always finite (integers scaled by a
    /// finite factor).
    pub value: f64,
}

impl Measurement {
    /// The metric name: `temperature`, then `temperature_2`, `temperature_3`.
    pub fn metric(&self) -> Cow<'static, str> {
        if self.index <= 1 {
            Cow::Borrowed(self.name)
        } else {
            Cow::Owned(format!("{}_{}", self.name, self.index))
        }
    }
}

/// The values of one frame, numbering repeated names as they come.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements(pub Vec<Measurement>);

impl Measurements {
    /// Appends `name = value`, as the next occurrence of `name`.
    pub fn push(&mut self, name: &'static str, value: f64) {
        let seen = self.0.iter().filter(|m| m.name == name).count();
        // A frame is at most ~250 bytes and every object takes at least 2,
        // so the count stays far below 255; saturate rather than wrap anyway.
        let index = u8::try_from(seen + 1).unwrap_or(u8::MAX);
        self.0.push(Measurement { name, index, value });
    }

    /// Appends `name = value` when the field is available.
    pub fn push_some(&mut self, name: &'static str, value: Option<f64>) {
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    /// The value of the metric called `metric` (`temperature_2`), if any.
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|m| m.metric() == metric)
            .map(|m| m.value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Measurement> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_get_a_postfix_from_the_second_on() {
        let mut m = Measurements::default();
        m.push("temperature", 25.06);
        m.push("humidity", 63.27);
        m.push("temperature", 25.11);
        m.push("temperature", 22.55);
        let names: Vec<_> = m.iter().map(|x| x.metric().into_owned()).collect();
        assert_eq!(
            names,
            ["temperature", "humidity", "temperature_2", "temperature_3"]
        );
        assert_eq!(m.get("temperature_3"), Some(22.55));
        assert_eq!(m.get("humidity_2"), None);
    }
}
