//! basic.publish: content of every size, properties, mandatory returns,
//! immediate, missing exchanges and the message size limit.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn, RawFrame};
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};

/// A body whose bytes differ from their neighbours, so that lost, repeated
/// or reordered chunks show up.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Assert an error carries exactly this reply code and text.
#[track_caller]
fn assert_exact_error(err: &lapin::Error, code: u16, text: &str) {
    assert_eq!(
        (reply_code(err), reply_text(err).as_deref()),
        (Some(code), Some(text)),
        "error was {err:?}"
    );
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("basic.publish");
}

/// Publish `body` to a fresh queue and receive it through a consumer.
async fn round_trip_through_consumer(conn: &Connection, ch: &Channel, body: &[u8]) {
    let queue = temp_queue(ch).await;
    publish(ch, "", &queue, body, BasicProperties::default()).await;
    let consume_ch = conn.create_channel().await.unwrap();
    let mut consumer = consume_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(10, consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data.len(), body.len());
    assert!(
        delivery.data == body,
        "body of {} bytes corrupted",
        body.len()
    );
    assert_eq!(delivery.delivery_tag, 1);
    assert_eq!(delivery.exchange.as_str(), "");
    assert_eq!(delivery.routing_key.as_str(), queue);
}

#[tokio::test]
async fn empty_body_arrives_intact() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    round_trip_through_consumer(&conn, &ch, b"").await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn one_byte_body_arrives_intact() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    round_trip_through_consumer(&conn, &ch, b"x").await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn body_filling_exactly_one_frame_arrives_intact() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let frame_max = conn.configuration().frame_max() as usize;
    round_trip_through_consumer(&conn, &ch, &pattern(frame_max - 8)).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn body_spanning_several_frames_arrives_intact() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let frame_max = conn.configuration().frame_max() as usize;
    round_trip_through_consumer(&conn, &ch, &pattern(frame_max * 3 + 17)).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn one_mebibyte_body_arrives_intact() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    round_trip_through_consumer(&conn, &ch, &pattern(1024 * 1024)).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn twenty_megabyte_body_is_accepted_and_arrives_intact() {
    // RabbitMQ 3.x accepts bodies up to 128 MiB by default (16 MiB is 4.x's
    // default); clients' test suites send 20 MB messages.
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    round_trip_through_consumer(&conn, &ch, &pattern(20_000_000)).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn default_max_message_size_is_rabbitmq_3s_128_mib() {
    // Warren's own configuration; the behaviour is checked above.
    assert_eq!(warren::Config::default().max_message_size, 134_217_728);
}

#[tokio::test]
async fn multi_frame_body_arrives_intact_through_basic_get() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let frame_max = conn.configuration().frame_max() as usize;
    let body = pattern(frame_max * 3 + 17);
    publish(&ch, "", &queue, &body, BasicProperties::default()).await;
    let got = within(
        10,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert!(
        got.delivery.data == body,
        "body corrupted through basic.get"
    );
    assert_eq!(got.message_count, 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

fn headers_of_every_type() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    nested.insert("n".into(), AMQPValue::LongInt(-7));
    let mut h = FieldTable::default();
    h.insert("bool".into(), AMQPValue::Boolean(true));
    h.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    h.insert("u8".into(), AMQPValue::ShortShortUInt(200));
    h.insert("i16".into(), AMQPValue::ShortInt(-300));
    h.insert("u16".into(), AMQPValue::ShortUInt(60_000));
    h.insert("i32".into(), AMQPValue::LongInt(-70_000));
    h.insert("u32".into(), AMQPValue::LongUInt(4_000_000_000));
    h.insert("i64".into(), AMQPValue::LongLongInt(-9_000_000_000));
    h.insert("f32".into(), AMQPValue::Float(1.5));
    h.insert("f64".into(), AMQPValue::Double(-2.25));
    h.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    h.insert(
        "string".into(),
        AMQPValue::LongString(LongString::from("héllo wörld")),
    );
    h.insert(
        "array".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::LongString("two".into()),
            AMQPValue::Boolean(false),
        ])),
    );
    h.insert("timestamp".into(), AMQPValue::Timestamp(1_700_000_000));
    h.insert("table".into(), AMQPValue::FieldTable(nested));
    h.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
    );
    h.insert("void".into(), AMQPValue::Void);
    h
}

fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers_of_every_type())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-42".into())
        .with_reply_to("reply-queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_650_000_000)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
}

