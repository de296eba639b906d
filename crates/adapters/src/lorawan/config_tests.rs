use super::*;

const NWK: &str = "44024241ed4ce9a68c6a8bc055233fd3";
const APP: &str = "ec925802ae430ca77fd3dd73cb2cc588";

fn env(var: &str) -> Option<String> {
    (var == "LORA_NWK").then(|| NWK.to_string())
}

fn check(text: &str) -> (Vec<LorawanDevice>, Vec<String>) {
    #[derive(Deserialize)]
    struct Doc {
        lorawan: Section,
    }
    #[derive(Deserialize)]
    struct Section {
        device: Vec<toml::Value>,
    }
    let doc: Doc = toml::from_str(text).unwrap();
    let mut problems = Problems::default();
    let devices = devices(doc.lorawan.device, "lorawan.device", &env, &mut problems);
    (devices, problems.iter().map(|p| p.to_string()).collect())
}

#[test]
fn a_minimal_device_gets_its_devaddr_as_id() {
    let (devices, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_addr = "260b1234"
nwk_s_key = "env:LORA_NWK"
app_s_key = "{APP}"
codec = "cayenne_lpp"
"#
    ));
    assert_eq!(problems, Vec::<String>::new());
    let d = &devices[0];
    assert_eq!(d.dev_addr, 0x260B_1234);
    assert_eq!(d.id.as_str(), "260B1234");
    assert_eq!(d.nwk_s_key, NWK.parse().unwrap());
    assert_eq!(d.codec, DeviceCodec::Named(Codec::CayenneLpp));
    assert_eq!(d.name, None);
    // Debug output is what ends up in logs: no key bytes.
    assert!(!format!("{d:?}").contains("68, 2, 66"), "{d:?}");
}

#[test]
fn struct_codec_name_and_id() {
    let (devices, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_addr = "01020304"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "struct"
fields = [{{ name = "co2", type = "u16" }}]
name = "Meeting room"
id = "meeting-co2"
"#
    ));
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(devices[0].id.as_str(), "meeting-co2");
    assert_eq!(devices[0].name.as_deref(), Some("Meeting room"));
    assert_eq!(
        devices[0].codec.decode(&[0x01, 0x90]).unwrap()[0].value,
        400.0
    );
}

#[test]
fn every_problem_is_reported_with_its_path_and_no_key() {
    let bad_key = "44024241ed4ce9a68c6a8bc055233fdZ";
    let (devices, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_addr = "260B123"
nwk_s_key = "{bad_key}"
app_s_key = "env:MISSING"
codec = "seed"

[[lorawan.device]]
dev_addr = "01020304"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "struct"

[[lorawan.device]]
dev_addr = "01020304"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "seed_compact"
fields = []
name = ""

[[lorawan.device]]
dev_addr = "01020304"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "seed_compact"
colour = "red"
"#
    ));
    assert!(devices.is_empty());
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "lorawan.device[0].dev_addr",
            "lorawan.device[0].nwk_s_key",
            "lorawan.device[0].app_s_key",
            "lorawan.device[0].codec",
            "lorawan.device[1].fields",
            "lorawan.device[2].fields",
            "lorawan.device[2].name",
            "lorawan.device[3].colour",
        ],
        "{problems:#?}"
    );
    for p in &problems {
        assert!(!p.contains(bad_key) && !p.contains(NWK), "{p}");
    }
}

#[test]
fn shared_devaddr_needs_different_keys_and_ids_are_unique() {
    let device = |id: &str, nwk: &str| {
        format!(
            "[[lorawan.device]]\ndev_addr = \"01020304\"\nnwk_s_key = \"{nwk}\"\napp_s_key = \"{APP}\"\ncodec = \"seed_compact\"\nid = \"{id}\"\n"
        )
    };
    let (devices, problems) = check(
        &[
            device("a", NWK),
            device("b", APP),
            device("a", APP),
            device("c", NWK),
        ]
        .concat(),
    );
    assert_eq!(devices.len(), 2);
    assert_eq!(
        problems,
        [
            "lorawan.device[2].id: id \"a\" is used by another device".to_string(),
            "lorawan.device[3].nwk_s_key: another device has DevAddr 01020304 with the same NwkSKey".to_string(),
        ]
    );
}

/// The commented template, uncommented, parses to the defaults.
#[test]
fn template_sections_parse() {
    let text = template();
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| toml::from_str::<toml::Table>(l).is_ok_and(|t| !t.is_empty()))
        // `fields` goes with codec "struct" only.
        .filter(|l| !l.starts_with("type = ") && !l.starts_with('[') && !l.starts_with("fields"))
        .collect();
    let split = keys.iter().position(|l| l.starts_with("dev_addr")).unwrap();
    let adapter = keys[..split].join("\n");
    let mut p = Problems::default();
    let a = SemtechUdpConfig::from_table(toml::from_str(&adapter).unwrap(), "adapter[0]", &mut p);
    assert!(p.is_empty(), "{p}");
    let a = a.unwrap();
    assert_eq!(a.bind, default_bind());
    assert_eq!(a.dedup_window, DEFAULT_DEDUP_WINDOW);
    assert!(a.gateways.is_empty());
    let root: toml::Table =
        toml::from_str(&format!("[[lorawan.device]]\n{}", keys[split..].join("\n"))).unwrap();
    let any_key = |_: &str| Some(NWK.to_string());
    let s = section(&root, &any_key, &mut p);
    assert!(p.is_empty(), "{p}");
    assert_eq!(s.devices[0].dev_addr, 0x260B_1234);
    assert_eq!(s.devices[0].fcnt_reset, FcntReset::Reject);
}

#[test]
fn semtech_udp_problems_name_their_keys() {
    let table = toml::from_str(
        "name = \"lora\"\ndedup_window = \"1m\"\ngateways = [\"0102030405060708\", \"xyz\"]",
    )
    .unwrap();
    let mut p = Problems::default();
    assert!(SemtechUdpConfig::from_table(table, "adapter[2]", &mut p).is_none());
    let lines: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("adapter[2].dedup_window: expected at most 5s"));
    assert!(lines[1].starts_with("adapter[2].gateways[1]: expected a gateway EUI"));
}

#[test]
fn the_section_rejects_unknown_keys_and_wrong_shapes() {
    let mut p = Problems::default();
    let root: toml::Table = toml::from_str("[lorawan]\ndevices = []\ndevice = 3").unwrap();
    assert!(section(&root, &env, &mut p).devices.is_empty());
    let lines: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "lorawan.devices: unknown key, expected device",
            "lorawan.device: expected an array of tables, write it as [[lorawan.device]]",
        ]
    );
}
