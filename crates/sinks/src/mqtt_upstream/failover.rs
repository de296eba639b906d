//! Which broker node the upstream uses, when it moved to another, and
//! whether its connections keep being taken away: the bookkeeping behind
//! `/health`, the failover counter and the client-id conflict error,
//! without I/O (time is passed in).
//!
//! A broker closes a connection when another client connects with the
//! same client id (MQTT-3.1.4-2). Two gateways sharing a `gateway.id` (and
//! so a default client id) then take the connection from each other in a
//! loop: each connection is accepted and lost again within moments. A node
//! that dies is different: its connections last until it dies, and the
//! next node refuses or accepts for good.

use std::time::Duration;

use tokio::time::Instant;

/// A connection lost sooner than this after its CONNACK counts as taken
/// away. A takeover on Mosquitto is immediate; on a NATS cluster the loop
/// turned in about a second here.
pub const SHORT_SESSION: Duration = Duration::from_secs(10);

/// Consecutive short sessions that make a client-id conflict likely rather
/// than a flapping network or a node dying during a connect.
pub const CONFLICT_AFTER: u32 = 3;

#[derive(Debug, Default)]
pub struct Failover {
    /// The node of the live connection.
    current: Option<usize>,
    /// The node of the last connection, live or not.
    last: Option<usize>,
    since: Option<Instant>,
    short_sessions: u32,
}

/// What a lost connection suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Not connected when it happened: a failed attempt.
    Attempt,
    /// An established connection ended.
    Session,
    /// The `CONFLICT_AFTER`-th (or later) consecutive short session: another
    /// client very likely uses this client id.
    LikelyConflict { short_sessions: u32 },
}

impl Failover {
    /// A CONNACK from `node`; true when it is a failover (another node
    /// than the previous connection's).
    pub fn connected(&mut self, node: usize, now: Instant) -> bool {
        let moved = self.last.is_some_and(|n| n != node);
        self.current = Some(node);
        self.last = Some(node);
        self.since = Some(now);
        moved
    }

    /// The connection or the attempt to make one was lost.
    pub fn lost(&mut self, now: Instant) -> Loss {
        let Some(_) = self.current.take() else {
            return Loss::Attempt;
        };
        let lasted = self
            .since
            .take()
            .map_or(Duration::MAX, |s| now.saturating_duration_since(s));
        if lasted < SHORT_SESSION {
            self.short_sessions = self.short_sessions.saturating_add(1);
        } else {
            self.short_sessions = 0;
        }
        if self.short_sessions >= CONFLICT_AFTER {
            Loss::LikelyConflict {
                short_sessions: self.short_sessions,
            }
        } else {
            Loss::Session
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moving_to_another_node_is_a_failover_and_coming_back_is_not_the_first() {
        let mut f = Failover::default();
        let t0 = Instant::now();
        assert!(!f.connected(0, t0), "the first connection");
        assert_eq!(f.lost(t0 + Duration::from_secs(60)), Loss::Session);
        assert_eq!(f.lost(t0 + Duration::from_secs(61)), Loss::Attempt);
        assert!(f.connected(1, t0 + Duration::from_secs(62)));
        assert_eq!(f.lost(t0 + Duration::from_secs(200)), Loss::Session);
        assert!(
            !f.connected(1, t0 + Duration::from_secs(201)),
            "same node again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connections_taken_away_again_and_again_point_at_a_client_id_conflict() {
        let mut f = Failover::default();
        let mut now = Instant::now();
        let mut losses = Vec::new();
        for _ in 0..4 {
            f.connected(0, now);
            now += Duration::from_secs(1);
            losses.push(f.lost(now));
            // Failed attempts in between do not break the run.
            losses.push(f.lost(now));
        }
        assert_eq!(
            losses,
            [
                Loss::Session,
                Loss::Attempt,
                Loss::Session,
                Loss::Attempt,
                Loss::LikelyConflict { short_sessions: 3 },
                Loss::Attempt,
                Loss::LikelyConflict { short_sessions: 4 },
                Loss::Attempt,
            ]
        );
        // One long session ends the suspicion.
        f.connected(0, now);
        now += SHORT_SESSION;
        assert_eq!(f.lost(now), Loss::Session);
        f.connected(0, now);
        assert_eq!(f.lost(now + Duration::from_secs(1)), Loss::Session);
    }
}
