//! The management HTTP API, RabbitMQ's (same paths, JSON shapes, status
//! codes and error bodies, so its clients work unchanged), and the web UI
//! at `/`. One module per resource, each a thin front door onto the same
//! vhost, queue and access functions the AMQP methods call; nothing below
//! this room knows about HTTP.
//!
//! Files: `auth` (Basic auth, tags), `error` (`{"error","reason"}`),
//! `list` (paging, sorting, filtering, columns), `json` (AMQP values in
//! JSON), `sampler` (message rates), `ui` (the embedded assets); resources:
//! `overview` (overview, whoami, nodes, health checks), `vhosts`, `users`
//! (users, permissions, limits), `exchanges`, `queues`, `bindings`,
//! `connections` (connections, channels, consumers), `policies` (policies,
//! operator policies, parameters, definitions).

mod auth;
mod bindings;
mod connections;
mod error;
mod exchanges;
mod json;
mod list;
mod overview;
mod policies;
mod queues;
pub mod sampler;
mod ui;
mod users;
mod vhosts;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
pub use error::{ApiError, ApiResult};

/// Largest request body accepted (definitions, published messages).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What every handler is given.
#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// The AMQP listener's address (for `overview` and the health checks).
    pub amqp: SocketAddr,
    /// This server's address.
    pub http: SocketAddr,
    /// RabbitMQ's cluster name (settable, not kept across restarts).
    pub cluster_name: Arc<parking_lot::Mutex<String>>,
}

impl AppState {
    pub fn new(broker: Arc<Broker>, amqp: SocketAddr, http: SocketAddr) -> AppState {
        AppState {
            broker,
            amqp,
            http,
            cluster_name: Arc::new(parking_lot::Mutex::new(overview::node_name())),
        }
    }

    pub fn cluster_name(&self) -> String {
        self.cluster_name.lock().clone()
    }
}

