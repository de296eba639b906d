use std::collections::BTreeSet;

use super::*;

/// The store as the scheduler sees it: the sequence numbers it holds.
#[derive(Default)]
struct Seqs(BTreeSet<u64>);

impl Seqs {
    fn upto(n: u64) -> Self {
        Self((1..=n).collect())
    }
    fn add(&mut self, seq: u64) {
        self.0.insert(seq);
    }
    fn ack(&mut self, seq: u64) {
        self.0.remove(&seq);
    }
}

impl Sequence for Seqs {
    fn first_after(&self, seq: u64) -> Option<u64> {
        self.0.range(seq + 1..).next().copied()
    }
    fn last(&self) -> u64 {
        self.0.last().copied().unwrap_or(0)
    }
}

fn msg(seq: u64) -> Pick {
    Pick::Message { seq, urgent: false }
}

/// Submits everything the scheduler offers now, numbering packet ids from
/// `pkid`, and returns what was submitted.
fn drain(s: &mut Scheduler, store: &Seqs, pkid: &mut u16) -> Vec<Pick> {
    let mut out = Vec::new();
    while let Some(p) = s.next(store, Instant::now()) {
        s.submitted(p);
        assert_eq!(s.sent(*pkid), None, "QoS 1 waits for its PUBACK");
        *pkid += 1;
        out.push(p);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn status_first_then_backlog_in_order_and_nothing_before_connecting() {
    let store = Seqs::upto(3);
    let mut s = Scheduler::new(10, 1000, Instant::now());
    assert_eq!(s.next(&store, Instant::now()), None, "not connected");
    s.connected(&store);
    let mut pkid = 1;
    assert_eq!(
        drain(&mut s, &store, &mut pkid),
        vec![Pick::Status, msg(1), msg(2), msg(3)]
    );
    assert_eq!(s.acked(1), Some(Completed::Status));
    assert_eq!(s.acked(3), Some(Completed::Message(2)));
    assert_eq!(s.acked(3), None, "one PUBACK completes one message");
}

#[tokio::test(start_paused = true)]
async fn new_messages_overtake_the_backlog_and_urgent_ones_overtake_both() {
    let mut store = Seqs::upto(2);
    let mut s = Scheduler::new(10, 1, Instant::now());
    s.connected(&store);
    let mut pkid = 1;
    // One token: status and one backlog message, then the rate holds it.
    assert_eq!(drain(&mut s, &store, &mut pkid), vec![Pick::Status, msg(1)]);
    store.add(3);
    store.add(4);
    s.push_urgent([4]);
    assert_eq!(
        drain(&mut s, &store, &mut pkid),
        vec![
            Pick::Message {
                seq: 4,
                urgent: true
            },
            msg(3)
        ],
        "the urgent message first, then live data, the backlog waits; 4 is not sent twice"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(drain(&mut s, &store, &mut pkid), vec![msg(2)]);
}

#[tokio::test(start_paused = true)]
async fn the_backlog_drains_at_the_drain_rate() {
    let store = Seqs::upto(1000);
    let mut s = Scheduler::new(u16::MAX, 100, Instant::now());
    s.connected(&store);
    let mut pkid = 1;
    let first = drain(&mut s, &store, &mut pkid);
    // The status and a burst of a tenth of a second.
    assert_eq!(first.len(), 1 + 10);
    let wake = s.backlog_wakeup().expect("the backlog waits for a token");
    assert_eq!(wake, Instant::now() + Duration::from_millis(10));
    let mut sent = first.len() - 1;
    for _ in 0..200 {
        tokio::time::advance(Duration::from_millis(10)).await;
        sent += drain(&mut s, &store, &mut pkid).len();
    }
    // Two seconds at 100/s after the burst.
    assert!((205..=215).contains(&sent), "{sent} sent in 2 s at 100/s");
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_window_is_respected() {
    let store = Seqs::upto(10);
    let mut s = Scheduler::new(3, 1000, Instant::now());
    s.connected(&store);
    let mut pkid = 1;
    assert_eq!(drain(&mut s, &store, &mut pkid).len(), 3);
    assert_eq!(s.acked(2), Some(Completed::Message(1)));
    assert_eq!(drain(&mut s, &store, &mut pkid), vec![msg(3)]);
}

#[tokio::test(start_paused = true)]
async fn after_a_disconnect_everything_unacknowledged_is_sent_again() {
    let mut store = Seqs::upto(4);
    let mut s = Scheduler::new(10, 1000, Instant::now());
    s.connected(&store);
    let mut pkid = 1;
    drain(&mut s, &store, &mut pkid);
    // 1 acknowledged, and acked in the store; 2..4 in flight.
    assert_eq!(s.acked(2), Some(Completed::Message(1)));
    store.ack(1);
    store.add(5);
    s.push_urgent([5]);
    assert_eq!(
        s.next(&store, Instant::now()),
        Some(Pick::Message {
            seq: 5,
            urgent: true
        })
    );
    s.submitted(Pick::Message {
        seq: 5,
        urgent: true,
    });
    assert_eq!(
        s.lost(),
        5,
        "status, 2, 3, 4 and the alert were unacknowledged"
    );
    assert_eq!(s.next(&store, Instant::now()), None, "nothing while away");
    assert_eq!(s.acked(3), None, "old packet ids mean nothing any more");

    s.connected(&store);
    let mut pkid = 1;
    assert_eq!(
        drain(&mut s, &store, &mut pkid),
        vec![
            Pick::Status,
            Pick::Message {
                seq: 5,
                urgent: true
            },
            msg(2),
            msg(3),
            msg(4)
        ],
        "the alert first again, then the rest from the oldest, the alert not twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pick_the_client_could_not_take_is_offered_again() {
    let store = Seqs::upto(2);
    let mut s = Scheduler::new(10, 1000, Instant::now());
    s.connected(&store);
    let status = s.next(&store, Instant::now()).expect("status");
    s.unpick(status);
    assert_eq!(s.next(&store, Instant::now()), Some(Pick::Status));
    let first = s.next(&store, Instant::now()).expect("a message");
    s.unpick(first);
    assert_eq!(s.next(&store, Instant::now()), Some(first));
    s.push_urgent([2]);
    let urgent = s.next(&store, Instant::now()).expect("urgent");
    s.unpick(urgent);
    assert_eq!(s.next(&store, Instant::now()), Some(urgent));
}

#[tokio::test(start_paused = true)]
async fn qos0_completes_on_write() {
    let store = Seqs::upto(1);
    let mut s = Scheduler::new(10, 1000, Instant::now());
    s.connected(&store);
    let status = s.next(&store, Instant::now()).expect("status");
    s.submitted(status);
    let one = s.next(&store, Instant::now()).expect("message");
    s.submitted(one);
    assert_eq!(s.sent(7), None);
    assert_eq!(s.sent(0), Some(Completed::Message(1)));
    assert_eq!(s.unacknowledged(), 1);
}

/// The attack: a flood of commands gave thousands of results, all urgent,
/// and the windows waited behind every one of them.
#[tokio::test(start_paused = true)]
async fn windows_never_wait_behind_a_flood_of_command_results() {
    let mut store = Seqs::default();
    let mut s = Scheduler::new(10, 1000, Instant::now());
    s.connected(&store);
    let mut pkid = 1;
    assert_eq!(drain(&mut s, &store, &mut pkid), vec![Pick::Status]);
    for seq in 1..=1000 {
        store.add(seq);
    }
    s.push_results(1..=1000);
    let first = drain(&mut s, &store, &mut pkid);
    assert_eq!(
        first,
        (1..=5).map(|seq| Pick::Result { seq }).collect::<Vec<_>>(),
        "results take half the window at most"
    );
    // A window closes in the middle of the flood: it goes at once.
    store.add(1001);
    assert_eq!(drain(&mut s, &store, &mut pkid), vec![msg(1001)]);
    // Each acknowledged result lets the next one go, as fast as the
    // broker takes them; nothing is sent twice by the in-order cursor.
    assert_eq!(s.acked(2), Some(Completed::Message(1)));
    store.ack(1);
    assert_eq!(
        drain(&mut s, &store, &mut pkid),
        vec![Pick::Result { seq: 6 }]
    );
    // A lost connection: the results in flight go first again, after the
    // status; the backlog leaves the lane's results to it.
    s.lost();
    s.connected(&store);
    let again = drain(&mut s, &store, &mut pkid);
    assert_eq!(
        again,
        vec![
            Pick::Status,
            Pick::Result { seq: 2 },
            Pick::Result { seq: 3 },
            Pick::Result { seq: 4 },
            Pick::Result { seq: 5 },
            Pick::Result { seq: 6 },
            msg(1001),
        ]
    );
}
