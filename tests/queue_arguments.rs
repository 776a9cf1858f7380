//! Validation of queue arguments (exact RabbitMQ 3.10 texts), argument
//! equivalence on redeclare, alternate exchanges and exchange-to-exchange
//! bindings through topic and headers exchanges.

mod common;

use common::*;
use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, DecimalValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};

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

fn int(n: i32) -> AMQPValue {
    AMQPValue::LongInt(n)
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

/// Declare a fresh (non-durable, exclusive) queue with these arguments on
/// a new channel; returns the name and the outcome.
async fn try_declare(conn: &Connection, args: &[(&str, AMQPValue)]) -> (String, lapin::Result<()>) {
    let name = unique("qargs");
    let ch = conn.create_channel().await.unwrap();
    let res = ch
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            table(args),
        )
        .await
        .map(|_| ());
    if res.is_ok() {
        ch.close(200, "bye".into()).await.unwrap();
    }
    (name, res)
}

/// Declaring with these arguments fails with 406 and
/// "invalid arg '<key>' for queue '<q>' in vhost '/': <detail>".
async fn assert_invalid_arg(
    conn: &Connection,
    args: &[(&str, AMQPValue)],
    key: &str,
    detail: &str,
) {
    let (q, res) = try_declare(conn, args).await;
    assert_exact_error(
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {detail}"
        ),
    );
}

/// Declare with `first`, redeclare with `second`: the redeclare's outcome.
async fn redeclare(
    conn: &Connection,
    first: &[(&str, AMQPValue)],
    second: &[(&str, AMQPValue)],
) -> (String, lapin::Result<()>) {
    let name = unique("qargs-eq");
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch.queue_declare(name.as_str().into(), opts, table(first))
        .await
        .expect("first declare");
    let res = ch
        .queue_declare(name.as_str().into(), opts, table(second))
        .await
        .map(|_| ());
    if res.is_ok() {
        ch.close(200, "bye".into()).await.unwrap();
    }
    (name, res)
}

async fn assert_inequivalent(
    conn: &Connection,
    first: &[(&str, AMQPValue)],
    second: &[(&str, AMQPValue)],
    key: &str,
    detail: &str,
) {
    let (q, res) = redeclare(conn, first, second).await;
    assert_exact_error(
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg '{key}' for queue '{q}' in vhost '/': {detail}"
        ),
    );
}

// ---- x-message-ttl ----

#[tokio::test]
async fn negative_message_ttl_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", int(-1))],
        "x-message-ttl",
        "{value_negative,-1}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn string_message_ttl_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", s("100"))],
        "x-message-ttl",
        "\"expected integer, got longstr\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn boolean_message_ttl_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", AMQPValue::Boolean(true))],
        "x-message-ttl",
        "\"expected integer, got bool\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn floating_point_message_ttl_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", AMQPValue::Double(1.5))],
        "x-message-ttl",
        "\"expected integer, got double\"",
    )
    .await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", AMQPValue::Float(1.5))],
        "x-message-ttl",
        "\"expected integer, got float\"",
    )
    .await;
    assert_invalid_arg(
        &conn,
        &[(
            "x-message-ttl",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 1,
                value: 15,
            }),
        )],
        "x-message-ttl",
        "\"expected integer, got decimal\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_ttl_over_ten_years_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-message-ttl", AMQPValue::LongLongInt(1 << 40))],
        "x-message-ttl",
        "{value_too_large,1099511627776}",
    )
    .await;
    // Ten years exactly (in ms) is still fine.
    let (_, res) = try_declare(
        &conn,
        &[("x-message-ttl", AMQPValue::LongLongInt(315_360_000_000))],
    )
    .await;
    res.expect("ten years is the maximum");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn every_integer_width_is_accepted_for_message_ttl() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for v in [
        AMQPValue::ShortShortInt(5),
        AMQPValue::ShortShortUInt(5),
        AMQPValue::ShortInt(5),
        AMQPValue::ShortUInt(5),
        AMQPValue::LongInt(5),
        AMQPValue::LongUInt(5),
        AMQPValue::LongLongInt(5),
    ] {
        let (_, res) = try_declare(&conn, &[("x-message-ttl", v.clone())]).await;
        res.unwrap_or_else(|e| panic!("{v:?} refused: {e:?}"));
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-expires ----

#[tokio::test]
async fn zero_expires_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-expires", int(0))],
        "x-expires",
        "{value_zero,0}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn negative_expires_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-expires", int(-5))],
        "x-expires",
        "{value_negative,-5}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn string_expires_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-expires", s("soon"))],
        "x-expires",
        "\"expected integer, got longstr\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn expires_over_ten_years_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-expires", AMQPValue::LongLongInt(315_360_000_001))],
        "x-expires",
        "{value_too_large,315360000001}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-max-length, x-max-length-bytes ----

