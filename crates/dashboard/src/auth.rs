//! HTTP Basic authentication against `[[dashboard.user]]` argon2 hashes.
//!
//! An argon2id check costs tens of milliseconds and 19 MiB on a Pi by
//! design, and anyone who reaches the port can ask for one. So:
//! - a header that verified once is remembered (a bounded set, cleared
//!   when full): a page's many requests pay once;
//! - checks run one at a time on tokio's blocking pool, never on the async
//!   workers that carry ingest and `/metrics`, with at most
//!   [`MAX_WAITING`] more queued (more are answered "busy");
//! - the 19 MiB work area is one buffer, reused by every check: a flood
//!   costs one buffer, not one per request (glibc keeps freed 19 MiB
//!   chunks in its per-thread arenas, so buffers allocated per check were
//!   never given back);
//! - each client address that fails (or asks while the queue is full)
//!   waits a delay that doubles each time (up to [`MAX_DELAY`]) before it
//!   may try again, and only one of its checks runs at a time; attempts
//!   inside the delay are refused without hashing. A remembered good header still passes: a user behind
//!   the same address as an attacker keeps the pages they opened.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use gateway_core::config::DashboardUser;
use gateway_core::telemetry::Counter;
use gateway_core::Telemetry;
use tokio::sync::Semaphore;

/// Authorization headers remembered as verified.
const CACHE: usize = 64;
/// Checks queued behind the running one; more are told to come back.
pub const MAX_WAITING: usize = 4;
/// 33 MiB of argon2 blocks (1 KiB each): above glibc's largest dynamic
/// mmap threshold (32 MiB on 64-bit), so the work area is never carved
/// from an arena that keeps it after a free.
const ALWAYS_MAPPED_BLOCKS: usize = 33 * 1024;
/// The delay after a client's first failure; it doubles with each one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay a client's failures earn.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A client's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Client addresses whose failures are remembered; past it, those whose
/// delay is over are forgotten first.
const MAX_CLIENTS: usize = 4096;

/// Failed checks (wrong user or password).
pub const AUTH_FAILURES: &str = "edge_gateway_dashboard_auth_failures_total";
/// Requests refused without a check: `reason` is `throttled` (the client
/// is inside its delay) or `busy` (too many checks queued).
pub const AUTH_REFUSED: &str = "edge_gateway_dashboard_auth_refused_total";

/// What a request's credentials earn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Missing or wrong credentials: 401.
    Denied,
    /// This client failed recently: 429, come back after the wait.
    Throttled(Duration),
    /// Too many checks waiting: 503.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    /// No check for this client before then.
    until: Instant,
    /// One of its checks is running.
    checking: bool,
}

pub struct Auth {
    users: Vec<DashboardUser>,
    verified: Mutex<HashSet<String>>,
    strikes: Mutex<HashMap<IpAddr, Strikes>>,
    /// One check at a time, plus [`MAX_WAITING`] queued.
    pool: Arc<Semaphore>,
    queued: Arc<Semaphore>,
    /// The argon2 work area the checks of a burst reuse; freed when idle.
    memory: Arc<Mutex<Vec<Block>>>,
    failures: Counter,
    throttled: Counter,
    busy: Counter,
}

impl Auth {
    pub fn new(users: &[DashboardUser], telemetry: &Telemetry) -> Self {
        Self {
            users: users.to_vec(),
            verified: Mutex::default(),
            strikes: Mutex::default(),
            pool: Arc::new(Semaphore::new(1)),
            queued: Arc::new(Semaphore::new(1 + MAX_WAITING)),
            memory: Arc::default(),
            failures: telemetry.counter(AUTH_FAILURES, &[]),
            throttled: telemetry.counter(AUTH_REFUSED, &[("reason", "throttled")]),
            busy: telemetry.counter(AUTH_REFUSED, &[("reason", "busy")]),
        }
    }

