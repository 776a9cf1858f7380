//! `--config FILE`: a TOML file with the flags, users, vhosts and
//! permissions, or RabbitMQ's rabbitmq.conf keys; flags win over the file.
//! Warren's own start-up: these skip when the suite runs against an
//! outside broker.

mod common;

use common::*;
use warren::{Config, Server};

fn config_from(args: &[&str]) -> Config {
    let mut argv = vec!["warren"];
    argv.extend_from_slice(args);
    Config::from_iter_and_env(argv, |_| None).expect("configuration accepted")
}

#[tokio::test]
async fn a_toml_file_sets_flags_users_vhosts_and_permissions() {
    if outside_broker_requested() {
        return;
    }
    let dir = temp_dir("config-toml");
    let data = dir.join("data");
    let file = dir.join("warren.toml");
    std::fs::write(
        &file,
        format!(
            r#"
listen = "127.0.0.1:0"
management-listen = "127.0.0.1:0"
prometheus-listen = "127.0.0.1:0"
data-dir = "{}"
heartbeat = 30
consumer_timeout = 60000
sync = false

[[vhosts]]
name = "orders"
description = "Orders"

[[users]]
name = "app"
password = "secret"
tags = ["management"]

[[permissions]]
user = "app"
vhost = "orders"
configure = ".*"
write = ".*"
read = ".*"
"#,
            data.display()
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let config = config_from(&["--config", path]);
    assert_eq!(config.data_dir, data);
    assert_eq!(config.heartbeat, 30);
    assert_eq!(config.consumer_timeout_ms, 60_000);
    assert!(!config.sync);
    // A flag wins over the file.
    assert_eq!(
        config_from(&["--config", path, "--heartbeat", "10"]).heartbeat,
        10
    );
    let broker = TestBroker::start_config(config).await;
    let (conn, _ch) = broker.channel_as("app", "secret", "orders").await;
    conn.close(200, "bye".into()).await.ok();
    // Every start applies the file again.
    let broker = broker.restart().await;
    let (conn, _ch) = broker.channel_as("app", "secret", "orders").await;
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rabbitmq_conf_file_sets_what_local_setups_use() {
    if outside_broker_requested() {
        return;
    }
    let dir = temp_dir("config-conf");
    let definitions = dir.join("definitions.json");
    std::fs::write(
        &definitions,
        r#"{"queues": [{"name": "preloaded", "vhost": "shop", "durable": true, "auto_delete": false, "arguments": {}}]}"#,
    )
    .unwrap();
    let file = dir.join("rabbitmq.conf");
    std::fs::write(
        &file,
        format!(
            "# as in a RabbitMQ setup\n\
             default_user = shopper\n\
             default_pass = s3cret\n\
             default_vhost = shop\n\
             loopback_users.guest = false\n\
             listeners.tcp.default = 127.0.0.1:0\n\
             load_definitions = {}\n\
             vm_memory_high_watermark.relative = 0.6\n\
             disk_free_limit.absolute = 1MB\n\
             consumer_timeout = 900000\n\
             max_message_size = 1048576\n\
             management.tcp.ip = 127.0.0.1\n\
             management.tcp.port = 0\n\
             prometheus.tcp.ip = 127.0.0.1\n\
             prometheus.tcp.port = 0\n\
             cluster_formation.peer_discovery_backend = classic_config\n",
            definitions.display()
        ),
    )
    .unwrap();
    let data = dir.join("data");
    let config = config_from(&[
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(config.memory_high_watermark, "0.6");
    assert_eq!(config.disk_free_limit, "1MB");
    assert_eq!(config.consumer_timeout_ms, 900_000);
    assert_eq!(config.max_message_size, 1_048_576);
    assert!(config.loopback_users().is_empty());
    assert_eq!(
        config.management_listen,
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(config.config_warnings.len(), 1, "cluster_formation");
    let broker = TestBroker::start_config(config).await;
    let (conn, ch) = broker.channel_as("shopper", "s3cret", "shop").await;
    declare_passive(&ch, "preloaded")
        .await
        .expect("the definitions file was loaded");
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_file_is_refused_with_its_name_and_reason() {
    if outside_broker_requested() {
        return;
    }
    let dir = temp_dir("config-bad");
    let file = dir.join("warren.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_port = 1\n").unwrap();
    let error = Config::from_iter_and_env(["warren", "--config", file.to_str().unwrap()], |_| None)
        .expect_err("refused");
    assert!(
        error.to_string().contains("unknown setting 'listen_port'"),
        "{error}"
    );
    // Invalid users in a valid file stop the start.
    std::fs::write(
        &file,
        "[[permissions]]\nuser = \"nobody\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"\nread = \"\"\n",
    )
    .unwrap();
    let mut config = config_from(&["--config", file.to_str().unwrap()]);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.management_listen = "127.0.0.1:0".parse().unwrap();
    config.prometheus_listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.join("data");
    let error = Server::start(config).await.expect_err("refused");
    assert!(
        error.to_string().contains("no such user 'nobody'"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
