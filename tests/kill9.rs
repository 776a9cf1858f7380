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
                "kill9".into(),
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
