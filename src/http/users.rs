//! `users` (with `bulk-delete` and `without-permissions`), `permissions`,
//! `topic-permissions`, `vhost-limits` and `user-limits`: front doors onto
//! the access room's functions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::list::ListQuery;
use super::overview::parse_body;
use super::vhosts::tags_of;
use super::{AppState, blocking, synced};
use crate::access::{
    AccessError, Credentials, HashingAlgorithm, PermissionInfo, Put, TopicPermissionInfo, UserInfo,
    UserLimit, UserSpec, VHostLimit,
};

fn user_json(user: &UserInfo) -> Value {
    json!({
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": user.hashing_algorithm.name(),
        "tags": user.tags,
        "limits": user.limits.to_map(),
    })
}

fn permission_json(p: &PermissionInfo) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    })
}

fn topic_permission_json(p: &TopicPermissionInfo) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "exchange": p.exchange,
        "write": p.write,
        "read": p.read,
    })
}

/// A change answered after it is on disk: 201 when it created something.
async fn done(state: &AppState, put: Put) -> StatusCode {
    synced(&state.broker).await;
    match put {
        Put::Created => StatusCode::CREATED,
        Put::Updated => StatusCode::NO_CONTENT,
    }
}

/// RabbitMQ's 400 when a permission names a missing user or vhost.
fn user_or_vhost(e: AccessError) -> ApiError {
    if e.is_not_found() {
        ApiError::bad_request("vhost_or_user_not_found")
    } else {
        e.into()
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let items = state.broker.access.users().iter().map(user_json).collect();
    Ok(Json(query.answer(items)?))
}

pub async fn without_permissions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let access = &state.broker.access;
    let permitted: std::collections::HashSet<String> =
        access.permissions().into_iter().map(|p| p.user).collect();
    let items: Vec<Value> = access
        .users()
        .iter()
        .filter(|u| !permitted.contains(&u.name))
        .map(user_json)
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let user = state
        .broker
        .access
        .user(&name)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&user)))
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body = parse_body(&body)?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let credentials = match (text("password"), text("password_hash")) {
        (Some(_), Some(_)) => return Err(AccessError::BothPasswordAndHash.into()),
        (Some(password), None) => Credentials::Password(password),
        (None, Some(hash)) if hash.is_empty() => Credentials::None,
        (None, Some(hash)) => {
            let algorithm = match text("hashing_algorithm") {
                None => None,
                Some(name) => Some(
                    HashingAlgorithm::from_name(&name)
                        .ok_or(AccessError::UnknownHashingAlgorithm(name))?,
                ),
            };
            Credentials::Hash { hash, algorithm }
        }
        (None, None) => {
            if !state.broker.access.user_exists(&name) {
                return Err(ApiError::bad_request(
                    "password or password_hash must be set",
                ));
            }
            // Tags only: the password stays.
            let tags = tags_of(body.get("tags"));
            let access_name = name.clone();
            let broker = state.broker.clone();
            blocking(move || broker.access.set_tags(&access_name, tags)).await??;
            return Ok(done(&state, Put::Updated).await);
        }
    };
    let spec = UserSpec {
        credentials,
        tags: tags_of(body.get("tags")),
        limits: None,
    };
    let broker = state.broker.clone();
    let put = blocking(move || broker.access.put_user(&name, spec)).await??;
    Ok(done(&state, put).await)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let broker = state.broker.clone();
    blocking(move || broker.delete_user(&name)).await??;
    Ok(done(&state, Put::Updated).await)
}

#[derive(Debug, Deserialize)]
pub struct BulkDelete {
    users: Vec<String>,
}

pub async fn bulk_delete(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let request: BulkDelete = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("users must be a list of names"))?;
    let broker = state.broker.clone();
    blocking(move || {
        for user in request.users {
            // Missing users are skipped, as RabbitMQ does.
            match broker.delete_user(&user) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await??;
    Ok(done(&state, Put::Updated).await)
}

// ---- permissions -------------------------------------------------------

fn visible_permissions(state: &AppState, caller: &Caller) -> ApiResult<Vec<PermissionInfo>> {
    caller.require_admin()?;
    Ok(state.broker.access.permissions())
}

pub async fn permissions(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let all = visible_permissions(&state, &caller)?;
    Ok(Json(Value::Array(
        all.iter().map(permission_json).collect(),
    )))
}

pub async fn vhost_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state.broker.access.vhost_exists(&vhost) {
        return Err(ApiError::not_found());
    }
    let all = visible_permissions(&state, &caller)?;
    let items = all.iter().filter(|p| p.vhost == vhost).map(permission_json);
    Ok(Json(Value::Array(items.collect())))
}

pub async fn user_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state.broker.access.user_exists(&user) {
        return Err(ApiError::not_found());
    }
    let all = visible_permissions(&state, &caller)?;
    let items = all.iter().filter(|p| p.user == user).map(permission_json);
    Ok(Json(Value::Array(items.collect())))
}

pub async fn permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let p = state
        .broker
        .access
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&p)))
}

pub async fn put_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body = parse_body(&body)?;
    let pattern = |key: &str| -> ApiResult<String> {
        body.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
    };
    let (configure, write, read) = (pattern("configure")?, pattern("write")?, pattern("read")?);
    let existed = state.broker.access.permission(&user, &vhost).is_some();
    let broker = state.broker.clone();
    blocking(move || {
        broker
            .access
            .set_permissions(&user, &vhost, &configure, &write, &read)
    })
    .await?
    .map_err(user_or_vhost)?;
    let put = if existed { Put::Updated } else { Put::Created };
    Ok(done(&state, put).await)
}

