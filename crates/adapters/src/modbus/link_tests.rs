#![allow(clippy::unwrap_used)]

//! The RTU link against a device on the other end of a pseudo-terminal
//! pair that answers the way faulty devices and converters do: late,
//! twice, garbled. The device side is raw bytes built here (frames per
//! Modbus over Serial Line V1.02 §2.5.1), so what is tested is the link's
//! handling, not a second Modbus implementation; the end-to-end tests play
//! the same faults with pymodbus behind a pyserial converter.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

use super::super::frame::crc16;
use super::super::registers::Table;
use super::*;

fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let crc = crc16(&frame);
    frame.extend(crc.to_le_bytes());
    frame
}

/// The answer of unit 1 to a read of one holding register: `value`.
fn answer(value: u16) -> Vec<u8> {
    let [hi, lo] = value.to_be_bytes();
    with_crc(vec![0x01, 0x03, 0x02, hi, lo])
}

/// Reads one request frame (8 bytes: a read or a single write).
async fn request(device: &mut SerialStream) -> Vec<u8> {
    let mut buf = [0u8; 8];
    device.read_exact(&mut buf).await.unwrap();
    buf.to_vec()
}

/// Answers a request as a device with one holding register of `value` at
/// every address and no input registers would: function 3 with the
/// value, anything else with exception 2.
fn honest(req: &[u8], value: u16) -> Vec<u8> {
    if req[1] == 3 {
        let n = u16::from_be_bytes([req[4], req[5]]);
        let mut out = vec![req[0], 3, u8::try_from(2 * n).unwrap()];
        for _ in 0..n {
            out.extend(value.to_be_bytes());
        }
        with_crc(out)
    } else {
        with_crc(vec![req[0], req[1] | 0x80, 2])
    }
}

/// Answers every request honestly until the link is dropped.
async fn serve_honestly(device: &mut SerialStream, value: u16) {
    loop {
        let mut buf = [0u8; 8];
        if device.read_exact(&mut buf).await.is_err() {
            return;
        }
        device.write_all(&honest(&buf, value)).await.unwrap();
    }
}

fn holding(start: u16, count: u16) -> Read {
    Read {
        table: Table::Holding,
        start,
        count,
        members: vec![0],
    }
}

fn link(host: SerialStream, timeout: Duration) -> Link {
    Link::over_serial(host, Duration::from_millis(2), timeout, false)
}

#[tokio::test]
async fn a_late_answer_is_never_taken_for_the_next_requests() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(150));
    let device_task = tokio::spawn(async move {
        // First request: answered after the timeout (value 111).
        request(&mut device).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        device.write_all(&answer(111)).await.unwrap();
        // Then a probe the late answer cannot look like (input register
        // 0: exception 2), then the request itself.
        let probe = request(&mut device).await;
        assert_eq!(probe[1], 4, "{probe:?}");
        device.write_all(&honest(&probe, 222)).await.unwrap();
        let again = request(&mut device).await;
        device.write_all(&honest(&again, 222)).await.unwrap();
        device
    });
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Timeout);
    // tokio-modbus alone returns 111 here (shared/CRATES.md).
    assert_eq!(
        link.read(1, &holding(100, 1)).await,
        Answer::Words(vec![222])
    );
    drop(device_task.await.unwrap());
}

#[tokio::test]
async fn a_late_answer_released_with_the_next_one_is_refused_and_the_unit_probed() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(100));
    let device_task = tokio::spawn(async move {
        // A buffering converter: the answer to h0 (111) held back, sent
        // with the answer to the next request (h100: 222).
        request(&mut device).await;
        let next = request(&mut device).await;
        let mut both = answer(111);
        both.extend(honest(&next, 222));
        device.write_all(&both).await.unwrap();
        // In step again: every request answered at once.
        serve_honestly(&mut device, 222).await;
    });
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Timeout);
    // Whatever frame comes first, the bytes after it betray it.
    assert_eq!(link.read(1, &holding(100, 1)).await, Answer::OutOfStep);
    assert_eq!(
        link.read(1, &holding(100, 1)).await,
        Answer::Words(vec![222])
    );
    drop(link);
    device_task.abort();
}

#[tokio::test]
async fn a_doubled_answer_never_passes_for_the_next_one() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(100));
    let device_task = tokio::spawn(async move {
        // The answer to h0, and a copy of it right behind.
        let first = request(&mut device).await;
        device.write_all(&honest(&first, 111)).await.unwrap();
        device.write_all(&honest(&first, 111)).await.unwrap();
        serve_honestly(&mut device, 222).await;
    });
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::OutOfStep);
    // The copy never becomes h100's value: refused until the unit is
    // proven in step, then the device's own answer.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let a = link.read(1, &holding(100, 1)).await;
        assert!(matches!(&a, Answer::OutOfStep | Answer::Words(_)), "{a:?}");
        answers.push(a);
    }
    assert!(!answers.contains(&Answer::Words(vec![111])), "{answers:?}");
    assert_eq!(
        answers.last(),
        Some(&Answer::Words(vec![222])),
        "{answers:?}"
    );
    drop(link);
    device_task.abort();
}

