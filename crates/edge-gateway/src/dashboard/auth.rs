//! HTTP Basic authentication against `[[dashboard.user]]` argon2 hashes.
//!
//! An argon2id check costs tens of milliseconds on a Pi by design, and a
//! page opens several requests (the page, `/events`, reconnects): a header
//! that verified once is remembered (a bounded set, cleared when full), so
//! only new or wrong credentials pay the cost.

use std::collections::HashSet;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use gateway_core::config::DashboardUser;

/// Authorization headers remembered as verified.
const CACHE: usize = 64;

pub struct Auth {
    users: Vec<DashboardUser>,
    verified: Mutex<HashSet<String>>,
}

impl Auth {
    pub fn new(users: &[DashboardUser]) -> Self {
        Self {
            users: users.to_vec(),
            verified: Mutex::default(),
        }
    }

    /// No users: the pages are open (only allowed on loopback, which
    /// `validate` enforces).
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether an `Authorization` header value names a user and their
    /// password.
    pub fn check(&self, header: Option<&str>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(header) = header else { return false };
        if self.cache().contains(header) {
            return true;
        }
        let Some(encoded) = header.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((name, password)) = text.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .iter()
            .filter(|u| u.name == name)
            .any(|u| verify(password, &u.password_hash));
        if ok {
            let mut c = self.cache();
            if c.len() >= CACHE {
                c.clear();
            }
            c.insert(header.to_string());
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read random bytes for the salt: {0}")]
    Random(#[from] std::io::Error),
    #[error("argon2: {0}")]
    Argon2(argon2::password_hash::Error),
}

/// An argon2id PHC string for `[[dashboard.user]] password_hash`, with a
/// 16-byte salt from the kernel's CSPRNG.
///
/// # Errors
/// No `/dev/urandom`, or a password argon2 refuses (over 4 GiB).
pub fn hash(password: &str) -> Result<String, HashError> {
    use std::io::Read as _;
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Argon2)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashError::Argon2)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_password_passes() {
        let users = [DashboardUser {
            name: "ops".into(),
            password_hash: hash("s3cret").unwrap(),
        }];
        let a = Auth::new(&users);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(a.check(Some(&format!("Basic {}", b64("ops:s3cret")))));
        assert!(
            a.check(Some(&format!("Basic {}", b64("ops:s3cret")))),
            "cached"
        );
        assert!(!a.check(Some(&format!("Basic {}", b64("ops:wrong")))));
        assert!(!a.check(Some(&format!("Basic {}", b64("other:s3cret")))));
        assert!(!a.check(Some("Basic !!!")));
        assert!(!a.check(None));
        assert!(Auth::new(&[]).check(None));
    }
}
