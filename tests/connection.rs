//! The connection lifecycle on the wire: protocol header, connection.start,
//! authentication, tuning, heartbeats, the handshake timeout, vhosts,
//! closing (from either side and on broker shutdown), and the channel basics
//! a connection enforces (ids, open/close, flow).
//!
//! Most tests use the raw client so they can check exact frames; the lapin
//! ones check what a real client library sees.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{KillOnDrop, collect_lines};
use common::raw::*;
use common::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::time::Instant;

const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
const SHUTDOWN_TEXT: &str =
    "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'";

/// True when the suite runs against an outside broker (the tests that start
/// a Warren of their own then have nothing to check).
fn external() -> bool {
    std::env::var_os("WARREN_TEST_AMQP_URI").is_some()
}

// ---- frame builders -------------------------------------------------------

/// connection.start-ok with any mechanism, response and client capabilities.
fn start_ok_with(mechanism: &str, response: &[u8], capabilities: &[&str]) -> Vec<u8> {
    let mut caps = Vec::new();
    for cap in capabilities {
        caps.extend(short_str(cap));
        caps.extend_from_slice(b"t\x01");
    }
    let mut props = short_str("capabilities");
    props.push(b'F');
    props.extend(long_str(&caps));
    let mut args = long_str(&props);
    args.extend(short_str(mechanism));
    args.extend(long_str(response));
    args.extend(short_str("en_US"));
    method(0, 10, 11, &args)
}

fn tune_ok(channel_max: u16, frame_max: u32, heartbeat: u16) -> Vec<u8> {
    let mut args = channel_max.to_be_bytes().to_vec();
    args.extend_from_slice(&frame_max.to_be_bytes());
    args.extend_from_slice(&heartbeat.to_be_bytes());
    method(0, 10, 31, &args)
}

fn connection_open(vhost: &str) -> Vec<u8> {
    let mut args = short_str(vhost);
    args.extend(short_str(""));
    args.push(0);
    method(0, 10, 40, &args)
}

fn close_method(channel: u16, class: u16, code: u16, text: &str) -> Vec<u8> {
    let mut args = code.to_be_bytes().to_vec();
    args.extend(short_str(text));
    args.extend_from_slice(&[0, 0, 0, 0]);
    method(channel, class, if class == 10 { 50 } else { 40 }, &args)
}

fn connection_close_ok() -> Vec<u8> {
    method(0, 10, 51, &[])
}

fn heartbeat_frame() -> Vec<u8> {
    frame(8, 0, &[])
}

/// queue.declare with an empty argument table.
fn queue_declare(channel: u16, name: &str, flags: u8) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(short_str(name));
    args.push(flags);
    args.extend_from_slice(&[0, 0, 0, 0]);
    method(channel, 50, 10, &args)
}

// ---- raw client helpers ---------------------------------------------------

/// Protocol header and connection.start read; returns the start frame.
async fn connect_until_start(addr: std::net::SocketAddr) -> (RawConn, RawFrame) {
    let mut c = RawConn::connect(addr).await;
    c.send(PROTOCOL_HEADER).await;
    let start = expect_method(&mut c, 10, 10).await;
    (c, start)
}

/// Up to (and including) connection.tune, logging in as guest with PLAIN.
async fn connect_until_tune(addr: std::net::SocketAddr) -> (RawConn, RawFrame) {
    let (mut c, _) = connect_until_start(addr).await;
    c.send(&start_ok(b"\0guest\0guest")).await;
    let tune = expect_method(&mut c, 10, 30).await;
    (c, tune)
}

/// A full handshake with these tune-ok values.
async fn handshake_tuned(
    addr: std::net::SocketAddr,
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
) -> RawConn {
    let (mut c, _) = connect_until_tune(addr).await;
    // One write: a second small write would wait for a delayed ACK (Nagle).
    let mut out = tune_ok(channel_max, frame_max, heartbeat);
    out.extend(connection_open("/"));
    c.send(&out).await;
    expect_method(&mut c, 10, 41).await;
    c
}

// The raw client's reading futures carry a 64 KiB buffer. In debug builds
// every call site keeps its own stack slot for such a future, and tokio::test
// polls the test future on the test thread's stack, so tests with many raw
// calls overflow it. These wrappers build each future in their own frame and
// hand back a small box.

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A full handshake with the offered limits and no heartbeats (what
/// `RawConn::handshake` does, in fewer writes and smaller futures).
fn handshake(addr: std::net::SocketAddr) -> Boxed<'static, RawConn> {
    Box::pin(handshake_tuned(addr, 2047, 131_072, 0))
}

