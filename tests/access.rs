//! Virtual hosts, users, logins and limits, as RabbitMQ 3.10 has them:
//! what a new vhost holds, what deleting one or a user does to open
//! connections, password hashes that move between RabbitMQ and Warren, and
//! the connection, channel and queue limits with RabbitMQ's texts.
//!
//! Against RabbitMQ: `WARREN_TEST_AMQP_URI` and `WARREN_TEST_HTTP_URI`.

mod common;

use std::time::Duration;

use common::admin::{Admin, Http, Tenant};
use common::raw::{RawConn, method, short_str};
use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren::access::{
    Credentials, HashingAlgorithm, QueueType, UserLimit, VHostLimit, VHostMetadata,
};

fn vhost_refused(t: &Tenant) -> String {
    format!(
        "NOT_ALLOWED - access to vhost '{}' refused for user '{}'",
        t.vhost, t.user
    )
}

/// The code and text of the next close a connection's events report.
async fn closed_with(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> (u16, String) {
    let err = next_error(events).await;
    (
        reply_code(&err).unwrap_or(0),
        reply_text(&err).unwrap_or_default(),
    )
}

// ---- virtual hosts ---------------------------------------------------------

#[tokio::test]
async fn a_new_vhost_has_the_standard_exchanges_and_its_own_queues() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "vh", Some((".*", ".*", ".*"))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    for x in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        ch.exchange_declare(
            x.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{x}: {e}"));
    }
    let queue = unique("vh-q");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // The default vhost does not see it.
    let (guest, gch) = broker.channel().await;
    assert_amqp_error(
        gch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no queue '{queue}' in vhost '/'"),
    );
    guest.close(200, "bye".into()).await.ok();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn opening_a_vhost_without_permissions_is_refused_with_530() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "noperm", None).await;
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &vhost_refused(&t),
    );
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_removes_its_queues() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "delvh", Some((".*", ".*", ".*"))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    ch.queue_declare(
        "durable-q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_with(
        &ch,
        "",
        "durable-q",
        b"kept?",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await;
    let (other, _) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    admin.delete_vhost(&t.vhost).await;
    // RabbitMQ 3.10 follows this close with a second, forced one ("vhost
    // is down") that resets the socket, often before lapin has read the
    // first: then only the reset is seen.
    match closed_with(&mut events).await {
        (0, _) if broker.is_external() => {}
        (code, text) => assert_eq!(
            (code, text),
            (
                320,
                format!("CONNECTION_FORCED - vhost '{}' is deleted", t.vhost)
            )
        ),
    }
    // Connections to other vhosts stay.
    assert!(other.status().connected());
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &format!("NOT_ALLOWED - vhost {} not found", t.vhost),
    );
    // A new vhost of the same name starts empty, without permissions.
    admin.add_vhost(&t.vhost).await;
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &vhost_refused(&t),
    );
    admin
        .set_permissions("guest", &t.vhost, ".*", ".*", ".*")
        .await;
    let (again, ch) = broker.channel_as("guest", "guest", &t.vhost).await;
    assert_amqp_error(
        ch.queue_declare(
            "durable-q".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no queue 'durable-q' in vhost '{}'", t.vhost),
    );
    again.close(200, "bye".into()).await.ok();
    other.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_deleted_vhost_stays_deleted_after_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        // Restarting is Warren's.
        broker.stop().await;
        return;
    }
    let admin = broker.admin();
    let t = Tenant::new(&admin, "restartvh", Some((".*", ".*", ".*"))).await;
    let (conn, ch) = broker.channel_as(&t.user, &t.password, &t.vhost).await;
    ch.queue_declare(
        "durable-q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
    let kept = Tenant::new(&admin, "keptvh", Some(("", "", ""))).await;
    admin.delete_vhost(&t.vhost).await;
    let broker = broker.restart().await;
    let admin = broker.admin();
    assert!(!admin.vhost_exists(&t.vhost).await);
    assert!(admin.vhost_exists(&kept.vhost).await);
    // The user and its permissions in the kept vhost came back.
    let conn = broker
        .connect_as(&kept.user, &kept.password, &kept.vhost)
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn a_vhost_default_queue_type_applies_to_declares_that_allow_it() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    if !admin.sets_default_queue_type() {
        // RabbitMQ 3.10's HTTP API ignores default_queue_type (its CLI
        // sets it; the behaviour below was checked that way).
        broker.stop().await;
        return;
    }
    let vhost = unique("dqt");
    admin
        .add_vhost_with(
            &vhost,
            VHostMetadata {
                default_queue_type: Some(QueueType::Quorum),
                ..VHostMetadata::default()
            },
        )
        .await;
    admin
        .set_permissions("guest", &vhost, ".*", ".*", ".*")
        .await;
    let (conn, ch) = broker.channel_as("guest", "guest", &vhost).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("dq".into(), durable, FieldTable::default())
        .await
        .unwrap();
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    assert_amqp_error(
        ch.queue_declare("dq".into(), durable, classic).await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'dq' in vhost '{vhost}': received 'classic' but current is 'quorum'"
        ),
    );
    // A transient queue cannot be quorum: it stays classic.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "tq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    assert_amqp_error(
        ch.queue_declare("tq".into(), QueueDeclareOptions::default(), quorum)
            .await,
        406,
        "inequivalent arg 'x-queue-type'",
    );
    conn.close(200, "bye".into()).await.ok();
    admin.delete_vhost(&vhost).await;
    broker.stop().await;
}

