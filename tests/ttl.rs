//! Message TTL (`x-message-ttl`, the `expiration` property) and queue TTL
//! (`x-expires`), as RabbitMQ 3.10 implements them.

mod common;

use std::time::Duration;

use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn ttl(ms: i32) -> FieldTable {
    table(&[("x-message-ttl", AMQPValue::LongInt(ms))])
}

fn expires(ms: i32) -> FieldTable {
    table(&[("x-expires", AMQPValue::LongInt(ms))])
}

fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

/// An exclusive queue with this name and these arguments.
async fn declare(ch: &Channel, args: FieldTable) -> String {
    let name = unique("ttl");
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

async fn publish(ch: &Channel, queue: &str, body: &str, props: BasicProperties) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await
    .expect("basic.publish");
}

/// Drain `queue` with no-ack gets: the bodies in order.
async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    {
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    out
}

/// Ready messages per a passive declare (which, on RabbitMQ, also counts as
/// a use of the queue for `x-expires`).
async fn message_count(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare")
    .message_count()
}

/// Wait (bounded) until the queue reports `n` ready messages.
async fn wait_for_count(ch: &Channel, queue: &str, n: u32) {
    within(5, async {
        while message_count(ch, queue).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
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

/// The next delivery within `ms`, if any.
async fn maybe_delivery(consumer: &mut Consumer, ms: u64) -> Option<Delivery> {
    match tokio::time::timeout(Duration::from_millis(ms), consumer.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(other) => panic!("consumer ended: {other:?}"),
        Err(_) => None,
    }
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Whether a passive declare from a fresh channel finds the queue.
async fn queue_exists(conn: &Connection, queue: &str) -> bool {
    let ch = conn.create_channel().await.unwrap();
    let res = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match res {
        Ok(_) => {
            ch.close(200, "bye".into()).await.unwrap();
            true
        }
        Err(e) => {
            assert_eq!(reply_code(&e), Some(404), "error was {e:?}");
            assert_eq!(
                reply_text(&e).as_deref(),
                Some(format!("NOT_FOUND - no queue '{queue}' in vhost '/'").as_str())
            );
            false
        }
    }
}

/// A non-exclusive queue with `x-expires` (exclusive queues would go with
/// the connection anyway). Deleted at the end if still there.
async fn expiring_queue(ch: &Channel, ms: i32) -> String {
    let name = unique("ttl-expires");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions::default(),
        expires(ms),
    )
    .await
    .expect("queue.declare");
    name
}

async fn delete_queue(conn: &Connection, queue: &str) {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    ch.close(200, "bye".into()).await.unwrap();
}

// ---- x-message-ttl ----

#[tokio::test]
async fn queue_ttl_discards_messages_that_outlive_it() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(100)).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    publish(&ch, &q, "m2", BasicProperties::default()).await;
    sleep_ms(400).await;
    // Gone from the count too, not only from basic.get.
    assert_eq!(message_count(&ch, &q).await, 0);
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_ttl_message_fetched_in_time_is_delivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(5_000)).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["m1"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_ttl_applies_per_queue_to_a_message_routed_to_several() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let short = declare(&ch, ttl(100)).await;
    let plain = declare(&ch, FieldTable::default()).await;
    for q in [&short, &plain] {
        ch.queue_bind(
            q.as_str().into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.basic_publish(
        "amq.fanout".into(),
        "".into(),
        BasicPublishOptions::default(),
        b"both",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    sleep_ms(400).await;
    assert_eq!(drain(&ch, &short).await, Vec::<String>::new());
    assert_eq!(drain(&ch, &plain).await, vec!["both"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- the expiration property ----

#[tokio::test]
async fn per_message_expiration_discards_the_message() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "short", expiring("100")).await;
    sleep_ms(400).await;
    assert_eq!(message_count(&ch, &q).await, 0);
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_behind_an_expired_one_are_still_delivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "short", expiring("100")).await;
    publish(&ch, &q, "m2", BasicProperties::default()).await;
    publish(&ch, &q, "m3", expiring("60000")).await;
    sleep_ms(400).await;
    assert_eq!(message_count(&ch, &q).await, 2);
    assert_eq!(drain(&ch, &q).await, vec!["m2", "m3"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unexpired_message_keeps_its_expiration_property() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1", expiring("60000")).await;
    wait_for_count(&ch, &q, 1).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(
        m.delivery
            .properties
            .expiration()
            .as_ref()
            .map(|s| s.as_str()),
        Some("60000")
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_ttl_shorter_than_the_expiration_wins() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(100)).await;
    publish(&ch, &q, "m1", expiring("60000")).await;
    sleep_ms(400).await;
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expiration_shorter_than_the_queue_ttl_wins() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(60_000)).await;
    publish(&ch, &q, "short", expiring("100")).await;
    publish(&ch, &q, "long", BasicProperties::default()).await;
    sleep_ms(400).await;
    assert_eq!(drain(&ch, &q).await, vec!["long"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_numeric_expiration_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1", expiring("soon")).await;
    let err = next_error(&mut events).await;
    assert_eq!(
        (reply_code(&err), reply_text(&err).as_deref()),
        (
            Some(406),
            Some("PRECONDITION_FAILED - invalid expiration 'soon': no_integer")
        ),
        "error was {err:?}"
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn negative_expiration_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1", expiring("-5")).await;
    let err = next_error(&mut events).await;
    assert_eq!(
        (reply_code(&err), reply_text(&err).as_deref()),
        (
            Some(406),
            Some("PRECONDITION_FAILED - invalid expiration '-5': {value_negative,-5}")
        ),
        "error was {err:?}"
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expiration_with_trailing_characters_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1", expiring("100ms")).await;
    let err = next_error(&mut events).await;
    assert_eq!(
        (reply_code(&err), reply_text(&err).as_deref()),
        (
            Some(406),
            Some("PRECONDITION_FAILED - invalid expiration '100ms': {leftover_string,\"ms\"}")
        ),
        "error was {err:?}"
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- TTL 0 ----

#[tokio::test]
async fn ttl_zero_message_goes_to_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(0)).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &q, false).await;
    publish(&ch, &q, "now", BasicProperties::default()).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!((body(&d).as_str(), d.redelivered), ("now", false));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ttl_zero_message_without_consumer_is_discarded() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(0)).await;
    publish(&ch, &q, "nobody", BasicProperties::default()).await;
    // basic.get is ordered after the publish.
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    assert_eq!(message_count(&ch, &q).await, 0);
    // A consumer arriving afterwards gets nothing either.
    let mut consumer = consume(&ch, &q, true).await;
    assert!(maybe_delivery(&mut consumer, 300).await.is_none());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ttl_zero_message_is_discarded_when_the_consumer_has_no_credit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(0)).await;
    let consume_ch = conn.create_channel().await.unwrap();
    consume_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&consume_ch, &q, false).await;
    publish(&ch, &q, "first", BasicProperties::default()).await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(body(&first), "first");
    // The consumer's single credit is used up: "second" can't be delivered
    // at once, so it expires.
    publish(&ch, &q, "second", BasicProperties::default()).await;
    // basic.get is ordered after the publish on RabbitMQ (a passive declare
    // or an ack may overtake it).
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    first.ack(BasicAckOptions::default()).await.unwrap();
    assert!(maybe_delivery(&mut consumer, 300).await.is_none());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expiration_zero_message_goes_to_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &q, true).await;
    publish(&ch, &q, "now", expiring("0")).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body(&d), "now");
    assert_eq!(
        d.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("0")
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expiration_zero_message_without_consumer_is_discarded() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "nobody", expiring("0")).await;
    publish(&ch, &q, "kept", BasicProperties::default()).await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["kept"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- requeue and late consumers ----

#[tokio::test]
async fn requeued_message_keeps_its_original_expiry() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(200)).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    let m = within(
        5,
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .unwrap()
    .expect("a message");
    // Hold it past its TTL, then requeue: it is expired, so it is not
    // redelivered (the requeue does not restart the clock).
    sleep_ms(400).await;
    ch.basic_nack(
        m.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &q, true).await;
    assert!(maybe_delivery(&mut consumer, 300).await.is_none());
    assert_eq!(message_count(&ch, &q).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_message_past_its_expiration_is_not_redelivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "m1", expiring("200")).await;
    publish(&ch, &q, "m2", BasicProperties::default()).await;
    let m = within(
        5,
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(m.delivery.data, b"m1");
    sleep_ms(400).await;
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    assert_eq!(drain(&ch, &q).await, vec!["m2"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_message_within_its_ttl_is_redelivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(60_000)).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    let m = within(
        5,
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .unwrap()
    .expect("a message");
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    let again = within(
        5,
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("redelivered");
    assert_eq!(again.delivery.data, b"m1");
    assert!(again.delivery.redelivered);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expired_message_is_never_delivered_to_a_late_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, ttl(100)).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    publish(&ch, &q, "m2", BasicProperties::default()).await;
    sleep_ms(400).await;
    let mut consumer = consume(&ch, &q, true).await;
    assert!(maybe_delivery(&mut consumer, 300).await.is_none());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_expiring_behind_a_longer_lived_one_is_never_delivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    // "short" expires while "long" is still ahead of it in the queue.
    publish(&ch, &q, "long", expiring("60000")).await;
    publish(&ch, &q, "short", expiring("50")).await;
    publish(&ch, &q, "plain", BasicProperties::default()).await;
    sleep_ms(300).await;
    let consume_ch = conn.create_channel().await.unwrap();
    consume_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&consume_ch, &q, false).await;
    let mut got = Vec::new();
    while let Some(d) = maybe_delivery(&mut consumer, 400).await {
        got.push(body(&d));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(got, vec!["long", "plain"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_expiring_in_the_middle_is_not_returned_by_basic_get() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    publish(&ch, &q, "long", BasicProperties::default()).await;
    publish(&ch, &q, "short", expiring("50")).await;
    publish(&ch, &q, "plain", BasicProperties::default()).await;
    sleep_ms(300).await;
    assert_eq!(drain(&ch, &q).await, vec!["long", "plain"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-expires ----

#[tokio::test]
async fn unused_queue_is_deleted_after_x_expires() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 200).await;
    // Probing is a use of the queue on RabbitMQ, so probe at most once per
    // period: well after it should have gone.
    sleep_ms(600).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expiring_queue_exists_before_its_time() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 1_000).await;
    sleep_ms(300).await;
    assert!(queue_exists(&conn, &q).await);
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_do_not_keep_an_expiring_queue_alive() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 300).await;
    // Publishing is not a use: the queue expires with messages in it.
    for i in 0..3 {
        publish(&ch, &q, &format!("m{i}"), BasicProperties::default()).await;
        sleep_ms(100).await;
    }
    sleep_ms(600).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_keeps_an_expiring_queue_alive() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 200).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let consumer = consume(&consume_ch, &q, true).await;
    sleep_ms(600).await;
    assert!(
        queue_exists(&conn, &q).await,
        "queue expired under a consumer"
    );
    // Once the consumer goes, the clock starts again.
    consume_ch
        .basic_cancel(
            consumer.tag().as_str().into(),
            BasicCancelOptions::default(),
        )
        .await
        .unwrap();
    sleep_ms(600).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn basic_get_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 400).await;
    // A get every 200 ms (empty or not) keeps it alive past several periods.
    for _ in 0..5 {
        sleep_ms(200).await;
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("queue still there");
    }
    sleep_ms(900).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 400).await;
    for _ in 0..5 {
        sleep_ms(200).await;
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            expires(400),
        )
        .await
        .expect("redeclare");
    }
    sleep_ms(900).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 400).await;
    for _ in 0..5 {
        sleep_ms(200).await;
        message_count(&ch, &q).await;
    }
    sleep_ms(900).await;
    assert!(!queue_exists(&conn, &q).await, "queue {q} still exists");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expired_queue_takes_its_messages_with_it() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = expiring_queue(&ch, 200).await;
    publish(&ch, &q, "m1", BasicProperties::default()).await;
    sleep_ms(600).await;
    assert!(!queue_exists(&conn, &q).await);
    // Declared anew, it starts empty.
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        expires(200),
    )
    .await
    .unwrap();
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
