//! AMQP messages as stream records.
//!
//! ```text
//! record: version:u8 = 1 | exchange:shortstr | routing-key:shortstr
//!         | props-len:u32 | props | body
//! ```
//!
//! Properties are kept exactly as the publisher sent them (as the store
//! keeps them), so a consumer gets the message byte for byte; the delivery
//! adds `x-stream-offset` on the way out, not here. The leading version
//! byte leaves room for more fields (the publisher's sender-selected keys
//! are not kept: a stream never routes a message again).

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use super::chunk::Batch;
use super::error::StreamError;
use crate::message::Message;
use crate::protocol::Properties;

const VERSION: u8 = 1;

/// What is wrong with a stored message record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message record ends early")]
    Truncated,
    #[error("unknown message record version {0}")]
    Version(u8),
    #[error("stored properties are malformed")]
    Properties,
}

/// Append `message` to `batch`, encoded in place. `filter_value` is the
/// message's `x-stream-filter-value`, if it has one.
pub fn push(
    batch: &mut Batch,
    message: &Message,
    filter_value: Option<&[u8]>,
) -> Result<(), StreamError> {
    batch.push_with(filter_value, |out| encode_into(message, out))
}

/// Encode `message` at the end of `out`.
pub fn encode_into(message: &Message, out: &mut Vec<u8>) {
    let exchange = message.exchange.as_bytes();
    let exchange = &exchange[..exchange.len().min(255)];
    let key = &message.routing_key[..message.routing_key.len().min(255)];
    let props = message.properties.raw();
    out.reserve(1 + 2 + exchange.len() + key.len() + 4 + props.len() + message.body.len());
    out.put_u8(VERSION);
    out.put_u8(exchange.len() as u8);
    out.put_slice(exchange);
    out.put_u8(key.len() as u8);
    out.put_slice(key);
    out.put_u32(props.len() as u32);
    out.put_slice(props);
    out.put_slice(&message.body);
}

/// Decodes records into messages whose routing key, properties and body
/// are slices of the record (no copy), reusing the exchange name of the
/// previous message when it is the same (a stream is usually fed by one
/// or a few exchanges).
#[derive(Debug, Default)]
pub struct Decoder {
    exchange: Option<Arc<str>>,
}

impl Decoder {
    pub fn decode(&mut self, record: Bytes) -> Result<Message, DecodeError> {
        let version = *record.first().ok_or(DecodeError::Truncated)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let mut at = 1usize;
        let short = |at: &mut usize| -> Result<(usize, usize), DecodeError> {
            let len = *record.get(*at).ok_or(DecodeError::Truncated)? as usize;
            let start = *at + 1;
            if record.len() < start + len {
                return Err(DecodeError::Truncated);
            }
            *at = start + len;
            Ok((start, start + len))
        };
        let (xs, xe) = short(&mut at)?;
        let (ks, ke) = short(&mut at)?;
        let len = record.get(at..at + 4).ok_or(DecodeError::Truncated)?;
        let props_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let ps = at + 4;
        let pe = ps
            .checked_add(props_len)
            .filter(|pe| *pe <= record.len())
            .ok_or(DecodeError::Truncated)?;
        let properties =
            Properties::parse(record.slice(ps..pe)).map_err(|_| DecodeError::Properties)?;
        let exchange = self.exchange(&record[xs..xe]);
        Ok(Message::new(
            exchange,
            record.slice(ks..ke),
            properties,
            record.slice(pe..),
        ))
    }

    fn exchange(&mut self, name: &[u8]) -> Arc<str> {
        match &self.exchange {
            Some(known) if known.as_bytes() == name => known.clone(),
            _ => {
                let name: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
                self.exchange = Some(name.clone());
                name
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &'static [u8]) -> Message {
        let props = Properties::parse(Bytes::from_static(&[0x10, 0, 2])).unwrap();
        Message::new(
            Arc::from("amq.direct"),
            Bytes::from_static(b"rk"),
            props,
            Bytes::from_static(body),
        )
    }

    #[test]
    fn messages_round_trip_through_a_record() {
        let mut out = Vec::new();
        encode_into(&message(b"hello"), &mut out);
        let mut decoder = Decoder::default();
        let m = decoder.decode(Bytes::from(out.clone())).unwrap();
        assert_eq!(&*m.exchange, "amq.direct");
        assert_eq!(&m.routing_key[..], b"rk");
        assert!(m.is_persistent());
        assert_eq!(&m.body[..], b"hello");
        let again = decoder.decode(Bytes::from(out)).unwrap();
        assert!(Arc::ptr_eq(&m.exchange, &again.exchange));
    }

    #[test]
    fn cut_or_foreign_records_are_errors() {
        let mut out = Vec::new();
        encode_into(&message(b""), &mut out);
        let mut decoder = Decoder::default();
        for cut in 0..out.len() {
            assert!(
                decoder.decode(Bytes::copy_from_slice(&out[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decoder.decode(Bytes::from_static(&[9, 0, 0])).unwrap_err(),
            DecodeError::Version(9)
        );
    }
}
