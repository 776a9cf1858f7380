//! The management HTTP API through real HTTP: the JSON shapes, status
//! codes and error bodies RabbitMQ 3.10's management plugin answers with.
//! Runs against RabbitMQ too (`WARREN_TEST_AMQP_URI` and
//! `WARREN_TEST_HTTP_URI`), whose statistics lag by up to five seconds:
//! counts are polled for.

mod common;

use std::time::Duration;

use common::admin::{Http, encode};
use common::*;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};

/// A request through the API, off the async workers; the status and the
/// body as JSON (Null when empty).
async fn api(http: &Http, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, _, body) = send(http, method, path, body, &[]).await;
    (status, body)
}

async fn send(
    http: &Http,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Value) {
    let http = http.clone();
    let (method, path) = (method.to_string(), path.to_string());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, response_headers, text) = http.send(&method, &path, body, &headers);
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, response_headers, value)
    })
    .await
    .expect("request")
}

/// GET `path` until `done` holds for its JSON (RabbitMQ's statistics are
/// emitted every few seconds); the last answer.
async fn poll(http: &Http, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        let (status, body) = api(http, "GET", path, None).await;
        if status == 200 && done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path} never satisfied the condition; last answer: {last}");
}

fn queue_path(name: &str) -> String {
    format!("/queues/%2F/{}", encode(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_overview_and_nodes_have_rabbitmq_shapes() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let (status, me) = api(&http, "GET", "/whoami", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["name"], "guest");
    assert!(
        me["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("administrator"))
    );
    let (status, overview) = api(&http, "GET", "/overview", None).await;
    assert_eq!(status, 200);
    for key in [
        "connections",
        "channels",
        "exchanges",
        "queues",
        "consumers",
    ] {
        assert!(overview["object_totals"][key].is_u64(), "{key}: {overview}");
    }
    for key in ["messages", "messages_ready", "messages_unacknowledged"] {
        assert!(overview["queue_totals"][key].is_u64(), "{key}");
        assert!(overview["queue_totals"][format!("{key}_details")]["rate"].is_number());
    }
    assert_eq!(
        overview["rabbitmq_version"].as_str().map(|v| &v[..3]),
        Some("3.1")
    );
    assert!(overview["node"].is_string());
    assert!(overview["exchange_types"].as_array().unwrap().len() >= 4);
    let amqp = overview["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["protocol"] == "amqp")
        .expect("an amqp listener");
    assert_eq!(amqp["port"], broker.addr.port());
    let (status, nodes) = api(&http, "GET", "/nodes", None).await;
    assert_eq!(status, 200);
    let node = &nodes[0];
    assert_eq!(node["name"], overview["node"]);
    for key in [
        "mem_used",
        "mem_limit",
        "disk_free",
        "disk_free_limit",
        "uptime",
    ] {
        assert!(node[key].is_u64(), "{key}: {node}");
    }
    assert!(node["mem_alarm"].is_boolean());
    let (status, name) = api(&http, "GET", "/cluster-name", None).await;
    assert_eq!(status, 200);
    assert!(name["name"].is_string());
    let (status, extensions) = api(&http, "GET", "/extensions", None).await;
    assert_eq!(status, 200);
    assert!(extensions.is_array());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_rabbitmq_error_bodies() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let bad = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "guest:wrong")
    );
    let (status, headers, body) =
        send(&http, "GET", "/whoami", None, &[("Authorization", &bad)]).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("www-authenticate") && v.contains("Basic")),
        "{headers:?}"
    );
    let (status, body) = api(&http, "GET", &queue_path(&unique("missing")), None).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    let (status, body) = api(&http, "PUT", "/queues/no-such-vhost-hx/q", Some(json!({}))).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "not_found", "reason": "vhost_not_found"})
    );
    let (status, body) = api(&http, "GET", "/queues?page=0", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_pagination_parameters");
    let (status, body) = api(&http, "PUT", &queue_path("amq.hx"), Some(json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "not_authorised");
    let (status, body) = api(&http, "DELETE", "/exchanges/%2F/amq.direct", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "not_authorised");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_publish_get_purge_and_delete() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let name = unique("hx-queue");
    let path = queue_path(&name);
    let (status, _) = api(&http, "PUT", &path, Some(json!({"durable": true}))).await;
    assert_eq!(status, 201);
    let (status, _) = api(&http, "PUT", &path, Some(json!({"durable": true}))).await;
    assert_eq!(status, 204);
    let (status, body) = api(&http, "PUT", &path, Some(json!({"durable": false}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("inequivalent arg 'durable'")
    );
    let publish = json!({
        "properties": {"content_type": "text/plain", "headers": {"h": "v"}},
        "routing_key": name,
        "payload": "hello",
        "payload_encoding": "string",
    });
    for _ in 0..2 {
        let (status, body) = api(
            &http,
            "POST",
            "/exchanges/%2F/amq.default/publish",
            Some(publish.clone()),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"routed": true}));
    }
    let queue = poll(&http, &path, |q| {
        q["messages"] == 2 && q["message_bytes"] == 10
    })
    .await;
    assert_eq!(queue["messages_ready"], 2);
    assert_eq!(queue["messages_unacknowledged"], 0);
    assert_eq!(queue["durable"], true);
    assert_eq!(queue["type"], "classic");
    assert_eq!(queue["vhost"], "/");
    assert_eq!(queue["message_bytes"], 10);
    assert!(queue["consumer_details"].is_array());
    let get = json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 4});
    let (status, got) = api(&http, "POST", &format!("{path}/get"), Some(get.clone())).await;
    assert_eq!(status, 200);
    let message = &got[0];
    assert_eq!(message["payload"], "hell");
    assert_eq!(message["payload_bytes"], 5);
    assert_eq!(message["payload_encoding"], "string");
    assert_eq!(message["redelivered"], false);
    assert_eq!(message["exchange"], "");
    assert_eq!(message["routing_key"], name.as_str());
    assert_eq!(message["message_count"], 1);
    assert_eq!(message["properties"]["content_type"], "text/plain");
    assert_eq!(message["properties"]["headers"]["h"], "v");
    // Requeued, so it comes back marked redelivered.
    let (_, again) = api(&http, "POST", &format!("{path}/get"), Some(get)).await;
    assert_eq!(again[0]["redelivered"], true);
    let base64 = json!({"count": 5, "ackmode": "ack_requeue_false", "encoding": "base64"});
    let (_, taken) = api(&http, "POST", &format!("{path}/get"), Some(base64)).await;
    assert_eq!(taken.as_array().unwrap().len(), 2);
    assert_eq!(taken[0]["payload"], "aGVsbG8=");
    assert_eq!(taken[0]["payload_encoding"], "base64");
    poll(&http, &path, |q| q["messages"] == 0).await;
    api(
        &http,
        "POST",
        "/exchanges/%2F/amq.default/publish",
        Some(publish.clone()),
    )
    .await;
    poll(&http, &path, |q| q["messages"] == 1).await;
    let (status, body) = api(&http, "DELETE", &format!("{path}?if-empty=true"), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api(&http, "DELETE", &format!("{path}/contents"), None).await;
    assert_eq!(status, 204);
    poll(&http, &path, |q| q["messages"] == 0).await;
    let (status, _) = api(
        &http,
        "POST",
        &format!("{path}/actions"),
        Some(json!({"action": "sync"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "DELETE", &format!("{path}?if-empty=true"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "GET", &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&http, "DELETE", &path, None).await;
    assert_eq!(status, 404);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_bindings_and_routed_publishes() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let exchange = unique("hx-x");
    let queue = unique("hx-bound");
    let xpath = format!("/exchanges/%2F/{}", encode(&exchange));
    let (status, _) = api(
        &http,
        "PUT",
        &xpath,
        Some(json!({"type": "topic", "durable": false, "arguments": {}})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, x) = api(&http, "GET", &xpath, None).await;
    assert_eq!(status, 200);
    assert_eq!(x["type"], "topic");
    assert_eq!(x["durable"], false);
    assert_eq!(x["internal"], false);
    assert_eq!(x["vhost"], "/");
    let (status, body) = api(
        &http,
        "PUT",
        &xpath,
        Some(json!({"type": "fanout", "durable": false})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    api(
        &http,
        "PUT",
        &queue_path(&queue),
        Some(json!({"durable": false})),
    )
    .await;
    let publish = json!({"properties": {}, "routing_key": "a.b", "payload": "x", "payload_encoding": "string"});
    let (_, routed) = api(
        &http,
        "POST",
        &format!("{xpath}/publish"),
        Some(publish.clone()),
    )
    .await;
    assert_eq!(routed, json!({"routed": false}));
    let bind = format!("/bindings/%2F/e/{}/q/{}", encode(&exchange), encode(&queue));
    let (status, headers, _) = send(
        &http,
        "POST",
        &bind,
        Some(json!({"routing_key": "a.*", "arguments": {}})),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let location = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.clone())
        .expect("a Location header");
    // The properties key, escaped twice as RabbitMQ does.
    assert!(
        location.ends_with(&format!("{}/a.%252A", encode(&queue))),
        "{location}"
    );
    let (_, routed) = api(&http, "POST", &format!("{xpath}/publish"), Some(publish)).await;
    assert_eq!(routed, json!({"routed": true}));
    let (status, bindings) = api(&http, "GET", &format!("{xpath}/bindings/source"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        bindings,
        json!([{
            "source": exchange,
            "vhost": "/",
            "destination": queue,
            "destination_type": "queue",
            "routing_key": "a.*",
            "arguments": {},
            "properties_key": "a.%2A",
        }])
    );
    let (_, of_queue) = api(
        &http,
        "GET",
        &format!("{}/bindings", queue_path(&queue)),
        None,
    )
    .await;
    let sources: Vec<&str> = of_queue
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["", exchange.as_str()]);
    let (status, _) = api(&http, "DELETE", &format!("{xpath}?if-unused=true"), None).await;
    assert_eq!(status, 400);
    let (status, _) = api(&http, "DELETE", &format!("{bind}/a.%252A"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "DELETE", &format!("{bind}/a.%252A"), None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&http, "DELETE", &format!("{xpath}?if-unused=true"), None).await;
    assert_eq!(status, 204);
    api(&http, "DELETE", &queue_path(&queue), None).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_sort_filter_and_cut_columns() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let prefix = unique("hx-page");
    for i in 0..5 {
        let (status, _) = api(
            &http,
            "PUT",
            &queue_path(&format!("{prefix}-{i}")),
            Some(json!({"durable": false})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let query = format!(
        "/queues/%2F?page=2&page_size=2&name={}&use_regex=false&sort=name&sort_reverse=true&columns=name,vhost",
        encode(&prefix)
    );
    let (status, page) = api(&http, "GET", &query, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["filtered_count"], 5);
    assert_eq!(page["item_count"], 2);
    assert_eq!(page["page"], 2);
    assert_eq!(page["page_count"], 3);
    assert_eq!(page["page_size"], 2);
    assert!(page["total_count"].as_u64().unwrap() >= 5);
    assert_eq!(
        page["items"],
        json!([
            {"name": format!("{prefix}-2"), "vhost": "/"},
            {"name": format!("{prefix}-1"), "vhost": "/"},
        ])
    );
    // Filters apply to pages only, as in RabbitMQ.
    let regex = format!(
        "/queues?page=1&name={}&use_regex=true&columns=name",
        encode(&format!("^{prefix}-[34]$"))
    );
    let (_, page) = api(&http, "GET", &regex, None).await;
    let mut names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [format!("{prefix}-3"), format!("{prefix}-4")]);
    for i in 0..5 {
        api(&http, "DELETE", &queue_path(&format!("{prefix}-{i}")), None).await;
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_users_permissions_and_tags() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let vhost = unique("hx-vhost");
    let vpath = format!("/vhosts/{}", encode(&vhost));
    let (status, _) = api(
        &http,
        "PUT",
        &vpath,
        Some(json!({"description": "d", "tags": "a,b"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(&http, "PUT", &vpath, Some(json!({"description": "e"}))).await;
    assert_eq!(status, 204);
    let (_, v) = api(&http, "GET", &vpath, None).await;
    assert_eq!(v["name"], vhost.as_str());
    assert_eq!(v["description"], "e");
    let manager = unique("hx-mgmt");
    let nobody = unique("hx-nobody");
    let upath = format!("/users/{}", encode(&manager));
    let (status, _) = api(
        &http,
        "PUT",
        &upath,
        Some(json!({"password": "pw", "tags": "management"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(
        &http,
        "PUT",
        &format!("/users/{}", encode(&nobody)),
        Some(json!({"password": "pw", "tags": ""})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, user) = api(&http, "GET", &upath, None).await;
    assert_eq!(user["tags"], json!(["management"]));
    assert_eq!(user["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert!(user["password_hash"].as_str().unwrap().len() > 20);
    let (_, lonely) = api(&http, "GET", "/users/without-permissions", None).await;
    assert!(
        lonely
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == manager.as_str())
    );
    let ppath = format!("/permissions/{}/{}", encode(&vhost), encode(&manager));
    let (status, _) = api(
        &http,
        "PUT",
        &ppath,
        Some(json!({"configure": ".*", "write": ".*", "read": "^r"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, p) = api(&http, "GET", &ppath, None).await;
    assert_eq!(
        p,
        json!({"user": manager, "vhost": vhost, "configure": ".*", "write": ".*", "read": "^r"})
    );
    let (status, body) = api(
        &http,
        "PUT",
        &format!("/permissions/no-such-vhost-hx/{}", encode(&manager)),
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(
        (status, &body["reason"]),
        (400, &json!("vhost_or_user_not_found"))
    );
    // What the tags let each user do.
    let as_user = |user: &str| {
        let base = http.base().trim_start_matches("http://");
        Http::new(&format!("http://{user}:pw@{base}"))
    };
    let manager_api = as_user(&manager);
    let (status, me) = api(&manager_api, "GET", "/whoami", None).await;
    assert_eq!((status, &me["tags"]), (200, &json!(["management"])));
    let (status, body) = api(&manager_api, "GET", "/users", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "not_authorised", "reason": "Not administrator user"})
    );
    let (status, body) = api(&manager_api, "GET", "/nodes", None).await;
    assert_eq!((status, &body["reason"]), (401, &json!("Not monitor user")));
    let (status, _) = api(
        &manager_api,
        "GET",
        &format!("/queues/{}", encode(&vhost)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(&as_user(&nobody), "GET", "/whoami", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "Not management user");
    // Limits.
    let lpath = format!("/vhost-limits/{}/max-queues", encode(&vhost));
    let (status, _) = api(&http, "PUT", &lpath, Some(json!({"value": 10}))).await;
    assert_eq!(status, 204);
    let (_, limits) = api(
        &http,
        "GET",
        &format!("/vhost-limits/{}", encode(&vhost)),
        None,
    )
    .await;
    assert_eq!(
        limits,
        json!([{"vhost": vhost, "value": {"max-queues": 10}}])
    );
    let (status, _) = api(&http, "DELETE", &ppath, None).await;
    assert_eq!(status, 204);
    let (status, _) = api(
        &http,
        "POST",
        "/users/bulk-delete",
        Some(json!({"users": [manager, nobody]})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "GET", &upath, None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&http, "DELETE", &vpath, None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "GET", &vpath, None).await;
    assert_eq!(status, 404);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_consumers_and_closing_with_a_reason() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let client_name = unique("hx-conn");
    let conn = Connection::connect(
        broker.uri(),
        ConnectionProperties::default().with_connection_name(client_name.clone().into()),
    )
    .await
    .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let queue = unique("hx-consumed");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let _consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "hx-tag".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let connections = poll(&http, "/connections", |list| {
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["user_provided_name"] == client_name.as_str())
    })
    .await;
    let mine = connections
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user_provided_name"] == client_name.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["user"], "guest");
    assert_eq!(mine["vhost"], "/");
    assert_eq!(mine["protocol"], "AMQP 0-9-1");
    assert_eq!(mine["auth_mechanism"], "PLAIN");
    assert!(mine["client_properties"]["capabilities"].is_object());
    let name = mine["name"].as_str().unwrap().to_string();
    let cpath = format!("/connections/{}", encode(&name));
    let (status, one) = api(&http, "GET", &cpath, None).await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], name.as_str());
    let channels = poll(&http, &format!("{cpath}/channels"), |list| {
        list.as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(channels[0]["connection_details"]["name"], name.as_str());
    assert_eq!(channels[0]["number"], 1);
    let consumers = poll(&http, "/consumers/%2F", |list| {
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["queue"]["name"] == queue.as_str())
    })
    .await;
    let consumer = consumers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["queue"]["name"] == queue.as_str())
        .unwrap();
    assert_eq!(consumer["consumer_tag"], "hx-tag");
    assert_eq!(consumer["ack_required"], true);
    assert_eq!(
        consumer["channel_details"]["connection_name"],
        name.as_str()
    );
    let (status, _, _) = send(
        &http,
        "DELETE",
        &cpath,
        None,
        &[("X-Reason", "closed by the http_api test")],
    )
    .await;
    assert_eq!(status, 204);
    for _ in 0..100 {
        if !conn.status().connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!conn.status().connected());
    let error = ch
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect_err("the connection is closed");
    let _ = error;
    poll(&http, "/connections", |list| {
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["user_provided_name"] == client_name.as_str())
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_and_aliveness() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let (status, body) = api(&http, "GET", "/health/checks/alarms", None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = api(&http, "GET", "/health/checks/local-alarms", None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let port = broker.addr.port();
    let (status, body) = api(
        &http,
        "GET",
        &format!("/health/checks/port-listener/{port}"),
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "ok", "port": port})));
    let (status, body) = api(&http, "GET", "/health/checks/port-listener/1", None).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["reason"], "No active listener");
    assert_eq!(body["missing"], 1);
    let (status, body) = api(&http, "GET", "/health/checks/protocol-listener/amqp", None).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "ok", "protocol": "amqp"}))
    );
    let (status, body) = api(&http, "GET", "/health/checks/protocol-listener/stomp", None).await;
    assert_eq!((status, &body["status"]), (503, &json!("failed")));
    let (status, body) = api(&http, "GET", "/health/checks/virtual-hosts", None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = api(&http, "GET", "/health/checks/node-is-quorum-critical", None).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body) = api(&http, "GET", "/aliveness-test/%2F", None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    broker.stop().await;
}

/// Warren's own: counters and rates without a lock per message, read at
/// each request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stats_count_amqp_traffic() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let http = broker.http();
    let (conn, ch) = broker.channel().await;
    let queue = unique("hx-stats");
    ch.queue_declare(
        queue.as_str().into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    for _ in 0..10 {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"0123456789",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let q = poll(&http, &queue_path(&queue), |q| q["messages"] == 10).await;
    assert_eq!(q["message_bytes"], 100);
    assert_eq!(q["message_stats"]["publish"], 10);
    let get = ch
        .basic_get(queue.as_str().into(), Default::default())
        .await
        .expect("get")
        .expect("a message");
    let q = poll(&http, &queue_path(&queue), |q| {
        q["messages_unacknowledged"] == 1
    })
    .await;
    assert_eq!(q["message_stats"]["get"], 1);
    assert_eq!(q["message_bytes_unacknowledged"], 10);
    get.ack(Default::default()).await.expect("ack");
    let q = poll(&http, &queue_path(&queue), |q| {
        q["message_stats"]["ack"] == 1
    })
    .await;
    assert_eq!(q["messages"], 9);
    let overview = poll(&http, "/overview", |o| o["message_stats"]["publish"] == 10).await;
    assert_eq!(overview["message_stats"]["get"], 1);
    let (_, channels) = api(&http, "GET", "/channels", None).await;
    assert_eq!(channels[0]["message_stats"]["publish"], 10);
    conn.close(200, "bye".into()).await.expect("close");
    // Closed channels' counts stay in the totals.
    let overview = poll(&http, "/overview", |o| o["object_totals"]["channels"] == 0).await;
    assert_eq!(overview["message_stats"]["publish"], 10);
    // Rates come from samples a few seconds apart.
    warren::http::sampler::sample(broker.server().unwrap().broker());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_listener_can_be_turned_off() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start_with(|c| c.no_management = true).await;
    assert!(broker.server().unwrap().management_addr().is_none());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_at_the_root() {
    if outside_broker_requested() {
        return;
    }
    let broker = TestBroker::start().await;
    let addr = broker.server().unwrap().management_addr().unwrap();
    let (index, script) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut index = agent.get(&format!("http://{addr}/")).call().expect("GET /");
        let script = agent
            .get(&format!("http://{addr}/js/app.js"))
            .call()
            .expect("GET /js/app.js");
        let content_type = script
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            index.body_mut().read_to_string().unwrap_or_default(),
            content_type,
        )
    })
    .await
    .unwrap();
    assert!(index.contains("<html"), "{index}");
    assert!(script.starts_with("text/javascript"), "{script}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_definitions() {
    let broker = TestBroker::start().await;
    let http = broker.http();
    let vhost = unique("hx-defs");
    let vpath = format!("/vhosts/{}", encode(&vhost));
    api(&http, "PUT", &vpath, Some(json!({}))).await;
    let ppath = format!("/policies/{}/hx-policy", encode(&vhost));
    let policy = json!({"pattern": "^hx", "definition": {"max-length": 5}});
    let (status, _) = api(&http, "PUT", &ppath, Some(policy.clone())).await;
    assert_eq!(status, 201);
    let (status, _) = api(&http, "PUT", &ppath, Some(policy)).await;
    assert_eq!(status, 204);
    let (_, p) = api(&http, "GET", &ppath, None).await;
    assert_eq!(
        p,
        json!({"vhost": vhost, "name": "hx-policy", "pattern": "^hx", "apply-to": "all",
               "definition": {"max-length": 5}, "priority": 0})
    );
    let (_, list) = api(&http, "GET", &format!("/policies/{}", encode(&vhost)), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, body) = api(
        &http,
        "PUT",
        &ppath,
        Some(json!({"pattern": "^hx", "definition": {"max-length": -1}})),
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("bad_request")));
    let (status, _) = api(&http, "DELETE", &ppath, None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&http, "GET", &ppath, None).await;
    assert_eq!(status, 404);
    let queue = unique("hx-imported");
    let definitions = json!({
        "queues": [{"name": queue, "durable": true, "auto_delete": false, "arguments": {}}],
        "exchanges": [], "bindings": [], "policies": [], "parameters": [],
    });
    let (status, body) = api(
        &http,
        "POST",
        &format!("/definitions/{}", encode(&vhost)),
        Some(definitions),
    )
    .await;
    assert!(status == 204 || status == 201, "{status} {body}");
    let (status, _) = api(
        &http,
        "GET",
        &format!("/queues/{}/{}", encode(&vhost), encode(&queue)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, all) = api(&http, "GET", "/definitions", None).await;
    assert_eq!(status, 200);
    for key in [
        "users",
        "vhosts",
        "permissions",
        "queues",
        "exchanges",
        "bindings",
        "policies",
    ] {
        assert!(all[key].is_array(), "{key}");
    }
    assert!(
        all["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == queue.as_str() && q["vhost"] == vhost.as_str())
    );
    let (status, one) = api(
        &http,
        "GET",
        &format!("/definitions/{}", encode(&vhost)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["queues"][0]["name"], queue.as_str());
    api(&http, "DELETE", &vpath, None).await;
    broker.stop().await;
}
