//! Stream queues (`x-queue-type: stream`) over AMQP 0-9-1, as RabbitMQ 3.10
//! answers: declaring, publishing, consuming by offset with the
//! `x-stream-offset` header, what streams refuse, and retention.
//!
//! Every test but the restart one runs against RabbitMQ too
//! (`WARREN_TEST_AMQP_URI`).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};

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

fn stream_type() -> (&'static str, AMQPValue) {
    ("x-queue-type", s("stream"))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Assert an operation failed with exactly this reply code and text.
#[track_caller]
fn assert_exact_error<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16, text: &str) {
    match result {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            (reply_code(&e), reply_text(&e).as_deref()),
            (Some(code), Some(text)),
            "error was {e:?}"
        ),
    }
}

fn vhost_desc(queue: &str) -> String {
    format!("queue '{queue}' in vhost '/'")
}

/// Declare a stream with these extra arguments.
async fn declare(
    ch: &Channel,
    name: &str,
    extra: &[(&str, AMQPValue)],
) -> lapin::Result<lapin::Queue> {
    let mut args = vec![stream_type()];
    args.extend(extra.iter().cloned());
    ch.queue_declare(name.into(), durable(), table(&args)).await
}

/// A new stream with these extra arguments. Delete it at the end.
async fn stream(conn: &Connection, extra: &[(&str, AMQPValue)]) -> String {
    let name = unique("stream");
    let ch = conn.create_channel().await.unwrap();
    let ok = declare(&ch, &name, extra).await.expect("stream declare");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
    ch.close(200, "bye".into()).await.unwrap();
    name
}

async fn delete(conn: &Connection, queue: &str) {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    ch.close(200, "bye".into()).await.unwrap();
}

/// A channel in confirm mode.
async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

/// Publish each body and wait for its confirm (one chunk per message).
async fn publish_each(ch: &Channel, exchange: &str, key: &str, bodies: &[String]) {
    for body in bodies {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        assert_eq!(
            within(10, confirm).await.expect("confirm"),
            Confirmation::Ack(None)
        );
    }
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A channel with `basic.qos` prefetch `prefetch` and a consumer on `queue`
/// starting at `offset` (no argument when `None`).
async fn consume_from(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    offset: Option<AMQPValue>,
) -> (Channel, Consumer) {
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let args = match offset {
        Some(v) => table(&[("x-stream-offset", v)]),
        None => FieldTable::default(),
    };
    let consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .expect("basic.consume");
    (ch, consumer)
}

/// The `x-stream-offset` header of a delivery (RabbitMQ writes a `long`).
fn offset_of(d: &Delivery) -> i64 {
    let headers = d.properties.headers().as_ref().expect("headers");
    match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset should be a long, was {other:?}"),
    }
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// Take deliveries (acking each) until none comes for `quiet`.
async fn take_all(consumer: &mut Consumer, quiet: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(quiet, consumer.next()).await {
        d.ack(BasicAckOptions::default()).await.expect("basic.ack");
        got.push(d);
    }
    got
}

/// Take exactly `n` deliveries (acking each).
async fn take(consumer: &mut Consumer, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = within(10, consumer.next())
            .await
            .expect("consumer ended")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.expect("basic.ack");
        got.push(d);
    }
    got
}

fn offsets(ds: &[Delivery]) -> Vec<i64> {
    ds.iter().map(offset_of).collect()
}

/// Bodies from `consumer`, checked against their offsets: offset N is body
/// `prefix` N.
fn check_bodies(ds: &[Delivery], prefix: &str) {
    for d in ds {
        assert_eq!(body(d), format!("{prefix}{}", offset_of(d)));
    }
}

/// The numbers of messages published as `m<i>-...`.
fn indexes(ds: &[Delivery]) -> Vec<usize> {
    ds.iter()
        .map(|d| {
            let b = body(d);
            b[1..b.find('-').unwrap()].parse().unwrap()
        })
        .collect()
}

const QUIET: Duration = Duration::from_millis(700);

// ---- declaring ----

