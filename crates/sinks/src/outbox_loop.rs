//! The one loop every output with a durable outbox runs (the upstream and
//! InfluxDB): what the pipeline hands over is taken in batches (one append,
//! one fsync each), alerts overtake it on the urgent lane, the checkpoint's
//! flush is answered once everything handed over is stored, the spool keeps
//! house every second, and at stop the output delivers what it can until
//! its drain deadline; what is left stays on disk for the next start.
//!
//! What is stored, what is sent and how a delivery settles differ by
//! output, and are its [`Deliver`] implementation: the upstream publishes
//! and settles on PUBACKs from its poller; InfluxDB spawns HTTP requests
//! and settles when one finishes. Both were written out twice before, with
//! the same batching, hold hook, flush handshake and drain; keeping that
//! part here keeps their crash behaviour the same.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::spool::Spool;
use crate::OutputLink;

/// An output's side of the loop: its spool, how it stores what it is
/// handed, and its delivery.
pub trait Deliver {
    /// What the output is handed (rendered messages, pipeline events).
    type Item: Send;
    /// What its delivery side reports (an acknowledgement, a finished
    /// request).
    type Event: Send;

    /// The output's spool, the one its outbox files are in.
    fn spool(&mut self) -> &mut Spool;
    /// Stores a batch taken from the link (`urgent`: from the alerts'
    /// lane, to be sent before the backlog).
    fn store(&mut self, batch: Vec<Self::Item>, urgent: bool);
    /// Sends what is due now; called before each wait. `draining`: the
    /// link has closed.
    fn send(&mut self, draining: bool) -> impl Future<Output = ()> + Send;
    /// When to call `send` again with nothing else happening.
    fn wakeup(&self, draining: bool) -> Option<Instant>;
    /// The delivery side's next report; `None` once it has ended, which
    /// ends the loop.
    fn event(&mut self) -> impl Future<Output = Option<Self::Event>> + Send;
    /// What a report does to the outbox and the plan.
    fn settle(&mut self, event: Self::Event) -> impl Future<Output = ()> + Send;
    /// Every second, after the spool's own housekeeping.
    fn housekeeping(&mut self, _tick: u64) {}
    /// Nothing handed to the delivery side still awaits its answer.
    fn idle(&self) -> bool {
        true
    }
    /// After the loop (`sinks::durable::run`): what the output does at
    /// stop (close the spool, say goodbye to its peer).
    fn finish(&mut self, _end: End) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How one output runs the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Most items taken from the link into one store (one fsync).
    pub batch: usize,
    /// Fault hook for the crash tests: the variable naming milliseconds to
    /// hold each batch before it is stored, so a kill can land between the
    /// pipeline handing it over and the outbox keeping it.
    pub hold_env: &'static str,
    /// How long the output keeps delivering once its link has closed.
    pub drain_timeout: Duration,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The link closed and everything stored was delivered.
    Delivered,
    /// The link closed and the drain deadline passed first.
    Deadline,
    /// The delivery side ended.
    DeliveryEnded,
}

