//! What a Modbus bus says about its devices, beside its readings: the
//! counters and log lines of out-of-step answers, NaN values and
//! exceptions, string registers' text, and each device's online/offline
//! state with why.

use gateway_core::{AdapterContext, AdapterError, DeviceState, Ingress, StatusChange};
use tracing::{info, warn};

use super::{send, Bus, MODBUS_EXCEPTIONS, MODBUS_TEXT};
use crate::modbus::link::Link;
use crate::modbus::poller::Fault;

/// The `error_type` of an answer a TCP server sent to a request already
/// settled (its transaction id tells it), dropped.
pub(super) const LATE_ANSWER: &str = "late_answer";

impl Bus {
    /// Counts the stray answers (late, or second copies) the RTU line
    /// dropped, against the devices that sent them, and the late or
    /// doubled answers a TCP server sent (`late_answer`): the server's
    /// fault, not the next device's, whose poll goes on.
    pub(super) fn count_strays(&mut self, link: &mut Link) {
        for _ in 0..link.take_late_answers() {
            gateway_core::refuse!(self.stats, self.throttle, LATE_ANSWER;
                adapter = %self.name, bus = %self.transport.describe(), "Modbus TCP server sent an answer to a request already answered or timed out (a doubled or late answer, as some gateways and converters send): dropped by its transaction id; the current request's answer is still waited for.");
        }
        for unit in link.take_strays() {
            let Some(i) = self.units.iter().position(|u| u.unit == unit) else {
                continue;
            };
            self.out_of_step(i);
        }
    }

    pub(super) fn out_of_step(&self, i: usize) {
        let f = Fault::OutOfStep;
        let key = format!("{}:{}", f.label(), self.members[i].id.as_str());
        gateway_core::refuse!(self.stats, self.throttle, f.label(), per key;
            adapter = %self.name, bus = %self.transport.describe(), device = %self.members[i].id.as_str(), unit = self.units[i].unit, "Modbus device answers out of step (a late or doubled answer, as a buffering converter gives): its answers are dropped and its readings withheld until it answers in step.");
    }

    /// An RS-485 adapter's echo of the request, found with `echo` off
    /// (`echo`) or missing with `echo = true` (`bad_echo`): the line's
    /// setting, not the device, is what to check.
    pub(super) fn echo_fault(&self, i: usize, f: Fault) {
        let key = format!("{}:{}", f.label(), self.members[i].id.as_str());
        if f == Fault::Echo {
            gateway_core::refuse!(self.stats, self.throttle, f.label(), per key;
                adapter = %self.name, bus = %self.transport.describe(), device = %self.members[i].id.as_str(), unit = self.units[i].unit, "The request's own bytes came back where its answer was awaited: this RS-485 adapter echoes what it sends. Set echo = true in this adapter's section.");
        } else {
            gateway_core::refuse!(self.stats, self.throttle, f.label(), per key;
                adapter = %self.name, bus = %self.transport.describe(), device = %self.members[i].id.as_str(), unit = self.units[i].unit, "The request's own bytes did not come back as sent before its answer (echo = true): the adapter does not echo (remove echo), or the line is garbled (baud rate, wiring, another master).");
        }
    }

    /// A string register's text is no reading: like the text fields of
    /// other adapters it is counted once per device and key
    /// (`edge_gateway_adapter_ignored_fields_total`), and it is shown in
    /// [`MODBUS_TEXT`] and logged when it changes.
    pub(super) fn texts(&mut self, i: usize, texts: Vec<(usize, String)>, ctx: &AdapterContext) {
        for (m, text) in texts {
            let Some(metric) = self.members[i].metrics.get(m).cloned() else {
                continue;
            };
            let old = self.members[i].texts.insert(m, text.clone());
            if old.as_deref() == Some(text.as_str()) {
                continue;
            }
            let device = self.members[i].id.as_str().to_string();
            self.stats.ignored_field(&device, metric.as_str());
            if let Some(old) = &old {
                ctx.telemetry.remove_gauge(
                    MODBUS_TEXT,
                    &text_labels(&self.name, &device, metric.as_str(), old),
                );
            }
            ctx.telemetry
                .gauge(
                    MODBUS_TEXT,
                    &text_labels(&self.name, &device, metric.as_str(), &text),
                )
                .set(1.0);
            info!(adapter = %self.name, device = %device, metric = %metric.as_str(), text = %text, "Modbus string register read.");
        }
    }

    /// Counts each register whose value was NaN or infinite, and says so
    /// once per interval per device: no reading is dropped in silence.
    pub(super) fn not_finite(&self, i: usize, registers: &[usize]) {
        for &m in registers {
            let key = format!("not_finite:{}", self.members[i].id.as_str());
            let r = &self.units[i].registers[m];
            gateway_core::refuse!(self.stats, self.throttle, "not_finite", per key;
                adapter = %self.name, device = %self.members[i].id.as_str(), unit = self.units[i].unit, metric = %r.metric, table = r.table.as_str(), address = r.address, "A register's value is not a finite number (NaN or infinity: a meter's \"no value\", or the wrong type or order): no reading.");
        }
    }

    pub(super) fn exception(&self, i: usize, code: u8, ctx: &AdapterContext) {
        self.stats.error(Fault::Exception(code).label());
        ctx.telemetry
            .counter(
                MODBUS_EXCEPTIONS,
                &[
                    ("adapter", self.name.as_str()),
                    ("device", self.members[i].id.as_str()),
                    ("code", &code.to_string()),
                ],
            )
            .inc();
    }

    /// Sends device `i`'s new state, with a log line that says why.
    pub(super) async fn report(
        &mut self,
        i: usize,
        state: Option<DeviceState>,
        ctx: &AdapterContext,
    ) -> Result<(), AdapterError> {
        let Some(state) = state else { return Ok(()) };
        let member = &mut self.members[i];
        let before = member.state.replace(state);
        member.up.set(if state == DeviceState::Online {
            1.0
        } else {
            0.0
        });
        if state == DeviceState::Offline {
            let unit = &self.units[i];
            match (&self.problem, unit.answered_once()) {
                (Some(problem), false) => {
                    warn!(adapter = %self.name, device = %member.id.as_str(), unit = unit.unit, problem = %problem, "Modbus device offline: it has not answered since the start (its bus is down).");
                }
                (None, false) => {
                    warn!(adapter = %self.name, device = %member.id.as_str(), unit = unit.unit, "Modbus device offline: it has not answered since the start (check its unit id, and the line's baud rate and wiring).");
                }
                (Some(problem), true) => {
                    warn!(adapter = %self.name, device = %member.id.as_str(), unit = unit.unit, problem = %problem, "Modbus device offline: its bus is down.");
                }
                (None, true) => {
                    warn!(adapter = %self.name, device = %member.id.as_str(), unit = unit.unit, "Modbus device offline: it stopped answering.");
                }
            }
        } else if before == Some(DeviceState::Offline) {
            info!(adapter = %self.name, device = %member.id.as_str(), "Modbus device answers again.");
        } else {
            info!(adapter = %self.name, device = %member.id.as_str(), unit = self.units[i].unit, "Modbus device answers.");
        }
        send(
            ctx,
            Ingress::Status(StatusChange {
                device: member.id.clone(),
                state,
                time: ctx.clock.now(),
            }),
        )
        .await
    }
}

fn text_labels<'a>(
    adapter: &'a str,
    device: &'a str,
    metric: &'a str,
    text: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("adapter", adapter),
        ("device", device),
        ("metric", metric),
        ("text", text),
    ]
}
