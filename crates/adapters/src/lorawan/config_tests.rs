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
    let devices = devices(doc.lorawan.device, &env, &mut problems);
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
    assert_eq!(d.rx1_delay, ABP_RX1_DELAY);
    // Debug output is what ends up in logs: no key bytes.
    assert!(!format!("{d:?}").contains("68, 2, 66"), "{d:?}");
}

#[test]
fn the_codecs_old_names_still_configure_the_same_codecs() {
    let device = |addr: &str, codec: &str| {
        format!(
            "[[lorawan.device]]\ndev_addr = \"{addr}\"\nnwk_s_key = \"{NWK}\"\napp_s_key = \"{APP}\"\ncodec = \"{codec}\"\n"
        )
    };
    let (devices, problems) = check(
        &[
            device("01000001", "seed_compact"),
            device("01000002", "seed_bitpacked"),
            device("01000003", "seed_batch"),
            device("01000004", "compact_i16"),
        ]
        .concat(),
    );
    assert_eq!(problems, Vec::<String>::new());
    let codecs: Vec<&DeviceCodec> = devices.iter().map(|d| &d.codec).collect();
    assert_eq!(
        codecs,
        [
            &DeviceCodec::Named(Codec::CompactI16),
            &DeviceCodec::Named(Codec::Bitpacked),
            &DeviceCodec::Named(Codec::Batch),
            &DeviceCodec::Named(Codec::CompactI16),
        ]
    );
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
        devices[0].codec.decode(&[0x01, 0x90]).unwrap().unwrap()[0].value,
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
codec = "compact_i16"
fields = []
name = ""

[[lorawan.device]]
dev_addr = "01020304"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "compact_i16"
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
            "[[lorawan.device]]\ndev_addr = \"01020304\"\nnwk_s_key = \"{nwk}\"\napp_s_key = \"{APP}\"\ncodec = \"compact_i16\"\nid = \"{id}\"\n"
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
    let otaa = keys.iter().position(|l| l.starts_with("dev_eui")).unwrap();
    let network = keys.iter().position(|l| l.starts_with("net_id")).unwrap();
    let root: toml::Table = toml::from_str(&format!(
        "[lorawan]\n{}\n[[lorawan.device]]\n{}\n[[lorawan.device]]\n{}",
        keys[network..].join("\n"),
        keys[split..otaa].join("\n"),
        keys[otaa..network].join("\n"),
    ))
    .unwrap();
    let any_key = |_: &str| Some(NWK.to_string());
    let s = section(&root, &any_key, &mut p);
    assert!(p.is_empty(), "{p}");
    assert_eq!(s.devices[0].dev_addr, 0x260B_1234);
    assert_eq!(s.devices[0].fcnt_reset, FcntReset::Reject);
    assert_eq!(s.devices[0].rx1_delay, Duration::from_secs(1));
    assert_eq!(s.otaa[0].dev_eui.to_string(), "24E124136B324001");
    assert_eq!(s.otaa[0].id.as_str(), "office-th");
    assert_eq!(s.network, Network::default(), "the defaults, written out");
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
            "lorawan.devices: unknown key, expected device, net_id, region, js_time_limit, js_memory_limit or js_stack_limit",
            "lorawan.device: expected an array of tables, write it as [[lorawan.device]]",
        ]
    );
}

#[test]
fn every_region_is_configured_by_name_and_others_are_named_in_the_problem() {
    use crate::lorawan::region::Region;
    for (name, region) in [
        ("as923", Region::As923),
        ("AS923-1", Region::As923),
        ("AU915", Region::Au915),
        ("in865", Region::In865),
        ("KR920", Region::Kr920),
    ] {
        let root: toml::Table = toml::from_str(&format!("[lorawan]\nregion = \"{name}\"")).unwrap();
        let mut p = Problems::default();
        assert_eq!(section(&root, &env, &mut p).network.region, region);
        assert!(p.is_empty(), "{p}");
    }
    let root: toml::Table = toml::from_str("[lorawan]\nregion = \"CN470\"").unwrap();
    let mut p = Problems::default();
    section(&root, &env, &mut p);
    let text = p.to_string();
    assert!(text.contains("lorawan.region"), "{text}");
    assert!(text.contains("AU915") && text.contains("KR920"), "{text}");
}

