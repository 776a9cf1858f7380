//! Definitions export and import through the library API and the
//! `--definitions` start-up flag. (The round trip with a real RabbitMQ is in
//! the interop suite, `interop/definitions/`.) Warren's own machinery: these
//! skip when the suite runs against an outside broker.

mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use serde_json::{Value, json};
use warren::definitions;

/// A definitions file with one of everything, in RabbitMQ's format.
fn sample() -> Value {
    json!({
        "rabbit_version": "3.10.8",
        "users": [
            {"name": "app", "password": "secret", "tags": "management"},
            // "test12" hashed by RabbitMQ (its documentation's example).
            {"name": "imported", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {"max-channels": 5}}
        ],
        "vhosts": [{"name": "orders", "description": "Orders", "tags": ["prod"]}],
        "permissions": [
            {"user": "app", "vhost": "orders", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "imported", "vhost": "orders", "configure": "", "write": "", "read": ".*"}
        ],
        "topic_permissions": [
            {"user": "app", "vhost": "orders", "exchange": "events", "write": "^orders\\.", "read": ".*"}
        ],
        "parameters": [
            {"vhost": "orders", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 100}},
            {"vhost": "orders", "component": "operator_policy", "name": "cap",
             "value": {"pattern": ".*", "definition": {"max-length": 1000}, "priority": 0, "apply-to": "queues"}}
        ],
        "global_parameters": [{"name": "cluster_name", "value": "rabbit@somewhere"}],
        "policies": [
            {"vhost": "orders", "name": "dlx", "pattern": "^work", "apply-to": "queues",
             "definition": {"dead-letter-exchange": "dead"}, "priority": 1}
        ],
        "queues": [
            {"name": "work", "vhost": "orders", "durable": true, "auto_delete": false,
             "arguments": {"x-max-length": 10, "x-queue-type": "classic"}},
            {"name": "dead-q", "vhost": "orders", "durable": true, "auto_delete": false, "arguments": {}}
        ],
        "exchanges": [
            {"name": "events", "vhost": "orders", "type": "topic", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}},
            {"name": "dead", "vhost": "orders", "type": "fanout", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}}
        ],
        "bindings": [
            {"source": "events", "vhost": "orders", "destination": "work", "destination_type": "queue",
             "routing_key": "orders.#", "arguments": {}},
            {"source": "dead", "vhost": "orders", "destination": "dead-q", "destination_type": "queue",
             "routing_key": "", "arguments": {}}
        ]
    })
}

/// The sections that describe the imported things, without the default
/// user and vhost (which only one of the brokers compared has).
fn comparable(mut defs: Value) -> Value {
    for key in [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
    ] {
        defs.as_object_mut().map(|o| o.remove(key));
    }
    for section in ["users", "permissions"] {
        if let Some(items) = defs[section].as_array_mut() {
            items.retain(|u| u["name"] != "guest" && u["user"] != "guest");
        }
    }
    if let Some(items) = defs["vhosts"].as_array_mut() {
        items.retain(|v| v["name"] != "/");
    }
    defs
}

