//! Routing: direct, fanout, topic (RabbitMQ's full `*` / `#` semantics) and
//! headers (x-match all / any / all-with-x / any-with-x, value comparison
//! across field types) exchanges.
//!
//! Every row of the tables here was first checked against RabbitMQ 3.10.

mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

/// Upper bound for one whole test.
const LIMIT: u64 = 30;

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

async fn declare(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
}

async fn bind_args(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    bind_args(ch, queue, exchange, key, FieldTable::default())
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

async fn cleanup(conn: &Connection, names: &[&str]) {
    if let Ok(ch) = conn.create_channel().await {
        for name in names {
            let _ = ch
                .exchange_delete((*name).into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

// ---------------------------------------------------------------------------
// direct and fanout

#[tokio::test]
async fn direct_exchange_routes_on_exact_key_to_every_bound_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let q1 = temp_queue(&ch).await;
        let q2 = temp_queue(&ch).await;
        let q3 = temp_queue(&ch).await;
        bind(&ch, &q1, &x, "k").await;
        bind(&ch, &q2, &x, "k").await;
        bind(&ch, &q3, &x, "other").await;
        publish(&ch, &x, "k", "k").await;
        publish(&ch, &x, "K", "case differs").await;
        publish(&ch, &x, "k.x", "longer").await;
        publish(&ch, &x, "", "empty").await;
        publish(&ch, &x, "other", "other").await;
        assert_eq!(drain(&ch, &q1).await, vec!["k"]);
        assert_eq!(drain(&ch, &q2).await, vec!["k"]);
        assert_eq!(drain(&ch, &q3).await, vec!["other"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn direct_exchange_treats_wildcards_literally() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let star = temp_queue(&ch).await;
        let hash = temp_queue(&ch).await;
        bind(&ch, &star, &x, "a.*").await;
        bind(&ch, &hash, &x, "#").await;
        publish(&ch, &x, "a.b", "a.b").await;
        publish(&ch, &x, "a.*", "a.*").await;
        publish(&ch, &x, "anything", "anything").await;
        publish(&ch, &x, "#", "#").await;
        assert_eq!(drain(&ch, &star).await, vec!["a.*"]);
        assert_eq!(drain(&ch, &hash).await, vec!["#"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn direct_exchange_with_empty_binding_key_routes_only_empty_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Direct).await;
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, "").await;
        publish(&ch, &x, "", "empty").await;
        publish(&ch, &x, "k", "k").await;
        assert_eq!(drain(&ch, &q).await, vec!["empty"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn fanout_exchange_routes_every_message_to_every_queue_whatever_the_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Fanout).await;
        let q1 = temp_queue(&ch).await;
        let q2 = temp_queue(&ch).await;
        bind(&ch, &q1, &x, "").await;
        bind(&ch, &q2, &x, "some.key").await;
        // A second binding with another key does not duplicate.
        bind(&ch, &q2, &x, "another").await;
        publish(&ch, &x, "", "1").await;
        publish(&ch, &x, "zzz", "2").await;
        assert_eq!(drain(&ch, &q1).await, vec!["1", "2"]);
        assert_eq!(drain(&ch, &q2).await, vec!["1", "2"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn exchange_without_bindings_drops_messages_quietly() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("x");
        declare(&ch, &x, ExchangeKind::Topic).await;
        publish(&ch, &x, "a.b", "nowhere").await;
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .expect("channel still usable");
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// topic

/// (binding pattern, routing key, should match)
const TOPIC_CASES: &[(&str, &str, bool)] = &[
    ("a.b.c", "a.b.c", true),
    ("a.b.c", "a.b", false),
    ("a.b.c", "a.b.c.d", false),
    ("a.b", "a.B", false),
    ("a.*.c", "a.b.c", true),
    ("a.*.c", "a.c", false),
    ("a.*.c", "a.b.b.c", false),
    ("*", "a", true),
    ("*", "", false),
    ("*", "a.b", false),
    ("*", ".", false),
    ("#", "", true),
    ("#", "a", true),
    ("#", "a.b.c", true),
    ("#", ".", true),
    ("a.#", "a", true),
    ("a.#", "a.b", true),
    ("a.#", "a.b.c", true),
    ("a.#", "a.", true),
    ("a.#", "b.a", false),
    ("a.#", "ab", false),
    ("#.a", "a", true),
    ("#.a", "x.y.a", true),
    ("#.a", "a.x", false),
    ("a.#.b", "a.b", true),
    ("a.#.b", "a.x.b", true),
    ("a.#.b", "a.x.y.b", true),
    ("a.#.b", "a.x.y.c", false),
    ("a.#.b", "a.b.c", false),
    ("a.#.#.b", "a.b", true),
    ("#.#", "", true),
    ("#.#", "a", true),
    ("#.#", "a.b", true),
    ("#.b.#", "b", true),
    ("#.b.#", "a.b.c", true),
    ("#.b.#", "a.c", false),
    ("#.*", "a", true),
    ("#.*", "a.b.c", true),
    ("#.*", "", false),
    ("*.#", "a", true),
    ("*.#", "", false),
    ("*.#.*", "a", false),
    ("*.#.*", "a.b", true),
    ("*.#.*", "a.b.c.d", true),
    ("*.*", "a.b", true),
    ("*.*", "a.", true),
    ("*.*", ".", true),
    ("*.*", ".a", true),
    ("*.*", "a", false),
    ("*.*", "a.b.c", false),
    ("a.*", "a.", true),
    ("a.*", "a", false),
    ("*.a", ".a", true),
    ("a.", "a.", true),
    ("a.", "a", false),
    ("a..b", "a..b", true),
    ("a..b", "a.b", false),
    ("a.*.b", "a..b", true),
    ("a.#.b", "a..b", true),
    ("", "", true),
    ("", "a", false),
    ("", ".", false),
    ("a*.b", "a*.b", true),
    ("a*.b", "ab.b", false),
    ("a#", "a", false),
    ("a#", "a#", true),
    ("a.b.c.d.e.f.g.h.i.j", "a.b.c.d.e.f.g.h.i.j", true),
    ("#.j", "a.b.c.d.e.f.g.h.i.j", true),
    ("a.#.j", "a.b.c.d.e.f.g.h.i.j", true),
    ("*.*.*.*.*.*.*.*.*.*", "a.b.c.d.e.f.g.h.i.j", true),
    ("*.*.*.*.*.*.*.*.*.*", "a.b.c.d.e.f.g.h.i", false),
    ("#.#.#.#.#", "a.b.c.d.e.f.g.h.i.j", true),
    ("a.*.#.*.j", "a.b.j", false),
    ("a.*.#.*.j", "a.b.c.j", true),
];

#[tokio::test]
async fn topic_exchange_matches_like_rabbitmq() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("topic");
        declare(&ch, &x, ExchangeKind::Topic).await;
        // One queue per row, all on one exchange.
        let mut queues = Vec::new();
        for (pattern, _, _) in TOPIC_CASES {
            let q = temp_queue(&ch).await;
            bind(&ch, &q, &x, pattern).await;
            queues.push(q);
        }
        let mut keys: Vec<&str> = TOPIC_CASES.iter().map(|(_, k, _)| *k).collect();
        keys.sort();
        keys.dedup();
        for key in &keys {
            publish(&ch, &x, key, key).await;
        }
        let mut wrong = Vec::new();
        for ((pattern, key, expected), q) in TOPIC_CASES.iter().zip(&queues) {
            let got = drain(&ch, q).await;
            let matched = got.iter().any(|k| k == key);
            if matched != *expected {
                wrong.push(format!(
                    "pattern {pattern:?} key {key:?}: expected match={expected}, got {matched}"
                ));
            }
            // Every message that reached the queue was published once at most.
            let mut dedup = got.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(
                dedup.len(),
                got.len(),
                "duplicates for {pattern:?}: {got:?}"
            );
        }
        assert!(wrong.is_empty(), "topic mismatches:\n{}", wrong.join("\n"));
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn topic_queue_matched_by_several_bindings_gets_one_copy() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("topic");
        declare(&ch, &x, ExchangeKind::Topic).await;
        let q = temp_queue(&ch).await;
        for pattern in ["a.b", "a.*", "#", "*.b", "a.#", "#.b"] {
            bind(&ch, &q, &x, pattern).await;
        }
        publish(&ch, &x, "a.b", "once").await;
        assert_eq!(drain(&ch, &q).await, vec!["once"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn topic_unbind_removes_only_that_pattern() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("topic");
        declare(&ch, &x, ExchangeKind::Topic).await;
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, "a.*").await;
        bind(&ch, &q, &x, "#.c").await;
        ch.queue_unbind(
            q.as_str().into(),
            x.as_str().into(),
            "a.*".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        publish(&ch, &x, "a.b", "a.b").await;
        publish(&ch, &x, "a.c", "a.c").await;
        assert_eq!(drain(&ch, &q).await, vec!["a.c"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn topic_exchange_routes_to_every_matching_queue() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("topic");
        declare(&ch, &x, ExchangeKind::Topic).await;
        let q1 = temp_queue(&ch).await;
        let q2 = temp_queue(&ch).await;
        let q3 = temp_queue(&ch).await;
        bind(&ch, &q1, &x, "stock.*.nyse").await;
        bind(&ch, &q2, &x, "stock.#").await;
        bind(&ch, &q3, &x, "*.*.lse").await;
        publish(&ch, &x, "stock.ibm.nyse", "1").await;
        publish(&ch, &x, "stock.bp.lse", "2").await;
        publish(&ch, &x, "bond.x.lse", "3").await;
        assert_eq!(drain(&ch, &q1).await, vec!["1"]);
        assert_eq!(drain(&ch, &q2).await, vec!["1", "2"]);
        assert_eq!(drain(&ch, &q3).await, vec!["2", "3"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// headers

fn nested() -> AMQPValue {
    AMQPValue::FieldTable(table(&[("k", s("v")), ("n", AMQPValue::LongInt(1))]))
}

fn array() -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(vec![
        AMQPValue::LongInt(1),
        s("two"),
        AMQPValue::Boolean(true),
    ]))
}

/// One row: a binding's arguments, a message's headers (None: no headers
/// property at all), whether the message should be routed.
struct HeadersCase {
    name: &'static str,
    binding: Vec<(&'static str, AMQPValue)>,
    headers: Option<Vec<(&'static str, AMQPValue)>>,
    matches: bool,
}

fn headers_cases() -> Vec<HeadersCase> {
    use AMQPValue::*;
    let all = || ("x-match", s("all"));
    let any = || ("x-match", s("any"));
    let all_x = || ("x-match", s("all-with-x"));
    let any_x = || ("x-match", s("any-with-x"));
    let case = |name, binding, headers: Option<Vec<_>>, matches| HeadersCase {
        name,
        binding,
        headers,
        matches,
    };
    vec![
        // x-match all
        case(
            "all: every key equal",
            vec![all(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(1)), ("b", s("x"))]),
            true,
        ),
        case(
            "all: extra headers are fine",
            vec![all(), ("a", LongInt(1))],
            Some(vec![("a", LongInt(1)), ("z", Boolean(false))]),
            true,
        ),
        case(
            "all: one key missing",
            vec![all(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(1))]),
            false,
        ),
        case(
            "all: one value differs",
            vec![all(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(1)), ("b", s("y"))]),
            false,
        ),
        case(
            "all: no headers property",
            vec![all(), ("a", LongInt(1))],
            None,
            false,
        ),
        // default is all
        case(
            "default all: every key",
            vec![("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(1)), ("b", s("x"))]),
            true,
        ),
        case(
            "default all: one key missing",
            vec![("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("b", s("x"))]),
            false,
        ),
        // only x-match
        case(
            "only x-match all: matches empty headers",
            vec![all()],
            Some(vec![]),
            true,
        ),
        case(
            "only x-match all: matches no headers",
            vec![all()],
            None,
            true,
        ),
        case(
            "only x-match all: matches anything",
            vec![all()],
            Some(vec![("q", LongInt(7))]),
            true,
        ),
        case(
            "no arguments at all: matches anything",
            vec![],
            Some(vec![("q", LongInt(7))]),
            true,
        ),
        case(
            "only x-match any: matches nothing",
            vec![any()],
            Some(vec![("q", LongInt(7))]),
            false,
        ),
        // x-match any
        case(
            "any: one of two keys equal",
            vec![any(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(1)), ("b", s("nope"))]),
            true,
        ),
        case(
            "any: only one key present",
            vec![any(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("b", s("x"))]),
            true,
        ),
        case(
            "any: no value equal",
            vec![any(), ("a", LongInt(1)), ("b", s("x"))],
            Some(vec![("a", LongInt(2)), ("b", s("y"))]),
            false,
        ),
        case(
            "any: no headers property",
            vec![any(), ("a", LongInt(1))],
            None,
            false,
        ),
        // x- keys
        case(
            "all ignores x- keys of the binding",
            vec![all(), ("x-foo", LongInt(1)), ("a", LongInt(1))],
            Some(vec![("a", LongInt(1))]),
            true,
        ),
        case(
            "all-with-x compares x- keys: missing",
            vec![all_x(), ("x-foo", LongInt(1)), ("a", LongInt(1))],
            Some(vec![("a", LongInt(1))]),
            false,
        ),
        case(
            "all-with-x compares x- keys: present",
            vec![all_x(), ("x-foo", LongInt(1)), ("a", LongInt(1))],
            Some(vec![("a", LongInt(1)), ("x-foo", LongInt(1))]),
            true,
        ),
        case(
            "any ignores x- keys of the binding",
            vec![any(), ("x-foo", LongInt(1))],
            Some(vec![("x-foo", LongInt(1))]),
            false,
        ),
        case(
            "any-with-x matches on an x- key",
            vec![any_x(), ("x-foo", LongInt(1)), ("a", LongInt(1))],
            Some(vec![("x-foo", LongInt(1))]),
            true,
        ),
        case(
            "any-with-x: nothing equal",
            vec![any_x(), ("x-foo", LongInt(1))],
            Some(vec![("x-foo", LongInt(2))]),
            false,
        ),
        case(
            "x-match header in message is just a header",
            vec![all(), ("a", LongInt(1))],
            Some(vec![("a", LongInt(1)), ("x-match", s("any"))]),
            true,
        ),
        // integer widths
        case(
            "i8 binding equals i64 header",
            vec![all(), ("a", ShortShortInt(5))],
            Some(vec![("a", LongLongInt(5))]),
            true,
        ),
        case(
            "u16 binding equals i32 header",
            vec![all(), ("a", ShortUInt(300))],
            Some(vec![("a", LongInt(300))]),
            true,
        ),
        case(
            "u32 binding equals u8 header",
            vec![all(), ("a", LongUInt(7))],
            Some(vec![("a", ShortShortUInt(7))]),
            true,
        ),
        case(
            "i16 binding: other value",
            vec![all(), ("a", ShortInt(-3))],
            Some(vec![("a", LongLongInt(3))]),
            false,
        ),
        case(
            "negative i64 equals negative i8",
            vec![all(), ("a", LongLongInt(-1))],
            Some(vec![("a", ShortShortInt(-1))]),
            true,
        ),
        // numbers across integer / float
        case(
            "float equals double of same value",
            vec![all(), ("a", Float(1.5))],
            Some(vec![("a", Double(1.5))]),
            true,
        ),
        case(
            "double: other value",
            vec![all(), ("a", Double(1.5))],
            Some(vec![("a", Double(2.5))]),
            false,
        ),
        case(
            "integer equals double of same value",
            vec![all(), ("a", LongInt(2))],
            Some(vec![("a", Double(2.0))]),
            true,
        ),
        case(
            "timestamp equals integer of same value",
            vec![all(), ("a", Timestamp(1_000_000))],
            Some(vec![("a", LongLongInt(1_000_000))]),
            true,
        ),
        case(
            "timestamp equals timestamp",
            vec![all(), ("a", Timestamp(1_700_000_000))],
            Some(vec![("a", Timestamp(1_700_000_000))]),
            true,
        ),
        case(
            "timestamp: other value",
            vec![all(), ("a", Timestamp(1_700_000_000))],
            Some(vec![("a", Timestamp(1_700_000_001))]),
            false,
        ),
        // bool
        case(
            "bool equal",
            vec![all(), ("a", Boolean(true))],
            Some(vec![("a", Boolean(true))]),
            true,
        ),
        case(
            "bool differs",
            vec![all(), ("a", Boolean(true))],
            Some(vec![("a", Boolean(false))]),
            false,
        ),
        case(
            "bool true is not integer 1",
            vec![all(), ("a", Boolean(true))],
            Some(vec![("a", LongInt(1))]),
            false,
        ),
        // strings
        case(
            "long string equal",
            vec![all(), ("a", s("hello"))],
            Some(vec![("a", s("hello"))]),
            true,
        ),
        case(
            "long string is case sensitive",
            vec![all(), ("a", s("hello"))],
            Some(vec![("a", s("Hello"))]),
            false,
        ),
        case(
            "long string equals byte array",
            vec![all(), ("a", s("hello"))],
            Some(vec![("a", ByteArray(b"hello".to_vec().into()))]),
            true,
        ),
        case(
            "string is not the integer it spells",
            vec![all(), ("a", s("1"))],
            Some(vec![("a", LongInt(1))]),
            false,
        ),
        case(
            "empty string equals empty string",
            vec![all(), ("a", s(""))],
            Some(vec![("a", s(""))]),
            true,
        ),
        // void: presence only
        case(
            "void binding value matches any value",
            vec![all(), ("a", Void)],
            Some(vec![("a", s("whatever"))]),
            true,
        ),
        case(
            "void binding value matches an integer",
            vec![all(), ("a", Void)],
            Some(vec![("a", LongInt(42))]),
            true,
        ),
        case(
            "void binding value needs the key",
            vec![all(), ("a", Void)],
            Some(vec![("b", s("whatever"))]),
            false,
        ),
        case(
            "void binding value in any",
            vec![any(), ("a", Void), ("b", LongInt(1))],
            Some(vec![("a", Boolean(false))]),
            true,
        ),
        // containers
        case(
            "nested table equal",
            vec![all(), ("a", nested())],
            Some(vec![("a", nested())]),
            true,
        ),
        case(
            "nested table differs",
            vec![all(), ("a", nested())],
            Some(vec![(
                "a",
                AMQPValue::FieldTable(table(&[("k", s("other"))])),
            )]),
            false,
        ),
        case(
            "array equal",
            vec![all(), ("a", array())],
            Some(vec![("a", array())]),
            true,
        ),
        case(
            "array differs",
            vec![all(), ("a", array())],
            Some(vec![("a", FieldArray(vec![LongInt(1)].into()))]),
            false,
        ),
        // many types at once
        case(
            "all over many field types",
            vec![
                all(),
                ("b", Boolean(false)),
                ("i", LongInt(-7)),
                ("l", LongLongInt(1 << 40)),
                ("s", s("str")),
                ("d", Double(0.25)),
                ("t", Timestamp(12345)),
                ("n", nested()),
                ("r", array()),
            ],
            Some(vec![
                ("b", Boolean(false)),
                ("i", ShortInt(-7)),
                ("l", LongLongInt(1 << 40)),
                ("s", s("str")),
                ("d", Double(0.25)),
                ("t", Timestamp(12345)),
                ("n", nested()),
                ("r", array()),
                ("extra", Void),
            ]),
            true,
        ),
    ]
}

#[tokio::test]
async fn headers_exchange_matches_like_rabbitmq() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let cases = headers_cases();
        // One queue per row, all on one exchange; each message carries the
        // row's headers plus a "row" header no binding mentions.
        let mut queues = Vec::new();
        for case in &cases {
            let q = temp_queue(&ch).await;
            bind_args(&ch, &q, &x, "", table(&case.binding))
                .await
                .unwrap_or_else(|e| panic!("bind for {:?}: {e:?}", case.name));
            queues.push(q);
        }
        for case in &cases {
            let props = match &case.headers {
                Some(h) => BasicProperties::default().with_headers(table(h)),
                None => BasicProperties::default(),
            };
            publish_props(&ch, &x, "", case.name, props).await;
        }
        let mut wrong = Vec::new();
        for (case, q) in cases.iter().zip(&queues) {
            let got = drain(&ch, q).await;
            let matched = got.iter().any(|n| n == case.name);
            if matched != case.matches {
                wrong.push(format!(
                    "{}: expected match={}, got {}",
                    case.name, case.matches, matched
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "headers mismatches:\n{}",
            wrong.join("\n")
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn headers_exchange_ignores_the_routing_key() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let q = temp_queue(&ch).await;
        bind_args(
            &ch,
            &q,
            &x,
            "some-key",
            table(&[("x-match", s("all")), ("a", s("1"))]),
        )
        .await
        .unwrap();
        let h = || BasicProperties::default().with_headers(table(&[("a", s("1"))]));
        publish_props(&ch, &x, "other-key", "1", h()).await;
        publish_props(&ch, &x, "", "2", h()).await;
        assert_eq!(drain(&ch, &q).await, vec!["1", "2"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn headers_queue_matched_by_several_bindings_gets_one_copy() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let q = temp_queue(&ch).await;
        bind_args(&ch, &q, &x, "", table(&[("a", s("1"))]))
            .await
            .unwrap();
        bind_args(
            &ch,
            &q,
            &x,
            "",
            table(&[("x-match", s("any")), ("b", s("2"))]),
        )
        .await
        .unwrap();
        let h = table(&[("a", s("1")), ("b", s("2"))]);
        publish_props(
            &ch,
            &x,
            "",
            "once",
            BasicProperties::default().with_headers(h),
        )
        .await;
        assert_eq!(drain(&ch, &q).await, vec!["once"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn headers_binding_with_invalid_x_match_value_fails_with_precondition_failed() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let q = temp_queue(&ch).await;
        let r = bind_args(&ch, &q, &x, "", table(&[("x-match", s("some"))])).await;
        assert_error(
            r,
            406,
            "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x",
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn headers_binding_with_non_string_x_match_fails_with_precondition_failed() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let q = temp_queue(&ch).await;
        let r = bind_args(
            &ch,
            &q,
            &x,
            "",
            table(&[("x-match", AMQPValue::Boolean(true))]),
        )
        .await;
        assert_error(
            r,
            406,
            "PRECONDITION_FAILED - Invalid x-match field type bool (value true); expected longstr",
        );
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn headers_unbind_needs_the_same_arguments() {
    let broker = TestBroker::start().await;
    within(LIMIT, async {
        let (conn, ch) = broker.channel().await;
        let x = unique("headers");
        declare(&ch, &x, ExchangeKind::Headers).await;
        let q = temp_queue(&ch).await;
        let args = table(&[("x-match", s("any")), ("a", s("1"))]);
        bind_args(&ch, &q, &x, "", args.clone()).await.unwrap();
        let h = || BasicProperties::default().with_headers(table(&[("a", s("1"))]));
        // Unbinding with other arguments leaves the binding.
        ch.queue_unbind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            table(&[("x-match", s("all")), ("a", s("1"))]),
        )
        .await
        .unwrap();
        publish_props(&ch, &x, "", "bound", h()).await;
        ch.queue_unbind(q.as_str().into(), x.as_str().into(), "".into(), args)
            .await
            .unwrap();
        publish_props(&ch, &x, "", "unbound", h()).await;
        assert_eq!(drain(&ch, &q).await, vec!["bound"]);
        cleanup(&conn, &[&x]).await;
    })
    .await;
    broker.stop().await;
}
