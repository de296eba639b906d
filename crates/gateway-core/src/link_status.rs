//! What an adapter that holds a link (a broker connection, a serial port,
//! a TCP server, a radio) tells `/health` about it: connected or not
//! ([`ADAPTER_CONNECTED`]), what the link is ([`ADAPTER_LINK`]'s `link`)
//! and, while it is down, what is wrong in the adapter's own terms (its
//! `problem` label): "cannot reach its Modbus TCP server tcp://…
//! (connection refused)" says more than any word `/health` could guess
//! from the kind of link.

use crate::component::{AdapterContext, ADAPTER_CONNECTED, ADAPTER_LINK};
use crate::telemetry::{Gauge, Telemetry};

/// An MQTT-less server reached over TCP (a Modbus TCP server, a gateway).
pub const LINK_TCP_SERVER: &str = "tcp_server";

/// One adapter's link, as `/health` reads it.
pub struct LinkStatus {
    telemetry: Telemetry,
    adapter: String,
    link: &'static str,
    connected: Gauge,
    /// The problem in the `problem` label now ("" when none).
    problem: String,
}

impl LinkStatus {
    /// A link of kind `link` (`LINK_SERIAL_PORT`, [`LINK_TCP_SERVER`], …),
    /// not connected yet and with no problem known.
    pub fn new(ctx: &AdapterContext, link: &'static str) -> Self {
        Self::of(&ctx.telemetry, &ctx.name, link)
    }

    /// As [`Self::new`], for adapter `adapter` of `telemetry`.
    pub fn of(telemetry: &Telemetry, adapter: &str, link: &'static str) -> Self {
        let connected = telemetry.gauge(ADAPTER_CONNECTED, &[("adapter", adapter)]);
        connected.set(0.0);
        let status = Self {
            telemetry: telemetry.clone(),
            adapter: adapter.to_string(),
            link,
            connected,
            problem: String::new(),
        };
        status.info(&status.problem).set(1.0);
        status
    }

    fn info(&self, problem: &str) -> Gauge {
        let adapter = ("adapter", self.adapter.as_str());
        let link = ("link", self.link);
        if problem.is_empty() {
            self.telemetry.gauge(ADAPTER_LINK, &[adapter, link])
        } else {
            self.telemetry
                .gauge(ADAPTER_LINK, &[adapter, link, ("problem", problem)])
        }
    }

    fn set_problem(&mut self, problem: &str) {
        if problem == self.problem {
            return;
        }
        // The new series first: a reader never finds the adapter without one.
        self.info(problem).set(1.0);
        let old = std::mem::replace(&mut self.problem, problem.to_string());
        let adapter = ("adapter", self.adapter.as_str());
        let link = ("link", self.link);
        if old.is_empty() {
            self.telemetry.remove_gauge(ADAPTER_LINK, &[adapter, link]);
        } else {
            self.telemetry
                .remove_gauge(ADAPTER_LINK, &[adapter, link, ("problem", &old)]);
        }
    }

    /// The link works.
    pub fn up(&mut self) {
        self.connected.set(1.0);
        self.set_problem("");
    }

    /// The link is down because of `problem`, a clause that follows the
    /// adapter's name ("cannot open its serial port /dev/ttyUSB0 (No such
    /// file or directory)").
    pub fn down(&mut self, problem: &str) {
        self.connected.set(0.0);
        self.set_problem(problem);
    }

    /// Down, the adapter stopping: nothing to say any more.
    pub fn stopped(&mut self) {
        self.connected.set(0.0);
        self.set_problem("");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_is_one_label_that_follows_the_link() {
        let t = &Telemetry::default();
        let mut link = LinkStatus::of(t, "rs485", LINK_TCP_SERVER);
        assert_eq!(
            t.gauge(ADAPTER_CONNECTED, &[("adapter", "rs485")]).get(),
            0.0
        );
        link.down("cannot reach its Modbus TCP server tcp://h:502 (connection refused)");
        link.down("cannot reach its Modbus TCP server tcp://h:502 (no answer to connect)");
        let series = t.gauges(ADAPTER_LINK);
        assert_eq!(series.len(), 1, "{series:?}");
        assert!(series[0].0.contains(&(
            "problem".into(),
            "cannot reach its Modbus TCP server tcp://h:502 (no answer to connect)".into()
        )));
        link.up();
        let series = t.gauges(ADAPTER_LINK);
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(series[0].0.len(), 2, "no problem label: {series:?}");
        assert_eq!(
            t.gauge(ADAPTER_CONNECTED, &[("adapter", "rs485")]).get(),
            1.0
        );
    }
}
