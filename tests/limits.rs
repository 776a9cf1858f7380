//! Queue length limits: `x-max-length`, `x-max-length-bytes` and the
//! `x-overflow` behaviours (drop-head, reject-publish, reject-publish-dlx).

mod common;

use std::time::Duration;

use common::*;
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

fn max_len(n: i32) -> (&'static str, AMQPValue) {
    ("x-max-length", AMQPValue::LongInt(n))
}

fn max_bytes(n: i32) -> (&'static str, AMQPValue) {
    ("x-max-length-bytes", AMQPValue::LongInt(n))
}

fn overflow(mode: &str) -> (&'static str, AMQPValue) {
    ("x-overflow", s(mode))
}

async fn queue(ch: &Channel, args: &[(&str, AMQPValue)]) -> String {
    let name = unique("limits");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(args),
    )
    .await
    .expect("queue.declare");
    name
}

/// Publish and return the confirmation (NotRequested outside confirm mode).
async fn publish(ch: &Channel, queue: &str, body: &str) -> Confirmation {
    publish_to(ch, "", queue, body, false).await
}

async fn publish_to(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    mandatory: bool,
) -> Confirmation {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    within(5, confirm).await.expect("confirmation")
}

async fn publish_all(ch: &Channel, queue: &str, bodies: &[&str]) {
    for b in bodies {
        publish(ch, queue, b).await;
    }
}

