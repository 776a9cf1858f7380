//! `connections` (list, one, DELETE with RabbitMQ's `X-Reason`),
//! `channels` and `consumers`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::list::ListQuery;
use super::overview::{details, node_name, stats_json};
use super::{AppState, json, vhost_of, visible_vhosts};
use crate::client::handle::ConnectionHandle;
use crate::protocol::{AmqpError, ReplyCode};
use crate::queue::{Consumer, Queue};
use crate::stats::{ChannelView, RateKey};

fn connection_json(state: &AppState, c: &ConnectionHandle) -> Value {
    let rates = state.broker.rates.rates(&RateKey::Connection(c.id));
    let rate = |name: &str| {
        rates
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |&(_, r)| r)
    };
    let stats = &c.stats;
    let info = &c.info;
    let local = info.local;
    json!({
        "name": c.display_name(),
        "node": node_name(),
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": "running",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": &*c.vhost,
        "user_provided_name": c.name,
        "auth_mechanism": info.auth_mechanism,
        "client_properties": json::table(&info.client_properties),
        "connected_at": info.connected_at,
        "channels": stats.channel_count(),
        "channel_max": info.channel_max,
        "frame_max": c.frame_max,
        "timeout": info.heartbeat,
        "host": local.map(|a| a.ip().to_string()),
        "port": local.map(|a| a.port()),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "ssl": false,
        "ssl_protocol": null,
        "ssl_key_exchange": null,
        "ssl_cipher": null,
        "ssl_hash": null,
        "peer_cert_subject": null,
        "peer_cert_issuer": null,
        "peer_cert_validity": null,
        "recv_oct": stats.recv_oct.get(),
        "recv_oct_details": details(rate("recv_oct")),
        "recv_cnt": stats.recv_cnt.get(),
        "send_oct": stats.send_oct.get(),
        "send_oct_details": details(rate("send_oct")),
        "send_cnt": stats.send_cnt.get(),
        "send_pend": 0,
    })
}

fn visible_connections(
    state: &AppState,
    caller: &Caller,
    vhost: Option<&str>,
) -> Vec<Arc<ConnectionHandle>> {
    let mut list: Vec<_> = state
        .broker
        .connections()
        .into_iter()
        .filter(|c| caller.sees_user(&c.user) && vhost.is_none_or(|v| *c.vhost == *v))
        .collect();
    list.sort_by_key(|c| c.id);
    list
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let items = visible_connections(&state, &caller, None)
        .iter()
        .map(|c| connection_json(&state, c))
        .collect();
    Ok(Json(query.answer(items)?))
}

pub async fn in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    vhost_of(&state, &caller, &vhost)?;
    let items = visible_connections(&state, &caller, Some(&vhost))
        .iter()
        .map(|c| connection_json(&state, c))
        .collect();
    Ok(Json(query.answer(items)?))
}

fn find(state: &AppState, caller: &Caller, name: &str) -> ApiResult<Arc<ConnectionHandle>> {
    visible_connections(state, caller, None)
        .into_iter()
        .find(|c| c.display_name() == name)
        .ok_or_else(ApiError::not_found)
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let connection = find(&state, &caller, &name)?;
    Ok(Json(connection_json(&state, &connection)))
}

/// Close a connection with 320 CONNECTION_FORCED and the text of the
/// `X-Reason` header (RabbitMQ's default: "Closed via management plugin").
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let connection = find(&state, &caller, &name)?;
    if !caller.is_admin() && connection.user != caller.name {
        return Err(ApiError::access_refused());
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_string();
    let error = AmqpError::new(ReplyCode::ConnectionForced, reason);
    state.broker.close_connection(connection.id, error);
    Ok(StatusCode::NO_CONTENT)
}

fn channel_name(c: &ConnectionHandle, number: u16) -> String {
    format!("{} ({number})", c.display_name())
}

