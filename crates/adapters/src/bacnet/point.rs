//! One object as a device's task reports it, and where its readings come
//! from: the polls, or its COV notifications. An object followed by COV
//! is still read at each poll when all of the device's objects are (the
//! poll is then how a device gone silent is noticed), but that value is
//! no reading: it is one COV already delivered, and a second reading of
//! it would be counted and averaged into the windows twice.
//!
//! Nothing goes silent for it, though: an object whose subscription the
//! device refused is polled; one it accepted but that never notified, not
//! even the notification a subscription starts with (a device that
//! notifies another address, a firewall in the way), is polled for its
//! values again from its second poll on.

use gateway_core::MetricName;

use super::tags::ObjectId;

/// Where an object's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cov {
    /// Not subscribed (`cov = false`, or refused): the polls.
    Polled,
    /// Subscribed, no notification yet after `polls` polls.
    Silent { polls: u32 },
    /// Subscribed and notified: COV; a poll only checks the device.
    Notified,
}

/// What a poll's value of an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolledUse {
    /// A reading.
    Reading,
    /// A reading, the first since the device accepted a subscription for
    /// the object that never notified: worth saying once.
    ReadingCovSilent,
    /// Only a sign that the device answers: COV brings the values.
    Presence,
}

pub struct Point {
    pub id: ObjectId,
    pub metric: MetricName,
    /// Number_Of_States of a multi-state object, when the device said.
    pub states: Option<u32>,
    pub flagged: bool,
    cov: Cov,
}

impl Point {
    pub fn new(id: ObjectId, metric: MetricName, states: Option<u32>) -> Self {
        Self {
            id,
            metric,
            states,
            flagged: false,
            cov: Cov::Polled,
        }
    }

    /// Whether the device holds a subscription for it.
    pub fn is_cov(&self) -> bool {
        self.cov != Cov::Polled
    }

    /// The device accepted a subscription (or its renewal).
    pub fn subscribed(&mut self) {
        if self.cov == Cov::Polled {
            self.cov = Cov::Silent { polls: 0 };
        }
    }

    /// The device refused to subscribe it: polled from now on.
    pub fn refused(&mut self) {
        self.cov = Cov::Polled;
    }

    /// A notification of it arrived.
    pub fn notified(&mut self) {
        if self.is_cov() {
            self.cov = Cov::Notified;
        }
    }

    /// Whether a poll reads it for its value (not only to see the device
    /// answers).
    pub fn wants_poll(&self) -> bool {
        self.cov != Cov::Notified
    }

    /// What the value a poll read of it is. The first poll after a
    /// subscription is only a presence check: the notification the
    /// subscription starts with may still be on its way.
    pub fn polled(&mut self) -> PolledUse {
        match &mut self.cov {
            Cov::Polled => PolledUse::Reading,
            Cov::Notified => PolledUse::Presence,
            Cov::Silent { polls } => {
                *polls = polls.saturating_add(1);
                match *polls {
                    1 => PolledUse::Presence,
                    2 => PolledUse::ReadingCovSilent,
                    _ => PolledUse::Reading,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn point() -> Point {
        Point::new(
            "analog-value:1".parse().unwrap(),
            MetricName::new("flow").unwrap(),
            None,
        )
    }

    #[test]
    fn a_notified_object_is_no_reading_of_a_poll() {
        let mut p = point();
        p.subscribed();
        assert!(p.is_cov());
        assert_eq!(p.polled(), PolledUse::Presence);
        p.notified();
        assert!(!p.wants_poll());
        for _ in 0..5 {
            assert_eq!(p.polled(), PolledUse::Presence);
        }
        // A renewal keeps it notified.
        p.subscribed();
        assert_eq!(p.polled(), PolledUse::Presence);
    }

    #[test]
    fn an_object_not_subscribed_or_refused_or_never_notified_is_polled() {
        let mut p = point();
        assert!(!p.is_cov());
        assert_eq!(p.polled(), PolledUse::Reading);
        // Accepted, never notified: polled again from the second poll.
        p.subscribed();
        assert!(p.wants_poll());
        assert_eq!(p.polled(), PolledUse::Presence);
        assert_eq!(p.polled(), PolledUse::ReadingCovSilent);
        assert_eq!(p.polled(), PolledUse::Reading);
        // Refused at a renewal: polled.
        p.notified();
        p.refused();
        assert!(!p.is_cov());
        assert!(p.wants_poll());
        assert_eq!(p.polled(), PolledUse::Reading);
    }
}
