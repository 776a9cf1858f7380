//! Publisher confirms (confirm.select) and transactions (tx.*).

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::*;
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, BasicReturnMessage};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};

async fn publish(
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

async fn try_get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(5, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

fn body(m: &BasicGetMessage) -> String {
    String::from_utf8(m.delivery.data.clone()).unwrap()
}

/// Drain `queue` with no-ack gets on a fresh channel: (body, redelivered) in order.
async fn drain(conn: &Connection, queue: &str) -> Vec<(String, bool)> {
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = try_get(&ch, queue, true).await {
        out.push((body(&m), m.delivery.redelivered));
    }
    ch.close(200, "bye".into()).await.unwrap();
    out
}

fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

/// Returned messages on a non-confirm channel, polled until `n` have arrived.
async fn wait_for_returns(ch: &Channel, n: usize) -> Vec<BasicReturnMessage> {
    let mut all = Vec::new();
    within(5, async {
        while all.len() < n {
            all.extend(ch.wait_for_confirms().await.unwrap());
            if all.len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    all
}

// ---- publisher confirms ----

#[tokio::test]
async fn confirmed_publish_is_acked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        publish(&ch, "", &queue, "m1", false).await,
        Confirmation::Ack(None)
    );
    assert_eq!(
        publish(&ch, "", &queue, "m2", false).await,
        Confirmation::Ack(None)
    );
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m1", false), ("m2", false)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn publish_without_confirm_select_is_not_confirmed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    assert_eq!(
        publish(&ch, "", &queue, "m1", false).await,
        Confirmation::NotRequested
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unroutable_mandatory_publish_is_returned_then_acked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let key = unique("nowhere");
    match publish(&ch, "amq.direct", &key, "lost", true).await {
        Confirmation::Ack(Some(returned)) => {
            assert_eq!(returned.reply_code, 312);
            assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(returned.delivery.exchange.as_str(), "amq.direct");
            assert_eq!(returned.delivery.routing_key.as_str(), key);
            assert_eq!(returned.delivery.data, b"lost");
        }
        other => panic!("expected a returned-then-acked message, got {other:?}"),
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unroutable_non_mandatory_publish_is_acked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let key = unique("nowhere");
    assert_eq!(
        publish(&ch, "amq.direct", &key, "dropped", false).await,
        Confirmation::Ack(None)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn publish_routed_to_several_queues_is_confirmed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let exchange = unique("fan");
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut queues = Vec::new();
    for _ in 0..3 {
        let q = temp_queue(&ch).await;
        ch.queue_bind(
            q.as_str().into(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        queues.push(q);
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        publish(&ch, &exchange, "", "everywhere", true).await,
        Confirmation::Ack(None)
    );
    assert_eq!(
        publish(&ch, &exchange, "", "again", true).await,
        Confirmation::Ack(None)
    );
    for q in &queues {
        assert_eq!(
            drain(&conn, q).await,
            owned(&[("everywhere", false), ("again", false)])
        );
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn many_confirmed_publishes_are_all_acked() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..200 {
        pending.push(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert_eq!(within(5, p).await.unwrap(), Confirmation::Ack(None));
    }
    let q = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 200);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn confirm_select_twice_is_allowed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        publish(&ch, "", &queue, "m1", false).await,
        Confirmation::Ack(None)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn confirm_select_on_tx_channel_fails_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    assert_amqp_error(
        ch.confirm_select(ConfirmSelectOptions::default()).await,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    );
    assert!(!ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_select_on_confirm_channel_fails_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_amqp_error(
        ch.tx_select().await,
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    );
    assert!(!ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- raw-client checks of confirm frames ----

/// A handshaken raw connection with channel 1 open and an exclusive queue.
async fn raw_with_queue(addr: std::net::SocketAddr) -> (RawConn, String) {
    let mut c = RawConn::handshake(addr).await;
    c.open_channel(1).await;
    let mut declare = vec![0, 0];
    declare.extend(raw::short_str(""));
    declare.push(0b100);
    declare.extend_from_slice(&0u32.to_be_bytes());
    c.send(&raw::method(1, 50, 10, &declare)).await;
    let ok = c.expect_method(50, 11).await;
    let p = &ok.payload[4..];
    let queue = String::from_utf8(p[1..1 + p[0] as usize].to_vec()).unwrap();
    (c, queue)
}

fn raw_publish(exchange: &str, key: &str, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = raw::method(1, 60, 40, &raw::publish_args(exchange, key, flags));
    bytes.extend(raw::content_header(1, body.len() as u64, &[0, 0]));
    bytes.extend(raw::frame(3, 1, body));
    bytes
}

/// (delivery tag, multiple) of a basic.ack frame.
fn ack_of(f: &raw::RawFrame) -> (u64, bool) {
    let p = &f.payload[4..];
    (
        u64::from_be_bytes(p[0..8].try_into().unwrap()),
        p[8] & 1 == 1,
    )
}

#[tokio::test]
async fn confirm_acks_carry_increasing_delivery_tags_from_one() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 85, 10, &[0])).await;
    c.expect_method(85, 11).await;
    let mut bytes = Vec::new();
    for body in [b"m1", b"m2", b"m3"] {
        bytes.extend(raw_publish("", &queue, 0, body));
    }
    c.send(&bytes).await;
    let mut confirmed = Vec::new();
    let mut last = 0;
    while confirmed.len() < 3 {
        let f = c.expect_method(60, 80).await;
        assert_eq!(f.channel, 1);
        let (tag, multiple) = ack_of(&f);
        assert!(tag > last, "ack tags must increase: {tag} after {last}");
        if multiple {
            confirmed.extend(last + 1..=tag);
        } else {
            confirmed.push(tag);
        }
        last = tag;
    }
    assert_eq!(confirmed, vec![1, 2, 3]);
    let extra = c.recv(Duration::from_millis(200)).await;
    assert_eq!(extra, None, "unexpected frame after the confirms");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn unroutable_publish_takes_a_confirm_sequence_number() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 85, 10, &[0])).await;
    c.expect_method(85, 11).await;
    let mut bytes = Vec::new();
    bytes.extend(raw_publish("", &queue, 0, b"m1"));
    // Unroutable and not mandatory: still confirmed, still counted. RabbitMQ
    // may confirm it before the routed message published ahead of it.
    bytes.extend(raw_publish("amq.direct", &unique("nowhere"), 0, b"m2"));
    bytes.extend(raw_publish("", &queue, 0, b"m3"));
    c.send(&bytes).await;
    let mut outstanding = vec![1u64, 2, 3];
    while !outstanding.is_empty() {
        let f = c.expect_method(60, 80).await;
        let (tag, multiple) = ack_of(&f);
        assert!(
            outstanding.contains(&tag),
            "ack for {tag} not outstanding: {outstanding:?}"
        );
        if multiple {
            outstanding.retain(|&t| t > tag);
        } else {
            outstanding.retain(|&t| t != tag);
        }
    }
    let extra = c.recv(Duration::from_millis(200)).await;
    assert_eq!(extra, None, "unexpected frame after the confirms");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn basic_return_precedes_the_ack_for_unroutable_mandatory_publish() {
    let broker = TestBroker::start().await;
    let (mut c, _queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 85, 10, &[0])).await;
    c.expect_method(85, 11).await;
    let key = unique("nowhere");
    c.send(&raw_publish("amq.direct", &key, 0b01, b"lost"))
        .await;
    let ret = c.recv(Duration::from_secs(5)).await.expect("basic.return");
    assert_eq!(ret.method(), Some((60, 50)));
    let p = &ret.payload[4..];
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 312);
    let mut at = 2;
    let mut short = |p: &[u8]| {
        let len = p[at] as usize;
        let s = String::from_utf8(p[at + 1..at + 1 + len].to_vec()).unwrap();
        at += 1 + len;
        s
    };
    assert_eq!(short(p), "NO_ROUTE");
    assert_eq!(short(p), "amq.direct");
    assert_eq!(short(p), key);
    let header = c.recv(Duration::from_secs(5)).await.unwrap();
    assert_eq!(header.kind, 2);
    let body = c.recv(Duration::from_secs(5)).await.unwrap();
    assert_eq!((body.kind, body.payload.as_slice()), (3, &b"lost"[..]));
    let ack = c.recv(Duration::from_secs(5)).await.expect("basic.ack");
    assert_eq!(ack.method(), Some((60, 80)));
    assert_eq!(ack_of(&ack), (1, false));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn confirm_select_nowait_sends_no_select_ok() {
    let broker = TestBroker::start().await;
    let (mut c, queue) = raw_with_queue(broker.addr).await;
    c.send(&raw::method(1, 85, 10, &[1])).await;
    c.send(&raw_publish("", &queue, 0, b"m1")).await;
    let f = c.recv(Duration::from_secs(5)).await.expect("basic.ack");
    assert_eq!(f.method(), Some((60, 80)), "got {f:?}");
    assert_eq!(ack_of(&f), (1, false));
    drop(c);
    broker.stop().await;
}

// ---- transactions ----

#[tokio::test]
async fn tx_publishes_are_invisible_until_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    for b in ["m1", "m2", "m3"] {
        publish(&tx, "", &queue, b, false).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(try_get(&ch, &queue, true).await.is_none());
    tx.tx_commit().await.unwrap();
    assert_eq!(
        drain(&conn, &queue).await,
        owned(&[("m1", false), ("m2", false), ("m3", false)])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_rollback_discards_publishes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    publish(&tx, "", &queue, "gone", false).await;
    tx.tx_rollback().await.unwrap();
    publish(&tx, "", &queue, "kept", false).await;
    tx.tx_commit().await.unwrap();
    assert_eq!(drain(&conn, &queue).await, owned(&[("kept", false)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_channel_stays_transactional_after_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    publish(&tx, "", &queue, "first", false).await;
    tx.tx_commit().await.unwrap();
    publish(&tx, "", &queue, "second", false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&conn, &queue).await, owned(&[("first", false)]));
    tx.tx_commit().await.unwrap();
    assert_eq!(drain(&conn, &queue).await, owned(&[("second", false)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_select_twice_is_allowed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", &queue, "m1", false).await;
    ch.tx_select().await.unwrap();
    ch.tx_commit().await.unwrap();
    assert_eq!(drain(&conn, &queue).await, owned(&[("m1", false)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn closing_channel_discards_uncommitted_publishes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    publish(&tx, "", &queue, "never", false).await;
    tx.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_ack_takes_effect_at_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, "m1", false).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let m = try_get(&tx, &queue, false).await.expect("m1");
    tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    tx.tx_commit().await.unwrap();
    tx.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn uncommitted_tx_ack_is_undone_when_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, "m1", false).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let m = try_get(&tx, &queue, false).await.expect("m1");
    tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    tx.close(200, "bye".into()).await.unwrap();
    assert_eq!(drain(&conn, &queue).await, owned(&[("m1", true)]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_ack_frees_prefetch_credit_only_at_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    for b in ["m1", "m2"] {
        publish(&ch, "", &queue, b, false).await;
    }
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    tx.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = tx
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(first.data, b"m1");
    tx.basic_ack(first.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
    assert!(early.is_err(), "m2 arrived before the ack was committed");
    tx.tx_commit().await.unwrap();
    let second = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(
        (second.data.as_slice(), second.delivery_tag),
        (&b"m2"[..], 2)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_rollback_restores_acked_tag_so_it_can_be_acked_again() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, "m1", false).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let m = try_get(&tx, &queue, false).await.expect("m1");
    let tag = m.delivery.delivery_tag;
    tx.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    tx.tx_rollback().await.unwrap();
    // Rolled back: the message is still unacked, not requeued...
    assert!(try_get(&ch, &queue, true).await.is_none());
    // ...and the same tag can be acked again.
    tx.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    tx.tx_commit().await.unwrap();
    assert!(tx.status().connected());
    tx.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn acking_a_tag_twice_inside_a_tx_fails_at_the_second_ack() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, "m1", false).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let m = try_get(&tx, &queue, false).await.expect("m1");
    let tag = m.delivery.delivery_tag;
    tx.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    tx.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    let err = next_error(&mut events).await;
    assert_eq!(
        (reply_code(&err), reply_text(&err).as_deref()),
        (
            Some(406),
            Some("PRECONDITION_FAILED - unknown delivery tag 1")
        )
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_commit_without_select_fails_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_amqp_error(
        ch.tx_commit().await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );
    assert!(!ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_rollback_without_select_fails_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_amqp_error(
        ch.tx_rollback().await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_mandatory_returns_happen_at_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    let key = unique("nowhere");
    publish(&ch, "amq.direct", &key, "lost", true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        ch.wait_for_confirms().await.unwrap().is_empty(),
        "returned before commit"
    );
    ch.tx_commit().await.unwrap();
    let returned = wait_for_returns(&ch, 1).await;
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].reply_code, 312);
    assert_eq!(returned[0].reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned[0].delivery.exchange.as_str(), "amq.direct");
    assert_eq!(returned[0].delivery.routing_key.as_str(), key);
    assert_eq!(returned[0].delivery.data, b"lost");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_rolled_back_mandatory_publish_is_never_returned() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    publish(&ch, "amq.direct", &unique("nowhere"), "lost", true).await;
    ch.tx_rollback().await.unwrap();
    ch.tx_commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_reject_with_requeue_requeues_at_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, "m1", false).await;
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let m = try_get(&tx, &queue, false).await.expect("m1");
    tx.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        try_get(&ch, &queue, true).await.is_none(),
        "requeued before commit"
    );
    tx.tx_commit().await.unwrap();
    let again = try_get(&ch, &queue, true).await.expect("m1 requeued");
    assert_eq!(body(&again), "m1");
    assert!(again.delivery.redelivered);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn tx_nack_without_requeue_discards_at_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    for b in ["m1", "m2"] {
        publish(&ch, "", &queue, b, false).await;
    }
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    try_get(&tx, &queue, false).await.expect("m1");
    try_get(&tx, &queue, false).await.expect("m2");
    tx.basic_nack(
        2,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .unwrap();
    tx.tx_commit().await.unwrap();
    tx.close(200, "bye".into()).await.unwrap();
    assert!(drain(&conn, &queue).await.is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
