//! basic.consume, basic.cancel, basic.qos, basic.deliver and basic.get.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn, RawFrame};
use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};

/// Assert an error carries exactly this reply code and text.
#[track_caller]
fn assert_exact_error(err: &lapin::Error, code: u16, text: &str) {
    assert_eq!(
        (reply_code(err), reply_text(err).as_deref()),
        (Some(code), Some(text)),
        "error was {err:?}"
    );
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish");
}

async fn publish_n(ch: &Channel, queue: &str, prefix: &str, n: usize) {
    for i in 1..=n {
        publish(ch, "", queue, format!("{prefix}{i}").as_bytes()).await;
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

async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within(5, consumer.next())
        .await
        .expect("consumer ended")
        .expect("delivery error")
}

/// Every delivery that arrives on `consumer` within `ms` milliseconds.
async fn drain_for(consumer: &mut Consumer, ms: u64) -> Vec<Delivery> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, consumer.next()).await {
        out.push(d);
    }
    out
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Ready messages in `queue`, as queue.declare(passive) reports them.
async fn ready_count(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive queue.declare")
    .message_count()
}

async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    within(5, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

// ---- basic.consume ----

#[tokio::test]
async fn consume_echoes_client_chosen_tag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tag = unique("my-tag");
    let mut consumer = consume(&ch, &queue, &tag, false).await;
    assert_eq!(consumer.tag().as_str(), tag);
    publish(&ch, "", &queue, b"m").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"m");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consume_with_empty_tag_gets_server_generated_ctag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let a = consume(&ch, &queue, "", false).await;
    let b = consume(&ch, &queue, "", false).await;
    assert!(
        a.tag().as_str().starts_with("amq.ctag-"),
        "tag was {:?}",
        a.tag()
    );
    assert!(a.tag().as_str().len() > "amq.ctag-".len());
    assert!(b.tag().as_str().starts_with("amq.ctag-"));
    assert_ne!(a.tag(), b.tag());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reusing_consumer_tag_on_channel_closes_connection_with_530() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    let tag = unique("dup");
    let _first = consume(&ch, &queue, &tag, false).await;
    let second = ch
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(
        second.is_err(),
        "second consume with the same tag succeeded"
    );
    let err = next_error(&mut events).await;
    assert_exact_error(
        &err,
        530,
        &format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
    );
    within(5, async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn same_consumer_tag_on_two_channels_is_allowed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let ch2 = conn.create_channel().await.unwrap();
    let queue = temp_queue(&ch).await;
    let tag = unique("shared");
    let a = consume(&ch, &queue, &tag, false).await;
    let b = consume(&ch2, &queue, &tag, false).await;
    assert_eq!(a.tag().as_str(), tag);
    assert_eq!(b.tag().as_str(), tag);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn no_ack_consumer_messages_are_settled_without_ack() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, "m", 3).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&consume_ch, &queue, "", true).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next_delivery(&mut consumer).await;
        got.push((body(&d), d.delivery_tag, d.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("m1".to_string(), 1, false),
            ("m2".to_string(), 2, false),
            ("m3".to_string(), 3, false)
        ]
    );
    // Closing the channel requeues nothing: the messages were settled on delivery.
    consume_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 0);
    assert!(get(&ch, &queue, true).await.is_none());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn second_consumer_on_exclusively_consumed_queue_is_refused_with_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    // Keep the consumer alive: lapin cancels a dropped consumer.
    let _exclusive = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let res = ch2
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_amqp_error(
        res,
        403,
        &format!("ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use"),
    );
    // Only ch2 closed: the exclusive consumer's channel still works.
    publish(&ch, "", &queue, b"still mine").await;
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_consume_on_queue_with_a_consumer_is_refused_with_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let _plain = consume(&ch, &queue, "", false).await;
    let ch2 = conn.create_channel().await.unwrap();
    let res = ch2
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_amqp_error(
        res,
        403,
        &format!("ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use"),
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_consumer_can_be_replaced_after_cancel() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let opts = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let tag = unique("excl");
    let _first = ch
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            opts,
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
        .unwrap();
    let mut again = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            opts,
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(&ch, "", &queue, b"x").await;
    assert_eq!(next_delivery(&mut again).await.data, b"x");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consume_with_arguments_is_accepted() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), AMQPValue::LongInt(5));
    args.insert("x-custom-thing".into(), AMQPValue::LongString("v".into()));
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .unwrap();
    publish(&ch, "", &queue, b"with args").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"with args");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consume_on_missing_queue_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = unique("missing-q");
    let res = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_amqp_error(
        res,
        404,
        &format!("NOT_FOUND - no queue '{queue}' in vhost '/'"),
    );
    assert!(!ch.status().connected());
    // The connection is fine.
    let ch2 = conn.create_channel().await.unwrap();
    temp_queue(&ch2).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.cancel ----