#[tokio::test]
async fn a_stream_must_be_durable_shared_and_named() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let name = unique("stream-flags");
    let desc = vhost_desc(&name);
    let args = table(&[stream_type()]);
    let cases = [
        (
            QueueDeclareOptions::default(),
            format!("PRECONDITION_FAILED - invalid property 'non-durable' for {desc}"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for {desc}"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            format!("PRECONDITION_FAILED - invalid property 'auto-delete' for {desc}"),
        ),
    ];
    for (options, text) in cases {
        let ch = conn.create_channel().await.unwrap();
        assert_exact_error(
            ch.queue_declare(name.as_str().into(), options, args.clone())
                .await,
            406,
            &text,
        );
    }
    let ch = conn.create_channel().await.unwrap();
    assert_exact_error(
        ch.queue_declare("".into(), durable(), args.clone()).await,
        406,
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue",
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn stream_arguments_are_validated_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for age in ["7D", "12h", "30m", "10s", "1M", "1Y"] {
        let q = stream(&conn, &[("x-max-age", s(age))]).await;
        delete(&conn, &q).await;
    }
    let q = stream(
        &conn,
        &[
            ("x-max-length-bytes", AMQPValue::LongInt(1_000_000)),
            (
                "x-stream-max-segment-size-bytes",
                AMQPValue::LongInt(100_000),
            ),
            ("x-initial-cluster-size", AMQPValue::LongInt(1)),
            ("x-queue-leader-locator", s("client-local")),
        ],
    )
    .await;
    delete(&conn, &q).await;

    let name = unique("stream-args");
    let desc = vhost_desc(&name);
    let refused: Vec<((&str, AMQPValue), String)> = vec![
        (
            ("x-max-age", s("0s")),
            format!("invalid arg 'x-max-age' for {desc}: invalid_max_age"),
        ),
        (
            ("x-max-age", s("10")),
            format!("invalid arg 'x-max-age' for {desc}: invalid_max_age"),
        ),
        (
            ("x-max-age", s("3w")),
            format!("invalid arg 'x-max-age' for {desc}: invalid_max_age"),
        ),
        (
            ("x-max-age", AMQPValue::LongInt(5)),
            format!("invalid arg 'x-max-age' for {desc}: {{unacceptable_type,signedint}}"),
        ),
        (
            ("x-max-length-bytes", s("10")),
            format!(
                "invalid arg 'x-max-length-bytes' for {desc}: \"expected integer, got longstr\""
            ),
        ),
        (
            ("x-max-length-bytes", AMQPValue::LongInt(-1)),
            format!("invalid arg 'x-max-length-bytes' for {desc}: {{value_negative,-1}}"),
        ),
        (
            ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(-1)),
            format!(
                "invalid arg 'x-stream-max-segment-size-bytes' for {desc}: {{value_negative,-1}}"
            ),
        ),
    ];
    for ((key, value), text) in refused {
        let ch = conn.create_channel().await.unwrap();
        assert_exact_error(
            declare(&ch, &name, &[(key, value)]).await,
            406,
            &format!("PRECONDITION_FAILED - {text}"),
        );
    }
    // Arguments of other queue types.
    for (key, value) in [
        ("x-message-ttl", AMQPValue::LongInt(1000)),
        ("x-max-length", AMQPValue::LongInt(10)),
        ("x-dead-letter-exchange", s("dlx")),
        ("x-max-priority", AMQPValue::LongInt(3)),
        ("x-expires", AMQPValue::LongInt(1000)),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
        ("x-overflow", s("drop-head")),
        ("x-queue-mode", s("lazy")),
    ] {
        let ch = conn.create_channel().await.unwrap();
        assert_exact_error(
            declare(&ch, &name, &[(key, value)]).await,
            406,
            &format!(
                "PRECONDITION_FAILED - invalid arg '{key}' for {desc} of queue type rabbit_stream_queue"
            ),
        );
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn an_unparsable_max_age_closes_the_connection_with_541() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_exact_error(
        declare(&ch, &unique("stream-age"), &[("x-max-age", s("abc"))]).await,
        541,
        "INTERNAL_ERROR",
    );
    broker.stop().await;
}

#[tokio::test]
async fn redeclaring_a_stream_checks_its_arguments() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let base = [
        ("x-max-age", s("7D")),
        ("x-max-length-bytes", AMQPValue::LongInt(1_000_000)),
    ];
    let q = stream(&conn, &base).await;
    let desc = vhost_desc(&q);
    let ch = conn.create_channel().await.unwrap();
    let ok = declare(&ch, &q, &base).await.expect("same redeclare");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
    // Arguments streams do not know are not compared.
    declare(
        &ch,
        &q,
        &[
            base[0].clone(),
            base[1].clone(),
            ("x-message-ttl", AMQPValue::LongInt(5)),
        ],
    )
    .await
    .expect("redeclare with an argument of another type");
    let cases: Vec<(FieldTable, String)> = vec![
        (
            FieldTable::default(),
            format!(
                "inequivalent arg 'x-max-length-bytes' for {desc}: received none but current is the value '1000000' of type 'signedint'"
            ),
        ),
        (
            table(&[stream_type(), ("x-max-age", s("1D")), base[1].clone()]),
            format!("inequivalent arg 'x-max-age' for {desc}: received '1D' but current is '7D'"),
        ),
        (
            table(&[stream_type(), base[1].clone()]),
            format!(
                "inequivalent arg 'x-max-age' for {desc}: received none but current is the value '7D' of type 'longstr'"
            ),
        ),
        (
            table(&[
                stream_type(),
                base[0].clone(),
                base[1].clone(),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(100)),
            ]),
            format!(
                "inequivalent arg 'x-stream-max-segment-size-bytes' for {desc}: received the value '100' of type 'signedint' but current is none"
            ),
        ),
        (
            table(&[
                ("x-queue-type", s("classic")),
                base[0].clone(),
                base[1].clone(),
            ]),
            format!(
                "inequivalent arg 'x-queue-type' for {desc}: received 'classic' but current is 'stream'"
            ),
        ),
    ];
    for (args, text) in cases {
        let ch = conn.create_channel().await.unwrap();
        assert_exact_error(
            ch.queue_declare(q.as_str().into(), durable(), args).await,
            406,
            &format!("PRECONDITION_FAILED - {text}"),
        );
    }
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- publishing and consuming ----