#[tokio::test]
async fn negative_max_length_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-length", int(-1))],
        "x-max-length",
        "{value_negative,-1}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn string_max_length_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-length", s("1"))],
        "x-max-length",
        "\"expected integer, got longstr\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn negative_max_length_bytes_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-length-bytes", AMQPValue::LongLongInt(-2))],
        "x-max-length-bytes",
        "{value_negative,-2}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn boolean_max_length_bytes_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-length-bytes", AMQPValue::Boolean(false))],
        "x-max-length-bytes",
        "\"expected integer, got bool\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-max-priority ----

#[tokio::test]
async fn max_priority_over_255_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-priority", int(256))],
        "x-max-priority",
        "{max_value_exceeded,256}",
    )
    .await;
    let (_, res) = try_declare(&conn, &[("x-max-priority", int(255))]).await;
    res.expect("255 is the maximum");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn negative_max_priority_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-priority", int(-1))],
        "x-max-priority",
        "{value_negative,-1}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn string_max_priority_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-max-priority", s("5"))],
        "x-max-priority",
        "\"expected integer, got longstr\"",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn zero_max_priority_is_accepted() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let (_, res) = try_declare(&conn, &[("x-max-priority", int(0))]).await;
    res.expect("0 is allowed");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-overflow ----

#[tokio::test]
async fn unknown_overflow_mode_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-overflow", s("drop-tail"))],
        "x-overflow",
        "invalid_overflow",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_string_overflow_mode_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-overflow", int(1))],
        "x-overflow",
        "{unacceptable_type,signedint}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn every_overflow_mode_is_accepted() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for mode in ["drop-head", "reject-publish", "reject-publish-dlx"] {
        let (_, res) = try_declare(&conn, &[("x-overflow", s(mode))]).await;
        res.unwrap_or_else(|e| panic!("{mode} refused: {e:?}"));
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- dead-lettering arguments ----

#[tokio::test]
async fn non_string_dead_letter_exchange_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let (q, res) = try_declare(&conn, &[("x-dead-letter-exchange", int(1))]).await;
    // Checked by the channel before the argument validators: another form.
    assert_exact_error(
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"
        ),
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letter_exchange_need_not_exist_at_declare() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let (_, res) = try_declare(&conn, &[("x-dead-letter-exchange", s(&unique("later")))]).await;
    res.expect("a missing DLX is fine");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn dead_letter_routing_key_without_exchange_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-dead-letter-routing-key", s("k"))],
        "x-dead-letter-routing-key",
        "routing_key_but_no_dlx_defined",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_string_dead_letter_routing_key_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", int(3)),
        ],
        "x-dead-letter-routing-key",
        "{unacceptable_type,signedint}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-single-active-consumer ----

#[tokio::test]
async fn string_single_active_consumer_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-single-active-consumer", s("true"))],
        "x-single-active-consumer",
        "{unacceptable_type,longstr}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn integer_single_active_consumer_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-single-active-consumer", int(1))],
        "x-single-active-consumer",
        "{unacceptable_type,signedint}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- x-queue-mode (accepted by classic queues) ----

#[tokio::test]
async fn unknown_queue_mode_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_invalid_arg(
        &conn,
        &[("x-queue-mode", s("fast"))],
        "x-queue-mode",
        "\"unsupported queue mode 'fast'\"",
    )
    .await;
    for mode in ["default", "lazy"] {
        let (_, res) = try_declare(&conn, &[("x-queue-mode", s(mode))]).await;
        res.unwrap_or_else(|e| panic!("{mode} refused: {e:?}"));
    }
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- validation order, unknown arguments ----

