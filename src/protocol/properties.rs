//! Content properties kept as they arrived on the wire.
//!
//! The broker needs only a few properties of a message (delivery mode,
//! priority, expiration, and sometimes the headers), so [`Properties`] keeps
//! the raw bytes for forwarding unchanged and records, in one scan, where the
//! interesting fields are. When the broker must rewrite them (dead-lettering,
//! direct reply-to, delivery counts), [`Rewrite`] edits the fields it
//! changes and keeps the others' bytes: short strings and header keys need
//! not be UTF-8 (AMQP calls them octets), which amq-protocol's decoder
//! cannot hold.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::types::{FieldTable, ShortString};
use bytes::Bytes;

use amq_protocol::types::AMQPValue;
use amq_protocol::types::generation::gen_value;
use amq_protocol::types::parsing::parse_value;

use super::table::{check_table_keys, decode_table, value_len};

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
        let mut routing_headers = false;
        walk(
            buf,
            |key| routing_headers |= key == b"CC" || key == b"BCC",
            |field, at, end| {
                // Short strings are recorded without their length octet.
                let short = Some((at as u32 + 1, end as u32));
                match field {
                    Field::Headers => props.headers = Some((at as u32, end as u32)),
                    Field::DeliveryMode => props.delivery_mode = buf[at],
                    Field::Priority => props.priority = Some(buf[at]),
                    Field::ReplyTo => props.reply_to = short,
                    Field::Expiration => props.expiration = short,
                    Field::UserId => props.user_id = short,
                    _ => {}
                }
            },
        )?;
        props.routing_headers = routing_headers;
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

    /// Hold the same encoded list in another buffer (`raw` must equal
    /// [`Properties::raw`]: the parsed offsets stay as they are).
    pub fn rebase(&mut self, raw: Bytes) {
        debug_assert_eq!(raw, self.raw);
        if raw == self.raw {
            self.raw = raw;
        }
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

    /// The headers table, decoded. Entries whose key or value amq-protocol
    /// cannot hold (a key or short string that is not UTF-8) are left out.
    pub fn headers(&self) -> Option<FieldTable> {
        let (start, end) = self.headers?;
        let raw = self.raw.slice(start as usize..end as usize);
        decode_table(&raw).or_else(|| Some(RawTable::parse(&raw).decoded()))
    }

    /// Every property, decoded through amq-protocol. Lossy: a property list
    /// with a short string or header key that is not UTF-8 decodes to the
    /// defaults; rewrite with [`Properties::rewrite`] instead.
    pub fn decode(&self) -> BasicProperties {
        parse_properties(&self.raw[..])
            .map(|(_, props)| props)
            .unwrap_or_default()
    }

    /// The properties as editable raw fields.
    pub fn rewrite(&self) -> Rewrite {
        let buf = &self.raw;
        let mut rewrite = Rewrite::default();
        // `parse` checked the list, so the walk goes through.
        let _ = walk(
            buf,
            |_| {},
            |field, at, end| match field {
                Field::Headers => rewrite.headers = Some(RawTable::parse(&buf.slice(at..end))),
                _ => rewrite.values[field as usize] = Some(buf.slice(at..end)),
            },
        );
        rewrite
    }

    /// Size in bytes, for memory accounting.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Every basic property as a plain field: properties the broker makes
/// from scratch (rewrites of received ones go through [`Rewrite`]).
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
    /// Encode edited properties.
    pub fn from_fields(fields: &Fields) -> Properties {
        Properties::from_basic(&fields.to_basic())
    }

    /// These properties with header `name` set to `value`.
    pub fn with_header(&self, name: &str, value: amq_protocol::types::AMQPValue) -> Properties {
        let mut rewrite = self.rewrite();
        rewrite.headers().set(name, &value);
        rewrite.finish()
    }
}

/// The basic properties, in wire (flag) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ContentType,
    ContentEncoding,
    Headers,
    DeliveryMode,
    Priority,
    CorrelationId,
    ReplyTo,
    Expiration,
    MessageId,
    Timestamp,
    Type,
    UserId,
    AppId,
    ClusterId,
}

impl Field {
    const ALL: [Field; 14] = [
        Field::ContentType,
        Field::ContentEncoding,
        Field::Headers,
        Field::DeliveryMode,
        Field::Priority,
        Field::CorrelationId,
        Field::ReplyTo,
        Field::Expiration,
        Field::MessageId,
        Field::Timestamp,
        Field::Type,
        Field::UserId,
        Field::AppId,
        Field::ClusterId,
    ];

    /// Its bit in the flags word (the first property is the highest bit).
    fn flag(self) -> u16 {
        1 << (15 - self as u16)
    }
}