fn channel_json(state: &AppState, c: &ConnectionHandle, channel: &dyn ChannelView) -> Value {
    let stats = channel.stats();
    let rates = state
        .broker
        .rates
        .rates(&RateKey::Channel(c.id, stats.number));
    json!({
        "name": channel_name(c, stats.number),
        "node": node_name(),
        "number": stats.number,
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": &*c.vhost,
        "connection_details": {
            "name": c.display_name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "state": "running",
        "confirm": stats.confirm_mode.load(Relaxed),
        "transactional": stats.transactional.load(Relaxed),
        "prefetch_count": stats.prefetch_count.load(Relaxed),
        "global_prefetch_count": stats.global_prefetch_count.load(Relaxed),
        "consumer_count": stats.consumer_count.load(Relaxed),
        "messages_unacknowledged": channel.unacked(),
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "pending_raft_commands": 0,
        "message_stats": stats_json(&stats.message_stats().fields(), &rates),
    })
}

fn channels_of_connections(state: &AppState, connections: &[Arc<ConnectionHandle>]) -> Vec<Value> {
    let mut items = Vec::new();
    for c in connections {
        for channel in c.stats.channels() {
            items.push(channel_json(state, c, channel.as_ref()));
        }
    }
    items
}

pub async fn channels(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let connections = visible_connections(&state, &caller, None);
    Ok(Json(
        query.answer(channels_of_connections(&state, &connections))?,
    ))
}

pub async fn channels_in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    vhost_of(&state, &caller, &vhost)?;
    let connections = visible_connections(&state, &caller, Some(&vhost));
    Ok(Json(
        query.answer(channels_of_connections(&state, &connections))?,
    ))
}

pub async fn channels_of(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let connection = find(&state, &caller, &name)?;
    Ok(Json(Value::Array(channels_of_connections(
        &state,
        &[connection],
    ))))
}

pub async fn channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    for c in visible_connections(&state, &caller, None) {
        for channel in c.stats.channels() {
            if channel_name(&c, channel.stats().number) == name {
                let mut value = channel_json(&state, &c, channel.as_ref());
                value["consumer_details"] = Value::Array(consumers_of_channel(
                    &state,
                    &caller,
                    c.id,
                    channel.stats().number,
                ));
                return Ok(Json(value));
            }
        }
    }
    Err(ApiError::not_found())
}

/// A consumer as RabbitMQ lists it.
pub fn consumer_json(state: &AppState, queue: &Queue, consumer: &Consumer) -> Value {
    let channel_details = match consumer
        .channel
        .owner()
        .and_then(|(id, number)| Some((state.broker.connection(id)?, number)))
    {
        Some((c, number)) => json!({
            "name": channel_name(&c, number),
            "number": number,
            "connection_name": c.display_name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
            "user": c.user,
            "node": node_name(),
        }),
        None => json!({}),
    };
    json!({
        "consumer_tag": &*consumer.tag,
        "queue": {"name": &*queue.name, "vhost": &*queue.vhost},
        "channel_details": channel_details,
        "ack_required": !consumer.no_ack,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        "active": true,
        "activity_status": "up",
        "consumer_timeout": queue.consumer_timeout().unwrap_or(state.broker.config.consumer_timeout_ms),
        "arguments": json::table(&consumer.arguments),
    })
}

fn all_consumers(state: &AppState, caller: &Caller, only: Option<&str>) -> ApiResult<Vec<Value>> {
    let mut items = Vec::new();
    for vhost in visible_vhosts(state, caller, only)? {
        for queue in vhost.queues() {
            for consumer in queue.snapshot().consumers {
                items.push(consumer_json(state, &queue, &consumer));
            }
        }
    }
    Ok(items)
}

fn consumers_of_channel(state: &AppState, caller: &Caller, id: u64, number: u16) -> Vec<Value> {
    let mut items = Vec::new();
    let Ok(vhosts) = visible_vhosts(state, caller, None) else {
        return items;
    };
    for vhost in vhosts {
        for queue in vhost.queues() {
            for consumer in queue.snapshot().consumers {
                if consumer.channel.owner() == Some((id, number)) {
                    items.push(consumer_json(state, &queue, &consumer));
                }
            }
        }
    }
    items
}

pub async fn consumers(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(all_consumers(&state, &caller, None)?)))
}

pub async fn consumers_in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(all_consumers(
        &state,
        &caller,
        Some(&vhost),
    )?)))
}