// ---- users -----------------------------------------------------------------

#[tokio::test]
async fn a_user_logs_in_with_its_password_only() {
    let broker = TestBroker::start().await;
    let t = Tenant::new(&broker.admin(), "login", Some((".*", ".*", ".*"))).await;
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.ok();
    assert_amqp_error(
        broker
            .connect_as(&t.user, "wrong", &t.vhost)
            .await
            .map(|_| ()),
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
    );
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_user_without_a_password_cannot_log_in() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "nopw", Some((".*", ".*", ".*"))).await;
    admin.put_user(&t.user, Credentials::None, &[]).await;
    for password in ["pw", "", "x"] {
        assert_amqp_error(
            broker
                .connect_as(&t.user, password, &t.vhost)
                .await
                .map(|_| ()),
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.",
        );
    }
    assert_eq!(admin.password_hash(&t.user).await.0, "");
    t.remove().await;
    broker.stop().await;
}

/// Hashes of "hashed-pw" (salt 0x01020304) in each of RabbitMQ's formats,
/// computed with Python's hashlib.
const HASHES: [(HashingAlgorithm, &str); 3] = [
    (
        HashingAlgorithm::Sha256,
        "AQIDBCeFazmKA326r4qdF2NSBvdPu6yFiBgD3JU+yg/FDopX",
    ),
    (
        HashingAlgorithm::Sha512,
        "AQIDBJ0iQqX0AR5nVvWrN4JUwWOEl/nkS/ycYkAIHF7QRIyISLj8xHIExCEiCZj/AO2GF/Z4/NOjNdH2VY6yg3F32Mo=",
    ),
    (HashingAlgorithm::Md5, "AQIDBCv4CZR9ZOzLKNjFF1Lj/Uw="),
];

#[tokio::test]
async fn password_hashes_in_each_rabbitmq_format_log_in() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "hash", Some((".*", ".*", ".*"))).await;
    for (algorithm, hash) in HASHES {
        let credentials = Credentials::Hash {
            hash: hash.to_string(),
            algorithm: Some(algorithm),
        };
        admin.put_user(&t.user, credentials, &[]).await;
        assert_eq!(
            admin.password_hash(&t.user).await,
            (hash.to_string(), algorithm)
        );
        let conn = broker
            .connect_as(&t.user, "hashed-pw", &t.vhost)
            .await
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
        conn.close(200, "bye".into()).await.ok();
        assert!(broker.connect_as(&t.user, "other", &t.vhost).await.is_err());
    }
    t.remove().await;
    broker.stop().await;
}