/// Walk a property list: call `visit` with each field present and the
/// span of its encoded value, and `on_key` with each top-level key of the
/// headers, which are checked structurally on the way.
fn walk(
    buf: &[u8],
    mut on_key: impl FnMut(&[u8]),
    mut visit: impl FnMut(Field, usize, usize),
) -> Result<(), PropertiesError> {
    if buf.len() < 2 {
        return Err(PropertiesError::Truncated);
    }
    let flags = u16::from_be_bytes([buf[0], buf[1]]);
    if flags & 1 != 0 {
        return Err(PropertiesError::Continuation);
    }
    let mut at = 2usize;
    for field in Field::ALL {
        if flags & field.flag() == 0 {
            continue;
        }
        let end = match field {
            Field::Headers => {
                let used = check_table_keys(&buf[at..], &mut on_key)
                    .map_err(|_| PropertiesError::BadHeaders)?;
                at + used
            }
            Field::DeliveryMode | Field::Priority => at + 1,
            Field::Timestamp => at + 8,
            _ => at + 1 + *buf.get(at).ok_or(PropertiesError::Truncated)? as usize,
        };
        if end > buf.len() {
            return Err(PropertiesError::Truncated);
        }
        visit(field, at, end);
        at = end;
    }
    if at != buf.len() {
        return Err(PropertiesError::TrailingBytes);
    }
    Ok(())
}

/// A property list the broker rewrites (dead-lettering, direct reply-to,
/// delivery counts). Every field is kept as the bytes it arrived as, so
/// what the broker does not change goes out unchanged: AMQP short strings
/// and table keys are octets, not necessarily UTF-8, and RabbitMQ passes
/// them on as they are.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// Each field's encoded value, in flag order (headers aside).
    values: [Option<Bytes>; 14],
    headers: Option<RawTable>,
}

impl Rewrite {
    /// A short-string field's content.
    pub fn short_string(&self, field: Field) -> Option<&[u8]> {
        self.values[field as usize].as_ref().map(|v| &v[1..])
    }

    /// Set a short-string field (cut to 255 bytes, the most it can hold).
    pub fn set_short_string(&mut self, field: Field, value: &[u8]) {
        let value = &value[..value.len().min(255)];
        let mut encoded = Vec::with_capacity(1 + value.len());
        encoded.push(value.len() as u8);
        encoded.extend_from_slice(value);
        self.values[field as usize] = Some(Bytes::from(encoded));
    }

    /// Drop a field.
    pub fn remove(&mut self, field: Field) {
        match field {
            Field::Headers => self.headers = None,
            _ => self.values[field as usize] = None,
        }
    }

    /// The headers, made empty if there were none.
    pub fn headers(&mut self) -> &mut RawTable {
        self.headers.get_or_insert_with(RawTable::default)
    }

    /// Encode the rewritten list.
    pub fn finish(&self) -> Properties {
        let mut flags = 0u16;
        let mut raw = vec![0, 0];
        for field in Field::ALL {
            if field == Field::Headers {
                if let Some(headers) = &self.headers {
                    flags |= field.flag();
                    headers.encode(&mut raw);
                }
            } else if let Some(value) = &self.values[field as usize] {
                flags |= field.flag();
                raw.extend_from_slice(value);
            }
        }
        raw[..2].copy_from_slice(&flags.to_be_bytes());
        let raw = Bytes::from(raw);
        // Every part was checked when it arrived or encoded here.
        Properties::parse(raw.clone()).unwrap_or(Properties {
            raw,
            ..Properties::default()
        })
    }
}

/// A field table as its top-level entries, each kept as raw bytes (the key,
/// and the value with its type tag): entries the broker does not touch go
/// out exactly as they came.
#[derive(Debug, Clone, Default)]
pub struct RawTable {
    entries: Vec<(Bytes, Bytes)>,
}

impl RawTable {
    /// Split a table (length prefix included) that was already checked.
    fn parse(table: &Bytes) -> RawTable {
        let mut entries = Vec::new();
        let mut at = 4;
        while at < table.len() {
            let key_end = at + 1 + table[at] as usize;
            let Some(used) = table.get(key_end..).and_then(value_len) else {
                break;
            };
            entries.push((
                table.slice(at + 1..key_end),
                table.slice(key_end..key_end + used),
            ));
            at = key_end + used;
        }
        RawTable { entries }
    }

    /// The value under `key`, decoded (None when absent, or when it holds
    /// a short string or table key that is not UTF-8).
    pub fn get(&self, key: &str) -> Option<AMQPValue> {
        let (_, value) = self
            .entries
            .iter()
            .find(|(k, _)| k[..] == *key.as_bytes())?;
        parse_value(&value[..]).ok().map(|(_, v)| v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k[..] == *key.as_bytes())
    }

