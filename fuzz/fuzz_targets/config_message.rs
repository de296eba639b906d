//! A configuration pushed from the cloud (`remote_config`): any bytes as
//! the desired-state message, judged with a key and without, and any TOML
//! as a pushed layer against the allow-list. Nothing may panic; only a
//! validly signed, newer message with the content it names is taken, and
//! a refusal says why.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use remote_config::message::sha256_hex;
use remote_config::{allow, Journal, Judged, Pushed};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let journal = Journal {
        processed: Some(Pushed {
            version: "v5".into(),
            serial: 5,
            sha256: sha256_hex(""),
        }),
        ..Journal::default()
    };
    for keys in [&[key][..], &[][..]] {
        match journal.judge(data, keys, "gw-fuzz") {
            Judged::Take(m) => {
                assert!(m.serial > 5);
                assert_eq!(sha256_hex(&m.config), m.digest());
                assert!(m.verify(keys, "gw-fuzz").is_ok());
                assert!(m.gateway.as_deref().is_none_or(|g| g == "gw-fuzz"));
            }
            Judged::Refuse {
                reason,
                detail,
                signed,
                ..
            } => {
                assert!(!reason.is_empty() && !detail.is_empty());
                assert!(!signed, "only a validated push moves the mark");
            }
            Judged::Same => {}
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(layer) = toml::from_str::<toml::Table>(text) {
            let _ = allow::check(&toml::Table::new(), &layer, &layer, None);
            let _ = allow::check(&layer, &toml::Table::new(), &layer, Some(&["device".into()]));
        }
    }
});
