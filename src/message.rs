//! A published message, as queues hold it and consumers receive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{Bytes, BytesMut};

use crate::protocol::Properties;

/// One published message. Queues share it through an `Arc`: a message
/// routed to ten queues exists once, and its body is the slice of the read
/// buffer it arrived in.
#[derive(Debug)]
pub struct Message {
    /// The exchange it was published to ("" for the default exchange).
    pub exchange: Arc<str>,
    pub routing_key: Bytes,
    /// Sender-selected routing keys (the `CC` and `BCC` headers at publish):
    /// the message is routed with these as well as `routing_key`.
    pub extra_keys: Box<[Bytes]>,
    pub properties: Properties,
    pub body: Bytes,
    /// The `expiration` property in milliseconds, when valid.
    pub expiration: Option<u64>,
    /// Set when the message is stored once for several durable queues.
    pub shared: Option<Arc<SharedMessage>>,
}

/// A persistent message stored once in the shared tree for several durable
/// queues, with the count of queues that still hold it.
#[derive(Debug)]
pub struct SharedMessage {
    pub id: u64,
    holders: AtomicUsize,
}

impl SharedMessage {
    pub fn new(id: u64, holders: usize) -> Self {
        SharedMessage {
            id,
            holders: AtomicUsize::new(holders),
        }
    }

    /// One more queue holds it (recovery counts references this way).
    pub fn hold(&self) {
        self.holders.fetch_add(1, Ordering::AcqRel);
    }

    pub fn holders(&self) -> usize {
        self.holders.load(Ordering::Acquire)
    }