#[tokio::test]
async fn first_invalid_argument_in_rabbitmq_order_is_reported() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    // RabbitMQ checks x-expires before x-message-ttl before x-max-length,
    // whatever the order in the table.
    assert_invalid_arg(
        &conn,
        &[
            ("x-max-length", int(-3)),
            ("x-message-ttl", int(-2)),
            ("x-expires", int(0)),
        ],
        "x-expires",
        "{value_zero,0}",
    )
    .await;
    assert_invalid_arg(
        &conn,
        &[("x-max-length", int(-3)), ("x-message-ttl", int(-2))],
        "x-message-ttl",
        "{value_negative,-2}",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn unknown_arguments_are_ignored() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let (_, res) = try_declare(&conn, &[("x-made-up", int(-1)), ("plain", s("whatever"))]).await;
    res.expect("unknown arguments are accepted");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn invalid_argument_closes_only_the_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let (_, res) = try_declare(&conn, &[("x-message-ttl", int(-1))]).await;
    assert!(res.is_err());
    let (_, res) = try_declare(&conn, &[("x-message-ttl", int(1000))]).await;
    res.expect("the connection carries on");
    assert!(conn.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- equivalence on redeclare ----

#[tokio::test]
async fn redeclare_with_other_message_ttl_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-message-ttl", int(100))],
        &[("x-message-ttl", int(200))],
        "x-message-ttl",
        "received '200' but current is '100'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_invalid_value_is_compared_not_validated() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-message-ttl", int(100))],
        &[("x-message-ttl", int(-1))],
        "x-message-ttl",
        "received '-1' but current is '100'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_expires_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-expires", int(10_000))],
        &[("x-expires", int(20_000))],
        "x-expires",
        "received '20000' but current is '10000'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_max_length_bytes_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-max-length-bytes", int(100))],
        &[("x-max-length-bytes", int(200))],
        "x-max-length-bytes",
        "received '200' but current is '100'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_max_priority_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-max-priority", int(5))],
        &[("x-max-priority", int(6))],
        "x-max-priority",
        "received '6' but current is '5'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_overflow_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-overflow", s("drop-head"))],
        &[("x-overflow", s("reject-publish"))],
        "x-overflow",
        "received 'reject-publish' but current is 'drop-head'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_without_overflow_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-overflow", s("reject-publish"))],
        &[],
        "x-overflow",
        "received none but current is the value 'reject-publish' of type 'longstr'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_dead_letter_exchange_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-dead-letter-exchange", s("a"))],
        &[("x-dead-letter-exchange", s("b"))],
        "x-dead-letter-exchange",
        "received 'b' but current is 'a'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_dead_letter_routing_key_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[
            ("x-dead-letter-exchange", s("a")),
            ("x-dead-letter-routing-key", s("k1")),
        ],
        &[
            ("x-dead-letter-exchange", s("a")),
            ("x-dead-letter-routing-key", s("k2")),
        ],
        "x-dead-letter-routing-key",
        "received 'k2' but current is 'k1'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_other_single_active_consumer_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
        &[("x-single-active-consumer", AMQPValue::Boolean(false))],
        "x-single-active-consumer",
        "received 'false' but current is 'true'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_without_single_active_consumer_fails_with_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
        &[],
        "x-single-active-consumer",
        "received none but current is the value 'true' of type 'bool'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_reports_the_first_difference_in_rabbitmq_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert_inequivalent(
        &conn,
        &[("x-max-length", int(1)), ("x-message-ttl", int(100))],
        &[("x-max-length", int(2)), ("x-message-ttl", int(200))],
        "x-message-ttl",
        "received '200' but current is '100'",
    )
    .await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn redeclare_with_identical_extension_arguments_succeeds() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let args = [
        ("x-message-ttl", int(1000)),
        ("x-expires", int(60_000)),
        ("x-max-length", int(10)),
        ("x-max-length-bytes", int(1000)),
        ("x-overflow", s("reject-publish")),
        ("x-dead-letter-exchange", s("dlx")),
        ("x-dead-letter-routing-key", s("dead")),
        ("x-max-priority", int(4)),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
    ];
    let (_, res) = redeclare(&conn, &args, &args).await;
    res.expect("identical redeclare");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- alternate exchanges ----

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind, args: FieldTable) {
    ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)
        .await
        .expect("exchange.declare");
}

fn alternate(name: &str) -> FieldTable {
    table(&[("alternate-exchange", s(name))])
}