fn open_channel(c: &mut RawConn, id: u16) -> Boxed<'_, ()> {
    Box::pin(c.open_channel(id))
}

fn expect_method(c: &mut RawConn, class: u16, method_id: u16) -> Boxed<'_, RawFrame> {
    Box::pin(c.expect_method(class, method_id))
}

fn recv(c: &mut RawConn, timeout: Duration) -> Boxed<'_, Option<RawFrame>> {
    Box::pin(c.recv(timeout))
}

fn expect_close(c: &mut RawConn) -> Boxed<'_, (u16, u16, String, u16, u16)> {
    Box::pin(c.expect_close())
}

/// Frames that arrive until the peer closes the socket or `limit` passes;
/// the flag says whether it closed.
async fn frames_until_closed(c: &mut RawConn, limit: Duration) -> (Vec<RawFrame>, bool) {
    let deadline = Instant::now() + limit;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv(c, left).await {
            Some(f) => frames.push(f),
            None => {
                let closed = c.closed_within(Duration::from_millis(50)).await;
                return (frames, closed);
            }
        }
    }
}

/// The next connection.close must be exactly this; answer close-ok and
/// expect the socket to be closed.
async fn expect_connection_close(c: &mut RawConn, code: u16, text: &str, class: u16, method: u16) {
    let (channel, got_code, got_text, got_class, got_method) = within(10, expect_close(c)).await;
    assert_eq!(
        (channel, got_code, got_text.as_str(), got_class, got_method),
        (0, code, text, class, method)
    );
    c.send(&connection_close_ok()).await;
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "socket still open after close-ok"
    );
}

fn is_heartbeat(f: &RawFrame) -> bool {
    f.kind == 8 && f.channel == 0 && f.payload.is_empty()
}

// ---- a minimal field-table reader for connection.start --------------------

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Str(String),
    Bool(bool),
    Table(Vec<(String, Field)>),
}

fn read_u32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn parse_table(mut b: &[u8]) -> Vec<(String, Field)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key_len = b[0] as usize;
        let key = String::from_utf8(b[1..1 + key_len].to_vec()).unwrap();
        let tag = b[1 + key_len];
        b = &b[2 + key_len..];
        let value = match tag {
            b'S' => {
                let n = read_u32(b);
                let s = String::from_utf8(b[4..4 + n].to_vec()).unwrap();
                b = &b[4 + n..];
                Field::Str(s)
            }
            b't' => {
                let v = b[0] != 0;
                b = &b[1..];
                Field::Bool(v)
            }
            b'F' => {
                let n = read_u32(b);
                let t = parse_table(&b[4..4 + n]);
                b = &b[4 + n..];
                Field::Table(t)
            }
            other => panic!("unexpected field type {:?} for {key}", other as char),
        };
        out.push((key, value));
    }
    out
}

fn lookup<'a>(table: &'a [(String, Field)], key: &str) -> Option<&'a Field> {
    table.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// (version major, minor, server properties, mechanisms, locales) of connection.start.
fn parse_start(start: &RawFrame) -> (u8, u8, Vec<(String, Field)>, String, String) {
    let p = &start.payload[4..];
    let (major, minor) = (p[0], p[1]);
    let props_len = read_u32(&p[2..]);
    let props = parse_table(&p[6..6 + props_len]);
    let rest = &p[6 + props_len..];
    let mech_len = read_u32(rest);
    let mechanisms = String::from_utf8(rest[4..4 + mech_len].to_vec()).unwrap();
    let rest = &rest[4 + mech_len..];
    let loc_len = read_u32(rest);
    let locales = String::from_utf8(rest[4..4 + loc_len].to_vec()).unwrap();
    assert_eq!(
        rest.len(),
        4 + loc_len,
        "trailing bytes in connection.start"
    );
    (major, minor, props, mechanisms, locales)
}

// ---- protocol header -------------------------------------------------------

#[tokio::test]
async fn bad_protocol_headers_get_the_0_9_1_header_back_and_the_socket_closed() {
    let broker = TestBroker::start().await;
    let headers: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"AMQP\x00\x00\x09\x02",
        b"AMQP\x00\x00\x08\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
    ];
    for header in headers {
        let mut c = RawConn::connect(broker.addr).await;
        c.send(header).await;
        let answer = c.read_raw(Duration::from_secs(5)).await;
        assert_eq!(answer, PROTOCOL_HEADER, "answer to {header:?}");
        assert!(
            c.closed_within(Duration::from_millis(500)).await,
            "socket still open after {header:?}"
        );
    }
    broker.stop().await;
}

