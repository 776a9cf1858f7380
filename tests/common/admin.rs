//! Managing users, vhosts, permissions and limits from tests, the same way
//! against either broker: an in-process Warren through its library API, or
//! an outside RabbitMQ through its management HTTP API at
//! `WARREN_TEST_HTTP_URI` (for example `http://guest:guest@127.0.0.1:15673`).
//!
//! Every call blocks (the store, or HTTP), so each runs on a blocking
//! thread. A call that fails panics with the reason: tests only set up
//! what they expect to work.

use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use warren::access::{
    Credentials, HashingAlgorithm, UserLimit, UserSpec, VHostLimit, VHostMetadata,
};
use warren::broker::Broker;
use warren::policy::PolicyKind;

/// A way to manage the broker under test. It does not keep an in-process
/// broker alive (a restart needs the old one gone).
#[derive(Clone)]
pub enum Admin {
    Warren(Weak<Broker>),
    Http(Http),
}

/// The broker behind a [`Admin::Warren`].
fn live(broker: Weak<Broker>) -> Arc<Broker> {
    broker
        .upgrade()
        .expect("the broker this admin managed is still running")
}

/// The management API of an outside broker.
#[derive(Clone)]
pub struct Http {
    /// `http://host:port`, without credentials.
    base: String,
    authorization: String,
    agent: ureq::Agent,
}

impl Http {
    /// From a URI with credentials: `http://user:pass@host:port`.
    pub fn new(uri: &str) -> Http {
        let rest = uri
            .strip_prefix("http://")
            .expect("WARREN_TEST_HTTP_URI like http://guest:guest@127.0.0.1:15673");
        let (credentials, host) = rest.split_once('@').unwrap_or(("guest:guest", rest));
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Http {
            base: format!("http://{}", host.trim_end_matches('/')),
            authorization,
            agent,
        }
    }

    /// The outside broker's API, if the tests run against one.
    pub fn from_env() -> Option<Http> {
        std::env::var("WARREN_TEST_HTTP_URI")
            .ok()
            .map(|uri| Http::new(&uri))
    }

    /// Send a request; returns the status and body.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let (status, _, text) = self.send(method, path, body, &[]);
        (status, text)
    }

    /// Send a request with extra headers (and the `Authorization` of
    /// these credentials unless one is given); returns the status, the
    /// response headers and the body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        let url = format!("{}/api{path}", self.base);
        let authorization = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map_or(self.authorization.as_str(), |(_, v)| *v);
        let others = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        macro_rules! with_headers {
            ($request:expr) => {{
                let mut request = $request.header("Authorization", authorization);
                for (k, v) in others.clone() {
                    request = request.header(*k, *v);
                }
                request
            }};
        }
        let result = match (method, body) {
            ("GET", _) => with_headers!(self.agent.get(&url)).call(),
            ("DELETE", _) => with_headers!(self.agent.delete(&url)).call(),
            ("PUT", body) => with_headers!(self.agent.put(&url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
            ("POST", body) => with_headers!(self.agent.post(&url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
            (other, _) => panic!("unsupported method {other}"),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let response_headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, response_headers, text)
    }

    /// `http://host:port` of the API, without credentials.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request that must succeed (2xx).
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> String {
        let (status, text) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        text
    }

    fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.ok("GET", path, None)).expect("JSON")
    }
}

