//! Structures a client builds out of exchanges and queues, as long or as
//! circular as it likes: chains of auto-delete exchanges, exchange-to-
//! exchange cycles, alternate-exchange cycles, dead-letter cycles and long
//! dead-letter chains. Each must end, deliver what RabbitMQ delivers, and
//! leave the broker serving.
//!
//! Sizes are smaller against an outside broker (RabbitMQ takes seconds per
//! thousand declarations); against Warren the chains are long enough to
//! have overflowed a stack built one frame per link.

mod common;

use std::time::Duration;

use common::*;
use lapin::Confirmation;
use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

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

/// Links in a long chain: many against Warren, fewer against an outside
/// broker.
fn links(broker: &TestBroker, warren: usize, outside: usize) -> usize {
    if broker.is_external() {
        outside
    } else {
        warren
    }
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind, auto_delete: bool) {
    declare_exchange_args(ch, name, kind, auto_delete, FieldTable::default()).await;
}

async fn declare_exchange_args(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    auto_delete: bool,
    arguments: FieldTable,
) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions {
            auto_delete,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("exchange.declare");
}

/// `exchange.bind`: messages reaching `source` go on to `destination`.
async fn bind_exchange(ch: &Channel, destination: &str, source: &str, key: &str) {
    ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
}

async fn declare_queue(ch: &Channel, name: &str, arguments: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
}

async fn bind_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
}

