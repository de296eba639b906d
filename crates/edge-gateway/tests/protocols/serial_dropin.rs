//! The documented systemd drop-in for serial ports: valid next to the
//! packaged unit (`systemd-analyze verify`), effective, and the unit alone
//! still without devices. The check itself is the script CI also runs on
//! the installed package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_serial_port_drop_in_verifies_and_the_default_unit_keeps_private_devices() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/packaging/check-serial-dropin.sh"))
        .arg(env!("CARGO_BIN_EXE_edge-gateway"))
        .output()
        .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("check-serial-dropin: ok").count(), 3, "{text}");
}
