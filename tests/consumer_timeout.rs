//! Consumer (delivery acknowledgement) timeout: the broker-wide setting and
//! the `x-consumer-timeout` queue argument. Warren-only: RabbitMQ 3.10 has
//! only a global setting in its configuration file, and `x-consumer-timeout`
//! is RabbitMQ 3.12+; these tests skip against an outside broker.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_lite::{Stream, StreamExt};
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer, Event};

fn timeout_text(channel: u16, ms: u64) -> String {
    format!(
        "PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. Timeout value used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
    )
}

/// A broker with this global consumer timeout, or None against an outside
/// broker (the test then skips).
async fn broker_with_timeout(ms: u64) -> Option<TestBroker> {
    let broker = TestBroker::start_with(|c| c.consumer_timeout_ms = ms).await;
    if broker.is_external() {
        broker.stop().await;
        return None;
    }
    Some(broker)
}

async fn queue(ch: &Channel, args: FieldTable) -> String {
    let name = unique("ctimeout");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("queue.declare");
    name
}

fn queue_timeout(ms: i64) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(ms));
    t
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish");
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within(5, consumer.next())
        .await
        .expect("consumer ended")
        .expect("delivery error")
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// The next error the connection reports.
async fn next_error(events: &mut (impl Stream<Item = Event> + Unpin)) -> lapin::Error {
    loop {
        match within(5, events.next()).await {
            Some(Event::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("event stream ended without an error"),
        }
    }
}

/// No error event within `ms`.
async fn no_error_within(events: &mut (impl Stream<Item = Event> + Unpin), ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => return,
            Ok(Some(Event::Error(e))) => panic!("unexpected error: {e:?}"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended"),
        }
    }
}

#[track_caller]
fn assert_exact(err: &lapin::Error, code: u16, text: &str) {
    assert_eq!(
        (reply_code(err), reply_text(err).as_deref()),
        (Some(code), Some(text)),
        "error was {err:?}"
    );
}

#[tokio::test]
async fn unacked_delivery_past_the_timeout_closes_the_channel_with_406() {
    let Some(broker) = broker_with_timeout(500).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let mut consumer = consume(&ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    let d = next_delivery(&mut consumer).await;
    let delivered_at = Instant::now();
    assert_eq!(body(&d), "m1");
    let err = next_error(&mut events).await;
    assert!(
        delivered_at.elapsed() >= Duration::from_millis(450),
        "closed after only {:?}",
        delivered_at.elapsed()
    );
    assert_exact(&err, 406, &timeout_text(1, 500));
    assert!(!ch.status().connected());
    // A channel error only.
    let other = conn.create_channel().await.unwrap();
    other
        .basic_qos(0, BasicQosOptions::default())
        .await
        .expect("connection still usable");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn timeout_text_names_the_consumers_channel() {
    let Some(broker) = broker_with_timeout(300).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let consume_ch = conn.create_channel().await.unwrap();
    assert_eq!(consume_ch.id(), 2);
    let mut consumer = consume(&consume_ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    next_delivery(&mut consumer).await;
    let err = next_error(&mut events).await;
    assert_exact(&err, 406, &timeout_text(2, 300));
    // The publishing channel is untouched.
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn timed_out_messages_are_requeued_and_redelivered() {
    let Some(broker) = broker_with_timeout(400).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    publish(&ch, &q, "m2").await;
    next_delivery(&mut consumer).await;
    next_delivery(&mut consumer).await;
    next_error(&mut events).await;
    // Another consumer gets them back, in order, marked redelivered.
    let again_ch = conn.create_channel().await.unwrap();
    let mut again = consume(&again_ch, &q, true).await;
    let first = next_delivery(&mut again).await;
    let second = next_delivery(&mut again).await;
    assert_eq!(
        vec![
            (body(&first), first.redelivered),
            (body(&second), second.redelivered)
        ],
        vec![("m1".to_string(), true), ("m2".to_string(), true)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_acking_in_time_is_unaffected() {
    let Some(broker) = broker_with_timeout(500).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &q, false).await;
    // Well past the timeout in total, but each delivery acked in 100 ms.
    for i in 0..5 {
        publish(&ch, &q, &format!("m{i}")).await;
        let d = next_delivery(&mut consumer).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.ack(BasicAckOptions::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    no_error_within(&mut events, 300).await;
    consume_ch
        .basic_qos(0, BasicQosOptions::default())
        .await
        .expect("consumer channel still open");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn no_ack_deliveries_never_time_out() {
    let Some(broker) = broker_with_timeout(300).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let mut consumer = consume(&ch, &q, true).await;
    publish(&ch, &q, "m1").await;
    next_delivery(&mut consumer).await;
    no_error_within(&mut events, 1_200).await;
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unacked_basic_get_also_times_out() {
    let Some(broker) = broker_with_timeout(300).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1").await;
    let got = within(5, async {
        loop {
            if let Some(m) = ch
                .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(got.delivery.data, b"m1");
    let err = next_error(&mut events).await;
    assert_exact(&err, 406, &timeout_text(1, 300));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn zero_disables_the_timeout() {
    let Some(broker) = broker_with_timeout(0).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, FieldTable::default()).await;
    let mut consumer = consume(&ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    let d = next_delivery(&mut consumer).await;
    no_error_within(&mut events, 1_200).await;
    d.ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_qos(0, BasicQosOptions::default())
        .await
        .expect("still open");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_argument_shorter_than_the_global_timeout_wins() {
    let Some(broker) = broker_with_timeout(60_000).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, queue_timeout(300)).await;
    let mut consumer = consume(&ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    next_delivery(&mut consumer).await;
    let err = next_error(&mut events).await;
    assert_exact(&err, 406, &timeout_text(1, 300));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_argument_longer_than_the_global_timeout_wins() {
    let Some(broker) = broker_with_timeout(300).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, queue_timeout(60_000)).await;
    let mut consumer = consume(&ch, &q, false).await;
    publish(&ch, &q, "m1").await;
    let d = next_delivery(&mut consumer).await;
    no_error_within(&mut events, 1_200).await;
    d.ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_qos(0, BasicQosOptions::default())
        .await
        .expect("still open");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_argument_applies_only_to_its_queue() {
    let Some(broker) = broker_with_timeout(60_000).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let short = queue(&ch, queue_timeout(300)).await;
    let plain = queue(&ch, FieldTable::default()).await;
    let plain_ch = conn.create_channel().await.unwrap();
    let mut plain_consumer = consume(&plain_ch, &plain, false).await;
    publish(&ch, &plain, "p1").await;
    next_delivery(&mut plain_consumer).await;
    let short_ch = conn.create_channel().await.unwrap();
    let mut short_consumer = consume(&short_ch, &short, false).await;
    publish(&ch, &short, "s1").await;
    next_delivery(&mut short_consumer).await;
    let err = next_error(&mut events).await;
    assert_exact(&err, 406, &timeout_text(short_ch.id(), 300));
    no_error_within(&mut events, 600).await;
    assert!(plain_ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
