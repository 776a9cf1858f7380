//! Dead-lettering: the copy of a message a queue republishes to its
//! `x-dead-letter-exchange`, with the `x-death` history RabbitMQ 3.10 writes,
//! and the cycle rule that drops messages going round without a reject.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::Bytes;

use crate::message::Message;
use crate::protocol::properties::Field;
use crate::protocol::table::as_bytes;

/// Why a message left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped from the head (or refused) for a length limit.
    Maxlen,
    /// Redelivered more often than a quorum queue's `x-delivery-limit`.
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn key(k: &str) -> ShortString {
    ShortString::from(k)
}

fn field<'a>(table: &'a FieldTable, name: &str) -> Option<&'a [u8]> {
    table.inner().get(name).and_then(as_bytes)
}

/// The copy of `message` that queue `queue` dead-letters to `dlx`, routed
/// with `routing_key` when the queue sets one (which also drops the `CC`
/// header), else with the keys it was published with. Its `x-death` entry
/// lists the published key and the `CC` keys.
pub fn dead_lettered(
    message: &Message,
    reason: Reason,
    queue: &str,
    dlx: &Arc<str>,
    routing_key: Option<&str>,
    now_secs: u64,
) -> Message {
    // Rewritten field by field: what is not changed here goes out as it
    // came, bytes that are not UTF-8 included.
    let mut rewrite = message.properties.rewrite();
    let expiration = rewrite.short_string(Field::Expiration).map(<[u8]>::to_vec);
    let headers = rewrite.headers();
    let original_key = String::from_utf8_lossy(&message.routing_key).into_owned();
    let mut routing_keys = vec![text(&original_key)];
    if message.properties.has_routing_headers() {
        let routes = headers.decoded_only(&crate::message::ROUTING_HEADERS);
        let cc = crate::message::header_routes(&routes).unwrap_or_default();
        routing_keys.extend(
            cc.iter()
                .map(|k| AMQPValue::LongString(LongString::from(k.to_vec()))),
        );
    }
    let mut info = FieldTable::default();
    info.insert(key("reason"), text(reason.as_str()));
    info.insert(key("queue"), text(queue));
    info.insert(key("time"), AMQPValue::Timestamp(now_secs));
    info.insert(key("exchange"), text(&message.exchange));
    info.insert(
        key("routing-keys"),
        AMQPValue::FieldArray(FieldArray::from(routing_keys)),
    );
    if let Some(expiration) = expiration {
        info.insert(
            key("original-expiration"),
            AMQPValue::LongString(LongString::from(expiration)),
        );
    }
    let deaths = match headers.get("x-death") {
        None if !headers.contains("x-death") => {
            headers.set("x-first-death-reason", &text(reason.as_str()));
            headers.set("x-first-death-queue", &text(queue));
            headers.set("x-first-death-exchange", &text(&message.exchange));
            info.insert(key("count"), AMQPValue::LongLongInt(1));
            vec![AMQPValue::FieldTable(info)]
        }
        Some(AMQPValue::FieldArray(existing)) => {
            let same = |t: &FieldTable| {
                field(t, "queue") == Some(queue.as_bytes())
                    && field(t, "reason") == Some(reason.as_str().as_bytes())
            };
            let mut others = Vec::new();
            let mut matched = None;
            for entry in regroup(existing.as_slice()) {
                match entry {
                    AMQPValue::FieldTable(t) if matched.is_none() && same(&t) => matched = Some(t),
                    other => others.push(other),
                }
            }
            // An earlier death in the same queue for the same reason is
            // counted, not repeated; it moves to the front.
            let first = match matched {
                Some(mut t) => {
                    let count = match t.inner().get("count") {
                        Some(v) => next_count(v),
                        None => 1,
                    };
                    t.insert(key("count"), AMQPValue::LongLongInt(count));
                    t
                }
                None => {
                    info.insert(key("count"), AMQPValue::LongLongInt(1));
                    info
                }
            };
            let mut all = vec![AMQPValue::FieldTable(first)];
            all.extend(others);
            all
        }
        // Not an array (a client rewrote it): start over, as RabbitMQ does.
        _ => {
            info.insert(key("count"), AMQPValue::LongLongInt(1));
            vec![AMQPValue::FieldTable(info)]
        }
    };
    headers.set("x-death", &AMQPValue::FieldArray(FieldArray::from(deaths)));
    if routing_key.is_some() {
        headers.remove("CC");
    }
    rewrite.remove(Field::Expiration);
    let mut copy = Message::new(
        dlx.clone(),
        routing_key.map_or(message.routing_key.clone(), |k| {
            Bytes::copy_from_slice(k.as_bytes())
        }),
        rewrite.finish(),
        message.body.clone(),
    );
    if routing_key.is_none() {
        copy.extra_keys = message.extra_keys.clone();
    }
    copy
}

