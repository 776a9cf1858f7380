//! `queues`: list, one, PUT (declare), DELETE, purge (`contents`), `get`
//! and `actions`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::auth::Caller;
use super::connections::consumer_json;
use super::error::{ApiError, ApiResult};
use super::exchanges::DeleteQuery;
use super::list::ListQuery;
use super::overview::{details, node_name, parse_body, stats_json};
use super::{AppState, Guard, blocking, flag, json, synced, vhost_of, visible_vhosts};
use crate::access::{Permission, ResourceKind};
use crate::message::QueuedMessage;
use crate::queue::{Queue, QueueSnapshot};
use crate::stats::RateKey;
use crate::vhost::QueueSpec;

/// The names RabbitMQ's connection listing uses for connection `id`.
fn owner_json(state: &AppState, id: u64) -> Value {
    match state.broker.connection(id) {
        Some(c) => json!({
            "name": c.display_name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        }),
        None => Value::Null,
    }
}

pub fn queue_json(
    state: &AppState,
    queue: &Queue,
    snapshot: &QueueSnapshot,
    rates: &[(&'static str, f64)],
) -> Value {
    let rate = |name: &str| {
        rates
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |&(_, r)| r)
    };
    let consumers = snapshot.consumers.len();
    let messages = snapshot.ready + snapshot.unacked;
    let paged_out = snapshot.ready.saturating_sub(snapshot.in_memory);
    let mut value = json!({
        "name": &*queue.name,
        "vhost": &*queue.vhost,
        "type": if queue.args.is_quorum() { "quorum" } else { "classic" },
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner.is_some(),
        "arguments": json::table(&queue.arguments),
        "node": node_name(),
        "state": "running",
        "policy": null,
        "operator_policy": null,
        "effective_policy_definition": {},
        "consumers": consumers,
        "consumer_capacity": if consumers > 0 { 1.0 } else { 0.0 },
        "consumer_utilisation": if consumers > 0 { 1.0 } else { 0.0 },
        "exclusive_consumer_tag": snapshot.consumers.iter().find(|c| c.exclusive).map(|c| &*c.tag),
        "single_active_consumer_tag": if queue.args.single_active_consumer {
            snapshot.consumers.first().map(|c| json!(&*c.tag)).unwrap_or(Value::Null)
        } else {
            Value::Null
        },
        "head_message_timestamp": null,
        "recoverable_slaves": null,
        "memory": snapshot.ready_bytes + snapshot.unacked_bytes,
        "messages": messages,
        "messages_details": details(rate("messages")),
        "messages_ready": snapshot.ready,
        "messages_ready_details": details(rate("messages_ready")),
        "messages_unacknowledged": snapshot.unacked,
        "messages_unacknowledged_details": details(rate("messages_unacknowledged")),
        "messages_ram": snapshot.in_memory + snapshot.unacked,
        "messages_ready_ram": snapshot.in_memory,
        "messages_unacknowledged_ram": snapshot.unacked,
        "messages_paged_out": paged_out,
        "messages_persistent": 0,
        "message_bytes": snapshot.ready_bytes + snapshot.unacked_bytes,
        "message_bytes_ready": snapshot.ready_bytes,
        "message_bytes_unacknowledged": snapshot.unacked_bytes,
        "message_bytes_ram": snapshot.ready_bytes + snapshot.unacked_bytes,
        "message_bytes_paged_out": 0,
        "message_bytes_persistent": 0,
        "message_stats": stats_json(&snapshot.counters.fields(), rates),
    });
    if consumers == 0 {
        value["idle_since"] = json!(iso_time(snapshot.last_used));
    }
    if let Some(owner) = queue.exclusive_owner {
        value["owner_pid_details"] = owner_json(state, owner);
    }
    value
}

/// Milliseconds since the epoch as RabbitMQ writes times:
/// `2026-12-07T23:34:33.417+00:00`.
pub fn iso_time(millis: u64) -> String {
    let seconds = millis / 1000;
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis % 1000
    )
}

fn listing(state: &AppState, caller: &Caller, only: Option<&str>) -> ApiResult<Vec<Value>> {
    let mut items = Vec::new();
    for vhost in visible_vhosts(state, caller, only)? {
        let queues = vhost.queues();
        let keys: Vec<RateKey> = queues
            .iter()
            .map(|q| RateKey::Queue(q.vhost.clone(), q.name.clone()))
            .collect();
        let rates = state.broker.rates.rates_of(keys.iter());
        for (queue, rates) in queues.iter().zip(rates) {
            items.push(queue_json(state, queue, &queue.snapshot(), &rates));
        }
    }
    Ok(items)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let answer = blocking(move || query.answer(listing(&state, &caller, None)?)).await??;
    Ok(Json(answer))
}

pub async fn in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let answer = blocking(move || query.answer(listing(&state, &caller, Some(&vhost))?)).await??;
    Ok(Json(answer))
}

