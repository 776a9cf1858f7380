//! The delayed-message exchange (`x-delayed-message`, as the
//! rabbitmq-delayed-message-exchange plugin provides it). Warren-only: the
//! plugin is not installed on the reference RabbitMQ, so these tests skip
//! against an outside broker.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};

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

/// An in-process broker, or None against an outside one (the test skips).
async fn warren() -> Option<TestBroker> {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return None;
    }
    Some(broker)
}

fn delayed_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

async fn delayed_exchange(ch: &Channel, delayed_type: &str, durable: bool) -> String {
    let name = unique("delayed");
    ch.exchange_declare(
        name.as_str().into(),
        delayed_kind(),
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        table(&[("x-delayed-type", s(delayed_type))]),
    )
    .await
    .expect("exchange.declare");
    name
}

async fn queue(ch: &Channel) -> String {
    let name = unique("delayed-q");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    name
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .expect("queue.bind");
}

fn delay(ms: i32) -> BasicProperties {
    BasicProperties::default().with_headers(table(&[("x-delay", AMQPValue::LongInt(ms))]))
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &str, props: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    )
    .await
    .expect("basic.publish");
}

async fn try_get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

/// Poll (bounded) until a message arrives.
async fn wait_get(ch: &Channel, queue: &str) -> BasicGetMessage {
    within(5, async {
        loop {
            if let Some(m) = try_get(ch, queue).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn consume(ch: &Channel, queue: &str) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
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

async fn delete_exchange(ch: &Channel, name: &str) {
    ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await
        .expect("exchange.delete");
}

#[tokio::test]
async fn delayed_exchange_of_each_delayed_type_is_declared() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    for t in ["direct", "topic", "fanout", "headers"] {
        let x = delayed_exchange(&ch, t, false).await;
        // Redeclaring it the same way is fine.
        ch.exchange_declare(
            x.as_str().into(),
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            table(&[("x-delayed-type", s(t))]),
        )
        .await
        .unwrap_or_else(|e| panic!("redeclare of {t}: {e:?}"));
        delete_exchange(&ch, &x).await;
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delayed_exchange_without_delayed_type_is_refused_with_406() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let res = ch
        .exchange_declare(
            unique("delayed").as_str().into(),
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    match res {
        Ok(v) => panic!("declared without x-delayed-type: {v:?}"),
        Err(e) => assert_eq!(
            (reply_code(&e), reply_text(&e).as_deref()),
            (
                Some(406),
                Some(
                    "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
                )
            ),
            "error was {e:?}"
        ),
    }
    // A channel error: the connection carries on.
    let other = conn.create_channel().await.unwrap();
    other
        .basic_qos(0, BasicQosOptions::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_with_x_delay_is_held_for_that_long_then_routed() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let sent = Instant::now();
    publish(&ch, &x, "k", "later", delay(400)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(try_get(&ch, &q).await.is_none(), "delivered early");
    let m = wait_get(&ch, &q).await;
    assert!(
        sent.elapsed() >= Duration::from_millis(380),
        "arrived after only {:?}",
        sent.elapsed()
    );
    assert_eq!(m.delivery.data, b"later");
    assert_eq!(m.delivery.exchange.as_str(), x);
    assert_eq!(m.delivery.routing_key.as_str(), "k");
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_without_x_delay_is_routed_at_once() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let sent = Instant::now();
    publish(&ch, &x, "k", "now", BasicProperties::default()).await;
    let m = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"now");
    assert!(sent.elapsed() < Duration::from_millis(300));
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn zero_or_negative_delay_is_routed_at_once() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "fanout", false).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "", FieldTable::default()).await;
    let sent = Instant::now();
    publish(&ch, &x, "", "zero", delay(0)).await;
    publish(&ch, &x, "", "negative", delay(-1000)).await;
    assert_eq!(wait_get(&ch, &q).await.delivery.data, b"zero");
    assert_eq!(wait_get(&ch, &q).await.delivery.data, b"negative");
    assert!(sent.elapsed() < Duration::from_millis(300));
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delayed_messages_arrive_in_order_of_delivery_time() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let mut consumer = consume(&ch, &q).await;
    publish(&ch, &x, "k", "m1", delay(500)).await;
    publish(&ch, &x, "k", "m2", delay(100)).await;
    publish(&ch, &x, "k", "m3", delay(300)).await;
    publish(&ch, &x, "k", "m4", BasicProperties::default()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(body(&next_delivery(&mut consumer).await));
    }
    assert_eq!(got, vec!["m4", "m2", "m3", "m1"]);
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn topic_delayed_type_routes_by_pattern_after_the_delay() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "topic", false).await;
    let matching = queue(&ch).await;
    let other = queue(&ch).await;
    bind(&ch, &matching, &x, "logs.*", FieldTable::default()).await;
    bind(&ch, &other, &x, "metrics.#", FieldTable::default()).await;
    publish(&ch, &x, "logs.error", "m1", delay(200)).await;
    let m = wait_get(&ch, &matching).await;
    assert_eq!(m.delivery.data, b"m1");
    assert_eq!(m.delivery.routing_key.as_str(), "logs.error");
    assert!(try_get(&ch, &other).await.is_none());
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn fanout_delayed_type_routes_to_every_bound_queue_after_the_delay() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "fanout", false).await;
    let a = queue(&ch).await;
    let b = queue(&ch).await;
    bind(&ch, &a, &x, "", FieldTable::default()).await;
    bind(&ch, &b, &x, "ignored", FieldTable::default()).await;
    publish(&ch, &x, "any", "m1", delay(200)).await;
    assert_eq!(wait_get(&ch, &a).await.delivery.data, b"m1");
    assert_eq!(wait_get(&ch, &b).await.delivery.data, b"m1");
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn headers_delayed_type_routes_by_headers_after_the_delay() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "headers", false).await;
    let pdf = queue(&ch).await;
    let zip = queue(&ch).await;
    bind(
        &ch,
        &pdf,
        &x,
        "",
        table(&[("x-match", s("all")), ("format", s("pdf"))]),
    )
    .await;
    bind(
        &ch,
        &zip,
        &x,
        "",
        table(&[("x-match", s("all")), ("format", s("zip"))]),
    )
    .await;
    let props = BasicProperties::default().with_headers(table(&[
        ("x-delay", AMQPValue::LongInt(200)),
        ("format", s("pdf")),
    ]));
    publish(&ch, &x, "", "report", props).await;
    assert_eq!(wait_get(&ch, &pdf).await.delivery.data, b"report");
    assert!(try_get(&ch, &zip).await.is_none());
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delayed_message_keeps_its_properties_and_negates_x_delay() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_correlation_id("c-1".into())
        .with_headers(table(&[
            ("x-delay", AMQPValue::LongInt(100)),
            ("custom", s("kept")),
        ]));
    publish(&ch, &x, "k", "m1", props).await;
    let m = wait_get(&ch, &q).await;
    let p = &m.delivery.properties;
    assert_eq!(
        p.content_type().as_ref().map(|v| v.as_str()),
        Some("text/plain")
    );
    assert_eq!(p.correlation_id().as_ref().map(|v| v.as_str()), Some("c-1"));
    let h = p.headers().as_ref().expect("headers").inner();
    assert_eq!(h.get("custom"), Some(&s("kept")));
    // As the plugin does: x-delay comes out negated (a signed 32-bit int),
    // so the message is not delayed again by a further delayed exchange.
    assert_eq!(h.get("x-delay"), Some(&AMQPValue::LongInt(-100)));
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn delayed_message_in_a_durable_exchange_survives_a_restart() {
    let Some(broker) = warren().await else { return };
    let (conn, ch) = broker.channel().await;
    let x = delayed_exchange(&ch, "direct", true).await;
    let q = unique("delayed-durable");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let sent = Instant::now();
    let confirm = ch
        .basic_publish(
            x.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"survivor",
            delay(1_500).with_delivery_mode(2),
        )
        .await
        .unwrap();
    within(5, confirm).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert!(try_get(&ch, &q).await.is_none(), "delivered early");
    let m = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"survivor");
    assert!(
        sent.elapsed() >= Duration::from_millis(1_400),
        "arrived after only {:?}",
        sent.elapsed()
    );
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    delete_exchange(&ch, &x).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
