//! Dead-lettering (`x-dead-letter-exchange`, `x-dead-letter-routing-key`)
//! and the `x-death` headers, exactly as RabbitMQ 3.10's rabbit_dead_letter
//! writes them.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::raw::{self, RawConn};
use common::*;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

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

/// Arguments dead-lettering to `dlx`, optionally with a routing key.
fn dl_args(dlx: &str, key: Option<&str>) -> Vec<(&'static str, AMQPValue)> {
    let mut v = vec![("x-dead-letter-exchange", s(dlx))];
    if let Some(k) = key {
        v.push(("x-dead-letter-routing-key", s(k)));
    }
    v
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An exclusive queue with a fresh name and these arguments.
async fn queue(ch: &Channel, args: &[(&str, AMQPValue)]) -> String {
    let name = unique("dl");
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

/// An auto-delete exchange: it goes once the test's exclusive queues (and
/// so its bindings) go.
async fn exchange(ch: &Channel, kind: ExchangeKind) -> String {
    let name = unique("dlx");
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

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
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

async fn publish_props(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    props: BasicProperties,
) {
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

async fn publish(ch: &Channel, queue: &str, body: &str) {
    publish_props(ch, "", queue, body, BasicProperties::default()).await;
}

async fn try_get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(5, ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

/// Poll `queue` (bounded) until a message arrives.
async fn wait_get(ch: &Channel, queue: &str, no_ack: bool) -> BasicGetMessage {
    within(5, async {
        loop {
            if let Some(m) = try_get(ch, queue, no_ack).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Get the next message and reject it without requeue.
async fn get_and_reject(ch: &Channel, queue: &str) -> BasicGetMessage {
    let m = wait_get(ch, queue, false).await;
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .expect("basic.reject");
    m
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Drain with no-ack gets: the bodies in order.
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

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// One `x-death` entry, with every field RabbitMQ 3.10 writes.
#[derive(Debug, PartialEq, Eq)]
struct Death {
    count: i64,
    reason: String,
    queue: String,
    exchange: String,
    routing_keys: Vec<String>,
    original_expiration: Option<String>,
}

fn death(
    count: i64,
    reason: &str,
    queue: &str,
    exchange: &str,
    routing_keys: &[&str],
    original_expiration: Option<&str>,
) -> Death {
    Death {
        count,
        reason: reason.into(),
        queue: queue.into(),
        exchange: exchange.into(),
        routing_keys: routing_keys.iter().map(|k| k.to_string()).collect(),
        original_expiration: original_expiration.map(Into::into),
    }
}

fn long_string(v: &AMQPValue, what: &str) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
        other => panic!("{what} should be a longstr, was {other:?}"),
    }
}

/// The `x-death` entries, checking each field's name and AMQP type and
/// that `time` is a timestamp (seconds) no earlier than `since`.
fn x_death(d: &Delivery, since: u64) -> Vec<Death> {
    let headers = d.properties.headers().as_ref().expect("headers");
    let entries = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        other => panic!("x-death should be an array, was {other:?}"),
    };
    entries
        .iter()
        .map(|e| {
            let t = match e {
                AMQPValue::FieldTable(t) => t.inner(),
                other => panic!("x-death entry should be a table, was {other:?}"),
            };
            let mut keys: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
            keys.sort_unstable();
            let mut expected = vec![
                "count",
                "exchange",
                "queue",
                "reason",
                "routing-keys",
                "time",
            ];
            if t.contains_key("original-expiration") {
                expected.insert(1, "original-expiration");
                expected.sort_unstable();
            }
            assert_eq!(keys, expected, "x-death entry fields: {t:?}");
            let count = match t.get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                other => panic!("count should be a long (64-bit signed), was {other:?}"),
            };
            match t.get("time") {
                Some(AMQPValue::Timestamp(ts)) => assert!(
                    *ts + 1 >= since && *ts <= now_secs() + 1,
                    "time {ts} not within [{since}, now]"
                ),
                other => panic!("time should be a timestamp, was {other:?}"),
            }
            let routing_keys = match t.get("routing-keys") {
                Some(AMQPValue::FieldArray(a)) => a
                    .as_slice()
                    .iter()
                    .map(|k| long_string(k, "routing key"))
                    .collect(),
                other => panic!("routing-keys should be an array, was {other:?}"),
            };
            Death {
                count,
                reason: long_string(&t["reason"], "reason"),
                queue: long_string(&t["queue"], "queue"),
                exchange: long_string(&t["exchange"], "exchange"),
                routing_keys,
                original_expiration: t
                    .get("original-expiration")
                    .map(|v| long_string(v, "original-expiration")),
            }
        })
        .collect()
}

/// (x-first-death-exchange, x-first-death-queue, x-first-death-reason).
fn first_death(d: &Delivery) -> (String, String, String) {
    let h = d.properties.headers().as_ref().expect("headers").inner();
    let get = |k: &str| long_string(h.get(k).unwrap_or_else(|| panic!("no {k}")), k);
    (
        get("x-first-death-exchange"),
        get("x-first-death-queue"),
        get("x-first-death-reason"),
    )
}

/// The header names, sorted.
fn header_names(d: &Delivery) -> Vec<String> {
    let mut names: Vec<String> = d
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- reasons and the x-death layout ----

#[tokio::test]
async fn rejected_message_is_dead_lettered_with_reason_rejected() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let since = now_secs();
    // The DLX may be declared after the queue naming it.
    let dlx_name = unique("dlx");
    let q = queue(&ch, &dl_args(&dlx_name, None)).await;
    ch.exchange_declare(
        dlx_name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dlq = queue(&ch, &[]).await;
    // No dead-letter routing key: the message's own key (the queue name) is used.
    bind(&ch, &dlq, &dlx_name, &q).await;
    publish(&ch, &q, "m1").await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &dlq, true).await;
    let d = &m.delivery;
    assert_eq!(body(d), "m1");
    assert_eq!(d.exchange.as_str(), dlx_name);
    assert_eq!(d.routing_key.as_str(), q);
    assert!(!d.redelivered);
    assert_eq!(
        x_death(d, since),
        vec![death(1, "rejected", &q, "", &[&q], None)]
    );
    assert_eq!(
        first_death(d),
        ("".to_string(), q.clone(), "rejected".to_string())
    );
    // RabbitMQ 3.10 writes no x-last-death-* headers.
    assert_eq!(
        header_names(d),
        owned(&[
            "x-death",
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason"
        ])
    );
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nacked_messages_are_dead_lettered_in_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    for b in ["m1", "m2", "m3"] {
        publish(&ch, &q, b).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = wait_get(&ch, &q, false).await.delivery.delivery_tag;
    }
    ch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = wait_get(&ch, &dlq, true).await;
        let deaths = x_death(&m.delivery, 0);
        assert_eq!(deaths.len(), 1);
        assert_eq!(deaths[0].reason, "rejected");
        got.push(body(&m.delivery));
    }
    assert_eq!(got, owned(&["m1", "m2", "m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reject_with_requeue_does_not_dead_letter() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish(&ch, &q, "m1").await;
    let m = wait_get(&ch, &q, false).await;
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    let again = wait_get(&ch, &q, true).await;
    assert_eq!(body(&again.delivery), "m1");
    assert!(again.delivery.redelivered);
    assert_eq!(again.delivery.properties.headers(), &None);
    assert_eq!(message_count(&ch, &dlq).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letter_routing_key_replaces_the_routing_key() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let since = now_secs();
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let q = queue(&ch, &dl_args(&dlx, Some("dead"))).await;
    bind(&ch, &q, "amq.direct", "orig").await;
    let dead = queue(&ch, &[]).await;
    let by_orig = queue(&ch, &[]).await;
    bind(&ch, &dead, &dlx, "dead").await;
    bind(&ch, &by_orig, &dlx, "orig").await;
    publish_props(&ch, "amq.direct", "orig", "m1", BasicProperties::default()).await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &dead, true).await;
    let d = &m.delivery;
    assert_eq!(d.exchange.as_str(), dlx);
    assert_eq!(d.routing_key.as_str(), "dead");
    // x-death keeps where the message came from.
    assert_eq!(
        x_death(d, since),
        vec![death(1, "rejected", &q, "amq.direct", &["orig"], None)]
    );
    assert_eq!(
        first_death(d),
        ("amq.direct".to_string(), q.clone(), "rejected".to_string())
    );
    assert_eq!(message_count(&ch, &by_orig).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn without_dead_letter_routing_key_the_original_routing_key_is_used() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlx = exchange(&ch, ExchangeKind::Topic).await;
    let q = queue(&ch, &dl_args(&dlx, None)).await;
    bind(&ch, &q, "amq.topic", "a.#").await;
    let matching = queue(&ch, &[]).await;
    let other = queue(&ch, &[]).await;
    bind(&ch, &matching, &dlx, "a.*").await;
    bind(&ch, &other, &dlx, "b.*").await;
    publish_props(&ch, "amq.topic", "a.b", "m1", BasicProperties::default()).await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &matching, true).await;
    assert_eq!(m.delivery.routing_key.as_str(), "a.b");
    assert_eq!(m.delivery.exchange.as_str(), dlx);
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "rejected", &q, "amq.topic", &["a.b"], None)]
    );
    assert_eq!(message_count(&ch, &other).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letter_exchange_of_fanout_type_reaches_every_bound_queue() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlx = exchange(&ch, ExchangeKind::Fanout).await;
    let q = queue(&ch, &dl_args(&dlx, None)).await;
    let a = queue(&ch, &[]).await;
    let b = queue(&ch, &[]).await;
    bind(&ch, &a, &dlx, "").await;
    bind(&ch, &b, &dlx, "").await;
    publish(&ch, &q, "m1").await;
    get_and_reject(&ch, &q).await;
    assert_eq!(body(&wait_get(&ch, &a, true).await.delivery), "m1");
    assert_eq!(body(&wait_get(&ch, &b, true).await.delivery), "m1");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expired_message_is_dead_lettered_with_reason_expired() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let since = now_secs();
    let dlq = queue(&ch, &[]).await;
    let mut args = dl_args("", Some(&dlq));
    args.push(("x-message-ttl", AMQPValue::LongInt(100)));
    let q = queue(&ch, &args).await;
    publish(&ch, &q, "m1").await;
    let m = wait_get(&ch, &dlq, true).await;
    let d = &m.delivery;
    assert_eq!(body(d), "m1");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), dlq);
    assert_eq!(
        x_death(d, since),
        vec![death(1, "expired", &q, "", &[&q], None)]
    );
    assert_eq!(
        first_death(d),
        ("".to_string(), q.clone(), "expired".to_string())
    );
    assert_eq!(d.properties.expiration(), &None);
    assert_eq!(message_count(&ch, &q).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn per_message_expiration_is_recorded_as_original_expiration_and_removed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let since = now_secs();
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish_props(
        &ch,
        "",
        &q,
        "m1",
        BasicProperties::default().with_expiration("100".into()),
    )
    .await;
    let m = wait_get(&ch, &dlq, true).await;
    let d = &m.delivery;
    assert_eq!(
        x_death(d, since),
        vec![death(1, "expired", &q, "", &[&q], Some("100"))]
    );
    // The dead-lettered copy has no expiration: it does not expire again.
    assert_eq!(d.properties.expiration(), &None);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn rejected_message_with_expiration_records_original_expiration() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish_props(
        &ch,
        "",
        &q,
        "m1",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &dlq, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "rejected", &q, "", &[&q], Some("60000"))]
    );
    assert_eq!(m.delivery.properties.expiration(), &None);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ttl_zero_message_without_consumer_is_dead_lettered_as_expired() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let mut args = dl_args("", Some(&dlq));
    args.push(("x-message-ttl", AMQPValue::LongInt(0)));
    let q = queue(&ch, &args).await;
    publish(&ch, &q, "m1").await;
    let m = wait_get(&ch, &dlq, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "expired", &q, "", &[&q], None)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_lettered_message_keeps_its_body_properties_and_headers() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_correlation_id("corr-1".into())
        .with_message_id("msg-1".into())
        .with_priority(3)
        .with_delivery_mode(2)
        .with_app_id("tests".into())
        .with_headers(table(&[
            ("custom", s("kept")),
            ("n", AMQPValue::LongInt(7)),
        ]));
    publish_props(&ch, "", &q, "the body", props).await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &dlq, true).await;
    let d = &m.delivery;
    assert_eq!(body(d), "the body");
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().map(|v| v.as_str()),
        Some("text/plain")
    );
    assert_eq!(
        p.correlation_id().as_ref().map(|v| v.as_str()),
        Some("corr-1")
    );
    assert_eq!(p.message_id().as_ref().map(|v| v.as_str()), Some("msg-1"));
    assert_eq!(p.priority(), &Some(3));
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(p.app_id().as_ref().map(|v| v.as_str()), Some("tests"));
    let h = p.headers().as_ref().unwrap().inner();
    assert_eq!(h.get("custom"), Some(&s("kept")));
    assert_eq!(h.get("n"), Some(&AMQPValue::LongInt(7)));
    assert_eq!(
        header_names(d),
        owned(&[
            "custom",
            "n",
            "x-death",
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason"
        ])
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_in_queue_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let mut args = dl_args("", Some(&dlq));
    args.push(("x-message-ttl", AMQPValue::LongInt(100)));
    let q = queue(&ch, &args).await;
    for b in ["m1", "m2", "m3"] {
        publish(&ch, &q, b).await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(body(&wait_get(&ch, &dlq, true).await.delivery));
    }
    assert_eq!(got, owned(&["m1", "m2", "m3"]));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_expiring_while_unacked_is_dead_lettered_when_requeued() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let mut args = dl_args("", Some(&dlq));
    args.push(("x-message-ttl", AMQPValue::LongInt(200)));
    let q = queue(&ch, &args).await;
    publish(&ch, &q, "m1").await;
    let held = wait_get(&ch, &q, false).await;
    sleep_ms(400).await;
    // Unacked messages do not expire; once requeued, it has.
    assert_eq!(message_count(&ch, &dlq).await, 0);
    ch.basic_reject(
        held.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    )
    .await
    .unwrap();
    let m = wait_get(&ch, &dlq, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "expired", &q, "", &[&q], None)]
    );
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn default_exchange_as_dead_letter_exchange_without_key_requeues_into_the_same_queue() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // DLX "" and no routing key: the message's own key, the queue's name,
    // routes it straight back (rejections are never treated as cycles).
    let q = queue(&ch, &dl_args("", None)).await;
    publish(&ch, &q, "m1").await;
    get_and_reject(&ch, &q).await;
    let m = wait_get(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "m1");
    assert!(!m.delivery.redelivered);
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "rejected", &q, "", &[&q], None)]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- repeated dead-lettering ----

