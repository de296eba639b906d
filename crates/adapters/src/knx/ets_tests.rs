//! ETS group-address exports as ETS writes them ("1/1" and "3/1" layouts).

#![allow(clippy::unwrap_used)]

use super::*;

/// ETS 6's "1/1" export, tab-separated, every field quoted.
const ONE_ONE: &str = "\"Group name\"\t\"Address\"\t\"Central\"\t\"Unfiltered\"\t\"Description\"\t\"DatapointType\"\t\"Security\"
\"Erdgeschoss\"\t\"1/-/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Küche\"\t\"1/1/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Temperatur Ist\"\t\"1/1/0\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"
\"Licht \"\"Decke\"\"\"\t\"1/1/1\"\t\"\"\t\"\"\t\"\"\t\"DPST-1-1\"\t\"Auto\"
\"Energie\"\t\"1/1/2\"\t\"\"\t\"\"\t\"\"\t\"DPST-13-13\"\t\"Auto\"
\"Living Room\"\t\"1/2/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Temperature\"\t\"1/2/0\"\t\"\"\t\"\"\t\"\"\t\"DPT-9\"\t\"Auto\"
\"Temperature\"\t\"1/2/1\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"
\"No type\"\t\"1/2/2\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Date\"\t\"1/2/3\"\t\"\"\t\"\"\t\"\"\t\"DPST-11-1\"\t\"Auto\"
";