async fn cleanup(conn: &Connection, exchanges: &[&str]) {
    let ch = conn.create_channel().await.unwrap();
    for x in exchanges {
        ch.exchange_delete((*x).into(), ExchangeDeleteOptions::default())
            .await
            .expect("exchange.delete");
    }
    ch.close(200, "bye".into()).await.unwrap();
}

async fn queue(ch: &Channel) -> String {
    let name = unique("qargs-q");
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

async fn e2e_bind(ch: &Channel, destination: &str, source: &str, key: &str, args: FieldTable) {
    ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        ExchangeBindOptions::default(),
        args,
    )
    .await
    .expect("exchange.bind");
}

/// Publish on a confirm channel and return the confirmation.
async fn publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    mandatory: bool,
    props: BasicProperties,
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
            props,
        )
        .await
        .expect("basic.publish");
    within(5, confirm).await.expect("confirmation")
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

async fn try_get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = try_get(ch, queue).await {
        out.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    out
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The confirmation of a mandatory publish that came back with basic.return.
#[track_caller]
fn assert_returned(c: Confirmation, exchange: &str, key: &str) {
    match c {
        Confirmation::Ack(Some(r)) => {
            assert_eq!((r.reply_code, r.reply_text.as_str()), (312, "NO_ROUTE"));
            assert_eq!(r.delivery.exchange.as_str(), exchange);
            assert_eq!(r.delivery.routing_key.as_str(), key);
        }
        other => panic!("expected a basic.return then ack, got {other:?}"),
    }
}

#[tokio::test]
async fn unroutable_message_goes_to_the_alternate_exchange_with_its_routing_key() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x, ae) = (unique("x"), unique("ae"));
    declare_exchange(&ch, &ae, ExchangeKind::Topic, FieldTable::default()).await;
    declare_exchange(&ch, &x, ExchangeKind::Direct, alternate(&ae)).await;
    let routed = queue(&ch).await;
    let caught = queue(&ch).await;
    bind(&ch, &routed, &x, "known", FieldTable::default()).await;
    bind(&ch, &caught, &ae, "other.*", FieldTable::default()).await;
    publish(&ch, &x, "known", "m1", false, BasicProperties::default()).await;
    publish(
        &ch,
        &x,
        "other.key",
        "m2",
        false,
        BasicProperties::default(),
    )
    .await;
    assert_eq!(drain(&ch, &routed).await, owned(&["m1"]));
    let m = try_get(&ch, &caught).await.expect("m2 via the alternate");
    assert_eq!(m.delivery.data, b"m2");
    // Delivered as published: the original exchange and routing key.
    assert_eq!(m.delivery.exchange.as_str(), x);
    assert_eq!(m.delivery.routing_key.as_str(), "other.key");
    assert!(try_get(&ch, &caught).await.is_none());
    cleanup(&conn, &[&x, &ae]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_message_taken_by_the_alternate_exchange_is_not_returned() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x, ae) = (unique("x"), unique("ae"));
    declare_exchange(&ch, &ae, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &x, ExchangeKind::Direct, alternate(&ae)).await;
    let caught = queue(&ch).await;
    bind(&ch, &caught, &ae, "", FieldTable::default()).await;
    assert_eq!(
        publish(&ch, &x, "nowhere", "m1", true, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert_eq!(drain(&ch, &caught).await, owned(&["m1"]));
    cleanup(&conn, &[&x, &ae]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn alternate_exchanges_chain() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x1, x2, x3) = (unique("x1"), unique("x2"), unique("x3"));
    declare_exchange(&ch, &x3, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &x2, ExchangeKind::Direct, alternate(&x3)).await;
    declare_exchange(&ch, &x1, ExchangeKind::Direct, alternate(&x2)).await;
    let at_x2 = queue(&ch).await;
    let at_x3 = queue(&ch).await;
    bind(&ch, &at_x2, &x2, "for-x2", FieldTable::default()).await;
    bind(&ch, &at_x3, &x3, "", FieldTable::default()).await;
    // Unroutable in x1, routable in x2.
    publish(&ch, &x1, "for-x2", "m1", true, BasicProperties::default()).await;
    // Unroutable in x1 and x2: on to x3.
    assert_eq!(
        publish(&ch, &x1, "lost", "m2", true, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert_eq!(drain(&ch, &at_x2).await, owned(&["m1"]));
    assert_eq!(drain(&ch, &at_x3).await, owned(&["m2"]));
    cleanup(&conn, &[&x1, &x2, &x3]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn missing_alternate_exchange_drops_the_message() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let x = unique("x");
    declare_exchange(
        &ch,
        &x,
        ExchangeKind::Direct,
        alternate(&unique("missing-ae")),
    )
    .await;
    assert_eq!(
        publish(&ch, &x, "nowhere", "m1", false, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert!(ch.status().connected());
    cleanup(&conn, &[&x]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn missing_alternate_exchange_returns_a_mandatory_message() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let x = unique("x");
    declare_exchange(
        &ch,
        &x,
        ExchangeKind::Direct,
        alternate(&unique("missing-ae")),
    )
    .await;
    let c = publish(&ch, &x, "nowhere", "m1", true, BasicProperties::default()).await;
    assert_returned(c, &x, "nowhere");
    cleanup(&conn, &[&x]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn alternate_exchange_that_routes_nowhere_returns_a_mandatory_message() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x, ae) = (unique("x"), unique("ae"));
    declare_exchange(&ch, &ae, ExchangeKind::Direct, FieldTable::default()).await;
    declare_exchange(&ch, &x, ExchangeKind::Direct, alternate(&ae)).await;
    let c = publish(&ch, &x, "nowhere", "m1", true, BasicProperties::default()).await;
    assert_returned(c, &x, "nowhere");
    cleanup(&conn, &[&x, &ae]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn alternate_exchange_cycle_ends_and_returns_a_mandatory_message() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x1, x2) = (unique("x1"), unique("x2"));
    declare_exchange(&ch, &x1, ExchangeKind::Direct, alternate(&x2)).await;
    declare_exchange(&ch, &x2, ExchangeKind::Direct, alternate(&x1)).await;
    let c = publish(&ch, &x1, "nowhere", "m1", true, BasicProperties::default()).await;
    assert_returned(c, &x1, "nowhere");
    cleanup(&conn, &[&x1, &x2]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn exchange_routing_only_to_another_exchange_does_not_use_its_alternate() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x, dest, ae) = (unique("x"), unique("dest"), unique("ae"));
    declare_exchange(&ch, &ae, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &x, ExchangeKind::Fanout, alternate(&ae)).await;
    declare_exchange(&ch, &dest, ExchangeKind::Direct, FieldTable::default()).await;
    e2e_bind(&ch, &dest, &x, "", FieldTable::default()).await;
    let caught = queue(&ch).await;
    bind(&ch, &caught, &ae, "", FieldTable::default()).await;
    // x routes to dest, so x's alternate is not consulted, though dest
    // routes nowhere: the message is unroutable and returned.
    let c = publish(&ch, &x, "nowhere", "m1", true, BasicProperties::default()).await;
    assert_returned(c, &x, "nowhere");
    assert_eq!(drain(&ch, &caught).await, Vec::<String>::new());
    cleanup(&conn, &[&x, &dest, &ae]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn destination_exchange_uses_its_own_alternate() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (x, dest, ae) = (unique("x"), unique("dest"), unique("ae"));
    declare_exchange(&ch, &ae, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &x, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Direct, alternate(&ae)).await;
    e2e_bind(&ch, &dest, &x, "", FieldTable::default()).await;
    let caught = queue(&ch).await;
    bind(&ch, &caught, &ae, "", FieldTable::default()).await;
    assert_eq!(
        publish(&ch, &x, "nowhere", "m1", true, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert_eq!(drain(&ch, &caught).await, owned(&["m1"]));
    cleanup(&conn, &[&x, &dest, &ae]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_string_alternate_exchange_is_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let x = unique("x");
    let res = ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            table(&[("alternate-exchange", int(1))]),
        )
        .await;
    assert_exact_error(
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{x}' in vhost '/'"
        ),
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- exchange-to-exchange bindings through topic and headers ----

#[tokio::test]
async fn topic_source_routes_to_a_destination_exchange_by_pattern() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, dest) = (unique("src"), unique("dest"));
    declare_exchange(&ch, &src, ExchangeKind::Topic, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Fanout, FieldTable::default()).await;
    e2e_bind(&ch, &dest, &src, "a.#", FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &dest, "", FieldTable::default()).await;
    for (key, b) in [("a.b.c", "m1"), ("b.c", "m2"), ("a", "m3")] {
        publish(&ch, &src, key, b, false, BasicProperties::default()).await;
    }
    assert_eq!(drain(&ch, &q).await, owned(&["m1", "m3"]));
    cleanup(&conn, &[&src, &dest]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn routing_key_is_kept_through_a_binding_into_a_topic_destination() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, dest) = (unique("src"), unique("dest"));
    declare_exchange(&ch, &src, ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Topic, FieldTable::default()).await;
    e2e_bind(&ch, &dest, &src, "", FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &dest, "*.orange.*", FieldTable::default()).await;
    publish(
        &ch,
        &src,
        "quick.orange.fox",
        "m1",
        false,
        BasicProperties::default(),
    )
    .await;
    publish(
        &ch,
        &src,
        "lazy.brown.fox",
        "m2",
        false,
        BasicProperties::default(),
    )
    .await;
    let m = try_get(&ch, &q).await.expect("m1");
    assert_eq!(m.delivery.data, b"m1");
    // Delivered with the exchange it was published to.
    assert_eq!(m.delivery.exchange.as_str(), src);
    assert_eq!(m.delivery.routing_key.as_str(), "quick.orange.fox");
    assert!(try_get(&ch, &q).await.is_none());
    cleanup(&conn, &[&src, &dest]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn headers_source_routes_to_a_destination_exchange_by_headers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, dest) = (unique("src"), unique("dest"));
    declare_exchange(&ch, &src, ExchangeKind::Headers, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Fanout, FieldTable::default()).await;
    e2e_bind(
        &ch,
        &dest,
        &src,
        "",
        table(&[
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ]),
    )
    .await;
    let q = queue(&ch).await;
    bind(&ch, &q, &dest, "", FieldTable::default()).await;
    let with = |h: &[(&str, AMQPValue)]| BasicProperties::default().with_headers(table(h));
    publish(
        &ch,
        &src,
        "",
        "both",
        false,
        with(&[("format", s("pdf")), ("type", s("report"))]),
    )
    .await;
    publish(&ch, &src, "", "one", false, with(&[("format", s("pdf"))])).await;
    publish(
        &ch,
        &src,
        "",
        "other",
        false,
        with(&[("format", s("zip")), ("type", s("report"))]),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, owned(&["both"]));
    cleanup(&conn, &[&src, &dest]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn headers_destination_matches_headers_of_messages_from_the_source() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, dest) = (unique("src"), unique("dest"));
    declare_exchange(&ch, &src, ExchangeKind::Direct, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Headers, FieldTable::default()).await;
    e2e_bind(&ch, &dest, &src, "k", FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(
        &ch,
        &q,
        &dest,
        "",
        table(&[("x-match", s("any")), ("color", s("red")), ("size", int(3))]),
    )
    .await;
    let with = |h: &[(&str, AMQPValue)]| BasicProperties::default().with_headers(table(h));
    publish(&ch, &src, "k", "red", false, with(&[("color", s("red"))])).await;
    publish(&ch, &src, "k", "size", false, with(&[("size", int(3))])).await;
    publish(&ch, &src, "k", "blue", false, with(&[("color", s("blue"))])).await;
    publish(
        &ch,
        &src,
        "other",
        "wrong-key",
        false,
        with(&[("color", s("red"))]),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, owned(&["red", "size"]));
    cleanup(&conn, &[&src, &dest]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_message_routed_through_an_exchange_binding_is_not_returned() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (src, dest) = (unique("src"), unique("dest"));
    declare_exchange(&ch, &src, ExchangeKind::Topic, FieldTable::default()).await;
    declare_exchange(&ch, &dest, ExchangeKind::Topic, FieldTable::default()).await;
    e2e_bind(&ch, &dest, &src, "#", FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &dest, "a.*", FieldTable::default()).await;
    assert_eq!(
        publish(&ch, &src, "a.b", "m1", true, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    let c = publish(&ch, &src, "b.c", "m2", true, BasicProperties::default()).await;
    assert_returned(c, &src, "b.c");
    assert_eq!(drain(&ch, &q).await, owned(&["m1"]));
    cleanup(&conn, &[&src, &dest]).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