#[test]
fn otaa_devices_need_their_keys_and_take_no_session_keys() {
    let (_, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_eui = "24E124136B32400"
app_key = "{NWK}"
codec = "compact_i16"

[[lorawan.device]]
dev_eui = "24E124136B324001"
app_eui = "24E124C0002A0001"
app_key = "{NWK}"
nwk_s_key = "{NWK}"
codec = "compact_i16"
"#
    ));
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "lorawan.device[0].dev_eui",
            "lorawan.device[0].join_eui",
            "lorawan.device[1].nwk_s_key",
        ],
        "{problems:#?}"
    );
    for p in &problems {
        assert!(!p.contains(NWK), "{p}");
    }
    let root: toml::Table = toml::from_str(&format!(
        "[lorawan]\nnet_id = \"000013\"\nregion = \"us915\"\n[[lorawan.device]]\ndev_eui = \"24E124136B324001\"\napp_eui = \"24E124C0002A0001\"\napp_key = \"{NWK}\"\ncodec = \"compact_i16\"\n"
    ))
    .unwrap();
    let mut p = Problems::default();
    let s = section(&root, &env, &mut p);
    assert!(p.is_empty(), "{p}");
    assert_eq!(
        s.otaa[0].id.as_str(),
        "24e124136b324001",
        "the DevEUI by default"
    );
    assert_eq!(
        s.otaa[0].join_eui.to_string(),
        "24E124C0002A0001",
        "app_eui is an alias"
    );
    assert_eq!(s.network.net_id, 0x13);
    assert_eq!(s.network.region, crate::lorawan::region::Region::Us915);
    let root: toml::Table = toml::from_str("[lorawan]\nnet_id = \"E00001\"").unwrap();
    section(&root, &env, &mut p);
    assert!(p.to_string().contains("lorawan.net_id"), "{p}");
}

#[test]
fn an_abp_device_takes_its_rx1_delay_in_whole_seconds() {
    let device = |delay: &str| {
        format!(
            "[[lorawan.device]]\ndev_addr = \"260b1234\"\nnwk_s_key = \"{NWK}\"\napp_s_key = \"{APP}\"\ncodec = \"compact_i16\"\nrx1_delay = \"{delay}\"\n"
        )
    };
    let (devices, problems) = check(&device("5s"));
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(devices[0].rx1_delay, Duration::from_secs(5));
    for wrong in ["0s", "16s", "1500ms"] {
        let (devices, problems) = check(&device(wrong));
        assert!(devices.is_empty(), "{wrong}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("lorawan.device[0].rx1_delay: expected whole seconds"),
            "{problems:?}"
        );
    }
    let (_, problems) = check(&format!(
        "[[lorawan.device]]\ndev_eui = \"24E124136B324001\"\napp_eui = \"24E124C0002A0001\"\napp_key = \"{NWK}\"\ncodec = \"compact_i16\"\nrx1_delay = \"2s\"\n"
    ));
    assert!(
        problems[0].starts_with("lorawan.device[0].rx1_delay: an OTAA device"),
        "{problems:?}"
    );
}

fn semtech(extra: &str) -> (Option<SemtechUdpConfig>, Vec<String>) {
    let table = toml::from_str(&format!("name = \"lora\"\n{extra}")).unwrap();
    let mut p = Problems::default();
    let c = SemtechUdpConfig::from_table(table, "adapter[1]", &mut p);
    (c, p.iter().map(|p| p.to_string()).collect())
}

