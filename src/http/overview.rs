//! The broker as a whole: `overview`, `whoami`, `nodes`, `extensions`,
//! `cluster-name`, the health checks and `aliveness-test`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::sampler;
use super::{AppState, queues};
use crate::stats::{MessageStats, RateKey};
use crate::vhost::QueueSpec;

/// The RabbitMQ version whose management API Warren follows.
pub const RABBITMQ_VERSION: &str = "3.10.8";

/// This node's name, as RabbitMQ's `rabbit@host` (asked of the system
/// once: listings name the node in every item).
pub fn node_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("warren@{}", hostname()))
        .clone()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match ok {
        true if end > 0 => String::from_utf8_lossy(&buf[..end])
            .split('.')
            .next()
            .unwrap_or("localhost")
            .to_string(),
        _ => "localhost".to_string(),
    }
}

/// `{"rate": r}`.
pub fn details(rate: f64) -> Value {
    json!({ "rate": rate })
}

/// Counters with their `_details` rates, as RabbitMQ's `message_stats`.
pub fn stats_json(fields: &[(&'static str, u64)], rates: &[(&'static str, f64)]) -> Value {
    let mut out = Map::new();
    for &(name, value) in fields {
        let rate = rates
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |&(_, r)| r);
        out.insert(name.to_string(), json!(value));
        out.insert(format!("{name}_details"), details(rate));
    }
    Value::Object(out)
}

fn exchange_types() -> Value {
    let described = |name: &str| {
        json!({
            "name": name,
            "description": format!("AMQP {name} exchange, as per the AMQP specification"),
            "enabled": true,
        })
    };
    json!([
        described("direct"),
        described("fanout"),
        described("headers"),
        described("topic"),
        {"name": "x-delayed-message", "description": "Delayed Message Exchange", "enabled": true},
    ])
}

fn listeners(state: &AppState) -> Value {
    let node = node_name();
    json!([
        {"node": node, "protocol": "amqp", "ip_address": state.amqp.ip().to_string(), "port": state.amqp.port(), "socket_opts": {}},
        {"node": node, "protocol": "http", "ip_address": state.http.ip().to_string(), "port": state.http.port(), "socket_opts": {}},
    ])
}

pub async fn overview(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let broker = &state.broker;
    let rates = &broker.rates;
    let mut totals = MessageStats::default();
    for (vhost, stats) in sampler::message_stats_by_vhost(broker) {
        if caller.sees_vhost(&vhost) {
            totals.add(&stats);
        }
    }
    let (mut queues, mut exchanges, mut consumers) = (0usize, 0usize, 0usize);
    let (mut ready, mut unacked) = (0u64, 0u64);
    for name in broker.vhost_names() {
        if !caller.sees_vhost(&name) {
            continue;
        }
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        exchanges += vhost.exchange_count();
        for queue in vhost.queues() {
            let snapshot = queue.snapshot();
            queues += 1;
            consumers += snapshot.consumers.len();
            ready += u64::from(snapshot.ready);
            unacked += u64::from(snapshot.unacked);
        }
    }
    let connections: Vec<_> = broker
        .connections()
        .into_iter()
        .filter(|c| caller.sees_user(&c.user) && caller.sees_vhost(&c.vhost))
        .collect();
    let channels: usize = connections.iter().map(|c| c.stats.channel_count()).sum();
    let key = RateKey::Overview;
    let overview_rates = rates.rates(&key);
    let rate = |name: &str| {
        overview_rates
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |&(_, r)| r)
    };
    let cluster_name = state.cluster_name();
    Ok(Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {
            "global": [600, 3600, 28800, 86400],
            "basic": [600, 3600],
            "detailed": [600],
        },
        "exchange_types": exchange_types(),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Warren",
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": cluster_name,
        "erlang_version": "none (Warren is written in Rust)",
        "erlang_full_version": "none (Warren is written in Rust)",
        "release_series_support_status": "supported",
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": stats_json(&totals.fields(), &overview_rates),
        "churn_rates": {},
        "queue_totals": {
            "messages": ready + unacked,
            "messages_details": details(rate("messages")),
            "messages_ready": ready,
            "messages_ready_details": details(rate("messages_ready")),
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": details(rate("messages_unacknowledged")),
        },
        "object_totals": {
            "channels": channels,
            "connections": connections.len(),
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "statistics_db_event_queue": 0,
        "node": node_name(),
        "listeners": listeners(&state),
        "contexts": [{
            "node": node_name(),
            "description": "Warren Management",
            "path": "/",
            "port": state.http.port().to_string(),
        }],
    })))
}

pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.name, "tags": caller.tags}))
}