#[test]
fn the_middle_group_names_the_device_and_the_address_the_metric() {
    let e = parse(ONE_ONE, "rooms").unwrap();
    let got: Vec<(String, String, String, Option<String>)> = e
        .groups
        .iter()
        .map(|g| {
            (
                g.address.to_string(),
                g.device.to_string(),
                g.metric.to_string(),
                g.unit.clone(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (s("1/1/0"), s("kueche"), s("temperatur_ist"), Some(s("°C"))),
            (s("1/1/1"), s("kueche"), s("licht_decke"), None),
            (s("1/1/2"), s("kueche"), s("energie"), Some(s("kWh"))),
            // Two addresses of one name in one group: each takes its address.
            (s("1/2/0"), s("living-room"), s("temperature_1_2_0"), None),
            (
                s("1/2/1"),
                s("living-room"),
                s("temperature_1_2_1"),
                Some(s("°C"))
            ),
        ]
    );
    assert_eq!(e.skipped.len(), 2, "{:?}", e.skipped);
    assert!(e.skipped[0].contains("no DPT"));
    assert!(e.skipped[1].contains("DPST-11-1"));
}

#[test]
fn a_row_whose_address_is_no_group_address_is_listed_not_dropped_silently() {
    let text = format!(
        "{ONE_ONE}\"Typo\"\t\"99999/1/1\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"\n\
         \"Four levels\"\t\"1/2/3/4\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"\n\
         \"\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"\n"
    );
    let e = parse(&text, "rooms").unwrap();
    assert_eq!(e.groups.len(), 5, "the readable rows as before");
    let unreadable: Vec<&String> = e
        .skipped
        .iter()
        .filter(|s| s.ends_with("not a group address"))
        .collect();
    assert_eq!(
        unreadable,
        ["99999/1/1 Typo: not a group address", "1/2/3/4 Four levels: not a group address"],
        "an empty row is not listed: {:?}",
        e.skipped
    );
}

#[test]
fn the_three_column_layout_semicolons_and_other_encodings_read_alike() {
    let three = "\"Main\";\"Middle\";\"Sub\";\"Address\";\"Central\";\"Unfiltered\";\"Description\";\"DatapointType\";\"Security\"
\"Floor 1\";\"\";\"\";\"1/-/-\";\"\";\"\";\"\";\"\";\"Auto\"
\"\";\"Office\";\"\";\"1/2/-\";\"\";\"\";\"\";\"\";\"Auto\"
\"\";\"\";\"CO2\";\"1/2/3\";\"\";\"\";\"\";\"DPST-9-8\";\"Auto\"
";
    let e = parse(three, "rooms").unwrap();
    assert_eq!(e.groups.len(), 1);
    assert_eq!(
        (e.groups[0].device.as_str(), e.groups[0].metric.as_str()),
        ("office", "co2")
    );
    // UTF-16 with its BOM (ETS's "Unicode") and Latin-1.
    let mut utf16 = vec![0xFF, 0xFE];
    for u in three.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    assert_eq!(parse(&text(&utf16), "rooms").unwrap(), e);
    let latin1: Vec<u8> = ONE_ONE.chars().map(|c| c as u32 as u8).collect();
    assert_eq!(
        parse(&text(&latin1), "rooms").unwrap(),
        parse(ONE_ONE, "rooms").unwrap()
    );
    assert!(parse("\"Name\"\t\"Other\"\n", "rooms").is_err());
    assert!(parse("", "rooms").is_err());
}

#[test]
fn the_main_group_or_both_name_the_device_when_the_project_is_built_so() {
    let by = |rule| {
        parse_with(ONE_ONE, "rooms", rule)
            .unwrap()
            .groups
            .iter()
            .map(|g| g.device.to_string())
            .collect::<Vec<_>>()
    };
    assert!(by(DeviceRule::Main).iter().all(|d| d == "erdgeschoss"));
    assert_eq!(by(DeviceRule::MainMiddle)[0], "erdgeschoss-kueche");
    assert_eq!(by(DeviceRule::MainMiddle)[4], "erdgeschoss-living-room");
}

#[test]
fn a_german_ets_names_its_columns_in_german() {
    let de = ONE_ONE
        .replacen("\"Group name\"", "\"Gruppenname\"", 1)
        .replacen("\"Address\"", "\"Adresse\"", 1)
        .replacen("\"DatapointType\"", "\"DatenpunktTyp\"", 1);
    assert_eq!(
        parse(&de, "rooms").unwrap(),
        parse(ONE_ONE, "rooms").unwrap()
    );
}

#[test]
fn the_three_by_three_layout_spells_the_address_in_three_columns() {
    // ETS's "3/3": no Address column; the second Main, Middle and Sub
    // hold its numbers. The same project as a "3/1" export.
    let three_three = "\"Main\"\t\"Middle\"\t\"Sub\"\t\"Main\"\t\"Middle\"\t\"Sub\"\t\"Central\"\t\"Unfiltered\"\t\"Description\"\t\"DatapointType\"\t\"Security\"
\"Floor 1\"\t\"\"\t\"\"\t\"1\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"\"\t\"Office\"\t\"\"\t\"1\"\t\"2\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"\"\t\"\"\t\"CO2\"\t\"1\"\t\"2\"\t\"3\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-8\"\t\"Auto\"
\"\"\t\"\"\t\"Lights\"\t\"1\"\t\"2\"\t\"4\"\t\"\"\t\"\"\t\"\"\t\"DPST-1-1\"\t\"Auto\"
";
    let three_one = "\"Main\"\t\"Middle\"\t\"Sub\"\t\"Address\"\t\"Central\"\t\"Unfiltered\"\t\"Description\"\t\"DatapointType\"\t\"Security\"
\"Floor 1\"\t\"\"\t\"\"\t\"1/-/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"\"\t\"Office\"\t\"\"\t\"1/2/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"\"\t\"\"\t\"CO2\"\t\"1/2/3\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-8\"\t\"Auto\"
\"\"\t\"\"\t\"Lights\"\t\"1/2/4\"\t\"\"\t\"\"\t\"\"\t\"DPST-1-1\"\t\"Auto\"
";
    let e = parse(three_three, "rooms").unwrap();
    assert_eq!(e, parse(three_one, "rooms").unwrap());
    // Exported without the header line, each layout reads the same.
    let headless = |text: &str| text.split_once('\n').unwrap().1.to_string();
    for text in [three_three, three_one] {
        assert_eq!(parse(&headless(text), "rooms").unwrap(), e, "{text}");
    }
    assert_eq!(
        parse(&headless(ONE_ONE), "rooms").unwrap(),
        parse(ONE_ONE, "rooms").unwrap()
    );
    let got: Vec<(String, &str, &str)> = e
        .groups
        .iter()
        .map(|g| (g.address.to_string(), g.device.as_str(), g.metric.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("1/2/3".to_string(), "office", "co2"),
            ("1/2/4".to_string(), "office", "lights")
        ]
    );
}

/// A "1/1" export of `rows` (name, address, DPT), separated by `sep`.
fn one_one(sep: &str, rows: &[(&str, &str, &str)]) -> String {
    let mut text = ["Group name", "Address", "Description", "DatapointType"]
        .map(|c| format!("\"{c}\""))
        .join(sep);
    text.push('\n');
    for (name, address, dpt) in rows {
        text.push_str(&[*name, address, "", dpt].map(|c| format!("\"{c}\"")).join(sep));
        text.push('\n');
    }
    text
}

#[test]
fn long_names_alike_in_their_first_64_characters_each_keep_their_address() {
    let common = "Heizung Ist-Temperatur Wohnbereich Erdgeschoss Nordseite Fenster";
    assert_eq!(common.len(), 64);
    let (a, b) = (format!("{common} links oben"), format!("{common} links unte"));
    assert_eq!((a.len(), b.len()), (75, 75));
    let long_middle = "M".repeat(64);
    let text = one_one(
        "\t",
        &[
            ("Erdgeschoss", "1/-/-", ""),
            (&long_middle, "1/1/-", ""),
            (&a, "1/1/8", "DPST-9-1"),
            (&b, "1/1/9", "DPST-9-1"),
            (&format!("{} 1", "M".repeat(64)), "1/1/10", "DPST-9-1"),
            ("Hauptgruppe mit einem sehr langen Namen der ueber vierundsechzig hinausgeht", "31/-/-", ""),
            (&"N".repeat(70), "31/7/-", ""),
            (&a, "31/7/255", "DPST-9-1"),
            (&b, "31/7/254", "DPST-9-1"),
        ],
    );
    for rule in [DeviceRule::Middle, DeviceRule::MainMiddle] {
        let e = parse_with(&text, "rooms", rule).unwrap();
        assert!(e.skipped.is_empty(), "{:?}", e.skipped);
        let got: Vec<(String, String)> = e
            .groups
            .iter()
            .map(|g| (g.address.to_string(), g.metric.to_string()))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        for (address, metric) in &got {
            assert!(metric.len() <= 64, "{metric}");
            if address != "1/1/10" {
                assert!(
                    metric.starts_with("heizung_ist_temperatur")
                        && metric.ends_with(&address.replace('/', "_")),
                    "{metric}"
                );
            }
        }
        assert!(e.groups.iter().all(|g| g.device.as_str().len() <= 128));
    }
}

#[test]
fn accented_letters_of_european_languages_are_spelt_not_cut() {
    let cases = [
        ("Température", "temperature"),
        ("Café Zone", "cafe_zone"),
        ("Salle à manger", "salle_a_manger"),
        ("Küche Größe", "kueche_groesse"),
        ("Habitación Niño", "habitacion_nino"),
        ("Soggiorno Città", "soggiorno_citta"),
        ("Iluminação Garagem", "iluminacao_garagem"),
        ("Kjøkken Bad Stue Ærø Åpen", "kjokken_bad_stue_aero_apen"),
        ("Œuvre", "oeuvre"),
        ("Łazienka Żółw Światło", "lazienka_zolw_swiatlo"),
        ("Kuchyň Příkon Šero Žaluzie Čidlo", "kuchyn_prikon_sero_zaluzie_cidlo"),
        ("Hőmérséklet Űr", "homerseklet_ur"),
        ("Sufragerie Încălzire Ștergere Țeavă", "sufragerie_incalzire_stergere_teava"),
        ("Þórshöfn Íslenska Eð", "thorshoefn_islenska_ed"),
        // Marks written apart from their letters (macOS): alike.
        ("Tempe\u{301}rature Ku\u{308}che", "temperature_kueche"),
        ("Temp. °C / 24h", "temp_c_24h"),
    ];
    for (name, folded) in cases {
        assert_eq!(fold(name, '_'), folded, "{name}");
    }
    assert_eq!(fold("Café Zone", '-'), "cafe-zone");
    assert_eq!(fold("Salle à manger", '-'), "salle-a-manger");
}

#[test]
fn a_quoted_field_runs_over_line_breaks() {
    // As the tester's ga1.csv: a two-line Description, and a name with a
    // line break and an escaped quote.
    let text = "\"Group name\";\"Address\";\"Central\";\"Unfiltered\";\"Description\";\"DatapointType\";\"Security\"\r
\"Erdgeschoss\";\"1/-/-\";\"\";\"\";\"\";\"\";\"\"\r
\"Küche\";\"1/1/-\";\"\";\"\";\"\";\"\";\"\"\r
\"CO2\";\"1/1/2\";\"\";\"\";\"Zeile eins\r
Zeile \"\"zwei\"\"\";\"DPST-9-8\";\"Auto\"\r
\"Licht\nDecke\";\"1/1/3\";\"\";\"\";\"\";\"DPT-1\";\"Auto\"\r
\"Dimmwert\";\"1/1/4\";\"\";\"\";\"\";\"DPST-5-1\";\"Auto\"\r
";
    let e = parse(text, "rooms").unwrap();
    assert!(e.skipped.is_empty() && e.notes.is_empty(), "{e:?}");
    let got: Vec<(String, &str, String)> = e
        .groups
        .iter()
        .map(|g| (g.address.to_string(), g.metric.as_str(), g.dpt.to_string()))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (s("1/1/2"), "co2", s("9.008")),
            (s("1/1/3"), "licht_decke", s("1")),
            (s("1/1/4"), "dimmwert", s("5.001")),
        ]
    );
}