/// Serve the API and the UI on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/overview", get(overview::overview))
        .route("/whoami", get(overview::whoami))
        .route("/nodes", get(overview::nodes))
        .route("/nodes/{node}", get(overview::node))
        .route("/extensions", get(overview::extensions))
        .route(
            "/cluster-name",
            get(overview::cluster_name).put(overview::set_cluster_name),
        )
        .route("/health/checks/alarms", get(overview::alarms))
        .route("/health/checks/local-alarms", get(overview::alarms))
        .route(
            "/health/checks/port-listener/{port}",
            get(overview::port_listener),
        )
        .route(
            "/health/checks/protocol-listener/{protocol}",
            get(overview::protocol_listener),
        )
        .route("/health/checks/virtual-hosts", get(overview::virtual_hosts))
        .route(
            "/health/checks/node-is-quorum-critical",
            get(overview::quorum_critical),
        )
        .route(
            "/health/checks/node-is-mirror-sync-critical",
            get(overview::quorum_critical),
        )
        .route(
            "/health/checks/certificate-expiration/{within}/{unit}",
            get(overview::ok),
        )
        .route("/aliveness-test/{vhost}", get(overview::aliveness))
        .route("/vhosts", get(vhosts::list))
        .route(
            "/vhosts/{vhost}",
            get(vhosts::one).put(vhosts::put).delete(vhosts::delete),
        )
        .route("/vhosts/{vhost}/permissions", get(users::vhost_permissions))
        .route(
            "/vhosts/{vhost}/topic-permissions",
            get(users::vhost_topic_permissions),
        )
        .route("/vhosts/{vhost}/connections", get(connections::in_vhost))
        .route(
            "/vhosts/{vhost}/channels",
            get(connections::channels_in_vhost),
        )
        .route("/users", get(users::list))
        .route(
            "/users/without-permissions",
            get(users::without_permissions),
        )
        .route("/users/bulk-delete", post(users::bulk_delete))
        .route(
            "/users/{user}",
            get(users::one).put(users::put).delete(users::delete),
        )
        .route("/users/{user}/permissions", get(users::user_permissions))
        .route(
            "/users/{user}/topic-permissions",
            get(users::user_topic_permissions),
        )
        .route("/permissions", get(users::permissions))
        .route(
            "/permissions/{vhost}/{user}",
            get(users::permission)
                .put(users::put_permission)
                .delete(users::delete_permission),
        )
        .route("/topic-permissions", get(users::topic_permissions))
        .route(
            "/topic-permissions/{vhost}/{user}",
            get(users::topic_permission)
                .put(users::put_topic_permission)
                .delete(users::delete_topic_permission),
        )
        .route("/vhost-limits", get(users::vhost_limits))
        .route("/vhost-limits/{vhost}", get(users::vhost_limits_of))
        .route(
            "/vhost-limits/{vhost}/{limit}",
            put(users::put_vhost_limit).delete(users::delete_vhost_limit),
        )
        .route("/user-limits", get(users::user_limits))
        .route("/user-limits/{user}", get(users::user_limits_of))
        .route(
            "/user-limits/{user}/{limit}",
            put(users::put_user_limit).delete(users::delete_user_limit),
        )
        .route("/exchanges", get(exchanges::list))
        .route("/exchanges/{vhost}", get(exchanges::in_vhost))
        .route(
            "/exchanges/{vhost}/{name}",
            get(exchanges::one)
                .put(exchanges::put)
                .delete(exchanges::delete),
        )
        .route(
            "/exchanges/{vhost}/{name}/bindings/source",
            get(bindings::of_source),
        )
        .route(
            "/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings::of_destination),
        )
        .route(
            "/exchanges/{vhost}/{name}/publish",
            post(exchanges::publish),
        )
        .route("/queues", get(queues::list))
        .route("/queues/{vhost}", get(queues::in_vhost))
        .route(
            "/queues/{vhost}/{name}",
            get(queues::one).put(queues::put).delete(queues::delete),
        )
        .route("/queues/{vhost}/{name}/bindings", get(bindings::of_queue))
        .route("/queues/{vhost}/{name}/contents", delete(queues::purge))
        .route("/queues/{vhost}/{name}/get", post(queues::get_messages))
        .route("/queues/{vhost}/{name}/actions", post(queues::action))
        .route("/bindings", get(bindings::list))
        .route("/bindings/{vhost}", get(bindings::in_vhost))
        .route(
            "/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(bindings::between).post(bindings::create),
        )
        .route(
            "/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(bindings::one).delete(bindings::delete),
        )
        .route("/policies", get(policies::policies))
        .route("/policies/{vhost}", get(policies::policies_in))
        .route(
            "/policies/{vhost}/{name}",
            get(policies::policy)
                .put(policies::put)
                .delete(policies::delete),
        )
        .route("/operator-policies", get(policies::operator_policies))
        .route(
            "/operator-policies/{vhost}",
            get(policies::operator_policies_in),
        )
        .route(
            "/operator-policies/{vhost}/{name}",
            get(policies::operator_policy)
                .put(policies::put_operator)
                .delete(policies::delete_operator),
        )
        .route("/parameters", get(policies::parameters))
        .route(
            "/parameters/{component}",
            get(policies::parameters_of_component),
        )
        .route(
            "/parameters/{component}/{vhost}",
            get(policies::parameters_in),
        )
        .route("/global-parameters", get(policies::global_parameters))
        .route("/definitions", get(policies::export).post(policies::import))
        .route(
            "/definitions/{vhost}",
            get(policies::export_vhost).post(policies::import_vhost),
        )
        .route("/connections", get(connections::list))
        .route(
            "/connections/{name}",
            get(connections::one).delete(connections::close),
        )
        .route(
            "/connections/{name}/channels",
            get(connections::channels_of),
        )
        .route("/channels", get(connections::channels))
        .route("/channels/{name}", get(connections::channel))
        .route("/consumers", get(connections::consumers))
        .route("/consumers/{vhost}", get(connections::consumers_in_vhost))
        .fallback(overview::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .nest("/api", api)
        .merge(ui::routes())
        .with_state(state)
}