/// An `x-death` count plus one. It saturates at the largest long, where
/// RabbitMQ 3.10 wraps round to the most negative one (its encoder
/// truncates the sum to 64 bits): a count that goes negative is no use
/// to anyone. A count that is not a number starts again at 1.
fn next_count(count: &AMQPValue) -> i64 {
    let count = crate::protocol::table::as_i128(count).unwrap_or(0);
    count
        .saturating_add(1)
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// RabbitMQ 3.10 first regroups existing entries by (queue, reason), one
/// entry per pair (counting duplicates from before grouping existed). Its
/// fold prepends, so two or more entries come out in reverse order; clients
/// see that order, so it is kept.
fn regroup(entries: &[AMQPValue]) -> Vec<AMQPValue> {
    if entries.len() <= 1 {
        return entries.to_vec();
    }
    type Key<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    // Each group's size and first member, in one pass (a client-built
    // history can be long).
    let mut groups: HashMap<Key<'_>, (usize, &FieldTable)> = HashMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    for entry in entries {
        let AMQPValue::FieldTable(table) = entry else {
            continue;
        };
        let k = (field(table, "queue"), field(table, "reason"));
        match groups.entry(k) {
            Entry::Occupied(mut group) => group.get_mut().0 += 1,
            Entry::Vacant(group) => {
                order.push(k);
                group.insert((1, table));
            }
        }
    }
    let mut grouped: Vec<AMQPValue> = Vec::with_capacity(order.len());
    for k in order.iter().rev() {
        let (matches, first) = groups[k];
        let mut first = first.clone();
        if !first.contains_key("count") {
            first.insert(key("count"), AMQPValue::LongLongInt(matches as i64));
        }
        grouped.push(AMQPValue::FieldTable(first));
    }
    grouped
}

/// Whether dead-lettering to `target` closes a cycle RabbitMQ drops: the
/// message's history (newest first, this death included) reaches a death in
/// `target` with no rejection on the way. A message rejected by a client
/// somewhere in the cycle is allowed round again.
pub fn is_cycle(message: &Message, reason: Reason, target: &str) -> bool {
    if reason == Reason::Rejected {
        return false;
    }
    let Some(headers) = message.properties.headers() else {
        return false;
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return false;
    };
    for entry in deaths.as_slice() {
        let AMQPValue::FieldTable(death) = entry else {
            // Something a client put there: not a fully automatic cycle.
            return false;
        };
        if field(death, "reason") == Some(b"rejected") {
            return false;
        }
        if field(death, "queue") == Some(target.as_bytes()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Properties;

    fn message(expiration: Option<&str>) -> Message {
        let mut fields = crate::protocol::properties::Fields {
            delivery_mode: Some(2),
            ..Default::default()
        };
        fields.expiration = expiration.map(ShortString::from);
        Message::new(
            Arc::from("orders"),
            Bytes::from_static(b"eu.new"),
            Properties::from_fields(&fields),
            Bytes::from_static(b"body"),
        )
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match m.properties.headers().unwrap().inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|v| match v {
                    AMQPValue::FieldTable(t) => t.clone(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_death_writes_x_death_and_first_death_headers() {
        let dlx: Arc<str> = Arc::from("dlx");
        let dead = dead_lettered(
            &message(Some("5000")),
            Reason::Expired,
            "work",
            &dlx,
            None,
            1234,
        );
        assert_eq!(&*dead.exchange, "dlx");
        assert_eq!(&dead.routing_key[..], b"eu.new");
        assert!(dead.properties.expiration().is_none());
        assert!(dead.properties.is_persistent());
        let headers = dead.properties.headers().unwrap();
        assert_eq!(
            field(&headers, "x-first-death-reason"),
            Some(&b"expired"[..])
        );
        assert_eq!(field(&headers, "x-first-death-queue"), Some(&b"work"[..]));
        assert_eq!(
            field(&headers, "x-first-death-exchange"),
            Some(&b"orders"[..])
        );
        let d = &deaths(&dead)[0];
        assert_eq!(d.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        assert_eq!(d.inner().get("time"), Some(&AMQPValue::Timestamp(1234)));
        assert_eq!(field(d, "original-expiration"), Some(&b"5000"[..]));
        assert_eq!(
            d.inner().get("routing-keys"),
            Some(&AMQPValue::FieldArray(FieldArray::from(vec![text(
                "eu.new"
            )])))
        );
    }

    #[test]
    fn the_same_queue_and_reason_count_up_and_move_first() {
        let dlx: Arc<str> = Arc::from("dlx");
        let once = dead_lettered(
            &message(None),
            Reason::Rejected,
            "work",
            &dlx,
            Some("retry"),
            1,
        );
        assert_eq!(&once.routing_key[..], b"retry");
        let twice = dead_lettered(&once, Reason::Expired, "retry-q", &dlx, Some("work"), 2);
        let thrice = dead_lettered(&twice, Reason::Rejected, "work", &dlx, Some("retry"), 3);
        let all = deaths(&thrice);
        assert_eq!(all.len(), 2);
        assert_eq!(field(&all[0], "queue"), Some(&b"work"[..]));
        assert_eq!(
            all[0].inner().get("count"),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(field(&all[1], "queue"), Some(&b"retry-q"[..]));
        // First-death headers stay as they were.
        let headers = thrice.properties.headers().unwrap();
        assert_eq!(
            field(&headers, "x-first-death-reason"),
            Some(&b"rejected"[..])
        );
    }

    #[test]
    fn automatic_cycles_are_detected_and_rejections_break_them() {
        let dlx: Arc<str> = Arc::from("dlx");
        let expired = dead_lettered(&message(None), Reason::Expired, "q1", &dlx, None, 1);
        assert!(is_cycle(&expired, Reason::Expired, "q1"));
        assert!(!is_cycle(&expired, Reason::Expired, "q2"));
        // A client's reject on the way back breaks the cycle.
        let rejected = dead_lettered(&expired, Reason::Rejected, "q2", &dlx, None, 2);
        assert!(!is_cycle(&rejected, Reason::Expired, "q1"));
        assert!(!is_cycle(&rejected, Reason::Rejected, "q1"));
        // RabbitMQ's regrouping reverses older entries: the reject no
        // longer stands between the new death and q1's, so q1 cycles.
        let again = dead_lettered(&rejected, Reason::Expired, "q3", &dlx, None, 3);
        assert!(is_cycle(&again, Reason::Expired, "q1"));
    }
}