#[test]
fn a_quote_never_closed_costs_its_line_not_the_rest_of_the_file() {
    let text = one_one(
        ";",
        &[
            ("Küche", "1/1/-", ""),
            ("Temperatur", "1/1/1", "DPST-9-1"),
            ("Licht", "1/1/3", "DPST-1-1"),
        ],
    )
    .replacen("\"DPST-9-1\"", "\"DPST-9-1", 1);
    let e = parse(&text, "rooms").unwrap();
    let got: Vec<String> = e.groups.iter().map(|g| g.address.to_string()).collect();
    assert_eq!(got, ["1/1/1", "1/1/3"]);
    assert_eq!(
        e.notes,
        ["line 3: a quote is not closed; the line was read on its own"]
    );
}

#[test]
fn the_separator_is_told_by_the_characters_outside_quotes() {
    // Header-less and comma-separated, the first name holding a ';' (the
    // tester's i_nohdr_comma_semicolon_name.csv), and one a tab.
    let text = "\"Erdgeschoss; Nord\",\"1/-/-\",\"\",\"\",\"\",\"\",\"\"
\"Küche\",\"1/1/-\",\"\",\"\",\"\",\"\",\"\"
\"Temp\",\"1/1/2\",\"\",\"\",\"\",\"DPST-9-1\",\"Auto\"
";
    let e = parse(text, "rooms").unwrap();
    let got: Vec<(String, &str, &str)> = e
        .groups
        .iter()
        .map(|g| (g.address.to_string(), g.device.as_str(), g.metric.as_str()))
        .collect();
    assert_eq!(got, [("1/1/2".to_string(), "kueche", "temp")]);
    let tab = text.replacen("; Nord", "\tNord", 1);
    assert_eq!(parse(&tab, "rooms").unwrap(), e);
    // Nor a comma in a semicolon file's first name.
    let semi = text.replace("\",\"", "\";\"").replacen("; Nord", ", Nord", 1);
    assert_eq!(parse(&semi, "rooms").unwrap(), e);
    assert_eq!(separator("\n\n  \"a,b\";\"c\"\n1,2"), ';');
    assert_eq!(separator("\"a;b\nc\",\"d\"\n"), ',');
    assert_eq!(separator("\"only\"\n"), '\t');
}