/// Run `f` off the async workers (it writes to the store, or walks many
/// queues).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Wait until the store's writes so far are on disk (as AMQP replies to
/// durable declarations do).
pub async fn synced(broker: &Broker) {
    let ticket = broker.store.request_sync();
    broker.store.syncer.wait(ticket).await;
}

/// The checks a declaration makes mid-way, for an API user: the same
/// permissions and limits a channel's declaration checks.
pub struct Guard<'a> {
    pub broker: &'a Broker,
    pub user: &'a str,
    pub vhost: &'a str,
}

impl Guard<'_> {
    fn check(
        &self,
        kind: crate::access::ResourceKind,
        name: &str,
        permission: crate::access::Permission,
    ) -> crate::protocol::AmqpResult<()> {
        self.broker
            .access
            .check_resource(self.user, self.vhost, kind, name.as_bytes(), permission)
    }
}

impl crate::vhost::DeclareGuard for Guard<'_> {
    fn configure_exchange(&mut self, name: &str) -> crate::protocol::AmqpResult<()> {
        use crate::access::{Permission, ResourceKind};
        self.check(ResourceKind::Exchange, name, Permission::Configure)
    }

    fn configure_queue(&mut self, name: &str) -> crate::protocol::AmqpResult<()> {
        use crate::access::{Permission, ResourceKind};
        self.check(ResourceKind::Queue, name, Permission::Configure)
    }

    fn creating_queue(&mut self, name: &str, queues: usize) -> crate::protocol::AmqpResult<()> {
        use crate::access::VHostLimit;
        let vhost = self.vhost;
        let max = self.broker.access.vhost_limit(vhost, VHostLimit::MaxQueues);
        match crate::access::limits::exceeded(max, queues) {
            None => Ok(()),
            Some(limit) => Err(crate::amqp_err!(
                PreconditionFailed,
                "cannot declare queue '{name}': queue limit in vhost '{vhost}' ({limit}) is reached"
            )),
        }
    }

    fn alternate_exchange(
        &mut self,
        exchange: &str,
        alternate: &str,
    ) -> crate::protocol::AmqpResult<()> {
        use crate::access::{Permission, ResourceKind};
        self.check(ResourceKind::Exchange, exchange, Permission::Read)?;
        self.check(ResourceKind::Exchange, alternate, Permission::Write)
    }

    fn dead_letter_exchange(
        &mut self,
        queue: &str,
        exchange: &str,
    ) -> crate::protocol::AmqpResult<()> {
        use crate::access::{Permission, ResourceKind};
        self.check(ResourceKind::Queue, queue, Permission::Read)?;
        self.check(ResourceKind::Exchange, exchange, Permission::Write)
    }
}

/// The vhost a path names: 404 when missing, 401 when the caller may not
/// see it.
pub fn vhost_of(
    state: &AppState,
    caller: &auth::Caller,
    name: &str,
) -> ApiResult<Arc<crate::vhost::VHost>> {
    let vhost = state.broker.vhost(name).ok_or_else(ApiError::not_found)?;
    if !caller.sees_vhost(name) {
        return Err(ApiError::access_refused());
    }
    Ok(vhost)
}

/// The vhosts the caller may see (all, or the one a path names).
pub fn visible_vhosts(
    state: &AppState,
    caller: &auth::Caller,
    only: Option<&str>,
) -> ApiResult<Vec<Arc<crate::vhost::VHost>>> {
    match only {
        Some(name) => Ok(vec![vhost_of(state, caller, name)?]),
        None => Ok(state
            .broker
            .vhost_names()
            .iter()
            .filter(|n| caller.sees_vhost(n))
            .filter_map(|n| state.broker.vhost(n))
            .collect()),
    }
}

/// A query flag (`if-unused=true`).
pub fn flag(value: Option<&String>) -> bool {
    value.is_some_and(|v| v == "true")
}

/// The default exchange's name in paths.
pub fn exchange_name(path: &str) -> &str {
    if path == "amq.default" { "" } else { path }
}

/// A path segment with everything but unreserved characters escaped.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
