//! `vhosts`: list, one, PUT (create or update), DELETE.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::list::ListQuery;
use super::overview::{details, node_name, parse_body, stats_json};
use super::{AppState, blocking, sampler};
use crate::access::{Put, QueueType, VHostInfo, VHostMetadata};
use crate::stats::{MessageStats, RateKey};

fn vhost_json(state: &AppState, info: &VHostInfo, stats: &MessageStats) -> Value {
    let broker = &state.broker;
    let (mut ready, mut unacked) = (0u64, 0u64);
    if let Some(vhost) = broker.vhost(&info.name) {
        for queue in vhost.queues() {
            let snapshot = queue.snapshot();
            ready += u64::from(snapshot.ready);
            unacked += u64::from(snapshot.unacked);
        }
    }
    let rates = broker
        .rates
        .rates(&RateKey::VHost(info.name.as_str().into()));
    let metadata = &info.metadata;
    json!({
        "name": info.name,
        "description": metadata.description.clone().unwrap_or_default(),
        "tags": metadata.tags,
        "default_queue_type": metadata.default_queue_type.map_or("undefined", QueueType::name),
        "metadata": {
            "description": metadata.description.clone().unwrap_or_default(),
            "tags": metadata.tags,
        },
        "tracing": false,
        "cluster_state": { node_name(): "running" },
        "messages": ready + unacked,
        "messages_details": details(0.0),
        "messages_ready": ready,
        "messages_ready_details": details(0.0),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": details(0.0),
        "message_stats": stats_json(&stats.fields(), &rates),
    })
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let items = blocking(move || {
        let stats = sampler::message_stats_by_vhost(&state.broker);
        state
            .broker
            .access
            .vhosts()
            .iter()
            .filter(|v| caller.sees_vhost(&v.name))
            .map(|v| {
                let s = stats.get(v.name.as_str()).copied().unwrap_or_default();
                vhost_json(&state, v, &s)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(query.answer(items)?))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let info = state
        .broker
        .access
        .vhost(&name)
        .ok_or_else(ApiError::not_found)?;
    if !caller.sees_vhost(&name) {
        return Err(ApiError::access_refused());
    }
    let stats = sampler::message_stats_by_vhost(&state.broker)
        .get(name.as_str())
        .copied()
        .unwrap_or_default();
    Ok(Json(vhost_json(&state, &info, &stats)))
}

/// Tags as a comma-separated string or a list.
pub fn tags_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => crate::access::user::parse_tags(text),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body = parse_body(&body)?;
    let default_queue_type = match body.get("default_queue_type").and_then(Value::as_str) {
        None | Some("undefined") | Some("") => None,
        Some(t) => Some(QueueType::from_name(t)?),
    };
    let metadata = VHostMetadata {
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        tags: tags_of(body.get("tags")),
        default_queue_type,
    };
    let broker = state.broker.clone();
    let put = blocking(move || broker.put_vhost(&name, metadata)).await??;
    super::synced(&state.broker).await;
    Ok(match put {
        Put::Created => StatusCode::CREATED,
        Put::Updated => StatusCode::NO_CONTENT,
    })
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let broker = state.broker.clone();
    blocking(move || broker.delete_vhost(&name)).await??;
    super::synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}
