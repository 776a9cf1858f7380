//! Priority queues (`x-max-priority`) and consumer priorities (the
//! `x-priority` argument of basic.consume).

mod common;

use std::time::Duration;

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

fn max_priority(n: i32) -> FieldTable {
    table(&[("x-max-priority", AMQPValue::LongInt(n))])
}

async fn queue(ch: &Channel, args: FieldTable) -> String {
    let name = unique("prio");
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

/// Publish with confirms so the message is in the queue on return.
async fn publish(ch: &Channel, queue: &str, body: &str, priority: Option<u8>) {
    let mut props = BasicProperties::default();
    if let Some(p) = priority {
        props = props.with_priority(p);
    }
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .expect("basic.publish");
    within(5, confirm).await.expect("confirm");
}

/// A channel in confirm mode.
async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

async fn try_get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(5, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
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

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool, args: FieldTable) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("basic.consume")
}

/// Assert an operation failed with exactly this reply code and text.
#[track_caller]
fn assert_exact_error<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16, text: &str) {
    match result {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            (reply_code(&e), reply_text(&e).as_deref()),
            (Some(code), Some(text)),
            "error was {e:?}"
        ),
    }
}

fn consumer_priority(p: i32) -> FieldTable {
    table(&[("x-priority", AMQPValue::LongInt(p))])
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

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(body).collect()
}

// ---- x-max-priority ----

