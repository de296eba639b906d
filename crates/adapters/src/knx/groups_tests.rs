#![allow(clippy::unwrap_used)]

use super::*;

fn parse(text: &str) -> (KnxSection, Problems) {
    let mut p = Problems::default();
    let root: toml::Table = toml::from_str(text).unwrap();
    (section(&root, &mut p), p)
}

const ADAPTER: &str = "[[adapter]]\ntype = \"knx\"\nname = \"rooms\"\nurl = \"udp://127.0.0.1\"\n";

#[test]
fn a_group_takes_its_dpts_unit_and_its_adapter() {
    let (s, p) = parse(&format!(
        "{ADAPTER}
[[knx.group]]
address = \"1/515\"
dpt = \"DPST-9-1\"
device = \"room-101\"
metric = \"temperature\"
read_on_start = true
poll = \"5m\"

[[knx.group]]
address = \"2564\"
state_address = \"1/2/5\"
dpt = \"13.013\"
device = \"room-101\"
metric = \"energy\"
unit = \"kWh\"
"
    ));
    assert!(p.is_empty(), "{p}");
    let g = &s.groups[0];
    assert_eq!(g.address.to_string(), "1/2/3");
    assert_eq!(g.unit.as_deref(), Some("°C"));
    assert_eq!(g.adapter.as_deref(), Some("rooms"));
    assert!(g.read_on_start);
    assert_eq!(s.groups[1].read_address().to_string(), "1/2/5");
    // Only a unit a person wrote goes to the registry, where it would
    // win over every other; the DPT's is reported at run time.
    let devices = s.registry_devices();
    assert_eq!(devices.len(), 1);
    assert!(devices[0].units.is_empty(), "{:?}", devices[0].units);
}

#[test]
fn clashes_bad_values_and_a_missing_adapter_are_named() {
    let (s, p) = parse(&format!(
        "{ADAPTER}
[[knx.group]]
address = \"1/2/3\"
dpt = \"9.001\"
device = \"room-101\"
metric = \"temperature\"

[[knx.group]]
address = \"1/2/3\"
dpt = \"9.001\"
device = \"room-102\"
metric = \"temperature\"

[[knx.group]]
address = \"1/2/9\"
dpt = \"9.001\"
device = \"room-101\"
metric = \"temperature\"

[[knx.group]]
address = \"1/8/0\"
dpt = \"2.001\"
device = \"room/101\"
metric = \"x\"
poll = \"10ms\"

[[knx.group]]
address = \"1/2/7\"
dpt = \"9.001\"
device = \"room-101\"
metric = \"setpoint\"
min = 10.0

[[knx.group]]
address = \"1/2/8\"
dpt = \"5.001\"
device = \"room-101\"
metric = \"valve\"
writable = true
max = 150.0

[[knx.group]]
adapter = \"other\"
address = \"1/3/8\"
dpt = \"5.001\"
device = \"room-101\"
metric = \"blind\"
"
    ));
    assert_eq!(s.groups.len(), 1);
    let text = p.to_string();
    for needle in [
        "knx.group[1].address",
        "knx.group[2].metric",
        "knx.group[3].address",
        "knx.group[3].dpt",
        "knx.group[3].device",
        "knx.group[3].poll",
        "knx.group[4].min",
        "knx.group[5].max",
        "knx.group[6].adapter",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let (_, p) = parse(
        "[[knx.group]]\naddress = \"1/2/3\"\ndpt = \"9.001\"\ndevice = \"d\"\nmetric = \"m\"\n",
    );
    assert!(
        p.to_string().contains("no [[adapter]] type = \"knx\""),
        "{p}"
    );
}

#[test]
fn an_export_beside_the_config_with_a_configured_group_replacing_its_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("knx-ga.csv"),
        "\"Group name\"\t\"Address\"\t\"DatapointType\"\n\"Room\"\t\"1/-/-\"\t\"\"\n\"Living\"\t\"1/2/-\"\t\"\"\n\"Temp\"\t\"1/2/3\"\t\"DPST-9-1\"\n\"Hum\"\t\"1/2/4\"\t\"DPST-9-7\"\n\"Date\"\t\"1/2/5\"\t\"DPST-11-1\"\n",
    )
    .unwrap();
    let text = format!(
        "{ADAPTER}group_addresses = \"knx-ga.csv\"
[[knx.group]]
address = \"1/2/3\"
dpt = \"9.001\"
device = \"room-101\"
metric = \"temperature\"
read_on_start = true
"
    );
    let (s, p) = gateway_core::config::base_dir::with(dir.path(), || parse(&text));
    assert!(p.is_empty(), "{p}");
    let merged = s.groups_of("rooms");
    assert_eq!(merged.len(), 2);
    assert!(merged
        .iter()
        .any(|g| g.metric.as_str() == "hum" && g.device.as_str() == "living"));
    assert!(merged
        .iter()
        .any(|g| g.metric.as_str() == "temperature" && g.read_on_start));
    // validate's count and the dashboard know the export's devices; the
    // replaced row's device is not one.
    let mut devices: Vec<String> = s
        .registry_devices()
        .iter()
        .map(|d| d.id.as_str().to_string())
        .collect();
    devices.sort();
    assert_eq!(devices, ["living", "room-101"]);
    let notes = s.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("adapter[0].group_addresses: 1 of the group addresses in ")
            && notes[0].contains("1/2/5"),
        "{notes:?}"
    );

    let (s, p) = parse(ADAPTER);
    assert!(p.is_empty(), "{p}");
    assert!(
        s.notes()[0].starts_with("adapter[0]: no [[knx.group]] and no group_addresses"),
        "{:?}",
        s.notes()
    );
    let (_, p) = parse(&format!(
        "{ADAPTER}group_addresses = \"/nonexistent/knx-ga.csv\"\n"
    ));
    assert!(p.to_string().contains("adapter[0].group_addresses"), "{p}");
}

