//! Queues: declare (passive, durable, exclusive, auto-delete, server-named,
//! counts, reserved names, argument equivalence), bind/unbind with
//! arguments, purge, delete (if-unused, if-empty), server-side consumer
//! cancellation, the "most recently declared queue" shortcut, and that
//! channel errors stay on their channel.
//!
//! Every expectation here was first checked against RabbitMQ 3.10.

mod common;

use std::time::Duration;

use common::raw;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

/// Upper bound for one whole test.
const LIMIT: u64 = 15;

/// Assert an AMQP error with exactly this reply code and reply text.
#[track_caller]
fn assert_error<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16, text: &str) {
    match result {
        Ok(v) => panic!("expected AMQP error {code} {text:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            (reply_code(&e), reply_text(&e)),
            (Some(code), Some(text.to_string())),
            "error was {e:?}"
        ),
    }
}

fn locked(q: &str) -> String {
    format!(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. \
         It could be originally declared on another connection or the exclusive property \
         value does not match that of the original declaration."
    )
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn qopts(durable: bool, exclusive: bool, auto_delete: bool) -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable,
        exclusive,
        auto_delete,
        ..Default::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare_with(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(name.into(), options, args).await
}

/// A named exclusive queue.
async fn exclusive_queue(ch: &Channel) -> String {
    let q = unique("q");
    declare_with(ch, &q, qopts(false, true, false), FieldTable::default())
        .await
        .expect("queue.declare");
    q
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
}

async fn bind_args(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
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

async fn unbind_args(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_unbind(queue.into(), exchange.into(), key.into(), args)
        .await
        .expect("queue.unbind");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &str) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish");
}

/// Take every ready message off `queue` (basic.get, no-ack); the bodies in order.
async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            Some(m) => out.push(String::from_utf8(m.delivery.data.clone()).unwrap()),
            None => return out,
        }
    }
    panic!("queue {queue} never ran dry");
}

/// Whether a queue exists, by passive declare on a throw-away channel.
async fn queue_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    match declare_with(&ch, name, passive(), FieldTable::default()).await {
        Ok(_) => {
            ch.close(200, "ok".into()).await.expect("channel.close");
            true
        }
        Err(e) => {
            assert_eq!(
                (reply_code(&e), reply_text(&e)),
                (
                    Some(404),
                    Some(format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
                ),
                "{e:?}"
            );
            false
        }
    }
}

/// Wait (bounded) until the queue is gone; true if it went.
async fn becomes_absent(conn: &Connection, name: &str) -> bool {
    for _ in 0..100 {
        if !queue_exists(conn, name).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn delete_queue(conn: &Connection, name: &str) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await;
    }
}

async fn cleanup_exchange(conn: &Connection, name: &str) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

async fn sync_point(ch: &Channel) -> lapin::Result<()> {
    ch.basic_qos(10, BasicQosOptions::default()).await
}

// ---------------------------------------------------------------------------
// declare

