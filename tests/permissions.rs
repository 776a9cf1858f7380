//! Permissions, topic permissions and the `user-id` check, as RabbitMQ 3.10
//! applies them: which operation needs which permission on which resource,
//! the order of the checks, the texts of the refusals, and when a change of
//! permissions reaches a channel that is already open.
//!
//! Each test makes its own vhost and user ([`Tenant`]), so the same tests
//! run against RabbitMQ (`WARREN_TEST_AMQP_URI` with `WARREN_TEST_HTTP_URI`).

mod common;

use std::time::Duration;

use common::admin::Tenant;
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

/// The reply text of a refusal of `user` on `resource` ("queue 'q'").
fn refused(t: &Tenant, resource: &str) -> String {
    format!(
        "ACCESS_REFUSED - access to {resource} in vhost '{}' refused for user '{}'",
        t.vhost, t.user
    )
}

/// A tenant with configure on `^c-`, write on `^w-` and read on `^r-`,
/// and, made by guest: queues r-q, w-q, other-q; exchanges r-x (topic),
/// w-x (fanout), other-x (direct).
async fn restricted(broker: &TestBroker, prefix: &str) -> (Tenant, Connection) {
    let t = Tenant::new(&broker.admin(), prefix, Some(("^c-", "^w-", "^r-"))).await;
    let (guest, ch) = broker.channel_as("guest", "guest", &t.vhost).await;
    for q in ["r-q", "w-q", "other-q"] {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.declare");
    }
    for (x, kind) in [
        ("r-x", ExchangeKind::Topic),
        ("w-x", ExchangeKind::Fanout),
        ("other-x", ExchangeKind::Direct),
    ] {
        ch.exchange_declare(
            x.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
    }
    guest.close(200, "bye".into()).await.ok();
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .expect("tenant connects");
    (t, conn)
}

async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.expect("channel")
}

async fn declare(ch: &Channel, name: &str, options: QueueDeclareOptions) -> lapin::Result<String> {
    ch.queue_declare(name.into(), options, FieldTable::default())
        .await
        .map(|q| q.name().to_string())
}

async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    arguments: FieldTable,
) -> lapin::Result<()> {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        arguments,
    )
    .await
}

fn table(key: &str, value: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(key.into(), AMQPValue::LongString(value.into()));
    t
}

// ---- configure -------------------------------------------------------------