#[test]
fn the_downlink_broker_is_a_url_or_a_broker_table() {
    let (c, p) = semtech("downlink_broker = \"mqtt://10.0.0.5:1884\"");
    assert_eq!(p, Vec::<String>::new());
    let feed = c.unwrap().downlinks.unwrap();
    assert_eq!(feed.broker.url.to_string(), "mqtt://10.0.0.5:1884");
    assert!(feed.broker.username.is_empty());
    assert_eq!(feed.topic, default_downlink_topic());

    let ca = tempfile::NamedTempFile::new().unwrap();
    // PATH stands for a password variable that is set.
    let (c, p) = semtech(&format!(
        "downlink_broker = {{ url = \"mqtts://broker.lan\", username = \"gw\", password_env = \"PATH\", ca_file = {:?} }}",
        ca.path().display().to_string()
    ));
    assert_eq!(p, Vec::<String>::new());
    let b = c.unwrap().downlinks.unwrap().broker;
    assert_eq!(b.url.scheme, gateway_core::config::BrokerScheme::Mqtts);
    assert_eq!((b.url.host.as_str(), b.url.port), ("broker.lan", 8883));
    assert_eq!(
        (b.username.as_str(), b.password_env.as_str()),
        ("gw", "PATH")
    );
    assert_eq!(b.ca_file.as_deref(), Some(ca.path()));

    assert!(semtech("").0.unwrap().downlinks.is_none());
    for (wrong, expected) in [
        ("\"http://broker\"", "adapter[1].downlink_broker"),
        ("\"mqtt://user:pw@broker\"", "credentials in the url"),
        ("{ url = \"mqtt://b\", user = \"gw\" }", "user"),
        ("3", "adapter[1]"),
        (
            "{ url = \"mqtt://b\", username = \"gw\", password_env = \"EDGE_GATEWAY_UNSET_35C\" }",
            "adapter[1].downlink_broker.password_env: environment variable EDGE_GATEWAY_UNSET_35C",
        ),
        (
            "{ url = \"mqtt://b\", ca_file = \"/ca.pem\" }",
            "adapter[1].downlink_broker.ca_file: only used with an mqtts:// url",
        ),
    ] {
        // Any problem refuses the whole config: the problem is the point.
        let (_, p) = semtech(&format!("downlink_broker = {wrong}"));
        assert!(p.iter().any(|l| l.contains(expected)), "{wrong}: {p:?}");
    }
}

/// `codec = "js:FILE"`: relative to the config's directory, with its
/// variables and `[lorawan]`'s limits; a file without decodeUplink, a
/// missing one and variables on a built-in codec are problems.
#[test]
fn javascript_codecs_their_variables_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("codecs")).unwrap();
    std::fs::write(
        dir.path().join("codecs/ok.js"),
        "function decodeUplink(i) { return { data: { v: i.variables.k } }; }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("codecs/encode-only.js"),
        "function encodeDownlink(i) { return { bytes: [] }; }",
    )
    .unwrap();
    let text = format!(
        r#"[lorawan]
js_time_limit = "40ms"
js_memory_limit = "2MiB"
js_stack_limit = 131072

[[lorawan.device]]
dev_addr = "01000001"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "js:codecs/ok.js"
codec_variables = {{ k = "v" }}

[[lorawan.device]]
dev_addr = "01000002"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "js:codecs/encode-only.js"

[[lorawan.device]]
dev_addr = "01000003"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "js:codecs/none.js"

[[lorawan.device]]
dev_addr = "01000004"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "compact_i16"
codec_variables = {{ k = "v" }}
"#
    );
    let root: toml::Table = toml::from_str(&text).unwrap();
    let mut problems = Problems::default();
    let s =
        gateway_core::config::base_dir::with(dir.path(), || section(&root, &env, &mut problems));
    let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0]
            .starts_with("lorawan.device[1].codec: codecs/encode-only.js defines no decodeUplink"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("lorawan.device[2].codec: cannot read codecs/none.js"),
        "{problems:#?}"
    );
    assert!(
        problems[2].starts_with("lorawan.device[3].codec_variables: only a JavaScript codec"),
        "{problems:#?}"
    );
    let script = s.devices[0].codec.script().unwrap();
    let out = script.decode_blocking(vec![1], 1, 0).unwrap();
    assert_eq!(out.data(), &serde_json::json!({"v": "v"}));

    for (key, value) in [
        ("js_time_limit", "\"0s\""),
        ("js_memory_limit", "\"1KB\""),
        ("js_stack_limit", "\"64MiB\""),
    ] {
        let root: toml::Table = toml::from_str(&format!("[lorawan]\n{key} = {value}\n")).unwrap();
        let mut problems = Problems::default();
        section(&root, &env, &mut problems);
        assert_eq!(problems.len(), 1, "{key}");
        assert!(problems
            .iter()
            .next()
            .unwrap()
            .to_string()
            .starts_with(&format!("lorawan.{key}: expected")));
    }
}