#[tokio::test]
async fn passive_declare_of_missing_queue_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let r = declare_with(&ch, &q, passive(), FieldTable::default()).await;
        assert_error(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_existing_queue_ignores_flags_and_arguments() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let ok = declare_with(
            &ch,
            &q,
            QueueDeclareOptions {
                passive: true,
                durable: true,
                exclusive: false,
                auto_delete: true,
                nowait: false,
            },
            table(&[("x-max-length", AMQPValue::LongLongInt(1))]),
        )
        .await
        .expect("passive declare");
        assert_eq!(ok.name().as_str(), q);
        assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn declare_ok_echoes_the_queue_name_with_zero_counts_for_a_new_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let ok = declare_with(&ch, &q, qopts(false, true, false), FieldTable::default())
            .await
            .unwrap();
        assert_eq!(ok.name().as_str(), q);
        assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn declare_ok_counts_ready_messages_and_consumers() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        for body in ["1", "2", "3"] {
            publish(&ch, "", &q, body).await;
        }
        let ch2 = conn.create_channel().await.unwrap();
        ch2.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch2
            .basic_consume(
                q.as_str().into(),
                "c1".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let first = within(5, consumer.next()).await.unwrap().unwrap();
        assert_eq!(first.data, b"1");
        // One message is unacknowledged, two are ready; message_count counts
        // only the ready ones.
        let ok = declare_with(&ch, &q, passive(), FieldTable::default())
            .await
            .unwrap();
        assert_eq!((ok.message_count(), ok.consumer_count()), (2, 1));
        // A non-passive redeclare reports the same.
        let ok = declare_with(&ch, &q, qopts(false, true, false), FieldTable::default())
            .await
            .unwrap();
        assert_eq!((ok.message_count(), ok.consumer_count()), (2, 1));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn server_named_queue_gets_amq_gen_name() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let a = temp_queue(&ch).await;
        let b = temp_queue(&ch).await;
        for name in [&a, &b] {
            let suffix = name
                .strip_prefix("amq.gen-")
                .unwrap_or_else(|| panic!("{name} starts with amq.gen-"));
            assert_eq!(suffix.len(), 22, "{name}");
            assert!(
                suffix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{name}"
            );
        }
        assert_ne!(a, b);
        // The generated name works like any other.
        publish(&ch, "", &a, "m").await;
        assert_eq!(drain(&ch, &a).await, vec!["m"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn server_named_queue_can_be_passively_declared_by_its_name() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let a = temp_queue(&ch).await;
        let ok = declare_with(&ch, &a, passive(), FieldTable::default())
            .await
            .expect("passive declare of amq.gen- queue");
        assert_eq!(ok.name().as_str(), a);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_server_named_queue_by_its_name_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let a = temp_queue(&ch).await;
        // RabbitMQ checks the reserved prefix before looking the queue up,
        // so even an existing amq.gen- queue cannot be redeclared.
        let r = declare_with(&ch, &a, qopts(false, true, false), FieldTable::default()).await;
        assert_error(
            r,
            403,
            &format!("ACCESS_REFUSED - queue name '{a}' contains reserved prefix 'amq.*'"),
        );
        assert!(queue_exists(&conn, &a).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn declaring_queue_with_amq_prefix_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = unique("amq.foo");
        let r = declare_with(
            &ch,
            &q,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            403,
            &format!("ACCESS_REFUSED - queue name '{q}' contains reserved prefix 'amq.*'"),
        );
        assert!(!queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn durable_queue_declare_succeeds_and_identical_redeclare_is_accepted() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = unique("q");
        for _ in 0..2 {
            declare_with(
                &ch,
                &q,
                qopts(true, false, false),
                table(&[("x-max-length", AMQPValue::LongLongInt(10))]),
            )
            .await
            .expect("durable declare");
        }
        assert!(queue_exists(&conn, &q).await);
        delete_queue(&conn, &q).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_other_durable_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(&ch, &q, qopts(false, false, false), FieldTable::default())
            .await
            .unwrap();
        let r = declare_with(&ch, &q, qopts(true, false, false), FieldTable::default()).await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"
            ),
        );
        delete_queue(&conn, &q).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_other_auto_delete_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(&ch, &q, qopts(false, false, true), FieldTable::default())
            .await
            .unwrap();
        let r = declare_with(&ch, &q, qopts(false, false, false), FieldTable::default()).await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': received 'false' but current is 'true'"
            ),
        );
        delete_queue(&conn, &q).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_other_max_length_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongLongInt(10))]),
        )
        .await
        .unwrap();
        let r = declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongLongInt(20))]),
        )
        .await;
        // Same type class (integers): RabbitMQ prints bare values.
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '20' but current is '10'"
            ),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_same_max_length_as_string_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongLongInt(10))]),
        )
        .await
        .unwrap();
        let r = declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongString("10".into()))]),
        )
        .await;
        // Different type classes never match; with both present RabbitMQ
        // prints bare values, so the text shows two equal-looking values.
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '10' but current is '10'"
            ),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_without_its_message_ttl_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-message-ttl", AMQPValue::LongInt(60000))]),
        )
        .await
        .unwrap();
        let r = declare_with(&ch, &q, qopts(false, true, false), FieldTable::default()).await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received none but current is the value '60000' of type 'signedint'"
            ),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_adding_a_max_length_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let r = declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongLongInt(20))]),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received the value '20' of type 'long' but current is none"
            ),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_same_value_in_other_integer_width_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-max-length", AMQPValue::LongLongInt(10))]),
        )
        .await
        .unwrap();
        for v in [
            AMQPValue::LongInt(10),
            AMQPValue::ShortInt(10),
            AMQPValue::ShortShortUInt(10),
        ] {
            declare_with(
                &ch,
                &q,
                qopts(false, true, false),
                table(&[("x-max-length", v.clone())]),
            )
            .await
            .unwrap_or_else(|e| panic!("redeclare with {v:?}: {e:?}"));
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_other_unknown_argument_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-foo", AMQPValue::LongString("a".into()))]),
        )
        .await
        .unwrap();
        declare_with(
            &ch,
            &q,
            qopts(false, true, false),
            table(&[("x-foo", AMQPValue::LongString("b".into()))]),
        )
        .await
        .expect("x-foo is not compared");
        declare_with(&ch, &q, qopts(false, true, false), FieldTable::default())
            .await
            .expect("x-foo may be left out");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_queue_with_identical_settings_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let args = table(&[
            ("x-max-length", AMQPValue::LongLongInt(5)),
            ("x-message-ttl", AMQPValue::LongLongInt(60000)),
        ]);
        for _ in 0..3 {
            declare_with(&ch, &q, qopts(false, true, true), args.clone())
                .await
                .expect("identical redeclare");
        }
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// exclusive