#[tokio::test]
async fn declaring_and_deleting_need_configure_permission() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "cfg").await;
    let ch = channel(&conn).await;
    assert_eq!(
        declare(&ch, "c-q", QueueDeclareOptions::default())
            .await
            .unwrap(),
        "c-q"
    );
    declare_exchange(&ch, "c-x", ExchangeKind::Direct, FieldTable::default())
        .await
        .unwrap();
    assert_amqp_error(
        declare(
            &channel(&conn).await,
            "q-nocfg",
            QueueDeclareOptions::default(),
        )
        .await,
        403,
        &refused(&t, "queue 'q-nocfg'"),
    );
    assert_amqp_error(
        declare_exchange(
            &channel(&conn).await,
            "x-nocfg",
            ExchangeKind::Direct,
            FieldTable::default(),
        )
        .await,
        403,
        &refused(&t, "exchange 'x-nocfg'"),
    );
    // Deleting needs configure even when the queue does not exist.
    assert_amqp_error(
        channel(&conn)
            .await
            .queue_delete("missing-q".into(), QueueDeleteOptions::default())
            .await,
        403,
        &refused(&t, "queue 'missing-q'"),
    );
    assert_amqp_error(
        channel(&conn)
            .await
            .exchange_delete("other-x".into(), ExchangeDeleteOptions::default())
            .await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    let ch = channel(&conn).await;
    ch.queue_delete("c-q".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete("c-x".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    // Redeclaring an existing queue or exchange needs configure too.
    assert_amqp_error(
        declare(
            &channel(&conn).await,
            "other-q",
            QueueDeclareOptions::default(),
        )
        .await,
        403,
        &refused(&t, "queue 'other-q'"),
    );
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn passive_declares_need_no_permission() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "passive").await;
    let ch = channel(&conn).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare(&ch, "other-q", passive).await.unwrap();
    ch.exchange_declare(
        "other-x".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn server_named_queues_need_configure_on_their_generated_name() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "gen").await;
    let result = declare(&channel(&conn).await, "", QueueDeclareOptions::default()).await;
    let err = result.expect_err("refused");
    let text = reply_text(&err).unwrap_or_default();
    assert_eq!(reply_code(&err), Some(403));
    assert!(
        text.starts_with("ACCESS_REFUSED - access to queue 'amq.gen-")
            && text.ends_with(&format!(
                "' in vhost '{}' refused for user '{}'",
                t.vhost, t.user
            )),
        "{text}"
    );
    // With configure on amq.gen-*, they are fine.
    t.admin
        .set_permissions(&t.user, &t.vhost, "^amq\\.gen-", "", "")
        .await;
    let ch = channel(&conn).await;
    let name = declare(
        &ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(name.starts_with("amq.gen-"));
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn reserved_names_and_default_exchange_are_refused_before_permissions() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "reserved").await;
    assert_amqp_error(
        declare(
            &channel(&conn).await,
            "amq.foo",
            QueueDeclareOptions::default(),
        )
        .await,
        403,
        "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'",
    );
    assert_amqp_error(
        declare_exchange(
            &channel(&conn).await,
            "",
            ExchangeKind::Direct,
            FieldTable::default(),
        )
        .await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    assert_amqp_error(
        channel(&conn)
            .await
            .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
            .await,
        403,
        &format!(
            "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '{}' not allowed",
            t.vhost
        ),
    );
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn alternate_and_dead_letter_exchanges_need_read_on_the_entity_and_write_on_the_exchange() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "ae").await;
    // Configure on c-*, but no read on c-x: refused on the new exchange.
    assert_amqp_error(
        declare_exchange(
            &channel(&conn).await,
            "c-x",
            ExchangeKind::Direct,
            table("alternate-exchange", "w-x"),
        )
        .await,
        403,
        &refused(&t, "exchange 'c-x'"),
    );
    t.admin
        .set_permissions(&t.user, &t.vhost, "^c-", "^w-", "^(r-|c-)")
        .await;
    // Read on c-x now, but no write on the alternate other-x.
    assert_amqp_error(
        declare_exchange(
            &channel(&conn).await,
            "c-x",
            ExchangeKind::Direct,
            table("alternate-exchange", "other-x"),
        )
        .await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    let ch = channel(&conn).await;
    declare_exchange(
        &ch,
        "c-x",
        ExchangeKind::Direct,
        table("alternate-exchange", "w-x"),
    )
    .await
    .unwrap();
    // The same for a queue's dead-letter exchange.
    assert_amqp_error(
        channel(&conn)
            .await
            .queue_declare(
                "c-q".into(),
                QueueDeclareOptions::default(),
                table("x-dead-letter-exchange", "other-x"),
            )
            .await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    ch.queue_declare(
        "c-q".into(),
        QueueDeclareOptions::default(),
        table("x-dead-letter-exchange", "w-x"),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

// ---- write and read --------------------------------------------------------

#[tokio::test]
async fn publishing_needs_write_on_the_exchange_before_it_is_looked_up() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "pub").await;
    let mut events = Box::pin(conn.events_listener());
    for (exchange, expected) in [
        ("", refused(&t, "exchange 'amq.default'")),
        ("nope-x", refused(&t, "exchange 'nope-x'")),
        (
            "w-nope",
            format!("NOT_FOUND - no exchange 'w-nope' in vhost '{}'", t.vhost),
        ),
    ] {
        let ch = channel(&conn).await;
        publish_with(&ch, exchange, "k", b"m", BasicProperties::default()).await;
        let err = next_error(&mut events).await;
        assert_eq!(
            reply_text(&err).as_deref(),
            Some(expected.as_str()),
            "{exchange}"
        );
    }
    // Allowed: the channel stays open.
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "w-x".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn consuming_getting_and_purging_need_read_on_the_queue() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "read").await;
    assert_amqp_error(
        channel(&conn)
            .await
            .basic_get("other-q".into(), BasicGetOptions::default())
            .await,
        403,
        &refused(&t, "queue 'other-q'"),
    );
    assert_amqp_error(
        channel(&conn)
            .await
            .basic_consume(
                "other-q".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await,
        403,
        &refused(&t, "queue 'other-q'"),
    );
    assert_amqp_error(
        channel(&conn)
            .await
            .queue_purge("other-q".into(), QueuePurgeOptions::default())
            .await,
        403,
        &refused(&t, "queue 'other-q'"),
    );
    // The permission is checked before the queue is looked up.
    assert_amqp_error(
        channel(&conn)
            .await
            .basic_get("missing".into(), BasicGetOptions::default())
            .await,
        403,
        &refused(&t, "queue 'missing'"),
    );
    assert_amqp_error(
        channel(&conn)
            .await
            .basic_get("r-missing".into(), BasicGetOptions::default())
            .await,
        404,
        &format!("NOT_FOUND - no queue 'r-missing' in vhost '{}'", t.vhost),
    );
    let ch = channel(&conn).await;
    assert!(
        ch.basic_get("r-q".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    ch.queue_purge("r-q".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    ch.basic_consume(
        "r-q".into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn binding_needs_write_on_the_destination_and_read_on_the_source() {
    let broker = TestBroker::start().await;
    let (t, conn) = restricted(&broker, "bind").await;
    let bind = async |queue: &str, exchange: &str| {
        channel(&conn)
            .await
            .queue_bind(
                queue.into(),
                exchange.into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    assert_amqp_error(bind("r-q", "r-x").await, 403, &refused(&t, "queue 'r-q'"));
    assert_amqp_error(
        bind("w-q", "other-x").await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    assert_amqp_error(
        bind("w-q", "r-missing").await,
        404,
        &format!("NOT_FOUND - no exchange 'r-missing' in vhost '{}'", t.vhost),
    );
    assert_amqp_error(
        bind("w-q", "").await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    bind("w-q", "r-x").await.unwrap();
    assert_amqp_error(
        channel(&conn)
            .await
            .queue_unbind(
                "r-q".into(),
                "r-x".into(),
                "k".into(),
                FieldTable::default(),
            )
            .await,
        403,
        &refused(&t, "queue 'r-q'"),
    );
    // exchange.bind: write on the destination, read on the source; the
    // destination is checked before the default-exchange rule.
    let xbind = async |destination: &str, source: &str| {
        channel(&conn)
            .await
            .exchange_bind(
                destination.into(),
                source.into(),
                "k".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    assert_amqp_error(
        xbind("other-x", "r-x").await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    assert_amqp_error(
        xbind("w-x", "other-x").await,
        403,
        &refused(&t, "exchange 'other-x'"),
    );
    assert_amqp_error(
        xbind("", "r-x").await,
        403,
        &refused(&t, "exchange 'amq.default'"),
    );
    assert_amqp_error(
        xbind("w-x", "").await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    xbind("w-x", "r-x").await.unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn direct_reply_to_needs_no_queue_permission() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "replyto", Some(("", "", ""))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    ch.basic_consume(
        "amq.rabbitmq.reply-to".into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

// ---- changes of permissions ------------------------------------------------

#[tokio::test]
async fn a_channel_keeps_granted_checks_until_it_idles_and_checks_new_ones_at_once() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "cache", Some((".*", ".*", ".*"))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    let mut events = Box::pin(conn.events_listener());
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = |ch: &Channel, x: &'static str| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                x.into(),
                "k".into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
        }
    };
    assert!(publish(&ch, "amq.direct").await.unwrap().is_ack());
    t.admin
        .set_permissions(&t.user, &t.vhost, ".*", "^nothing$", ".*")
        .await;
    // Granted before the change: still granted while the channel is busy.
    assert!(publish(&ch, "amq.direct").await.unwrap().is_ack());
    // Never checked on this channel: the new permissions apply.
    let fresh = channel(&conn).await;
    publish_with(&fresh, "amq.direct", "k", b"m", BasicProperties::default()).await;
    let err = next_error(&mut events).await;
    assert_eq!(reply_text(&err), Some(refused(&t, "exchange 'amq.direct'")));
    // After the channel idles, it asks again (RabbitMQ: when its channel
    // process hibernates, after one to a few seconds).
    tokio::time::sleep(Duration::from_secs(4)).await;
    publish_with(&ch, "amq.direct", "k", b"m", BasicProperties::default()).await;
    let err = next_error(&mut events).await;
    assert_eq!(reply_text(&err), Some(refused(&t, "exchange 'amq.direct'")));
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn clearing_permissions_refuses_new_connections_and_new_checks() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "clear", Some((".*", ".*", ".*"))).await;
    let (conn, _ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    t.admin.clear_permissions(&t.user, &t.vhost).await;
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &format!(
            "NOT_ALLOWED - access to vhost '{}' refused for user '{}'",
            t.vhost, t.user
        ),
    );
    // The open connection stays, but what it asks now is refused.
    assert_amqp_error(
        declare(&channel(&conn).await, "q", QueueDeclareOptions::default()).await,
        403,
        &refused(&t, "queue 'q'"),
    );
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

// ---- topic permissions -----------------------------------------------------

#[tokio::test]
async fn topic_permissions_govern_publish_routing_keys_with_username_and_vhost() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "topic", Some((".*", ".*", ".*"))).await;
    t.admin
        .set_topic_permissions(
            &t.user,
            &t.vhost,
            "amq.topic",
            "^{username}\\.{vhost}\\.",
            ".*",
        )
        .await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    let mut events = Box::pin(conn.events_listener());
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let own_key = format!("{}.{}.orders", t.user, t.vhost);
    let confirm = ch
        .basic_publish(
            "amq.topic".into(),
            own_key.as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    // Other exchange types are not governed by topic permissions.
    publish_with(
        &ch,
        "amq.direct",
        "other.key",
        b"m",
        BasicProperties::default(),
    )
    .await;
    publish_with(
        &ch,
        "amq.topic",
        "other.key",
        b"m",
        BasicProperties::default(),
    )
    .await;
    let err = next_error(&mut events).await;
    assert_eq!(
        reply_text(&err),
        Some(format!(
            "ACCESS_REFUSED - access to topic 'other.key' in exchange 'amq.topic' in vhost '{}' refused for user '{}'",
            t.vhost, t.user
        ))
    );
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn topic_permissions_govern_binding_keys() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "topicbind", Some((".*", ".*", ".*"))).await;
    t.admin
        .set_topic_permissions(&t.user, &t.vhost, "amq.topic", ".*", "^r\\.{client_id}")
        .await;
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let ch = channel(&conn).await;
    declare(&ch, "tq", QueueDeclareOptions::default())
        .await
        .unwrap();
    let bind = async |key: &str| {
        channel(&conn)
            .await
            .queue_bind(
                "tq".into(),
                "amq.topic".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    assert_amqp_error(
        bind("x.y").await,
        403,
        &format!(
            "ACCESS_REFUSED - access to topic 'x.y' in exchange 'amq.topic' in vhost '{}' refused for user '{}'",
            t.vhost, t.user
        ),
    );
    // AMQP 0-9-1 connections have no client id: `{client_id}` is literal.
    bind("r.{client_id}").await.unwrap();
    // Binding to a non-topic exchange is not governed.
    channel(&conn)
        .await
        .queue_bind(
            "tq".into(),
            "amq.direct".into(),
            "x.y".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

// ---- user-id ---------------------------------------------------------------

async fn publish_as(ch: &Channel, user_id: &str) {
    publish_with(
        ch,
        "amq.direct",
        "k",
        b"m",
        BasicProperties::default().with_user_id(user_id.into()),
    )
    .await;
}

#[tokio::test]
async fn user_id_must_name_the_user_unless_it_is_an_impersonator() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "userid", Some((".*", ".*", ".*"))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    let mut events = Box::pin(conn.events_listener());
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let own = ch
        .basic_publish(
            "amq.direct".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default().with_user_id(t.user.as_str().into()),
        )
        .await
        .unwrap();
    assert!(own.await.unwrap().is_ack());
    publish_as(&ch, "someone").await;
    let err = next_error(&mut events).await;
    assert_eq!(
        reply_text(&err),
        Some(format!(
            "PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user was '{}'",
            t.user
        ))
    );
    // The tag counts from the next login on.
    t.admin
        .add_user(&t.user, &t.password, &["impersonator"])
        .await;
    publish_as(&channel(&conn).await, "someone").await;
    // Still refused: the channel is closed. lapin reports that close either
    // with the broker's 406 or, when it races the previous channel's, as a
    // channel-state error of its own.
    let err = next_error(&mut events).await;
    if let Some(code) = reply_code(&err) {
        assert_eq!(code, 406);
    }
    conn.close(200, "bye".into()).await.ok();
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let other = ch
        .basic_publish(
            "amq.direct".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default().with_user_id("someone".into()),
        )
        .await
        .unwrap();
    assert!(other.await.unwrap().is_ack());
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}