#[tokio::test]
async fn dead_lettering_again_through_the_same_queue_increments_count() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // Rejections dead-letter the message back into its own queue.
    let name = unique("dl-self");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(&dl_args("", Some(&name))),
    )
    .await
    .unwrap();
    publish(&ch, &name, "m1").await;
    for _ in 0..3 {
        get_and_reject(&ch, &name).await;
    }
    let m = wait_get(&ch, &name, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(3, "rejected", &name, "", &[&name], None)]
    );
    assert_eq!(
        first_death(&m.delivery),
        ("".to_string(), name.clone(), "rejected".to_string())
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_lettering_through_another_queue_prepends_an_entry() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q3 = queue(&ch, &[]).await;
    let q2 = queue(&ch, &dl_args("", Some(&q3))).await;
    let q1 = queue(&ch, &dl_args("", Some(&q2))).await;
    publish(&ch, &q1, "m1").await;
    get_and_reject(&ch, &q1).await;
    get_and_reject(&ch, &q2).await;
    let m = wait_get(&ch, &q3, true).await;
    // Newest first; the routing keys are those the message had when it died
    // in each queue.
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(1, "rejected", &q2, "", &[&q2], None),
            death(1, "rejected", &q1, "", &[&q1], None),
        ]
    );
    // The first-death headers keep the first death.
    assert_eq!(
        first_death(&m.delivery),
        ("".to_string(), q1.clone(), "rejected".to_string())
    );
    assert_eq!(m.delivery.routing_key.as_str(), q3);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn older_entries_are_reversed_when_a_third_queue_adds_one() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q4 = queue(&ch, &[]).await;
    let q3 = queue(&ch, &dl_args("", Some(&q4))).await;
    let q2 = queue(&ch, &dl_args("", Some(&q3))).await;
    let q1 = queue(&ch, &dl_args("", Some(&q2))).await;
    publish(&ch, &q1, "m1").await;
    get_and_reject(&ch, &q1).await;
    get_and_reject(&ch, &q2).await;
    get_and_reject(&ch, &q3).await;
    let m = wait_get(&ch, &q4, true).await;
    // RabbitMQ 3.10 regroups existing entries by (queue, reason) before
    // adding a new one at the front, and the regrouping reverses them when
    // there are two or more: [q2, q1] becomes [q1, q2], then q3 goes first.
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(1, "rejected", &q3, "", &[&q3], None),
            death(1, "rejected", &q1, "", &[&q1], None),
            death(1, "rejected", &q2, "", &[&q2], None),
        ]
    );
    assert_eq!(
        first_death(&m.delivery),
        ("".to_string(), q1.clone(), "rejected".to_string())
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn incremented_entry_moves_to_the_front() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q1 = unique("dl-q1");
    let q2 = unique("dl-q2");
    let mut q1_args = dl_args("", Some(&q2));
    q1_args.push(("x-message-ttl", AMQPValue::LongInt(100)));
    for (name, args) in [
        (&q1, table(&q1_args)),
        (&q2, table(&dl_args("", Some(&q1)))),
    ] {
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }
    // q1 (expires) -> q2 (rejected) -> q1 (expires) -> q2.
    publish(&ch, &q1, "m1").await;
    get_and_reject(&ch, &q2).await;
    let m = wait_get(&ch, &q2, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(2, "expired", &q1, "", &[&q1], None),
            death(1, "rejected", &q2, "", &[&q2], None),
        ]
    );
    assert_eq!(
        first_death(&m.delivery),
        ("".to_string(), q1.clone(), "expired".to_string())
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn same_queue_with_another_reason_gets_its_own_entry() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q1 = unique("dl-q1");
    let q2 = unique("dl-q2");
    let mut q1_args = dl_args("", Some(&q2));
    q1_args.push(("x-message-ttl", AMQPValue::LongInt(300)));
    for (name, args) in [
        (&q1, table(&q1_args)),
        (&q2, table(&dl_args("", Some(&q1)))),
    ] {
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }
    // q1 (rejected) -> q2 (rejected) -> q1 (expired) -> q2.
    publish(&ch, &q1, "m1").await;
    get_and_reject(&ch, &q1).await;
    get_and_reject(&ch, &q2).await;
    // Now back in q1: leave it to expire.
    let m = wait_get(&ch, &q2, true).await;
    // The new entry comes first. RabbitMQ 3.10 regroups the existing entries
    // by (queue, reason) before adding one, and that regrouping reverses
    // them: [q2 rejected, q1 rejected] becomes [q1 rejected, q2 rejected].
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(1, "expired", &q1, "", &[&q1], None),
            death(1, "rejected", &q1, "", &[&q1], None),
            death(1, "rejected", &q2, "", &[&q2], None),
        ]
    );
    assert_eq!(
        first_death(&m.delivery),
        ("".to_string(), q1.clone(), "rejected".to_string())
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- cycles ----

#[tokio::test]
async fn message_expiring_back_into_its_own_queue_is_dropped() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlx = exchange(&ch, ExchangeKind::Fanout).await;
    let mut args = dl_args(&dlx, None);
    args.push(("x-message-ttl", AMQPValue::LongInt(50)));
    let q = queue(&ch, &args).await;
    let observer = queue(&ch, &[]).await;
    bind(&ch, &q, &dlx, "").await;
    bind(&ch, &observer, &dlx, "").await;
    publish(&ch, &q, "m1").await;
    // The observer gets the one copy; q, where it would cycle, does not.
    let m = wait_get(&ch, &observer, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![death(1, "expired", &q, "", &[&q], None)]
    );
    sleep_ms(400).await;
    assert_eq!(message_count(&ch, &q).await, 0);
    assert_eq!(drain(&ch, &observer).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expired_message_cycling_back_to_a_queue_it_expired_from_is_dropped() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let fanout = exchange(&ch, ExchangeKind::Fanout).await;
    let q1 = unique("dl-q1");
    let q2 = unique("dl-q2");
    let mut q1_args = dl_args("", Some(&q2));
    q1_args.push(("x-message-ttl", AMQPValue::LongInt(50)));
    let mut q2_args = dl_args(&fanout, None);
    q2_args.push(("x-message-ttl", AMQPValue::LongInt(50)));
    for (name, args) in [(&q1, table(&q1_args)), (&q2, table(&q2_args))] {
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }
    let observer = queue(&ch, &[]).await;
    bind(&ch, &q1, &fanout, "").await;
    bind(&ch, &observer, &fanout, "").await;
    // q1 (expired) -> q2 (expired) -> fanout -> {q1: cycle, dropped; observer}.
    publish(&ch, &q1, "m1").await;
    let m = wait_get(&ch, &observer, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(1, "expired", &q2, "", &[&q2], None),
            death(1, "expired", &q1, "", &[&q1], None),
        ]
    );
    sleep_ms(400).await;
    assert_eq!(message_count(&ch, &q1).await, 0);
    assert_eq!(message_count(&ch, &q2).await, 0);
    assert_eq!(drain(&ch, &observer).await, Vec::<String>::new());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn cycle_with_a_rejection_in_it_is_not_dropped() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q1 = unique("dl-q1");
    let q2 = unique("dl-q2");
    let mut q2_args = dl_args("", Some(&q1));
    q2_args.push(("x-message-ttl", AMQPValue::LongInt(50)));
    for (name, args) in [
        (&q1, table(&dl_args("", Some(&q2)))),
        (&q2, table(&q2_args)),
    ] {
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }
    // q1 (rejected) -> q2 (expired) -> back to q1: allowed, a client
    // rejected it on the way.
    publish(&ch, &q1, "m1").await;
    get_and_reject(&ch, &q1).await;
    let m = wait_get(&ch, &q1, true).await;
    assert_eq!(
        x_death(&m.delivery, 0),
        vec![
            death(1, "expired", &q2, "", &[&q2], None),
            death(1, "rejected", &q1, "", &[&q1], None),
        ]
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- where dead letters cannot go ----

#[tokio::test]
async fn dead_lettering_to_a_missing_exchange_drops_the_message() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = queue(&ch, &dl_args(&unique("no-such-dlx"), None)).await;
    publish(&ch, &q, "m1").await;
    publish(&ch, &q, "m2").await;
    get_and_reject(&ch, &q).await;
    // Silently: the channel carries on and the rest of the queue is intact.
    assert_eq!(drain(&ch, &q).await, owned(&["m2"]));
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letter_that_routes_nowhere_is_dropped() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let q = queue(&ch, &dl_args(&dlx, Some("unbound"))).await;
    // Keep the auto-delete exchange alive with a binding that does not match.
    let other = queue(&ch, &[]).await;
    bind(&ch, &other, &dlx, "something-else").await;
    publish(&ch, &q, "m1").await;
    get_and_reject(&ch, &q).await;
    sleep_ms(200).await;
    assert_eq!(message_count(&ch, &q).await, 0);
    assert_eq!(message_count(&ch, &other).await, 0);
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn purged_messages_are_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish(&ch, &q, "m1").await;
    publish(&ch, &q, "m2").await;
    let purged = ch
        .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 2);
    sleep_ms(200).await;
    assert_eq!(message_count(&ch, &dlq).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn messages_of_a_deleted_queue_are_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish(&ch, &q, "m1").await;
    let deleted = ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    sleep_ms(200).await;
    assert_eq!(message_count(&ch, &dlq).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unacked_messages_requeued_by_channel_close_are_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let dlq = queue(&ch, &[]).await;
    let q = queue(&ch, &dl_args("", Some(&dlq))).await;
    publish(&ch, &q, "m1").await;
    let get_ch = conn.create_channel().await.unwrap();
    wait_get(&get_ch, &q, false).await;
    get_ch.close(200, "bye".into()).await.unwrap();
    let again = wait_get(&ch, &q, true).await;
    assert_eq!(body(&again.delivery), "m1");
    assert!(again.delivery.redelivered);
    assert_eq!(message_count(&ch, &dlq).await, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- the exact wire layout ----

/// A field value as read off the wire, keeping table field order.
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Table(Vec<(String, Wire)>),
    Array(Vec<Wire>),
    LongStr(String),
    Long(i64),
    Timestamp(u64),
}

fn read_u32(b: &[u8], at: &mut usize) -> u32 {
    let v = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap());
    *at += 4;
    v
}

fn read_u64(b: &[u8], at: &mut usize) -> u64 {
    let v = u64::from_be_bytes(b[*at..*at + 8].try_into().unwrap());
    *at += 8;
    v
}

fn read_value(b: &[u8], at: &mut usize) -> Wire {
    let kind = b[*at];
    *at += 1;
    match kind {
        b'F' => {
            let len = read_u32(b, at) as usize;
            let end = *at + len;
            let mut fields = Vec::new();
            while *at < end {
                let klen = b[*at] as usize;
                let key = String::from_utf8(b[*at + 1..*at + 1 + klen].to_vec()).unwrap();
                *at += 1 + klen;
                fields.push((key, read_value(b, at)));
            }
            Wire::Table(fields)
        }
        b'A' => {
            let len = read_u32(b, at) as usize;
            let end = *at + len;
            let mut items = Vec::new();
            while *at < end {
                items.push(read_value(b, at));
            }
            Wire::Array(items)
        }
        b'S' => {
            let len = read_u32(b, at) as usize;
            let v = String::from_utf8(b[*at..*at + len].to_vec()).unwrap();
            *at += len;
            Wire::LongStr(v)
        }
        b'l' => Wire::Long(read_u64(b, at) as i64),
        b'T' => Wire::Timestamp(read_u64(b, at)),
        other => panic!("unexpected field type {:?}", other as char),
    }
}

fn field_names(t: &Wire) -> Vec<&str> {
    match t {
        Wire::Table(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
        other => panic!("not a table: {other:?}"),
    }
}

fn field<'a>(t: &'a Wire, name: &str) -> &'a Wire {
    match t {
        Wire::Table(fields) => &fields.iter().find(|(k, _)| k == name).unwrap().1,
        other => panic!("not a table: {other:?}"),
    }
}

/// basic.get (no-ack) on a raw connection: the headers table of the
/// message, in wire order.
async fn raw_get_headers(addr: std::net::SocketAddr, queue: &str) -> Wire {
    let mut c = RawConn::handshake(addr).await;
    c.open_channel(1).await;
    let mut args = vec![0, 0];
    args.extend(raw::short_str(queue));
    args.push(1);
    c.send(&raw::method(1, 60, 70, &args)).await;
    c.expect_method(60, 71).await;
    let header = c
        .recv(Duration::from_secs(5))
        .await
        .expect("content header");
    assert_eq!(header.kind, 2);
    let p = &header.payload;
    let flags = u16::from_be_bytes([p[12], p[13]]);
    let mut at = 14;
    // content-type and content-encoding come before headers.
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            at += 1 + p[at] as usize;
        }
    }
    assert!(flags & (1 << 13) != 0, "no headers");
    // A table value without its type byte: read it as 'F'.
    let mut framed = vec![b'F'];
    let len = u32::from_be_bytes(p[at..at + 4].try_into().unwrap()) as usize;
    framed.extend_from_slice(&p[at..at + 4 + len]);
    let mut pos = 0;
    read_value(&framed, &mut pos)
}