#[test]
fn a_devices_place_reaches_the_registry_and_a_deveui_is_listed_once() {
    let root: toml::Table = toml::from_str(&format!(
        r#"[[lorawan.device]]
dev_eui = "24E124136B324001"
join_eui = "24E124C0002A0001"
app_key = "{NWK}"
codec = "compact_i16"
room = "office"
floor = 2
tags = ["co2"]

[[lorawan.device]]
dev_eui = "24e124136b324001"
join_eui = "24E124C0002A0001"
app_key = "{NWK}"
codec = "compact_i16"
id = "other"

[[lorawan.device]]
dev_addr = "260B1234"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "compact_i16"
adapter = "lora"

[[lorawan.device]]
dev_addr = "260B1235"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "compact_i16"
"#
    ))
    .unwrap();
    let mut p = Problems::default();
    let s = section(&root, &env, &mut p);
    let lines: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[0],
        "lorawan.device[1].dev_eui: DevEUI 24E124136B324001 is used by another device"
    );
    assert!(lines[1].starts_with("lorawan.device[2].adapter: unknown key"));
    assert_eq!((s.otaa.len(), s.devices.len()), (1, 1));
    // Described devices only: the unnamed, unplaced ABP device is left
    // to `[[device]]`.
    let reg = s.registry_devices();
    assert_eq!(reg.len(), 1, "{reg:?}");
    assert_eq!(reg[0].id.as_str(), "24e124136b324001");
    assert_eq!(reg[0].name, "24e124136b324001");
    assert_eq!(reg[0].room.as_deref(), Some("office"));
    assert!(reg[0].floor.is_some());
    assert_eq!(reg[0].labels(), ["co2"]);
}

/// EUIs, a DevAddr and keys as consoles and labels print them (grouped by
/// spaces, colons or dashes, or after `0x`) configure the same device as
/// their bare digits; anything else in them is still refused.
#[test]
fn grouped_and_prefixed_hex_configures_the_same_devices() {
    let spaced: String = APP
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let (devices, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_addr = "26:0B:12:34"
nwk_s_key = "0x{}"
app_s_key = "{spaced}"
codec = "cayenne_lpp"
"#,
        NWK.to_uppercase()
    ));
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(devices[0].dev_addr, 0x260B_1234);
    assert_eq!(devices[0].nwk_s_key, NWK.parse().unwrap());
    assert_eq!(devices[0].app_s_key, APP.parse().unwrap());
    assert_eq!(
        "24E1-2413-6B32-4001".parse::<Eui>().unwrap().to_string(),
        "24E124136B324001"
    );
    let (_, problems) = check(&format!(
        r#"[[lorawan.device]]
dev_addr = "26.0B.12.34"
nwk_s_key = "{NWK}"
app_s_key = "{{ 0x{APP} }}"
codec = "cayenne_lpp"
"#
    ));
    assert_eq!(problems.len(), 2, "{problems:?}");
}
