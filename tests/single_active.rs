//! Single active consumer (`x-single-active-consumer`) and the server's
//! basic.cancel notification when a consumed queue goes away.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::*;
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
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

fn sac() -> FieldTable {
    table(&[("x-single-active-consumer", AMQPValue::Boolean(true))])
}

/// An exclusive single-active-consumer queue.
async fn sac_queue(ch: &Channel) -> String {
    let name = unique("sac");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        sac(),
    )
    .await
    .expect("queue.declare");
    name
}

/// A channel in confirm mode, so a publish is in the queue once confirmed.
async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    within(5, confirm).await.expect("confirm");
}

async fn publish_all(ch: &Channel, queue: &str, bodies: &[&str]) {
    for b in bodies {
        publish(ch, queue, b).await;
    }
}

async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

/// Everything the consumer receives until it has been quiet for `quiet_ms`.
async fn collect(consumer: &mut Consumer, quiet_ms: u64) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(next) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), consumer.next()).await
    {
        out.push(next.expect("consumer ended").expect("delivery"));
    }
    out
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(body).collect()
}

/// (body, redelivered) pairs.
fn seen(ds: &[Delivery]) -> Vec<(String, bool)> {
    ds.iter().map(|d| (body(d), d.redelivered)).collect()
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn try_get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

async fn passive(ch: &Channel, queue: &str) -> lapin::Queue {
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
}

async fn cancel(ch: &Channel, tag: &str) {
    ch.basic_cancel(tag.into(), BasicCancelOptions::default())
        .await
        .expect("basic.cancel");
}

/// The consumer's stream ends (lapin's view of a server basic.cancel).
async fn assert_cancelled(consumer: &mut Consumer) {
    let next = within(5, consumer.next()).await;
    assert!(
        next.is_none(),
        "expected the consumer to be cancelled, got {next:?}"
    );
}

// ---- single active consumer ----

#[tokio::test]
async fn only_the_first_registered_consumer_receives() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    publish_all(&ch, &q, &["m1", "m2", "m3", "m4"]).await;
    assert_eq!(
        bodies(&collect(&mut a, 300).await),
        owned(&["m1", "m2", "m3", "m4"])
    );
    assert!(collect(&mut b, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn declare_ok_counts_every_registered_consumer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let _a = consume(&a_ch, &q, "a", true).await;
    let _b = consume(&b_ch, &q, "b", true).await;
    // Waiting consumers count too, not only the active one.
    assert_eq!(passive(&ch, &q).await.consumer_count(), 2);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn next_consumer_takes_over_when_the_active_one_cancels() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    publish(&ch, &q, "m1").await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1"]));
    cancel(&a_ch, "a").await;
    publish_all(&ch, &q, &["m2", "m3"]).await;
    assert_eq!(bodies(&collect(&mut b, 300).await), owned(&["m2", "m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn waiting_messages_go_to_the_next_consumer_when_the_active_channel_closes() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    a_ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut a = consume(&a_ch, &q, "a", false).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    publish_all(&ch, &q, &["m1", "m2", "m3"]).await;
    let held = collect(&mut a, 300).await;
    assert_eq!(bodies(&held), owned(&["m1"]));
    // m2 and m3 wait in the queue: the waiting consumer gets nothing,
    // though the active one has no credit left.
    assert!(collect(&mut b, 100).await.is_empty());
    assert_eq!(passive(&ch, &q).await.message_count(), 2);
    // The active consumer's channel goes: its unacked m1 comes back first,
    // then the waiting ones, all to b.
    a_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(
        seen(&collect(&mut b, 300).await),
        vec![
            ("m1".to_string(), true),
            ("m2".to_string(), false),
            ("m3".to_string(), false)
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn active_consumer_without_credit_gets_the_next_message_after_acking() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    a_ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut a = consume(&a_ch, &q, "a", false).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    publish_all(&ch, &q, &["m1", "m2"]).await;
    let first = collect(&mut a, 300).await;
    assert_eq!(bodies(&first), owned(&["m1"]));
    first[0].ack(BasicAckOptions::default()).await.unwrap();
    let second = collect(&mut a, 300).await;
    assert_eq!(bodies(&second), owned(&["m2"]));
    second[0].ack(BasicAckOptions::default()).await.unwrap();
    assert!(collect(&mut b, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn takeover_follows_registration_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let c_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    let mut c = consume(&c_ch, &q, "c", true).await;
    publish(&ch, &q, "m1").await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1"]));
    cancel(&a_ch, "a").await;
    publish(&ch, &q, "m2").await;
    assert_eq!(bodies(&collect(&mut b, 300).await), owned(&["m2"]));
    cancel(&b_ch, "b").await;
    publish(&ch, &q, "m3").await;
    assert_eq!(bodies(&collect(&mut c, 300).await), owned(&["m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn cancelling_a_waiting_consumer_leaves_the_active_one() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let c_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let _b = consume(&b_ch, &q, "b", true).await;
    let mut c = consume(&c_ch, &q, "c", true).await;
    cancel(&b_ch, "b").await;
    publish(&ch, &q, "m1").await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1"]));
    // With b gone, c is next in line.
    cancel(&a_ch, "a").await;
    publish(&ch, &q, "m2").await;
    assert_eq!(bodies(&collect(&mut c, 300).await), owned(&["m2"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unacked_messages_go_to_the_next_consumer_when_the_active_channel_closes() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", false).await;
    let mut b = consume(&b_ch, &q, "b", false).await;
    publish_all(&ch, &q, &["m1", "m2"]).await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1", "m2"]));
    a_ch.close(200, "bye".into()).await.unwrap();
    publish(&ch, &q, "m3").await;
    let got = collect(&mut b, 300).await;
    assert_eq!(
        seen(&got),
        vec![
            ("m1".to_string(), true),
            ("m2".to_string(), true),
            ("m3".to_string(), false)
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_on_a_closed_connection_hands_over_to_the_next() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    // Non-exclusive, so a second connection can consume.
    let q = unique("sac-shared");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), sac())
        .await
        .unwrap();
    let other = broker.connect().await;
    let a_ch = other.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", false).await;
    let b_ch = conn.create_channel().await.unwrap();
    let mut b = consume(&b_ch, &q, "b", false).await;
    publish(&ch, &q, "m1").await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1"]));
    other.close(200, "bye".into()).await.unwrap();
    let got = collect(&mut b, 300).await;
    assert_eq!(seen(&got), vec![("m1".to_string(), true)]);
    got[0].ack(BasicAckOptions::default()).await.unwrap();
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unacked_messages_of_a_cancelled_active_consumer_stay_with_its_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", false).await;
    let mut b = consume(&b_ch, &q, "b", false).await;
    publish(&ch, &q, "m1").await;
    let held = collect(&mut a, 300).await;
    assert_eq!(bodies(&held), owned(&["m1"]));
    // Cancelling does not requeue: m1 is still a's to settle.
    cancel(&a_ch, "a").await;
    publish(&ch, &q, "m2").await;
    let got = collect(&mut b, 300).await;
    assert_eq!(seen(&got), vec![("m2".to_string(), false)]);
    got[0].ack(BasicAckOptions::default()).await.unwrap();
    // Rejected with requeue, it goes to the consumer now active.
    a_ch.basic_reject(held[0].delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(
        seen(&collect(&mut b, 300).await),
        vec![("m1".to_string(), true)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn first_consumer_after_all_left_becomes_active() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let _a = consume(&a_ch, &q, "a", true).await;
    cancel(&a_ch, "a").await;
    publish(&ch, &q, "m1").await;
    let c_ch = conn.create_channel().await.unwrap();
    let d_ch = conn.create_channel().await.unwrap();
    let mut c = consume(&c_ch, &q, "c", true).await;
    let mut d = consume(&d_ch, &q, "d", true).await;
    publish(&ch, &q, "m2").await;
    assert_eq!(bodies(&collect(&mut c, 300).await), owned(&["m1", "m2"]));
    assert!(collect(&mut d, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn basic_get_still_works_on_a_single_active_consumer_queue() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    publish(&ch, &q, "m1").await;
    let m = try_get(&ch, &q).await.expect("m1");
    assert_eq!(body(&m.delivery), "m1");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn quorum_single_active_consumer_hands_over_on_cancel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("sac-quorum");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&[
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-single-active-consumer", AMQPValue::Boolean(true)),
        ]),
    )
    .await
    .unwrap();
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    publish_all(&ch, &q, &["m1", "m2"]).await;
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1", "m2"]));
    assert!(collect(&mut b, 100).await.is_empty());
    cancel(&a_ch, "a").await;
    publish(&ch, &q, "m3").await;
    assert_eq!(bodies(&collect(&mut b, 300).await), owned(&["m3"]));
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.cancel from the server ----

#[tokio::test]
async fn queue_deleted_by_another_connection_cancels_its_consumer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = unique("cancel-notify");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &q, "watcher", true).await;
    let other = broker.connect().await;
    let other_ch = other.create_channel().await.unwrap();
    other_ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_cancelled(&mut consumer).await;
    // Only the consumer goes: its channel carries on.
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    assert!(ch.status().connected());
    other.close(200, "bye".into()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn deleting_a_single_active_consumer_queue_cancels_active_and_waiting_consumers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = sac_queue(&ch).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, "a", true).await;
    let mut b = consume(&b_ch, &q, "b", true).await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_cancelled(&mut a).await;
    assert_cancelled(&mut b).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn server_basic_cancel_carries_the_consumer_tag_and_nowait() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = unique("cancel-raw");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    // basic.consume: reserved short, queue, tag "raw-tag", flags (no-ack), no arguments.
    let mut args = vec![0, 0];
    args.extend(raw::short_str(&q));
    args.extend(raw::short_str("raw-tag"));
    args.push(0b0000_0010);
    args.extend_from_slice(&0u32.to_be_bytes());
    c.send(&raw::method(1, 60, 20, &args)).await;
    c.expect_method(60, 21).await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let cancel = c.expect_method(60, 30).await;
    assert_eq!(cancel.channel, 1);
    // consumer-tag "raw-tag", then the nowait bit set.
    let mut expected = 60u16.to_be_bytes().to_vec();
    expected.extend_from_slice(&30u16.to_be_bytes());
    expected.extend(raw::short_str("raw-tag"));
    expected.push(1);
    assert_eq!(cancel.payload, expected);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
