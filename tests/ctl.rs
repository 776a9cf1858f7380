//! `warren ctl`, the built binary, against a management HTTP API:
//! RabbitMQ's at `WARREN_TEST_HTTP_URI` (with AMQP at
//! `WARREN_TEST_AMQP_URI`), or else Warren's own, started as a process
//! with `--management-listen` (the tests skip, saying so, while Warren has
//! no management listener).
//!
//! Each test works in a vhost of its own and removes it, so they run side
//! by side against a shared RabbitMQ. RabbitMQ's API reports queue depths
//! and connections from statistics collected every few seconds, hence
//! [`eventually`].

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::process::{Warren, WarrenCommand, free_port};
use common::unique;
use serde_json::{Value, json};

/// The API under test, and the broker process when it is Warren's.
struct Target {
    /// `http://user:password@host:port`
    url: String,
    amqp: String,
    _warren: Option<Warren>,
}

impl Target {
    /// RabbitMQ's API when `WARREN_TEST_HTTP_URI` is set, else a Warren
    /// process with its management listener; None (after saying why) when
    /// this Warren has none.
    async fn start() -> Option<Target> {
        if let Ok(url) = std::env::var("WARREN_TEST_HTTP_URI") {
            let amqp = std::env::var("WARREN_TEST_AMQP_URI")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5673/%2f".into());
            return Some(Target {
                url: url.trim_end_matches('/').to_string(),
                amqp,
                _warren: None,
            });
        }
        let port = free_port();
        let mut command = WarrenCommand::new();
        command.command.args([
            "--management-listen",
            &format!("127.0.0.1:{port}"),
            "--no-prometheus",
        ]);
        let mut warren = command.spawn();
        // A binary without the flag exits at once with a usage error.
        for _ in 0..200 {
            if warren.child.0.try_wait().ok().flatten().is_some() {
                eprintln!(
                    "skipped: this Warren has no management listener (--management-listen); \
                     set WARREN_TEST_HTTP_URI to run against RabbitMQ"
                );
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let amqp = warren.uri();
                return Some(Target {
                    url: format!("http://guest:guest@127.0.0.1:{port}"),
                    amqp,
                    _warren: Some(warren),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("warren never listened for HTTP on {port}");
    }

    /// Run `warren ctl --url <api> args…`.
    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with_stdin(args, None)
    }

    fn ctl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("ctl")
            .args(["--url", &self.url])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warren ctl starts");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("warren ctl ends")
    }

    /// Run and expect success; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            output.status.success(),
            "warren ctl {args:?} failed with {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// `list … --format json` parsed.
    fn list(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json"]);
        let text = self.ok(&all);
        match serde_json::from_str(&text).expect("JSON list") {
            Value::Array(items) => items,
            other => panic!("not a list: {other}"),
        }
    }

    /// A request to the API itself, as `user:password`, to set up or check
    /// what ctl did: its status and JSON body (Null when empty).
    fn api(&self, method: &str, path: &str, body: Option<Value>, user: &str) -> (u16, Value) {
        let host = self.url.rsplit_once('@').map_or(&*self.url, |(_, h)| h);
        let host = host.trim_start_matches("http://");
        let url = format!("http://{host}/api/{path}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        );
        let response = match method {
            "GET" => agent.get(&url).header("authorization", &auth).call(),
            "DELETE" => agent.delete(&url).header("authorization", &auth).call(),
            "PUT" => agent
                .put(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(body.unwrap_or(json!({})).to_string()),
            _ => agent
                .post(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let mut response = response.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let credentials = self
            .url
            .trim_start_matches("http://")
            .rsplit_once('@')
            .map_or("guest:guest".to_string(), |(c, _)| c.to_string());
        self.api(method, path, body, &credentials)
    }
}

fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Wait (at most 20 s) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn await_startup_answers_once_the_api_does_and_times_out_otherwise() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let out = target.ok(&["await-startup", "--timeout", "10"]);
        assert!(out.contains("is up"), "{out}");

        let nowhere = format!("http://guest:guest@127.0.0.1:{}", free_port());
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["ctl", "--url", &nowhere, "await-startup", "-t", "1"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(75));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(String::from_utf8_lossy(&output.stderr).contains("did not start within 1 s"));

        // Wrong credentials fail at once, with the API's reason.
        let host = target.url.rsplit_once('@').unwrap().1;
        let output = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([
                "ctl",
                "--url",
                &format!("http://guest:wrong@{host}"),
                "await-startup",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(77));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_node_its_listeners_and_totals() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let out = target.ok(&["status"]);
        assert!(out.starts_with("Status of node "), "{out}");
        for line in [
            "Product: ",
            "Listeners: ",
            "amqp on ",
            "Totals: ",
            "Alarms: none",
        ] {
            assert!(out.contains(line), "{line:?} in {out}");
        }
        let json: Value =
            serde_json::from_str(&target.ok(&["status", "--format", "json"])).unwrap();
        assert!(json["node"].is_string());
        assert_eq!(json["alarms"], json!([]));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn users_vhosts_and_permissions_are_created_changed_and_removed() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let vhost = unique("ctl-vhost");
        let user = unique("ctl-user");
        target.ok(&["add-vhost", &vhost, "--description", "made by ctl"]);
        assert!(names(&target.list(&["vhosts"])).contains(&vhost));
        let again = target.ctl(&["add-vhost", &vhost]);
        assert_eq!(again.status.code(), Some(70), "a second add-vhost fails");

        // The password from standard input, as rabbitmqctl reads it.
        let output = target.ctl_with_stdin(
            &["add-user", &user, "--tags", "management"],
            Some("first secret\n"),
        );
        assert!(output.status.success(), "{:?}", output);
        let users = target.list(&["users"]);
        let ours = users
            .iter()
            .find(|u| u["name"] == user.as_str())
            .expect("listed");
        assert_eq!(ours["tags"], json!(["management"]));
        assert_eq!(
            target
                .api("GET", "whoami", None, &format!("{user}:first secret"))
                .0,
            200
        );

        target.ok(&["set-permissions", "-p", &vhost, &user, "^c", "^w", "^r"]);
        let permissions = target.list(&["permissions"]);
        let granted = permissions
            .iter()
            .find(|p| p["user"] == user.as_str() && p["vhost"] == vhost.as_str())
            .expect("permission listed");
        assert_eq!(
            (&granted["configure"], &granted["write"], &granted["read"]),
            (&json!("^c"), &json!("^w"), &json!("^r"))
        );

        target.ok(&["change-password", &user, "second"]);
        assert_eq!(
            target
                .api("GET", "whoami", None, &format!("{user}:first secret"))
                .0,
            401
        );
        let (status, whoami) = target.api("GET", "whoami", None, &format!("{user}:second"));
        assert_eq!(status, 200);
        assert_eq!(whoami["tags"], json!(["management"]), "tags kept");

        target.ok(&["delete-user", &user]);
        assert!(!names(&target.list(&["users"])).contains(&user));
        let gone = target.ctl(&["delete-user", &user]);
        assert_eq!(gone.status.code(), Some(70));
        assert!(String::from_utf8_lossy(&gone.stderr).contains("Not Found"));

        target.ok(&["delete-vhost", &vhost]);
        assert!(!names(&target.list(&["vhosts"])).contains(&vhost));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_are_listed_purged_and_deleted() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let vhost = unique("ctl-queues");
        target.ok(&["add-vhost", &vhost]);
        target.ok(&["set-permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let queue = unique("ctl-q");
        let v = enc(&vhost);
        assert_eq!(
            target.admin("PUT", &format!("queues/{v}/{}", enc(&queue)), Some(json!({"durable": false}))).0,
            201
        );
        for _ in 0..3 {
            let (status, routed) = target.admin(
                "POST",
                &format!("exchanges/{v}/amq.default/publish"),
                Some(json!({"properties": {}, "routing_key": queue, "payload": "x", "payload_encoding": "string"})),
            );
            assert_eq!((status, &routed["routed"]), (200, &json!(true)));
        }
        let depth = |target: &Target| {
            target
                .list(&["queues", "-p", &vhost, "name", "messages"])
                .iter()
                .find(|q| q["name"] == queue.as_str())
                .map(|q| q["messages"].as_u64().unwrap_or(u64::MAX))
        };
        eventually("three messages listed", || depth(&target) == Some(3));
        let table = target.ok(&["list", "queues", "-p", &vhost]);
        assert!(table.starts_with("name"), "{table}");
        assert!(table.lines().any(|l| l.starts_with(&queue) && l.contains(" 3 ")), "{table}");
        // rabbitmqctl's spelling and --all-vhosts.
        let all = target.ok(&["list_queues", "--all-vhosts"]);
        assert!(all.starts_with("vhost"), "{all}");
        assert!(all.contains(&queue), "{all}");

        let refused = target.ctl(&["delete-queue", "-p", &vhost, &queue, "--if-empty"]);
        assert_ne!(refused.status.code(), Some(0), "not empty");
        target.ok(&["purge-queue", "-p", &vhost, &queue]);
        eventually("the queue empty", || depth(&target) == Some(0));
        target.ok(&["delete-queue", "-p", &vhost, &queue, "--if-empty"]);
        assert_eq!(depth(&target), None);
        target.ok(&["delete-vhost", &vhost]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_are_set_listed_and_cleared() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let vhost = unique("ctl-policies");
        target.ok(&["add-vhost", &vhost]);
        target.ok(&[
            "set-policy",
            "-p",
            &vhost,
            "ttl",
            "^orders\\.",
            r#"{"message-ttl": 60000}"#,
            "--priority",
            "3",
            "--apply-to",
            "queues",
        ]);
        let policies = target.list(&["policies", "-p", &vhost]);
        assert_eq!(policies.len(), 1, "{policies:?}");
        assert_eq!(policies[0]["name"], "ttl");
        assert_eq!(policies[0]["pattern"], "^orders\\.");
        assert_eq!(policies[0]["apply-to"], "queues");
        assert_eq!(policies[0]["priority"], 3);
        assert_eq!(policies[0]["definition"], json!({"message-ttl": 60000}));

        let bad = target.ctl(&["set-policy", "-p", &vhost, "x", ".*", "not json"]);
        assert_eq!(bad.status.code(), Some(64));

        target.ok(&["clear-policy", "-p", &vhost, "ttl"]);
        assert!(target.list(&["policies", "-p", &vhost]).is_empty());
        target.ok(&["delete-vhost", &vhost]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn definitions_exported_to_a_file_import_back() {
    let Some(target) = Target::start().await else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let vhost = unique("ctl-defs");
        let queue = unique("ctl-defs-q");
        target.ok(&["add-vhost", &vhost]);
        let path = format!("queues/{}/{}", enc(&vhost), enc(&queue));
        assert_eq!(
            target.admin("PUT", &path, Some(json!({"durable": true}))).0,
            201
        );

        let dir = common::temp_dir("ctl-defs");
        let file = dir.join("definitions.json");
        target.ok(&["export-definitions", file.to_str().unwrap(), "-p", &vhost]);
        let exported: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let queues = exported["queues"].as_array().expect("queues");
        assert!(
            queues.iter().any(|q| q["name"] == queue.as_str()),
            "{exported}"
        );
        // The whole broker's, to standard output.
        let whole: Value = serde_json::from_str(&target.ok(&["export-definitions"])).unwrap();
        assert!(
            whole["vhosts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == vhost.as_str())
        );

        target.ok(&["delete-queue", "-p", &vhost, &queue]);
        assert_eq!(target.admin("GET", &path, None).0, 404);
        target.ok(&["import-definitions", file.to_str().unwrap(), "-p", &vhost]);
        assert_eq!(target.admin("GET", &path, None).0, 200, "the queue is back");

        let missing = target.ctl(&["import-definitions", "/nonexistent/defs.json"]);
        assert_eq!(missing.status.code(), Some(74));
        target.ok(&["delete-vhost", &vhost]);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_is_listed_and_closed_with_the_reason_given() {
    let Some(target) = Target::start().await else {
        return;
    };
    let name = unique("ctl-conn");
    let conn = lapin::Connection::connect(
        &target.amqp,
        lapin::ConnectionProperties::default().with_connection_name(name.clone().into()),
    )
    .await
    .expect("AMQP connection");
    let mut events = Box::pin(conn.events_listener());
    let target = std::sync::Arc::new(target);
    let found = {
        let target = target.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let mut found = None;
            eventually("the connection listed", || {
                let connections =
                    target.list(&["connections", "name", "client_properties.connection_name"]);
                found = connections
                    .iter()
                    .find(|c| c["client_properties.connection_name"] == name.as_str())
                    .and_then(|c| c["name"].as_str().map(str::to_string));
                found.is_some()
            });
            let found = found.unwrap();
            target.ok(&["close-connection", &found, "tests are over"]);
            found
        })
        .await
        .unwrap()
    };
    let error = common::next_error(&mut events).await;
    let text = common::reply_text(&error).unwrap_or_else(|| panic!("{found} closed: {error}"));
    assert_eq!(text, "CONNECTION_FORCED - tests are over");
}

#[test]
fn bad_usage_exits_64_with_the_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["ctl", "list", "kittens"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("queues"));
    let help = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["ctl", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["await-startup", "purge-queue", "export-definitions"] {
        assert!(help.contains(command), "{command} in {help}");
    }
}
