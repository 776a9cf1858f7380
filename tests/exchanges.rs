//! Exchanges: declare (types, passive, durable, auto-delete, internal,
//! arguments) and RabbitMQ's equivalence checks, delete (if-unused,
//! idempotence), exchange-to-exchange bindings (including cycles), the
//! default exchange and the `amq.*` system exchanges.
//!
//! Every expectation here was first checked against RabbitMQ 3.10.

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Event, ExchangeKind};

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

fn options(durable: bool, auto_delete: bool, internal: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable,
        auto_delete,
        internal,
        ..Default::default()
    }
}

fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn alternate(name: &str) -> FieldTable {
    table(&[("alternate-exchange", AMQPValue::LongString(name.into()))])
}

async fn declare_with(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
    args: FieldTable,
) -> lapin::Result<()> {
    ch.exchange_declare(name.into(), kind, options, args).await
}

async fn declare(ch: &Channel, name: &str, kind: ExchangeKind) {
    declare_with(
        ch,
        name,
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
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

async fn e2e_bind(ch: &Channel, destination: &str, source: &str, key: &str) {
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

/// A fresh exclusive queue bound to `exchange` with `key`.
async fn bound_queue(ch: &Channel, exchange: &str, key: &str) -> String {
    let q = temp_queue(ch).await;
    bind(ch, &q, exchange, key).await;
    q
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

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &str) {
    publish_props(ch, exchange, key, body, BasicProperties::default()).await;
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

/// Whether an exchange exists, by passive declare on a throw-away channel.
async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    match ch
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {
            ch.close(200, "ok".into()).await.expect("channel.close");
            true
        }
        Err(e) => {
            assert_eq!(
                reply_text(&e),
                Some(format!("NOT_FOUND - no exchange '{name}' in vhost '/'")),
                "{e:?}"
            );
            assert_eq!(reply_code(&e), Some(404));
            false
        }
    }
}

/// Best-effort removal of exchanges a test made, so a shared broker stays tidy.
async fn cleanup(conn: &Connection, names: &[&str]) {
    if let Ok(ch) = conn.create_channel().await {
        for name in names {
            let _ = ch
                .exchange_delete((*name).into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// Publish, and wait for the channel error the broker answers with.
async fn publish_error(
    conn: &Connection,
    ch: &Channel,
    exchange: &str,
    key: &str,
) -> lapin::Result<()> {
    let mut events = conn.events_listener();
    publish(ch, exchange, key, "m").await;
    loop {
        match within(5, events.next()).await {
            Some(Event::Error(e)) => return Err(e),
            Some(_) => continue,
            None => panic!("connection event stream ended"),
        }
    }
}

/// Issue a harmless synchronous method, so an asynchronous channel error
/// (after basic.publish) surfaces as its result.
async fn sync_point(ch: &Channel) -> lapin::Result<()> {
    ch.basic_qos(10, BasicQosOptions::default()).await
}

// ---------------------------------------------------------------------------
// declare

#[tokio::test]
async fn declare_of_each_builtin_type_succeeds_and_exchange_then_exists() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let mut names = Vec::new();
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            let x = unique("x");
            declare(&ch, &x, kind).await;
            assert!(exchange_exists(&conn, &x).await);
            names.push(x);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        cleanup(&conn, &refs).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_existing_exchange_succeeds_whatever_type_is_given() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Topic).await;
        // Passive declare checks existence only: type and flags are ignored.
        declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                durable: true,
                auto_delete: true,
                internal: true,
                nowait: false,
            },
            alternate("whatever"),
        )
        .await
        .expect("passive declare");
        // The channel is still open.
        sync_point(&ch).await.expect("channel still usable");
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let x = unique("x");
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            passive(),
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
async fn declare_with_unknown_type_closes_the_connection_with_command_invalid() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let other = conn.create_channel().await.unwrap();
        let x = unique("x");
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Custom("no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            503,
            "COMMAND_INVALID - unknown exchange type 'no-such-type'",
        );
        // A hard error: the other channel of the connection is gone too.
        assert!(sync_point(&other).await.is_err());
        assert!(!conn.status().connected());
        // And nothing was created.
        let conn2 = broker.connect().await;
        assert!(!exchange_exists(&conn2, &x).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn durable_exchange_declare_succeeds_and_identical_redeclare_is_accepted() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        for _ in 0..2 {
            declare_with(
                &ch,
                &x,
                ExchangeKind::Topic,
                options(true, false, false),
                FieldTable::default(),
            )
            .await
            .expect("durable declare");
        }
        assert!(exchange_exists(&conn, &x).await);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_identical_settings_and_arguments_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        let ae = unique("ae");
        for _ in 0..3 {
            declare_with(
                &ch,
                &x,
                ExchangeKind::Headers,
                options(false, true, true),
                alternate(&ae),
            )
            .await
            .expect("declare");
        }
        sync_point(&ch).await.expect("channel still usable");
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_type_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'"
            ),
        );
        // The exchange is unchanged (still there; a later direct redeclare is fine).
        let ch2 = conn.create_channel().await.unwrap();
        declare(&ch2, &x, ExchangeKind::Direct).await;
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_durable_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            options(true, false, false),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_auto_delete_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            options(false, true, false),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_internal_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            options(false, false, true),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_type_is_compared_before_durable() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Topic,
            options(true, true, true),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'topic' but current is 'direct'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_alternate_exchange_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            alternate("ae1"),
        )
        .await
        .unwrap();
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            alternate("ae2"),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received 'ae2' but current is 'ae1'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_without_its_alternate_exchange_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            alternate("ae1"),
        )
        .await
        .unwrap();
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received none but current is the value 'ae1' of type 'longstr'"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_adding_an_alternate_exchange_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            alternate("ae2"),
        )
        .await;
        assert_error(
            r,
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received the value 'ae2' of type 'longstr' but current is none"
            ),
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_exchange_with_other_unknown_arguments_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            table(&[("x-foo", AMQPValue::LongInt(1))]),
        )
        .await
        .unwrap();
        // Only alternate-exchange is compared; anything else may differ or vanish.
        declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            table(&[
                ("x-foo", AMQPValue::LongString("two".into())),
                ("x-bar", AMQPValue::Boolean(true)),
            ]),
        )
        .await
        .expect("redeclare with other x-foo");
        declare(&ch, &x, ExchangeKind::Fanout).await;
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unroutable_message_goes_to_the_alternate_exchange() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        let ae = unique("ae");
        declare(&ch, &ae, ExchangeKind::Fanout).await;
        declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            alternate(&ae),
        )
        .await
        .unwrap();
        let routed = bound_queue(&ch, &x, "k").await;
        let spill = bound_queue(&ch, &ae, "").await;
        publish(&ch, &x, "k", "routed").await;
        publish(&ch, &x, "other", "unroutable").await;
        assert_eq!(drain(&ch, &routed).await, vec!["routed"]);
        assert_eq!(drain(&ch, &spill).await, vec!["unroutable"]);
        cleanup(&conn, &[&x, &ae]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn publish_to_missing_exchange_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        assert_error(
            publish_error(&conn, &ch, &x, "k").await,
            404,
            &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
        );
        // Only the channel closed.
        let ch2 = conn.create_channel().await.expect("new channel");
        sync_point(&ch2).await.expect("connection still usable");
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// delete

#[tokio::test]
async fn delete_of_unused_exchange_removes_it() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("exchange.delete");
        assert!(!exchange_exists(&conn, &x).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_of_exchange_without_bindings_removes_it() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        ch.exchange_delete(
            x.as_str().into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .expect("exchange.delete if-unused");
        assert!(!exchange_exists(&conn, &x).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_of_exchange_with_queue_binding_fails_with_in_use() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let q = bound_queue(&ch, &x, "k").await;
        let r = ch
            .exchange_delete(
                x.as_str().into(),
                ExchangeDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await;
        assert_error(
            r,
            406,
            &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"),
        );
        // Still there and still routing.
        let ch2 = conn.create_channel().await.unwrap();
        publish(&ch2, &x, "k", "m").await;
        assert_eq!(drain(&ch2, &q).await, vec!["m"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_of_exchange_that_is_source_of_exchange_binding_fails_with_in_use() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Fanout).await;
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &dst, &src, "").await;
        let r = ch
            .exchange_delete(
                src.as_str().into(),
                ExchangeDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            )
            .await;
        assert_error(
            r,
            406,
            &format!("PRECONDITION_FAILED - exchange '{src}' in vhost '/' in use"),
        );
        cleanup(&conn, &[&src, &dst]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_if_unused_ignores_bindings_where_exchange_is_the_destination() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Fanout).await;
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &dst, &src, "").await;
        // "In use" means "is the source of a binding".
        ch.exchange_delete(
            dst.as_str().into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .expect("destination-only exchange is unused");
        assert!(!exchange_exists(&conn, &dst).await);
        cleanup(&conn, &[&src]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn delete_of_missing_exchange_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let x = unique("x");
        for if_unused in [false, true] {
            ch.exchange_delete(
                x.as_str().into(),
                ExchangeDeleteOptions {
                    if_unused,
                    ..Default::default()
                },
            )
            .await
            .expect("idempotent exchange.delete");
        }
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_exchange_removes_its_bindings() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Fanout).await;
        let q = bound_queue(&ch, &x, "").await;
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
        declare(&ch, &x, ExchangeKind::Fanout).await;
        publish(&ch, &x, "", "after").await;
        assert!(drain(&ch, &q).await.is_empty());
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// auto-delete

#[tokio::test]
async fn auto_delete_exchange_that_never_had_a_binding_is_not_deleted() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            options(false, true, false),
            FieldTable::default(),
        )
        .await
        .unwrap();
        // Unbinding something that was never bound does not trigger it either.
        let q = temp_queue(&ch).await;
        ch.queue_unbind(
            q.as_str().into(),
            x.as_str().into(),
            "k".into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind of absent binding");
        assert!(exchange_exists(&conn, &x).await);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_is_deleted_when_its_last_queue_binding_is_removed() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            options(false, true, false),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let q1 = bound_queue(&ch, &x, "a").await;
        let q2 = bound_queue(&ch, &x, "b").await;
        ch.queue_unbind(
            q1.as_str().into(),
            x.as_str().into(),
            "a".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        assert!(exchange_exists(&conn, &x).await, "one binding left");
        ch.queue_unbind(
            q2.as_str().into(),
            x.as_str().into(),
            "b".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        assert!(!exchange_exists(&conn, &x).await, "last binding removed");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_is_deleted_when_its_only_bound_queue_is_deleted() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            options(false, true, false),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let q = bound_queue(&ch, &x, "").await;
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        assert!(!exchange_exists(&conn, &x).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_is_deleted_when_its_last_exchange_binding_is_removed() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare_with(
            &ch,
            &src,
            ExchangeKind::Fanout,
            options(false, true, false),
            FieldTable::default(),
        )
        .await
        .unwrap();
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &dst, &src, "").await;
        ch.exchange_unbind(
            dst.as_str().into(),
            src.as_str().into(),
            "".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        assert!(!exchange_exists(&conn, &src).await);
        assert!(exchange_exists(&conn, &dst).await);
        cleanup(&conn, &[&dst]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// internal

#[tokio::test]
async fn publishing_to_internal_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare_with(
            &ch,
            &x,
            ExchangeKind::Fanout,
            options(false, false, true),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let q = bound_queue(&ch, &x, "").await;
        assert_error(
            publish_error(&conn, &ch, &x, "").await,
            403,
            &format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'"),
        );
        let ch2 = conn.create_channel().await.unwrap();
        assert!(drain(&ch2, &q).await.is_empty());
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn internal_exchange_receives_messages_through_exchange_binding() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let internal = unique("internal");
        declare(&ch, &src, ExchangeKind::Direct).await;
        declare_with(
            &ch,
            &internal,
            ExchangeKind::Fanout,
            options(false, false, true),
            FieldTable::default(),
        )
        .await
        .unwrap();
        e2e_bind(&ch, &internal, &src, "k").await;
        let q = bound_queue(&ch, &internal, "").await;
        publish(&ch, &src, "k", "via source").await;
        publish(&ch, &src, "other", "not bound").await;
        assert_eq!(drain(&ch, &q).await, vec!["via source"]);
        cleanup(&conn, &[&src, &internal]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// exchange-to-exchange bindings

#[tokio::test]
async fn exchange_binding_routes_from_source_through_destination_to_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Topic).await;
        declare(&ch, &dst, ExchangeKind::Direct).await;
        e2e_bind(&ch, &dst, &src, "a.*").await;
        let q = bound_queue(&ch, &dst, "a.b").await;
        publish(&ch, &src, "a.b", "match both").await;
        publish(&ch, &src, "a.c", "source only").await;
        publish(&ch, &src, "x.b", "neither").await;
        let got = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(got.delivery.data, b"match both");
        // The delivery names the exchange it was published to, and its key.
        assert_eq!(got.delivery.exchange.as_str(), src);
        assert_eq!(got.delivery.routing_key.as_str(), "a.b");
        assert!(drain(&ch, &q).await.is_empty());
        cleanup(&conn, &[&src, &dst]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_unbind_stops_the_flow() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Fanout).await;
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &dst, &src, "").await;
        let q = bound_queue(&ch, &dst, "").await;
        publish(&ch, &src, "", "before").await;
        ch.exchange_unbind(
            dst.as_str().into(),
            src.as_str().into(),
            "".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.unbind");
        publish(&ch, &src, "", "after").await;
        assert_eq!(drain(&ch, &q).await, vec!["before"]);
        cleanup(&conn, &[&src, &dst]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_unbind_of_missing_binding_succeeds() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Fanout).await;
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        ch.exchange_unbind(
            dst.as_str().into(),
            src.as_str().into(),
            "nope".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.unbind of absent binding");
        sync_point(&ch).await.expect("channel still usable");
        cleanup(&conn, &[&src, &dst]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_bind_with_missing_source_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        let r = ch
            .exchange_bind(
                dst.as_str().into(),
                src.as_str().into(),
                "".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            404,
            &format!("NOT_FOUND - no exchange '{src}' in vhost '/'"),
        );
        cleanup(&conn, &[&dst]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_bind_with_missing_destination_fails_with_not_found() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let src = unique("src");
        let dst = unique("dst");
        declare(&ch, &src, ExchangeKind::Fanout).await;
        let r = ch
            .exchange_bind(
                dst.as_str().into(),
                src.as_str().into(),
                "".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            404,
            &format!("NOT_FOUND - no exchange '{dst}' in vhost '/'"),
        );
        cleanup(&conn, &[&src]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_binding_cycle_delivers_each_message_once_per_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let a = unique("a");
        let b = unique("b");
        declare(&ch, &a, ExchangeKind::Fanout).await;
        declare(&ch, &b, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &b, &a, "").await;
        e2e_bind(&ch, &a, &b, "").await;
        let qa = bound_queue(&ch, &a, "").await;
        let qb = bound_queue(&ch, &b, "").await;
        publish(&ch, &a, "", "to a").await;
        publish(&ch, &b, "", "to b").await;
        assert_eq!(drain(&ch, &qa).await, vec!["to a", "to b"]);
        assert_eq!(drain(&ch, &qb).await, vec!["to a", "to b"]);
        cleanup(&conn, &[&a, &b]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_bound_to_itself_delivers_each_message_once() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let a = unique("a");
        declare(&ch, &a, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &a, &a, "").await;
        let q = bound_queue(&ch, &a, "").await;
        publish(&ch, &a, "", "once").await;
        assert_eq!(drain(&ch, &q).await, vec!["once"]);
        cleanup(&conn, &[&a]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn queue_reachable_by_two_exchange_paths_gets_one_copy() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let top = unique("top");
        let left = unique("left");
        let right = unique("right");
        declare(&ch, &top, ExchangeKind::Fanout).await;
        declare(&ch, &left, ExchangeKind::Fanout).await;
        declare(&ch, &right, ExchangeKind::Fanout).await;
        e2e_bind(&ch, &left, &top, "").await;
        e2e_bind(&ch, &right, &top, "").await;
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &left, "").await;
        bind(&ch, &q, &right, "").await;
        bind(&ch, &q, &top, "").await;
        publish(&ch, &top, "", "diamond").await;
        assert_eq!(drain(&ch, &q).await, vec!["diamond"]);
        cleanup(&conn, &[&top, &left, &right]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// the default exchange

#[tokio::test]
async fn default_exchange_routes_by_exact_queue_name() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = temp_queue(&ch).await;
        publish(&ch, "", &q, "by name").await;
        publish(&ch, "", &format!("{q}.x"), "other name").await;
        publish(&ch, "", &q.to_uppercase(), "other case").await;
        assert_eq!(drain(&ch, &q).await, vec!["by name"]);
        // Publishing to a queue that does not exist drops the message quietly.
        sync_point(&ch).await.expect("channel still usable");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn declaring_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let r = declare_with(
            &ch,
            "",
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let r = declare_with(
            &ch,
            "",
            ExchangeKind::Direct,
            passive(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let r = ch
            .exchange_delete("".into(), ExchangeDeleteOptions::default())
            .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
        // It still routes.
        let ch2 = conn.create_channel().await.unwrap();
        let q = temp_queue(&ch2).await;
        publish(&ch2, "", &q, "still here").await;
        assert_eq!(drain(&ch2, &q).await, vec!["still here"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn binding_a_queue_to_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = temp_queue(&ch).await;
        let r = ch
            .queue_bind(
                q.as_str().into(),
                "".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn unbinding_a_queue_from_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = temp_queue(&ch).await;
        let r = ch
            .queue_unbind(
                q.as_str().into(),
                "".into(),
                q.as_str().into(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_binding_from_the_default_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let dst = unique("dst");
        declare(&ch, &dst, ExchangeKind::Fanout).await;
        let r = ch
            .exchange_bind(
                dst.as_str().into(),
                "".into(),
                "k".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        );
        cleanup(&conn, &[&dst]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// amq.* system exchanges

#[tokio::test]
async fn system_exchanges_exist() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, _ch) = broker.channel().await;
        for x in [
            "amq.direct",
            "amq.fanout",
            "amq.topic",
            "amq.headers",
            "amq.match",
        ] {
            assert!(exchange_exists(&conn, x).await, "{x} exists");
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn system_exchanges_have_their_types_and_are_durable() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        for (x, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            declare_with(
                &ch,
                x,
                kind,
                options(true, false, false),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("redeclare {x}: {e:?}"));
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn amq_direct_routes_by_exact_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let key = unique("k");
        let q = bound_queue(&ch, "amq.direct", &key).await;
        publish(&ch, "amq.direct", &key, "hit").await;
        publish(&ch, "amq.direct", &format!("{key}.x"), "miss").await;
        assert_eq!(drain(&ch, &q).await, vec!["hit"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn amq_fanout_ignores_the_routing_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let q = bound_queue(&ch, "amq.fanout", "ignored").await;
        publish(&ch, "amq.fanout", "anything", "m").await;
        let got = drain(&ch, &q).await;
        // The broker may be shared: other tests' messages are not ours.
        assert!(got.contains(&"m".to_string()), "{got:?}");
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn amq_topic_routes_by_pattern() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let word = unique("w").replace('-', "_");
        let q = bound_queue(&ch, "amq.topic", &format!("{word}.*.#")).await;
        publish(&ch, "amq.topic", &format!("{word}.a.b.c"), "hit").await;
        publish(&ch, "amq.topic", &word, "miss").await;
        assert_eq!(drain(&ch, &q).await, vec!["hit"]);
    })
    .await;
    broker.stop().await;
}

async fn headers_exchange_routes(exchange: &str) {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let tag = unique("t");
        let q = temp_queue(&ch).await;
        ch.queue_bind(
            q.as_str().into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            table(&[
                ("x-match", AMQPValue::LongString("all".into())),
                ("tag", AMQPValue::LongString(tag.as_str().into())),
            ]),
        )
        .await
        .unwrap();
        let hit = table(&[("tag", AMQPValue::LongString(tag.as_str().into()))]);
        let miss = table(&[("tag", AMQPValue::LongString("other".into()))]);
        publish_props(
            &ch,
            exchange,
            "",
            "hit",
            BasicProperties::default().with_headers(hit),
        )
        .await;
        publish_props(
            &ch,
            exchange,
            "",
            "miss",
            BasicProperties::default().with_headers(miss),
        )
        .await;
        assert_eq!(drain(&ch, &q).await, vec!["hit"]);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn amq_headers_routes_by_headers() {
    headers_exchange_routes("amq.headers").await;
}

#[tokio::test]
async fn amq_match_routes_by_headers() {
    headers_exchange_routes("amq.match").await;
}

#[tokio::test]
async fn declaring_new_exchange_with_amq_prefix_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("amq.foo");
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            403,
            &format!("ACCESS_REFUSED - exchange name '{x}' contains reserved prefix 'amq.*'"),
        );
        assert!(!exchange_exists(&conn, &x).await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_a_system_exchange_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let r = ch
            .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
            .await;
        assert_error(
            r,
            403,
            "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        );
        assert!(exchange_exists(&conn, "amq.direct").await);
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_a_missing_exchange_with_amq_prefix_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let x = unique("amq.nothing");
        let r = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
        assert_error(
            r,
            403,
            &format!("ACCESS_REFUSED - deletion of system exchange '{x}' in vhost '/' not allowed"),
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_system_exchange_with_other_durable_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let r = declare_with(
            &ch,
            "amq.direct",
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': received 'false' but current is 'true'",
        );
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_system_exchange_with_other_type_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (_conn, ch) = broker.channel().await;
        let r = declare_with(
            &ch,
            "amq.topic",
            ExchangeKind::Fanout,
            options(true, false, false),
            FieldTable::default(),
        )
        .await;
        assert_error(
            r,
            406,
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.topic' in vhost '/': received 'fanout' but current is 'topic'",
        );
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// channel errors are channel-scoped

#[tokio::test]
async fn exchange_channel_error_leaves_other_channels_working() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let other = conn.create_channel().await.unwrap();
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let r = declare_with(
            &ch,
            &x,
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        assert_eq!(r.as_ref().err().and_then(reply_code), Some(406));
        // The failed channel is closed ...
        assert!(sync_point(&ch).await.is_err());
        // ... the other one and the connection are fine.
        assert!(conn.status().connected());
        let q = bound_queue(&other, &x, "k").await;
        publish(&other, &x, "k", "fine").await;
        assert_eq!(drain(&other, &q).await, vec!["fine"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}
