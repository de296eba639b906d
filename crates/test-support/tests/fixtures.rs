//! The fixtures themselves work: a message published with mosquitto_pub
//! reaches mosquitto_sub through the broker the test started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use test_support::{publish, Mosquitto, Subscriber};

#[tokio::test]
async fn broker_and_clients_round_trip() {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::start(broker.port(), "fixture/#").await;
    publish(broker.port(), "fixture/a", "{\"x\":1}", 1, false).await;
    let m = sub.next(Duration::from_secs(10)).await.expect("message");
    assert_eq!(m.topic, "fixture/a");
    assert_eq!(m.json()["x"], 1);
    assert!(!m.retained);
}

#[tokio::test]
async fn restarted_broker_listens_on_the_same_port() {
    let mut broker = Mosquitto::start_persistent();
    let port = broker.port();
    publish(port, "fixture/keep", "kept", 1, true).await;
    broker.restart();
    assert_eq!(broker.port(), port);
    let mut sub = Subscriber::start(port, "fixture/keep").await;
    let m = sub
        .next(Duration::from_secs(10))
        .await
        .expect("retained message after restart");
    assert_eq!(
        (m.payload.as_str(), m.retained),
        ("kept", true),
        "{}",
        broker.log()
    );
}