#[tokio::test]
async fn an_import_creates_everything_and_exports_back_the_same() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let b = broker.server().expect("in-process").broker().clone();
    let imported = tokio::task::spawn_blocking({
        let b = b.clone();
        move || definitions::import(&b, &sample())
    })
    .await
    .unwrap()
    .expect("import");
    assert_eq!(
        (imported.users, imported.queues, imported.bindings),
        (2, 2, 2)
    );
    // The imported hash logs in; the exchange, binding and policies work.
    let (conn, ch) = broker.channel_as("imported", "test12", "orders").await;
    let (app, app_ch) = broker.channel_as("app", "secret", "orders").await;
    app_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    app_ch
        .basic_publish(
            "events".into(),
            "orders.created".into(),
            BasicPublishOptions::default(),
            b"o1",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let got = ch
        .basic_get("work".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("routed by the imported binding");
    got.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let mut dead = 0;
    for _ in 0..50 {
        dead = declare_passive(&ch, "dead-q")
            .await
            .unwrap()
            .message_count();
        if dead == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(dead, 1, "dead-lettered by the imported policy");
    app.close(200, "bye".into()).await.ok();
    conn.close(200, "bye".into()).await.ok();

    // Export, import into a fresh broker, export again: the same.
    let first = definitions::export(&b, None);
    assert_eq!(first["policies"][0]["name"], "dlx");
    assert_eq!(first["parameters"].as_array().map(Vec::len), Some(2));
    let fresh = TestBroker::start().await;
    let fb = fresh.server().expect("in-process").broker().clone();
    let copy = first.clone();
    tokio::task::spawn_blocking({
        let fb = fb.clone();
        move || definitions::import(&fb, &copy)
    })
    .await
    .unwrap()
    .expect("re-import");
    let second = definitions::export(&fb, None);
    assert_eq!(comparable(first.clone()), comparable(second));
    // Importing again changes nothing and succeeds (idempotent).
    tokio::task::spawn_blocking({
        let fb = fb.clone();
        move || definitions::import(&fb, &first)
    })
    .await
    .unwrap()
    .expect("import again");
    // One vhost, in RabbitMQ's per-vhost format.
    let one = definitions::export(&fb, Some("orders"));
    assert!(one.get("users").is_none());
    assert_eq!(one["queues"][0].get("vhost"), None);
    drop((b, fb));
    fresh.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_names_the_problem() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let b = broker.server().expect("in-process").broker().clone();
    let mut bad = sample();
    bad["queues"][1]["arguments"] = json!({"x-message-ttl": -5});
    let error = tokio::task::spawn_blocking({
        let b = b.clone();
        move || definitions::import(&b, &bad)
    })
    .await
    .unwrap()
    .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid definitions: queues[1] ('dead-q'): PRECONDITION_FAILED - invalid arg \
         'x-message-ttl' for queue 'dead-q' in vhost 'orders': {value_negative,-5}"
    );
    assert!(b.vhost("orders").is_none(), "nothing was applied");
    assert!(!b.access.user_exists("app"));
    let mut dangling = sample();
    dangling["bindings"][0]["destination"] = json!("missing");
    let error = definitions::import(&b, &dangling).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid definitions: bindings[0] ('events'): no queue 'missing' in vhost 'orders'"
    );
    let mut plugin = sample();
    plugin["parameters"][0]["component"] = json!("shovel");
    assert!(
        definitions::import(&b, &plugin)
            .expect_err("refused")
            .to_string()
            .contains("component 'shovel' is not supported")
    );
    drop(b);
    broker.stop().await;
}

#[tokio::test]
async fn the_definitions_flag_imports_at_every_start() {
    if outside_broker_requested() {
        return;
    }
    let dir = temp_dir("definitions-file");
    let file = dir.join("definitions.json");
    std::fs::write(&file, sample().to_string()).unwrap();
    let broker = TestBroker::start_with(|c| c.definitions = Some(file.clone())).await;
    let (conn, ch) = broker.channel_as("app", "secret", "orders").await;
    ch.exchange_declare(
        "events".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the imported exchange exists");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    ch.queue_declare(
        "work".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("the imported queue, equivalent");
    conn.close(200, "bye".into()).await.ok();
    // A second start imports again over what is stored: still fine.
    let broker = broker.restart().await;
    let (conn, _ch) = broker.channel_as("imported", "test12", "orders").await;
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
    // An invalid file stops the start.
    std::fs::write(&file, r#"{"queues": [{"name": "q"}]}"#).unwrap();
    let data = temp_dir("definitions-bad");
    let mut config = warren::Config::ephemeral(&data);
    config.definitions = Some(file.clone());
    let error = warren::Server::start(config).await.expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("queues[0] ('q'): 'vhost' is missing"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&data);
}
