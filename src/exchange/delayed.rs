//! Delayed messages: an exchange of type `x-delayed-message` holds each
//! message for its `x-delay` header (milliseconds), then routes it as its
//! `x-delayed-type` (direct, fanout, topic or headers) says.
//!
//! Held messages wait in a heap ordered by due time. In a durable exchange,
//! persistent held messages are also written to a tree of the store, so
//! they survive a restart; they are removed from it once routed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::AMQPValue;
use bytes::Bytes;
use parking_lot::Mutex;
use tracing::warn;

use crate::message::Message;
use crate::queue::Republish;
use crate::store::Store;
use crate::store::codec::{self, Entry, Names};
use crate::timer::{Timed, Timers};
use crate::util::now_millis;

/// The delay a message asks for, if any: the `x-delay` header, an integer
/// of milliseconds. Zero, negative or absent means no delay.
pub fn requested_delay(message_headers: Option<&amq_protocol::types::FieldTable>) -> Option<u64> {
    let value = message_headers?.inner().get("x-delay")?;
    let ms = match value {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            crate::protocol::table::as_text(value)?
                .trim()
                .parse::<i128>()
                .ok()?
        }
        other => crate::protocol::table::as_i128(other)?,
    };
    (ms > 0).then(|| u64::try_from(ms).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct Held {
    due: u64,
    seq: u64,
    message: Arc<Message>,
    stored: bool,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Debug, Default)]
struct State {
    heap: BinaryHeap<Reverse<Held>>,
    next_seq: u64,
    armed: Option<u64>,
}

/// The held messages of one delayed-message exchange.
#[derive(Debug)]
pub struct Delayer {
    exchange: Arc<str>,
    /// The virtual host, which routes messages that come due.
    republish: Weak<dyn Republish>,
    timers: Option<Timers>,
    /// Present for a durable exchange: where persistent held messages live.
    tree: Option<sled::Tree>,
    store: Option<Arc<Store>>,
    deleted: AtomicBool,
    me: Weak<Delayer>,
    state: Mutex<State>,
}

impl Delayer {
    pub fn new(
        exchange: Arc<str>,
        republish: Weak<dyn Republish>,
        timers: Option<Timers>,
        store: Option<Arc<Store>>,
        tree: Option<sled::Tree>,
    ) -> Arc<Delayer> {
        Arc::new_cyclic(|me| Delayer {
            exchange,
            republish,
            timers,
            tree,
            store,
            deleted: AtomicBool::new(false),
            me: me.clone(),
            state: Mutex::new(State::default()),
        })
    }

    /// Hold `message` for `delay` milliseconds. Returns whether it was
    /// written to the store (its publisher's confirm then waits for the disk).
    pub fn hold(&self, message: Arc<Message>, delay: u64) -> bool {
        let message = negate_delay(&message, delay);
        let due = now_millis().saturating_add(delay);
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let stored = match &self.tree {
            Some(tree) if message.is_persistent() => tree
                .insert(key(due, seq), codec::encode_message(&message, None))
                .map_err(
                    |e| warn!(exchange = %self.exchange, "cannot store a delayed message: {e}"),
                )
                .is_ok(),
            _ => false,
        };
        st.heap.push(Reverse(Held {
            due,
            seq,
            message,
            stored,
        }));
        self.arm(&mut st, due);
        stored
    }

    fn arm(&self, st: &mut State, at: u64) {
        if st.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        st.armed = Some(at);
        if let Some(timers) = &self.timers {
            let me: Weak<dyn Timed> = self.me.clone();
            timers.schedule(at, me);
        }
    }

    /// Read back the held messages of a durable exchange at start.
    pub fn recover(&self) {
        let Some(tree) = &self.tree else { return };
        let mut names = Names::default();
        let mut st = self.state.lock();
        for (k, raw) in tree.iter().flatten() {
            let Ok(bytes) = <[u8; 16]>::try_from(k.as_ref()) else {
                continue;
            };
            let due = u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
            let seq = u64::from_be_bytes(bytes[8..].try_into().unwrap_or_default());
            match codec::decode(Bytes::from_owner(raw), &mut names) {
                Ok(codec::Decoded {
                    entry: Entry::Inline(message),
                    ..
                }) => {
                    st.next_seq = st.next_seq.max(seq + 1);
                    st.heap.push(Reverse(Held {
                        due,
                        seq,
                        message: Arc::new(message),
                        stored: true,
                    }));
                }
                _ => warn!(exchange = %self.exchange, "skipping an unreadable delayed message"),
            }
        }
        if let Some(Reverse(first)) = st.heap.peek() {
            let due = first.due;
            self.arm(&mut st, due);
        }
    }

    /// The exchange was deleted: drop what it holds.
    pub fn destroy(&self, vhost: &str) {
        self.deleted.store(true, Ordering::Release);
        self.state.lock().heap.clear();
        if let (Some(store), Some(_)) = (&self.store, &self.tree) {
            store.drop_delayed_tree(vhost, &self.exchange);
        }
    }
}

/// The plugin delivers a delayed message with its `x-delay` header negated,
/// so a consumer republishing it does not delay it again.
fn negate_delay(message: &Arc<Message>, delay: u64) -> Arc<Message> {
    let delay = AMQPValue::LongInt(-(delay.min(i32::MAX as u64) as i32));
    Arc::new(message.with_properties(message.properties.with_header("x-delay", delay)))
}

fn key(due: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&due.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Timed for Delayer {
    /// Route every message that has come due.
    fn fire(self: Arc<Self>, now: u64) -> Option<u64> {
        if self.deleted.load(Ordering::Acquire) {
            return None;
        }
        let mut due = Vec::new();
        let next = {
            let mut st = self.state.lock();
            st.armed = None;
            while st.heap.peek().is_some_and(|Reverse(h)| h.due <= now) {
                if let Some(Reverse(held)) = st.heap.pop() {
                    due.push(held);
                }
            }
            let next = st.heap.peek().map(|Reverse(h)| h.due);
            st.armed = next;
            next
        };
        if let Some(vhost) = self.republish.upgrade() {
            let mut queues = Vec::new();
            for held in &due {
                queues.clear();
                vhost.route_internal(&self.exchange, &held.message, &mut queues);
                for queue in &queues {
                    queue.publish(held.message.clone());
                }
            }
        }
        if let Some(tree) = &self.tree {
            let mut batch = sled::Batch::default();
            for held in due.iter().filter(|h| h.stored) {
                batch.remove(&key(held.due, held.seq));
            }
            let _ = tree.apply_batch(batch);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{FieldTable, LongString, ShortString};

    #[test]
    fn delay_comes_from_the_x_delay_header() {
        let mut headers = FieldTable::default();
        assert_eq!(requested_delay(Some(&headers)), None);
        headers.insert(ShortString::from("x-delay"), AMQPValue::LongInt(1500));
        assert_eq!(requested_delay(Some(&headers)), Some(1500));
        headers.insert(ShortString::from("x-delay"), AMQPValue::LongInt(-5));
        assert_eq!(requested_delay(Some(&headers)), None);
        headers.insert(
            ShortString::from("x-delay"),
            AMQPValue::LongString(LongString::from("250")),
        );
        assert_eq!(requested_delay(Some(&headers)), Some(250));
        assert_eq!(requested_delay(None), None);
    }
}