async fn try_get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(5, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

async fn wait_get(ch: &Channel, queue: &str) -> BasicGetMessage {
    within(5, async {
        loop {
            if let Some(m) = try_get(ch, queue, true).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = try_get(ch, queue, true).await {
        out.push(body(&m.delivery));
    }
    out
}

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

/// Wait (bounded) until the queue reports `n` ready messages. RabbitMQ
/// answers a passive declare ahead of deliveries still in the queue's
/// mailbox, so a count right after publishing may lag behind.
async fn wait_for_count(ch: &Channel, queue: &str, n: u32) {
    within(5, async {
        while message_count(ch, queue).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The (reason, queue, exchange, routing-keys, count) of the single x-death entry.
fn single_death(d: &Delivery) -> (String, String, String, Vec<String>, i64) {
    let h = d.properties.headers().as_ref().expect("headers").inner();
    let entries = match h.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        other => panic!("x-death should be an array, was {other:?}"),
    };
    assert_eq!(entries.len(), 1, "x-death: {entries:?}");
    let t = match &entries[0] {
        AMQPValue::FieldTable(t) => t.inner().clone(),
        other => panic!("entry should be a table, was {other:?}"),
    };
    let text = |k: &str| match t.get(k) {
        Some(AMQPValue::LongString(v)) => String::from_utf8(v.as_bytes().to_vec()).unwrap(),
        other => panic!("{k} should be a longstr, was {other:?}"),
    };
    let keys = match t.get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|k| match k {
                AMQPValue::LongString(v) => String::from_utf8(v.as_bytes().to_vec()).unwrap(),
                other => panic!("routing key should be a longstr, was {other:?}"),
            })
            .collect(),
        other => panic!("routing-keys should be an array, was {other:?}"),
    };
    let count = match t.get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count should be a long, was {other:?}"),
    };
    assert!(matches!(t.get("time"), Some(AMQPValue::Timestamp(_))));
    (text("reason"), text("queue"), text("exchange"), keys, count)
}

// ---- x-max-length, drop-head ----

#[tokio::test]
async fn max_length_drops_the_oldest_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(2)]).await;
    publish_all(&ch, &q, &["m1", "m2", "m3", "m4"]).await;
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, owned(&["m3", "m4"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn explicit_drop_head_overflow_drops_the_oldest_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(2), overflow("drop-head")]).await;
    publish_all(&ch, &q, &["m1", "m2", "m3"]).await;
    assert_eq!(drain(&ch, &q).await, owned(&["m2", "m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn drop_head_dead_letters_the_oldest_with_reason_maxlen() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(
        &ch,
        &[
            max_len(1),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ],
    )
    .await;
    publish_all(&ch, &q, &["m1", "m2", "m3"]).await;
    assert_eq!(drain(&ch, &q).await, owned(&["m3"]));
    let first = wait_get(&ch, &dlq).await;
    assert_eq!(body(&first.delivery), "m1");
    assert_eq!(
        single_death(&first.delivery),
        (
            "maxlen".to_string(),
            q.clone(),
            "".to_string(),
            vec![q.clone()],
            1
        )
    );
    let second = wait_get(&ch, &dlq).await;
    assert_eq!(body(&second.delivery), "m2");
    assert_eq!(single_death(&second.delivery).0, "maxlen");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_length_counts_only_ready_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(1)]).await;
    publish(&ch, &q, "m1").await;
    let held = try_get(&ch, &q, false).await.expect("m1");
    // m1 is unacknowledged, not ready: m2 fits.
    publish(&ch, &q, "m2").await;
    wait_for_count(&ch, &q, 1).await;
    publish(&ch, &q, "m3").await;
    ch.basic_ack(held.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(drain(&ch, &q).await, owned(&["m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeue_into_a_full_queue_drops_the_head() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(1)]).await;
    publish(&ch, &q, "m1").await;
    let held = try_get(&ch, &q, false).await.expect("m1");
    publish(&ch, &q, "m2").await;
    // m1 goes back to the head of the queue, which is then over its limit:
    // the head (m1 itself) is dropped.
    ch.basic_reject(
        held.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    assert_eq!(drain(&ch, &q).await, owned(&["m2"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_length_zero_keeps_nothing() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(0)]).await;
    publish_all(&ch, &q, &["m1", "m2"]).await;
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_length_zero_still_delivers_to_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(0)]).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume_ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(&ch, &q, "m1").await;
    let d = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(body(&d), "m1");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-max-length-bytes ----

#[tokio::test]
async fn max_length_bytes_counts_body_bytes_and_drops_the_oldest() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_bytes(10)]).await;
    // Headers and properties do not count: only the bodies.
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"aaaa",
        BasicProperties::default()
            .with_content_type("a/very-long-content-type-that-is-not-counted".into()),
    )
    .await
    .unwrap();
    publish_all(&ch, &q, &["bbbb"]).await;
    wait_for_count(&ch, &q, 2).await;
    publish_all(&ch, &q, &["cccc"]).await;
    assert_eq!(drain(&ch, &q).await, owned(&["bbbb", "cccc"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_at_exactly_max_length_bytes_fits() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_bytes(10)]).await;
    publish_all(&ch, &q, &["12345", "67890"]).await;
    assert_eq!(drain(&ch, &q).await, owned(&["12345", "67890"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_larger_than_max_length_bytes_empties_the_queue() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_bytes(5)]).await;
    publish(&ch, &q, "ok").await;
    // Heads are dropped until the queue fits: "ok", then the big one itself.
    publish(&ch, &q, "123456").await;
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn both_limits_apply_whichever_is_hit_first() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(3), max_bytes(6)]).await;
    publish_all(&ch, &q, &["a", "b", "c", "d"]).await;
    wait_for_count(&ch, &q, 3).await;
    publish(&ch, &q, "eeeee").await;
    assert_eq!(drain(&ch, &q).await, owned(&["d", "eeeee"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- reject-publish ----

#[tokio::test]
async fn reject_publish_nacks_publishes_beyond_the_limit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_len(2), overflow("reject-publish")]).await;
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m2").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m3").await, Confirmation::Nack(None));
    // The messages already there are kept.
    assert_eq!(drain(&ch, &q).await, owned(&["m1", "m2"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_without_confirms_drops_silently() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &[max_len(2), overflow("reject-publish")]).await;
    publish_all(&ch, &q, &["m1", "m2", "m3", "m4"]).await;
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, owned(&["m1", "m2"]));
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_accepts_again_once_there_is_room() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_len(1), overflow("reject-publish")]).await;
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m2").await, Confirmation::Nack(None));
    assert_eq!(body(&try_get(&ch, &q, true).await.unwrap().delivery), "m1");
    assert_eq!(publish(&ch, &q, "m3").await, Confirmation::Ack(None));
    assert_eq!(drain(&ch, &q).await, owned(&["m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_applies_to_max_length_bytes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_bytes(6), overflow("reject-publish")]).await;
    assert_eq!(publish(&ch, &q, "aaaa").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "bbb").await, Confirmation::Nack(None));
    assert_eq!(publish(&ch, &q, "cc").await, Confirmation::Ack(None));
    assert_eq!(drain(&ch, &q).await, owned(&["aaaa", "cc"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_does_not_dead_letter() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let dlq = queue(&ch, &[]).await;
    let q = queue(
        &ch,
        &[
            max_len(1),
            overflow("reject-publish"),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ],
    )
    .await;
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m2").await, Confirmation::Nack(None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(message_count(&ch, &dlq).await, 0);
    assert_eq!(drain(&ch, &q).await, owned(&["m1"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_with_max_length_zero_rejects_even_with_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_len(0), overflow("reject-publish")]).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume_ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Nack(None));
    let next = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(next.is_err(), "delivered: {next:?}");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_publish_rejected_by_a_full_queue_is_nacked_not_returned() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_len(1), overflow("reject-publish")]).await;
    assert_eq!(
        publish_to(&ch, "", &q, "m1", true).await,
        Confirmation::Ack(None)
    );
    // It was routed to a queue: no basic.return, only the nack.
    assert_eq!(
        publish_to(&ch, "", &q, "m2", true).await,
        Confirmation::Nack(None)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn publish_to_a_full_queue_and_another_is_nacked_but_reaches_the_other() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let full = queue(&ch, &[max_len(0), overflow("reject-publish")]).await;
    let open = queue(&ch, &[]).await;
    for q in [&full, &open] {
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
    assert_eq!(
        publish_to(&ch, "amq.fanout", "", "both", false).await,
        Confirmation::Nack(None)
    );
    assert_eq!(drain(&ch, &open).await, owned(&["both"]));
    assert_eq!(message_count(&ch, &full).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- reject-publish-dlx ----

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters_with_reason_maxlen() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let dlq = queue(&ch, &[]).await;
    let q = queue(
        &ch,
        &[
            max_len(1),
            overflow("reject-publish-dlx"),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ],
    )
    .await;
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m2").await, Confirmation::Nack(None));
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(body(&dead.delivery), "m2");
    assert_eq!(
        single_death(&dead.delivery),
        (
            "maxlen".to_string(),
            q.clone(),
            "".to_string(),
            vec![q.clone()],
            1
        )
    );
    // The queue keeps what it had.
    assert_eq!(drain(&ch, &q).await, owned(&["m1"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_dlx_without_confirms_still_dead_letters() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(
        &ch,
        &[
            max_len(1),
            overflow("reject-publish-dlx"),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ],
    )
    .await;
    publish_all(&ch, &q, &["m1", "m2", "m3"]).await;
    assert_eq!(body(&wait_get(&ch, &dlq).await.delivery), "m2");
    assert_eq!(body(&wait_get(&ch, &dlq).await.delivery), "m3");
    assert_eq!(drain(&ch, &q).await, owned(&["m1"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_dlx_without_dead_letter_exchange_only_nacks() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = queue(&ch, &[max_len(1), overflow("reject-publish-dlx")]).await;
    assert_eq!(publish(&ch, &q, "m1").await, Confirmation::Ack(None));
    assert_eq!(publish(&ch, &q, "m2").await, Confirmation::Nack(None));
    assert_eq!(drain(&ch, &q).await, owned(&["m1"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
