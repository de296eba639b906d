//! `decode --phy HEX --app-key K`: a join-request's MIC checked, or a
//! join-accept decrypted and checked, with the device's AppKey, as the
//! gateway and a device do. With `--dev-nonce`, an accept also gives the
//! session keys the device derives (printed: this is a debugging tool run
//! by whoever holds the AppKey).

use adapters::lorawan::frame::Key;
use adapters::lorawan::join::{self, JoinAccept, JoinRequest};

use crate::decode::{from_hex, secret, Failure};

/// The lines for a join frame, `None` when `phy` is not one.
pub(super) fn decode(
    phy: &str,
    app_key: Option<&str>,
    dev_nonce: Option<u16>,
) -> Result<Option<Vec<String>>, Failure> {
    let bytes = from_hex(phy)?;
    let mtype = bytes.first().map(|mhdr| mhdr >> 5);
    if !matches!(mtype, Some(0 | 1)) {
        return Ok(None);
    }
    let arg = app_key.ok_or_else(|| {
        Failure::Usage("a join frame needs --app-key (32 hex digits or env:VAR)".into())
    })?;
    let key: Key = secret("--app-key", arg)?
        .parse()
        .map_err(|e| Failure::Usage(format!("--app-key: {e}")))?;
    let hex = |k: &Key| k.0.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if mtype == Some(0) {
        let r = JoinRequest::verify(&bytes, &key).map_err(|e| Failure::Data(e.to_string()))?;
        return Ok(Some(vec![
            "mtype = JoinRequest".into(),
            format!("join_eui = {}", r.join_eui),
            format!("dev_eui = {}", r.dev_eui),
            format!("dev_nonce = {:04X}", r.dev_nonce),
            "mic = ok".into(),
        ]));
    }
    let a = JoinAccept::open(&bytes, &key).map_err(|e| Failure::Data(e.to_string()))?;
    let mut out = vec![
        "mtype = JoinAccept".into(),
        format!("join_nonce = {:06X}", a.join_nonce),
        format!("net_id = {:06X}", a.net_id),
        format!("dev_addr = {:08X}", a.dev_addr),
        format!("dl_settings = {:02X}", a.dl_settings),
        format!("rx_delay = {}", a.rx_delay),
        format!(
            "cf_list = {}",
            a.cf_list.map_or("none".to_string(), |c| c
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect())
        ),
        "mic = ok".into(),
    ];
    if let Some(nonce) = dev_nonce {
        let (nwk, app) = join::session_keys(&key, a.join_nonce, a.net_id, nonce);
        out.push(format!("nwk_s_key = {}", hex(&nwk)));
        out.push(format!("app_s_key = {}", hex(&app)));
    }
    Ok(Some(out))
}
