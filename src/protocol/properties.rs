//! Content properties kept as they arrived on the wire.
//!
//! The broker needs only a few properties of a message (delivery mode,
//! priority, expiration, and sometimes the headers), so [`Properties`] keeps
//! the raw bytes for forwarding unchanged and records, in one scan, where the
//! interesting fields are. A full decode through amq-protocol happens only
//! when the broker must rewrite the properties (dead-lettering, reply-to).

use amq_protocol::protocol::BasicProperties;
use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::types::{FieldTable, ShortString};
use bytes::Bytes;

use super::table::{check_table_keys, decode_table};

// Property flag bits, most significant first, in wire order.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;

/// Why a property list could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    #[error("content properties end early")]
    Truncated,
    #[error("content properties use a continuation flag word")]
    Continuation,
    #[error("content properties carry a malformed headers table")]
    BadHeaders,
    #[error("content properties have bytes after the last field")]
    TrailingBytes,
}

type Span = (u32, u32);

/// The raw property list of a message with the offsets of the fields the broker reads.
#[derive(Clone, Debug, Default)]
pub struct Properties {
    raw: Bytes,
    delivery_mode: u8,
    priority: Option<u8>,
    headers: Option<Span>,
    expiration: Option<Span>,
    reply_to: Option<Span>,
    user_id: Option<Span>,
    /// The headers hold `CC` or `BCC`: sender-selected routing keys.
    routing_headers: bool,
}

impl Properties {
    /// Scan a property list (flags word first). The headers table, if any, is
    /// checked structurally so that decoding it later cannot fail or recurse
    /// without bound.
    pub fn parse(raw: Bytes) -> Result<Properties, PropertiesError> {
        let mut props = Properties {
            raw,
            ..Properties::default()
        };
        let buf = &props.raw[..];
        if buf.len() < 2 {
            return Err(PropertiesError::Truncated);
        }
        let flags = u16::from_be_bytes([buf[0], buf[1]]);
        if flags & 1 != 0 {
            return Err(PropertiesError::Continuation);
        }
        let mut at = 2usize;
        let short_str = |at: &mut usize| -> Result<Span, PropertiesError> {
            let len = *buf.get(*at).ok_or(PropertiesError::Truncated)? as usize;
            let start = *at + 1;
            if buf.len() < start + len {
                return Err(PropertiesError::Truncated);
            }
            *at = start + len;
            Ok((start as u32, (start + len) as u32))
        };
        let octet = |at: &mut usize| -> Result<u8, PropertiesError> {
            let v = *buf.get(*at).ok_or(PropertiesError::Truncated)?;
            *at += 1;
            Ok(v)
        };
        if flags & CONTENT_TYPE != 0 {
            short_str(&mut at)?;
        }
        if flags & CONTENT_ENCODING != 0 {
            short_str(&mut at)?;
        }
        if flags & HEADERS != 0 {
            let mut routing_headers = false;
            let used = check_table_keys(&buf[at..], &mut |key| {
                routing_headers |= key == b"CC" || key == b"BCC";
            })
            .map_err(|_| PropertiesError::BadHeaders)?;
            props.routing_headers = routing_headers;
            props.headers = Some((at as u32, (at + used) as u32));
            at += used;
        }
        if flags & DELIVERY_MODE != 0 {
            props.delivery_mode = octet(&mut at)?;
        }
        if flags & PRIORITY != 0 {
            props.priority = Some(octet(&mut at)?);
        }
        if flags & CORRELATION_ID != 0 {
            short_str(&mut at)?;
        }
        if flags & REPLY_TO != 0 {
            props.reply_to = Some(short_str(&mut at)?);
        }
        if flags & EXPIRATION != 0 {
            props.expiration = Some(short_str(&mut at)?);
        }
        if flags & MESSAGE_ID != 0 {
            short_str(&mut at)?;
        }
        if flags & TIMESTAMP != 0 {
            if buf.len() < at + 8 {
                return Err(PropertiesError::Truncated);
            }
            at += 8;
        }
        for flag in [TYPE, USER_ID, APP_ID, CLUSTER_ID] {
            if flags & flag != 0 {
                let span = short_str(&mut at)?;
                if flag == USER_ID {
                    props.user_id = Some(span);
                }
            }
        }
        if at != buf.len() {
            return Err(PropertiesError::TrailingBytes);
        }
        Ok(props)
    }

    /// Encode decoded properties (after the broker changed them).
    pub fn from_basic(props: &BasicProperties) -> Properties {
        let raw = Bytes::from(super::frame::cookie_gen(gen_properties(props)));
        // Our own encoding is well-formed by construction.
        Properties::parse(raw.clone()).unwrap_or(Properties {
            raw,
            ..Properties::default()
        })
    }

    /// The bytes as they go on the wire.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// 2 means persistent.
    pub fn delivery_mode(&self) -> u8 {
        self.delivery_mode
    }

    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == 2
    }

    pub fn priority(&self) -> Option<u8> {
        self.priority
    }

    fn span(&self, span: Option<Span>) -> Option<&[u8]> {
        span.map(|(s, e)| &self.raw[s as usize..e as usize])
    }

    pub fn expiration(&self) -> Option<&[u8]> {
        self.span(self.expiration)
    }

    pub fn reply_to(&self) -> Option<&[u8]> {
        self.span(self.reply_to)
    }

    pub fn user_id(&self) -> Option<&[u8]> {
        self.span(self.user_id)
    }

    /// Whether the headers name extra routing keys (`CC`, `BCC`).
    pub fn has_routing_headers(&self) -> bool {
        self.routing_headers
    }

    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// The headers table, decoded.
    pub fn headers(&self) -> Option<FieldTable> {
        self.span(self.headers).and_then(decode_table)
    }

    /// Every property, decoded (for the broker's own rewrites).
    pub fn decode(&self) -> BasicProperties {
        // The scan in `parse` validated every field, so this decode succeeds.
        parse_properties(&self.raw[..])
            .map(|(_, props)| props)
            .unwrap_or_default()
    }

    /// Size in bytes, for memory accounting.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Every basic property as a plain field, for the broker's own rewrites
