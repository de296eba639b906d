//! BACnet engineering units (ASHRAE 135-2020 §21, BACnetEngineeringUnits)
//! onto the symbols of the gateway's units table
//! (`gateway_core::units`), so a value read from an object shows and
//! announces its unit as a configured one would: the device task reports
//! each object's symbol for its metric (`IngressSender::report_units`),
//! and every output finds it there. Units without an entry here keep their
//! standard name ("units-NNN" when unnamed), shown by `bacnet discover`
//! but set on no reading (the name table then guesses, as for any
//! adapter).

/// The gateway's symbol for a BACnet unit, when it has one.
pub fn symbol(units: u32) -> Option<&'static str> {
    Some(match units {
        2 => "mA",
        3 => "A",
        5 => "V",
        6 => "kV",
        9 => "kVA",
        12 => "kvar",
        15 => "",
        18 => "Wh",
        19 => "kWh",
        27 => "Hz",
        29 | 98 => "%",
        30 => "mm",
        31 => "m",
        37 => "lx",
        47 => "W",
        48 => "kW",
        49 => "MW",
        53 => "Pa",
        54 => "kPa",
        55 => "bar",
        62 => "°C",
        63 => "K",
        64 => "°F",
        71 => "h",
        72 => "min",
        73 => "s",
        74 => "m/s",
        80 => "m³",
        82 => "L",
        87 => "L/s",
        88 => "L/min",
        96 => "ppm",
        97 => "ppb",
        104 => "rpm",
        124 => "mV",
        133 => "hPa",
        134 => "mbar",
        135 => "m³/h",
        136 => "L/h",
        146 => "MWh",
        199 => "dB",
        218 => "mg/m³",
        219 => "µg/m³",
        _ => return None,
    })
}

/// The standard's name, for `bacnet discover`.
pub fn name(units: u32) -> String {
    let known = match units {
        29 => "percent-relative-humidity",
        62 => "degrees-celsius",
        64 => "degrees-fahrenheit",
        95 => "no-units",
        96 => "parts-per-million",
        98 => "percent",
        19 => "kilowatt-hours",
        47 => "watts",
        48 => "kilowatts",
        _ => "",
    };
    if known.is_empty() {
        symbol(units)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("units-{units}"), str::to_string)
    } else {
        known.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_a_building_reports_map_onto_the_table() {
        assert_eq!(symbol(62), Some("°C"));
        assert_eq!(symbol(96), Some("ppm"));
        assert_eq!(symbol(29), Some("%"));
        assert_eq!(symbol(19), Some("kWh"));
        assert_eq!(symbol(95), None, "no-units sets none");
        assert_eq!(name(62), "degrees-celsius");
        assert_eq!(name(12345), "units-12345");
    }
}
