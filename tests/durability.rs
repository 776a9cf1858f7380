//! Durability: what survives a restart, in what order and state; the store
//! lock and corrupt data; bounded memory for deep queues; resource alarms.
//! These need the in-process broker, so they skip against an outside one.

mod common;

use std::time::Duration;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn declare(ch: &Channel, name: &str, options: QueueDeclareOptions, args: FieldTable) {
    ch.queue_declare(name.into(), options, args)
        .await
        .expect("queue.declare");
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
    .expect("publish")
    .await
    .expect("confirm");
}

async fn confirming_channel(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    (conn, ch)
}

/// Every ready message, taken with no-ack: (body, redelivered).
async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        out.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
        ));
    }
    out
}

async fn passive(ch: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

fn strs(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

#[tokio::test]
async fn durable_topology_survives_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    declare(&ch, "dq", durable(), args.clone()).await;
    for (name, kind) in [("dx", "topic"), ("dx2", "fanout")] {
        ch.exchange_declare(
            name.into(),
            lapin::ExchangeKind::Custom(kind.to_string()),
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.exchange_bind(
        "dx2".into(),
        "dx".into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "dq".into(),
        "dx2".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = confirming_channel(&broker).await;
    // Same arguments: an equivalent redeclare succeeds; others would fail.
    declare(&ch, "dq", durable(), args).await;
    publish(
        &ch,
        "dx",
        "a.b",
        "through two exchanges",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(
        drain(&ch, "dq").await,
        strs(&[("through two exchanges", false)])
    );
    let mut other = FieldTable::default();
    other.insert("x-max-length".into(), AMQPValue::LongLongInt(11));
    assert_amqp_error(
        ch.queue_declare("dq".into(), durable(), other).await,
        406,
        "inequivalent arg 'x-max-length'",
    );
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn transient_topology_is_gone_after_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "tq",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    declare(&ch, "dq", durable(), FieldTable::default()).await;
    ch.exchange_declare(
        "tx".into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // A binding from a transient exchange to a durable queue is transient.
    ch.queue_bind(
        "dq".into(),
        "tx".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // A binding from a durable exchange to a durable queue is durable.
    ch.queue_bind(
        "dq".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = confirming_channel(&broker).await;
    assert_amqp_error(passive(&ch, "tq").await, 404, "no queue 'tq'");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert_amqp_error(
        ch.exchange_declare(
            "tx".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        "no exchange 'tx'",
    );
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish(
        &ch,
        "amq.direct",
        "k",
        "kept binding",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(drain(&ch, "dq").await, strs(&[("kept binding", false)]));
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn persistent_messages_survive_a_restart_in_order_with_their_properties() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "pq", durable(), FieldTable::default()).await;
    ch.queue_bind(
        "pq".into(),
        "amq.topic".into(),
        "orders.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut headers = FieldTable::default();
    headers.insert("h".into(), AMQPValue::LongString(LongString::from("v")));
    headers.insert("n".into(), AMQPValue::LongInt(42));
    let props = persistent()
        .with_content_type(ShortString::from("application/json"))
        .with_headers(headers.clone())
        .with_priority(3)
        .with_correlation_id(ShortString::from("c-1"))
        .with_message_id(ShortString::from("m-1"))
        .with_timestamp(1_700_000_000)
        .with_app_id(ShortString::from("app"));
    publish(&ch, "amq.topic", "orders.eu.new", "first", props.clone()).await;
    for i in 2..=50 {
        publish(&ch, "", "pq", &format!("m{i}"), persistent()).await;
    }
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    let first = ch
        .basic_get("pq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the first message");
    assert_eq!(first.delivery.data, b"first");
    assert_eq!(first.delivery.exchange.as_str(), "amq.topic");
    assert_eq!(first.delivery.routing_key.as_str(), "orders.eu.new");
    assert!(!first.delivery.redelivered);
    assert_eq!(first.delivery.properties, props);
    let rest = drain(&ch, "pq").await;
    let expected: Vec<(String, bool)> = (2..=50).map(|i| (format!("m{i}"), false)).collect();
    assert_eq!(rest, expected);
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn transient_messages_in_a_durable_queue_are_dropped_at_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "mixed", durable(), FieldTable::default()).await;
    publish(&ch, "", "mixed", "p1", persistent()).await;
    publish(&ch, "", "mixed", "t1", BasicProperties::default()).await;
    publish(&ch, "", "mixed", "p2", persistent()).await;
    publish(
        &ch,
        "",
        "mixed",
        "t2",
        BasicProperties::default().with_delivery_mode(1),
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        drain(&ch, "mixed").await,
        strs(&[("p1", false), ("p2", false)])
    );
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn delivered_but_unacked_messages_come_back_redelivered() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "rq", durable(), FieldTable::default()).await;
    for i in 1..=5 {
        publish(&ch, "", "rq", &format!("m{i}"), persistent()).await;
    }
    // Take two without acking them; the broker stops while they are out.
    for expected in ["m1", "m2"] {
        let m = ch
            .basic_get("rq".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery.data, expected.as_bytes());
    }
    let broker = broker.restart().await;
    drop(conn);
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        drain(&ch, "rq").await,
        strs(&[
            ("m1", true),
            ("m2", true),
            ("m3", false),
            ("m4", false),
            ("m5", false)
        ])
    );
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn acked_messages_stay_gone_after_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "aq", durable(), FieldTable::default()).await;
    for i in 1..=4 {
        publish(&ch, "", "aq", &format!("m{i}"), persistent()).await;
    }
    let mut consumer = ch
        .basic_consume(
            "aq".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let d = within(5, consumer.next()).await.unwrap().unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // m3 rejected without requeue; m4 requeued and still there.
    let d3 = within(5, consumer.next()).await.unwrap().unwrap();
    let d4 = within(5, consumer.next()).await.unwrap().unwrap();
    d3.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    d4.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // A confirmed publish after the acks orders them on the connection.
    publish(&ch, "", "aq", "m5", persistent()).await;
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(drain(&ch, "aq").await, strs(&[("m4", true), ("m5", false)]));
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_message_routed_to_several_durable_queues_survives_in_each() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    for q in ["f1", "f2", "f3"] {
        declare(&ch, q, durable(), FieldTable::default()).await;
        ch.queue_bind(
            q.into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    publish(&ch, "amq.fanout", "", "to all", persistent()).await;
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = confirming_channel(&broker).await;
    assert_eq!(drain(&ch, "f1").await, strs(&[("to all", false)]));
    assert_eq!(drain(&ch, "f2").await, strs(&[("to all", false)]));
    publish(&ch, "", "f3", "after", persistent()).await;
    conn.close(200, "bye".into()).await.unwrap();

    // The copy the third queue holds outlives the other two being consumed.
    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert!(drain(&ch, "f1").await.is_empty());
    assert_eq!(
        drain(&ch, "f3").await,
        strs(&[("to all", false), ("after", false)])
    );
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_deleted_durable_queue_leaves_nothing_behind() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "gone", durable(), FieldTable::default()).await;
    for i in 0..20 {
        publish(&ch, "", "gone", &format!("m{i}"), persistent()).await;
    }
    let deleted = ch
        .queue_delete("gone".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 20);
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_amqp_error(passive(&ch, "gone").await, 404, "no queue 'gone'");
    drop(conn);
    // Redeclared, it starts empty.
    let (conn, ch) = broker.channel().await;
    declare(&ch, "gone", durable(), FieldTable::default()).await;
    assert!(drain(&ch, "gone").await.is_empty());
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn committed_transactions_survive_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = broker.channel().await;
    declare(&ch, "txq", durable(), FieldTable::default()).await;
    ch.tx_select().await.unwrap();
    for body in ["a", "b"] {
        ch.basic_publish(
            "".into(),
            "txq".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            persistent(),
        )
        .await
        .unwrap();
    }
    ch.tx_commit().await.unwrap();
    ch.basic_publish(
        "".into(),
        "txq".into(),
        BasicPublishOptions::default(),
        b"rolled back",
        persistent(),
    )
    .await
    .unwrap();
    ch.tx_rollback().await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(drain(&ch, "txq").await, strs(&[("a", false), ("b", false)]));
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn message_ttl_keeps_running_across_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "ttlq", durable(), FieldTable::default()).await;
    publish(
        &ch,
        "",
        "ttlq",
        "short",
        persistent().with_expiration(ShortString::from("300")),
    )
    .await;
    publish(
        &ch,
        "",
        "ttlq",
        "long",
        persistent().with_expiration(ShortString::from("600000")),
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(drain(&ch, "ttlq").await, strs(&[("long", false)]));
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn confirms_arrive_for_many_concurrent_persistent_publishers() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = broker.channel().await;
    declare(&ch, "cq", durable(), FieldTable::default()).await;
    let mut tasks = Vec::new();
    for p in 0..4 {
        let uri = broker.uri().to_string();
        tasks.push(tokio::spawn(async move {
            let conn = lapin::Connection::connect(&uri, Default::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            let mut pending = Vec::new();
            for i in 0..250 {
                let body = format!("p{p}-{i}");
                pending.push(
                    ch.basic_publish(
                        "".into(),
                        "cq".into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        persistent(),
                    )
                    .await
                    .unwrap(),
                );
            }
            for confirm in pending {
                assert_eq!(confirm.await.unwrap(), Confirmation::Ack(None));
            }
            conn.close(200, "bye".into()).await.ok();
        }));
    }
    for task in tasks {
        within(30, task).await.unwrap();
    }
    let count = passive(&ch, "cq").await.unwrap().message_count();
    assert_eq!(count, 1000);
    conn.close(200, "bye".into()).await.ok();

    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    let all = drain(&ch, "cq").await;
    assert_eq!(all.len(), 1000);
    // Each publisher's messages are in its publish order.
    for p in 0..4 {
        let mine: Vec<&String> = all
            .iter()
            .map(|(b, _)| b)
            .filter(|b| b.starts_with(&format!("p{p}-")))
            .collect();
        let expected: Vec<String> = (0..250).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_backlog_beyond_the_memory_bound_stays_on_disk_and_drains_in_order() {
    let broker = TestBroker::start_with(|c| c.queue_memory_messages = 100).await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "deep", durable(), FieldTable::default()).await;
    declare(
        &ch,
        "deep-transient",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    for i in 0..3000 {
        let props = if i % 2 == 0 {
            persistent()
        } else {
            BasicProperties::default()
        };
        let body = format!("m{i}");
        let confirm = ch
            .basic_publish(
                "".into(),
                "deep".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props.clone(),
            )
            .await
            .unwrap();
        ch.basic_publish(
            "".into(),
            "deep-transient".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
        confirm.await.unwrap();
    }
    let vhost = broker.server().unwrap().broker().vhost("/").unwrap();
    for name in ["deep", "deep-transient"] {
        let queue = vhost.queue(name).unwrap();
        assert_eq!(queue.message_count(), 3000);
        assert!(
            queue.messages_in_memory() <= 100,
            "{name} holds {} messages in memory",
            queue.messages_in_memory()
        );
    }
    let expected: Vec<(String, bool)> = (0..3000).map(|i| (format!("m{i}"), false)).collect();
    assert_eq!(drain(&ch, "deep").await, expected);
    assert_eq!(drain(&ch, "deep-transient").await, expected);
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_deep_persistent_backlog_is_recovered_in_order_without_loading_it_all() {
    let broker = TestBroker::start_with(|c| c.queue_memory_messages = 50).await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "deep", durable(), FieldTable::default()).await;
    for i in 0..1000 {
        ch.basic_publish(
            "".into(),
            "deep".into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            persistent(),
        )
        .await
        .unwrap();
    }
    publish(&ch, "", "deep", "last", persistent()).await;
    conn.close(200, "bye".into()).await.unwrap();

    let broker = broker.restart().await;
    let queue = broker
        .server()
        .unwrap()
        .broker()
        .vhost("/")
        .unwrap()
        .queue("deep")
        .unwrap();
    assert_eq!(queue.message_count(), 1001);
    assert!(queue.messages_in_memory() <= 50);
    let (conn, ch) = broker.channel().await;
    let mut expected: Vec<(String, bool)> = (0..1000).map(|i| (format!("m{i}"), false)).collect();
    expected.push(("last".into(), false));
    assert_eq!(drain(&ch, "deep").await, expected);
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let config = broker.config().unwrap().clone();
    let err = warren::Server::start(config)
        .await
        .expect_err("the directory is locked");
    let text = err.to_string();
    assert!(
        text.contains("another Warren is using the data directory"),
        "{text}"
    );
    assert!(text.contains(broker.data_dir.to_str().unwrap()), "{text}");
    broker.stop().await;
}

#[tokio::test]
async fn a_corrupt_record_stops_the_start_with_an_error_naming_the_file() {
    if outside_broker_requested() {
        // Warren's store at start-up: starts an in-process Warren itself.
        return;
    }
    let dir = temp_dir("corrupt");
    {
        let db = sled::open(dir.join("db")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &1u64.to_be_bytes())
            .unwrap();
        db.open_tree("queues")
            .unwrap()
            .insert(b"/\0broken", b"{not json".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let err = warren::Server::start(warren::Config::ephemeral(&dir))
        .await
        .expect_err("corrupt data must stop the start");
    let text = err.to_string();
    assert!(text.contains("corrupt record"), "{text}");
    assert!(text.contains(dir.join("db").to_str().unwrap()), "{text}");
    assert!(text.contains("queues"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unreadable_data_dir_stops_the_start() {
    if outside_broker_requested() {
        // Warren's store at start-up: starts an in-process Warren itself.
        return;
    }
    let dir = temp_dir("unreadable");
    // A file where the store directory should be.
    std::fs::write(dir.join("db"), b"not a directory").unwrap();
    let err = warren::Server::start(warren::Config::ephemeral(&dir))
        .await
        .expect_err("an unusable store must stop the start");
    assert!(
        err.to_string().contains(dir.join("db").to_str().unwrap()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_memory_alarm_blocks_publishers_but_not_consumers() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(
        &ch,
        "alarmq",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    // Confirmed, so it is handled before the alarm: this connection then
    // only consumes, and consumers are never blocked.
    publish(&ch, "", "alarmq", "before", BasicProperties::default()).await;
    let alarms = &broker.server().unwrap().broker().alarms;
    let limit = alarms.memory_limit();
    alarms.set_memory_limit(1);
    within(5, async {
        while !alarms.state().memory {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // A raw publisher that announced connection.blocked support is told.
    let mut publisher = raw::RawConn::handshake(broker.addr).await;
    publisher.open_channel(1).await;
    publisher
        .send(
            &[
                raw::method(1, 60, 40, &raw::publish_args("", "alarmq", 0)),
                raw::content_header(1, 6, &[0, 0]),
                raw::frame(3, 1, b"during"),
            ]
            .concat(),
        )
        .await;
    let blocked = publisher.expect_method(10, 60).await;
    assert_eq!(&blocked.payload[4..], &raw::short_str("low on memory")[..]);

    // Consuming goes on.
    let got = within(
        5,
        ch.basic_get("alarmq".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("the consumer still gets messages");
    assert_eq!(got.delivery.data, b"before");

    // Clearing the alarm unblocks the publisher, whose message then arrives.
    alarms.set_memory_limit(limit);
    publisher.expect_method(10, 61).await;
    let got = within(5, async {
        loop {
            if let Some(m) = within(
                5,
                ch.basic_get("alarmq".into(), BasicGetOptions { no_ack: true }),
            )
            .await
            .unwrap()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(got.delivery.data, b"during");
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn confirms_arrive_with_syncing_turned_off() {
    let broker = TestBroker::start_with(|c| c.sync = false).await;
    if broker.is_external() {
        return broker.stop().await;
    }
    let (conn, ch) = confirming_channel(&broker).await;
    declare(&ch, "nosync", durable(), FieldTable::default()).await;
    for i in 0..10 {
        publish(&ch, "", "nosync", &format!("m{i}"), persistent()).await;
    }
    ch.tx_select()
        .await
        .expect_err("a confirm channel cannot become transactional");
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    ch.basic_publish(
        "".into(),
        "nosync".into(),
        BasicPublishOptions::default(),
        b"tx",
        persistent(),
    )
    .await
    .unwrap();
    within(5, ch.tx_commit()).await.unwrap();
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

/// Write a store as format 1 did: a tree per durable queue (`q/<id>`) keyed
/// by sequence number, a delivery mark, a message shared by two queues.
fn write_tree_per_queue_store(dir: &std::path::Path) {
    use bytes::Bytes;
    use std::sync::Arc;
    use warren::message::Message;
    use warren::protocol::Properties;
    use warren::store::{QueueRecord, codec};

    let message = |body: &str| {
        // delivery-mode 2
        let props = Properties::parse(Bytes::from_static(&[0x10, 0, 2])).unwrap();
        Message::new(
            Arc::from(""),
            Bytes::new(),
            props,
            Bytes::from(body.to_string()),
        )
    };
    let db = sled::open(dir.join("db")).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("format", &1u64.to_be_bytes())
        .unwrap();
    let queues = db.open_tree("queues").unwrap();
    for (name, id) in [("old-a", 3u64), ("old-b", 4)] {
        let record = QueueRecord {
            vhost: "/".into(),
            name: name.into(),
            id,
            auto_delete: false,
            arguments: Default::default(),
        };
        let mut key = b"/\0".to_vec();
        key.extend_from_slice(name.as_bytes());
        queues
            .insert(key, serde_json::to_vec(&record).unwrap())
            .unwrap();
    }
    let a = db.open_tree("q/3").unwrap();
    for seq in 0..3u64 {
        a.insert(
            seq.to_be_bytes(),
            codec::encode_message(&message(&format!("a{seq}")), None),
        )
        .unwrap();
    }
    // The shared record and a reference to it in each queue.
    db.open_tree("shared")
        .unwrap()
        .insert(
            9u64.to_be_bytes(),
            codec::encode_message(&message("both"), None),
        )
        .unwrap();
    a.insert(3u64.to_be_bytes(), &codec::encode_reference(9, None)[..])
        .unwrap();
    let b = db.open_tree("q/4").unwrap();
    b.insert(0u64.to_be_bytes(), &codec::encode_reference(9, None)[..])
        .unwrap();
    // Queue a had its first message delivered.
    db.open_tree("delivered")
        .unwrap()
        .insert(3u64.to_be_bytes(), &1u64.to_be_bytes())
        .unwrap();
    // A scratch tree of a paging queue: transient, never recovered.
    db.open_tree("t/5")
        .unwrap()
        .insert(0u64.to_be_bytes(), b"x".to_vec())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn a_store_with_a_tree_per_queue_is_migrated_at_start() {
    if outside_broker_requested() {
        // Warren's store at start-up: starts an in-process Warren itself.
        return;
    }
    let dir = temp_dir("format1");
    write_tree_per_queue_store(&dir);
    let broker = TestBroker::start_config(warren::Config::ephemeral(&dir)).await;
    let (conn, ch) = confirming_channel(&broker).await;
    // A queue declared after the migration takes a fresh id.
    declare(&ch, "new-c", durable(), FieldTable::default()).await;
    publish(&ch, "", "new-c", "c0", persistent()).await;
    publish(&ch, "", "old-b", "b1", persistent()).await;
    conn.close(200, "bye".into()).await.ok();
    // Twice: what the migration wrote is the store now.
    let broker = broker.restart().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        drain(&ch, "old-a").await,
        strs(&[("a0", true), ("a1", false), ("a2", false), ("both", false)])
    );
    assert_eq!(
        drain(&ch, "old-b").await,
        strs(&[("both", false), ("b1", false)])
    );
    assert_eq!(drain(&ch, "new-c").await, strs(&[("c0", false)]));
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}
