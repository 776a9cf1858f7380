//! Sender-selected distribution: the `CC` and `BCC` headers add routing
//! keys to a publish; `BCC` is removed before anyone sees the message; and
//! dead-lettering routes by the same keys, as in RabbitMQ.

mod common;

use std::time::Duration;

use common::*;
use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

fn keys(list: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        list.iter().map(|k| s(k)).collect::<Vec<_>>(),
    ))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// An exclusive queue with a fresh name, these arguments and bindings.
async fn queue(ch: &Channel, args: &[(&str, AMQPValue)], bindings: &[(&str, &str)]) -> String {
    let name = unique("ssd");
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
    for (exchange, key) in bindings {
        ch.queue_bind(
            name.as_str().into(),
            (*exchange).into(),
            (*key).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
    }
    name
}

async fn exchange(ch: &Channel, kind: ExchangeKind) -> String {
    let name = unique("ssd-x");
    ch.exchange_declare(
        name.as_str().into(),
        kind,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    name
}

async fn publish(ch: &Channel, exchange: &str, key: &str, headers: &[(&str, AMQPValue)]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_headers(table(headers)),
    )
    .await
    .expect("basic.publish")
    .await
    .expect("confirm");
}

async fn get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

/// Poll (bounded) until `queue` has a message.
async fn wait_get(ch: &Channel, queue: &str) -> BasicGetMessage {
    within(5, async {
        loop {
            if let Some(m) = get(ch, queue).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn count(ch: &Channel, queue: &str) -> u32 {
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

fn header_names(m: &BasicGetMessage) -> Vec<String> {
    let mut names: Vec<String> = m
        .delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn header(m: &BasicGetMessage, name: &str) -> Option<AMQPValue> {
    m.delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name).cloned())
}

/// The single `x-death` entry of a dead-lettered message.
fn death(m: &BasicGetMessage) -> std::collections::BTreeMap<String, AMQPValue> {
    match header(m, "x-death") {
        Some(AMQPValue::FieldArray(a)) => match a.as_slice() {
            [AMQPValue::FieldTable(t)] => t
                .inner()
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            other => panic!("one x-death entry expected, got {other:?}"),
        },
        other => panic!("x-death should be an array, was {other:?}"),
    }
}

async fn setup(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    (conn, ch)
}

#[tokio::test]
async fn cc_and_bcc_add_routing_keys_on_a_direct_exchange() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let qa = queue(&ch, &[], &[(&x, "a")]).await;
    let qb = queue(&ch, &[], &[(&x, "b")]).await;
    let qc = queue(&ch, &[], &[(&x, "c")]).await;
    let qd = queue(&ch, &[], &[(&x, "d")]).await;
    publish(&ch, &x, "a", &[("CC", keys(&["b"])), ("BCC", keys(&["c"]))]).await;
    for q in [&qa, &qb, &qc] {
        let m = get(&ch, q).await.expect("a copy");
        // Every copy says the routing key it was published with.
        assert_eq!(m.delivery.routing_key.as_str(), "a");
        // CC stays, BCC is gone.
        assert_eq!(header_names(&m), ["CC"]);
        assert_eq!(header(&m, "CC"), Some(keys(&["b"])));
        assert!(get(&ch, q).await.is_none(), "one copy per queue");
    }
    assert_eq!(count(&ch, &qd).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_queue_matched_by_several_keys_gets_one_copy() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let q = queue(&ch, &[], &[(&x, "eu.*"), (&x, "#.paid")]).await;
    let other = queue(&ch, &[], &[(&x, "us.#")]).await;
    publish(
        &ch,
        &x,
        "eu.new",
        &[
            ("CC", keys(&["eu.paid", "us.paid"])),
            ("BCC", keys(&["eu.paid"])),
        ],
    )
    .await;
    assert!(get(&ch, &q).await.is_some());
    assert!(get(&ch, &q).await.is_none(), "one copy per queue");
    assert_eq!(count(&ch, &other).await, 1);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn cc_names_queues_on_the_default_exchange() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let q1 = queue(&ch, &[], &[]).await;
    let q2 = queue(&ch, &[], &[]).await;
    let q3 = queue(&ch, &[], &[]).await;
    publish(
        &ch,
        "",
        &q1,
        &[("CC", keys(&[&q2, "no-such-queue"])), ("BCC", keys(&[&q3]))],
    )
    .await;
    for q in [&q1, &q2, &q3] {
        assert_eq!(count(&ch, q).await, 1, "{q}");
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn elements_that_are_not_long_strings_are_ignored() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let qb = queue(&ch, &[], &[(&x, "b")]).await;
    let q7 = queue(&ch, &[], &[(&x, "7")]).await;
    let mixed = AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongInt(7), s("b")]));
    publish(&ch, &x, "a", &[("CC", mixed)]).await;
    assert_eq!(count(&ch, &qb).await, 1);
    assert_eq!(count(&ch, &q7).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_mandatory_publish_routed_only_by_cc_is_not_returned() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q = queue(&ch, &[], &[(&x, "b")]).await;
    let confirm = ch
        .basic_publish(
            x.as_str().into(),
            "a".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default().with_headers(table(&[("CC", keys(&["b"]))])),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    assert!(confirm.take_message().is_none(), "returned");
    assert_eq!(count(&ch, &q).await, 1);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_cc_header_that_is_not_an_array_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = queue(&ch, &[], &[]).await;
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_headers(table(&[("CC", s("b"))])),
    )
    .await
    .expect("basic.publish");
    // basic.publish has no reply: the close comes as an event.
    assert_amqp_error::<()>(
        Err(next_error(&mut events).await),
        406,
        "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}",
    );
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(count(&ch2, &q).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letters_are_routed_by_every_key_and_x_death_lists_the_cc_keys() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let by_key = queue(&ch, &[], &[(&dlx, "k")]).await;
    let by_cc = queue(&ch, &[], &[(&dlx, "cc")]).await;
    let by_bcc = queue(&ch, &[], &[(&dlx, "bcc")]).await;
    let source = exchange(&ch, ExchangeKind::Fanout).await;
    let q = queue(
        &ch,
        &[
            ("x-dead-letter-exchange", s(&dlx)),
            ("x-message-ttl", AMQPValue::LongInt(0)),
        ],
        &[(&source, "")],
    )
    .await;
    publish(
        &ch,
        &source,
        "k",
        &[("CC", keys(&["cc"])), ("BCC", keys(&["bcc"]))],
    )
    .await;
    for dlq in [&by_key, &by_cc, &by_bcc] {
        let m = wait_get(&ch, dlq).await;
        assert_eq!(m.delivery.routing_key.as_str(), "k");
        let d = death(&m);
        assert_eq!(d.get("reason"), Some(&s("expired")));
        assert_eq!(d.get("queue"), Some(&s(&q)));
        // The published key and the CC keys; BCC stays secret.
        assert_eq!(d.get("routing-keys"), Some(&keys(&["k", "cc"])));
        assert_eq!(header(&m, "CC"), Some(keys(&["cc"])));
        assert_eq!(header(&m, "BCC"), None);
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_dead_letter_routing_key_replaces_the_keys_and_drops_cc() {
    let broker = TestBroker::start().await;
    let (conn, ch) = setup(&broker).await;
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let by_dlrk = queue(&ch, &[], &[(&dlx, "dead")]).await;
    let by_cc = queue(&ch, &[], &[(&dlx, "cc")]).await;
    let q = queue(
        &ch,
        &[
            ("x-dead-letter-exchange", s(&dlx)),
            ("x-dead-letter-routing-key", s("dead")),
            ("x-message-ttl", AMQPValue::LongInt(0)),
        ],
        &[],
    )
    .await;
    publish(&ch, "", &q, &[("CC", keys(&["cc"]))]).await;
    let m = wait_get(&ch, &by_dlrk).await;
    assert_eq!(m.delivery.routing_key.as_str(), "dead");
    assert_eq!(header(&m, "CC"), None);
    assert_eq!(death(&m).get("routing-keys"), Some(&keys(&[&q, "cc"])));
    assert_eq!(count(&ch, &by_cc).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn stored_messages_keep_their_bcc_keys_across_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        // Restarts the in-process broker on its store.
        broker.stop().await;
        return;
    }
    let (conn, ch) = setup(&broker).await;
    let dlx = unique("ssd-dlx");
    let q = unique("ssd-src");
    let dlq = unique("ssd-dlq");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        q.as_str().into(),
        durable,
        table(&[("x-dead-letter-exchange", s(&dlx))]),
    )
    .await
    .unwrap();
    ch.queue_declare(dlq.as_str().into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        "secret".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"kept",
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(table(&[("BCC", keys(&["secret"]))])),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = setup(&broker).await;
    let m = within(
        5,
        ch.basic_get(q.as_str().into(), BasicGetOptions::default()),
    )
    .await
    .unwrap()
    .expect("recovered");
    assert_eq!(header(&m, "BCC"), None);
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .unwrap();
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.delivery.data, b"kept");
    for name in [&q, &dlq] {
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    ch.exchange_delete(dlx.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
