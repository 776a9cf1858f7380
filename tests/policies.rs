//! Policies and operator policies as RabbitMQ 3.10 applies them: which
//! policy wins, which of the client's arguments take precedence, how
//! operator policies cap values, that a change reaches existing queues and
//! exchanges at once, and the texts of refused definitions. (Between
//! policies of equal priority RabbitMQ's choice follows its table order, so
//! no test here asserts one; Warren takes the name that sorts first.)
//!
//! Each test makes its own vhost ([`Tenant`]), so the same tests run against
//! RabbitMQ (`WARREN_TEST_AMQP_URI` with `WARREN_TEST_HTTP_URI`).

mod common;

use std::time::{Duration, Instant};

use common::admin::{Admin, Tenant};
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde_json::json;
use warren::policy::PolicyKind;

/// A fresh vhost, and a channel on it as guest.
async fn tenant(broker: &TestBroker, prefix: &str) -> (Tenant, Connection, Channel) {
    let t = Tenant::new(&broker.admin(), prefix, None).await;
    let (conn, ch) = broker.channel_as("guest", "guest", &t.vhost).await;
    (t, conn, ch)
}

async fn done(t: Tenant, conn: Connection, broker: TestBroker) {
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

async fn queue(ch: &Channel, name: &str, args: &[(&str, AMQPValue)]) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), table(args))
        .await
        .expect("queue.declare");
}

async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
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

/// Publish with confirms, so the messages are in their queues after.
async fn publish(ch: &Channel, exchange: &str, key: &str, bodies: &[&str]) {
    for body in bodies {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirm");
    }
}

async fn confirming(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

async fn count(ch: &Channel, queue: &str) -> u32 {
    declare_passive(ch, queue)
        .await
        .expect("queue exists")
        .message_count()
}

/// Wait (up to five seconds) until `queue` holds `expected` messages:
/// RabbitMQ applies a policy change to its queues asynchronously.
async fn wait_count(ch: &Channel, queue: &str, expected: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = count(ch, queue).await;
        if n == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue {queue} holds {n} messages, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_body(ch: &Channel, queue: &str) -> Option<String> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
}

async fn reject_head(ch: &Channel, queue: &str) {
    let message = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    message
        .delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("basic.reject");
}

/// A fanout exchange `name` with one queue `name`-q bound to it.
async fn sink(ch: &Channel, name: &str) -> String {
    exchange(ch, name, ExchangeKind::Fanout).await;
    let q = format!("{name}-q");
    queue(ch, &q, &[]).await;
    bind(ch, &q, name, "").await;
    q
}

#[tokio::test]
async fn a_dead_letter_exchange_set_by_policy_receives_rejected_messages() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-dlx").await;
    let admin = broker.admin();
    admin
        .set_policy(
            &t.vhost,
            "dlx",
            json!({"pattern": "^work$", "apply-to": "queues", "definition": {"dead-letter-exchange": "dead"}}),
        )
        .await;
    let dead = sink(&ch, "dead").await;
    queue(&ch, "work", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "work", &["m1"]).await;
    reject_head(&ch, "work").await;
    wait_count(&ch, &dead, 1).await;
    assert_eq!(get_body(&ch, &dead).await.as_deref(), Some("m1"));
    done(t, conn, broker).await;
}

#[tokio::test]
async fn a_message_ttl_set_by_policy_expires_messages() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-ttl").await;
    broker
        .admin()
        .set_policy(
            &t.vhost,
            "ttl",
            json!({"pattern": "^ttl", "definition": {"message-ttl": 100, "dead-letter-exchange": "expired"}}),
        )
        .await;
    let expired = sink(&ch, "expired").await;
    queue(&ch, "ttl-q", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "ttl-q", &["a", "b"]).await;
    wait_count(&ch, "ttl-q", 0).await;
    wait_count(&ch, &expired, 2).await;
    done(t, conn, broker).await;
}

#[tokio::test]
async fn a_max_length_set_by_policy_drops_the_oldest() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-len").await;
    broker
        .admin()
        .set_policy(
            &t.vhost,
            "len",
            json!({"pattern": "^len", "definition": {"max-length": 2}}),
        )
        .await;
    queue(&ch, "len-q", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "len-q", &["m1", "m2", "m3", "m4", "m5"]).await;
    wait_count(&ch, "len-q", 2).await;
    assert_eq!(get_body(&ch, "len-q").await.as_deref(), Some("m4"));
    done(t, conn, broker).await;
}

#[tokio::test]
async fn the_highest_priority_policy_applies() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-prio").await;
    let admin = broker.admin();
    for (name, priority, max) in [("low", 0, 5), ("high", 7, 1), ("mid", 3, 3)] {
        admin
            .set_policy(
                &t.vhost,
                name,
                json!({"pattern": "^prio", "priority": priority, "definition": {"max-length": max}}),
            )
            .await;
    }
    queue(&ch, "prio-q", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "prio-q", &["1", "2", "3", "4"]).await;
    wait_count(&ch, "prio-q", 1).await;
    done(t, conn, broker).await;
}

