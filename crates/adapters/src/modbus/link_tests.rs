#![allow(clippy::unwrap_used)]

//! The RTU link against a device on the other end of a pseudo-terminal
//! pair that answers the way faulty devices do: late, or garbled. The
//! device side is raw bytes built here (frames per Modbus over Serial
//! Line V1.02 §2.5.1), so what is tested is the link's handling, not a
//! second Modbus implementation.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

use super::*;

/// CRC-16/MODBUS, low byte first on the wire.
fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let mut crc: u16 = 0xFFFF;
    for b in &frame {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    frame.extend(crc.to_le_bytes());
    frame
}

/// The answer of unit 1 to a read of one holding register: `value`.
fn answer(value: u16) -> Vec<u8> {
    let [hi, lo] = value.to_be_bytes();
    // unit, function 3, byte count 2, the register.
    with_crc(vec![0x01, 0x03, 0x02, hi, lo])
}

/// Reads one request frame (8 bytes for a read) from the device side.
async fn request(device: &mut SerialStream) -> Vec<u8> {
    let mut buf = [0u8; 8];
    device.read_exact(&mut buf).await.unwrap();
    buf.to_vec()
}

fn one_register() -> Read {
    Read {
        table: Table::Holding,
        start: 0,
        count: 1,
        members: vec![0],
    }
}

#[tokio::test]
async fn a_late_answer_is_never_taken_for_the_next_requests() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let timeout = Duration::from_millis(150);
    let mut link = Link::over_serial(host, Duration::from_millis(2), timeout);
    let read = one_register();
    let device_task = tokio::spawn(async move {
        // First request: answered after the timeout (value 111).
        request(&mut device).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        device.write_all(&answer(111)).await.unwrap();
        // Second request: answered at once (value 222).
        request(&mut device).await;
        device.write_all(&answer(222)).await.unwrap();
        device
    });
    assert_eq!(link.read(1, &read).await, Answer::Timeout);
    // tokio-modbus alone returns 111 here (shared/CRATES.md): the guard
    // time and the flush drop it.
    assert_eq!(link.read(1, &read).await, Answer::Words(vec![222]));
    drop(device_task.await.unwrap());
}

#[tokio::test]
async fn a_garbled_answer_counts_as_crc_not_as_silence() {
    let (host, mut device) = SerialStream::pair().unwrap();
    let mut link = Link::over_serial(host, Duration::from_millis(2), Duration::from_millis(150));
    let read = one_register();
    let device_task = tokio::spawn(async move {
        request(&mut device).await;
        let mut bad = answer(7);
        bad[4] ^= 0x40; // a bit flipped on the line
        device.write_all(&bad).await.unwrap();
        request(&mut device).await;
        device.write_all(&answer(7)).await.unwrap();
        device
    });
    assert_eq!(link.read(1, &read).await, Answer::Crc);
    assert_eq!(link.read(1, &read).await, Answer::Words(vec![7]));
    drop(device_task.await.unwrap());
}
