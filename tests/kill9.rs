//! The promise of a confirm: the real `warren` binary is killed with
//! SIGKILL in the middle of confirmed publishing from several connections,
//! again and again; after the last restart every confirmed message is there
//! exactly once, and nothing that is there is damaged.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

const PUBLISHERS: usize = 3;
const ROUNDS: usize = 4;
/// Publishes in flight per publisher.
const WINDOW: usize = 64;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Broker {
    child: Child,
    uri: String,
}

impl Broker {
    async fn start(dir: &std::path::Path) -> Broker {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--management-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(["--log-level", "warn"])
            .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the warren binary starts");
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let broker = Broker { child, uri };
        for _ in 0..200 {
            if Connection::connect(&broker.uri, ConnectionProperties::default())
                .await
                .is_ok()
            {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("warren did not start accepting connections");
    }

    fn kill9(mut self) {
        // std's kill is SIGKILL on Unix: no shutdown, no flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publish confirmed persistent messages until the connection dies;
/// record every body the broker confirmed.
async fn publisher(uri: String, tag: String, confirmed: Arc<Mutex<HashSet<String>>>) {
    publish_to(uri, "kill9", tag, confirmed).await
}

/// [`publisher`] into `queue`.
async fn publish_to(
    uri: String,
    queue: &'static str,
    tag: String,
    confirmed: Arc<Mutex<HashSet<String>>>,
) {
    let Ok(conn) = Connection::connect(&uri, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let mut in_flight = std::collections::VecDeque::new();
    for n in 0..1_000_000u64 {
        let body = format!("{tag}-{n}");
        let Ok(confirm) = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
        else {
            return;
        };
        in_flight.push_back((body, confirm));
        if in_flight.len() >= WINDOW {
            let Some((body, confirm)) = in_flight.pop_front() else {
                return;
            };
            match confirm.await {
                Ok(Confirmation::Ack(_)) => {
                    confirmed.lock().unwrap().insert(body);
                }
                _ => return,
            }
        }
    }
}

#[tokio::test]
async fn every_confirmed_message_survives_repeated_kill_9_exactly_once() {
    if outside_broker_requested() {
        // Warren's recovery: kills and restarts the warren binary itself.
        return;
    }
    let dir = temp_dir("kill9");
    let confirmed = Arc::new(Mutex::new(HashSet::new()));
    for round in 0..ROUNDS {
        let broker = Broker::start(&dir).await;
        let conn = Connection::connect(&broker.uri, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "kill9".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publisher(
                    broker.uri.clone(),
                    format!("r{round}p{p}"),
                    confirmed.clone(),
                ))
            })
            .collect();
        // Kill at a different moment each round.
        tokio::time::sleep(Duration::from_millis(400 + 150 * round as u64)).await;
        broker.kill9();
        for task in tasks {
            within(30, task).await.unwrap();
        }
    }
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(
        confirmed.len() > 100,
        "only {} messages were confirmed before the kills",
        confirmed.len()
    );

    let broker = Broker::start(&dir).await;
    let conn = Connection::connect(&broker.uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(m) = within(
        10,
        ch.basic_get("kill9".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        let body = String::from_utf8(m.delivery.data.clone()).expect("an intact body");
        assert!(
            body.starts_with('r') && body.contains('p') && body.contains('-'),
            "damaged message {body:?}"
        );
        assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
        *seen.entry(body).or_default() += 1;
    }
    eprintln!(
        "{} messages confirmed over {ROUNDS} kills, {} recovered",
        confirmed.len(),
        seen.len()
    );
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated messages: {duplicated:?}");
    let lost: Vec<_> = confirmed
        .iter()
        .filter(|b| !seen.contains_key(*b))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} confirmed messages lost, e.g. {:?}",
        lost.len(),
        confirmed.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    conn.close(200, "bye".into()).await.ok();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every message of stream `kill9-stream`, read from `first`: body → offset.
/// Fails on a damaged body, a duplicate, or a gap in the offsets.
async fn read_stream(uri: &str) -> HashMap<String, i64> {
    use futures_lite::StreamExt;
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        lapin::types::AMQPValue::LongString("first".into()),
    );
    let mut consumer = ch
        .basic_consume(
            "kill9-stream".into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .unwrap();
    let mut seen = HashMap::new();
    let mut expected_offset = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        d.ack(BasicAckOptions::default()).await.unwrap();
        let body = String::from_utf8(d.data.clone()).expect("an intact body");
        assert!(
            body.starts_with('r') && body.contains('p') && body.contains('-'),
            "damaged message {body:?}"
        );
        let offset = match d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-stream-offset").cloned())
        {
            Some(lapin::types::AMQPValue::LongLongInt(n)) => n,
            other => panic!("x-stream-offset {other:?}"),
        };
        assert_eq!(offset, expected_offset, "offsets are dense");
        expected_offset += 1;
        assert!(
            seen.insert(body.clone(), offset).is_none(),
            "duplicate {body}"
        );
    }
    conn.close(200, "bye".into()).await.ok();
    seen
}

#[tokio::test]
async fn every_confirmed_stream_message_survives_kill_9_at_its_offset() {
    if outside_broker_requested() {
        return;
    }
    let dir = temp_dir("kill9-stream");
    let confirmed = Arc::new(Mutex::new(HashSet::new()));
    let mut known: HashMap<String, i64> = HashMap::new();
    for round in 0..=ROUNDS {
        let broker = Broker::start(&dir).await;
        let conn = Connection::connect(&broker.uri, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("stream".into()),
        );
        // Small segments: the kills land on segment rolls too.
        args.insert(
            "x-stream-max-segment-size-bytes".into(),
            lapin::types::AMQPValue::LongInt(256 << 10),
        );
        ch.queue_declare(
            "kill9-stream".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        // What earlier rounds confirmed is there, at the offset it had.
        let seen = read_stream(&broker.uri).await;
        for body in confirmed.lock().unwrap().iter() {
            assert!(seen.contains_key(body), "confirmed message {body} lost");
        }
        for (body, offset) in &known {
            if let Some(now) = seen.get(body) {
                assert_eq!(now, offset, "the offset of {body} changed");
            }
        }
        known = seen;
        if round == ROUNDS {
            eprintln!(
                "{} stream messages confirmed over {ROUNDS} kills, {} recovered",
                confirmed.lock().unwrap().len(),
                known.len()
            );
            break;
        }
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publish_to(
                    broker.uri.clone(),
                    "kill9-stream",
                    format!("r{round}p{p}"),
                    confirmed.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400 + 150 * round as u64)).await;
        broker.kill9();
        for task in tasks {
            within(30, task).await.unwrap();
        }
    }
    assert!(
        confirmed.lock().unwrap().len() > 100,
        "too few messages were confirmed before the kills"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delivery is made durable by the group commit after it, with no
/// publish or declare to ask for one: after a kill -9 a message that was
/// delivered and not acked comes back with `redelivered` set.
#[tokio::test]
async fn a_delivered_unacked_message_comes_back_redelivered_after_kill_9() {
    if outside_broker_requested() {
        // Warren's recovery: kills and restarts the warren binary itself.
        return;
    }
    let dir = temp_dir("kill9-marks");
    let broker = Broker::start(&dir).await;
    let conn = Connection::connect(&broker.uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("marks".into(), durable, FieldTable::default())
        .await
        .unwrap();
    for body in ["m1", "m2", "m3"] {
        let confirm = ch
            .basic_publish(
                "".into(),
                "marks".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(confirm, Confirmation::Ack(_)));
    }
    // The publishes are durable; now one delivery, and nothing else.
    let got = ch
        .basic_get("marks".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"m1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.kill9();

    let broker = Broker::start(&dir).await;
    let conn = Connection::connect(&broker.uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut seen = Vec::new();
    while let Some(m) = ch
        .basic_get("marks".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        seen.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
        ));
    }
    assert_eq!(
        seen,
        [
            ("m1".to_string(), true),
            ("m2".to_string(), false),
            ("m3".to_string(), false)
        ]
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