    /// No users: the pages are open (only allowed on loopback, which
    /// `validate` enforces).
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// What an `Authorization` header value from `client` earns.
    pub async fn check(&self, header: Option<&str>, client: IpAddr) -> Verdict {
        if self.is_open() {
            return Verdict::Allowed;
        }
        let Some(header) = header else {
            return Verdict::Denied;
        };
        if self.cache().contains(header) {
            return Verdict::Allowed;
        }
        let Some((name, password)) = credentials(header) else {
            return self.failed(client);
        };
        let known = self.users.iter().find(|u| u.name == name);
        // No such user: checked against another user's hash all the same
        // and refused, so the answer takes as long as a wrong password's
        // (refused without hashing, it came ten times sooner, naming the
        // users that exist); it counts as a failure.
        let Some(hash) = known
            .or_else(|| self.users.first())
            .map(|u| u.password_hash.expose().to_string())
        else {
            return self.failed(client);
        };
        let _checking = match self.begin(client) {
            Ok(guard) => guard,
            Err(wait) => {
                self.throttled.inc();
                return Verdict::Throttled(wait);
            }
        };
        let Some(ok) = self.verify_off_runtime(password, hash).await else {
            // Asking while the queue is full earns the address a delay
            // too: clients that hammer the queue back off, and one that
            // asks now and then finds room.
            self.busy.inc();
            self.strike(client);
            return Verdict::Busy;
        };
        if ok && known.is_some() {
            self.strikes_map().remove(&client);
            let mut c = self.cache();
            if c.len() >= CACHE {
                c.clear();
            }
            c.insert(header.to_string());
            Verdict::Allowed
        } else {
            self.failed(client)
        }
    }

    /// Runs one argon2 check on the blocking pool, one at a time; `None`
    /// when too many are queued already.
    async fn verify_off_runtime(&self, password: String, hash: String) -> Option<bool> {
        let queued = self.queued.clone().try_acquire_owned().ok()?;
        let running = self.pool.clone().acquire_owned().await.ok()?;
        let memory = self.memory.clone();
        let waiting = self.queued.clone();
        // The permits go with the work: a client that hangs up does not
        // free its place while its hash still runs.
        tokio::task::spawn_blocking(move || {
            let _permits = (queued, running);
            let mut blocks = memory.lock().unwrap_or_else(|p| p.into_inner());
            let ok = verify(&password, &hash, &mut blocks);
            // Reused through a burst; handed back once no check waits, so
            // a Pi's memory returns after a login flood.
            if waiting.available_permits() >= MAX_WAITING {
                *blocks = Vec::new();
            }
            ok
        })
        .await
        .ok()
    }

    /// Marks a check of `client` as running until the guard drops (also
    /// when the client hangs up), or says how long it must still wait.
    fn begin(&self, client: IpAddr) -> Result<Checking<'_>, Duration> {
        let now = Instant::now();
        let mut strikes = self.strikes_map();
        let s = strikes.entry(client).or_insert(Strikes {
            failures: 0,
            until: now,
            checking: false,
        });
        if s.checking {
            return Err(FIRST_DELAY.max(s.until.saturating_duration_since(now)));
        }
        if s.until > now {
            return Err(s.until - now);
        }
        s.checking = true;
        Ok(Checking { auth: self, client })
    }

    fn end(&self, client: IpAddr) {
        if let Some(s) = self.strikes_map().get_mut(&client) {
            s.checking = false;
        }
    }

    /// Counts a failure of `client` and sets its next delay.
    fn failed(&self, client: IpAddr) -> Verdict {
        self.failures.inc();
        self.strike(client);
        Verdict::Denied
    }

    /// Doubles `client`'s delay.
    fn strike(&self, client: IpAddr) {
        let now = Instant::now();
        let mut strikes = self.strikes_map();
        if strikes.len() >= MAX_CLIENTS && !strikes.contains_key(&client) {
            strikes.retain(|_, s| s.checking || s.until > now);
            if strikes.len() >= MAX_CLIENTS {
                // Every slot is a client inside its delay: forget one
                // rather than grow without bound.
                if let Some(ip) = strikes.keys().next().copied() {
                    strikes.remove(&ip);
                }
            }
        }
        let s = strikes.entry(client).or_insert(Strikes {
            failures: 0,
            until: now,
            checking: false,
        });
        if now.saturating_duration_since(s.until) > FORGET_AFTER {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.until = gateway_core::deadline::after_std(now, delay(s.failures));
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn strikes_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Strikes>> {
        self.strikes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running check of one client.
struct Checking<'a> {
    auth: &'a Auth,
    client: IpAddr,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.auth.end(self.client);
    }
}

/// The wait after `failures` failures: 250 ms, doubling, at most 30 s.
fn delay(failures: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_DELAY)
}