#[tokio::test]
async fn a_stray_answer_before_a_request_is_counted_against_its_unit() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(100));
    let (sent, stray) = tokio::sync::oneshot::channel::<()>();
    let device_task = tokio::spawn(async move {
        let first = request(&mut device).await;
        device.write_all(&honest(&first, 111)).await.unwrap();
        // Long after the exchange: a copy, before the next request.
        let _ = stray.await;
        device.write_all(&honest(&first, 111)).await.unwrap();
        serve_honestly(&mut device, 222).await;
    });
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![111]));
    let _ = sent.send(());
    // The copy reaches the port before the next request is sent.
    tokio::time::timeout(Duration::from_secs(5), async {
        while link.pending() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        link.read(1, &holding(100, 1)).await,
        Answer::Words(vec![222])
    );
    assert_eq!(link.take_strays(), vec![1]);
    drop(link);
    device_task.abort();
}

#[tokio::test]
async fn a_write_is_done_only_on_its_own_echo() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(100));
    let device_task = tokio::spawn(async move {
        // An echo of another value (a stale answer to an earlier write).
        let write = request(&mut device).await;
        let mut wrong = write[..6].to_vec();
        wrong[5] ^= 1;
        device.write_all(&with_crc(wrong)).await.unwrap();
        device
    });
    let answer = link.write(1, 10, &Encoded::Registers(vec![215])).await;
    assert_eq!(answer, Answer::OutOfStep);
    drop(device_task.await.unwrap());
}

#[tokio::test]
async fn a_garbled_answer_counts_as_crc_not_as_silence() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(150));
    let device_task = tokio::spawn(async move {
        request(&mut device).await;
        let mut bad = answer(7);
        bad[4] ^= 0x40; // a bit flipped on the line
        device.write_all(&bad).await.unwrap();
        // Out of step after it: the probe, then the read.
        let probe = request(&mut device).await;
        device.write_all(&honest(&probe, 7)).await.unwrap();
        let again = request(&mut device).await;
        device.write_all(&honest(&again, 7)).await.unwrap();
        device
    });
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Crc);
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![7]));
    drop(device_task.await.unwrap());
}

/// At 2400 baud (an Eastron meter's factory setting) a read of 125
/// registers answers in 255 bytes, over a second on the wire: the timeout
/// is for the device to start answering, and its answer then takes the
/// time its bytes take. Here a line of 100 ms a character (gap 350 ms)
/// and a timeout of 100 ms: the request is 0.8 s on the wire, and an answer
/// of 20 registers (45 bytes) that starts at once, paced four times faster
/// than the line, ends about 1.1 s after it, past the 0.9 s the request's
/// bytes and the timeout make. It was cut there and counted as garbled, at
/// every poll, for ever. (The slow line leaves a loaded machine's timers
/// hundreds of milliseconds before a late byte looks like a frame's end.)
#[tokio::test]
async fn a_long_answer_on_a_slow_line_is_not_cut_at_the_timeout() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = Link::over_serial(
        host,
        Duration::from_millis(350),
        Duration::from_millis(100),
        false,
    );
    let device_task = tokio::spawn(async move {
        let req = request(&mut device).await;
        for b in honest(&req, 0x1234) {
            device.write_all(&[b]).await.unwrap();
            // The device's own pace on the wire.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        device
    });
    assert_eq!(
        link.read(1, &holding(0, 20)).await,
        Answer::Words(vec![0x1234; 20])
    );
    drop(device_task.await.unwrap());
}

#[tokio::test]
async fn a_tcp_server_that_closes_the_connection_is_said_to_have_done_so() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 12];
        // The request, then the connection closed without an answer.
        let _ = s.read_exact(&mut buf).await;
        drop(s);
    });
    let transport = Transport::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let mut link = Link::open(&transport, Duration::from_secs(2))
        .await
        .unwrap();
    let answer = link.read(1, &holding(0, 1)).await;
    // tokio-modbus 0.17 alone: "Operation now in progress (os error 115)".
    assert_eq!(
        answer,
        Answer::Connection("the server closed the connection".into())
    );
    server.await.unwrap();
    let refused = Link::open(&transport, Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    let problem = open_problem(&transport, &refused);
    assert!(
        problem.starts_with(&format!(
            "cannot reach its Modbus TCP server tcp://127.0.0.1:{port} (connection refused"
        )),
        "{problem}"
    );
}

