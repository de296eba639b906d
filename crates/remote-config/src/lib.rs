//! Configuration pushed from the cloud (issue 71), the parts without I/O:
//!
//! - [`message`]: the desired-state message, its SHA-256 and its Ed25519
//!   signature over `"serial\nversion\nsha256"`;
//! - [`allow`]: what a push may change (`[remote_config] allow`), and the
//!   keys it never may (the trust anchor, the upstream's credentials);
//! - [`journal`]: the apply journal and its steps (stage, check, commit,
//!   roll back), which decide what a start after a kill -9 runs;
//! - [`report`]: the reported state and its topics;
//! - [`keys`]: signing-key files (`config keygen`, `config sign --key`).
//!
//! The gateway (`edge-gateway`'s `remote_config` module) subscribes,
//! validates, writes, restarts and judges health; the fleet tools
//! (`edge-gateway config sign|push|keygen`) build the messages.

pub mod allow;
pub mod journal;
pub mod keys;
pub mod message;
pub mod report;

pub use journal::{Boot, Journal, Judged, Pushed};
pub use message::DesiredMessage;
pub use report::{Report, Status};
