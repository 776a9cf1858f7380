//! HTTP Basic authentication against Warren's users, and what their tags
//! let them see and change, as RabbitMQ's management plugin decides:
//! `management` sees and changes what its permissions allow in the vhosts
//! it has permissions in; `monitoring` also sees every vhost, connection
//! and channel, and the node; `policymaker` also manages policies and
//! parameters of its vhosts; `administrator` does everything.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::{Permission, ResourceKind, tag};
use crate::broker::Broker;

/// Tags that let a user into the management API at all.
const MANAGEMENT_TAGS: [&str; 4] = [
    tag::ADMINISTRATOR,
    "monitoring",
    "policymaker",
    "management",
];

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
    broker: Arc<Broker>,
}

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has(tag::ADMINISTRATOR)
    }

    /// Sees everything (monitoring or administrator).
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "not_authorised",
                "Not administrator user",
            ))
        }
    }

    pub fn require_monitor(&self) -> ApiResult<()> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "not_authorised",
                "Not monitor user",
            ))
        }
    }

    /// Whether the user may see the objects of `vhost`.
    pub fn sees_vhost(&self, vhost: &str) -> bool {
        self.is_monitor() || self.broker.access.may_open(&self.name, vhost)
    }

    /// Whether the user may act in `vhost` (permissions there, or
    /// administrator: RabbitMQ's administrators still need permissions to
    /// touch resources, checked by [`Caller::check_resource`]).
    pub fn require_vhost(&self, vhost: &str) -> ApiResult<()> {
        if self.is_admin() || self.broker.access.may_open(&self.name, vhost) {
            Ok(())
        } else {
            Err(ApiError::access_refused())
        }
    }

    /// The permission check the same AMQP operation makes.
    pub fn check_resource(
        &self,
        vhost: &str,
        kind: ResourceKind,
        name: &str,
        permission: Permission,
    ) -> ApiResult<()> {
        self.broker
            .access
            .check_resource(&self.name, vhost, kind, name.as_bytes(), permission)
            .map_err(|_| ApiError::access_refused())
    }

    /// Whether a connection owned by `user` is visible to the caller.
    pub fn sees_user(&self, user: &str) -> bool {
        self.is_monitor() || self.name == user
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let (name, password) =
            basic_credentials(parts).ok_or_else(|| ApiError::login_failed("Login failed"))?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let mut response = Vec::with_capacity(name.len() + password.len() + 2);
        response.push(0);
        response.extend_from_slice(name.as_bytes());
        response.push(0);
        response.extend_from_slice(password.as_bytes());
        let user = state
            .broker
            .access
            .login("PLAIN", &response, peer)
            .map_err(|_| ApiError::login_failed("Login failed"))?;
        if !user
            .tags
            .iter()
            .any(|t| MANAGEMENT_TAGS.contains(&t.as_str()))
        {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "not_authorised",
                "Not management user",
            ));
        }
        Ok(Caller {
            name: user.name,
            tags: user.tags,
            broker: state.broker.clone(),
        })
    }
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