#[test]
fn addresses_are_unique_on_their_adapter_and_several_adapters_need_a_name() {
    let second = "[[adapter]]\ntype = \"knx\"\nname = \"hall\"\nurl = \"udp://127.0.0.2\"\n";
    let group = |adapter: &str, address: &str, state: &str, metric: &str| {
        format!(
            "[[knx.group]]\n{adapter}address = \"{address}\"\n{state}dpt = \"9.001\"\ndevice = \"room-101\"\nmetric = \"{metric}\"\n"
        )
    };
    let text = [
        ADAPTER.to_string(),
        second.to_string(),
        group(
            "adapter = \"rooms\"\n",
            "1/2/3",
            "state_address = \"1/2/3\"\n",
            "a",
        ),
        group("adapter = \"hall\"\n", "1/2/3", "", "b"),
        group(
            "adapter = \"rooms\"\n",
            "1/2/4",
            "state_address = \"1/2/3\"\n",
            "c",
        ),
        group("", "1/2/5", "", "d"),
    ]
    .concat();
    let (s, p) = parse(&text);
    let lines: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "knx.group[2].state_address: 1/2/3 on \"rooms\" is already knx.group[0]",
            "knx.group[3].adapter: there are several knx adapters: name the one this is on",
        ]
    );
    // One group may read where it writes; the same address on two
    // interfaces is two groups.
    assert_eq!(s.groups.len(), 2);
    assert_eq!(s.groups_of("hall").len(), 1);
    assert_eq!(s.groups_of("rooms")[0].adapter.as_deref(), Some("rooms"));
}

#[test]
fn an_export_with_a_quote_never_closed_says_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("knx-ga.csv"),
        "\"Group name\"\t\"Address\"\t\"DatapointType\"\n\"Living\"\t\"1/2/-\"\t\"\"\n\"Temp\"\t\"1/2/3\"\t\"DPST-9-1\n\"Hum\"\t\"1/2/4\"\t\"DPST-9-7\"\n",
    )
    .unwrap();
    let text = format!("{ADAPTER}group_addresses = \"knx-ga.csv\"\n");
    let (s, p) = gateway_core::config::base_dir::with(dir.path(), || parse(&text));
    assert!(p.is_empty(), "{p}");
    assert_eq!(s.groups_of("rooms").len(), 2);
    let notes = s.notes();
    assert!(
        notes.len() == 1
            && notes[0].starts_with("adapter[0].group_addresses: ")
            && notes[0].ends_with("knx-ga.csv, line 3: a quote is not closed; the line was read on its own"),
        "{notes:?}"
    );
}