pub async fn delete_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if state.broker.access.permission(&user, &vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let broker = state.broker.clone();
    blocking(move || broker.access.clear_permissions(&user, &vhost)).await??;
    Ok(done(&state, Put::Updated).await)
}

// ---- topic permissions -------------------------------------------------

pub async fn topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let all = state.broker.access.topic_permissions();
    Ok(Json(Value::Array(
        all.iter().map(topic_permission_json).collect(),
    )))
}

pub async fn vhost_topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    if !state.broker.access.vhost_exists(&vhost) {
        return Err(ApiError::not_found());
    }
    let all = state.broker.access.topic_permissions();
    let items = all.iter().filter(|p| p.vhost == vhost);
    Ok(Json(Value::Array(
        items.map(topic_permission_json).collect(),
    )))
}

pub async fn user_topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    if !state.broker.access.user_exists(&user) {
        return Err(ApiError::not_found());
    }
    let all = state.broker.access.topic_permissions();
    let items = all.iter().filter(|p| p.user == user);
    Ok(Json(Value::Array(
        items.map(topic_permission_json).collect(),
    )))
}

pub async fn topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let all = state.broker.access.topic_permissions();
    let items: Vec<Value> = all
        .iter()
        .filter(|p| p.vhost == vhost && p.user == user)
        .map(topic_permission_json)
        .collect();
    if items.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(items)))
}

pub async fn put_topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body = parse_body(&body)?;
    let field = |key: &str| -> ApiResult<String> {
        body.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
    };
    let (exchange, write, read) = (field("exchange")?, field("write")?, field("read")?);
    let existed = state
        .broker
        .access
        .topic_permissions()
        .iter()
        .any(|p| p.vhost == vhost && p.user == user && p.exchange == exchange);
    let broker = state.broker.clone();
    blocking(move || {
        broker
            .access
            .set_topic_permissions(&user, &vhost, &exchange, &write, &read)
    })
    .await?
    .map_err(user_or_vhost)?;
    let put = if existed { Put::Updated } else { Put::Created };
    Ok(done(&state, put).await)
}

#[derive(Debug, Default, Deserialize)]
pub struct ExchangeQuery {
    exchange: Option<String>,
}

pub async fn delete_topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Query(query): Query<ExchangeQuery>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let exists = state
        .broker
        .access
        .topic_permissions()
        .iter()
        .any(|p| p.vhost == vhost && p.user == user);
    if !exists {
        return Err(ApiError::not_found());
    }
    let broker = state.broker.clone();
    blocking(move || {
        broker
            .access
            .clear_topic_permissions(&user, &vhost, query.exchange.as_deref())
    })
    .await??;
    Ok(done(&state, Put::Updated).await)
}

// ---- limits ------------------------------------------------------------

fn vhost_limits_json(state: &AppState, only: Option<&str>) -> Value {
    let items: Vec<Value> = state
        .broker
        .access
        .vhosts()
        .iter()
        .filter(|v| !v.limits.is_empty() && only.is_none_or(|o| o == v.name))
        .map(|v| json!({"vhost": v.name, "value": v.limits.to_map()}))
        .collect();
    Value::Array(items)
}

pub async fn vhost_limits(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(vhost_limits_json(&state, None)))
}

pub async fn vhost_limits_of(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_vhost(&vhost)?;
    if !state.broker.access.vhost_exists(&vhost) {
        return Err(ApiError::not_found());
    }
    Ok(Json(vhost_limits_json(&state, Some(&vhost))))
}

/// The `value` of a limit body: an integer.
fn limit_value(body: &Bytes) -> ApiResult<i64> {
    let body = parse_body(body)?;
    match body.get("value") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("value must be an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("value must be an integer")),
        _ => Err(ApiError::bad_request("value is required")),
    }
}

pub async fn put_vhost_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let value = limit_value(&body)?;
    let limit = VHostLimit::from_name(&name, value)?;
    let broker = state.broker.clone();
    blocking(move || broker.access.set_vhost_limit(&vhost, limit, value)).await??;
    Ok(done(&state, Put::Updated).await)
}

pub async fn delete_vhost_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let limit = VHostLimit::from_name(&name, 0)?;
    let broker = state.broker.clone();
    blocking(move || broker.access.clear_vhost_limit(&vhost, limit)).await??;
    Ok(done(&state, Put::Updated).await)
}

fn user_limits_json(state: &AppState, only: Option<&str>) -> Value {
    let items: Vec<Value> = state
        .broker
        .access
        .user_limits()
        .iter()
        .filter(|(user, _)| only.is_none_or(|o| o == user.as_str()))
        .map(|(user, limits)| json!({"user": user, "value": limits.to_map()}))
        .collect();
    Value::Array(items)
}

pub async fn user_limits(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(user_limits_json(&state, None)))
}

pub async fn user_limits_of(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    if !caller.is_admin() && caller.name != user {
        return Err(ApiError::access_refused());
    }
    if !state.broker.access.user_exists(&user) {
        return Err(ApiError::not_found());
    }
    Ok(Json(user_limits_json(&state, Some(&user))))
}

pub async fn put_user_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let value = limit_value(&body)?;
    let limit = UserLimit::from_name(&name, value)?;
    let broker = state.broker.clone();
    blocking(move || broker.access.set_user_limit(&user, limit, value)).await??;
    Ok(done(&state, Put::Updated).await)
}

pub async fn delete_user_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let limit = UserLimit::from_name(&name, 0)?;
    let broker = state.broker.clone();
    blocking(move || broker.access.clear_user_limit(&user, limit)).await??;
    Ok(done(&state, Put::Updated).await)
}
