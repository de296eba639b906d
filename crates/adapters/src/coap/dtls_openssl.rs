//! The OpenSSL side of coaps: the DTLS context with its PSK and cookie
//! callbacks, and the in-memory datagram pipe each session runs over.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::Arc;

use gateway_core::DeviceId;
use openssl::error::ErrorStack;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslVersion};

use super::psk::CoapSection;

/// RFC 7252 §9.1.3.1's mandatory suite first, then the AES-128-GCM PSK
/// suites where the OpenSSL build offers them.
const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:PSK-AES128-CCM";

/// Datagrams between the socket and one OpenSSL session.
#[derive(Default)]
pub struct Pipe {
    pub(super) inbox: VecDeque<Vec<u8>>,
    pub(super) outbox: Vec<Vec<u8>>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.inbox.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram larger than OpenSSL's buffer is cut, as a socket
        // would; the record then fails its MAC and is dropped.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // OpenSSL writes one datagram per call on a DTLS BIO.
        self.outbox.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the PSK callback found, kept on the session for the failure's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    Known,
    Unknown,
}

/// The OpenSSL side: the context and the per-session data indexes.
pub(super) struct Tls {
    pub(super) ctx: SslContext,
    pub(super) cookie: openssl::ex_data::Index<Ssl, Vec<u8>>,
    pub(super) lookup: openssl::ex_data::Index<Ssl, Lookup>,
    pub(super) devices: Arc<HashMap<Vec<u8>, DeviceId>>,
}

pub(super) fn tls(section: &CoapSection) -> Result<Tls, ErrorStack> {
    let keys: Arc<HashMap<Vec<u8>, Vec<u8>>> = Arc::new(
        section
            .psk
            .iter()
            .map(|e| (e.identity.as_bytes().to_vec(), e.key.0.clone()))
            .collect(),
    );
    let devices = Arc::new(
        section
            .psk
            .iter()
            .map(|e| (e.identity.as_bytes().to_vec(), e.device.clone()))
            .collect(),
    );
    let cookie = Ssl::new_ex_index::<Vec<u8>>()?;
    let lookup = Ssl::new_ex_index::<Lookup>()?;
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    // The pipe is no socket to ask for its MTU: the session is told.
    b.set_options(SslOptions::COOKIE_EXCHANGE | SslOptions::NO_TICKET | SslOptions::NO_QUERY_MTU);
    b.set_psk_server_callback(move |ssl, identity, out| {
        let key = identity.and_then(|id| keys.get(id));
        ssl.set_ex_data(
            lookup,
            if key.is_some() {
                Lookup::Known
            } else {
                Lookup::Unknown
            },
        );
        match key {
            // Zero bytes fails the handshake (unknown_psk_identity).
            Some(k) if k.len() <= out.len() => {
                out[..k.len()].copy_from_slice(k);
                Ok(k.len())
            }
            _ => Ok(0),
        }
    });
    // The cookie was checked before the session existed (dtls_cookie.rs):
    // OpenSSL is handed that same cookie to "generate" for the primer and
    // to compare the real ClientHello against.
    b.set_cookie_generate_cb(move |ssl, out| {
        let c = ssl.ex_data(cookie).map_or(&[][..], Vec::as_slice);
        let n = c.len().min(out.len());
        out[..n].copy_from_slice(&c[..n]);
        Ok(n)
    });
    b.set_cookie_verify_cb(move |ssl, got| {
        ssl.ex_data(cookie)
            .is_some_and(|want| want.len() == got.len() && openssl::memcmp::eq(want, got))
    });
    Ok(Tls {
        ctx: b.build(),
        cookie,
        lookup,
        devices,
    })
}

/// Why a handshake failed, as an `error_type`.
pub(super) fn failure_kind(
    tls: &Tls,
    ssl: &openssl::ssl::SslRef,
    error: &openssl::ssl::Error,
) -> &'static str {
    if ssl.ex_data(tls.lookup) == Some(&Lookup::Unknown) {
        return "dtls_unknown_identity";
    }
    let text = error.to_string();
    // A wrong key shows as the Finished message failing to decrypt or
    // verify: OpenSSL's "decryption failed or bad record mac" / "digest
    // check failed".
    if text.contains("bad record mac") || text.contains("decrypt") || text.contains("digest check")
    {
        "dtls_bad_key"
    } else {
        "dtls_handshake"
    }
}