/// Runs the loop until the link's messages close and everything is
/// delivered, the drain deadline passes, or the delivery side ends.
pub async fn run<D: Deliver>(d: &mut D, link: OutputLink<D::Item>, settings: &LoopSettings) -> End {
    let OutputLink {
        messages: mut rx,
        mut urgent,
        mut flush,
    } = link;
    let hold = std::env::var(settings.hold_env)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let mut rx_open = true;
    let mut drain_deadline = Instant::now();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    // Woken when the gateway's heap check finds a burst has passed.
    let mut caches = gateway_core::cache_release::Listener::default();
    loop {
        d.send(!rx_open).await;
        if !rx_open && d.spool().waiting() == 0 && d.idle() {
            return End::Delivered;
        }
        let wakeup = d.wakeup(!rx_open);
        tokio::select! {
            biased;
            request = async { flush.as_mut()?.recv().await }, if flush.is_some() => match request {
                Some(reply) => {
                    // Alerts first, as on their own lane.
                    let mut batch = Vec::new();
                    if let Some(u) = urgent.as_mut() {
                        while let Ok(more) = u.try_recv() {
                            batch.push(more);
                        }
                        d.store(batch, true);
                    }
                    let mut batch = Vec::new();
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    d.store(batch, false);
                    let _ = reply.send(d.spool().is_durable());
                }
                None => flush = None,
            },
            event = d.event() => match event {
                Some(event) => d.settle(event).await,
                None => return End::DeliveryEnded,
            },
            // Before the intake: while messages keep coming, what is due
            // would otherwise wait for the channel to run dry.
            _ = sleep_until(wakeup), if wakeup.is_some() => {}
            msg = async { urgent.as_mut()?.recv().await }, if urgent.is_some() => match msg {
                Some(msg) => {
                    let mut batch = vec![msg];
                    if let Some(u) = urgent.as_mut() {
                        while let Ok(more) = u.try_recv() {
                            batch.push(more);
                        }
                    }
                    d.store(batch, true);
                    // A lane that never runs dry (a command flood, each
                    // with its result) must not keep the messages out.
                    let mut batch = Vec::new();
                    while batch.len() < settings.batch {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        if let Some(hold) = hold {
                            tokio::time::sleep(hold).await;
                        }
                        d.store(batch, false);
                    }
                }
                None => urgent = None,
            },
            msg = rx.recv(), if rx_open => match msg {
                Some(msg) => {
                    let mut batch = vec![msg];
                    while batch.len() < settings.batch {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if let Some(hold) = hold {
                        tokio::time::sleep(hold).await;
                    }
                    d.store(batch, false);
                }
                None => {
                    rx_open = false;
                    drain_deadline = gateway_core::deadline::from_now(settings.drain_timeout);
                }
            },
            () = caches.asked() => d.spool().let_go_of_caches(),
            _ = housekeeping.tick() => {
                ticks += 1;
                d.spool().housekeeping(ticks);
                d.housekeeping(ticks);
            }
            _ = tokio::time::sleep_until(drain_deadline), if !rx_open => return End::Deadline,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs an outbox write and its fsync. On a multi-threaded runtime (the
/// gateway's) the other tasks leave this worker meanwhile, so deliveries in
/// flight and the pipeline go on while the disk syncs: a sync costs
/// milliseconds, and storing then sending in turn held the InfluxDB bench
/// at about half of InfluxDB's own ingest.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use gateway_core::Telemetry;
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::outbox::OutboxSettings;
    use crate::spool::SpoolSettings;

    /// Records what it is asked to store, and in which lane.
    struct Recorder {
        spool: Spool,
        stored: Arc<Mutex<Vec<(u32, bool)>>>,
    }

    impl Deliver for Recorder {
        type Item = u32;
        type Event = ();

        fn spool(&mut self) -> &mut Spool {
            &mut self.spool
        }
        fn store(&mut self, batch: Vec<u32>, urgent: bool) {
            let mut stored = self.stored.lock().unwrap();
            stored.extend(batch.into_iter().map(|i| (i, urgent)));
        }
        async fn send(&mut self, _draining: bool) {}
        fn wakeup(&self, _draining: bool) -> Option<Instant> {
            None
        }
        async fn event(&mut self) -> Option<()> {
            std::future::pending().await
        }
        async fn settle(&mut self, _event: ()) {}
    }

    #[tokio::test]
    async fn everything_handed_over_before_a_flush_is_stored_before_it_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            Some(dir.path()),
            SpoolSettings {
                outbox: OutboxSettings {
                    max_bytes: 1 << 20,
                    policy: gateway_core::config::FullPolicy::DropOldest,
                    max_age: None,
                },
                max_queued: 16,
            },
            &Telemetry::default(),
            &[],
        )
        .unwrap();
        let stored = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            spool,
            stored: stored.clone(),
        };
        let (messages, messages_rx) = mpsc::channel(64);
        let (urgent, urgent_rx) = mpsc::channel(64);
        let (flush, flush_rx) = mpsc::channel(1);
        let settings = LoopSettings {
            batch: 8,
            hold_env: "EDGE_GATEWAY_TEST_UNSET_HOLD",
            drain_timeout: Duration::from_secs(1),
        };
        let task = tokio::spawn(async move {
            crate::durable::run(
                recorder,
                OutputLink {
                    messages: messages_rx,
                    urgent: Some(urgent_rx),
                    flush: Some(flush_rx),
                },
                &settings,
            )
            .await
        });
        for i in 0..40 {
            messages.send(i).await.unwrap();
        }
        urgent.send(1000).await.unwrap();
        let (reply, answered) = oneshot::channel();
        flush.send(reply).await.unwrap();
        assert_eq!(answered.await, Ok(true), "stored on disk");
        let got = stored.lock().unwrap().clone();
        assert_eq!(got.len(), 41, "{got:?}");
        assert!(got.contains(&(1000, true)), "the alert, on its lane");
        let order: Vec<u32> = got.iter().filter(|(_, u)| !u).map(|(i, _)| *i).collect();
        assert_eq!(
            order,
            (0..40).collect::<Vec<_>>(),
            "in the order handed over"
        );
        drop((messages, urgent, flush));
        assert_eq!(task.await.unwrap(), End::Delivered);
    }
}