/// `(user, password)` of a Basic header.
fn credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// Whether `password` matches the PHC string `hash`, computed in `blocks`
/// (grown to the hash's memory cost if needed, then kept for the next).
fn verify(password: &str, hash: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        if blocks.capacity() < need {
            // Reserved above glibc's largest mmap threshold, so the area is
            // always its own mapping: only the blocks used are resident, and
            // freeing it when idle gives the memory back to the system
            // (a smaller area would move into an arena and stay).
            *blocks = Vec::with_capacity(need.max(ALWAYS_MAPPED_BLOCKS));
        }
        blocks.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..need])
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|out| out == expected)
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
    use gateway_core::config::secret::Secret;

    fn header(user_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    }

    fn ops() -> Auth {
        let users = [DashboardUser {
            name: "ops".into(),
            password_hash: Secret::new(hash("s3cret").unwrap()),
        }];
        Auth::new(&users, &Telemetry::default())
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[tokio::test]
    async fn only_the_right_password_passes() {
        let a = ops();
        let good = header("ops:s3cret");
        assert_eq!(a.check(Some(&good), B).await, Verdict::Allowed);
        assert_eq!(a.check(Some(&good), B).await, Verdict::Allowed, "cached");
        assert_eq!(
            a.check(Some(&header("ops:wrong")), A).await,
            Verdict::Denied
        );
        assert_eq!(a.check(None, A).await, Verdict::Denied);
        // An unknown name is checked against a user's hash (as long as a
        // wrong password takes), and refused even with that password.
        assert_eq!(
            a.check(Some(&header("bob:s3cret")), B).await,
            Verdict::Denied
        );
        assert_eq!(
            Auth::new(&[], &Telemetry::default()).check(None, A).await,
            Verdict::Allowed
        );
        // A hash as `hash` makes it, checked by the reused work area.
        let mut blocks = Vec::new();
        let phc = hash("pw").unwrap();
        assert!(verify("pw", &phc, &mut blocks));
        assert!(!verify("pW", &phc, &mut blocks));
        assert!(!verify("pw", "not a phc string", &mut blocks));
    }

    #[tokio::test]
    async fn failures_earn_a_growing_delay_per_address_and_others_pass() {
        let t = Telemetry::default();
        let users = [DashboardUser {
            name: "ops".into(),
            password_hash: Secret::new(hash("s3cret").unwrap()),
        }];
        let a = Auth::new(&users, &t);
        let wrong = header("ops:wrong");
        assert_eq!(a.check(Some(&wrong), A).await, Verdict::Denied);
        // Inside the delay: refused without hashing, even the right one.
        match a.check(Some(&header("ops:s3cret")), A).await {
            Verdict::Throttled(wait) => assert!(wait <= FIRST_DELAY, "{wait:?}"),
            other => panic!("{other:?}"),
        }
        // Another address is not held by A's failures.
        assert_eq!(
            a.check(Some(&header("ops:s3cret")), B).await,
            Verdict::Allowed
        );
        assert_eq!(t.counter_value(AUTH_FAILURES, &[]), Some(1));
        assert_eq!(
            t.counter_value(AUTH_REFUSED, &[("reason", "throttled")]),
            Some(1)
        );
        let waits: Vec<Duration> = (1..=12).map(delay).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[0], FIRST_DELAY);
        assert_eq!(waits[11], MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }
}