fn node_json(state: &AppState) -> Value {
    let broker = &state.broker;
    let alarms = broker.alarms.state();
    let mem_used = crate::alarm::process_rss().unwrap_or(0);
    let disk_free = crate::alarm::disk_free(&broker.config.data_dir).unwrap_or(0);
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "name": node_name(),
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": broker.started.elapsed().as_millis() as u64,
        "processors": processors,
        "rates_mode": "basic",
        "mem_used": mem_used,
        "mem_limit": broker.alarms.memory_limit(),
        "mem_alarm": alarms.memory,
        "disk_free": disk_free,
        "disk_free_limit": broker.alarms.disk_limit(),
        "disk_free_alarm": alarms.disk,
        "fd_used": open_files(),
        "fd_total": fd_limit(),
        "sockets_used": broker.connection_count(),
        "sockets_total": fd_limit(),
        "proc_used": 0,
        "proc_total": 0,
        "run_queue": 0,
        "partitions": [],
        "exchange_types": exchange_types(),
        "auth_mechanisms": [
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
        ],
        "applications": [],
        "contexts": [],
        "enabled_plugins": ["rabbitmq_management"],
        "cluster_links": [],
        "net_ticktime": 60,
        "log_files": [],
        "config_files": [],
    })
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    }
}

pub async fn nodes(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    Ok(Json(json!([node_json(&state)])))
}

pub async fn node(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    if node != node_name() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&state)))
}

pub async fn extensions(_caller: Caller) -> Json<Value> {
    Json(json!([]))
}

pub async fn cluster_name(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({"name": state.cluster_name()}))
}

pub async fn set_cluster_name(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body: Value = parse_body(&body)?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    *state.cluster_name.lock() = name.to_string();
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON body; RabbitMQ's 400 `not_json` otherwise. An empty body is `{}`.
pub fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))
}

fn failed(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub async fn ok(_caller: Caller) -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn alarms(State(state): State<AppState>, _caller: Caller) -> Response {
    let alarms = state.broker.alarms.state();
    if !alarms.active() {
        return Json(json!({"status": "ok"})).into_response();
    }
    let node = node_name();
    let mut list = Vec::new();
    if alarms.memory {
        list.push(json!({"node": node, "resource": "memory"}));
    }
    if alarms.disk {
        list.push(json!({"node": node, "resource": "disk"}));
    }
    failed(json!({
        "status": "failed",
        "reason": "There are alarms in effect in the cluster",
        "alarms": list,
    }))
}

pub async fn port_listener(
    State(state): State<AppState>,
    _caller: Caller,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid port: {port}")))?;
    let ports = [state.amqp.port(), state.http.port()];
    if ports.contains(&port) {
        return Ok(Json(json!({"status": "ok", "port": port})).into_response());
    }
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    Ok(failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": port,
        "ports": sorted,
    })))
}

pub async fn protocol_listener(
    State(_state): State<AppState>,
    _caller: Caller,
    Path(protocol): Path<String>,
) -> Response {
    let known = match protocol.to_ascii_lowercase().as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1" => Some("amqp"),
        "http" | "management" => Some("http"),
        _ => None,
    };
    match known {
        Some(_) => Json(json!({"status": "ok", "protocol": protocol})).into_response(),
        None => failed(json!({
            "status": "failed",
            "reason": "No active listener",
            "missing": protocol,
            "protocols": ["amqp", "http"],
        })),
    }
}

pub async fn virtual_hosts(_caller: Caller) -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn quorum_critical(_caller: Caller) -> Json<Value> {
    Json(json!({"status": "ok", "reason": "single node cluster"}))
}

/// RabbitMQ's aliveness test: declare `aliveness-test` in the vhost,
/// publish a message to it and get it back.
pub async fn aliveness(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    let broker = state.broker.clone();
    let vhost = broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    caller.require_vhost(&vhost.name)?;
    let queue = tokio::task::spawn_blocking(move || {
        let (queue, ..) = vhost.declare_queue(
            QueueSpec {
                name: "aliveness-test".to_string(),
                server_named: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments: Default::default(),
            },
            0,
            &mut crate::vhost::NoGuard,
        )?;
        Ok::<_, crate::protocol::AmqpError>(queue)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let message = crate::message::Message::new(
        Arc::from(""),
        bytes::Bytes::from_static(b"aliveness-test"),
        crate::protocol::Properties::default(),
        bytes::Bytes::from_static(b"test_message"),
    );
    queue.publish(Arc::new(message));
    let got = queues::take_one(&queue);
    match got.as_deref() {
        Some(b"test_message") => Ok(Json(json!({"status": "ok"}))),
        _ => Err(ApiError::internal("aliveness test failed")),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found()
}