#[tokio::test]
async fn client_arguments_win_for_names_and_the_lower_limit_wins_for_numbers() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-args").await;
    broker
        .admin()
        .set_policy(
            &t.vhost,
            "args",
            json!({"pattern": "^args", "definition": {
                "max-length": 3, "dead-letter-exchange": "policy-dlx", "overflow": "reject-publish",
                "message-ttl": 600000}}),
        )
        .await;
    let from_policy = sink(&ch, "policy-dlx").await;
    let from_argument = sink(&ch, "argument-dlx").await;
    queue(
        &ch,
        "args-q",
        &[
            ("x-max-length", AMQPValue::LongInt(10)),
            ("x-dead-letter-exchange", text("argument-dlx")),
            ("x-overflow", text("drop-head")),
            ("x-message-ttl", AMQPValue::LongInt(100)),
        ],
    )
    .await;
    let pub_ch = confirming(&conn).await;
    // max-length: the lower (the policy's 3); overflow: the argument's
    // drop-head (every publish is confirmed); DLX: the argument's.
    publish(&pub_ch, "", "args-q", &["m1", "m2", "m3", "m4", "m5"]).await;
    // message-ttl: the lower (the argument's 100 ms).
    wait_count(&ch, &from_argument, 5).await;
    assert_eq!(count(&ch, &from_policy).await, 0);
    assert_eq!(count(&ch, "args-q").await, 0);
    done(t, conn, broker).await;
}

#[tokio::test]
async fn an_operator_policy_caps_the_policy_and_the_arguments() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-op").await;
    let admin = broker.admin();
    admin
        .set_policy(
            &t.vhost,
            "generous",
            json!({"pattern": "^capped", "definition": {"max-length": 10}}),
        )
        .await;
    admin
        .set_operator_policy(
            &t.vhost,
            "cap",
            json!({"pattern": ".*", "definition": {"max-length": 2}}),
        )
        .await;
    queue(&ch, "capped-q", &[("x-max-length", AMQPValue::LongInt(5))]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "capped-q", &["1", "2", "3", "4", "5", "6"]).await;
    wait_count(&ch, "capped-q", 2).await;
    // Without the cap the lower of policy and argument (5) applies again.
    admin
        .clear_policy(PolicyKind::Operator, &t.vhost, "cap")
        .await;
    publish(&pub_ch, "", "capped-q", &["7", "8", "9", "10"]).await;
    wait_count(&ch, "capped-q", 5).await;
    done(t, conn, broker).await;
}

#[tokio::test]
async fn a_policy_change_applies_to_an_existing_queue_at_once() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-change").await;
    let admin = broker.admin();
    let dropped = sink(&ch, "dropped").await;
    queue(&ch, "live-q", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "live-q", &["1", "2", "3", "4", "5"]).await;
    admin
        .set_policy(
            &t.vhost,
            "shrink",
            json!({"pattern": "^live", "definition": {"max-length": 2, "dead-letter-exchange": "dropped"}}),
        )
        .await;
    wait_count(&ch, "live-q", 2).await;
    wait_count(&ch, &dropped, 3).await;
    // Changed again: tighter.
    admin
        .set_policy(
            &t.vhost,
            "shrink",
            json!({"pattern": "^live", "definition": {"max-length": 1, "dead-letter-exchange": "dropped"}}),
        )
        .await;
    wait_count(&ch, "live-q", 1).await;
    wait_count(&ch, &dropped, 4).await;
    // Removed: no limit, no dead-lettering.
    admin
        .clear_policy(PolicyKind::Policy, &t.vhost, "shrink")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&pub_ch, "", "live-q", &["6", "7", "8"]).await;
    wait_count(&ch, "live-q", 4).await;
    assert_eq!(count(&ch, &dropped).await, 4);
    done(t, conn, broker).await;
}

#[tokio::test]
async fn an_alternate_exchange_set_by_policy_takes_unroutable_messages() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-ae").await;
    exchange(&ch, "main", ExchangeKind::Direct).await;
    let unrouted = sink(&ch, "unrouted").await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "main", "nowhere", &["lost"]).await;
    assert_eq!(count(&ch, &unrouted).await, 0);
    broker
        .admin()
        .set_policy(
            &t.vhost,
            "ae",
            json!({"pattern": "^main$", "apply-to": "exchanges", "definition": {"alternate-exchange": "unrouted"}}),
        )
        .await;
    // The policy reaches the exchange shortly after (RabbitMQ: asynchronously).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        publish(&pub_ch, "main", "nowhere", &["kept"]).await;
        if count(&ch, &unrouted).await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alternate exchange never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_body(&ch, &unrouted).await.as_deref(), Some("kept"));
    done(t, conn, broker).await;
}

