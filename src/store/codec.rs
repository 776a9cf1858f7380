//! On-disk encoding of messages.
//!
//! A queue tree entry is either the whole message (the usual case: a
//! persistent message in one durable queue) or a reference to a message
//! stored once in the shared tree (a persistent message routed to several
//! durable queues):
//!
//! ```text
//! inline:    0x01 | expires-at:u64 | exchange:shortstr | routing-key:shortstr | props-len:u32 | props | body
//! reference: 0x02 | expires-at:u64 | message-id:u64
//! shared:    0x01 | 0:u64 | exchange … body        (the same layout as inline)
//! routed:    0x03 | expires-at:u64 | exchange:shortstr | routing-key:shortstr
//!                 | key-count:u16 | (key-len:u32 | key)* | props-len:u32 | props | body
//! ```
//!
//! `routed` is an inline message with sender-selected routing keys (`CC`,
//! `BCC`), which dead-lettering still routes by after a restart.
//!
//! `expires-at` is the message's expiry in this queue, in milliseconds since
//! the epoch (0 for none), so a TTL runs from the original publish across
//! restarts.
//!
//! Properties are stored exactly as the publisher sent them, so a recovered
//! message is delivered byte-for-byte as published.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::message::Message;
use crate::protocol::Properties;

const INLINE: u8 = 1;
const REFERENCE: u8 = 2;
const ROUTED: u8 = 3;

/// A decoded queue-tree entry.
#[derive(Debug)]
pub enum Entry {
    Inline(Message),
    Reference(u64),
}

/// A decoded entry with its expiry.
#[derive(Debug)]
pub struct Decoded {
    pub entry: Entry,
    pub expires_at: Option<u64>,
}

/// What went wrong reading a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    #[error("stored properties are malformed")]
    Properties,
}

/// Encode a whole message.
pub fn encode_message(message: &Message, expires_at: Option<u64>) -> Vec<u8> {
    let exchange = message.exchange.as_bytes();
    let key = &message.routing_key[..];
    let props = message.properties.raw();
    let extra = &message.extra_keys[..extra_count(message)];
    let extra_len: usize = extra.iter().map(|k| 4 + k.len()).sum();
    let mut out = Vec::with_capacity(
        9 + 2 + exchange.len() + key.len() + 4 + props.len() + message.body.len() + extra_len,
    );
    out.put_u8(if extra.is_empty() { INLINE } else { ROUTED });
    out.put_u64(expires_at.unwrap_or(0));
    out.put_u8(exchange.len().min(255) as u8);
    out.put_slice(&exchange[..exchange.len().min(255)]);
    out.put_u8(key.len().min(255) as u8);
    out.put_slice(&key[..key.len().min(255)]);
    if !extra.is_empty() {
        out.put_u16(extra.len() as u16);
        for k in extra {
            out.put_u32(k.len() as u32);
            out.put_slice(k);
        }
    }
    out.put_u32(props.len() as u32);
    out.put_slice(props);
    out.put_slice(&message.body);
    out
}

/// How many extra routing keys are stored (a headers table cannot hold more
/// than a frame's worth, far below the u16 limit).
fn extra_count(message: &Message) -> usize {
    message.extra_keys.len().min(u16::MAX as usize)
}

/// Skip a `routed` entry's key list at `at`; returns where it ends.
fn skip_keys(raw: &[u8], at: usize) -> Result<usize, DecodeError> {
    let count = raw.get(at..at + 2).ok_or(DecodeError::Truncated)?;
    let count = u16::from_be_bytes([count[0], count[1]]) as usize;
    let mut at = at + 2;
    for _ in 0..count {
        let len = raw.get(at..at + 4).ok_or(DecodeError::Truncated)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at = at
            .checked_add(4 + len)
            .filter(|end| *end <= raw.len())
            .ok_or(DecodeError::Truncated)?;
    }
    Ok(at)
}