/// The defect: ETS's "ANSI" export is the Windows code page (1252 in
/// Western Europe), whose bytes 0x80 to 0x9F are letters and signs where
/// Latin-1 has control characters: `Š` `š` `Ž` `ž` `Œ` `œ` `Ÿ` were read as
/// controls and dropped from names, so the same project exported as
/// "ANSI" and as "Unicode" made other devices and metrics ("Šatna" was
/// `atna`, "Œil-de-bœuf" `il-de-b-uf`), its history starting again.
#[test]
fn an_ansi_export_reads_the_windows_letters_as_a_unicode_one_does() {
    let export = "\"Group name\";\"Address\";\"Central\";\"Unfiltered\";\"Description\";\"DatapointType\";\"Security\"
\"Byt\";\"1/-/-\";\"\";\"\";\"\";\"\";\"Auto\"
\"Šatna\";\"1/1/-\";\"\";\"\";\"\";\"\";\"Auto\"
\"Œil-de-bœuf – žaluzie\";\"1/1/0\";\"\";\"\";\"\";\"DPST-5-1\";\"Auto\"
";
    // As Windows writes it in code page 1252.
    let ansi: Vec<u8> = export
        .chars()
        .map(|c| match c {
            'Š' => 0x8A,
            'Œ' => 0x8C,
            'œ' => 0x9C,
            'ž' => 0x9E,
            '–' => 0x96,
            c => u8::try_from(u32::from(c)).unwrap(),
        })
        .collect();
    let unicode = parse(export, "rooms").unwrap();
    assert_eq!(
        (
            unicode.groups[0].device.as_str(),
            unicode.groups[0].metric.as_str()
        ),
        ("satna", "oeil_de_boeuf_zaluzie")
    );
    assert_eq!(parse(&text(&ansi), "rooms").unwrap(), unicode);
}
