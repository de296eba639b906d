//! The per-gateway `seq` field of upstream messages.
//!
//! `seq` is the message's outbox sequence number: given once when the
//! message is stored, persisted with it, and monotonic across restarts, so
//! a message sent again after a reconnect, a failover or a crash carries
//! the same `seq` (and the same `id`). A consumer that sees a number missing
//! below the highest it has seen (after waiting for the backlog and alerts,
//! which may overtake) knows a message was lost: evicted by a full outbox,
//! expired by `max_age`, or dropped as unreadable, each of them counted in
//! `edge_gateway_outbox_dropped_messages_total`.
//!
//! It is added as the payload is sent rather than when it is rendered,
//! because the number only exists once the outbox has accepted the message.

/// The payload with `"seq": seq` added as the last field of its JSON
/// object. Anything that is not a JSON object (it does not start with `{`
/// and end with `}`) is returned unchanged.
pub fn with_seq(mut payload: Vec<u8>, seq: u64) -> Vec<u8> {
    let is_space = |b: &u8| b.is_ascii_whitespace();
    let Some(first) = payload.iter().position(|b| !is_space(b)) else {
        return payload;
    };
    let Some(last) = payload.iter().rposition(|b| !is_space(b)) else {
        return payload;
    };
    if payload[first] != b'{' || payload[last] != b'}' || last == first {
        return payload;
    }
    let Some(end) = payload[..last].iter().rposition(|b| !is_space(b)) else {
        return payload;
    };
    payload.truncate(end + 1);
    if end != first {
        payload.push(b',');
    }
    payload.extend_from_slice(b"\"seq\":");
    payload.extend_from_slice(super::text::decimal(seq, &mut [0; 20]).as_bytes());
    payload.push(b'}');
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str, seq: u64) -> String {
        String::from_utf8(with_seq(text.as_bytes().to_vec(), seq)).unwrap()
    }

    #[test]
    fn seq_is_the_last_field_and_every_other_field_is_kept() {
        let out = with(r#"{"id":"a","metrics":{"t":{"avg":1.5}}}"#, 42);
        assert_eq!(out, r#"{"id":"a","metrics":{"t":{"avg":1.5}},"seq":42}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["metrics"]["t"]["avg"], 1.5);
        assert_eq!(with(" { } \n", 7), r#" {"seq":7}"#);
    }

    #[test]
    fn payloads_that_are_not_json_objects_are_unchanged() {
        for text in ["online", "", "   ", "[1,2]", "{", "}", "\"{x}\""] {
            assert_eq!(with(text, 1), text);
        }
    }
}
