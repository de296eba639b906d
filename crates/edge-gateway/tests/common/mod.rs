//! What the edge-gateway tests share lives in `test-support` (the
//! gateway process, HTTP GET, `/metrics`, pushed configurations); this
//! module keeps the names the test files use.
#![allow(unused_imports)]

pub use test_support::gateway::*;
pub use test_support::remote_config as remote;
pub use test_support::web::{http_get, http_until, http_until_within, try_get, unchunk};
