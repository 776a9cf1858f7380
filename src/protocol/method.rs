//! Method frames: decoding what clients send and encoding the hot-path
//! methods the broker sends.
//!
//! amq-protocol decodes and encodes every method, except the handful that
//! run once per message (publish, ack, nack, reject, deliver, get-ok, return,
//! and the confirm acks): those are read and written here directly, because
//! the generated code allocates strings for flag names on every call.
//! `basic.qos` is read here too, since the generated struct drops
//! `prefetch-size`, which the broker must refuse when it is not zero.

use amq_protocol::protocol::{AMQPClass, parse_class};
use bytes::{BufMut, Bytes, BytesMut};

use super::error::AmqpError;
use super::frame::erlang_binary;
use super::reply::ReplyCode;
use super::table::check_method_tables;

pub const CLASS_CONNECTION: u16 = 10;
pub const CLASS_CHANNEL: u16 = 20;
pub const CLASS_ACCESS: u16 = 30;
pub const CLASS_EXCHANGE: u16 = 40;
pub const CLASS_QUEUE: u16 = 50;
pub const CLASS_BASIC: u16 = 60;
pub const CLASS_CONFIRM: u16 = 85;
pub const CLASS_TX: u16 = 90;

/// A decoded client method.
#[derive(Debug, Clone)]
pub enum Method {
    Publish(Publish),
    Ack {
        delivery_tag: u64,
        multiple: bool,
    },
    Nack {
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    },
    Reject {
        delivery_tag: u64,
        requeue: bool,
    },
    Qos {
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    },
    /// Everything else, as amq-protocol decodes it.
    Other(AMQPClass),
}

impl Method {
    /// Its class and method ids (what a close frame names as the failing method).
    pub fn ids(&self) -> (u16, u16) {
        match self {
            Method::Publish(_) => (60, 40),
            Method::Ack { .. } => (60, 80),
            Method::Nack { .. } => (60, 120),
            Method::Reject { .. } => (60, 90),
            Method::Qos { .. } => (60, 10),
            Method::Other(class) => (class.get_amqp_class_id(), class.get_amqp_method_id()),
        }
    }
}

/// `basic.publish`, with the names left as slices of the frame.
#[derive(Debug, Clone)]
pub struct Publish {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub mandatory: bool,
    pub immediate: bool,
}

/// The class and method ids of a method frame payload, if it is long enough.
pub fn method_ids(payload: &[u8]) -> Option<(u16, u16)> {
    if payload.len() < 4 {
        return None;
    }
    Some((
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    ))
}

/// Whether a method carries content (header and body frames follow it).
pub fn has_content(class_id: u16, method_id: u16) -> bool {
    class_id == CLASS_BASIC && matches!(method_id, 40 | 50 | 60 | 71)
}

/// Every method the 0-9-1 grammar defines, in either direction.
fn is_known(class_id: u16, method_id: u16) -> bool {
    match class_id {
        CLASS_CONNECTION => matches!(
            method_id,
            10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71
        ),
        CLASS_CHANNEL => matches!(method_id, 10 | 11 | 20 | 21 | 40 | 41),
        CLASS_ACCESS => matches!(method_id, 10 | 11),
        CLASS_EXCHANGE => matches!(method_id, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51),
        CLASS_QUEUE => matches!(method_id, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51),
        CLASS_BASIC => matches!(
            method_id,
            10 | 11
                | 20
                | 21
                | 30
                | 31
                | 40
                | 50
                | 60
                | 70
                | 71
                | 72
                | 80
                | 90
                | 100
                | 110
                | 111
                | 120
        ),
        CLASS_CONFIRM | CLASS_TX => {
            matches!(method_id, 10 | 11)
                || (class_id == CLASS_TX && matches!(method_id, 20 | 21 | 30 | 31))
        }
        _ => false,
    }
}

/// Decode a method frame payload. Errors are connection-level, as RabbitMQ
/// treats an undecodable method.
pub fn decode(payload: &Bytes) -> Result<Method, AmqpError> {
    let Some((class_id, method_id)) = method_ids(payload) else {
        return Err(AmqpError::new(
            ReplyCode::FrameError,
            format!(
                "type 1, {}: unknown_frame",
                super::frame::payload_snippet(payload)
            ),
        )
        .on_connection());
    };
    if !is_known(class_id, method_id) {
        return Err(AmqpError::new(
            ReplyCode::NotImplemented,
            format!("unknown method class {class_id} method {method_id}"),
        )
        .in_method(class_id, method_id)
        .on_connection());
    }
    let args = payload.slice(4..);
    let cannot_decode = || {
        AmqpError::new(
            ReplyCode::FrameError,
            format!("cannot decode {}", erlang_binary(&args)),
        )
        .in_method(class_id, method_id)
        .on_connection()
    };
    let mut r = Reader::new(&args);
    let method = match (class_id, method_id) {
        (CLASS_BASIC, 40) => {
            r.u16();
            let exchange = r.short_bytes(&args);
            let routing_key = r.short_bytes(&args);
            let bits = r.u8();
            match (exchange, routing_key, bits) {
                (Some(exchange), Some(routing_key), Some(bits)) => Method::Publish(Publish {
                    exchange,
                    routing_key,
                    mandatory: bits & 1 != 0,
                    immediate: bits & 2 != 0,
                }),
                _ => return Err(cannot_decode()),
            }
        }
        (CLASS_BASIC, 80) => match (r.u64(), r.u8()) {
            (Some(delivery_tag), Some(bits)) => Method::Ack {
                delivery_tag,
                multiple: bits & 1 != 0,
            },
            _ => return Err(cannot_decode()),
        },
        (CLASS_BASIC, 120) => match (r.u64(), r.u8()) {
            (Some(delivery_tag), Some(bits)) => Method::Nack {
                delivery_tag,
                multiple: bits & 1 != 0,
                requeue: bits & 2 != 0,
            },
            _ => return Err(cannot_decode()),
        },
        (CLASS_BASIC, 90) => match (r.u64(), r.u8()) {
            (Some(delivery_tag), Some(bits)) => Method::Reject {
                delivery_tag,
                requeue: bits & 1 != 0,
            },
            _ => return Err(cannot_decode()),
        },
        (CLASS_BASIC, 10) => match (r.u32(), r.u16(), r.u8()) {
            (Some(prefetch_size), Some(prefetch_count), Some(bits)) => Method::Qos {
                prefetch_size,
                prefetch_count,
                global: bits & 1 != 0,
            },
            _ => return Err(cannot_decode()),
        },
        _ => {
            check_method_tables(class_id, method_id, &args).map_err(|_| cannot_decode())?;
            return match parse_class(&payload[..]) {
                Ok(([], class)) => Ok(Method::Other(class)),
                _ => Err(cannot_decode()),
            };
        }
    };
    if !r.at_end() {
        return Err(cannot_decode());
    }
    Ok(method)
}