    /// Set `key` to `value`, in place of any entry it had.
    pub fn set(&mut self, key: &str, value: &AMQPValue) {
        let encoded = Bytes::from(super::frame::cookie_gen(gen_value(value)));
        self.remove(key);
        self.entries
            .push((Bytes::copy_from_slice(key.as_bytes()), encoded));
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k[..] != *key.as_bytes());
    }

    /// The entries under `keys`, decoded.
    pub fn decoded_only(&self, keys: &[&str]) -> FieldTable {
        let mut table = FieldTable::default();
        for key in keys {
            if let Some(value) = self.get(key) {
                table.insert(ShortString::from(*key), value);
            }
        }
        table
    }

    /// The entries amq-protocol can hold, decoded.
    pub fn decoded(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in &self.entries {
            if let (Ok(key), Ok((_, value))) = (std::str::from_utf8(key), parse_value(&value[..])) {
                table.insert(ShortString::from(key), value);
            }
        }
        table
    }

    /// Append the table, length first, its entries sorted by key as
    /// RabbitMQ sorts the headers it writes (a stable sort: entries with
    /// the same key keep their order).
    fn encode(&self, out: &mut Vec<u8>) {
        let mut entries: Vec<&(Bytes, Bytes)> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        for (key, value) in entries {
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
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
        let mut rewrite = p.rewrite();
        rewrite.remove(Field::Expiration);
        let edited = rewrite.finish();
        assert!(edited.expiration().is_none());
        assert_eq!(edited.priority(), Some(7));
        assert_eq!(edited.headers(), Some(headers));
        assert_eq!(edited.user_id(), Some(&b"guest"[..]));
    }

    /// content-type "a\xff", headers {"k\xff": longstr "v", "n": long 7},
    /// delivery-mode 2, reply-to "r".
    fn not_utf8() -> Bytes {
        let mut raw = (Field::ContentType.flag()
            | Field::Headers.flag()
            | Field::DeliveryMode.flag()
            | Field::ReplyTo.flag())
        .to_be_bytes()
        .to_vec();
        raw.extend_from_slice(b"\x02a\xff");
        let table = b"\x02k\xffS\x00\x00\x00\x01v\x01nl\x00\x00\x00\x00\x00\x00\x00\x07";
        raw.extend_from_slice(&(table.len() as u32).to_be_bytes());
        raw.extend_from_slice(table);
        raw.push(2);
        raw.extend_from_slice(b"\x01r");
        Bytes::from(raw)
    }

    #[test]
    fn a_rewrite_keeps_bytes_that_are_not_utf8() {
        let p = Properties::parse(not_utf8()).unwrap();
        // amq-protocol cannot hold them...
        assert_eq!(p.decode(), BasicProperties::default());
        // ...but a rewrite keeps every field it does not change.
        let mut rewrite = p.rewrite();
        assert_eq!(
            rewrite.short_string(Field::ContentType),
            Some(&b"a\xff"[..])
        );
        rewrite.set_short_string(Field::ReplyTo, b"elsewhere");
        rewrite
            .headers()
            .set("x-added", &AMQPValue::LongString(LongString::from("yes")));
        let edited = rewrite.finish();
        assert!(edited.is_persistent());
        assert_eq!(edited.reply_to(), Some(&b"elsewhere"[..]));
        let raw = edited.raw();
        let find = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"\x02a\xff"), "{raw:?}");
        assert!(find(b"\x02k\xffS\x00\x00\x00\x01v"), "{raw:?}");
        // The headers the broker reads skip what amq-protocol cannot hold.
        let headers = edited.headers().unwrap();
        assert_eq!(headers.inner().get("n"), Some(&AMQPValue::LongLongInt(7)));
        assert!(headers.inner().contains_key("x-added"));
        assert_eq!(headers.inner().len(), 2);
    }

    #[test]
    fn rewritten_headers_are_sorted_by_key_as_rabbitmq_writes_them() {
        let p = Properties::parse(not_utf8()).unwrap();
        let mut rewrite = p.rewrite();
        rewrite.headers().set("a", &AMQPValue::Boolean(true));
        let edited = rewrite.finish();
        let raw = edited.raw();
        let at = |needle: &[u8]| raw.windows(needle.len()).position(|w| w == needle);
        assert!(at(b"\x01at").unwrap() < at(b"\x02k\xff").unwrap());
        assert!(at(b"\x02k\xff").unwrap() < at(b"\x01nl").unwrap());
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