/// (dead-lettering, direct reply-to, delivery counts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub content_type: Option<ShortString>,
    pub content_encoding: Option<ShortString>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<ShortString>,
    pub reply_to: Option<ShortString>,
    pub expiration: Option<ShortString>,
    pub message_id: Option<ShortString>,
    pub timestamp: Option<u64>,
    pub kind: Option<ShortString>,
    pub user_id: Option<ShortString>,
    pub app_id: Option<ShortString>,
    pub cluster_id: Option<ShortString>,
}

impl Fields {
    pub fn from_basic(p: &BasicProperties) -> Fields {
        Fields {
            content_type: p.content_type().clone(),
            content_encoding: p.content_encoding().clone(),
            headers: p.headers().clone(),
            delivery_mode: *p.delivery_mode(),
            priority: *p.priority(),
            correlation_id: p.correlation_id().clone(),
            reply_to: p.reply_to().clone(),
            expiration: p.expiration().clone(),
            message_id: p.message_id().clone(),
            timestamp: *p.timestamp(),
            kind: p.kind().clone(),
            user_id: p.user_id().clone(),
            app_id: p.app_id().clone(),
            cluster_id: p.cluster_id().clone(),
        }
    }

    pub fn to_basic(&self) -> BasicProperties {
        let mut p = BasicProperties::default();
        macro_rules! set {
            ($field:ident, $with:ident) => {
                if let Some(v) = self.$field.clone() {
                    p = p.$with(v);
                }
            };
        }
        set!(content_type, with_content_type);
        set!(content_encoding, with_content_encoding);
        set!(headers, with_headers);
        set!(delivery_mode, with_delivery_mode);
        set!(priority, with_priority);
        set!(correlation_id, with_correlation_id);
        set!(reply_to, with_reply_to);
        set!(expiration, with_expiration);
        set!(message_id, with_message_id);
        set!(timestamp, with_timestamp);
        set!(kind, with_type);
        set!(user_id, with_user_id);
        set!(app_id, with_app_id);
        set!(cluster_id, with_cluster_id);
        p
    }
}

impl Properties {
    /// Every property as an editable value.
    pub fn fields(&self) -> Fields {
        Fields::from_basic(&self.decode())
    }

    /// Encode edited properties.
    pub fn from_fields(fields: &Fields) -> Properties {
        Properties::from_basic(&fields.to_basic())
    }

    /// These properties with header `name` set to `value`.
    pub fn with_header(&self, name: &str, value: amq_protocol::types::AMQPValue) -> Properties {
        let mut fields = self.fields();
        fields
            .headers
            .get_or_insert_with(FieldTable::default)
            .insert(ShortString::from(name), value);
        Properties::from_fields(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, LongString, ShortString};

    #[test]
    fn empty_properties() {
        let p = Properties::parse(Bytes::from_static(&[0, 0])).unwrap();
        assert_eq!(p.delivery_mode(), 0);
        assert!(p.expiration().is_none());
        assert!(p.headers().is_none());
    }

    #[test]
    fn round_trips_through_amq_protocol() {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("k"),
            AMQPValue::LongString(LongString::from("v")),
        );
        let basic = BasicProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_headers(headers.clone())
            .with_delivery_mode(2)
            .with_priority(7)
            .with_reply_to(ShortString::from("replies"))
            .with_expiration(ShortString::from("1500"))
            .with_timestamp(12345)
            .with_user_id(ShortString::from("guest"));
        let p = Properties::from_basic(&basic);
        assert!(p.is_persistent());
        assert_eq!(p.priority(), Some(7));
        assert_eq!(p.expiration(), Some(&b"1500"[..]));
        assert_eq!(p.reply_to(), Some(&b"replies"[..]));
        assert_eq!(p.user_id(), Some(&b"guest"[..]));
        assert_eq!(p.headers(), Some(headers.clone()));
        assert_eq!(p.decode(), basic);
        let mut fields = p.fields();
        fields.expiration = None;
        let edited = Properties::from_fields(&fields);
        assert!(edited.expiration().is_none());
        assert_eq!(edited.priority(), Some(7));
        assert_eq!(edited.headers(), Some(headers));
    }

    #[test]
    fn refuses_malformed_lists() {
        assert_eq!(
            Properties::parse(Bytes::from_static(&[0x80, 0, 5, b'a'])).unwrap_err(),
            PropertiesError::Truncated
        );
        assert_eq!(
            Properties::parse(Bytes::from_static(&[0, 1])).unwrap_err(),
            PropertiesError::Continuation
        );
        assert_eq!(
            Properties::parse(Bytes::from_static(&[0x20, 0, 0, 0, 0, 3, 1, b'a', b'z']))
                .unwrap_err(),
            PropertiesError::BadHeaders
        );
        assert_eq!(
            Properties::parse(Bytes::from_static(&[0, 0, 9])).unwrap_err(),
            PropertiesError::TrailingBytes
        );
    }
}