/// An exclusive queue owned by one connection and a second connection.
async fn locked_queue(broker: &TestBroker) -> (Connection, Channel, Connection, Channel, String) {
    let (owner, owner_ch) = broker.channel().await;
    let q = exclusive_queue(&owner_ch).await;
    publish(&owner_ch, "", &q, "m").await;
    let (other, other_ch) = broker.channel().await;
    (owner, owner_ch, other, other_ch, q)
}

#[tokio::test]
async fn exclusive_queue_declare_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = declare_with(&ch, &q, qopts(false, false, false), FieldTable::default()).await;
        assert_error(r, 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_exclusive_declare_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = declare_with(&ch, &q, qopts(false, true, false), FieldTable::default()).await;
        assert_error(r, 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_passive_declare_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = declare_with(&ch, &q, passive(), FieldTable::default()).await;
        assert_error(r, 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_bind_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = ch
            .queue_bind(
                q.as_str().into(),
                "amq.direct".into(),
                q.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(r, 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_purge_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, och, _c, ch, q) = locked_queue(&broker).await;
        let r = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await;
        assert_error(r, 405, &locked(&q));
        assert_eq!(drain(&och, &q).await, vec!["m"], "nothing purged");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_delete_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
        assert_error(r, 405, &locked(&q));
        assert!(queue_exists(&o, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_consume_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, _och, _c, ch, q) = locked_queue(&broker).await;
        let r = ch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(r.map(|_| ()), 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_get_from_other_connection_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, och, _c, ch, q) = locked_queue(&broker).await;
        let r = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await;
        assert_error(r.map(|m| m.is_some()), 405, &locked(&q));
        assert_eq!(drain(&och, &q).await, vec!["m"], "message still there");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_accepts_publishes_from_other_connections() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, och, _c, ch, q) = locked_queue(&broker).await;
        publish(&ch, "", &q, "from other").await;
        sync_point(&ch)
            .await
            .expect("publisher's channel still open");
        // Cross-channel ordering is not guaranteed: wait for the second message.
        let mut got = Vec::new();
        for _ in 0..100 {
            got.extend(drain(&och, &q).await);
            if got.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(got, vec!["m", "from other"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_usable_from_other_channels_of_its_connection() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (o, _och, _c, _ch, q) = locked_queue(&broker).await;
        let ch = o.create_channel().await.unwrap();
        let ok = declare_with(&ch, &q, passive(), FieldTable::default())
            .await
            .unwrap();
        assert_eq!(ok.message_count(), 1);
        assert_eq!(drain(&ch, &q).await, vec!["m"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn owner_redeclaring_exclusive_queue_as_non_exclusive_fails_with_resource_locked() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_o, och, _c, _ch, q) = locked_queue(&broker).await;
        let r = declare_with(&och, &q, qopts(false, false, false), FieldTable::default()).await;
        assert_error(r, 405, &locked(&q));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_closes() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (o, _och, other, _ch, q) = locked_queue(&broker).await;
        o.close(200, "bye".into()).await.unwrap();
        assert!(becomes_absent(&other, &q).await, "{q} still exists");
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// auto-delete

async fn auto_delete_queue(ch: &Channel) -> String {
    let q = unique("ad");
    declare_with(ch, &q, qopts(false, false, true), FieldTable::default())
        .await
        .expect("declare auto-delete queue");
    q
}

async fn consume(ch: &Channel, q: &str, tag: &str) -> lapin::Consumer {
    ch.basic_consume(
        q.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

#[tokio::test]
async fn auto_delete_queue_that_never_had_a_consumer_stays() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = auto_delete_queue(&ch).await;
        // basic.get is not a consumer.
        publish(&ch, "", &q, "m").await;
        assert_eq!(drain(&ch, &q).await, vec!["m"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(queue_exists(&conn, &q).await);
        delete_queue(&conn, &q).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_last_consumer_cancels() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = auto_delete_queue(&ch).await;
        let _c1 = consume(&ch, &q, "c1").await;
        let _c2 = consume(&ch, &q, "c2").await;
        ch.basic_cancel("c1".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        let ok = declare_with(&ch, &q, passive(), FieldTable::default())
            .await
            .expect("one consumer left: queue still there");
        assert_eq!(ok.consumer_count(), 1);
        ch.basic_cancel("c2".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        assert!(becomes_absent(&conn, &q).await, "{q} still exists");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_consumers_channel_closes() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = auto_delete_queue(&ch).await;
        let _c = consume(&ch, &q, "c1").await;
        ch.close(200, "bye".into()).await.unwrap();
        assert!(becomes_absent(&conn, &q).await, "{q} still exists");
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// bind / unbind

#[tokio::test]
async fn bind_to_missing_exchange_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let x = unique("x");
        let r = ch
            .queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            404,
            &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn bind_of_missing_queue_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let r = ch
            .queue_bind(
                q.as_str().into(),
                "amq.direct".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unbind_of_missing_binding_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        unbind_args(&ch, &q, "amq.direct", "never-bound", FieldTable::default()).await;
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unbind_from_missing_exchange_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let x = unique("x");
        unbind_args(&ch, &q, &x, "k", FieldTable::default()).await;
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unbind_of_missing_queue_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        unbind_args(&ch, &q, "amq.direct", "k", FieldTable::default()).await;
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn bindings_with_same_key_and_different_arguments_are_distinct() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = exclusive_queue(&ch).await;
        let a1 = table(&[("a", AMQPValue::LongInt(1))]);
        let a2 = table(&[("a", AMQPValue::LongInt(2))]);
        bind_args(&ch, &q, &x, "k", a1.clone()).await;
        bind_args(&ch, &q, &x, "k", a2.clone()).await;
        publish(&ch, &x, "k", "both bound").await;
        unbind_args(&ch, &q, &x, "k", a1).await;
        publish(&ch, &x, "k", "second still bound").await;
        unbind_args(&ch, &q, &x, "k", a2).await;
        publish(&ch, &x, "k", "none bound").await;
        assert_eq!(
            drain(&ch, &q).await,
            vec!["both bound", "second still bound"]
        );
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unbind_with_other_arguments_leaves_the_binding() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = exclusive_queue(&ch).await;
        bind_args(&ch, &q, &x, "k", table(&[("a", AMQPValue::LongInt(1))])).await;
        unbind_args(&ch, &q, &x, "k", table(&[("a", AMQPValue::LongInt(3))])).await;
        unbind_args(&ch, &q, &x, "k", FieldTable::default()).await;
        publish(&ch, &x, "k", "still bound").await;
        assert_eq!(drain(&ch, &q).await, vec!["still bound"]);
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn binding_twice_is_idempotent() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = exclusive_queue(&ch).await;
        bind_args(&ch, &q, &x, "k", FieldTable::default()).await;
        bind_args(&ch, &q, &x, "k", FieldTable::default()).await;
        publish(&ch, &x, "k", "once").await;
        // One unbind removes it.
        unbind_args(&ch, &q, &x, "k", FieldTable::default()).await;
        publish(&ch, &x, "k", "unbound").await;
        assert_eq!(drain(&ch, &q).await, vec!["once"]);
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// purge / delete

#[tokio::test]
async fn purge_returns_the_number_of_ready_messages_removed() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        for body in ["1", "2", "3"] {
            publish(&ch, "", &q, body).await;
        }
        let n = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 3);
        assert!(drain(&ch, &q).await.is_empty());
        let n = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 0);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn purge_leaves_unacknowledged_messages() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        for body in ["1", "2", "3"] {
            publish(&ch, "", &q, body).await;
        }
        let held = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(held.delivery.data, b"1");
        let n = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 2);
        held.delivery
            .acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
        assert_eq!(drain(&ch, &q).await, vec!["1"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn purge_of_missing_queue_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let r = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await;
        assert_error(r, 404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_returns_the_number_of_messages_and_removes_the_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        publish(&ch, "", &q, "1").await;
        publish(&ch, "", &q, "2").await;
        let n = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert!(!queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_of_missing_queue_succeeds_with_zero() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = unique("q");
        let n = ch
            .queue_delete(
                q.as_str().into(),
                QueueDeleteOptions {
                    if_unused: true,
                    if_empty: true,
                    ..Default::default()
                },
            )
            .await
            .expect("idempotent queue.delete");
        assert_eq!(n, 0);
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_of_queue_with_consumer_fails_with_in_use() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let _c = consume(&ch, &q, "c1").await;
        let ch2 = conn.create_channel().await.unwrap();
        let r = ch2
            .queue_delete(
                q.as_str().into(),
                QueueDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await;
        assert_error(
            r,
            406,
            &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"),
        );
        assert!(queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_of_queue_with_messages_but_no_consumer_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        publish(&ch, "", &q, "1").await;
        let n = ch
            .queue_delete(
                q.as_str().into(),
                QueueDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(!queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_empty_of_queue_with_messages_fails_with_not_empty() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        publish(&ch, "", &q, "1").await;
        let r = ch
            .queue_delete(
                q.as_str().into(),
                QueueDeleteOptions {
                    if_empty: true,
                    ..Default::default()
                },
            )
            .await;
        assert_error(
            r,
            406,
            &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"),
        );
        let ch2 = conn.create_channel().await.unwrap();
        assert_eq!(drain(&ch2, &q).await, vec!["1"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_empty_of_empty_queue_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let n = ch
            .queue_delete(
                q.as_str().into(),
                QueueDeleteOptions {
                    if_empty: true,
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(!queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_queue_cancels_its_consumers() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        let mut consumer = consume(&ch, &q, "c1").await;
        let ch2 = conn.create_channel().await.unwrap();
        ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        // The server's basic.cancel ends lapin's consumer stream.
        let next = within(5, consumer.next()).await;
        assert!(next.is_none(), "expected end of stream, got {next:?}");
        // The consumer's channel stays open.
        sync_point(&ch)
            .await
            .expect("consumer channel still usable");
        let q2 = exclusive_queue(&ch).await;
        publish(&ch, "", &q2, "after").await;
        assert_eq!(drain(&ch, &q2).await, vec!["after"]);
    })
    .await;
    broker.stop().await;
}

/// Frames up to and including the `n`th method frame; panics after 5 s.
async fn methods(c: &mut raw::RawConn, n: usize) -> Vec<(u16, (u16, u16))> {
    let mut got = Vec::new();
    while got.len() < n {
        let f = c
            .recv(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("only {got:?} arrived"));
        if let Some(m) = f.method() {
            got.push((f.channel, m));
        }
    }
    got
}

/// A raw connection with channels 1 and 2, consuming from `queue` (tags
/// "c1" and "c2") on the channels listed.
async fn raw_consumers(broker: &TestBroker, queue: &str, flags: u8, on: &[u16]) -> raw::RawConn {
    let mut c = raw::RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    c.open_channel(2).await;
    let mut declare = vec![0, 0];
    declare.extend(raw::short_str(queue));
    declare.extend([flags, 0, 0, 0, 0]);
    c.send(&raw::method(1, 50, 10, &declare)).await;
    c.expect_method(50, 11).await;
    for &channel in on {
        let mut consume = vec![0, 0];
        consume.extend(raw::short_str(queue));
        consume.extend(raw::short_str(&format!("c{channel}")));
        consume.extend([0, 0, 0, 0, 0]);
        c.send(&raw::method(channel, 60, 20, &consume)).await;
        c.expect_method(60, 21).await;
    }
    c
}

fn queue_delete_frame(channel: u16, queue: &str) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(raw::short_str(queue));
    args.push(0);
    raw::method(channel, 50, 40, &args)
}

#[tokio::test]
async fn queue_delete_ok_comes_before_the_basic_cancel_on_the_deleting_channel() {
    // py-amqp (kombu, Celery) raises ConsumerCancelled inside queue_delete
    // when the cancel overtakes the delete-ok. Durable queues are the case
    // where the delete-ok waits for the disk.
    let broker = TestBroker::start().await;
    within(
        LIMIT,
        Box::pin(async {
            for (flags, kind) in [(2u8, "durable"), (0, "transient"), (4, "exclusive")] {
                let q = unique(&format!("delete-order-{kind}"));
                let mut c = raw_consumers(&broker, &q, flags, &[1, 2]).await;
                c.send(&queue_delete_frame(1, &q)).await;
                let got = methods(&mut c, 3).await;
                // The deleting channel's own consumer hears of it after
                // delete-ok; another channel's may hear of it before or after
                // (RabbitMQ's channels run independently).
                let on_1: Vec<_> = got.iter().filter(|(ch, _)| *ch == 1).collect();
                assert_eq!(
                    on_1,
                    [&(1, (50, 41)), &(1, (60, 30))],
                    "{kind} queue: {got:?}"
                );
                assert!(got.contains(&(2, (60, 30))), "{kind} queue: {got:?}");
            }
        }),
    )
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn consumers_of_other_connections_are_cancelled_when_a_queue_is_deleted() {
    let broker = TestBroker::start().await;
    within(
        LIMIT,
        Box::pin(async {
            let q = unique("delete-other-connection");
            let mut consumer = raw_consumers(&broker, &q, 2, &[2]).await;
            let mut deleter = raw::RawConn::handshake(broker.addr).await;
            deleter.open_channel(1).await;
            deleter.send(&queue_delete_frame(1, &q)).await;
            assert_eq!(methods(&mut deleter, 1).await, vec![(1, (50, 41))]);
            assert_eq!(methods(&mut consumer, 1).await, vec![(2, (60, 30))]);
        }),
    )
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_queue_removes_its_bindings() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Fanout).await;
        let q = unique("q");
        declare_with(&ch, &q, qopts(false, true, false), FieldTable::default())
            .await
            .unwrap();
        bind_args(&ch, &q, &x, "", FieldTable::default()).await;
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        // A new queue of the same name is not bound.
        declare_with(&ch, &q, qopts(false, true, false), FieldTable::default())
            .await
            .unwrap();
        publish(&ch, &x, "", "m").await;
        assert!(drain(&ch, &q).await.is_empty());
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// the "most recently declared queue" shortcut

#[tokio::test]
async fn empty_queue_name_in_bind_means_last_declared_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = exclusive_queue(&ch).await;
        bind_args(&ch, "", &x, "k", FieldTable::default()).await;
        publish(&ch, &x, "k", "via shortcut").await;
        assert_eq!(drain(&ch, &q).await, vec!["via shortcut"]);
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn empty_queue_name_and_empty_key_in_bind_use_the_queue_name_as_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct).await;
        let q = exclusive_queue(&ch).await;
        bind_args(&ch, "", &x, "", FieldTable::default()).await;
        publish(&ch, &x, "", "empty key").await;
        publish(&ch, &x, &q, "queue name key").await;
        assert_eq!(drain(&ch, &q).await, vec!["queue name key"]);
        cleanup_exchange(&conn, &x).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn empty_queue_name_in_purge_get_and_delete_means_last_declared_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        for body in ["1", "2", "3"] {
            publish(&ch, "", &q, body).await;
        }
        let got = ch
            .basic_get("".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("basic.get via shortcut");
        assert_eq!(got.delivery.data, b"1");
        assert_eq!(got.message_count, 2);
        let n = ch
            .queue_purge("".into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 2);
        publish(&ch, "", &q, "4").await;
        let n = ch
            .queue_delete("".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(!queue_exists(&conn, &q).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn empty_queue_name_in_consume_means_last_declared_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = exclusive_queue(&ch).await;
        publish(&ch, "", &q, "consumed").await;
        let mut consumer = consume(&ch, "", "c1").await;
        let d = within(5, consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, b"consumed");
        assert_eq!(d.routing_key.as_str(), q);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn shortcut_refers_to_the_most_recent_declare_including_passive() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q1 = exclusive_queue(&ch).await;
        let q2 = exclusive_queue(&ch).await;
        publish(&ch, "", &q1, "in q1").await;
        publish(&ch, "", &q2, "in q2").await;
        let got = ch
            .basic_get("".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("from q2");
        assert_eq!(got.delivery.data, b"in q2");
        declare_with(&ch, &q1, passive(), FieldTable::default())
            .await
            .unwrap();
        let got = ch
            .basic_get("".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("from q1");
        assert_eq!(got.delivery.data, b"in q1");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn shortcut_without_a_declared_queue_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        // Declared on another channel: does not count.
        let _q = exclusive_queue(&ch).await;
        let text = "NOT_FOUND - no previously declared queue";

        let c = conn.create_channel().await.unwrap();
        let r = c
            .basic_get("".into(), BasicGetOptions { no_ack: true })
            .await;
        assert_error(r.map(|m| m.is_some()), 404, text);

        let c = conn.create_channel().await.unwrap();
        let r = c.queue_purge("".into(), QueuePurgeOptions::default()).await;
        assert_error(r, 404, text);

        let c = conn.create_channel().await.unwrap();
        let r = c
            .queue_delete("".into(), QueueDeleteOptions::default())
            .await;
        assert_error(r, 404, text);

        let c = conn.create_channel().await.unwrap();
        let r = c
            .queue_bind(
                "".into(),
                "amq.direct".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(r, 404, text);

        let c = conn.create_channel().await.unwrap();
        let r = c
            .basic_consume(
                "".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(r.map(|_| ()), 404, text);
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// channel errors are channel-scoped

#[tokio::test]
async fn queue_channel_error_leaves_the_connection_usable() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let other = conn.create_channel().await.unwrap();
        let q = exclusive_queue(&other).await;
        let r = declare_with(&ch, &unique("missing"), passive(), FieldTable::default()).await;
        assert_eq!(r.as_ref().err().and_then(reply_code), Some(404));
        assert!(sync_point(&ch).await.is_err(), "failed channel is closed");
        assert!(conn.status().connected());
        // The other channel, and new ones, work; the exclusive queue survived.
        publish(&other, "", &q, "fine").await;
        assert_eq!(drain(&other, &q).await, vec!["fine"]);
        let fresh = conn.create_channel().await.unwrap();
        assert_eq!(
            declare_with(&fresh, &q, passive(), FieldTable::default())
                .await
                .unwrap()
                .message_count(),
            0
        );
    })
    .await;
    broker.stop().await;
}
