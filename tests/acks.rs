//! basic.ack, basic.nack, basic.reject, basic.recover and requeueing on close.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::*;
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};

/// Assert an error carries exactly this reply code and text.
#[track_caller]
fn assert_exact_error(err: &lapin::Error, code: u16, text: &str) {
    assert_eq!(
        (reply_code(err), reply_text(err).as_deref()),
        (Some(code), Some(text)),
        "error was {err:?}"
    );
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

async fn publish_n(ch: &Channel, queue: &str, n: usize) {
    for i in 1..=n {
        publish(ch, queue, &format!("m{i}")).await;
    }
}

/// Wait until `queue` holds `n` ready messages.
async fn wait_for_ready(ch: &Channel, queue: &str, n: u32) {
    within(5, async {
        loop {
            let declared = ch
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive declare");
            if declared.message_count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn get(ch: &Channel, queue: &str) -> BasicGetMessage {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("a message")
}

async fn consume(ch: &Channel, queue: &str) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
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

/// Drain `queue` with no-ack gets on a fresh channel: (body, redelivered) in order.
async fn drain(conn: &Connection, queue: &str) -> Vec<(String, bool)> {
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push((body(&m.delivery), m.delivery.redelivered));
    }
    ch.close(200, "bye".into()).await.unwrap();
    out
}

fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

/// A named, non-exclusive queue other connections can use. Delete it at the end.
async fn shared_queue(ch: &Channel) -> String {
    let name = unique("acks-q");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

// ---- basic.ack ----

#[tokio::test]
async fn ack_multiple_acks_every_delivery_up_to_the_tag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 5).await;
    let get_ch = conn.create_channel().await.unwrap();
    for tag in 1..=5 {
        assert_eq!(get(&get_ch, &queue).await.delivery.delivery_tag, tag);
    }
    get_ch
        .basic_ack(3, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    // Only the two unacked ones come back.
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m4", true), ("m5", true)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn single_ack_acks_only_that_delivery() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 3).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..3 {
        get(&get_ch, &queue).await;
    }
    get_ch
        .basic_ack(2, BasicAckOptions::default())
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m1", true), ("m3", true)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ack_tag_zero_with_multiple_acks_everything_outstanding() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 4).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..4 {
        get(&get_ch, &queue).await;
    }
    get_ch
        .basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Still open: a round trip succeeds.
    get_ch
        .basic_qos(0, BasicQosOptions::default())
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ack_tag_zero_with_multiple_and_nothing_outstanding_is_harmless() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ack_tag_zero_without_multiple_is_an_unknown_tag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish(&ch, &queue, "m1").await;
    get(&ch, &queue).await;
    ch.basic_ack(0, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 0");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ack_of_unknown_delivery_tag_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 99");
    // A channel error only: the connection carries on.
    let ch2 = conn.create_channel().await.unwrap();
    temp_queue(&ch2).await;
    assert!(!ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn multiple_ack_beyond_the_last_delivered_tag_is_unknown() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    get(&ch, &queue).await;
    get(&ch, &queue).await;
    ch.basic_ack(5, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 5");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn acking_the_same_tag_twice_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    get(&ch, &queue).await;
    let second = get(&ch, &queue).await;
    assert_eq!(second.delivery.delivery_tag, 2);
    ch.basic_ack(2, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(2, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 2");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delivery_tags_belong_to_their_channel() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish(&ch, &queue, "m1").await;
    let other = conn.create_channel().await.unwrap();
    assert_eq!(get(&other, &queue).await.delivery.delivery_tag, 1);
    // Tag 1 was delivered on `other`, not on `ch`.
    ch.basic_ack(1, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 1");
    assert!(other.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nack_of_unknown_delivery_tag_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_nack(7, BasicNackOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 7");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_of_unknown_delivery_tag_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    ch.basic_reject(8, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 8");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

/// Open a raw channel 1 and send `method` with `args`; return the channel.close.
async fn raw_close_for(
    addr: std::net::SocketAddr,
    method: u16,
    args: &[u8],
) -> (u16, u16, String, u16, u16) {
    let mut c = RawConn::handshake(addr).await;
    c.open_channel(1).await;
    c.send(&raw::method(1, 60, method, args)).await;
    let close = c.expect_close().await;
    drop(c);
    close
}

fn tag_args(tag: u64, bits: u8) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.push(bits);
    v
}

#[tokio::test]
async fn unknown_tag_close_names_basic_ack() {
    let broker = TestBroker::start().await;
    let close = raw_close_for(broker.addr, 80, &tag_args(99, 0)).await;
    assert_eq!(
        close,
        (
            1,
            406,
            "PRECONDITION_FAILED - unknown delivery tag 99".into(),
            60,
            80
        )
    );
    broker.stop().await;
}

#[tokio::test]
async fn unknown_tag_close_names_basic_reject() {
    let broker = TestBroker::start().await;
    let close = raw_close_for(broker.addr, 90, &tag_args(3, 1)).await;
    assert_eq!(
        close,
        (
            1,
            406,
            "PRECONDITION_FAILED - unknown delivery tag 3".into(),
            60,
            90
        )
    );
    broker.stop().await;
}

#[tokio::test]
async fn unknown_tag_close_names_basic_nack() {
    let broker = TestBroker::start().await;
    let close = raw_close_for(broker.addr, 120, &tag_args(4, 0b10)).await;
    assert_eq!(
        close,
        (
            1,
            406,
            "PRECONDITION_FAILED - unknown delivery tag 4".into(),
            60,
            120
        )
    );
    broker.stop().await;
}

// ---- basic.nack / basic.reject ----

#[tokio::test]
async fn nack_with_requeue_redelivers_with_flag_set() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, &queue, "m1").await;
    let mut consumer = consume(&ch, &queue).await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(
        (body(&first), first.delivery_tag, first.redelivered),
        ("m1".into(), 1, false)
    );
    ch.basic_nack(
        1,
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    )
    .await
    .unwrap();
    let again = next_delivery(&mut consumer).await;
    assert_eq!(
        (body(&again), again.delivery_tag, again.redelivered),
        ("m1".into(), 2, true)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nack_multiple_with_requeue_requeues_everything_up_to_the_tag() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 4).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..4 {
        get(&get_ch, &queue).await;
    }
    get_ch
        .basic_nack(
            3,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        )
        .await
        .unwrap();
    // m1..m3 are back, m4 is still unacked on get_ch.
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m1", true), ("m2", true), ("m3", true)])
    );
    get_ch
        .basic_ack(4, BasicAckOptions::default())
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nack_tag_zero_with_multiple_requeues_everything_outstanding() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 3).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..3 {
        get(&get_ch, &queue).await;
    }
    get_ch
        .basic_nack(
            0,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m1", true), ("m2", true), ("m3", true)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nack_without_requeue_drops_the_message() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    let get_ch = conn.create_channel().await.unwrap();
    get(&get_ch, &queue).await;
    get(&get_ch, &queue).await;
    get_ch
        .basic_nack(
            2,
            BasicNackOptions {
                multiple: true,
                requeue: false,
            },
        )
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_with_requeue_redelivers_with_flag_set() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, &queue, "m1").await;
    let first = get(&ch, &queue).await;
    assert!(!first.delivery.redelivered);
    ch.basic_reject(1, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let again = get(&ch, &queue).await;
    assert_eq!(body(&again.delivery), "m1");
    assert_eq!(again.delivery.delivery_tag, 2);
    assert!(again.delivery.redelivered);
    assert_eq!(again.message_count, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_without_requeue_drops_the_message() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    let get_ch = conn.create_channel().await.unwrap();
    get(&get_ch, &queue).await;
    get_ch
        .basic_reject(1, BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    // The channel stays open and m1 is gone for good.
    get_ch
        .basic_qos(0, BasicQosOptions::default())
        .await
        .unwrap();
    get_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(drain(&conn, &queue).await, owned(&[("m2", false)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nacked_messages_return_to_their_original_positions() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 5).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..5 {
        get(&get_ch, &queue).await;
    }
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    get_ch.basic_nack(4, requeue).await.unwrap();
    get_ch.basic_nack(2, requeue).await.unwrap();
    // m2 before m4 although m4 was requeued first.
    let m = get(&ch, &queue).await;
    assert_eq!(
        (body(&m.delivery), m.delivery.redelivered, m.message_count),
        ("m2".into(), true, 1)
    );
    let m = get(&ch, &queue).await;
    assert_eq!(
        (body(&m.delivery), m.delivery.redelivered, m.message_count),
        ("m4".into(), true, 0)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_message_goes_ahead_of_later_published_ones() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 3).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..3 {
        get(&get_ch, &queue).await;
    }
    publish(&ch, &queue, "m4").await;
    get_ch
        .basic_reject(2, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let a = get(&ch, &queue).await;
    let b = get(&ch, &queue).await;
    assert_eq!(
        vec![
            (body(&a.delivery), a.delivery.redelivered),
            (body(&b.delivery), b.delivery.redelivered)
        ],
        owned(&[("m2", true), ("m4", false)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn requeued_consumer_deliveries_go_ahead_of_later_published_ones() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    publish_n(&ch, &queue, 3).await;
    let mut consumer = consume(&ch, &queue).await;
    let mut tags = Vec::new();
    for _ in 0..3 {
        tags.push(next_delivery(&mut consumer).await.delivery_tag);
    }
    assert_eq!(tags, vec![1, 2, 3]);
    let pub_ch = conn.create_channel().await.unwrap();
    publish(&pub_ch, &queue, "m4").await;
    ch.basic_reject(2, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let next = next_delivery(&mut consumer).await;
    assert_eq!(
        (body(&next), next.delivery_tag, next.redelivered),
        ("m2".into(), 4, true)
    );
    ch.basic_ack(1, BasicAckOptions::default()).await.unwrap();
    let last = next_delivery(&mut consumer).await;
    assert_eq!(
        (body(&last), last.delivery_tag, last.redelivered),
        ("m4".into(), 5, false)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_requeued_in_reverse_are_restored_in_publish_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 4).await;
    let get_ch = conn.create_channel().await.unwrap();
    for _ in 0..4 {
        get(&get_ch, &queue).await;
    }
    publish(&ch, &queue, "m5").await;
    for tag in [3, 1] {
        get_ch
            .basic_reject(tag, BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    get_ch
        .basic_qos(0, BasicQosOptions::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = get(&ch, &queue).await;
        seen.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(seen, owned(&[("m1", true), ("m3", true), ("m5", false)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- basic.recover ----

#[tokio::test]
async fn recover_with_requeue_redelivers_all_unacked_with_flag_set() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 3).await;
    for _ in 0..3 {
        get(&ch, &queue).await;
    }
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = get(&ch, &queue).await;
        seen.push((
            body(&m.delivery),
            m.delivery.redelivered,
            m.delivery.delivery_tag,
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("m1".to_string(), true, 4),
            ("m2".to_string(), true, 5),
            ("m3".to_string(), true, 6)
        ]
    );
    // The old tags are gone.
    let mut events = Box::pin(conn.events_listener());
    ch.basic_ack(1, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 406, "PRECONDITION_FAILED - unknown delivery tag 1");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn recover_redelivers_to_the_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    let mut consumer = consume(&ch, &queue).await;
    next_delivery(&mut consumer).await;
    next_delivery(&mut consumer).await;
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let a = next_delivery(&mut consumer).await;
    let b = next_delivery(&mut consumer).await;
    assert_eq!(
        vec![
            (body(&a), a.delivery_tag, a.redelivered),
            (body(&b), b.delivery_tag, b.redelivered)
        ],
        vec![("m1".to_string(), 3, true), ("m2".to_string(), 4, true)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn recover_async_requeues_all_unacked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    get(&ch, &queue).await;
    get(&ch, &queue).await;
    ch.basic_recover_async(BasicRecoverAsyncOptions { requeue: true })
        .await
        .unwrap();
    // recover-async has no reply; a synchronous method orders after it.
    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
    let a = get(&ch, &queue).await;
    let b = get(&ch, &queue).await;
    assert_eq!(
        vec![
            (
                body(&a.delivery),
                a.delivery.redelivered,
                a.delivery.delivery_tag
            ),
            (
                body(&b.delivery),
                b.delivery.redelivered,
                b.delivery.delivery_tag
            )
        ],
        vec![("m1".to_string(), true, 3), ("m2".to_string(), true, 4)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn recover_without_requeue_closes_connection_with_540() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let res = ch
        .basic_recover(BasicRecoverOptions { requeue: false })
        .await;
    assert!(res.is_err());
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 540, "NOT_IMPLEMENTED - requeue=false");
    within(5, async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn recover_async_without_requeue_closes_connection_with_540() {
    let broker = TestBroker::start().await;
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    c.send(&raw::method(1, 60, 100, &[0])).await;
    let close = c.expect_close().await;
    assert_eq!(
        close,
        (0, 540, "NOT_IMPLEMENTED - requeue=false".into(), 60, 100)
    );
    drop(c);
    broker.stop().await;
}

// ---- requeue on close ----

#[tokio::test]
async fn closing_channel_requeues_unacked_in_original_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish_n(&ch, &queue, 4).await;
    let consume_ch = conn.create_channel().await.unwrap();
    consume_ch
        .basic_qos(4, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume(&consume_ch, &queue).await;
    for _ in 0..4 {
        next_delivery(&mut consumer).await;
    }
    publish(&ch, &queue, "m5").await;
    publish(&ch, &queue, "m6").await;
    consume_ch
        .basic_ack(2, BasicAckOptions::default())
        .await
        .unwrap();
    // The freed slot takes m5; m6 stays ready.
    let m5 = next_delivery(&mut consumer).await;
    assert_eq!((body(&m5), m5.delivery_tag), ("m5".into(), 5));
    consume_ch.close(200, "bye".into()).await.unwrap();
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[
            ("m1", true),
            ("m3", true),
            ("m4", true),
            ("m5", true),
            ("m6", false)
        ])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn closing_connection_requeues_unacked_for_other_connections() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = shared_queue(&ch).await;
    publish_n(&ch, &queue, 3).await;
    let (conn2, ch2) = broker.channel().await;
    let mut consumer = consume(&ch2, &queue).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(body(&next_delivery(&mut consumer).await));
    }
    assert_eq!(got, vec!["m1", "m2", "m3"]);
    conn2.close(200, "bye".into()).await.unwrap();
    let (conn3, ch3) = broker.channel().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = get(&ch3, &queue).await;
        seen.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(seen, owned(&[("m1", true), ("m2", true), ("m3", true)]));
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    conn3.close(200, "bye".into()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dropped_socket_requeues_unacked_messages() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = shared_queue(&ch).await;
    publish_n(&ch, &queue, 2).await;
    // Publishes are asynchronous: the raw client below may otherwise ask
    // before the broker has them.
    wait_for_ready(&ch, &queue, 2).await;
    // A raw client takes both messages and vanishes without closing.
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    for _ in 0..2 {
        let mut args = vec![0, 0];
        args.extend(raw::short_str(&queue));
        args.push(0);
        c.send(&raw::method(1, 60, 70, &args)).await;
        c.expect_method(60, 71).await;
    }
    drop(c);
    let mut seen = Vec::new();
    within(5, async {
        while seen.len() < 2 {
            match ch
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(m) => seen.push((body(&m.delivery), m.delivery.redelivered)),
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(seen, owned(&[("m1", true), ("m2", true)]));
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn recover_ok_is_sent_before_the_redeliveries() {
    // Clients (lapin among them) discard deliveries buffered before
    // recover-ok, so the redeliveries must follow it on the wire.
    let broker = TestBroker::start().await;
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    let mut declare = vec![0, 0];
    declare.extend(raw::short_str(""));
    declare.push(0b100);
    declare.extend_from_slice(&0u32.to_be_bytes());
    c.send(&raw::method(1, 50, 10, &declare)).await;
    let ok = c.expect_method(50, 11).await;
    let p = &ok.payload[4..];
    let queue = String::from_utf8(p[1..1 + p[0] as usize].to_vec()).unwrap();
    let mut bytes = Vec::new();
    for body in [b"m1", b"m2"] {
        bytes.extend(raw::method(1, 60, 40, &raw::publish_args("", &queue, 0)));
        bytes.extend(raw::content_header(1, 2, &[0, 0]));
        bytes.extend(raw::frame(3, 1, body));
    }
    let mut consume = vec![0, 0];
    consume.extend(raw::short_str(&queue));
    consume.extend(raw::short_str("ctag"));
    consume.push(0);
    consume.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend(raw::method(1, 60, 20, &consume));
    c.send(&bytes).await;
    c.expect_method(60, 21).await;
    c.expect_method(60, 60).await;
    c.expect_method(60, 60).await;
    // Skip the second delivery's header and body.
    c.recv(Duration::from_secs(5)).await.unwrap();
    c.recv(Duration::from_secs(5)).await.unwrap();
    c.send(&raw::method(1, 60, 110, &[1])).await;
    let mut methods = Vec::new();
    while methods.len() < 3 {
        let f = c.recv(Duration::from_secs(5)).await.expect("a frame");
        if let Some(m) = f.method() {
            let redelivered = (m == (60, 60)).then(|| {
                let q = &f.payload[4..];
                let at = 1 + q[0] as usize + 8;
                q[at] & 1 == 1
            });
            methods.push((m, redelivered));
        }
    }
    assert_eq!(
        methods,
        vec![
            ((60, 111), None),
            ((60, 60), Some(true)),
            ((60, 60), Some(true))
        ]
    );
    drop(c);
    broker.stop().await;
}