/// A path segment with `/` and other reserved characters escaped.
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Admin {
    /// Run a blocking management call off the async workers.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(Admin) -> T + Send + 'static) -> T {
        let admin = self.clone();
        tokio::task::spawn_blocking(move || f(admin))
            .await
            .expect("admin call")
    }

    /// The vhost metadata a `PUT /api/vhosts/NAME` carries.
    fn vhost_body(metadata: &VHostMetadata) -> Value {
        let mut body = json!({
            "description": metadata.description.clone().unwrap_or_default(),
            "tags": metadata.tags.join(","),
        });
        if let Some(t) = metadata.default_queue_type {
            body["default_queue_type"] = json!(t.name());
        }
        body
    }

    pub async fn add_vhost(&self, name: &str) {
        self.add_vhost_with(name, VHostMetadata::default()).await
    }

    pub async fn add_vhost_with(&self, name: &str, metadata: VHostMetadata) {
        let name = name.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => {
                let broker = live(broker);
                broker.put_vhost(&name, metadata).expect("put_vhost");
            }
            Admin::Http(http) => {
                http.ok(
                    "PUT",
                    &format!("/vhosts/{}", encode(&name)),
                    Some(Self::vhost_body(&metadata)),
                );
            }
        })
        .await
    }

    /// Whether a vhost's default queue type can be set (RabbitMQ 3.10's
    /// HTTP API ignores it; only its CLI sets it).
    pub fn sets_default_queue_type(&self) -> bool {
        matches!(self, Admin::Warren(_))
    }

    pub async fn delete_vhost(&self, name: &str) {
        let name = name.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker).delete_vhost(&name).expect("delete_vhost"),
            Admin::Http(http) => {
                http.ok("DELETE", &format!("/vhosts/{}", encode(&name)), None);
            }
        })
        .await
    }

    pub async fn vhost_exists(&self, name: &str) -> bool {
        let name = name.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker).vhost(&name).is_some(),
            Admin::Http(http) => {
                http.request("GET", &format!("/vhosts/{}", encode(&name)), None)
                    .0
                    == 200
            }
        })
        .await
    }

    /// Create (or replace) a user with a password and tags.
    pub async fn add_user(&self, name: &str, password: &str, tags: &[&str]) {
        let credentials = Credentials::Password(password.to_string());
        self.put_user(name, credentials, tags).await
    }

    /// Create (or replace) a user from its credentials.
    pub async fn put_user(&self, name: &str, credentials: Credentials, tags: &[&str]) {
        let name = name.to_string();
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => {
                let broker = live(broker);
                let spec = UserSpec {
                    credentials,
                    tags,
                    limits: None,
                };
                broker.access.put_user(&name, spec).expect("put_user");
            }
            Admin::Http(http) => {
                let mut body = json!({ "tags": tags.join(",") });
                match credentials {
                    Credentials::Password(p) => body["password"] = json!(p),
                    Credentials::Hash { hash, algorithm } => {
                        body["password_hash"] = json!(hash);
                        body["hashing_algorithm"] = json!(algorithm.unwrap_or_default().name());
                    }
                    Credentials::None => {}
                }
                http.ok("PUT", &format!("/users/{}", encode(&name)), Some(body));
            }
        })
        .await
    }

    /// A user's password hash (base64) and algorithm, as exported.
    pub async fn password_hash(&self, name: &str) -> (String, HashingAlgorithm) {
        let name = name.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => {
                let broker = live(broker);
                let user = broker.access.user(&name).expect("user exists");
                (user.password_hash, user.hashing_algorithm)
            }
            Admin::Http(http) => {
                let user = http.get_json(&format!("/users/{}", encode(&name)));
                let algorithm = user["hashing_algorithm"].as_str().unwrap_or_default();
                (
                    user["password_hash"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    HashingAlgorithm::from_name(algorithm).expect("known algorithm"),
                )
            }
        })
        .await
    }

    pub async fn delete_user(&self, name: &str) {
        let name = name.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker).delete_user(&name).expect("delete_user"),
            Admin::Http(http) => {
                http.ok("DELETE", &format!("/users/{}", encode(&name)), None);
            }
        })
        .await
    }

    pub async fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) {
        let (user, vhost) = (user.to_string(), vhost.to_string());
        let (c, w, r) = (configure.to_string(), write.to_string(), read.to_string());
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker)
                .access
                .set_permissions(&user, &vhost, &c, &w, &r)
                .expect("set_permissions"),
            Admin::Http(http) => {
                let body = json!({ "configure": c, "write": w, "read": r });
                http.ok(
                    "PUT",
                    &format!("/permissions/{}/{}", encode(&vhost), encode(&user)),
                    Some(body),
                );
            }
        })
        .await
    }

    pub async fn clear_permissions(&self, user: &str, vhost: &str) {
        let (user, vhost) = (user.to_string(), vhost.to_string());
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker)
                .access
                .clear_permissions(&user, &vhost)
                .expect("clear_permissions"),
            Admin::Http(http) => {
                http.ok(
                    "DELETE",
                    &format!("/permissions/{}/{}", encode(&vhost), encode(&user)),
                    None,
                );
            }
        })
        .await
    }

    pub async fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) {
        let (user, vhost, exchange) = (user.to_string(), vhost.to_string(), exchange.to_string());
        let (w, r) = (write.to_string(), read.to_string());
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker)
                .access
                .set_topic_permissions(&user, &vhost, &exchange, &w, &r)
                .expect("set_topic_permissions"),
            Admin::Http(http) => {
                let body = json!({ "exchange": exchange, "write": w, "read": r });
                http.ok(
                    "PUT",
                    &format!("/topic-permissions/{}/{}", encode(&vhost), encode(&user)),
                    Some(body),
                );
            }
        })
        .await
    }

    /// Set (Some) or clear (None) a vhost limit.
    pub async fn vhost_limit(&self, vhost: &str, limit: VHostLimit, value: Option<i64>) {
        let vhost = vhost.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => match value {
                Some(v) => live(broker).access.set_vhost_limit(&vhost, limit, v),
                None => live(broker).access.clear_vhost_limit(&vhost, limit),
            }
            .expect("vhost limit"),
            Admin::Http(http) => {
                let path = format!("/vhost-limits/{}/{}", encode(&vhost), limit.name());
                match value {
                    Some(v) => http.ok("PUT", &path, Some(json!({ "value": v }))),
                    None => http.ok("DELETE", &path, None),
                };
            }
        })
        .await
    }

    /// Set (Some) or clear (None) a user limit.
    pub async fn user_limit(&self, user: &str, limit: UserLimit, value: Option<i64>) {
        let user = user.to_string();
        self.run(move |admin| match admin {
            Admin::Warren(broker) => match value {
                Some(v) => live(broker).access.set_user_limit(&user, limit, v),
                None => live(broker).access.clear_user_limit(&user, limit),
            }
            .expect("user limit"),
            Admin::Http(http) => {
                let path = format!("/user-limits/{}/{}", encode(&user), limit.name());
                match value {
                    Some(v) => http.ok("PUT", &path, Some(json!({ "value": v }))),
                    None => http.ok("DELETE", &path, None),
                };
            }
        })
        .await
    }
}