async fn delete_queue(ch: &Channel, name: &str) {
    ch.queue_delete(name.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
}

async fn delete_exchange(ch: &Channel, name: &str) {
    ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await
        .expect("exchange.delete");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_with(ch, exchange, key, body, BasicProperties::default()).await;
}

async fn try_get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        10,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

/// Poll `queue` (bounded) until a message arrives.
async fn wait_get(ch: &Channel, queue: &str) -> BasicGetMessage {
    within(60, async {
        loop {
            if let Some(m) = try_get(ch, queue).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Whether exchange `name` exists, by a passive declaration on a channel of
/// its own (a missing one closes that channel with 404).
async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let result = ch
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(()) => {
            let _ = ch.close(200, "bye".into()).await;
            true
        }
        Err(e) => {
            assert_eq!(reply_code(&e), Some(404), "passive declare: {e:?}");
            false
        }
    }
}

/// The `x-death` entries of a dead-lettered message.
fn deaths(message: &BasicGetMessage) -> Vec<FieldTable> {
    let headers = message
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(entries)) => entries
            .as_slice()
            .iter()
            .map(|e| match e {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            })
            .collect(),
        other => panic!("x-death {other:?}"),
    }
}

#[tokio::test]
async fn deleting_the_head_of_a_long_auto_delete_chain_removes_the_chain() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let n = links(&broker, 20_000, 1_000);
    let prefix = unique("chain");
    let name = |i: usize| format!("{prefix}-{i}");
    within(600, async {
        // Exchange i is the source of one binding, to exchange i - 1: when
        // i - 1 goes, i has no bindings left and is auto-deleted, and so on.
        for i in 0..n {
            declare_exchange(&ch, &name(i), ExchangeKind::Fanout, true).await;
            if i > 0 {
                bind_exchange(&ch, &name(i - 1), &name(i), "").await;
            }
        }
    })
    .await;
    let queue = unique("chain-end");
    declare_queue(&ch, &queue, FieldTable::default()).await;
    bind_queue(&ch, &queue, &name(0), "").await;

    // A publish at the far end crosses every link and arrives once.
    publish(&ch, &name(n - 1), "any", b"through").await;
    assert_eq!(wait_get(&ch, &queue).await.delivery.data, b"through");
    assert!(try_get(&ch, &queue).await.is_none());

    within(120, delete_exchange(&ch, &name(0))).await;
    for i in [1, n / 2, n - 1] {
        assert!(
            !exchange_exists(&conn, &name(i)).await,
            "exchange {i} of {n} is still there"
        );
    }
    // The broker still serves, and the queue lost its only binding.
    publish(&ch, "", &queue, b"after").await;
    assert_eq!(wait_get(&ch, &queue).await.delivery.data, b"after");
    delete_queue(&ch, &queue).await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn a_long_exchange_chain_without_auto_delete_survives_its_head() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let n = links(&broker, 5_000, 300);
    let prefix = unique("keep");
    let name = |i: usize| format!("{prefix}-{i}");
    within(300, async {
        for i in 0..n {
            declare_exchange(&ch, &name(i), ExchangeKind::Fanout, false).await;
            if i > 0 {
                bind_exchange(&ch, &name(i - 1), &name(i), "").await;
            }
        }
    })
    .await;
    delete_exchange(&ch, &name(0)).await;
    // Only the binding to the deleted exchange went.
    assert!(exchange_exists(&conn, &name(1)).await);
    let queue = unique("keep-end");
    declare_queue(&ch, &queue, FieldTable::default()).await;
    bind_queue(&ch, &queue, &name(1), "").await;
    publish(&ch, &name(n - 1), "", b"still linked").await;
    assert_eq!(wait_get(&ch, &queue).await.delivery.data, b"still linked");
    within(300, async {
        for i in 1..n {
            delete_exchange(&ch, &name(i)).await;
        }
    })
    .await;
    delete_queue(&ch, &queue).await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn an_exchange_to_exchange_cycle_delivers_once() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let prefix = unique("ring");
    let names: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    for name in &names {
        declare_exchange(&ch, name, ExchangeKind::Fanout, false).await;
    }
    // 0 -> 1 -> 2 -> 0, and every one of them also to the queue.
    for i in 0..3 {
        bind_exchange(&ch, &names[(i + 1) % 3], &names[i], "").await;
    }
    let queue = unique("ring-q");
    declare_queue(&ch, &queue, FieldTable::default()).await;
    for name in &names {
        bind_queue(&ch, &queue, name, "").await;
    }
    for (i, name) in names.iter().enumerate() {
        publish(&ch, name, "", format!("via {i}").as_bytes()).await;
        assert_eq!(
            wait_get(&ch, &queue).await.delivery.data,
            format!("via {i}").as_bytes()
        );
        assert!(try_get(&ch, &queue).await.is_none(), "a second copy");
    }
    delete_queue(&ch, &queue).await;
    for name in &names {
        delete_exchange(&ch, name).await;
    }
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn an_alternate_exchange_cycle_ends() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let (a, b) = (unique("ae-a"), unique("ae-b"));
    declare_exchange_args(
        &ch,
        &a,
        ExchangeKind::Direct,
        false,
        table(&[("alternate-exchange", s(&b))]),
    )
    .await;
    declare_exchange_args(
        &ch,
        &b,
        ExchangeKind::Direct,
        false,
        table(&[("alternate-exchange", s(&a))]),
    )
    .await;
    let mandatory = |exchange: String| {
        let ch = ch.clone();
        async move {
            within(
                10,
                ch.basic_publish(
                    exchange.as_str().into(),
                    "k".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    b"round",
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish"),
            )
            .await
            .expect("confirm")
        }
    };
    // Neither routes it: each hands it to the other, once, and it returns.
    match mandatory(a.clone()).await {
        Confirmation::Ack(Some(returned)) => assert_eq!(returned.reply_code, 312),
        other => panic!("expected a return, got {other:?}"),
    }
    // With a binding on the second, a publish to the first lands there once.
    let queue = unique("ae-q");
    declare_queue(&ch, &queue, FieldTable::default()).await;
    bind_queue(&ch, &queue, &b, "k").await;
    match mandatory(a.clone()).await {
        Confirmation::Ack(None) => {}
        other => panic!("expected a plain ack, got {other:?}"),
    }
    assert_eq!(wait_get(&ch, &queue).await.delivery.data, b"round");
    assert!(try_get(&ch, &queue).await.is_none(), "a second copy");
    delete_queue(&ch, &queue).await;
    delete_exchange(&ch, &a).await;
    delete_exchange(&ch, &b).await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn a_dead_letter_cycle_without_rejections_ends_after_one_round() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // Queues a and b dead-letter (TTL 0, no consumer) into fanouts that
    // lead to each other and to an observer queue each.
    let (a, b) = (unique("dl-a"), unique("dl-b"));
    let (xa, xb) = (unique("dlx-a"), unique("dlx-b"));
    let (seen_a, seen_b) = (unique("seen-a"), unique("seen-b"));
    declare_exchange(&ch, &xa, ExchangeKind::Fanout, false).await;
    declare_exchange(&ch, &xb, ExchangeKind::Fanout, false).await;
    for (queue, dlx) in [(&a, &xa), (&b, &xb)] {
        declare_queue(
            &ch,
            queue,
            table(&[
                ("x-message-ttl", AMQPValue::LongInt(0)),
                ("x-dead-letter-exchange", s(dlx)),
            ]),
        )
        .await;
    }
    declare_queue(&ch, &seen_a, FieldTable::default()).await;
    declare_queue(&ch, &seen_b, FieldTable::default()).await;
    bind_queue(&ch, &b, &xa, "").await;
    bind_queue(&ch, &seen_a, &xa, "").await;
    bind_queue(&ch, &a, &xb, "").await;
    bind_queue(&ch, &seen_b, &xb, "").await;

    publish(&ch, "", &a, b"looping").await;
    // a -> b (seen_a), b -> a is a cycle and dropped (seen_b sees b's copy).
    let from_a = wait_get(&ch, &seen_a).await;
    let from_b = wait_get(&ch, &seen_b).await;
    assert_eq!(from_a.delivery.data, b"looping");
    assert_eq!(deaths(&from_a).len(), 1);
    assert_eq!(deaths(&from_b).len(), 2);
    // Nothing more comes round.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(try_get(&ch, &seen_a).await.is_none());
    assert!(try_get(&ch, &seen_b).await.is_none());
    for queue in [&a, &b, &seen_a, &seen_b] {
        delete_queue(&ch, queue).await;
    }
    delete_exchange(&ch, &xa).await;
    delete_exchange(&ch, &xb).await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn a_long_dead_letter_chain_delivers_at_its_end() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // Each hop adds an x-death entry the next one copies: the work grows
    // with the square of the length, in RabbitMQ too.
    let n = 300;
    let prefix = unique("dlchain");
    let name = |i: usize| format!("{prefix}-{i}");
    // Queue i expires what it gets (TTL 0, no consumer) into queue i + 1
    // through the default exchange; the last one keeps it.
    within(300, async {
        for i in 0..n - 1 {
            declare_queue(
                &ch,
                &name(i),
                table(&[
                    ("x-message-ttl", AMQPValue::LongInt(0)),
                    ("x-dead-letter-exchange", s("")),
                    ("x-dead-letter-routing-key", s(&name(i + 1))),
                ]),
            )
            .await;
        }
        declare_queue(&ch, &name(n - 1), FieldTable::default()).await;
    })
    .await;
    publish(&ch, "", &name(0), b"down the chain").await;
    let message = wait_get(&ch, &name(n - 1)).await;
    assert_eq!(message.delivery.data, b"down the chain");
    // One x-death entry per queue passed through.
    assert_eq!(deaths(&message).len(), n - 1);
    within(300, async {
        for i in 0..n {
            delete_queue(&ch, &name(i)).await;
        }
    })
    .await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}