/// A Modbus TCP server that answers each request (read of holding
/// registers from 0) with `answers(request's transaction id)`: raw MBAP
/// bytes, written one byte at a time so that the link must reassemble
/// them.
async fn tcp_server(
    answers: impl Fn(u16) -> Vec<u8> + Send + 'static,
) -> (Transport, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 12];
        while s.read_exact(&mut request).await.is_ok() {
            for byte in answers(u16::from_be_bytes([request[0], request[1]])) {
                if s.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
    });
    let transport = Transport::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    (transport, task)
}

fn mbap_words(transaction: u16, words: &[u16]) -> Vec<u8> {
    let mut out = transaction.to_be_bytes().to_vec();
    out.extend([0, 0]);
    out.extend(u16::try_from(3 + 2 * words.len()).unwrap().to_be_bytes());
    out.extend([1, 0x03, u8::try_from(2 * words.len()).unwrap()]);
    for w in words {
        out.extend(w.to_be_bytes());
    }
    out
}

/// `mbap_words` of unit `unit`.
fn mbap_unit(transaction: u16, unit: u8, words: &[u16]) -> Vec<u8> {
    let mut out = mbap_words(transaction, words);
    out[6] = unit;
    out
}

#[tokio::test]
async fn a_tcp_answer_is_taken_only_for_its_own_transaction() {
    // Each answer sent twice: the second copy is found by the next
    // request, whose transaction it is not: dropped and counted, and the
    // next request's own answer taken.
    let (transport, server) = tcp_server(|t| {
        let once = mbap_words(t, &[t]);
        [once.clone(), once].concat()
    })
    .await;
    let mut link = Link::open(&transport, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![1]));
    assert_eq!(link.take_late_answers(), 0);
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![2]));
    assert_eq!(link.take_late_answers(), 1);
    drop(link);
    server.await.unwrap();

    // A server that answers with a transaction id never sent, or with
    // another count than asked, is never believed.
    let wrong: [fn(u16) -> Vec<u8>; 2] = [
        |t| mbap_words(t.wrapping_add(7), &[5]),
        |t| mbap_words(t, &[5, 6]),
    ];
    for answers in wrong {
        let (transport, server) = tcp_server(answers).await;
        let mut link = Link::open(&transport, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Mismatch);
        drop(link);
        server.await.unwrap();
    }
}

/// A converter that sends one answer twice (scripted: no Modbus server
/// library can be made to): the copy, still in the socket, must not cost
/// the next request (for another unit) its answer, nor the connection.
#[tokio::test]
async fn a_doubled_tcp_answer_does_not_cost_the_next_unit_its_answer() {
    let (transport, server) = tcp_server(|t| {
        // Transaction 1 is unit 1's read (value 10), doubled; every
        // later one is unit 2's (value 20).
        if t == 1 {
            [mbap_unit(t, 1, &[10]), mbap_unit(t, 1, &[10])].concat()
        } else {
            mbap_unit(t, 2, &[20])
        }
    })
    .await;
    let mut link = Link::open(&transport, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![10]));
    assert_eq!(link.read(2, &holding(0, 1)).await, Answer::Words(vec![20]));
    assert_eq!(link.take_late_answers(), 1);
    assert_eq!(link.read(2, &holding(0, 1)).await, Answer::Words(vec![20]));
    assert_eq!(link.take_late_answers(), 0);
    drop(link);
    server.await.unwrap();
}

/// An answer that comes after its request timed out is dropped when the
/// next request finds it (its transaction id is the earlier one), and
/// the next request still gets its own answer, never the late one's
/// value.
#[tokio::test]
async fn a_late_tcp_answer_is_never_taken_for_the_next_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 12];
        // Transaction 1 left unanswered until transaction 2 is asked:
        // then its answer (111), and 2's own (222) behind it.
        s.read_exact(&mut request).await.unwrap();
        s.read_exact(&mut request).await.unwrap();
        let t = u16::from_be_bytes([request[0], request[1]]);
        assert_eq!(t, 2);
        s.write_all(&[mbap_words(1, &[111]), mbap_words(2, &[222])].concat())
            .await
            .unwrap();
        s
    });
    let transport = Transport::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let mut link = Link::open(&transport, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Timeout);
    assert_eq!(
        link.read(1, &holding(100, 1)).await,
        Answer::Words(vec![222])
    );
    assert_eq!(link.take_late_answers(), 1);
    drop(server.await.unwrap());
}

/// An RTU link whose adapter echoes (`echo = true`).
fn echo_link(host: SerialStream, timeout: Duration) -> Link {
    Link::over_serial(host, Duration::from_millis(2), timeout, true)
}

