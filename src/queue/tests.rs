//! A queue on its own: its channel and its virtual host are test doubles of
//! the traits it is handed ([`ConsumerChannel`], [`Republish`]), so these
//! tests need no broker, socket or store.

use std::sync::{Arc, Weak};

use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;
use parking_lot::Mutex;

use super::*;
use crate::protocol::properties::Fields;

/// A channel that records what it is given and has the credit the test sets.
#[derive(Debug, Default)]
struct RecordingChannel {
    credit: Mutex<usize>,
    /// Deliveries to refuse although `has_credit` said yes (credit taken
    /// by another queue in between).
    refuse: Mutex<usize>,
    delivered: Mutex<Vec<QueuedMessage>>,
    cancelled: Mutex<Vec<Arc<str>>>,
}

impl RecordingChannel {
    fn with_credit(credit: usize) -> Arc<RecordingChannel> {
        let channel = Arc::new(RecordingChannel::default());
        *channel.credit.lock() = credit;
        channel
    }

    fn bodies(&self) -> Vec<Bytes> {
        let delivered = self.delivered.lock();
        delivered.iter().map(|m| m.message.body.clone()).collect()
    }
}

impl ConsumerChannel for RecordingChannel {
    fn has_credit(&self, _consumer: &Consumer) -> bool {
        *self.credit.lock() > 0
    }

    fn deliver(
        &self,
        _consumer: &Arc<Consumer>,
        _queue: &Arc<Queue>,
        message: QueuedMessage,
        _wire: Option<&Properties>,
    ) -> Delivery {
        let mut credit = self.credit.lock();
        let mut refuse = self.refuse.lock();
        if *credit == 0 || *refuse > 0 {
            *refuse = refuse.saturating_sub(1);
            return Delivery::Refused(message);
        }
        *credit -= 1;
        self.delivered.lock().push(message);
        Delivery::Unacked
    }

    fn cancelled_by_broker(&self, consumer: &Consumer) {
        self.cancelled.lock().push(consumer.tag.clone());
    }
}

/// A virtual host that routes every broker-made message to one queue and
/// records expired queues.
#[derive(Debug, Default)]
struct OneQueueHome {
    target: Mutex<Option<Arc<Queue>>>,
    expired: Mutex<Vec<Arc<str>>>,
}

impl Republish for OneQueueHome {
    fn route_internal(&self, _exchange: &str, _message: &Message, queues: &mut Vec<Arc<Queue>>) {
        queues.extend(self.target.lock().clone());
    }

    fn expire_queue(&self, queue: &Arc<Queue>) {
        self.expired.lock().push(queue.name.clone());
    }
}

fn queue(name: &str, arguments: FieldTable, home: Weak<dyn Republish>) -> Arc<Queue> {
    let args = QueueArgs::parse(&arguments, name).expect("valid arguments");
    Queue::new(QueueOptions {
        name: Arc::from(name),
        vhost: Arc::from("/"),
        durable: false,
        auto_delete: false,
        exclusive_owner: None,
        arguments,
        args,
        storage: None,
        max_in_memory: 100,
        republish: home,
        timers: None,
        applied: Default::default(),
    })
}

fn homeless() -> Weak<dyn Republish> {
    Weak::<OneQueueHome>::new()
}

fn consumer(channel: &Arc<RecordingChannel>, tag: &str) -> Arc<Consumer> {
    Arc::new(Consumer::new(
        Arc::from(tag),
        channel.clone(),
        false,
        false,
        0,
        0,
        FieldTable::default(),
    ))
}

fn message(body: &'static str) -> Arc<Message> {
    let fields = Fields {
        delivery_mode: Some(2),
        ..Fields::default()
    };
    Arc::new(Message::new(
        Arc::from(""),
        Bytes::from_static(b"work"),
        Properties::from_fields(&fields),
        Bytes::from_static(body.as_bytes()),
    ))
}

#[test]
fn delivers_in_order_as_far_as_the_channel_has_credit() {
    let q = queue("work", FieldTable::default(), homeless());
    let channel = RecordingChannel::with_credit(2);
    q.add_consumer(consumer(&channel, "c1"), || {})
        .expect("consumer added");
    for body in ["a", "b", "c"] {
        q.publish(message(body));
    }
    assert_eq!(channel.bodies(), vec!["a", "b"]);
    assert_eq!(q.message_count(), 1);

    // Credit comes back (an ack): the queue resumes where it stopped.
    *channel.credit.lock() = 5;
    q.drain();
    assert_eq!(channel.bodies(), vec!["a", "b", "c"]);
    assert_eq!(q.message_count(), 0);
}

#[test]
fn a_message_the_channel_refuses_goes_back_to_the_head() {
    let q = queue("work", FieldTable::default(), homeless());
    let channel = RecordingChannel::with_credit(3);
    *channel.refuse.lock() = 2;
    q.publish(message("a"));
    q.publish(message("b"));
    q.add_consumer(consumer(&channel, "c1"), || {})
        .expect("consumer added");
    assert_eq!(channel.bodies(), vec!["a", "b"]);
    assert_eq!(q.message_count(), 0);
}

#[test]
fn rejected_messages_are_republished_through_the_home_with_x_death() {
    let home = Arc::new(OneQueueHome::default());
    let dead = queue("dead", FieldTable::default(), homeless());
    *home.target.lock() = Some(dead.clone());
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString("dlx".into()),
    );
    let weak: Weak<OneQueueHome> = Arc::downgrade(&home);
    let work = queue("work", arguments, weak);
    let channel = RecordingChannel::with_credit(1);
    work.add_consumer(consumer(&channel, "c1"), || {})
        .expect("consumer added");
    work.publish(message("x"));
    let delivered = std::mem::take(&mut *channel.delivered.lock());
    work.discard(delivered);

    let mut got = None;
    assert!(dead.get(|m, _, _| {
        got = Some(m.message.clone());
        Some(m)
    }));
    let copy = got.expect("a dead-lettered copy");
    assert_eq!(&copy.body[..], b"x");
    assert!(copy.is_persistent());
    let headers = copy.properties.headers().expect("headers");
    assert!(headers.inner().contains_key("x-death"));
}

#[test]
fn an_idle_queue_asks_its_home_to_remove_it_after_x_expires() {
    let home = Arc::new(OneQueueHome::default());
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-expires"), AMQPValue::LongInt(1000));
    let weak: Weak<OneQueueHome> = Arc::downgrade(&home);
    let q = queue("idle", arguments, weak);
    assert_eq!(
        crate::timer::Timed::fire(q.clone(), now_millis() + 500),
        Some(q.state.lock().last_used + 1000)
    );
    assert!(home.expired.lock().is_empty());
    assert_eq!(
        crate::timer::Timed::fire(q.clone(), now_millis() + 2000),
        None
    );
    assert_eq!(home.expired.lock().as_slice(), &[Arc::from("idle")]);
}