    /// One holder let go; true when it was the last.
    pub fn release(&self) -> bool {
        self.holders.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// Bodies below this size are copied out of the connection's read buffer
/// when a message is kept (see [`Message::detach`]); larger ones stay
/// slices of it, which they mostly fill.
pub const DETACH_BODY_BELOW: usize = 16 * 1024;

impl Message {
    /// Move the message's small parts (routing keys, properties, a body
    /// under [`DETACH_BODY_BELOW`]) out of the buffer they were read into,
    /// into one allocation of their own. Read as slices, they would keep
    /// the whole 64 KiB read buffer alive for as long as the message waits
    /// in a queue: one small message left behind would pin 64 KiB.
    pub fn detach(&mut self) {
        let body = self.body.len() < DETACH_BODY_BELOW;
        let properties_len = self.properties.raw().len();
        let total = self.routing_key.len()
            + self.extra_keys.iter().map(Bytes::len).sum::<usize>()
            + properties_len
            + if body { self.body.len() } else { 0 };
        let mut buf = BytesMut::with_capacity(total);
        buf.extend_from_slice(&self.routing_key);
        for key in self.extra_keys.iter() {
            buf.extend_from_slice(key);
        }
        buf.extend_from_slice(self.properties.raw());
        if body {
            buf.extend_from_slice(&self.body);
        }
        let mut own = buf.freeze();
        self.routing_key = own.split_to(self.routing_key.len());
        for key in self.extra_keys.iter_mut() {
            *key = own.split_to(key.len());
        }
        self.properties.rebase(own.split_to(properties_len));
        if body {
            self.body = own;
        }
    }

    pub fn new(
        exchange: Arc<str>,
        routing_key: Bytes,
        properties: Properties,
        body: Bytes,
    ) -> Self {
        let expiration = properties
            .expiration()
            .and_then(|e| parse_expiration(e).ok());
        Message {
            exchange,
            routing_key,
            extra_keys: Box::default(),
            properties,
            body,
            expiration,
            shared: None,
        }
    }

    /// The same message under other properties (a broker rewrite of its
    /// headers), routed with the same keys.
    pub fn with_properties(&self, properties: Properties) -> Message {
        let mut copy = Message::new(
            self.exchange.clone(),
            self.routing_key.clone(),
            properties,
            self.body.clone(),
        );
        copy.extra_keys = self.extra_keys.clone();
        copy
    }

    /// Delivery mode 2.
    pub fn is_persistent(&self) -> bool {
        self.properties.is_persistent()
    }

    /// Bytes the message occupies: what `x-max-length-bytes` counts (the body)
    /// is `body.len()`; this adds the rest for memory accounting.
    pub fn size(&self) -> usize {
        self.body.len() + self.properties.len() + self.routing_key.len() + self.exchange.len()
    }
}

/// The headers that add routing keys, in RabbitMQ's order.
pub const ROUTING_HEADERS: [&str; 2] = ["CC", "BCC"];

/// The routing keys a headers table adds: the long strings in its `CC` and
/// `BCC` arrays (other elements are ignored, as by RabbitMQ). Either header
/// set to anything but an array is an error, worded as RabbitMQ's.
pub fn header_routes(headers: &FieldTable) -> Result<Vec<Bytes>, String> {
    let mut keys = Vec::new();
    for name in ROUTING_HEADERS {
        match headers.inner().get(name) {
            None => {}
            Some(AMQPValue::FieldArray(routes)) => {
                keys.extend(routes.as_slice().iter().filter_map(|v| match v {
                    AMQPValue::LongString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
                    _ => None,
                }));
            }
            Some(other) => {
                return Err(format!(
                    "{{unacceptable_type_in_header,\"{name}\",{}}}",
                    crate::protocol::table::type_name(other)
                ));
            }
        }
    }
    Ok(keys)
}

/// A message's place in one queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Position in the queue: increasing in publish order. Requeued messages
    /// go back to their position, not to the tail.
    pub seq: u64,
    pub message: Arc<Message>,
    /// Whether it was delivered before (and requeued since).
    pub redelivered: bool,
    /// When it expires (milliseconds since the epoch), from its TTL.
    pub expires_at: Option<u64>,
    /// Whether it is in the queue's durable tree (deleted from it when settled).
    pub on_disk: bool,
    /// Times it was returned to a quorum queue (`x-delivery-count`).
    pub delivery_count: u32,
}

/// Longest TTL or expiry RabbitMQ accepts: ten years in milliseconds.
const MAX_EXPIRY_MS: i128 = 315_360_000_000;

/// rabbit_misc:check_expiry: 0 ..= ten years, or the reason RabbitMQ gives.
pub fn check_expiry(n: i128) -> Result<u64, String> {
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    if n > MAX_EXPIRY_MS {
        return Err(format!("{{value_too_large,{n}}}"));
    }
    Ok(n as u64)
}

/// Parse an `expiration` property like Erlang's `string:to_integer`, as
/// RabbitMQ does: optional sign, digits, nothing after. The error is the
/// reason RabbitMQ prints.
pub fn parse_expiration(raw: &[u8]) -> Result<u64, String> {
    let (sign, from) = match raw.first() {
        Some(b'-') => (-1, 1),
        Some(b'+') => (1, 1),
        _ => (1, 0),
    };
    let digits = raw[from..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err("no_integer".into());
    }
    let end = from + digits;
    let magnitude = std::str::from_utf8(&raw[from..end])
        .ok()
        .and_then(|d| d.parse::<i128>().ok())
        .unwrap_or(i128::MAX);
    if end < raw.len() {
        return Err(format!(
            "{{leftover_string,\"{}\"}}",
            String::from_utf8_lossy(&raw[end..])
        ));
    }
    check_expiry(sign * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detaching_lets_go_of_the_read_buffer() {
        // A read buffer holding a routing key, a property list (delivery
        // mode 2) and a small body, as a connection reads them.
        let mut read = BytesMut::with_capacity(64 * 1024);
        read.extend_from_slice(b"orders.eu");
        read.extend_from_slice(&[0x10, 0x00, 2]);
        read.extend_from_slice(b"small body");
        read.resize(64 * 1024, 0);
        let read = read.freeze();
        let properties = Properties::parse(read.slice(9..12)).expect("properties");
        let mut message = Message::new(
            Arc::from("x"),
            read.slice(0..9),
            properties,
            read.slice(12..22),
        );
        message.extra_keys = vec![read.slice(0..6)].into_boxed_slice();
        assert!(!read.is_unique());
        message.detach();
        assert!(read.is_unique(), "the message still holds the read buffer");
        assert_eq!(&message.routing_key[..], b"orders.eu");
        assert_eq!(&message.extra_keys[0][..], b"orders");
        assert!(message.properties.is_persistent());
        assert_eq!(&message.body[..], b"small body");
    }

    #[test]
    fn a_large_body_stays_where_it_was_read() {
        let read = Bytes::from(vec![7u8; DETACH_BODY_BELOW + 1]);
        let mut message = Message::new(
            Arc::from("x"),
            Bytes::from_static(b"k"),
            Properties::default(),
            read.clone(),
        );
        message.detach();
        assert_eq!(message.body.as_ptr(), read.as_ptr());
    }

    #[test]
    fn expiration_parses_like_erlang() {
        assert_eq!(parse_expiration(b"1500"), Ok(1500));
        assert_eq!(parse_expiration(b"+7"), Ok(7));
        assert_eq!(parse_expiration(b"0"), Ok(0));
        assert_eq!(parse_expiration(b"abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration(b""), Err("no_integer".into()));
        assert_eq!(
            parse_expiration(b"1.5"),
            Err("{leftover_string,\".5\"}".into())
        );
        assert_eq!(parse_expiration(b"-5"), Err("{value_negative,-5}".into()));
        assert_eq!(
            parse_expiration(b"315360000001"),
            Err("{value_too_large,315360000001}".into())
        );
    }
}