/// A device behind an adapter that echoes: each request's bytes back,
/// then the device's answer.
async fn echo_and_answer(device: &mut SerialStream, req: &[u8], answer: &[u8]) {
    device.write_all(req).await.unwrap();
    device.write_all(answer).await.unwrap();
}

#[tokio::test]
async fn an_echoing_adapters_echo_is_dropped_before_the_answer() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = echo_link(host, Duration::from_millis(150));
    let device_task = tokio::spawn(async move {
        // A read: the echo, then its answer.
        let req = request(&mut device).await;
        echo_and_answer(&mut device, &req, &honest(&req, 0x0A0B)).await;
        // The echo and the answer in one piece, as a USB adapter's
        // latency timer hands them over.
        let req = request(&mut device).await;
        device
            .write_all(&[req.clone(), honest(&req, 0x0C0D)].concat())
            .await
            .unwrap();
        // A write of one register: its answer is its echo's very bytes.
        let write = request(&mut device).await;
        echo_and_answer(&mut device, &write, &write).await;
        device
    });
    assert_eq!(
        link.read(1, &holding(0, 2)).await,
        Answer::Words(vec![0x0A0B; 2])
    );
    assert_eq!(
        link.read(1, &holding(0x1000, 1)).await,
        Answer::Words(vec![0x0C0D])
    );
    assert_eq!(
        link.write(1, 10, &Encoded::Registers(vec![215])).await,
        Answer::Words(vec![])
    );
    drop(device_task.await.unwrap());
}

#[tokio::test]
async fn with_echo_on_a_missing_or_garbled_echo_is_bad_echo_and_the_line_resynchronised() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = echo_link(host, Duration::from_millis(100));
    let device_task = tokio::spawn(async move {
        // No echo: the device's answer comes where the echo should.
        let req = request(&mut device).await;
        device.write_all(&honest(&req, 1)).await.unwrap();
        // The echo garbled (a collision, a wrong baud rate), then the
        // answer.
        let req = request(&mut device).await;
        let mut bad = req.clone();
        bad[3] ^= 0x10;
        echo_and_answer(&mut device, &bad, &honest(&req, 2)).await;
        // Nothing at all: no echo, no answer.
        request(&mut device).await;
        // Echoed again: the unit, suspect after the faults, is probed,
        // then read.
        loop {
            let req = request(&mut device).await;
            echo_and_answer(&mut device, &req, &honest(&req, 7)).await;
        }
    });
    for _ in 0..3 {
        assert_eq!(link.read(1, &holding(0, 1)).await, Answer::BadEcho);
        // The line was drained to silence: nothing of the fault is left
        // to be read as the next answer.
        assert_eq!(link.pending(), 0);
    }
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Words(vec![7]));
    drop(link);
    device_task.abort();
}

/// Reads one request of any length (a write of several registers too),
/// framed by its function code.
async fn any_request(device: &mut SerialStream) -> Vec<u8> {
    let mut head = [0u8; 7];
    device.read_exact(&mut head).await.unwrap();
    let rest = if head[1] == 16 {
        usize::from(head[6]) + 2
    } else {
        1
    };
    let mut tail = vec![0u8; rest];
    device.read_exact(&mut tail).await.unwrap();
    [head.to_vec(), tail].concat()
}

#[tokio::test]
async fn with_echo_off_an_echo_is_said_to_be_one_not_a_garbled_answer() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = link(host, Duration::from_millis(100));
    let device_task = tokio::spawn(async move {
        // An adapter that echoes, the gateway not told: every request's
        // bytes come back, then the device's answer.
        loop {
            let req = any_request(&mut device).await;
            let answer = if req[1] == 16 {
                with_crc(req[..6].to_vec())
            } else if req[1] == 6 {
                req.clone()
            } else {
                honest(&req, 3)
            };
            echo_and_answer(&mut device, &req, &answer).await;
        }
    });
    // Its echo read as an answer: a function 3 frame of `start`'s high
    // byte of data, garbled (address 0), or one longer than what comes
    // (0x1000); a write of several registers. One unit each: a unit
    // after a fault is probed first, and its probe would say `echo`.
    assert_eq!(link.read(1, &holding(0, 1)).await, Answer::Echo);
    assert_eq!(link.read(2, &holding(0x1000, 1)).await, Answer::Echo);
    assert_eq!(
        link.write(3, 10, &Encoded::Registers(vec![1, 2])).await,
        Answer::Echo
    );
    // A write of one register is answered with its request's very bytes:
    // its echo passes for the answer, and the answer behind it is a
    // second copy, as a doubled answer would be. Out of step, not `echo`
    // (the line's reads say that).
    assert_eq!(
        link.write(4, 10, &Encoded::Registers(vec![215])).await,
        Answer::OutOfStep
    );
    drop(link);
    device_task.abort();
}
