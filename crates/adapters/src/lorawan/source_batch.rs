//! The `semtech_udp` adapter's batches: uplinks whose de-duplication
//! windows closed are verified, decoded and their counters staged
//! together, the counters written on a blocking thread while the socket
//! loop reads on, and only then their readings sent, in one pipeline
//! message per batch. Methods of the socket loop's [`Server`].

use gateway_core::component::AdapterError;
use tracing::{debug, warn};

use super::super::class_a;
use super::super::dedup::Uplink;
use super::super::fcnt::StoreError;
use super::super::otaa;
use super::super::uplink::{self, Accepted};
use super::{gateway_list, Server, MAX_READINGS_PER_MESSAGE};
use gateway_core::{Reading, TimeSource};

impl Server {
    /// Starts on uplinks whose de-duplication windows closed: joins are
    /// answered; data frames are verified, decoded and their counters
    /// staged, then written on a blocking thread. The write took the
    /// socket loop's thread for milliseconds (up to hundreds here) while
    /// datagrams piled up behind it; now they are read and de-duplicated
    /// meanwhile. `None` when there is nothing to write.
    pub(super) async fn begin(&mut self, due: Vec<Uplink>) -> Result<Option<InFlight>, AdapterError> {
        // Split only when there is a join: partitioned, every uplink of a
        // batch was moved into a list grown by copying (about 130
        // instructions an uplink, callgrind, issue 69).
        let (joins, due): (Vec<Uplink>, Vec<Uplink>) =
            if due.iter().any(|up| otaa::is_join_request(&up.phy)) {
                due.into_iter()
                    .partition(|up| otaa::is_join_request(&up.phy))
            } else {
                (Vec::new(), due)
            };
        for up in &joins {
            self.join(up).await;
        }
        if due.is_empty() {
            return Ok(None);
        }
        let prepared = uplink::prepare_batch(&due, &self.devices, &mut self.store, &mut self.names);
        if !prepared.needs_write() {
            let results = prepared.settle(&mut self.store, Ok(()));
            self.release(&due, results).await?;
            return Ok(None);
        }
        let write = self.store.write();
        let write = tokio::task::spawn_blocking(move || write.run());
        Ok(Some(InFlight {
            due,
            prepared,
            write,
        }))
    }

    /// Ends a batch once its write is over: its readings leave, or (the
    /// write failed) its uplinks are refused and their counters restored.
    pub(super) async fn settle(
        &mut self,
        batch: InFlight,
        written: Result<(), StoreError>,
    ) -> Result<(), AdapterError> {
        let results = batch.prepared.settle(&mut self.store, written);
        self.release(&batch.due, results).await
    }

    /// Answers, counts and sends the readings of a settled batch.
    async fn release(
        &mut self,
        due: &[Uplink],
        mut results: Vec<Result<Accepted, uplink::Rejected>>,
    ) -> Result<(), AdapterError> {
        // The batch's readings leave together, after its counters are on
        // disk: one pipeline message per batch rather than per uplink.
        let room = |uplinks: usize| MAX_READINGS_PER_MESSAGE.min(8 * uplinks);
        let mut readings = Vec::with_capacity(room(due.len()));
        // Each result worked on in place: taken by value, an `Accepted`
        // (a few hundred bytes) was copied out of the list, into this
        // future's state across the await, and into `accepted`'s argument.
        for (i, (up, result)) in due.iter().zip(results.iter_mut()).enumerate() {
            match result {
                Ok(accepted) => {
                    let settled = self.answer(up, accepted).await;
                    // Reported upstream as readings of the device. Only a
                    // frame with MAC commands or a settled downlink has any:
                    // collected for every uplink, the empty list cost about
                    // 200 instructions (callgrind, issue 69).
                    if !accepted.frame.mac_commands.is_empty() || settled.is_some() {
                        let network = class_a::dev_status_readings(&accepted.frame)
                            .into_iter()
                            .chain(settled.map(|c| (c.reading(), 1.0)));
                        for (metric, value) in network {
                            let Some(metric) = self.names.get_static(metric) else {
                                continue;
                            };
                            let device = accepted.device.clone();
                            let arrival = TimeSource::Arrival;
                            if let Ok(r) = Reading::new(device, metric, value, up.received, arrival) {
                                accepted.readings.push(r);
                            }
                        }
                    }
                    if let Some(job) = accepted.script.take() {
                        self.scripts.start(job, &accepted.device, up);
                    }
                    self.accepted(up, accepted);
                    readings.append(&mut accepted.readings);
                    if readings.len() >= MAX_READINGS_PER_MESSAGE {
                        // The next message sized for what is left: an empty
                        // one grew by doubling, a copy each time.
                        let rest = Vec::with_capacity(room(due.len() - i - 1));
                        self.send(std::mem::replace(&mut readings, rest)).await?;
                    }
                }
                Err(e) => {
                    if let uplink::Rejected::Retransmission {
                        device, confirmed, ..
                    } = e
                    {
                        if let Some(frame) = confirmed.take() {
                            self.ack_again(up, device.clone(), *frame).await;
                        }
                    }
                    self.report(e.kind(), &gateway_list(up), &e.to_string());
                }
            }
        }
        self.send(readings).await
    }

    /// Counts and logs an accepted uplink (its readings are the caller's
    /// to send).
    fn accepted(&self, up: &Uplink, accepted: &Accepted) {
        let t = &self.ctx.telemetry;
        let adapter = self.ctx.name.as_str();
        self.uplinks.inc();
        for cmd in &accepted.frame.mac_commands {
            t.counter(
                "edge_gateway_lorawan_mac_commands_total",
                &[("adapter", adapter), ("command", cmd.name)],
            )
            .inc();
        }
        if accepted.reset {
            t.counter(
                "edge_gateway_lorawan_fcnt_resets_total",
                &[("adapter", adapter)],
            )
            .inc();
            warn!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateway_list(up), "Frame counter went back: accepted as a device restart (fcnt_reset = \"accept\").");
        }
        if let Some(e) = &accepted.codec_error {
            self.report(
                &format!("codec_{}", e.kind()),
                &gateway_list(up),
                &format!("device {}: {e}", accepted.device),
            );
        }
        debug!(adapter, device = %accepted.device, fcnt = accepted.fcnt, gateway = %gateway_list(up), rssi = ?up.rssi, snr = ?up.snr, readings = accepted.readings.len(), "Uplink accepted.");
    }
}

/// A batch of uplinks waiting for its counters to be on disk.
pub(super) struct InFlight {
    pub due: Vec<Uplink>,
    pub prepared: uplink::Prepared,
    pub write: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// How the write in flight went; never, without one.
pub(super) async fn written(writing: &mut Option<InFlight>) -> Result<(), StoreError> {
    match writing {
        Some(batch) => (&mut batch.write)
            .await
            .unwrap_or(Err(StoreError::WriteAborted)),
        None => std::future::pending().await,
    }
}
