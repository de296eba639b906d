//! Any text as `gateway.toml` (or a pushed layer, which is parsed the
//! same way): the typed parse of every section, every adapter and sink
//! kind and their checks. Nothing may panic: a value at an extreme (a
//! duration of u64::MAX seconds, a size past usize, a NaN) is a problem
//! with its key path, never an overflow. Files the config names are not
//! read here (the fuzzer would name /dev/zero): paths are refused first.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Keys that name files are left out: the parse would read whatever
    // path the input names (a JavaScript codec, an ETS export, TLS files).
    for key in ["js:", "export", "file", "cert", "client_key"] {
        if text.contains(key) {
            return;
        }
    }
    let _ = gateway_settings::GatewayConfig::parse(text);
});