#[tokio::test]
async fn a_policy_for_exchanges_leaves_queues_alone() {
    let broker = TestBroker::start().await;
    let (t, conn, ch) = tenant(&broker, "pol-kind").await;
    broker
        .admin()
        .set_policy(
            &t.vhost,
            "x-only",
            json!({"pattern": "^k", "apply-to": "exchanges", "definition": {"max-length": 1}}),
        )
        .await;
    queue(&ch, "k-q", &[]).await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "k-q", &["1", "2", "3"]).await;
    assert_eq!(count(&ch, "k-q").await, 3);
    done(t, conn, broker).await;
}

async fn refused(admin: &Admin, kind: PolicyKind, vhost: &str, body: serde_json::Value) -> String {
    admin
        .try_set_policy(kind, vhost, "bad", body)
        .await
        .expect_err("the policy is refused")
}

#[tokio::test]
async fn invalid_policies_are_refused_with_rabbitmq_texts() {
    let broker = TestBroker::start().await;
    let (t, conn, _ch) = tenant(&broker, "pol-bad").await;
    let admin = broker.admin();
    let v = t.vhost.clone();
    let def = |d: serde_json::Value| json!({"pattern": "^x", "definition": d});
    let cases = [
        (
            def(json!({"message-ttl": -1})),
            "-1 is not a valid message TTL",
        ),
        (
            def(json!({"message-ttl": "a"})),
            "<<\"a\">> is not a valid message TTL",
        ),
        (def(json!({"expires": 0})), "0 is not a valid queue expiry"),
        (
            def(json!({"max-length": 1.5})),
            "1.5 is not a valid maximum length",
        ),
        (
            def(json!({"max-length-bytes": -1})),
            "-1 is not a valid maximum length in bytes",
        ),
        (
            def(json!({"overflow": "x"})),
            "<<\"x\">> is not a valid overflow value",
        ),
        (
            def(json!({"queue-mode": "x"})),
            "<<\"x\">> is not a valid queue-mode value",
        ),
        (
            def(json!({"dead-letter-strategy": "x"})),
            "<<\"x\">> is not a valid dead letter strategy",
        ),
        (
            def(json!({"dead-letter-exchange": 1})),
            "1 is not a valid dead letter exchange name",
        ),
        (
            def(json!({"alternate-exchange": 1})),
            "1 is not a valid alternate exchange name",
        ),
        (
            def(json!({"delivery-limit": -1})),
            "-1 is not a valid delivery limit",
        ),
        (
            def(json!({"max-age": "1X"})),
            "<<\"1X\">> is not a valid max age",
        ),
        (
            def(json!({"stream-max-segment-size-bytes": -1})),
            "-1 is not a valid segment size",
        ),
        (
            def(json!({"foo": 1, "bar": 2})),
            "[{<<\"bar\">>,2},{<<\"foo\">>,1}] are not recognised policy settings",
        ),
        (def(json!({})), "no policy provided"),
        (
            json!({"pattern": "^x", "priority": "5", "definition": {"max-length": 1}}),
            "priority should be a number, actually was <<\"5\">>",
        ),
    ];
    for (body, text) in cases {
        assert_eq!(
            refused(&admin, PolicyKind::Policy, &v, body.clone()).await,
            format!("Validation failed\n\n{text}\n"),
            "for {body}"
        );
    }
    assert_eq!(
        refused(
            &admin,
            PolicyKind::Policy,
            &v,
            json!({"definition": {"max-length": 1}})
        )
        .await,
        "[{key_missing,pattern}]"
    );
    let text = refused(
        &admin,
        PolicyKind::Policy,
        &v,
        json!({"pattern": "(", "definition": {"max-length": 1}}),
    )
    .await;
    assert!(
        text.starts_with(
            "Validation failed\n\npattern should be regular expression but is invalid: "
        ),
        "{text}"
    );
    let text = refused(
        &admin,
        PolicyKind::Policy,
        &v,
        json!({"pattern": "x", "apply-to": "foo", "definition": {"max-length": 1}}),
    )
    .await;
    assert!(
        text.starts_with("Validation failed\n\napply-to 'foo' unrecognised; should be 'queues', "),
        "{text}"
    );
    // Operator policies take only numeric caps.
    assert_eq!(
        refused(
            &admin,
            PolicyKind::Operator,
            &v,
            def(json!({"message-ttl": 1, "dead-letter-exchange": "d"}))
        )
        .await,
        "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"d\">>}] are not recognised policy settings\n"
    );
    done(t, conn, broker).await;
}

#[tokio::test]
async fn policies_are_durable_and_apply_after_a_restart() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    broker
        .admin()
        .set_policy(
            "/",
            "keep",
            json!({"pattern": "^kept$", "priority": 2, "definition": {"max-length": 1}}),
        )
        .await;
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    drop(ch);
    drop(_conn);
    let broker = broker.restart().await;
    let server = broker.server().expect("in-process broker");
    let policies = server.broker().policies(PolicyKind::Policy, Some("/"));
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].to_json()["priority"], json!(2));
    let (conn, ch) = broker.channel().await;
    let pub_ch = confirming(&conn).await;
    publish(&pub_ch, "", "kept", &["1", "2", "3"]).await;
    assert_eq!(count(&ch, "kept").await, 1);
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}