#[tokio::test]
async fn all_properties_arrive_as_published_through_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, b"props", all_properties()).await;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"props");
    assert_eq!(delivery.properties, all_properties());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn all_properties_arrive_as_published_through_basic_get() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, b"props", all_properties()).await;
    let got = within(
        5,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(got.delivery.data, b"props");
    assert_eq!(got.delivery.properties, all_properties());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_without_properties_arrives_without_properties() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, b"bare", BasicProperties::default()).await;
    let got = within(
        5,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(got.delivery.properties, BasicProperties::default());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn user_id_other_than_the_authenticated_user_closes_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish(
        &ch,
        "",
        &queue,
        b"x",
        BasicProperties::default().with_user_id("mallory".into()),
    )
    .await;
    let err = next_error(&mut events).await;
    assert_exact_error(
        &err,
        406,
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'",
    );
    // Only the channel closed: the connection still works.
    let ch2 = conn.create_channel().await.unwrap();
    temp_queue(&ch2).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_over_max_size_closes_channel_with_406() {
    let broker = TestBroker::start_with(|c| c.max_message_size = 1000).await;
    if broker.is_external() {
        // Needs a broker configured with max_message_size = 1000.
        broker.stop().await;
        return;
    }
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    publish(&ch, "", &queue, &pattern(1001), BasicProperties::default()).await;
    let err = next_error(&mut events).await;
    assert_exact_error(
        &err,
        406,
        "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000",
    );
    assert!(!ch.status().connected());
    // The connection survives and the oversized message was not enqueued.
    let ch2 = conn.create_channel().await.unwrap();
    let q = ch2
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
    assert_eq!(q.message_count(), 0);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn message_of_exactly_max_size_is_accepted() {
    let broker = TestBroker::start_with(|c| c.max_message_size = 1000).await;
    if broker.is_external() {
        // Needs a broker configured with max_message_size = 1000.
        broker.stop().await;
        return;
    }
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let body = pattern(1000);
    publish(&ch, "", &queue, &body, BasicProperties::default()).await;
    let got = within(
        5,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert!(got.delivery.data == body);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn max_message_size_counts_only_the_body() {
    let broker = TestBroker::start_with(|c| c.max_message_size = 1000).await;
    if broker.is_external() {
        // Needs a broker configured with max_message_size = 1000.
        broker.stop().await;
        return;
    }
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    let mut headers = FieldTable::default();
    headers.insert(
        "padding".into(),
        AMQPValue::LongString(LongString::from(vec![b'p'; 2000])),
    );
    let props = BasicProperties::default().with_headers(headers);
    publish(&ch, "", &queue, &pattern(1000), props.clone()).await;
    let got = within(
        5,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(got.delivery.data.len(), 1000);
    assert_eq!(got.delivery.properties, props);
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

/// Returned messages collected so far on a non-confirm channel, polled until
/// `n` have arrived.
async fn wait_for_returns(ch: &Channel, n: usize) -> Vec<lapin::message::BasicReturnMessage> {
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

#[tokio::test]
async fn mandatory_unroutable_message_is_returned_with_312_no_route() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let key = unique("nowhere");
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_message_id("m-1".into());
    ch.basic_publish(
        "amq.direct".into(),
        key.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"lost",
        props.clone(),
    )
    .await
    .unwrap();
    let returned = wait_for_returns(&ch, 1).await;
    assert_eq!(returned.len(), 1);
    let r = &returned[0];
    assert_eq!(r.reply_code, 312);
    assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(r.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(r.delivery.routing_key.as_str(), key);
    assert_eq!(r.delivery.properties, props);
    assert_eq!(r.delivery.data, b"lost");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_unroutable_message_on_default_exchange_is_returned() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let key = unique("no-such-queue");
    ch.basic_publish(
        "".into(),
        key.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let returned = wait_for_returns(&ch, 1).await;
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].reply_code, 312);
    assert_eq!(returned[0].reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned[0].delivery.exchange.as_str(), "");
    assert_eq!(returned[0].delivery.routing_key.as_str(), key);
    assert_eq!(returned[0].delivery.data, b"");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_routable_message_is_delivered_and_not_returned() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"routed",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = within(
        5,
        ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(got.delivery.data, b"routed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn non_mandatory_unroutable_message_is_dropped_silently() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.basic_publish(
        "amq.direct".into(),
        unique("nowhere").as_str().into(),
        BasicPublishOptions::default(),
        b"dropped",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    // The channel is still fine and nothing came back.
    temp_queue(&ch).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
    assert!(ch.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn immediate_publish_closes_connection_with_540() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let queue = temp_queue(&ch).await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions {
            immediate: true,
            ..Default::default()
        },
        b"now",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let err = next_error(&mut events).await;
    assert_exact_error(&err, 540, "NOT_IMPLEMENTED - immediate=true");
    within(5, async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn publish_to_missing_exchange_closes_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let exchange = unique("missing-x");
    publish(&ch, &exchange, "key", b"x", BasicProperties::default()).await;
    let err = next_error(&mut events).await;
    assert_exact_error(
        &err,
        404,
        &format!("NOT_FOUND - no exchange '{exchange}' in vhost '/'"),
    );
    // A channel error: the connection carries on.
    let ch2 = conn.create_channel().await.unwrap();
    let queue = temp_queue(&ch2).await;
    publish(&ch2, "", &queue, b"still works", BasicProperties::default()).await;
    let got = within(
        5,
        ch2.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(got.delivery.data, b"still works");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- raw-client checks of the frames on the wire ----

fn queue_declare_exclusive() -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(raw::short_str(""));
    args.push(0b0000_0100); // exclusive
    args.extend_from_slice(&0u32.to_be_bytes());
    raw::method(1, 50, 10, &args)
}

fn consume_args(queue: &str, tag: &str, flags: u8) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(raw::short_str(queue));
    args.extend(raw::short_str(tag));
    args.push(flags);
    args.extend_from_slice(&0u32.to_be_bytes());
    args
}

/// The queue name out of a queue.declare-ok.
fn declared_name(f: &RawFrame) -> String {
    let p = &f.payload[4..];
    String::from_utf8(p[1..1 + p[0] as usize].to_vec()).unwrap()
}

/// A raw connection with channel 1 open and a server-named exclusive queue.
async fn raw_with_queue(addr: std::net::SocketAddr) -> (RawConn, String, u32) {
    let mut c = RawConn::connect(addr).await;
    c.send(b"AMQP\x00\x00\x09\x01").await;
    c.expect_method(10, 10).await;
    c.send(&raw::start_ok(b"\0guest\0guest")).await;
    let tune = c.expect_method(10, 30).await;
    let p = &tune.payload[4..];
    let frame_max = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
    let mut args = p[0..2].to_vec();
    args.extend_from_slice(&frame_max.to_be_bytes());
    args.extend_from_slice(&0u16.to_be_bytes());
    c.send(&raw::method(0, 10, 31, &args)).await;
    let mut open = raw::short_str("/");
    open.extend(raw::short_str(""));
    open.push(0);
    c.send(&raw::method(0, 10, 40, &open)).await;
    c.expect_method(10, 41).await;
    c.open_channel(1).await;
    c.send(&queue_declare_exclusive()).await;
    let ok = c.expect_method(50, 11).await;
    (c, declared_name(&ok), frame_max)
}

/// Publish `body` on channel 1, split into body frames of at most `chunk` bytes.
async fn raw_publish(c: &mut RawConn, queue: &str, body: &[u8], chunk: usize) {
    let mut bytes = raw::method(1, 60, 40, &raw::publish_args("", queue, 0));
    bytes.extend(raw::content_header(1, body.len() as u64, &[0, 0]));
    for part in body.chunks(chunk) {
        bytes.extend(raw::frame(3, 1, part));
    }
    c.send(&bytes).await;
}

#[tokio::test]
async fn zero_byte_body_is_delivered_as_header_frame_without_body_frame() {
    let broker = TestBroker::start().await;
    let (mut c, queue, _) = raw_with_queue(broker.addr).await;
    raw_publish(&mut c, &queue, b"", 1).await;
    c.send(&raw::method(1, 60, 20, &consume_args(&queue, "ctag", 0b10)))
        .await;
    c.expect_method(60, 21).await;
    c.expect_method(60, 60).await;
    let header = c
        .recv(Duration::from_secs(5))
        .await
        .expect("content header");
    assert_eq!(header.kind, 2);
    assert_eq!(header.channel, 1);
    assert_eq!(&header.payload[0..2], &60u16.to_be_bytes());
    assert_eq!(&header.payload[4..12], &0u64.to_be_bytes());
    // Nothing else follows: no empty body frame.
    let next = c.recv(Duration::from_millis(200)).await;
    assert_eq!(next, None, "unexpected frame after a zero-size header");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn large_body_is_delivered_in_frame_max_minus_8_chunks() {
    let broker = TestBroker::start().await;
    let (mut c, queue, frame_max) = raw_with_queue(broker.addr).await;
    let frame_max = frame_max as usize;
    let body = pattern(frame_max * 3 + 17);
    // Publish in small, uneven chunks: the server must reassemble them.
    raw_publish(&mut c, &queue, &body, 10_007).await;
    c.send(&raw::method(1, 60, 20, &consume_args(&queue, "ctag", 0b10)))
        .await;
    c.expect_method(60, 21).await;
    c.expect_method(60, 60).await;
    let header = c
        .recv(Duration::from_secs(5))
        .await
        .expect("content header");
    assert_eq!(header.kind, 2);
    assert_eq!(&header.payload[4..12], &(body.len() as u64).to_be_bytes());
    let mut sizes = Vec::new();
    let mut received = Vec::new();
    while received.len() < body.len() {
        let f = c.recv(Duration::from_secs(5)).await.expect("body frame");
        assert_eq!(f.kind, 3, "expected a body frame, got {f:?}");
        assert_eq!(f.channel, 1);
        sizes.push(f.payload.len());
        received.extend_from_slice(&f.payload);
    }
    assert_eq!(
        sizes,
        vec![frame_max - 8, frame_max - 8, frame_max - 8, 41],
        "body frames should be as large as frame-max allows"
    );
    assert!(received == body);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn immediate_publish_close_names_basic_publish() {
    let broker = TestBroker::start().await;
    let (mut c, queue, _) = raw_with_queue(broker.addr).await;
    let mut bytes = raw::method(1, 60, 40, &raw::publish_args("", &queue, 0b10));
    bytes.extend(raw::content_header(1, 1, &[0, 0]));
    bytes.extend(raw::frame(3, 1, b"x"));
    c.send(&bytes).await;
    let close = c.expect_close().await;
    assert_eq!(
        close,
        (
            0,
            540,
            "NOT_IMPLEMENTED - immediate=true".to_string(),
            60,
            40
        )
    );
    drop(c);
    broker.stop().await;
}