/// The management API's path for policies of `kind`.
fn policy_path(kind: PolicyKind, vhost: &str, name: &str) -> String {
    let resource = match kind {
        PolicyKind::Policy => "policies",
        PolicyKind::Operator => "operator-policies",
    };
    format!("/{resource}/{}/{}", encode(vhost), encode(name))
}

/// The `reason` of a management API error, as plain text (RabbitMQ
/// HTML-escapes some of them).
fn error_reason(body: &str) -> String {
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    reason
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

impl Admin {
    /// Set a policy (or operator policy) from its management API body;
    /// the validation error text when refused.
    pub async fn try_set_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        body: Value,
    ) -> Result<(), String> {
        let (vhost, name) = (vhost.to_string(), name.to_string());
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker)
                .set_policy(kind, &vhost, &name, &body)
                .map_err(|e| e.to_string()),
            Admin::Http(http) => {
                let (status, text) =
                    http.request("PUT", &policy_path(kind, &vhost, &name), Some(body));
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(error_reason(&text))
                }
            }
        })
        .await
    }

    /// Set a policy that must be accepted.
    pub async fn set_policy(&self, vhost: &str, name: &str, body: Value) {
        self.try_set_policy(PolicyKind::Policy, vhost, name, body)
            .await
            .expect("policy accepted")
    }

    /// Set an operator policy that must be accepted.
    pub async fn set_operator_policy(&self, vhost: &str, name: &str, body: Value) {
        self.try_set_policy(PolicyKind::Operator, vhost, name, body)
            .await
            .expect("operator policy accepted")
    }

    /// Remove a policy (or operator policy) that exists.
    pub async fn clear_policy(&self, kind: PolicyKind, vhost: &str, name: &str) {
        let (vhost, name) = (vhost.to_string(), name.to_string());
        self.run(move |admin| match admin {
            Admin::Warren(broker) => live(broker)
                .clear_policy(kind, &vhost, &name)
                .expect("clear_policy"),
            Admin::Http(http) => {
                http.ok("DELETE", &policy_path(kind, &vhost, &name), None);
            }
        })
        .await
    }
}

/// A user and a vhost made for one test, removed by [`Tenant::remove`].
pub struct Tenant {
    pub admin: Admin,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Tenant {
    /// A fresh vhost and a fresh user (password "pw", no tags) with
    /// `(configure, write, read)` permissions there, if any. The test's
    /// own connections as guest get full permissions in the vhost too.
    pub async fn new(
        admin: &Admin,
        prefix: &str,
        permissions: Option<(&str, &str, &str)>,
    ) -> Tenant {
        let tenant = Tenant {
            admin: admin.clone(),
            user: super::unique(&format!("{prefix}-user")),
            password: "pw".to_string(),
            vhost: super::unique(&format!("{prefix}-vhost")),
        };
        admin.add_vhost(&tenant.vhost).await;
        admin.add_user(&tenant.user, &tenant.password, &[]).await;
        admin
            .set_permissions("guest", &tenant.vhost, ".*", ".*", ".*")
            .await;
        if let Some((c, w, r)) = permissions {
            admin
                .set_permissions(&tenant.user, &tenant.vhost, c, w, r)
                .await;
        }
        tenant
    }

    /// Delete the vhost and the user.
    pub async fn remove(self) {
        if self.admin.vhost_exists(&self.vhost).await {
            self.admin.delete_vhost(&self.vhost).await;
        }
        self.admin.delete_user(&self.user).await;
    }
}
