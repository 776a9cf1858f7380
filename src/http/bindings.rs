//! `bindings`: lists (all, per vhost, of an exchange or queue, between two
//! ends), POST (bind) and DELETE (unbind) by RabbitMQ's `properties_key`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::list::ListQuery;
use super::overview::parse_body;
use super::{AppState, blocking, exchange_name, json, synced, vhost_of, visible_vhosts};
use crate::access::{Permission, ResourceKind};
use crate::vhost::{BindTarget, BindingInfo, VHost};

/// RabbitMQ's `properties_key`: the routing key escaped ("~" when
/// empty), and a digest of the arguments when there are any.
fn properties_key(binding: &BindingInfo) -> String {
    let key = super::percent_encode(&binding.routing_key);
    if binding.arguments.inner().is_empty() {
        if key.is_empty() {
            return "~".to_string();
        }
        return key;
    }
    let encoded = crate::protocol::table::encode_table(&binding.arguments);
    let digest = crc32fast::hash(&encoded);
    format!("{key}~{digest:08x}")
}

fn binding_json(vhost: &VHost, binding: &BindingInfo) -> Value {
    json!({
        "source": &*binding.source,
        "vhost": &*vhost.name,
        "destination": &*binding.destination,
        "destination_type": if binding.to_queue { "queue" } else { "exchange" },
        "routing_key": binding.routing_key,
        "arguments": json::table(&binding.arguments),
        "properties_key": properties_key(binding),
    })
}

fn listing(
    state: &AppState,
    caller: &Caller,
    only: Option<&str>,
    keep: impl Fn(&BindingInfo) -> bool,
) -> ApiResult<Vec<Value>> {
    let mut items = Vec::new();
    for vhost in visible_vhosts(state, caller, only)? {
        let mut bindings: Vec<BindingInfo> =
            vhost.binding_infos().into_iter().filter(&keep).collect();
        bindings.sort_by(|a, b| {
            (&a.source, &a.destination, &a.routing_key).cmp(&(
                &b.source,
                &b.destination,
                &b.routing_key,
            ))
        });
        items.extend(bindings.iter().map(|b| binding_json(&vhost, b)));
    }
    Ok(items)
}

/// Bindings keep their order (source, destination, key) unless sorted.
fn answer(query: &ListQuery, items: Vec<Value>) -> ApiResult<Json<Value>> {
    if query.sort.is_none() && query.page.is_none() {
        return Ok(Json(Value::Array(items)));
    }
    Ok(Json(query.answer(items)?))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    answer(&query, listing(&state, &caller, None, |_| true)?)
}

pub async fn in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    answer(&query, listing(&state, &caller, Some(&vhost), |_| true)?)
}

fn require_exchange(vhost: &VHost, name: &str) -> ApiResult<()> {
    if name.is_empty() || vhost.exchange_names().iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

pub async fn of_source(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = vhost_of(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    require_exchange(&v, &name)?;
    let items = listing(&state, &caller, Some(&vhost), |b| *b.source == *name)?;
    Ok(Json(Value::Array(items)))
}

pub async fn of_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = vhost_of(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    require_exchange(&v, &name)?;
    let items = listing(&state, &caller, Some(&vhost), |b| {
        !b.to_queue && *b.destination == *name
    })?;
    Ok(Json(Value::Array(items)))
}

pub async fn of_queue(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = vhost_of(&state, &caller, &vhost)?;
    v.queue(&name).map_err(|_| ApiError::not_found())?;
    let items = listing(&state, &caller, Some(&vhost), |b| {
        b.to_queue && *b.destination == *name
    })?;
    Ok(Json(Value::Array(items)))
}

/// `q` or `e` in a binding path.
fn to_queue(kind: &str) -> ApiResult<bool> {
    match kind {
        "q" => Ok(true),
        "e" => Ok(false),
        _ => Err(ApiError::not_found()),
    }
}

/// The two ends of a binding path must exist.
fn check_ends(vhost: &VHost, source: &str, queue: bool, destination: &str) -> ApiResult<()> {
    require_exchange(vhost, source)?;
    if queue {
        vhost
            .queue(destination)
            .map_err(|_| ApiError::not_found())?;
        Ok(())
    } else {
        require_exchange(vhost, exchange_name(destination))
    }
}

pub async fn between(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let queue = to_queue(&kind)?;
    let v = vhost_of(&state, &caller, &vhost)?;
    let source = exchange_name(&source).to_string();
    check_ends(&v, &source, queue, &destination)?;
    let items = listing(&state, &caller, Some(&vhost), |b| {
        *b.source == *source && b.to_queue == queue && *b.destination == *destination
    })?;
    Ok(Json(Value::Array(items)))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let queue = to_queue(&kind)?;
    let v = vhost_of(&state, &caller, &vhost)?;
    let source = exchange_name(&source).to_string();
    let found = v.binding_infos().into_iter().find(|b| {
        *b.source == *source
            && b.to_queue == queue
            && *b.destination == *destination
            && properties_key(b) == props
    });
    match found {
        Some(b) => Ok(Json(binding_json(&v, &b))),
        None => Err(ApiError::not_found()),
    }
}

/// RabbitMQ's checks of a binding change: write on the destination, read
/// on the source (the default exchange is refused by the vhost).
fn check_binding(
    caller: &Caller,
    vhost: &str,
    source: &str,
    queue: bool,
    destination: &str,
) -> ApiResult<()> {
    let kind = if queue {
        ResourceKind::Queue
    } else {
        ResourceKind::Exchange
    };
    caller.check_resource(vhost, kind, destination, Permission::Write)?;
    caller.check_resource(vhost, ResourceKind::Exchange, source, Permission::Read)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let queue = to_queue(&kind)?;
    let v = vhost_of(&state, &caller, &vhost)?;
    let source = exchange_name(&source).to_string();
    check_ends(&v, &source, queue, &destination)?;
    let body = parse_body(&body)?;
    let routing_key = body
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let arguments = json::to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    check_binding(&caller, &v.name, &source, queue, &destination)?;
    let info = BindingInfo {
        source: source.as_str().into(),
        destination: destination.as_str().into(),
        to_queue: queue,
        routing_key: routing_key.clone(),
        arguments: arguments.clone(),
    };
    // The properties key (already escaped) is escaped again in the address.
    let location = format!(
        "{}/{}",
        super::percent_encode(&destination),
        super::percent_encode(&properties_key(&info))
    );
    let v2 = v.clone();
    blocking(move || {
        let target = if queue {
            BindTarget::Queue(&destination)
        } else {
            BindTarget::Exchange(&destination)
        };
        v2.bind(&source, target, &routing_key, arguments, 0)
    })
    .await??;
    synced(&state.broker).await;
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let queue = to_queue(&kind)?;
    let v = vhost_of(&state, &caller, &vhost)?;
    let source = exchange_name(&source).to_string();
    let found = v
        .binding_infos()
        .into_iter()
        .find(|b| {
            *b.source == *source
                && b.to_queue == queue
                && *b.destination == *destination
                && properties_key(b) == props
        })
        .ok_or_else(ApiError::not_found)?;
    check_binding(&caller, &v.name, &source, queue, &destination)?;
    blocking(move || {
        let target = if queue {
            BindTarget::Queue(&destination)
        } else {
            BindTarget::Exchange(&destination)
        };
        v.unbind(&source, target, &found.routing_key, &found.arguments, 0)
    })
    .await??;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}