/// Both directions against a real RabbitMQ: a user created there logs in
/// to Warren with its exported hash, and a user created in Warren logs in
/// to RabbitMQ with Warren's. Runs with `WARREN_TEST_HTTP_URI` and
/// `WARREN_TEST_AMQP_URI` set (it starts its own Warren besides).
#[tokio::test]
async fn password_hashes_move_between_rabbitmq_and_warren() {
    let (Some(http), Ok(rabbit_uri)) = (Http::from_env(), std::env::var("WARREN_TEST_AMQP_URI"))
    else {
        return;
    };
    let rabbit = Admin::Http(http);
    let data_dir = temp_dir("hash-interop");
    let warren = TestBroker::start_config(warren::Config::ephemeral(&data_dir)).await;
    let warren_admin = warren.admin();
    let rabbit_addr = rabbit_uri
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in WARREN_TEST_AMQP_URI")
        .to_string();
    let user = unique("hash-interop");
    // RabbitMQ → Warren.
    rabbit.add_user(&user, "from-rabbit", &[]).await;
    let (hash, algorithm) = rabbit.password_hash(&user).await;
    assert_eq!(algorithm, HashingAlgorithm::Sha256);
    let credentials = Credentials::Hash {
        hash,
        algorithm: Some(algorithm),
    };
    warren_admin.put_user(&user, credentials, &[]).await;
    warren_admin
        .set_permissions(&user, "/", ".*", ".*", ".*")
        .await;
    let conn = warren
        .connect_as(&user, "from-rabbit", "/")
        .await
        .expect("RabbitMQ's hash logs in to Warren");
    conn.close(200, "bye".into()).await.ok();
    // Warren → RabbitMQ.
    warren_admin.add_user(&user, "from-warren", &[]).await;
    let (hash, algorithm) = warren_admin.password_hash(&user).await;
    rabbit
        .put_user(
            &user,
            Credentials::Hash {
                hash,
                algorithm: Some(algorithm),
            },
            &[],
        )
        .await;
    rabbit.set_permissions(&user, "/", ".*", ".*", ".*").await;
    let uri = format!("amqp://{user}:from-warren@{rabbit_addr}/%2f");
    let conn = within(
        10,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("Warren's hash logs in to RabbitMQ");
    conn.close(200, "bye".into()).await.ok();
    rabbit.delete_user(&user).await;
    warren.stop().await;
}

#[tokio::test]
async fn deleting_a_user_closes_its_connections_with_320() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "deluser", Some((".*", ".*", ".*"))).await;
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let (guest, _) = broker.channel_as("guest", "guest", &t.vhost).await;
    let mut events = Box::pin(conn.events_listener());
    admin.delete_user(&t.user).await;
    let (code, text) = closed_with(&mut events).await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        format!("CONNECTION_FORCED - user '{}' is deleted", t.user)
    );
    assert!(guest.status().connected());
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        403,
        "ACCESS_REFUSED",
    );
    guest.close(200, "bye".into()).await.ok();
    admin.add_user(&t.user, "pw", &[]).await;
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn users_and_permissions_survive_a_restart() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return;
    }
    let t = Tenant::new(&broker.admin(), "durable", Some(("^c-", ".*", ".*"))).await;
    let broker = broker.restart().await;
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert_amqp_error(
        ch.queue_declare(
            "q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        &format!(
            "access to queue 'q' in vhost '{}' refused for user '{}'",
            t.vhost, t.user
        ),
    );
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn the_default_user_is_created_on_the_first_start_only() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return;
    }
    let broker = broker
        .restart_with(|c| c.default_pass = "changed".into())
        .await;
    // The store has users: the default ones were made at the first start.
    let conn = broker.connect_as("guest", "guest", "/").await.unwrap();
    conn.close(200, "bye".into()).await.ok();
    assert!(broker.connect_as("guest", "changed", "/").await.is_err());
    broker.stop().await;
}

