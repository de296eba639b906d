//! `edge-gateway decode` on published vectors (tests/data/vectors), run as
//! the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn decode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("decode")
        .args(args)
        .env_remove("EDGE_GATEWAY_TEST_NWK")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn codec_values_one_per_line() {
    let rows: [(&str, &str, &str); 4] = [
        (
            "compact_i16",
            "00D728014A",
            "temperature = 21.5\nhumidity = 40\nbattery = 3.3\n",
        ),
        (
            "bitpacked",
            "535154",
            "temperature = 21.5\nhumidity = 40\nbattery = 85\n",
        ),
        (
            "batch",
            "026affc4000000000000d7003cfffffff6",
            "value = 21.5 @ 2026-11-20T03:52:32Z\nvalue = -1 @ 2026-11-20T03:53:32Z\n",
        ),
        // cayenne_lpp.json two-temperatures
        (
            "cayenne_lpp",
            "03670110056700ff",
            "temperature_3 = 27.2\ntemperature_5 = 25.5\n",
        ),
    ];
    for (codec, hex, want) in rows {
        let out = decode(&["--codec", codec, hex]);
        assert_eq!(out.status.code(), Some(0), "{codec}: {out:?}");
        assert_eq!(stdout(&out), want, "{codec}");
    }
}

#[test]
fn the_codecs_old_names_decode_the_same_and_say_they_are_deprecated() {
    for (old, new, hex) in [
        ("seed_compact", "compact_i16", "00D728014A"),
        ("seed_bitpacked", "bitpacked", "535154"),
        ("seed_batch", "batch", "026affc4000000000000d7003cfffffff6"),
    ] {
        let current = decode(&["--codec", new, hex]);
        let renamed = decode(&["--codec", old, hex]);
        assert!(current.status.success(), "{current:?}");
        assert!(renamed.status.success(), "{renamed:?}");
        assert!(!stdout(&current).is_empty());
        assert_eq!(stdout(&renamed), stdout(&current), "{old}");
        let err = String::from_utf8_lossy(&renamed.stderr);
        assert!(
            err.contains("deprecated") && err.contains(new),
            "{old}: {err}"
        );
        assert!(
            !String::from_utf8_lossy(&current.stderr).contains("deprecated"),
            "{new}"
        );
    }
}

#[test]
fn undecodable_input_exits_65_and_bad_usage_64() {
    let rows: [(&[&str], i32, &str); 9] = [
        (
            &["--codec", "compact_i16", "--nwk-s-key", "00", "00D728014A"],
            64,
            "go with --phy",
        ),
        (
            &["--codec", "compact_i16", "00D728"],
            65,
            "expected 5 bytes, got 3",
        ),
        (
            &["--codec", "cayenne_lpp", "01ffff"],
            65,
            "unknown Cayenne LPP type 0xff",
        ),
        (
            &["--codec", "cayenne_lpp", "0c8807fd8700be"],
            65,
            "gps needs 9 bytes",
        ),
        (&["--codec", "compact_i16", "zz"], 65, "hex digits"),
        // As ChirpStack shows a payload: named, with the hex to pass.
        (
            &["--codec", "cayenne_lpp", "AWcBEA=="],
            65,
            "reads as base64, whose bytes in hex are 01670110",
        ),
        (&["--codec", "nope", "00"], 64, "unknown codec \"nope\""),
        (&["00D728014A"], 64, "expected --codec NAME HEX"),
        (
            &["--phy", "40F17DBE4900020001954378762B11FF0D"],
            64,
            "--phy needs --nwk-s-key",
        ),
    ];
    for (args, code, message) in rows {
        let out = decode(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn phy_payload_verified_and_decrypted() {
    // lorawan_uplinks.json lora-packet-readme-test: plaintext "test".
    let out = decode(&[
        "--phy",
        "40F17DBE4900020001954378762B11FF0D",
        "--nwk-s-key",
        "44024241ed4ce9a68c6a8bc055233fd3",
        "--app-s-key",
        "ec925802ae430ca77fd3dd73cb2cc588",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "dev_addr = 49BE7DF1\nmtype = UnconfirmedDataUp\nfcnt = 2\nfport = 1\nmic = valid\n\
         mac_commands = 0 []\npayload = 74657374\n"
    );
}

#[test]
fn phy_with_fopts_mac_commands_and_env_key() {
    // lora-rs-fopts-no-fport: LinkCheckReq + LinkADRAns in FOpts.
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["decode", "--phy", "4004030201030000020305d7fa0c6c"])
        .args(["--nwk-s-key", "env:EDGE_GATEWAY_TEST_NWK"])
        .args(["--app-s-key", "00000000000000000000000000000000"])
        .env("EDGE_GATEWAY_TEST_NWK", "01010101010101010101010101010101")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("dev_addr = 01020304\n"), "{text}");
    assert!(text.contains("fport = none\n"), "{text}");
    assert!(
        text.contains("mac_commands = 2 [LinkCheckReq, LinkADRAns]\n"),
        "{text}"
    );
}

#[test]
fn phy_with_codec_and_the_fcnt32_downlink() {
    let (nwk, app) = (
        "02020202020202020202020202020202",
        "01010101010101010101010101010101",
    );
    let phy = "a00403020180ff2a2a0af1a36a05d0125f885d881d49e1";
    // 16-bit counter alone: the MIC fails, and the key is not echoed.
    let out = decode(&["--phy", phy, "--nwk-s-key", nwk, "--app-s-key", app]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("MIC mismatch"), "{stderr}");
    assert!(!stderr.contains(nwk), "{stderr}");
    let out = decode(&[
        "--phy",
        phy,
        "--nwk-s-key",
        nwk,
        "--app-s-key",
        app,
        "--next-fcnt",
        "76000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("fcnt = 76543\nfport = 42\n"), "{text}");
    assert!(text.contains("payload = 68656c6c6f206c6f7261\n"), "{text}"); // "hello lora"
                                                                          // A codec on a payload that is not in its format: exit 65.
    let out = decode(&[
        "--phy",
        phy,
        "--nwk-s-key",
        nwk,
        "--app-s-key",
        app,
        "--next-fcnt",
        "76000",
        "--codec",
        "compact_i16",
    ]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    // And on one that is: "test" = 74 65 73 74 is not 5 bytes either, so use
    // the hello frame (5 bytes) with compact_i16.
    let out = decode(&[
        "--phy",
        "400403020180010001a694642615d6c3b582",
        "--nwk-s-key",
        nwk,
        "--app-s-key",
        app,
        "--codec",
        "compact_i16",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // "hello" = 68 65 6c 6c 6f → 0x6865 = 26725 → 2672.5, 0x6c = 108, 0x6c6f = 27759 → 277.59
    assert!(
        stdout(&out).ends_with("temperature = 2672.5\nhumidity = 108\nbattery = 277.59\n"),
        "{}",
        stdout(&out)
    );
}