#[tokio::test]
async fn cancel_stops_deliveries() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tag = unique("c");
    let mut consumer = consume(&ch, &queue, &tag, true).await;
    publish(&ch, "", &queue, b"before").await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"before");
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&ch, "", &queue, b"after").await;
    // The stream ends rather than delivering "after".
    let rest = within(5, async {
        let mut rest = Vec::new();
        while let Some(d) = consumer.next().await {
            rest.push(d.unwrap().data);
        }
        rest
    })
    .await;
    assert!(rest.is_empty(), "got {rest:?} after cancel");
    let left = get(&ch, &queue, true).await.expect("message left in queue");
    assert_eq!(left.delivery.data, b"after");
    assert!(!left.delivery.redelivered);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unacked_messages_of_cancelled_consumer_can_still_be_acked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, "m", 2).await;
    let tag = unique("c");
    let mut consumer = consume(&ch, &queue, &tag, false).await;
    let d1 = next_delivery(&mut consumer).await;
    let d2 = next_delivery(&mut consumer).await;
    assert_eq!((d1.delivery_tag, d2.delivery_tag), (1, 2));
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
        .unwrap();
    ch.basic_ack(2, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // A round trip proves the ack did not close the channel.
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    ch.close(200, "bye".into()).await.unwrap();
    // Nothing was requeued by the close: both acks took effect.
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(ready_count(&ch2, &queue).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn cancelled_consumers_unacked_messages_are_requeued_when_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, "m", 2).await;
    let tag = unique("c");
    let mut consumer = consume(&ch, &queue, &tag, false).await;
    next_delivery(&mut consumer).await;
    next_delivery(&mut consumer).await;
    ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Cancelling does not requeue.
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(ready_count(&ch2, &queue).await, 0);
    ch.close(200, "bye".into()).await.unwrap();
    let a = get(&ch2, &queue, true).await.expect("m1 requeued");
    let b = get(&ch2, &queue, true).await.expect("m2 requeued");
    assert_eq!(
        (a.delivery.data.as_slice(), a.delivery.redelivered),
        (&b"m1"[..], true)
    );
    assert_eq!(
        (b.delivery.data.as_slice(), b.delivery.redelivered),
        (&b"m2"[..], true)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn deleting_queue_cancels_its_consumers() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let mut consumer = consume(&ch, &queue, "", true).await;
    let ch2 = conn.create_channel().await.unwrap();
    ch2.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // lapin ends the consumer stream when the server sends basic.cancel.
    let next = within(5, consumer.next()).await;
    assert!(
        next.is_none(),
        "expected the consumer to be cancelled, got {next:?}"
    );
    // The channel itself stays open.
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.qos ----

#[tokio::test]
async fn consumer_prefetch_limits_unacked_deliveries_per_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&ch, &queue, "", false).await;
    publish_n(&ch, &queue, "m", 5).await;
    let first = drain_for(&mut consumer, 300).await;
    assert_eq!(
        first.iter().map(body).collect::<Vec<_>>(),
        vec!["m1", "m2"],
        "prefetch 2 allows exactly two unacked"
    );
    ch.basic_ack(first[0].delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let third = next_delivery(&mut consumer).await;
    assert_eq!(body(&third), "m3");
    assert_eq!(third.delivery_tag, 3);
    let more = drain_for(&mut consumer, 200).await;
    assert!(more.is_empty(), "got {} more beyond the limit", more.len());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn multiple_ack_frees_several_prefetch_slots() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&ch, &queue, "", false).await;
    publish_n(&ch, &queue, "m", 6).await;
    let first = drain_for(&mut consumer, 300).await;
    assert_eq!(first.len(), 2);
    ch.basic_ack(2, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let next = drain_for(&mut consumer, 300).await;
    assert_eq!(next.iter().map(body).collect::<Vec<_>>(), vec!["m3", "m4"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn global_prefetch_is_shared_by_consumers_on_the_channel() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    ch.basic_qos(2, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q1, "", false).await;
    let mut c2 = consume(&ch, &q2, "", false).await;
    let pub_ch = conn.create_channel().await.unwrap();
    publish_n(&pub_ch, &q1, "a", 3).await;
    publish_n(&pub_ch, &q2, "b", 3).await;
    let mut got1 = drain_for(&mut c1, 300).await;
    let got2 = drain_for(&mut c2, 100).await;
    assert_eq!(
        got1.len() + got2.len(),
        2,
        "channel-wide prefetch 2: got {} + {}",
        got1.len(),
        got2.len()
    );
    // One ack frees exactly one slot for the whole channel.
    let first = if got1.is_empty() { &got2[0] } else { &got1[0] };
    ch.basic_ack(first.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    got1.extend(drain_for(&mut c1, 300).await);
    let more2 = drain_for(&mut c2, 100).await;
    assert_eq!(got1.len() + got2.len() + more2.len(), 3);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn stricter_of_consumer_and_channel_prefetch_wins() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let pub_ch = conn.create_channel().await.unwrap();
    // Per-consumer limit 1, channel-wide limit 3, four consumers. (The order
    // matters: in RabbitMQ a later global=false qos lifts the channel limit.)
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let q = temp_queue(&ch).await;
        consumers.push(consume(&ch, &q, "", false).await);
        publish_n(&pub_ch, &q, "m", 3).await;
    }
    let mut counts = Vec::new();
    for c in consumers.iter_mut() {
        counts.push(drain_for(c, 150).await.len());
    }
    assert!(
        counts.iter().all(|&n| n <= 1),
        "per-consumer limit 1 exceeded: {counts:?}"
    );
    assert_eq!(
        counts.iter().sum::<usize>(),
        3,
        "channel limit 3 should cap the total: {counts:?}"
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_qos_after_global_qos_lifts_the_channel_limit() {
    // RabbitMQ's basic.qos(global=false) handler calls unlimit_prefetch on the
    // channel limiter, so the earlier global=true limit no longer applies.
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let pub_ch = conn.create_channel().await.unwrap();
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let q = temp_queue(&ch).await;
        consumers.push(consume(&ch, &q, "", false).await);
        publish_n(&pub_ch, &q, "m", 3).await;
    }
    let mut counts = Vec::new();
    for c in consumers.iter_mut() {
        counts.push(drain_for(c, 150).await.len());
    }
    assert_eq!(counts, vec![1, 1, 1, 1]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_prefetch_stricter_than_channel_prefetch_limits_each_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let pub_ch = conn.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions { global: true })
        .await
        .unwrap();
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    let mut c1 = consume(&ch, &q1, "", false).await;
    let mut c2 = consume(&ch, &q2, "", false).await;
    publish_n(&pub_ch, &q1, "a", 5).await;
    publish_n(&pub_ch, &q2, "b", 5).await;
    let got1 = drain_for(&mut c1, 300).await;
    let got2 = drain_for(&mut c2, 100).await;
    assert_eq!(got1.iter().map(body).collect::<Vec<_>>(), vec!["a1", "a2"]);
    assert_eq!(got2.iter().map(body).collect::<Vec<_>>(), vec!["b1", "b2"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn qos_change_applies_only_to_consumers_created_afterwards() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let pub_ch = conn.create_channel().await.unwrap();
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut before = consume(&ch, &q1, "", false).await;
    ch.basic_qos(3, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut after = consume(&ch, &q2, "", false).await;
    publish_n(&pub_ch, &q1, "a", 5).await;
    publish_n(&pub_ch, &q2, "b", 5).await;
    let got_before = drain_for(&mut before, 300).await;
    let got_after = drain_for(&mut after, 100).await;
    assert_eq!(got_before.iter().map(body).collect::<Vec<_>>(), vec!["a1"]);
    assert_eq!(
        got_after.iter().map(body).collect::<Vec<_>>(),
        vec!["b1", "b2", "b3"]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn prefetch_count_zero_means_unlimited() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    ch.basic_qos(0, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&ch, &queue, "", false).await;
    publish_n(&ch, &queue, "m", 5).await;
    let got = drain_for(&mut consumer, 300).await;
    assert_eq!(got.len(), 5);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn prefetch_does_not_limit_no_ack_consumers() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&ch, &queue, "", true).await;
    publish_n(&ch, &queue, "m", 5).await;
    let got = drain_for(&mut consumer, 300).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        vec!["m1", "m2", "m3", "m4", "m5"]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn basic_get_ignores_the_prefetch_limit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    publish_n(&ch, &queue, "m", 3).await;
    let mut tags = Vec::new();
    for _ in 0..3 {
        tags.push(
            get(&ch, &queue, false)
                .await
                .expect("message")
                .delivery
                .delivery_tag,
        );
    }
    assert_eq!(tags, vec![1, 2, 3]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.deliver ----

#[tokio::test]
async fn delivery_tags_start_at_one_on_each_channel() {
    let broker = TestBroker::start().await;
    let (conn, ch1) = broker.channel().await;
    let ch2 = conn.create_channel().await.unwrap();
    let q1 = temp_queue(&ch1).await;
    let q2 = temp_queue(&ch1).await;
    publish_n(&ch1, &q1, "a", 3).await;
    publish_n(&ch1, &q2, "b", 3).await;
    let mut c1 = consume(&ch1, &q1, "", false).await;
    let mut c2 = consume(&ch2, &q2, "", false).await;
    let mut tags1 = Vec::new();
    let mut tags2 = Vec::new();
    for _ in 0..3 {
        tags1.push(next_delivery(&mut c1).await.delivery_tag);
        tags2.push(next_delivery(&mut c2).await.delivery_tag);
    }
    assert_eq!(tags1, vec![1, 2, 3]);
    assert_eq!(tags2, vec![1, 2, 3]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn basic_get_and_deliveries_share_the_channel_tag_sequence() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q1 = temp_queue(&ch).await;
    let q2 = temp_queue(&ch).await;
    publish_n(&ch, &q1, "a", 2).await;
    let g = get(&ch, &q1, false).await.expect("a1");
    assert_eq!(g.delivery.delivery_tag, 1);
    let mut consumer = consume(&ch, &q2, "", false).await;
    publish(&ch, "", &q2, b"b1").await;
    assert_eq!(next_delivery(&mut consumer).await.delivery_tag, 2);
    let g = get(&ch, &q1, false).await.expect("a2");
    assert_eq!(g.delivery.delivery_tag, 3);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_are_distributed_round_robin_across_consumers() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(consume(&ch, &queue, "", true).await);
    }
    let pub_ch = conn.create_channel().await.unwrap();
    publish_n(&pub_ch, &queue, "m", 9).await;
    let mut seen = Vec::new();
    for c in consumers.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(body(&next_delivery(c).await));
        }
        seen.push(got);
    }
    for c in consumers.iter_mut() {
        assert!(drain_for(c, 100).await.is_empty());
    }
    assert_eq!(
        seen,
        vec![
            vec!["m1", "m4", "m7"],
            vec!["m2", "m5", "m8"],
            vec!["m3", "m6", "m9"]
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumer_without_credit_is_skipped() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(1, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut idle = consume(&ch, &queue, "", false).await;
    let mut busy = consume(&ch, &queue, "", false).await;
    let pub_ch = conn.create_channel().await.unwrap();
    publish_n(&pub_ch, &queue, "m", 6).await;
    let mut busy_got = Vec::new();
    while busy_got.len() < 5 {
        let d = next_delivery(&mut busy).await;
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .unwrap();
        busy_got.push(body(&d));
    }
    let idle_got = drain_for(&mut idle, 200).await;
    assert_eq!(idle_got.iter().map(body).collect::<Vec<_>>(), vec!["m1"]);
    assert_eq!(busy_got, vec!["m2", "m3", "m4", "m5", "m6"]);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delivery_carries_exchange_and_routing_key() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let key = unique("rk");
    ch.queue_bind(
        queue.as_str().into(),
        "amq.direct".into(),
        key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, &queue, "", true).await;
    publish(&ch, "amq.direct", &key, b"routed").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.exchange.as_str(), "amq.direct");
    assert_eq!(d.routing_key.as_str(), key);
    assert!(!d.redelivered);
    assert_eq!(d.data, b"routed");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.get ----

#[tokio::test]
async fn get_ok_carries_remaining_count_exchange_and_routing_key() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let key = unique("rk");
    ch.queue_bind(
        queue.as_str().into(),
        "amq.direct".into(),
        key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for b in ["g1", "g2", "g3"] {
        publish(&ch, "amq.direct", &key, b.as_bytes()).await;
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let g = get(&ch, &queue, false).await.expect("a message");
        seen.push((
            body(&g.delivery),
            g.message_count,
            g.delivery.delivery_tag,
            g.delivery.redelivered,
            g.delivery.exchange.to_string(),
            g.delivery.routing_key.to_string(),
        ));
    }
    let x = "amq.direct".to_string();
    assert_eq!(
        seen,
        vec![
            ("g1".into(), 2, 1, false, x.clone(), key.clone()),
            ("g2".into(), 1, 2, false, x.clone(), key.clone()),
            ("g3".into(), 0, 3, false, x, key.clone()),
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn get_on_empty_queue_returns_get_empty() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    assert!(get(&ch, &queue, false).await.is_none());
    assert!(get(&ch, &queue, true).await.is_none());
    // The channel stays usable and delivery tags were not consumed.
    publish(&ch, "", &queue, b"x").await;
    let g = get(&ch, &queue, false).await.expect("x");
    assert_eq!(g.delivery.delivery_tag, 1);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn get_with_no_ack_removes_the_message_at_once() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, "m", 2).await;
    let get_ch = conn.create_channel().await.unwrap();
    let g = get(&get_ch, &queue, true).await.expect("m1");
    assert_eq!(body(&g.delivery), "m1");
    assert_eq!(g.message_count, 1);
    assert_eq!(g.delivery.delivery_tag, 1);
    // Closing the channel does not bring it back.
    get_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 1);
    let g = get(&ch, &queue, true).await.expect("m2");
    assert_eq!(body(&g.delivery), "m2");
    assert!(!g.delivery.redelivered);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn get_without_ack_leaves_message_unacked_until_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, b"m1").await;
    let get_ch = conn.create_channel().await.unwrap();
    let g = get(&get_ch, &queue, false).await.expect("m1");
    assert!(!g.delivery.redelivered);
    assert_eq!(ready_count(&ch, &queue).await, 0);
    assert!(get(&ch, &queue, false).await.is_none());
    get_ch.close(200, "bye".into()).await.unwrap();
    let again = get(&ch, &queue, true).await.expect("m1 back");
    assert_eq!(again.delivery.data, b"m1");
    assert!(again.delivery.redelivered);
    assert_eq!(again.message_count, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn get_on_missing_queue_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = unique("missing-q");
    let res = ch
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await;
    assert_amqp_error(
        res,
        404,
        &format!("NOT_FOUND - no queue '{queue}' in vhost '/'"),
    );
    assert!(!ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- raw-client checks of the frames on the wire ----

fn queue_declare_exclusive(channel: u16) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(raw::short_str(""));
    args.push(0b0000_0100); // exclusive
    args.extend_from_slice(&0u32.to_be_bytes());
    raw::method(channel, 50, 10, &args)
}

fn consume_args(queue: &str, tag: &str, flags: u8) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(raw::short_str(queue));
    args.extend(raw::short_str(tag));
    args.push(flags);
    args.extend_from_slice(&0u32.to_be_bytes());
    args
}

fn cancel_args(tag: &str, nowait: bool) -> Vec<u8> {
    let mut args = raw::short_str(tag);
    args.push(nowait as u8);
    args
}

/// Read a short string at `*at` and advance.
fn read_short(p: &[u8], at: &mut usize) -> String {
    let len = p[*at] as usize;
    let s = String::from_utf8(p[*at + 1..*at + 1 + len].to_vec()).unwrap();
    *at += 1 + len;
    s
}

/// basic.deliver as (consumer tag, delivery tag, redelivered, exchange, routing key).
fn parse_deliver(f: &RawFrame) -> (String, u64, bool, String, String) {
    assert_eq!(f.method(), Some((60, 60)), "not a basic.deliver: {f:?}");
    let p = &f.payload[4..];
    let mut at = 0;
    let ctag = read_short(p, &mut at);
    let dtag = u64::from_be_bytes(p[at..at + 8].try_into().unwrap());
    at += 8;
    let redelivered = p[at] & 1 == 1;
    at += 1;
    let exchange = read_short(p, &mut at);
    let key = read_short(p, &mut at);
    assert_eq!(at, p.len(), "trailing bytes in basic.deliver");
    (ctag, dtag, redelivered, exchange, key)
}

/// A handshaken raw connection with channel 1 open and an exclusive queue.
async fn raw_with_queue(addr: std::net::SocketAddr) -> (RawConn, String) {
    let mut c = RawConn::handshake(addr).await;
    c.open_channel(1).await;
    c.send(&queue_declare_exclusive(1)).await;
    let ok = c.expect_method(50, 11).await;
    let mut at = 0;
    let name = read_short(&ok.payload[4..], &mut at);
    (c, name)
}

async fn raw_publish(c: &mut RawConn, exchange: &str, key: &str, body: &[u8]) {
    let mut bytes = raw::method(1, 60, 40, &raw::publish_args(exchange, key, 0));
    bytes.extend(raw::content_header(1, body.len() as u64, &[0, 0]));
    if !body.is_empty() {
        bytes.extend(raw::frame(3, 1, body));
    }
    c.send(&bytes).await;
}

#[tokio::test]
async fn basic_deliver_frame_carries_tags_flag_exchange_and_routing_key() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    let key = unique("rk");
    let mut bind = vec![0, 0];
    bind.extend(raw::short_str(&queue));
    bind.extend(raw::short_str("amq.direct"));
    bind.extend(raw::short_str(&key));
    bind.push(0);
    bind.extend_from_slice(&0u32.to_be_bytes());
    c.send(&raw::method(1, 50, 20, &bind)).await;
    c.expect_method(50, 21).await;
    c.send(&raw::method(
        1,
        60,
        20,
        &consume_args(&queue, "raw-ctag", 0),
    ))
    .await;
    let ok = c.expect_method(60, 21).await;
    let mut at = 0;
    assert_eq!(read_short(&ok.payload[4..], &mut at), "raw-ctag");
    raw_publish(&mut c, "amq.direct", &key, b"hello").await;
    let deliver = c.expect_method(60, 60).await;
    assert_eq!(deliver.channel, 1);
    assert_eq!(
        parse_deliver(&deliver),
        (
            "raw-ctag".into(),
            1,
            false,
            "amq.direct".into(),
            key.clone()
        )
    );
    let header = c.recv(Duration::from_secs(5)).await.unwrap();
    assert_eq!(header.kind, 2);
    assert_eq!(&header.payload[4..12], &5u64.to_be_bytes());
    let body = c.recv(Duration::from_secs(5)).await.unwrap();
    assert_eq!((body.kind, body.payload.as_slice()), (3, &b"hello"[..]));
    // Reject with requeue: the redelivery has the next tag and the redelivered bit.
    let mut reject = 1u64.to_be_bytes().to_vec();
    reject.push(1);
    c.send(&raw::method(1, 60, 90, &reject)).await;
    let again = c.expect_method(60, 60).await;
    assert_eq!(
        parse_deliver(&again),
        ("raw-ctag".into(), 2, true, "amq.direct".into(), key)
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn cancel_ok_echoes_the_consumer_tag() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(
        1,
        60,
        20,
        &consume_args(&queue, "to-cancel", 0),
    ))
    .await;
    c.expect_method(60, 21).await;
    c.send(&raw::method(1, 60, 30, &cancel_args("to-cancel", false)))
        .await;
    let ok = c.expect_method(60, 31).await;
    let mut at = 0;
    assert_eq!(read_short(&ok.payload[4..], &mut at), "to-cancel");
    assert_eq!(at, ok.payload.len() - 4);
    // No deliveries after the cancel.
    raw_publish(&mut c, "", &queue, b"late").await;
    let next = c.recv(Duration::from_millis(200)).await;
    assert_eq!(next, None, "frame after cancel-ok");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn cancel_of_unknown_tag_still_replies_cancel_ok() {
    let broker = TestBroker::start().await;
    let (mut c, _queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(
        1,
        60,
        30,
        &cancel_args("never-existed", false),
    ))
    .await;
    let ok = c.expect_method(60, 31).await;
    assert_eq!(ok.channel, 1);
    let mut at = 0;
    assert_eq!(read_short(&ok.payload[4..], &mut at), "never-existed");
    // The channel is still open.
    c.send(&queue_declare_exclusive(1)).await;
    c.expect_method(50, 11).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn deleting_queue_sends_basic_cancel_with_the_consumer_tag() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 60, 20, &consume_args(&queue, "doomed", 0)))
        .await;
    c.expect_method(60, 21).await;
    c.open_channel(2).await;
    let mut del = vec![0, 0];
    del.extend(raw::short_str(&queue));
    del.push(0);
    c.send(&raw::method(2, 50, 40, &del)).await;
    let mut cancel = None;
    let mut delete_ok = None;
    while cancel.is_none() || delete_ok.is_none() {
        let f = c.recv(Duration::from_secs(5)).await.expect("a frame");
        match f.method() {
            Some((60, 30)) => cancel = Some(f),
            Some((50, 41)) => delete_ok = Some(f),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let cancel = cancel.unwrap();
    assert_eq!(cancel.channel, 1);
    let p = &cancel.payload[4..];
    let mut at = 0;
    assert_eq!(read_short(p, &mut at), "doomed");
    assert_eq!(p[at], 1, "server-sent basic.cancel has nowait set");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn prefetch_size_nonzero_closes_connection_with_540() {
    let broker = TestBroker::start().await;
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    let mut qos = 10u32.to_be_bytes().to_vec();
    qos.extend_from_slice(&0u16.to_be_bytes());
    qos.push(0);
    c.send(&raw::method(1, 60, 10, &qos)).await;
    let close = c.expect_close().await;
    assert_eq!(
        close,
        (
            0,
            540,
            "NOT_IMPLEMENTED - prefetch_size!=0 (10)".to_string(),
            60,
            10
        )
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn consume_nowait_sends_no_consume_ok_but_delivers() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(
        1,
        60,
        20,
        &consume_args(&queue, "quiet", 0b1000),
    ))
    .await;
    raw_publish(&mut c, "", &queue, b"m1").await;
    let f = c.recv(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(
        f.method(),
        Some((60, 60)),
        "expected basic.deliver first, got {f:?}"
    );
    assert_eq!(
        parse_deliver(&f),
        ("quiet".into(), 1, false, "".into(), queue.clone())
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn cancel_nowait_sends_no_cancel_ok() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 60, 20, &consume_args(&queue, "quiet", 0)))
        .await;
    c.expect_method(60, 21).await;
    c.send(&raw::method(1, 60, 30, &cancel_args("quiet", true)))
        .await;
    raw_publish(&mut c, "", &queue, b"m1").await;
    let next = c.recv(Duration::from_millis(200)).await;
    assert_eq!(next, None, "no cancel-ok and no delivery expected");
    drop(c);
    broker.stop().await;
}
