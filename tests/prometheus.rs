//! Prometheus metrics over real HTTP: the families, types, help texts and
//! labels of RabbitMQ's rabbitmq_prometheus plugin, counting what lapin
//! publishes and consumes; the per-object endpoint; a real Prometheus
//! scraping Warren.
//!
//! The message counters are broker-wide statics, so the tests that count
//! take turns ([`SERIAL`]) and compare before and after.
//!
//! Against RabbitMQ: `WARREN_TEST_PROMETHEUS_URI=http://127.0.0.1:15693`
//! makes `families_match_rabbitmq` compare Warren's families with the
//! plugin's. The other tests start Warren themselves and skip when
//! `WARREN_TEST_AMQP_URI` is set.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestBroker, outside_broker_requested, unique, within};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

/// Taken by every test that opens channels (the gauges are process-wide too).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One scrape, parsed.
#[derive(Debug, Default)]
struct Scrape {
    /// Sample values by name and label text (`{a="b"}` or empty).
    samples: BTreeMap<(String, String), f64>,
    /// `# TYPE` by family.
    types: BTreeMap<String, String>,
    /// `# HELP` by family.
    help: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                scrape.types.insert(name.into(), kind.into());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                scrape.help.insert(name.into(), help.into());
            } else if !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("sample value");
                let (name, labels) = match series.find('{') {
                    Some(i) => series.split_at(i),
                    None => (series, ""),
                };
                let value = match value {
                    "NaN" => f64::NAN,
                    v => v.parse().expect("a number"),
                };
                scrape
                    .samples
                    .insert((name.to_string(), labels.to_string()), value);
            }
        }
        scrape
    }

    fn get(&self, name: &str, labels: &str) -> f64 {
        *self
            .samples
            .get(&(name.to_string(), labels.to_string()))
            .unwrap_or_else(|| panic!("no sample {name}{labels}"))
    }

    fn family_has_samples(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

/// GET `url` and parse it; checks the plugin's content type.
fn scrape(url: &str) -> Scrape {
    let mut response = ureq::get(url).call().expect("scrape answers");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    Scrape::parse(&response.body_mut().read_to_string().expect("a text body"))
}

async fn scrape_async(url: String) -> Scrape {
    tokio::task::spawn_blocking(move || scrape(&url))
        .await
        .expect("scrape thread")
}

/// The in-process broker's metrics URL, or None (with a note) when the
/// tests run against an outside broker.
fn metrics_base(broker: &TestBroker) -> Option<String> {
    let server = broker.server()?;
    let addr = server.prometheus_addr().expect("metrics are served");
    Some(format!("http://{addr}"))
}

async fn declare(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, mandatory: bool) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions {
            mandatory,
            ..Default::default()
        },
        b"hello",
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish")
    .await
    .expect("confirmed");
}

const AMQP: &str = r#"{protocol="amqp091"}"#;
const CLASSIC: &str = r#"{protocol="amqp091",queue_type="rabbit_classic_queue"}"#;