#[tokio::test]
async fn higher_priority_messages_are_delivered_first_fifo_within_a_priority() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(10)).await;
    for (b, p) in [("a", 1), ("b", 5), ("c", 10), ("d", 5), ("e", 1)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    assert_eq!(drain(&ch, &q).await, owned(&["c", "b", "d", "a", "e"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_receives_messages_in_priority_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(10)).await;
    for (b, p) in [("low", 1), ("high", 9), ("mid", 4)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &q, true, FieldTable::default()).await;
    assert_eq!(
        bodies(&collect(&mut consumer, 300).await),
        owned(&["high", "mid", "low"])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_without_priority_count_as_zero() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(5)).await;
    publish(&ch, &q, "none-1", None).await;
    publish(&ch, &q, "zero", Some(0)).await;
    publish(&ch, &q, "one", Some(1)).await;
    publish(&ch, &q, "none-2", None).await;
    assert_eq!(
        drain(&ch, &q).await,
        owned(&["one", "none-1", "zero", "none-2"])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn priority_above_the_maximum_counts_as_the_maximum() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(5)).await;
    publish(&ch, &q, "four", Some(4)).await;
    publish(&ch, &q, "five-a", Some(5)).await;
    publish(&ch, &q, "nine", Some(9)).await;
    publish(&ch, &q, "five-b", Some(5)).await;
    publish(&ch, &q, "max", Some(255)).await;
    // 9 and 255 rank as 5: first come, first served among them.
    assert_eq!(
        drain(&ch, &q).await,
        owned(&["five-a", "nine", "five-b", "max", "four"])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_keeps_its_priority_property() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(5)).await;
    publish(&ch, &q, "nine", Some(9)).await;
    let m = try_get(&ch, &q, true).await.expect("a message");
    // Ranked as 5, but delivered with the priority it was published with.
    assert_eq!(m.delivery.properties.priority(), &Some(9));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_priority_255_orders_all_priorities() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(255)).await;
    for (b, p) in [("p0", 0), ("p254", 254), ("p255", 255), ("p128", 128)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    assert_eq!(drain(&ch, &q).await, owned(&["p255", "p254", "p128", "p0"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_priority_zero_is_accepted_and_delivers_in_publish_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(0)).await;
    for (b, p) in [("a", 0), ("b", 7), ("c", 3)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    assert_eq!(drain(&ch, &q).await, owned(&["a", "b", "c"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn queue_without_max_priority_ignores_message_priorities() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, FieldTable::default()).await;
    for (b, p) in [("a", 1), ("b", 9), ("c", 5)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    assert_eq!(drain(&ch, &q).await, owned(&["a", "b", "c"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_high_priority_message_goes_back_ahead_of_lower_ones() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(10)).await;
    publish(&ch, &q, "low-1", Some(1)).await;
    publish(&ch, &q, "low-2", Some(1)).await;
    publish(&ch, &q, "high", Some(9)).await;
    let held = try_get(&ch, &q, false).await.expect("high");
    assert_eq!(body(&held.delivery), "high");
    publish(&ch, &q, "mid", Some(5)).await;
    ch.basic_reject(
        held.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    assert_eq!(
        drain(&ch, &q).await,
        owned(&["high", "mid", "low-1", "low-2"])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_low_priority_message_goes_back_behind_higher_ones() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(10)).await;
    publish(&ch, &q, "low", Some(1)).await;
    let held = try_get(&ch, &q, false).await.expect("low");
    publish(&ch, &q, "high", Some(9)).await;
    publish(&ch, &q, "low-later", Some(1)).await;
    ch.basic_nack(
        held.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .unwrap();
    // Back at the head of its own priority: ahead of the later low one.
    assert_eq!(drain(&ch, &q).await, owned(&["high", "low", "low-later"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_requeued_by_channel_close_keep_priority_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, max_priority(10)).await;
    for (b, p) in [("a", 2), ("b", 8), ("c", 5)] {
        publish(&ch, &q, b, Some(p)).await;
    }
    let get_ch = conn.create_channel().await.unwrap();
    assert_eq!(
        body(&try_get(&get_ch, &q, false).await.unwrap().delivery),
        "b"
    );
    assert_eq!(
        body(&try_get(&get_ch, &q, false).await.unwrap().delivery),
        "c"
    );
    publish(&ch, &q, "d", Some(6)).await;
    get_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(drain(&ch, &q).await, owned(&["b", "d", "c", "a"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- consumer priorities ----

#[tokio::test]
async fn higher_priority_consumer_gets_every_message_while_it_has_credit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, FieldTable::default()).await;
    let low_ch = conn.create_channel().await.unwrap();
    let high_ch = conn.create_channel().await.unwrap();
    // The low one registers first: priority, not order, decides.
    let mut low = consume(&low_ch, &q, true, consumer_priority(1)).await;
    let mut high = consume(&high_ch, &q, true, consumer_priority(10)).await;
    for b in ["m1", "m2", "m3", "m4"] {
        publish(&ch, &q, b, None).await;
    }
    assert_eq!(
        bodies(&collect(&mut high, 300).await),
        owned(&["m1", "m2", "m3", "m4"])
    );
    assert!(collect(&mut low, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn lower_priority_consumer_gets_messages_only_when_higher_has_no_credit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, FieldTable::default()).await;
    let low_ch = conn.create_channel().await.unwrap();
    let high_ch = conn.create_channel().await.unwrap();
    high_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut low = consume(&low_ch, &q, true, consumer_priority(1)).await;
    let mut high = consume(&high_ch, &q, false, consumer_priority(10)).await;
    for b in ["m1", "m2", "m3"] {
        publish(&ch, &q, b, None).await;
    }
    let held = collect(&mut high, 300).await;
    assert_eq!(bodies(&held), owned(&["m1"]));
    assert_eq!(bodies(&collect(&mut low, 100).await), owned(&["m2", "m3"]));
    // With its credit back, the high-priority consumer is first again.
    held[0].ack(BasicAckOptions::default()).await.unwrap();
    publish(&ch, &q, "m4", None).await;
    assert_eq!(bodies(&collect(&mut high, 300).await), owned(&["m4"]));
    assert!(collect(&mut low, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn equal_priority_consumers_take_turns_in_registration_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, FieldTable::default()).await;
    let a_ch = conn.create_channel().await.unwrap();
    let b_ch = conn.create_channel().await.unwrap();
    let mut a = consume(&a_ch, &q, true, consumer_priority(3)).await;
    let mut b = consume(&b_ch, &q, true, consumer_priority(3)).await;
    for m in ["m1", "m2", "m3", "m4"] {
        publish(&ch, &q, m, None).await;
    }
    assert_eq!(bodies(&collect(&mut a, 300).await), owned(&["m1", "m3"]));
    assert_eq!(bodies(&collect(&mut b, 100).await), owned(&["m2", "m4"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn negative_consumer_priority_ranks_below_the_default() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = queue(&ch, FieldTable::default()).await;
    let neg_ch = conn.create_channel().await.unwrap();
    let default_ch = conn.create_channel().await.unwrap();
    let mut negative = consume(&neg_ch, &q, true, consumer_priority(-5)).await;
    let mut default = consume(&default_ch, &q, true, FieldTable::default()).await;
    for m in ["m1", "m2"] {
        publish(&ch, &q, m, None).await;
    }
    assert_eq!(
        bodies(&collect(&mut default, 300).await),
        owned(&["m1", "m2"])
    );
    assert!(collect(&mut negative, 100).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_integer_consumer_priority_is_refused_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, FieldTable::default()).await;
    let res = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-priority", AMQPValue::LongString("high".into()))]),
        )
        .await;
    assert_exact_error(
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': \"expected integer, got longstr\""
        ),
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