#[tokio::test]
async fn rabbitmq_default_variables_make_the_first_user_and_vhost() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return;
    }
    broker.stop().await;
    let dir = temp_dir("rabbitmq-env");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
        .env("RABBITMQ_DEFAULT_USER", "app")
        .env("RABBITMQ_DEFAULT_PASS", "s3cret")
        .env("RABBITMQ_DEFAULT_VHOST", "orders")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the warren binary starts");
    let uri = format!("amqp://app:s3cret@127.0.0.1:{port}/orders");
    let mut connected = None;
    for _ in 0..200 {
        if let Ok(conn) = Connection::connect(&uri, ConnectionProperties::default()).await {
            connected = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    connected.expect("app logs in to vhost orders");
}

// ---- limits ----------------------------------------------------------------

#[tokio::test]
async fn vhost_connection_limit_refuses_with_530() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "vconn", Some((".*", ".*", ".*"))).await;
    admin
        .vhost_limit(&t.vhost, VHostLimit::MaxConnections, Some(1))
        .await;
    let first = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let text = format!(
        "NOT_ALLOWED - access to vhost '{}' refused for user '{}': connection limit (1) is reached",
        t.vhost, t.user
    );
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &text,
    );
    first.close(200, "bye".into()).await.ok();
    // Once the first one is gone, another may open.
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(conn) = broker.connect_as(&t.user, &t.password, &t.vhost).await {
            admitted = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admitted
        .expect("admitted after the first closed")
        .close(200, "bye".into())
        .await
        .ok();
    admin
        .vhost_limit(&t.vhost, VHostLimit::MaxConnections, Some(0))
        .await;
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        "connection limit (0) is reached",
    );
    admin
        .vhost_limit(&t.vhost, VHostLimit::MaxConnections, Some(-1))
        .await;
    broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap()
        .close(200, "bye".into())
        .await
        .ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn vhost_queue_limit_refuses_new_queues_with_406() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "vq", Some((".*", ".*", ".*"))).await;
    admin
        .vhost_limit(&t.vhost, VHostLimit::MaxQueues, Some(1))
        .await;
    let conn = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let declare = async |name: &str| {
        conn.create_channel()
            .await
            .unwrap()
            .queue_declare(
                name.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    declare("lq1").await.unwrap();
    // Redeclaring an existing queue is fine.
    declare("lq1").await.unwrap();
    assert_amqp_error(
        declare("lq2").await,
        406,
        &format!(
            "PRECONDITION_FAILED - cannot declare queue 'lq2': queue limit in vhost '{}' (1) is reached",
            t.vhost
        ),
    );
    let err = declare("")
        .await
        .expect_err("server-named queue refused too");
    let text = reply_text(&err).unwrap_or_default();
    assert!(
        text.starts_with("PRECONDITION_FAILED - cannot declare queue 'amq.gen-")
            && text.ends_with(&format!(
                "': queue limit in vhost '{}' (1) is reached",
                t.vhost
            )),
        "{text}"
    );
    admin
        .vhost_limit(&t.vhost, VHostLimit::MaxQueues, None)
        .await;
    declare("lq2").await.unwrap();
    conn.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn user_connection_limit_refuses_with_530() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "uconn", Some((".*", ".*", ".*"))).await;
    admin
        .user_limit(&t.user, UserLimit::MaxConnections, Some(1))
        .await;
    let first = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    assert_amqp_error(
        broker
            .connect_as(&t.user, &t.password, &t.vhost)
            .await
            .map(|_| ()),
        530,
        &format!(
            "NOT_ALLOWED - connection refused for user '{}': user connection limit (1) is reached",
            t.user
        ),
    );
    first.close(200, "bye".into()).await.ok();
    admin
        .user_limit(&t.user, UserLimit::MaxConnections, None)
        .await;
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn user_channel_limit_counts_every_connection_and_closes_with_530() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "uch", Some((".*", ".*", ".*"))).await;
    admin
        .user_limit(&t.user, UserLimit::MaxChannels, Some(2))
        .await;
    let a = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let b = broker
        .connect_as(&t.user, &t.password, &t.vhost)
        .await
        .unwrap();
    let _a1 = a.create_channel().await.unwrap();
    let b1 = b.create_channel().await.unwrap();
    assert_amqp_error(
        b.create_channel().await.map(|_| ()),
        530,
        &format!(
            "NOT_ALLOWED - number of channels opened for user '{}' has reached the maximum allowed user limit of (2)",
            t.user
        ),
    );
    assert!(!b.status().connected());
    assert!(!b1.status().connected());
    // Channels of the closed connection no longer count (RabbitMQ
    // uncounts them shortly after).
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.create_channel()
        .await
        .expect("a second channel on the open connection");
    a.close(200, "bye".into()).await.ok();
    t.remove().await;
    broker.stop().await;
}

#[tokio::test]
async fn refusals_name_the_failing_method_as_rabbitmq_does() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let t = Tenant::new(&admin, "rawclose", Some(("^c-", ".*", ".*"))).await;
    admin
        .user_limit(&t.user, UserLimit::MaxChannels, Some(1))
        .await;
    let mut c = RawConn::handshake_until_open(broker.addr, &t.user, &t.password, &t.vhost).await;
    c.expect_method(10, 41).await;
    c.open_channel(1).await;
    // A refused queue.declare closes its channel naming queue.declare.
    let mut declare = vec![0, 0];
    declare.extend(short_str("q"));
    declare.push(0);
    declare.extend_from_slice(&0u32.to_be_bytes());
    c.send(&method(1, 50, 10, &declare)).await;
    let (channel, code, _, class, method_id) = c.expect_close().await;
    assert_eq!((channel, code, class, method_id), (1, 403, 50, 10));
    c.send(&method(1, 20, 41, &[])).await;
    // RabbitMQ uncounts a closed channel shortly after its close-ok.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.open_channel(2).await;
    // One channel too many closes the connection, naming no method.
    c.send(&method(3, 20, 10, &short_str(""))).await;
    let (channel, code, text, class, method_id) = c.expect_close().await;
    assert_eq!((channel, code, class, method_id), (0, 530, 0, 0));
    assert!(text.contains("maximum allowed user limit of (1)"), "{text}");
    drop(c);
    // A refused vhost names connection.open.
    admin.clear_permissions(&t.user, &t.vhost).await;
    let mut c = RawConn::handshake_until_open(broker.addr, &t.user, &t.password, &t.vhost).await;
    assert_eq!(c.expect_close().await, (0, 530, vhost_refused(&t), 10, 40));
    drop(c);
    t.remove().await;
    broker.stop().await;
}