#[tokio::test]
async fn confirmed_messages_replay_from_first_with_their_offsets() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    let sent = bodies("m", 5);
    for (i, b) in sent.iter().enumerate() {
        let mut headers = FieldTable::default();
        headers.insert("i".into(), AMQPValue::LongInt(i as i32));
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                BasicProperties::default()
                    .with_headers(headers)
                    .with_content_type("text/plain".into()),
            )
            .await
            .unwrap();
        assert_eq!(within(10, confirm).await.unwrap(), Confirmation::Ack(None));
    }
    // A stream reports no ready messages.
    let ok = declare_passive(&ch, &q).await.unwrap();
    assert_eq!(ok.message_count(), 0);

    let (_c, mut consumer) = consume_from(&conn, &q, 10, Some(s("first"))).await;
    let got = take(&mut consumer, 5).await;
    assert_eq!(offsets(&got), vec![0, 1, 2, 3, 4]);
    check_bodies(&got, "m");
    for (i, d) in got.iter().enumerate() {
        assert!(!d.redelivered);
        assert_eq!(d.exchange.as_str(), "");
        assert_eq!(d.routing_key.as_str(), q);
        assert_eq!(d.delivery_tag, i as u64 + 1);
        assert_eq!(
            d.properties.content_type().as_ref().map(|c| c.as_str()),
            Some("text/plain")
        );
        let headers = d.properties.headers().as_ref().unwrap();
        assert_eq!(
            headers.inner().get("i"),
            Some(&AMQPValue::LongInt(i as i32))
        );
    }
    assert!(take_all(&mut consumer, QUIET).await.is_empty());
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn x_stream_offset_picks_where_a_consumer_starts() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    publish_each(&ch, "", &q, &bodies("m", 5)).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases: Vec<(Option<AMQPValue>, Vec<i64>)> = vec![
        (Some(s("first")), vec![0, 1, 2, 3, 4]),
        (Some(s("last")), vec![4]),
        (Some(s("next")), vec![]),
        (None, vec![]),
        (Some(AMQPValue::LongLongInt(2)), vec![2, 3, 4]),
        (Some(AMQPValue::LongInt(3)), vec![3, 4]),
        (Some(AMQPValue::LongLongInt(100)), vec![]),
        (Some(AMQPValue::LongLongInt(-1)), vec![0, 1, 2, 3, 4]),
        (Some(AMQPValue::Timestamp(now - 3600)), vec![0, 1, 2, 3, 4]),
        (Some(AMQPValue::Timestamp(now + 3600)), vec![]),
        (Some(s("1h")), vec![0, 1, 2, 3, 4]),
    ];
    for (offset, expected) in cases {
        let label = format!("{offset:?}");
        let (c, mut consumer) = consume_from(&conn, &q, 10, offset).await;
        let got = take_all(&mut consumer, QUIET).await;
        assert_eq!(offsets(&got), expected, "x-stream-offset {label}");
        check_bodies(&got, "m");
        c.close(200, "bye".into()).await.unwrap();
    }
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_consumer_at_next_gets_what_is_published_later() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    publish_each(&ch, "", &q, &bodies("m", 2)).await;
    let (_c, mut consumer) = consume_from(&conn, &q, 10, Some(s("next"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_each(&ch, "", &q, &bodies("m", 4)[2..]).await;
    let got = take(&mut consumer, 2).await;
    assert_eq!(offsets(&got), vec![2, 3]);
    check_bodies(&got, "m");
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn bad_x_stream_offsets_are_refused_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    assert_exact_error(
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-stream-offset", s("1"))]),
        )
        .await,
        406,
        &format!(
            "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {}: {{invalid_stream_offset_arg,{{longstr,<<\"1\">>}}}}",
            vhost_desc(&q)
        ),
    );
    let other = broker.connect().await;
    let ch = other.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    assert_exact_error(
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-stream-offset", s("bogus"))]),
        )
        .await,
        541,
        "INTERNAL_ERROR",
    );
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consuming_needs_a_prefetch_and_manual_acks() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let desc = vhost_desc(&q);
    let no_prefetch =
        format!("PRECONDITION_FAILED - consumer prefetch count is not set for '{desc}'");
    // No basic.qos at all.
    let ch = conn.create_channel().await.unwrap();
    assert_exact_error(
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
        &no_prefetch,
    );
    // A channel-wide (global) prefetch is not a consumer prefetch.
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions { global: true })
        .await
        .unwrap();
    assert_exact_error(
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
        &no_prefetch,
    );
    // Automatic acknowledgement closes the connection.
    let other = broker.connect().await;
    let ch = other.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    assert_exact_error(
        ch.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        540,
        &format!(
            "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues {desc}"
        ),
    );
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn basic_get_and_queue_purge_close_the_connection_with_540() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let desc = vhost_desc(&q);
    for no_ack in [false, true] {
        let other = broker.connect().await;
        let ch = other.create_channel().await.unwrap();
        assert_exact_error(
            ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack })
                .await,
            540,
            &format!("NOT_IMPLEMENTED - basic.get not supported by stream queues {desc}"),
        );
    }
    let other = broker.connect().await;
    let ch = other.create_channel().await.unwrap();
    assert_exact_error(
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await,
        540,
        &format!("NOT_IMPLEMENTED - queue.purge not supported by stream queues {desc}"),
    );
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn nack_and_reject_close_the_connection_with_540() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    publish_each(&ch, "", &q, &bodies("m", 1)).await;
    for reject in [false, true] {
        let other = broker.connect().await;
        let mut events = Box::pin(other.events_listener());
        let (_c, mut consumer) = consume_from(&other, &q, 10, Some(s("first"))).await;
        let d = within(10, consumer.next()).await.unwrap().unwrap();
        if reject {
            d.reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
        } else {
            d.nack(BasicNackOptions::default()).await.unwrap();
        }
        let err = next_error(&mut events).await;
        assert_eq!(
            (reply_code(&err), reply_text(&err)),
            (
                Some(540),
                Some(format!(
                    "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues {}",
                    vhost_desc(&q)
                ))
            )
        );
    }
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn acks_only_return_credit_and_remove_nothing() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    publish_each(&ch, "", &q, &bodies("m", 6)).await;
    let (_c, mut consumer) = consume_from(&conn, &q, 2, Some(s("first"))).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(within(10, consumer.next()).await.unwrap().unwrap());
    }
    // The prefetch of 2 is used up: nothing more until an ack.
    assert!(
        tokio::time::timeout(QUIET, consumer.next()).await.is_err(),
        "a third delivery came before any ack"
    );
    held[1]
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let rest = take(&mut consumer, 4).await;
    assert_eq!(offsets(&rest), vec![2, 3, 4, 5]);
    // Acked messages are still there for a new consumer.
    let (_c2, mut again) = consume_from(&conn, &q, 100, Some(s("first"))).await;
    assert_eq!(
        offsets(&take_all(&mut again, QUIET).await),
        vec![0, 1, 2, 3, 4, 5]
    );
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn consumers_read_independently_and_publishing_goes_through_any_exchange() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = confirm_channel(&conn).await;
    let exchange = unique("stream-fanout");
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        q.as_str().into(),
        exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_each(&ch, &exchange, "any-key", &bodies("m", 20)).await;
    let mut consumers = Vec::new();
    for prefetch in [1, 5, 50] {
        consumers.push(consume_from(&conn, &q, prefetch, Some(s("first"))).await);
    }
    for (_c, consumer) in consumers.iter_mut() {
        let got = take(consumer, 20).await;
        assert_eq!(offsets(&got), (0..20).collect::<Vec<_>>());
        check_bodies(&got, "m");
        assert_eq!(got[0].exchange.as_str(), exchange);
        assert_eq!(got[0].routing_key.as_str(), "any-key");
    }
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn transactional_publishes_reach_the_stream() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    for b in bodies("m", 3) {
        publish_with(&ch, "", &q, b.as_bytes(), BasicProperties::default()).await;
    }
    ch.tx_commit().await.unwrap();
    let (_c, mut consumer) = consume_from(&conn, &q, 10, Some(s("first"))).await;
    let got = take(&mut consumer, 3).await;
    check_bodies(&got, "m");
    // queue.delete if-empty: a stream counts as empty.
    ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        },
    )
    .await
    .expect("delete if-empty");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn declare_ok_counts_no_consumers_and_if_unused_deletes_anyway() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[]).await;
    let (_c, _consumer) = consume_from(&conn, &q, 10, Some(s("first"))).await;
    let ch = conn.create_channel().await.unwrap();
    // RabbitMQ 3.10 counts neither messages nor consumers of a stream here.
    let ok = declare_passive(&ch, &q).await.unwrap();
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 0));
    ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    )
    .await
    .expect("delete if-unused");
    assert_amqp_error(declare_passive(&ch, &q).await, 404, "NOT_FOUND");
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