// ---- connection.start ------------------------------------------------------

#[tokio::test]
async fn connection_start_announces_0_9_with_server_properties_mechanisms_and_locales() {
    let broker = TestBroker::start().await;
    let (c, start) = connect_until_start(broker.addr).await;
    assert_eq!(start.channel, 0);
    let (major, minor, props, mechanisms, locales) = parse_start(&start);
    assert_eq!((major, minor), (0, 9));
    for key in ["product", "version", "platform", "copyright", "information"] {
        match lookup(&props, key) {
            Some(Field::Str(s)) => assert!(!s.is_empty(), "{key} is empty"),
            other => panic!("server property {key} is {other:?}"),
        }
    }
    // Clients pick RabbitMQ's semantics by product and version.
    assert!(matches!(lookup(&props, "product"), Some(Field::Str(p)) if p == "RabbitMQ"));
    assert!(matches!(lookup(&props, "version"), Some(Field::Str(v)) if v.starts_with("3.")));
    let Some(Field::Table(caps)) = lookup(&props, "capabilities") else {
        panic!("no capabilities table in {props:?}");
    };
    let expected = [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "consumer_priorities",
        "direct_reply_to",
    ];
    for cap in expected {
        assert_eq!(
            lookup(caps, cap),
            Some(&Field::Bool(true)),
            "capability {cap}"
        );
    }
    if !broker.is_external() {
        // Exactly RabbitMQ 3.10's set: every capability that works, no more.
        let mut names: Vec<&str> = caps.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
    }
    // RabbitMQ lists its mechanisms in its registry's order, which moves
    // with the plugins enabled ("PLAIN AMQPLAIN" bare, "AMQPLAIN PLAIN" with
    // the management plugin): the set is what a client relies on.
    let mut offered: Vec<&str> = mechanisms.split(' ').collect();
    offered.sort_unstable();
    assert_eq!(offered, ["AMQPLAIN", "PLAIN"]);
    assert_eq!(locales, "en_US");
    drop(c);
    broker.stop().await;
}

// ---- authentication --------------------------------------------------------