/// Encode a reference to a message in the shared tree.
pub fn encode_reference(id: u64, expires_at: Option<u64>) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[0] = REFERENCE;
    out[1..9].copy_from_slice(&expires_at.unwrap_or(0).to_be_bytes());
    out[9..].copy_from_slice(&id.to_be_bytes());
    out
}

/// Interns exchange names while decoding, so a million recovered messages
/// share one `Arc<str>` per exchange.
#[derive(Debug, Default)]
pub struct Names {
    names: HashMap<Vec<u8>, Arc<str>>,
}

impl Names {
    pub fn intern(&mut self, bytes: &[u8]) -> Arc<str> {
        if let Some(name) = self.names.get(bytes) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(String::from_utf8_lossy(bytes).as_ref());
        self.names.insert(bytes.to_vec(), name.clone());
        name
    }
}

/// Decode a stored entry. `raw` is kept alive by the returned message: the
/// routing key, properties and body are slices of it, not copies.
pub fn decode(raw: Bytes, names: &mut Names) -> Result<Decoded, DecodeError> {
    let tag = *raw.first().ok_or(DecodeError::Truncated)?;
    let expires = read_u64(&raw, 1)?;
    let expires_at = (expires != 0).then_some(expires);
    let entry = match tag {
        REFERENCE => Entry::Reference(read_u64(&raw, 9)?),
        INLINE | ROUTED => {
            let mut at = 9usize;
            let short = |at: &mut usize| -> Result<(usize, usize), DecodeError> {
                let len = *raw.get(*at).ok_or(DecodeError::Truncated)? as usize;
                let start = *at + 1;
                if raw.len() < start + len {
                    return Err(DecodeError::Truncated);
                }
                *at = start + len;
                Ok((start, start + len))
            };
            let (xs, xe) = short(&mut at)?;
            let (ks, ke) = short(&mut at)?;
            let mut extra_keys = Vec::new();
            if tag == ROUTED {
                let end = skip_keys(&raw, at)?;
                let mut k = at + 2;
                while k < end {
                    let len = u32::from_be_bytes([raw[k], raw[k + 1], raw[k + 2], raw[k + 3]]);
                    extra_keys.push(raw.slice(k + 4..k + 4 + len as usize));
                    k += 4 + len as usize;
                }
                at = end;
            }
            let len_bytes = raw.get(at..at + 4).ok_or(DecodeError::Truncated)?;
            let props_len =
                u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                    as usize;
            let ps = at + 4;
            let pe = ps.checked_add(props_len).ok_or(DecodeError::Truncated)?;
            if raw.len() < pe {
                return Err(DecodeError::Truncated);
            }
            let exchange = names.intern(&raw[xs..xe]);
            let properties =
                Properties::parse(raw.slice(ps..pe)).map_err(|_| DecodeError::Properties)?;
            let mut message =
                Message::new(exchange, raw.slice(ks..ke), properties, raw.slice(pe..));
            message.extra_keys = extra_keys.into_boxed_slice();
            Entry::Inline(message)
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    Ok(Decoded { entry, expires_at })
}

/// What recovery needs of an entry without decoding the message.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub expires_at: Option<u64>,
    /// Set for references to the shared tree.
    pub reference: Option<u64>,
    /// Body size of an inline message.
    pub body_size: usize,
    /// The priority property of an inline message.
    pub priority: Option<u8>,
}

/// Read an entry's header: cheap enough to run over a million entries.
pub fn peek(raw: &[u8]) -> Result<Header, DecodeError> {
    let tag = *raw.first().ok_or(DecodeError::Truncated)?;
    let expires = read_u64(raw, 1)?;
    let expires_at = (expires != 0).then_some(expires);
    match tag {
        REFERENCE => Ok(Header {
            expires_at,
            reference: Some(read_u64(raw, 9)?),
            body_size: 0,
            priority: None,
        }),
        INLINE | ROUTED => {
            let mut at = 9usize;
            for _ in 0..2 {
                let len = *raw.get(at).ok_or(DecodeError::Truncated)? as usize;
                at += 1 + len;
            }
            if tag == ROUTED {
                at = skip_keys(raw, at)?;
            }
            let len = raw.get(at..at + 4).ok_or(DecodeError::Truncated)?;
            let props = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let body_start = at + 4 + props;
            if body_start > raw.len() {
                return Err(DecodeError::Truncated);
            }
            let properties = Properties::parse(Bytes::copy_from_slice(&raw[at + 4..body_start]))
                .map_err(|_| DecodeError::Properties)?;
            Ok(Header {
                expires_at,
                reference: None,
                body_size: raw.len() - body_start,
                priority: properties.priority(),
            })
        }
        other => Err(DecodeError::UnknownTag(other)),
    }
}

fn read_u64(raw: &[u8], at: usize) -> Result<u64, DecodeError> {
    let bytes = raw.get(at..at + 8).ok_or(DecodeError::Truncated)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    Ok(u64::from_be_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let props = Properties::parse(Bytes::from_static(&[0x10, 0, 2])).unwrap();
        let message = Message::new(
            Arc::from("ex"),
            Bytes::from_static(b"rk"),
            props,
            Bytes::from_static(b"body"),
        );
        let raw = Bytes::from(encode_message(&message, Some(99)));
        let mut names = Names::default();
        let decoded = decode(raw, &mut names).unwrap();
        assert_eq!(decoded.expires_at, Some(99));
        match decoded.entry {
            Entry::Inline(m) => {
                assert_eq!(&*m.exchange, "ex");
                assert_eq!(&m.routing_key[..], b"rk");
                assert!(m.is_persistent());
                assert_eq!(&m.body[..], b"body");
            }
            other => panic!("{other:?}"),
        }
        let decoded = decode(
            Bytes::copy_from_slice(&encode_reference(77, None)),
            &mut names,
        )
        .unwrap();
        assert_eq!(decoded.expires_at, None);
        match decoded.entry {
            Entry::Reference(id) => assert_eq!(id, 77),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sender_selected_keys_round_trip() {
        let props = Properties::parse(Bytes::from_static(&[0x08, 0, 7])).unwrap();
        let mut message = Message::new(
            Arc::from("ex"),
            Bytes::from_static(b"rk"),
            props,
            Bytes::from_static(b"body"),
        );
        message.extra_keys = vec![Bytes::from_static(b"cc.1"), Bytes::from_static(b"")].into();
        let raw = encode_message(&message, None);
        let header = peek(&raw).unwrap();
        assert_eq!((header.body_size, header.priority), (4, Some(7)));
        let decoded = decode(Bytes::from(raw.clone()), &mut Names::default()).unwrap();
        let Entry::Inline(m) = decoded.entry else {
            panic!("not inline")
        };
        assert_eq!(&m.routing_key[..], b"rk");
        assert_eq!(&m.extra_keys[..], &[&b"cc.1"[..], &b""[..]]);
        assert_eq!(&m.body[..], b"body");
        // A record cut before its body is an error, not a panic.
        for cut in 0..raw.len() - 4 {
            let cut_raw = Bytes::copy_from_slice(&raw[..cut]);
            assert!(
                decode(cut_raw, &mut Names::default()).is_err(),
                "cut at {cut}"
            );
            assert!(peek(&raw[..cut]).is_err(), "peek cut at {cut}");
        }
    }

    #[test]
    fn corrupt_records_are_errors() {
        let mut names = Names::default();
        assert_eq!(
            decode(Bytes::new(), &mut names).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            decode(Bytes::from_static(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), &mut names).unwrap_err(),
            DecodeError::UnknownTag(9)
        );
        assert_eq!(
            decode(
                Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 5, b'a']),
                &mut names
            )
            .unwrap_err(),
            DecodeError::Truncated
        );
    }
}