// ---- retention ----

#[tokio::test]
async fn max_length_bytes_drops_whole_old_segments() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(
        &conn,
        &[
            ("x-max-length-bytes", AMQPValue::LongInt(2_000)),
            ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(500)),
        ],
    )
    .await;
    let ch = confirm_channel(&conn).await;
    let payload = |i: usize| format!("m{i}-{}", "x".repeat(100));
    let sent: Vec<String> = (0..60).map(payload).collect();
    publish_each(&ch, "", &q, &sent).await;
    // A consumer asking for offset 0 gets the first kept instead. (Offsets
    // need not be dense: RabbitMQ spends some on each new segment.)
    for start in [s("first"), AMQPValue::LongLongInt(0)] {
        let (c, mut consumer) = consume_from(&conn, &q, 100, Some(start)).await;
        let got = take_all(&mut consumer, QUIET).await;
        let kept = indexes(&got);
        assert!(kept[0] > 0, "retention removed nothing");
        assert_eq!(kept, (kept[0]..60).collect::<Vec<_>>(), "kept messages");
        assert!(got.len() < 30, "kept {} messages of 60", got.len());
        assert!(offsets(&got).windows(2).all(|w| w[0] < w[1]));
        assert!(offset_of(&got[0]) > 0);
        c.close(200, "bye".into()).await.unwrap();
    }
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_age_drops_segments_older_than_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(
        &conn,
        &[
            ("x-max-age", s("1s")),
            ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(500)),
        ],
    )
    .await;
    let ch = confirm_channel(&conn).await;
    let payload = |i: usize| format!("m{i}-{}", "x".repeat(100));
    publish_each(&ch, "", &q, &(0..20).map(payload).collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // New segments are sealed; the old ones are past their age.
    publish_each(&ch, "", &q, &(20..40).map(payload).collect::<Vec<_>>()).await;
    let (_c, mut consumer) = consume_from(&conn, &q, 100, Some(s("first"))).await;
    let got = take_all(&mut consumer, QUIET).await;
    let kept = indexes(&got);
    assert!(kept[0] >= 15, "first kept message m{}", kept[0]);
    assert_eq!(kept, (kept[0]..40).collect::<Vec<_>>());
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- Warren only ----

#[tokio::test]
async fn a_stream_survives_a_restart_with_its_offsets() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let q = stream(&conn, &[("x-max-age", s("7D"))]).await;
    let ch = confirm_channel(&conn).await;
    publish_each(&ch, "", &q, &bodies("m", 5)).await;
    conn.close(200, "bye".into()).await.unwrap();
    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    // Same arguments: the declaration survived.
    declare(&ch, &q, &[("x-max-age", s("7D"))])
        .await
        .expect("redeclare");
    publish_each(&ch, "", &q, &bodies("m", 8)[5..]).await;
    let (_c, mut consumer) = consume_from(&conn, &q, 10, Some(s("first"))).await;
    let got = take(&mut consumer, 8).await;
    assert_eq!(offsets(&got), (0..8).collect::<Vec<_>>());
    check_bodies(&got, "m");
    delete(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