#[tokio::test]
async fn x_death_fields_are_in_rabbitmq_wire_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // Named, non-exclusive queues: the raw connection reads q3.
    let (q1, q2, q3) = (unique("dl-wire1"), unique("dl-wire2"), unique("dl-wire3"));
    for (name, args) in [
        (&q3, table(&[])),
        (&q2, table(&dl_args("", Some(&q3)))),
        (&q1, table(&dl_args("", Some(&q2)))),
    ] {
        ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .unwrap();
    }
    publish_props(
        &ch,
        "",
        &q1,
        "m1",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    get_and_reject(&ch, &q1).await;
    get_and_reject(&ch, &q2).await;
    within(5, async {
        while message_count(&ch, &q3).await == 0 {
            sleep_ms(20).await;
        }
    })
    .await;
    let headers = raw_get_headers(broker.addr, &q3).await;
    // Message headers are kept sorted by name.
    assert_eq!(
        field_names(&headers),
        vec![
            "x-death",
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason"
        ]
    );
    let deaths = match field(&headers, "x-death") {
        Wire::Array(items) => items.clone(),
        other => panic!("x-death: {other:?}"),
    };
    assert_eq!(deaths.len(), 2);
    // An entry added to an existing x-death is sorted by field name...
    assert_eq!(
        field_names(&deaths[0]),
        vec![
            "count",
            "exchange",
            "queue",
            "reason",
            "routing-keys",
            "time"
        ]
    );
    // ...while RabbitMQ keeps the very first entry in the order it was
    // built in (count, reason, queue, time, exchange, routing-keys,
    // original-expiration). Warren's field tables are sorted maps, so it
    // sends that entry sorted too; clients read these tables as maps, so
    // only the set of fields is pinned here (a documented difference).
    let mut first_entry = field_names(&deaths[1]);
    first_entry.sort_unstable();
    assert_eq!(
        first_entry,
        vec![
            "count",
            "exchange",
            "original-expiration",
            "queue",
            "reason",
            "routing-keys",
            "time"
        ]
    );
    assert_eq!(field(&deaths[1], "count"), &Wire::Long(1));
    assert_eq!(
        field(&deaths[1], "reason"),
        &Wire::LongStr("rejected".into())
    );
    assert_eq!(field(&deaths[1], "queue"), &Wire::LongStr(q1.clone()));
    assert_eq!(field(&deaths[1], "exchange"), &Wire::LongStr("".into()));
    assert_eq!(
        field(&deaths[1], "routing-keys"),
        &Wire::Array(vec![Wire::LongStr(q1.clone())])
    );
    assert_eq!(
        field(&deaths[1], "original-expiration"),
        &Wire::LongStr("60000".into())
    );
    assert!(matches!(field(&deaths[1], "time"), Wire::Timestamp(_)));
    assert_eq!(field(&deaths[0], "queue"), &Wire::LongStr(q2.clone()));
    for q in [&q1, &q2, &q3] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

/// A client can set any count; the next death must not overflow it.
#[tokio::test]
async fn x_death_count_at_the_largest_long_does_not_overflow() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let name = unique("dl-max");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(&dl_args("", Some(&name))),
    )
    .await
    .unwrap();
    // A client's own x-death entry, counted up to the largest long.
    let entry = table(&[
        ("count", AMQPValue::LongLongInt(i64::MAX)),
        ("reason", s("rejected")),
        ("queue", s(&name)),
        ("time", AMQPValue::Timestamp(now_secs())),
        ("exchange", s("")),
        ("routing-keys", AMQPValue::FieldArray(vec![s(&name)].into())),
    ]);
    let headers = table(&[(
        "x-death",
        AMQPValue::FieldArray(vec![AMQPValue::FieldTable(entry)].into()),
    )]);
    publish_props(
        &ch,
        "",
        &name,
        "m1",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    get_and_reject(&ch, &name).await;
    let m = wait_get(&ch, &name, true).await;
    let deaths = x_death(&m.delivery, 0);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    // Warren saturates. RabbitMQ 3.10 wraps round to the most negative long
    // (its encoder truncates the sum to 64 bits): checked here, so that the
    // difference stays deliberate.
    let expected = if broker.is_external() {
        i64::MIN
    } else {
        i64::MAX
    };
    assert_eq!(deaths[0].count, expected, "{deaths:?}");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

/// basic.get (no-ack) on a raw connection, polled (bounded) until a message
/// comes: its property list as it went on the wire (flags word first).
async fn raw_get_properties(c: &mut RawConn, queue: &str) -> Vec<u8> {
    within(5, async {
        loop {
            let mut args = vec![0, 0];
            args.extend(raw::short_str(queue));
            args.push(1);
            c.send(&raw::method(1, 60, 70, &args)).await;
            let reply = c.recv(Duration::from_secs(5)).await.expect("get reply");
            match reply.method() {
                Some((60, 71)) => {
                    let header = c.recv(Duration::from_secs(5)).await.expect("header");
                    assert_eq!(header.kind, 2);
                    let _body = c.recv(Duration::from_secs(5)).await.expect("body");
                    return header.payload[12..].to_vec();
                }
                Some((60, 72)) => sleep_ms(20).await,
                other => panic!("unexpected reply {other:?}"),
            }
        }
    })
    .await
}

/// The raw value at `at` (type byte first) is skipped; returns its end.
fn skip_field_value(b: &[u8], at: usize) -> usize {
    let body = at + 1;
    let len32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    match b[at] {
        b'S' | b'F' | b'A' | b'x' => body + 4 + len32(body),
        b'l' | b'T' | b'd' => body + 8,
        b'I' | b'f' | b'i' => body + 4,
        b'b' | b'B' | b't' => body + 1,
        b'u' | b'U' => body + 2,
        b'D' => body + 5,
        b'V' => body,
        other => panic!("unexpected field type {other:#x}"),
    }
}

/// Top-level entries of a raw table: raw key, raw value (type tag first).
type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries of a raw table (length first).
fn raw_table_entries(table: &[u8]) -> RawEntries {
    let len = u32::from_be_bytes(table[..4].try_into().unwrap()) as usize;
    let mut at = 4;
    let mut out = Vec::new();
    while at < 4 + len {
        let klen = table[at] as usize;
        let key = table[at + 1..at + 1 + klen].to_vec();
        let start = at + 1 + klen;
        let end = skip_field_value(table, start);
        out.push((key, table[start..end].to_vec()));
        at = end;
    }
    out
}

/// (content-type, headers' raw entries, delivery-mode) of a raw property
/// list that has those and nothing between them but content-encoding.
fn raw_properties(p: &[u8]) -> (Option<Vec<u8>>, RawEntries, Option<u8>) {
    let flags = u16::from_be_bytes([p[0], p[1]]);
    let mut at = 2;
    let mut content_type = None;
    if flags & (1 << 15) != 0 {
        let len = p[at] as usize;
        content_type = Some(p[at + 1..at + 1 + len].to_vec());
        at += 1 + len;
    }
    if flags & (1 << 14) != 0 {
        at += 1 + p[at] as usize;
    }
    let mut headers = Vec::new();
    if flags & (1 << 13) != 0 {
        let len = u32::from_be_bytes(p[at..at + 4].try_into().unwrap()) as usize;
        headers = raw_table_entries(&p[at..at + 4 + len]);
        at += 4 + len;
    }
    let delivery_mode = (flags & (1 << 12) != 0).then(|| p[at]);
    (content_type, headers, delivery_mode)
}

/// Short strings and header keys that are not UTF-8 are bytes to AMQP
/// (RabbitMQ stores them as it got them): a dead-lettered copy keeps them,
/// and with them the delivery mode and the other headers.
#[tokio::test]
async fn dead_lettered_copy_keeps_properties_that_are_not_utf8() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let (q, dlq) = (unique("dl-bytes"), unique("dl-bytes-dlq"));
    for (name, args) in [
        (&dlq, table(&[])),
        (
            &q,
            table(&[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(&dlq)),
                ("x-message-ttl", AMQPValue::LongInt(0)),
            ]),
        ),
    ] {
        ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .expect("queue.declare");
    }
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    // content-type, headers and delivery-mode 2.
    let mut props = ((1u16 << 15) | (1 << 13) | (1 << 12))
        .to_be_bytes()
        .to_vec();
    props.extend_from_slice(b"\x06text/\xff");
    let mut headers = Vec::new();
    headers.extend_from_slice(b"\x02k\xffS\x00\x00\x00\x02v\xfe");
    headers.extend_from_slice(b"\x04keepS\x00\x00\x00\x03yes");
    props.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    props.extend_from_slice(&headers);
    props.push(2);
    let mut publish = raw::method(1, 60, 40, &raw::publish_args("", &q, 0));
    publish.extend(raw::content_header(1, 4, &props));
    publish.extend(raw::frame(3, 1, b"body"));
    c.send(&publish).await;

    let got = raw_get_properties(&mut c, &dlq).await;
    let (content_type, headers, delivery_mode) = raw_properties(&got);
    assert_eq!(content_type.as_deref(), Some(&b"text/\xff"[..]));
    assert_eq!(delivery_mode, Some(2), "{got:?}");
    let value = |key: &[u8]| {
        headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(value(b"k\xff"), Some(b"S\x00\x00\x00\x02v\xfe".to_vec()));
    assert_eq!(value(b"keep"), Some(b"S\x00\x00\x00\x03yes".to_vec()));
    let keys: Vec<&[u8]> = headers.iter().map(|(k, _)| &k[..]).collect();
    // Sorted by key, bytes compared as bytes.
    assert_eq!(
        keys,
        vec![
            &b"keep"[..],
            b"k\xff",
            b"x-death",
            b"x-first-death-exchange",
            b"x-first-death-queue",
            b"x-first-death-reason"
        ]
    );
    assert_eq!(
        value(b"x-first-death-reason"),
        Some(b"S\x00\x00\x00\x07expired".to_vec())
    );
    for name in [&q, &dlq] {
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("queue.delete");
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