/// A bounds-checked cursor over method arguments.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            at: 0,
            failed: false,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.buf.get(self.at..self.at + n);
        match slice {
            Some(s) => {
                self.at += n;
                Some(s)
            }
            None => {
                self.failed = true;
                None
            }
        }
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    }

    /// A short string as a zero-copy slice of `whole` (the buffer being read).
    fn short_bytes(&mut self, whole: &Bytes) -> Option<Bytes> {
        let len = self.u8()? as usize;
        let start = self.at;
        self.take(len)?;
        Some(whole.slice(start..start + len))
    }

    fn at_end(&self) -> bool {
        !self.failed && self.at == self.buf.len()
    }
}

fn put_short_str(buf: &mut BytesMut, s: &[u8]) {
    // Short strings are at most 255 bytes; the broker never builds longer ones
    // (names are checked on the way in), but cut rather than corrupt a frame.
    let s = &s[..s.len().min(255)];
    buf.put_u8(s.len() as u8);
    buf.put_slice(s);
}

/// Arguments of `basic.deliver`.
pub fn put_deliver_args(
    buf: &mut BytesMut,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    buf.reserve(4 + consumer_tag.len() + exchange.len() + routing_key.len() + 12);
    put_short_str(buf, consumer_tag);
    buf.put_u64(delivery_tag);
    buf.put_u8(redelivered as u8);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
}

/// Arguments of `basic.get-ok`.
pub fn put_get_ok_args(
    buf: &mut BytesMut,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
    message_count: u32,
) {
    buf.put_u64(delivery_tag);
    buf.put_u8(redelivered as u8);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    buf.put_u32(message_count);
}

/// Arguments of `basic.return`.
pub fn put_return_args(
    buf: &mut BytesMut,
    code: ReplyCode,
    text: &str,
    exchange: &[u8],
    routing_key: &[u8],
) {
    buf.put_u16(code.code());
    put_short_str(buf, text.as_bytes());
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
}

/// Arguments of a confirm `basic.ack` / `basic.nack` sent to a publisher.
pub fn put_confirm_args(buf: &mut BytesMut, delivery_tag: u64, multiple: bool) {
    buf.put_u64(delivery_tag);
    buf.put_u8(multiple as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::queue;

    fn payload(class: u16, method: u16, args: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u16(class);
        b.put_u16(method);
        b.put_slice(args);
        b.freeze()
    }

    #[test]
    fn publish_names_are_slices() {
        let p = payload(60, 40, &[0, 0, 2, b'e', b'x', 3, b'k', b'e', b'y', 1]);
        match decode(&p).unwrap() {
            Method::Publish(p) => {
                assert_eq!(&p.exchange[..], b"ex");
                assert_eq!(&p.routing_key[..], b"key");
                assert!(p.mandatory);
                assert!(!p.immediate);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_trailing_arguments_cannot_be_decoded() {
        let err = decode(&payload(50, 10, &[0])).unwrap_err();
        assert_eq!(err.code, ReplyCode::FrameError);
        assert_eq!(err.explanation, "cannot decode <<0>>");
        assert_eq!((err.class_id, err.method_id), (50, 10));
        let err = decode(&payload(60, 10, &[0, 0, 0, 0, 0, 10, 0, b'x'])).unwrap_err();
        assert_eq!(err.explanation, "cannot decode <<0,0,0,0,0,10,0,120>>");
    }

    #[test]
    fn other_methods_go_through_amq_protocol() {
        let mut args = vec![0, 0, 1, b'q', 0b0000_0010];
        args.extend_from_slice(&[0, 0, 0, 0]);
        match decode(&payload(50, 10, &args)).unwrap() {
            Method::Other(AMQPClass::Queue(queue::AMQPMethod::Declare(d))) => {
                assert_eq!(d.queue.as_str(), "q");
                assert!(d.durable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_methods_close_the_connection() {
        let err = decode(&payload(99, 10, &[])).unwrap_err();
        assert_eq!(err.code, ReplyCode::NotImplemented);
        assert!(err.closes_connection());
    }

    #[test]
    fn qos_keeps_prefetch_size() {
        match decode(&payload(60, 10, &[0, 0, 0, 10, 0, 5, 1])).unwrap() {
            Method::Qos {
                prefetch_size,
                prefetch_count,
                global,
            } => {
                assert_eq!((prefetch_size, prefetch_count, global), (10, 5, true));
            }
            other => panic!("{other:?}"),
        }
    }
}