#[tokio::test]
async fn global_counters_count_publishes_deliveries_and_acks() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own metrics listener (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let broker = TestBroker::start().await;
    let base = metrics_base(&broker).expect("in-process broker");
    let url = format!("{base}/metrics");
    let before = scrape_async(url.clone()).await;

    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = unique("prom");
    declare(&ch, &queue).await;
    for _ in 0..3 {
        publish(&ch, "", &queue, false).await;
    }
    publish(&ch, "amq.direct", "nowhere", false).await;
    publish(&ch, "amq.direct", "nowhere", true).await;

    // One by basic.get with ack, one by get without, one by a consumer.
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    got.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(5, consumer.next()).await.unwrap().unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    let empty = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(empty.is_none());

    let after = scrape_async(url).await;
    let delta = |name: &str, labels: &str| after.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("rabbitmq_global_messages_received_total", AMQP), 5.0);
    assert_eq!(
        delta("rabbitmq_global_messages_received_confirm_total", AMQP),
        5.0
    );
    assert_eq!(delta("rabbitmq_global_messages_confirmed_total", AMQP), 5.0);
    assert_eq!(delta("rabbitmq_global_messages_routed_total", AMQP), 3.0);
    assert_eq!(
        delta("rabbitmq_global_messages_unroutable_dropped_total", AMQP),
        1.0
    );
    assert_eq!(
        delta("rabbitmq_global_messages_unroutable_returned_total", AMQP),
        1.0
    );
    assert_eq!(
        delta("rabbitmq_global_messages_delivered_total", CLASSIC),
        3.0
    );
    assert_eq!(
        delta(
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            CLASSIC
        ),
        1.0
    );
    assert_eq!(
        delta(
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            CLASSIC
        ),
        1.0
    );
    assert_eq!(
        delta(
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            CLASSIC
        ),
        1.0
    );
    assert_eq!(
        delta("rabbitmq_global_messages_acknowledged_total", CLASSIC),
        2.0
    );
    assert_eq!(
        delta("rabbitmq_global_messages_get_empty_total", CLASSIC),
        1.0
    );
    assert_eq!(delta("rabbitmq_channel_messages_published_total", ""), 5.0);
    assert_eq!(delta("rabbitmq_queue_messages_published_total", ""), 3.0);
    assert_eq!(delta("rabbitmq_queues_created_total", ""), 1.0);
    assert_eq!(delta("rabbitmq_connections_opened_total", ""), 1.0);

    // Gauges of this broker: one connection, its channel, the consumer.
    assert_eq!(after.get("rabbitmq_connections", ""), 1.0);
    assert_eq!(after.get("rabbitmq_channels", ""), 1.0);
    assert_eq!(after.get("rabbitmq_consumers", ""), 1.0);
    assert_eq!(after.get("rabbitmq_global_consumers", AMQP), 1.0);
    assert_eq!(after.get("rabbitmq_queues", ""), 1.0);
    for family in [
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_disk_space_available_bytes",
        "rabbitmq_resident_memory_limit_bytes",
    ] {
        assert!(after.get(family, "") > 0.0, "{family}");
    }
    assert_eq!(after.get("rabbitmq_alarms_memory_used_watermark", ""), 0.0);
    assert_eq!(
        after.get("rabbitmq_alarms_free_disk_space_watermark", ""),
        0.0
    );
    let identity = after
        .samples
        .keys()
        .find(|(name, _)| name == "rabbitmq_identity_info")
        .expect("rabbitmq_identity_info");
    assert!(
        identity.1.contains("rabbitmq_node=\"warren@"),
        "{identity:?}"
    );
    assert!(after.family_has_samples("rabbitmq_build_info"));

    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn deliveries_are_counted_under_their_queue_type() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own metrics listener (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let broker = TestBroker::start().await;
    let url = format!(
        "{}/metrics",
        metrics_base(&broker).expect("in-process broker")
    );
    let before = scrape_async(url.clone()).await;
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = unique("prom-quorum");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("quorum queue.declare");
    publish(&ch, "", &queue, false).await;
    ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    let after = scrape_async(url).await;
    let quorum = r#"{protocol="amqp091",queue_type="rabbit_quorum_queue"}"#;
    let delta = |labels: &str| {
        let name = "rabbitmq_global_messages_delivered_get_auto_ack_total";
        after.get(name, labels) - before.get(name, labels)
    };
    assert_eq!(delta(quorum), 1.0);
    assert_eq!(delta(CLASSIC), 0.0);
    ch.queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn per_object_metrics_label_each_queue_with_vhost_and_name() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own metrics listener (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let broker = TestBroker::start().await;
    let base = metrics_base(&broker).expect("in-process broker");
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // A name that needs escaping in a label value.
    let deep = format!("{}-\"deep\"", unique("prom"));
    let idle = unique("prom");
    declare(&ch, &deep).await;
    declare(&ch, &idle).await;
    for _ in 0..4 {
        publish(&ch, "", &deep, false).await;
    }
    // One of the four delivered and left unacknowledged.
    let got = ch
        .basic_get(deep.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap();
    assert!(got.is_some());

    let per_object = scrape_async(format!("{base}/metrics/per-object")).await;
    let labels = |queue: &str| {
        format!(
            r#"{{vhost="/",queue="{}"}}"#,
            queue.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    assert_eq!(
        per_object.get("rabbitmq_queue_messages_ready", &labels(&deep)),
        3.0
    );
    assert_eq!(
        per_object.get("rabbitmq_queue_messages_unacked", &labels(&deep)),
        1.0
    );
    assert_eq!(
        per_object.get("rabbitmq_queue_messages", &labels(&deep)),
        4.0
    );
    assert_eq!(
        per_object.get("rabbitmq_queue_messages_ready_bytes", &labels(&deep)),
        15.0
    );
    assert_eq!(
        per_object.get("rabbitmq_queue_messages", &labels(&idle)),
        0.0
    );
    assert_eq!(
        per_object.get("rabbitmq_queue_consumers", &labels(&idle)),
        0.0
    );
    assert_eq!(per_object.types["rabbitmq_queue_messages"], "gauge");

    // Aggregated: the same families, summed, without labels.
    let aggregated = scrape_async(format!("{base}/metrics")).await;
    assert_eq!(aggregated.get("rabbitmq_queue_messages_ready", ""), 3.0);
    assert_eq!(aggregated.get("rabbitmq_queue_messages", ""), 4.0);
    assert_eq!(aggregated.get("rabbitmq_queues", ""), 2.0);

    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

/// Every family Warren serves exists in RabbitMQ's plugin with the same
/// type and help text, and carries the same label names.
#[tokio::test]
async fn families_match_rabbitmq() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own metrics listener (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let Ok(reference) = std::env::var("WARREN_TEST_PROMETHEUS_URI") else {
        eprintln!(
            "skipped: set WARREN_TEST_PROMETHEUS_URI (like http://127.0.0.1:15693) to compare with RabbitMQ's rabbitmq_prometheus"
        );
        return;
    };
    let _serial = SERIAL.lock().await;
    let broker = TestBroker::start().await;
    let base = metrics_base(&broker).expect("in-process broker");
    let (conn, ch) = broker.channel().await;
    declare(&ch, &unique("prom")).await;
    for path in ["/metrics", "/metrics/per-object"] {
        let ours = scrape_async(format!("{base}{path}")).await;
        let theirs = scrape_async(format!("{reference}{path}")).await;
        for (family, kind) in &ours.types {
            assert_eq!(
                theirs.types.get(family),
                Some(kind),
                "{path}: type of {family}"
            );
            assert_eq!(
                theirs.help.get(family),
                ours.help.get(family),
                "{path}: help of {family}"
            );
        }
        // Label names, family by family, where RabbitMQ has samples.
        let label_names = |scrape: &Scrape, family: &str| {
            scrape
                .samples
                .keys()
                .filter(|(name, _)| name == family)
                .map(|(_, labels)| {
                    labels
                        .trim_matches(['{', '}'])
                        .split(',')
                        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_string()))
                        .collect::<Vec<_>>()
                })
                .next()
        };
        for family in ours.types.keys() {
            if matches!(
                family.as_str(),
                "rabbitmq_build_info" | "rabbitmq_identity_info"
            ) {
                continue;
            }
            if let (Some(ours), Some(theirs)) =
                (label_names(&ours, family), label_names(&theirs, family))
            {
                assert_eq!(ours, theirs, "{path}: labels of {family}");
            }
        }
    }
    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
}

#[tokio::test]
async fn the_binary_serves_metrics_where_told_and_not_when_turned_off() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own binary (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let port = common::process::free_port();
    let mut warren = common::process::WarrenCommand::new();
    warren
        .command
        .args(["--prometheus-listen", &format!("127.0.0.1:{port}")]);
    let mut warren = warren.spawn();
    warren.wait_until_accepting().await;
    let scrape = scrape_async(format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(scrape.get("rabbitmq_connections", ""), 0.0);
    drop(warren);

    let port = common::process::free_port();
    let mut off = common::process::WarrenCommand::new();
    off.command.args([
        "--prometheus-listen",
        &format!("127.0.0.1:{port}"),
        "--no-prometheus",
    ]);
    let mut off = off.spawn();
    off.wait_until_accepting().await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens with --no-prometheus"
    );
}

/// A real Prometheus (Debian's `prometheus` package) scrapes both
/// endpoints and answers queries over what it stored.
#[tokio::test]
async fn a_real_prometheus_scrapes_warren() {
    if outside_broker_requested() {
        eprintln!("skipped: Warren's own metrics listener (WARREN_TEST_AMQP_URI is set)");
        return;
    }
    let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    if std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: no `prometheus` binary (apt-get install prometheus, or set PROMETHEUS_BIN)"
        );
        return;
    }
    let _serial = SERIAL.lock().await;
    let broker = TestBroker::start().await;
    let base = metrics_base(&broker).expect("in-process broker");
    let target = base.trim_start_matches("http://").to_string();
    let (conn, ch) = broker.channel().await;
    let queue = unique("prom");
    declare(&ch, &queue).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish(&ch, "", &queue, false).await;

    let dir = common::temp_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  \
         - job_name: warren\n    static_configs:\n      - targets: ['{target}']\n  \
         - job_name: warren-per-object\n    metrics_path: /metrics/per-object\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let web = format!("127.0.0.1:{}", common::process::free_port());
    let child = std::process::Command::new(&binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let _child = common::process::KillOnDrop(child);

    // Both jobs up, and the queue's depth queryable by its labels.
    let query = |q: String| {
        let web = web.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let url = format!("http://{web}/api/v1/query");
                let mut response = ureq::get(&url).query("query", &q).call().ok()?;
                let text = response.body_mut().read_to_string().ok()?;
                let body: serde_json::Value = serde_json::from_str(&text).ok()?;
                let result = body["data"]["result"].as_array()?.clone();
                Some(result)
            })
            .await
            .ok()
            .flatten()
        }
    };
    let depth = format!(r#"rabbitmq_queue_messages{{job="warren-per-object",queue="{queue}"}}"#);
    let mut seen = None;
    for _ in 0..60 {
        let up = query("sum(up)".into()).await.unwrap_or_default();
        let up = up
            .first()
            .and_then(|r| r["value"][1].as_str())
            .unwrap_or("0")
            .to_string();
        let result = query(depth.clone()).await.unwrap_or_default();
        if up == "2" && !result.is_empty() {
            seen = Some(result);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seen = seen.expect("Prometheus scraped both endpoints within 30 s");
    assert_eq!(seen[0]["value"][1], "1");
    assert_eq!(seen[0]["metric"]["vhost"], "/");
    let received = query(r#"rabbitmq_global_messages_received_total{job="warren"}"#.into())
        .await
        .unwrap_or_default();
    assert_eq!(received.len(), 1, "{received:?}");

    conn.close(200, "bye".into()).await.ok();
    broker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
