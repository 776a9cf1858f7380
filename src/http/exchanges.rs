//! `exchanges`: list, one, PUT (declare), DELETE, and `publish`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::list::ListQuery;
use super::overview::{parse_body, stats_json};
use super::{
    AppState, Guard, blocking, exchange_name, flag, json, synced, vhost_of, visible_vhosts,
};
use crate::access::{Permission, ResourceKind};
use crate::message::Message;
use crate::protocol::Properties;
use crate::queue::Persist;
use crate::stats::RateKey;
use crate::vhost::{ExchangeInfo, ExchangeSpec, Target, VHost};

fn exchange_json(vhost: &VHost, x: &ExchangeInfo, rates: &[(&'static str, f64)]) -> Value {
    let mut value = json!({
        "name": &*x.name,
        "vhost": &*vhost.name,
        "type": x.kind,
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": json::table(&x.arguments),
        "user_who_performed_action": "rmq-internal",
        "policy": null,
    });
    if x.publish_in > 0 || x.publish_out > 0 {
        value["message_stats"] = stats_json(
            &[("publish_in", x.publish_in), ("publish_out", x.publish_out)],
            rates,
        );
    }
    value
}

fn listing(state: &AppState, caller: &Caller, only: Option<&str>) -> ApiResult<Vec<Value>> {
    let mut items = Vec::new();
    for vhost in visible_vhosts(state, caller, only)? {
        let exchanges = vhost.exchange_infos();
        let keys: Vec<RateKey> = exchanges
            .iter()
            .map(|x| RateKey::Exchange(vhost.name.clone(), x.name.clone()))
            .collect();
        let rates = state.broker.rates.rates_of(keys.iter());
        for (x, rates) in exchanges.iter().zip(rates) {
            items.push(exchange_json(&vhost, x, &rates));
        }
    }
    Ok(items)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(query.answer(listing(&state, &caller, None)?)?))
}

pub async fn in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(query.answer(listing(
        &state,
        &caller,
        Some(&vhost),
    )?)?))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let vhost = vhost_of(&state, &caller, &vhost)?;
    let name = exchange_name(&name);
    let x = vhost
        .exchange_infos()
        .into_iter()
        .find(|x| &*x.name == name)
        .ok_or_else(ApiError::not_found)?;
    let key = RateKey::Exchange(vhost.name.clone(), x.name.clone());
    let mut value = exchange_json(&vhost, &x, &state.broker.rates.rates(&key));
    value["incoming"] = json!([]);
    value["outgoing"] = json!([]);
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
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("direct")
        .to_string();
    let spec = ExchangeSpec {
        name: exchange_name(&name).to_string(),
        kind,
        durable: flag_of("durable", true),
        auto_delete: flag_of("auto_delete", false),
        internal: flag_of("internal", false),
        arguments: json::to_table(body.get("arguments").unwrap_or(&Value::Null))?,
    };
    let existed = vhost.exchange_names().contains(&spec.name);
    let broker = state.broker.clone();
    let user = caller.name.clone();
    blocking(move || {
        let mut guard = Guard {
            broker: &broker,
            user: &user,
            vhost: &vhost.name,
        };
        vhost.declare_exchange(spec, &mut guard)
    })
    .await??;
    synced(&state.broker).await;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "if-unused")]
    pub if_unused: Option<String>,
    #[serde(rename = "if-empty")]
    pub if_empty: Option<String>,
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let vhost = vhost_of(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    vhost.check_exchange_deletion(&name)?;
    if !vhost.exchange_names().contains(&name) {
        return Err(ApiError::not_found());
    }
    caller.check_resource(
        &vhost.name,
        ResourceKind::Exchange,
        &name,
        Permission::Configure,
    )?;
    let if_unused = flag(query.if_unused.as_ref());
    blocking(move || vhost.delete_exchange(&name, if_unused)).await??;
    synced(&state.broker).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a message through the API: the exchange's routing, as a
/// `basic.publish` gets. Answers whether it reached a queue.
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let vhost = vhost_of(&state, &caller, &vhost)?;
    let exchange = exchange_name(&name).to_string();
    let body = parse_body(&body)?;
    let routing_key = body
        .get("routing_key")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("key_missing: routing_key"))?
        .to_string();
    let payload = body
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("key_missing: payload"))?;
    let payload = match body.get("payload_encoding").and_then(Value::as_str) {
        None | Some("string") => bytes::Bytes::from(payload.as_bytes().to_vec()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map(bytes::Bytes::from)
            .map_err(|_| ApiError::bad_request("invalid base64 payload"))?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown payload_encoding '{other}'"
            )));
        }
    };
    let mut fields = json::to_properties(body.get("properties").unwrap_or(&Value::Null))?;
    if let Some(mode) = body.get("delivery_mode").and_then(Value::as_u64) {
        fields.delivery_mode = Some(mode.min(255) as u8);
    }
    if let Some(expiration) = &fields.expiration {
        crate::message::parse_expiration(expiration.as_str().as_bytes()).map_err(|why| {
            ApiError::bad_request(format!(
                "invalid expiration '{}': {why}",
                expiration.as_str()
            ))
        })?;
    }
    caller.check_resource(
        &vhost.name,
        ResourceKind::Exchange,
        if exchange.is_empty() {
            "amq.default"
        } else {
            &exchange
        },
        Permission::Write,
    )?;
    let properties = Properties::from_fields(&fields);
    let mut queues = Vec::new();
    let route = vhost.route(
        exchange.as_bytes(),
        routing_key.as_bytes(),
        &[],
        &properties,
        &mut queues,
    )?;
    let message = Message::new(
        route.exchange,
        bytes::Bytes::from(routing_key.into_bytes()),
        properties,
        payload,
    );
    let mut stats = crate::stats::MessageStats {
        publish: 1,
        ..Default::default()
    };
    let (routed, stored) = match route.target {
        Target::Queues => {
            let message = Arc::new(message);
            let mut stored = false;
            for queue in &queues {
                stored |= queue.publish(message.clone()).persist == Persist::Stored;
            }
            if queues.is_empty() {
                stats.drop_unroutable = 1;
            }
            (!queues.is_empty(), stored)
        }
        Target::Delayed(delayer, delay) => (true, delayer.hold(Arc::new(message), delay)),
        Target::Reply(consumer) => {
            if let Some(consumer) = consumer
                && let Some(channel) = consumer.channel.upgrade()
            {
                channel.deliver_reply(&consumer.tag, &message);
            }
            (false, false)
        }
    };
    state.broker.totals.count(&vhost.name, &stats);
    if stored {
        synced(&state.broker).await;
    }
    Ok(Json(json!({ "routed": routed })))
}