#[tokio::test]
async fn plain_login_as_default_guest_user_is_tuned_and_opened() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_start(broker.addr).await;
    c.send(&start_ok_with("PLAIN", b"\0guest\0guest", &[]))
        .await;
    let tune = expect_method(&mut c, 10, 30).await;
    assert_eq!(tune.channel, 0);
    c.send(&tune_ok(2047, 131_072, 0)).await;
    c.send(&connection_open("/")).await;
    let open_ok = expect_method(&mut c, 10, 41).await;
    // open-ok carries the reserved known-hosts short string, empty.
    assert_eq!(open_ok.payload, vec![0, 10, 0, 41, 0]);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn amqplain_login_with_login_and_password_table_is_accepted() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_start(broker.addr).await;
    // AMQPLAIN: a field table without its length prefix.
    let mut response = short_str("LOGIN");
    response.push(b'S');
    response.extend(long_str(b"guest"));
    response.extend(short_str("PASSWORD"));
    response.push(b'S');
    response.extend(long_str(b"guest"));
    c.send(&start_ok_with("AMQPLAIN", &response, &[])).await;
    expect_method(&mut c, 10, 30).await;
    c.send(&tune_ok(2047, 131_072, 0)).await;
    c.send(&connection_open("/")).await;
    expect_method(&mut c, 10, 41).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_access_refused_when_client_asked_for_it() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_start(broker.addr).await;
    c.send(&start_ok_with(
        "PLAIN",
        b"\0guest\0wrong",
        &["authentication_failure_close"],
    ))
    .await;
    expect_connection_close(
        &mut c,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
        0,
        0,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn wrong_amqplain_password_is_refused_naming_amqplain() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_start(broker.addr).await;
    let mut response = short_str("LOGIN");
    response.push(b'S');
    response.extend(long_str(b"guest"));
    response.extend(short_str("PASSWORD"));
    response.push(b'S');
    response.extend(long_str(b"wrong"));
    c.send(&start_ok_with(
        "AMQPLAIN",
        &response,
        &["authentication_failure_close"],
    ))
    .await;
    expect_connection_close(
        &mut c,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For details see the broker logfile.",
        0,
        0,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn wrong_password_without_auth_failure_close_capability_drops_the_socket_after_a_pause() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_start(broker.addr).await;
    c.send(&start_ok_with("PLAIN", b"\0guest\0wrong", &[]))
        .await;
    // Like RabbitMQ: no frame, and the socket dropped after 3 s (a relief
    // from login storms) unless the client closes it first.
    let started = Instant::now();
    let answer = c.read_raw(Duration::from_secs(8)).await;
    let elapsed = started.elapsed();
    assert_eq!(answer, b"", "no frame may be sent");
    assert!(c.closed_within(Duration::from_millis(200)).await);
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_secs(6),
        "socket dropped after {elapsed:?}"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn unknown_auth_mechanism_is_refused_with_command_invalid() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        // RabbitMQ 3.10 waits 3 s and drops the socket without a close frame.
        broker.stop().await;
        return;
    }
    let (mut c, _) = connect_until_start(broker.addr).await;
    c.send(&start_ok_with(
        "FOO",
        b"x",
        &["authentication_failure_close"],
    ))
    .await;
    expect_connection_close(
        &mut c,
        503,
        "COMMAND_INVALID - unknown authentication mechanism 'FOO'",
        10,
        11,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn lapin_connect_with_wrong_password_fails_with_access_refused() {
    let broker = TestBroker::start().await;
    let uri = broker.uri().replacen("guest:guest@", "guest:wrong@", 1);
    assert_ne!(uri, broker.uri());
    let result = within(
        10,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await;
    assert_amqp_error(
        result.map(|_| ()),
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
    );
    broker.stop().await;
}

// ---- tuning ----------------------------------------------------------------

#[tokio::test]
async fn tune_offers_channel_max_2047_frame_max_131072_heartbeat_60() {
    let broker = TestBroker::start().await;
    let (c, tune) = connect_until_tune(broker.addr).await;
    assert_eq!(tune.channel, 0);
    let mut expected = vec![0, 10, 0, 30];
    expected.extend_from_slice(&2047u16.to_be_bytes());
    expected.extend_from_slice(&131_072u32.to_be_bytes());
    expected.extend_from_slice(&60u16.to_be_bytes());
    assert_eq!(tune.payload, expected);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn lapin_negotiates_the_offered_limits() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let config = conn.configuration();
    assert_eq!(
        (config.channel_max(), config.frame_max(), config.heartbeat()),
        (2047, 131_072, 60)
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn bodies_are_split_into_frames_of_the_negotiated_frame_max() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2047, 4096, 0).await;
    open_channel(&mut c, 1).await;
    c.send(&queue_declare(1, "", 4)).await;
    let declare_ok = expect_method(&mut c, 50, 11).await;
    let name_len = declare_ok.payload[4] as usize;
    let queue = String::from_utf8(declare_ok.payload[5..5 + name_len].to_vec()).unwrap();

    // Publish 10000 bytes, itself cut to fit the 4096-byte frames.
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut out = method(1, 60, 40, &publish_args("", &queue, 0));
    out.extend(content_header(1, body.len() as u64, &[0, 0]));
    for chunk in body.chunks(4088) {
        out.extend(frame(3, 1, chunk));
    }
    c.send(&out).await;

    let mut get = vec![0, 0];
    get.extend(short_str(&queue));
    get.push(1); // no-ack
    c.send(&method(1, 60, 70, &get)).await;
    expect_method(&mut c, 60, 71).await;
    let header = recv(&mut c, Duration::from_secs(5))
        .await
        .expect("content header");
    assert_eq!(header.kind, 2);
    assert_eq!(&header.payload[4..12], &10_000u64.to_be_bytes());
    let mut sizes = Vec::new();
    let mut received = Vec::new();
    while received.len() < body.len() {
        let f = recv(&mut c, Duration::from_secs(5))
            .await
            .expect("body frame");
        assert_eq!((f.kind, f.channel), (3, 1));
        sizes.push(f.payload.len());
        received.extend_from_slice(&f.payload);
    }
    assert_eq!(sizes, vec![4088, 4088, 1824]);
    assert_eq!(received, body);
    drop(c);
    broker.stop().await;
}

/// Send tune-ok with these values; Warren only (RabbitMQ 3.10.8 drops the
/// socket after 3 s without a close frame).
async fn assert_tune_ok_refused(channel_max: u16, frame_max: u32, text: &str) {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return;
    }
    let (mut c, _) = connect_until_tune(broker.addr).await;
    c.send(&tune_ok(channel_max, frame_max, 0)).await;
    expect_connection_close(&mut c, 530, text, 10, 30).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn tune_ok_frame_max_below_4096_is_refused_with_not_allowed() {
    assert_tune_ok_refused(
        2047,
        1000,
        "NOT_ALLOWED - negotiated frame_max = 1000 is lower than the minimum allowed value (4096)",
    )
    .await;
}

#[tokio::test]
async fn tune_ok_frame_max_above_the_offer_is_refused_with_not_allowed() {
    assert_tune_ok_refused(
        2047,
        131_073,
        "NOT_ALLOWED - negotiated frame_max = 131073 is higher than the maximum allowed value (131072)",
    )
    .await;
}

#[tokio::test]
async fn tune_ok_frame_max_zero_is_refused_as_above_the_maximum() {
    assert_tune_ok_refused(
        2047,
        0,
        "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)",
    )
    .await;
}

#[tokio::test]
async fn tune_ok_channel_max_above_2047_is_refused_with_not_allowed() {
    assert_tune_ok_refused(
        2048,
        131_072,
        "NOT_ALLOWED - negotiated channel_max = 2048 is higher than the maximum allowed value (2047)",
    )
    .await;
}

#[tokio::test]
async fn tune_ok_channel_max_zero_is_refused_as_no_limit() {
    assert_tune_ok_refused(
        0,
        131_072,
        "NOT_ALLOWED - negotiated channel_max = 0 (no limit) is higher than the maximum allowed value (2047)",
    )
    .await;
}

// ---- heartbeats ------------------------------------------------------------

#[tokio::test]
async fn server_sends_heartbeat_frames_while_idle() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2047, 131_072, 1).await;
    let mut frames = Vec::new();
    for _ in 0..5 {
        c.send(&heartbeat_frame()).await;
        let (mut got, closed) = frames_until_closed(&mut c, Duration::from_millis(500)).await;
        assert!(
            !closed,
            "connection closed although the client sent heartbeats"
        );
        frames.append(&mut got);
    }
    assert!(
        frames.iter().all(is_heartbeat),
        "only heartbeats expected: {frames:?}"
    );
    assert!(
        frames.len() >= 2,
        "expected at least 2 heartbeats in 2.5 s, got {}",
        frames.len()
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn silent_client_is_disconnected_after_two_missed_heartbeats() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2047, 131_072, 1).await;
    let (early, closed) = frames_until_closed(&mut c, Duration::from_secs(1)).await;
    assert!(!closed, "disconnected within 1 s of the last input");
    let (late, closed) = frames_until_closed(&mut c, Duration::from_secs(3)).await;
    assert!(closed, "still connected 4 s after the last input");
    // A heartbeat timeout drops the socket without a close frame.
    assert!(
        early.iter().chain(late.iter()).all(is_heartbeat),
        "only heartbeats expected: {early:?} {late:?}"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn client_that_keeps_sending_heartbeats_stays_connected() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2047, 131_072, 1).await;
    for _ in 0..7 {
        c.send(&heartbeat_frame()).await;
        let (frames, closed) = frames_until_closed(&mut c, Duration::from_millis(500)).await;
        assert!(!closed, "disconnected although the client sent heartbeats");
        assert!(frames.iter().all(is_heartbeat), "unexpected {frames:?}");
    }
    // 3.5 s later, well past two intervals, the connection still works.
    open_channel(&mut c, 1).await;
    drop(c);
    broker.stop().await;
}

// ---- handshake timeout -----------------------------------------------------

#[tokio::test]
async fn default_handshake_timeout_is_ten_seconds() {
    let config = warren::Config::default();
    assert_eq!(config.handshake_timeout_secs, 10);
    assert_eq!(config.handshake_timeout(), Duration::from_secs(10));
}

#[tokio::test]
async fn socket_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    let broker = TestBroker::start_with(|c| c.handshake_timeout_secs = 1).await;
    if broker.is_external() {
        // Needs a broker configured with a 1 s handshake timeout.
        broker.stop().await;
        return;
    }
    let started = Instant::now();
    let mut c = RawConn::connect(broker.addr).await;
    let answer = c.read_raw(Duration::from_secs(4)).await;
    let elapsed = started.elapsed();
    assert_eq!(answer, b"");
    assert!(c.closed_within(Duration::from_millis(100)).await);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn socket_that_sends_only_the_protocol_header_is_closed_after_the_handshake_timeout() {
    let broker = TestBroker::start_with(|c| c.handshake_timeout_secs = 1).await;
    if broker.is_external() {
        // Needs a broker configured with a 1 s handshake timeout.
        broker.stop().await;
        return;
    }
    let started = Instant::now();
    let (mut c, _start) = connect_until_start(broker.addr).await;
    let (frames, closed) = frames_until_closed(&mut c, Duration::from_secs(4)).await;
    let elapsed = started.elapsed();
    assert!(closed);
    assert!(
        frames.is_empty(),
        "nothing after connection.start: {frames:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
    drop(c);
    broker.stop().await;
}

// ---- virtual hosts ---------------------------------------------------------

#[tokio::test]
async fn opening_an_unknown_vhost_is_refused_with_not_allowed() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_tune(broker.addr).await;
    c.send(&tune_ok(2047, 131_072, 0)).await;
    c.send(&connection_open("nope")).await;
    expect_connection_close(&mut c, 530, "NOT_ALLOWED - vhost nope not found", 10, 40).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn lapin_connect_to_unknown_vhost_fails_with_not_allowed() {
    let broker = TestBroker::start().await;
    let uri = broker
        .uri()
        .strip_suffix("/%2f")
        .map(|base| format!("{base}/nope"))
        .expect("uri ends in /%2f");
    let result = within(
        10,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await;
    assert_amqp_error(
        result.map(|_| ()),
        530,
        "NOT_ALLOWED - vhost nope not found",
    );
    broker.stop().await;
}

// ---- closing ---------------------------------------------------------------

#[tokio::test]
async fn client_connection_close_is_answered_with_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    let f = within(10, recv(&mut c, Duration::from_secs(5)))
        .await
        .expect("close-ok");
    assert_eq!((f.kind, f.channel, f.payload), (1, 0, vec![0, 10, 0, 51]));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn after_close_ok_the_socket_stays_open_for_the_client_to_close() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    expect_method(&mut c, 10, 51).await;
    // Closing the socket is the client's job: a client still reading the
    // close-ok must not see the connection reset under it.
    assert!(
        !c.closed_within(Duration::from_secs(1)).await,
        "the broker closed the socket right after close-ok"
    );
    // What the client sends now is read and dropped, unanswered...
    let mut late = method(1, 20, 10, &short_str(""));
    late.extend(method(2, 20, 10, &short_str("")));
    late.extend(queue_declare(2, "", 0));
    late.extend(heartbeat_frame());
    c.send(&late).await;
    let (frames, closed) = frames_until_closed(&mut c, Duration::from_millis(500)).await;
    assert!(frames.is_empty(), "answered after close-ok: {frames:?}");
    assert!(!closed, "socket closed after input following close-ok");
    // ...but for a repeated connection.close, answered as RabbitMQ does.
    c.send(&close_method(0, 10, 200, "bye")).await;
    expect_method(&mut c, 10, 51).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn after_close_ok_the_broker_closes_the_socket_after_the_heartbeat_interval() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2047, 131_072, 1).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    expect_method(&mut c, 10, 51).await;
    // Without heartbeats the client gets 30 s; with them, one interval.
    let started = Instant::now();
    let (frames, closed) = frames_until_closed(&mut c, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();
    assert!(closed, "socket still open 6 s after close-ok");
    assert!(
        elapsed >= Duration::from_millis(500),
        "socket closed after {elapsed:?}"
    );
    assert!(
        frames.iter().all(is_heartbeat),
        "only heartbeats may follow close-ok: {frames:?}"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn exclusive_queues_are_gone_once_close_ok_arrives() {
    let broker = TestBroker::start().await;
    let queue = unique("closing-exclusive");
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&queue_declare(1, &queue, 4)).await;
    expect_method(&mut c, 50, 11).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    expect_method(&mut c, 10, 51).await;
    // The socket is still open, but the connection is over: its exclusive
    // queue is deleted and it is no longer counted.
    let (conn, ch) = broker.channel().await;
    let declare = declare_passive(&ch, &queue).await;
    assert_amqp_error(declare, 404, &format!("NOT_FOUND - no queue '{queue}'"));
    if let Some(server) = broker.server() {
        assert_eq!(
            server.broker().connection_count(),
            1,
            "only the lapin connection"
        );
    }
    assert!(!c.closed_within(Duration::from_millis(100)).await);
    conn.close(200, "bye".into()).await.unwrap();
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_closed_connection_the_client_keeps_open() {
    if external() {
        return;
    }
    let dir = temp_dir("shutdown-closed");
    let server = warren::Server::start(warren::Config::ephemeral(&dir))
        .await
        .unwrap();
    let mut c = handshake(server.local_addr()).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    expect_method(&mut c, 10, 51).await;
    let started = Instant::now();
    within(10, server.shutdown()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(c.closed_within(Duration::from_secs(2)).await);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connection_close_before_tune_ok_is_not_answered_and_the_socket_dropped() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_tune(broker.addr).await;
    c.send(&close_method(0, 10, 200, "bye")).await;
    // As in RabbitMQ: an unexpected method while tuning; no answer, and the
    // socket dropped after 3 s.
    let started = Instant::now();
    let (frames, closed) = frames_until_closed(&mut c, Duration::from_secs(8)).await;
    let elapsed = started.elapsed();
    assert!(frames.is_empty(), "answered: {frames:?}");
    assert!(closed, "socket still open");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_secs(6),
        "socket dropped after {elapsed:?}"
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn connection_close_while_opening_is_an_unexpected_method() {
    let broker = TestBroker::start().await;
    let (mut c, _) = connect_until_tune(broker.addr).await;
    let mut out = tune_ok(2047, 131_072, 0);
    out.extend(close_method(0, 10, 200, "bye"));
    c.send(&out).await;
    expect_connection_close(
        &mut c,
        504,
        "CHANNEL_ERROR - unexpected method in connection state opening",
        10,
        50,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn lapin_close_completes_and_leaves_the_connection_closed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    within(10, conn.close(200, "bye".into())).await.unwrap();
    assert!(!conn.status().connected());
    assert!(conn.create_channel().await.is_err());
    // The exclusive queue went with its connection.
    let (conn2, ch2) = broker.channel().await;
    let declare = declare_passive(&ch2, &queue).await;
    assert_amqp_error(declare, 404, &format!("NOT_FOUND - no queue '{queue}'"));
    conn2.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn broker_shutdown_closes_connections_with_connection_forced() {
    if external() {
        return;
    }
    let dir = temp_dir("shutdown");
    let server = warren::Server::start(warren::Config::ephemeral(&dir))
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut c = handshake(addr).await;
    open_channel(&mut c, 1).await;
    let stopping = tokio::spawn(server.shutdown());
    expect_connection_close(&mut c, 320, SHUTDOWN_TEXT, 0, 0).await;
    within(5, stopping).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still accepts after shutdown"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn broker_shutdown_also_ends_connections_still_in_the_handshake() {
    if external() {
        return;
    }
    let dir = temp_dir("shutdown-handshake");
    let server = warren::Server::start(warren::Config::ephemeral(&dir))
        .await
        .unwrap();
    let addr = server.local_addr();
    // One connection stops after connection.start, another is open.
    let (mut half, _start) = connect_until_start(addr).await;
    let mut open = handshake(addr).await;
    open_channel(&mut open, 1).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    expect_connection_close(&mut open, 320, SHUTDOWN_TEXT, 0, 0).await;
    assert!(
        half.closed_within(Duration::from_secs(3)).await,
        "a connection in the handshake was not dropped at shutdown"
    );
    within(5, stopping).await.unwrap();
    // Well inside the grace period that would otherwise abort it.
    assert!(started.elapsed() < Duration::from_secs(4));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn warren_binary_logs_its_address_and_exits_cleanly_on_sigterm() {
    if external() {
        return;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = temp_dir("binary");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&dir)
        .env("WARREN_LOG_LEVEL", "info")
        .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let mut child = KillOnDrop(child);
    let lines = Arc::new(Mutex::new(Vec::new()));
    collect_lines(child.0.stdout.take().unwrap(), lines.clone());
    collect_lines(child.0.stderr.take().unwrap(), lines.clone());
    let listening = format!("listening for AMQP on {addr}");

    let outcome = async {
        // Wait for the log line, then for the port (both bounded).
        for _ in 0..200 {
            if lines.lock().unwrap().iter().any(|l| l.contains(&listening)) {
                break;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!(
                    "warren exited early with {status}: {:?}",
                    lines.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut connectable = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                connectable = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(connectable, "warren never accepted on {addr}");
        let mut c = handshake(addr).await;
        open_channel(&mut c, 1).await;

        let pid = child.0.id();
        let kill = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(kill.success());
        expect_connection_close(&mut c, 320, SHUTDOWN_TEXT, 0, 0).await;
        let status = within(5, async {
            loop {
                if let Some(status) = child.0.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(status.code(), Some(0), "exit status {status}");
        let logged = lines.lock().unwrap().clone();
        let count = logged.iter().filter(|l| l.contains(&listening)).count();
        assert_eq!(count, 1, "log lines: {logged:?}");
    };
    let result = tokio::time::timeout(Duration::from_secs(30), outcome).await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    result.expect("timed out");
}

// ---- channels --------------------------------------------------------------

#[tokio::test]
async fn any_channel_id_may_be_opened_within_channel_max() {
    let broker = TestBroker::start().await;
    // channel_max bounds how many channels are open, not their ids.
    let mut c = handshake_tuned(broker.addr, 10, 131_072, 0).await;
    for id in [11, 2048, 65535] {
        open_channel(&mut c, id).await;
    }
    c.send(&queue_declare(65535, "", 4)).await;
    expect_method(&mut c, 50, 11).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn opening_more_channels_than_channel_max_is_refused_with_not_allowed() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 2, 131_072, 0).await;
    open_channel(&mut c, 65535).await;
    open_channel(&mut c, 1).await;
    c.send(&method(3, 20, 10, &short_str(""))).await;
    expect_connection_close(
        &mut c,
        530,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)",
        0,
        0,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_channel_counts_against_channel_max_until_its_close_ok() {
    let broker = TestBroker::start().await;
    let mut c = handshake_tuned(broker.addr, 1, 131_072, 0).await;
    open_channel(&mut c, 1).await;
    // Closed by the client: its place is free again.
    c.send(&close_method(1, 20, 200, "bye")).await;
    expect_method(&mut c, 20, 41).await;
    open_channel(&mut c, 7).await;
    // Closed by the broker (an error): it counts until the client's close-ok.
    c.send(&queue_declare(7, &unique("no-such-queue"), 1)).await;
    let (channel, code, ..) = within(10, expect_close(&mut c)).await;
    assert_eq!((channel, code), (7, 404));
    c.send(&method(8, 20, 10, &short_str(""))).await;
    expect_connection_close(
        &mut c,
        530,
        "NOT_ALLOWED - number of channels opened (1) has reached the negotiated channel_max (1)",
        0,
        0,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn second_channel_open_on_the_same_id_is_a_channel_error() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&method(1, 20, 10, &short_str(""))).await;
    expect_connection_close(
        &mut c,
        504,
        "CHANNEL_ERROR - second 'channel.open' seen",
        20,
        10,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn method_on_an_unopened_channel_is_a_channel_error_naming_the_method() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    c.send(&queue_declare(5, "q", 0)).await;
    expect_connection_close(
        &mut c,
        504,
        "CHANNEL_ERROR - expected 'channel.open'",
        50,
        10,
    )
    .await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn channel_flow_active_true_is_answered_with_flow_ok_active_true() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&method(1, 20, 20, &[1])).await;
    let ok = expect_method(&mut c, 20, 21).await;
    assert_eq!((ok.channel, ok.payload), (1, vec![0, 20, 0, 21, 1]));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn channel_flow_active_false_is_not_implemented() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&method(1, 20, 20, &[0])).await;
    expect_connection_close(&mut c, 540, "NOT_IMPLEMENTED - active=false", 20, 20).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn client_channel_close_is_answered_with_close_ok_and_the_id_can_be_reused() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    c.send(&close_method(1, 20, 200, "bye")).await;
    let ok = within(10, recv(&mut c, Duration::from_secs(5)))
        .await
        .expect("close-ok");
    assert_eq!(
        (ok.kind, ok.channel, ok.payload),
        (1, 1, vec![0, 20, 0, 41])
    );
    open_channel(&mut c, 1).await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn after_a_channel_error_close_ok_is_accepted_and_the_id_can_be_reopened() {
    let broker = TestBroker::start().await;
    let mut c = handshake(broker.addr).await;
    open_channel(&mut c, 1).await;
    let missing = unique("missing");
    c.send(&queue_declare(1, &missing, 1)).await; // passive
    let close = within(10, expect_close(&mut c)).await;
    assert_eq!(
        close,
        (
            1,
            404,
            format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
            50,
            10
        )
    );
    c.send(&method(1, 20, 41, &[])).await;
    open_channel(&mut c, 1).await;
    // The reopened channel works.
    c.send(&method(1, 20, 20, &[1])).await;
    let ok = expect_method(&mut c, 20, 21).await;
    assert_eq!(ok.channel, 1);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn lapin_round_trip_still_works_after_channel_close() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.close(200, "bye".into()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"after close",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let mut got = None;
    for _ in 0..50 {
        got = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.expect("message").delivery.data, b"after close");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
