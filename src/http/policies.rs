//! `policies`, `operator-policies`, `parameters`, `global-parameters` and
//! `definitions`: front doors onto the policy and definitions rooms.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::overview::parse_body;
use super::{AppState, blocking, synced};
use crate::definitions::{self, DefinitionsError};
use crate::policy::{PolicyError, PolicyKind};

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> ApiError {
        if e.is_not_found() {
            ApiError::not_found()
        } else if matches!(e, PolicyError::Store(_)) {
            ApiError::internal(e.to_string())
        } else {
            ApiError::bad_request(e.to_string())
        }
    }
}

impl From<DefinitionsError> for ApiError {
    fn from(e: DefinitionsError) -> ApiError {
        match e {
            DefinitionsError::Invalid(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// Who may read and change policies of `kind` in `vhost`: policymakers
/// with access to it for policies, administrators for operator policies.
fn may_manage(caller: &Caller, kind: PolicyKind, vhost: Option<&str>) -> ApiResult<()> {
    match kind {
        PolicyKind::Operator => caller.require_admin(),
        PolicyKind::Policy if caller.is_admin() => Ok(()),
        PolicyKind::Policy if caller.is_policymaker() => match vhost {
            Some(v) => caller.require_vhost(v),
            None => Ok(()),
        },
        PolicyKind::Policy => Err(ApiError::access_refused()),
    }
}

fn list_policies(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: Option<&str>,
) -> ApiResult<Json<Value>> {
    may_manage(caller, kind, vhost)?;
    if let Some(v) = vhost
        && state.broker.vhost(v).is_none()
    {
        return Err(ApiError::not_found());
    }
    let items: Vec<Value> = state
        .broker
        .policies(kind, vhost)
        .iter()
        .filter(|p| caller.is_admin() || caller.sees_vhost(&p.vhost))
        .map(|p| p.to_json())
        .collect();
    Ok(Json(Value::Array(items)))
}

fn one_policy(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
) -> ApiResult<Json<Value>> {
    may_manage(caller, kind, Some(vhost))?;
    state
        .broker
        .policies(kind, Some(vhost))
        .iter()
        .find(|p| p.name == name)
        .map(|p| Json(p.to_json()))
        .ok_or_else(ApiError::not_found)
}

async fn put_policy(
    state: AppState,
    caller: Caller,
    kind: PolicyKind,
    vhost: String,
    name: String,
    body: Bytes,
) -> ApiResult<StatusCode> {
    may_manage(&caller, kind, Some(&vhost))?;
    let body = parse_body(&body)?;
    let existed = state
        .broker
        .policies(kind, Some(&vhost))
        .iter()
        .any(|p| p.name == name);
    let broker = state.broker.clone();
    blocking(move || broker.set_policy(kind, &vhost, &name, &body)).await??;
    synced(&state.broker).await;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn delete_policy(
    state: AppState,
    caller: Caller,
    kind: PolicyKind,
    vhost: String,
    name: String,
) -> ApiResult<StatusCode> {
    may_manage(&caller, kind, Some(&vhost))?;
    let broker = state.broker.clone();
    blocking(move || broker.clear_policy(kind, &vhost, &name)).await??;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn policies(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    list_policies(&state, &caller, PolicyKind::Policy, None)
}

pub async fn policies_in(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    list_policies(&state, &caller, PolicyKind::Policy, Some(&vhost))
}

pub async fn policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    one_policy(&state, &caller, PolicyKind::Policy, &vhost, &name)
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    put_policy(state, caller, PolicyKind::Policy, vhost, name, body).await
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_policy(state, caller, PolicyKind::Policy, vhost, name).await
}

pub async fn operator_policies(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    list_policies(&state, &caller, PolicyKind::Operator, None)
}

pub async fn operator_policies_in(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    list_policies(&state, &caller, PolicyKind::Operator, Some(&vhost))
}

pub async fn operator_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    one_policy(&state, &caller, PolicyKind::Operator, &vhost, &name)
}

pub async fn put_operator(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    put_policy(state, caller, PolicyKind::Operator, vhost, name, body).await
}

pub async fn delete_operator(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_policy(state, caller, PolicyKind::Operator, vhost, name).await
}

// ---- parameters ----------------------------------------------------------

/// The runtime parameters the definitions hold (read-only here).
fn parameters_of(state: &AppState, key: &str) -> Vec<Value> {
    definitions::export(&state.broker, None)
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub async fn parameters(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(Value::Array(parameters_of(&state, "parameters"))))
}

pub async fn parameters_of_component(
    State(state): State<AppState>,
    caller: Caller,
    Path(component): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let items = parameters_of(&state, "parameters")
        .into_iter()
        .filter(|p| p["component"] == component.as_str())
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn parameters_in(
    State(state): State<AppState>,
    caller: Caller,
    Path((component, vhost)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let items = parameters_of(&state, "parameters")
        .into_iter()
        .filter(|p| p["component"] == component.as_str() && p["vhost"] == vhost.as_str())
        .collect();
    Ok(Json(Value::Array(items)))
}

pub async fn global_parameters(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let mut items = parameters_of(&state, "global_parameters");
    if !items.iter().any(|p| p["name"] == "cluster_name") {
        items.push(json!({"name": "cluster_name", "value": state.cluster_name()}));
    }
    Ok(Json(Value::Array(items)))
}

// ---- definitions ---------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub struct DownloadQuery {
    download: Option<String>,
}

fn definitions_response(value: Value, download: Option<String>) -> Response {
    let mut response = Json(value).into_response();
    if let Some(file) = download
        && let Ok(header) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{}\"",
            file.replace('"', "")
        ))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, header);
    }
    response
}

pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let broker = state.broker.clone();
    let value = blocking(move || definitions::export(&broker, None)).await?;
    Ok(definitions_response(value, query.download))
}

pub async fn export_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let broker = state.broker.clone();
    let value = blocking(move || definitions::export(&broker, Some(&vhost))).await?;
    Ok(definitions_response(value, query.download))
}

pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let body = parse_body(&body)?;
    let broker = state.broker.clone();
    blocking(move || definitions::import(&broker, &body)).await??;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn import_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let body = parse_body(&body)?;
    let broker = state.broker.clone();
    blocking(move || definitions::import_vhost(&broker, &vhost, &body)).await??;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}