fn find(state: &AppState, caller: &Caller, vhost: &str, name: &str) -> ApiResult<Arc<Queue>> {
    let vhost = vhost_of(state, caller, vhost)?;
    vhost.queue(name).map_err(|_| ApiError::not_found())
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let queue = find(&state, &caller, &vhost, &name)?;
    let snapshot = queue.snapshot();
    let key = RateKey::Queue(queue.vhost.clone(), queue.name.clone());
    let rates = state.broker.rates.rates(&key);
    let mut value = queue_json(&state, &queue, &snapshot, &rates);
    value["consumer_details"] = Value::Array(
        snapshot
            .consumers
            .iter()
            .map(|c| consumer_json(&state, &queue, c))
            .collect(),
    );
    value["deliveries"] = json!([]);
    value["incoming"] = json!([]);
    Ok(Json(value))
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vhost = state
        .broker
        .vhost(&vhost)
        .ok_or_else(ApiError::vhost_not_found)?;
    caller.require_vhost(&vhost.name)?;
    let body = parse_body(&body)?;
    let flag_of =
        |key: &str, default: bool| body.get(key).and_then(Value::as_bool).unwrap_or(default);
    let (durable, auto_delete) = (flag_of("durable", true), flag_of("auto_delete", false));
    let arguments = json::to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    let arguments = crate::channel::with_default_queue_type(
        &state.broker.access,
        &vhost.name,
        (durable, false, auto_delete),
        arguments,
    );
    let spec = QueueSpec {
        name,
        server_named: false,
        durable,
        exclusive: false,
        auto_delete,
        arguments,
    };
    let broker = state.broker.clone();
    let user = caller.name.clone();
    let created = blocking(move || {
        let mut guard = Guard {
            broker: &broker,
            user: &user,
            vhost: &vhost.name,
        };
        vhost
            .declare_queue(spec, 0, &mut guard)
            .map(|(_, created, ..)| created)
    })
    .await??;
    synced(&state.broker).await;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let vhost = vhost_of(&state, &caller, &vhost)?;
    let queue = vhost.queue(&name).map_err(|_| ApiError::not_found())?;
    caller.check_resource(
        &vhost.name,
        ResourceKind::Queue,
        &name,
        Permission::Configure,
    )?;
    queue.check_delete(
        flag(query.if_unused.as_ref()),
        flag(query.if_empty.as_ref()),
    )?;
    blocking(move || {
        if let Some(consumers) = vhost.delete_queue_instance(&queue) {
            for consumer in consumers {
                consumer.channel.cancelled_by_broker(&consumer);
            }
        }
    })
    .await?;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let queue = find(&state, &caller, &vhost, &name)?;
    caller.check_resource(&queue.vhost, ResourceKind::Queue, &name, Permission::Read)?;
    blocking(move || queue.purge()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take up to `count` messages off the head of `queue` as unacknowledged
/// deliveries, each with the count of ready messages behind it.
fn take(queue: &Queue, count: usize) -> Vec<(QueuedMessage, u32)> {
    let mut taken = Vec::new();
    for _ in 0..count {
        let mut got = None;
        queue.get(|message, remaining, _| {
            got = Some((message, remaining));
            None
        });
        match got {
            Some(entry) => taken.push(entry),
            None => break,
        }
    }
    taken
}

/// Take one message and acknowledge it: its body (the aliveness test).
pub fn take_one(queue: &Arc<Queue>) -> Option<bytes::Bytes> {
    let mut taken = take(queue, 1);
    let (message, _) = taken.pop()?;
    let body = message.message.body.clone();
    queue.ack(vec![message]);
    Some(body)
}

pub async fn get_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let queue = find(&state, &caller, &vhost, &name)?;
    caller.check_resource(&queue.vhost, ResourceKind::Queue, &name, Permission::Read)?;
    let body = parse_body(&body)?;
    let count = match body.get("count") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as usize,
        Some(Value::String(s)) => s.parse().unwrap_or(1),
        _ => 1,
    };
    let ackmode = body
        .get("ackmode")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("key_missing: ackmode"))?
        .to_string();
    if !matches!(
        ackmode.as_str(),
        "ack_requeue_true" | "ack_requeue_false" | "reject_requeue_true" | "reject_requeue_false"
    ) {
        return Err(ApiError::bad_request(format!(
            "unknown ackmode '{ackmode}'"
        )));
    }
    let encoding = body
        .get("encoding")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("key_missing: encoding"))?;
    let base64_only = match encoding {
        "auto" => false,
        "base64" => true,
        other => return Err(ApiError::bad_request(format!("unknown encoding '{other}'"))),
    };
    let truncate = match body.get("truncate") {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let answer = blocking(move || {
        let taken = take(&queue, count);
        let mut items = Vec::with_capacity(taken.len());
        let mut messages = Vec::with_capacity(taken.len());
        for (queued, remaining) in taken {
            let message = &queued.message;
            let full = &message.body;
            let shown = match truncate {
                Some(limit) if limit < full.len() => &full[..limit],
                _ => &full[..],
            };
            let (payload, payload_encoding) = match (base64_only, std::str::from_utf8(shown)) {
                (false, Ok(text)) => (text.to_string(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(shown),
                    "base64",
                ),
            };
            items.push(json!({
                "payload_bytes": full.len(),
                "redelivered": queued.redelivered,
                "exchange": &*message.exchange,
                "routing_key": String::from_utf8_lossy(&message.routing_key),
                "message_count": remaining,
                "properties": json::properties(&message.properties.decode()),
                "payload": payload,
                "payload_encoding": payload_encoding,
            }));
            messages.push(queued);
        }
        match ackmode.as_str() {
            "ack_requeue_false" => queue.ack(messages),
            "reject_requeue_false" => queue.discard(messages),
            _ => queue.requeue(messages),
        }
        Value::Array(items)
    })
    .await?;
    Ok(Json(answer))
}

pub async fn action(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let _queue = find(&state, &caller, &vhost, &name)?;
    let body = parse_body(&body)?;
    match body.get("action").and_then(Value::as_str) {
        // A single node mirrors nothing: there is nothing to sync.
        Some("sync") | Some("cancel_sync") => Ok(StatusCode::NO_CONTENT),
        Some(other) => Err(ApiError::bad_request(format!("Unknown action: {other}"))),
        None => Err(ApiError::bad_request("key_missing: action")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_as_rabbitmq_writes_them() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(
            super::iso_time(1_796_686_473_417),
            "2026-12-07T23:34:33.417+00:00"
        );
    }
}
