//! A damaged store is recovered in full or refused, never opened silently
//! with less: the store is filled with confirmed persistent messages, the
//! broker stops cleanly, a file of the store is damaged (truncated, its
//! tail cut, bits flipped near its head, middle or tail, files removed),
//! and the broker starts again. It must either hold every confirmed
//! message or refuse to start with an error naming the data directory.
//! These damage Warren's own files, so they skip against an outside broker.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use warren::{Config, Server};

const QUEUES: [&str; 2] = ["damage-a", "damage-b"];
const PER_QUEUE: u32 = 300;

async fn shutdown(server: Server) {
    let old = std::sync::Arc::downgrade(server.broker());
    server.shutdown().await;
    for _ in 0..200 {
        if old.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A store with two durable queues of confirmed 1 KB persistent messages,
/// an exchange and bindings, left by a clean shutdown.
async fn filled_store(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let server = Server::start(Config::ephemeral(&dir))
        .await
        .expect("starts");
    let uri = format!("amqp://guest:guest@{}/%2f", server.local_addr());
    let conn = lapin::Connection::connect(&uri, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "damage-x".into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for q in QUEUES {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            q.into(),
            "damage-x".into(),
            q.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let body = vec![b'x'; 1024];
    for i in 0..PER_QUEUE {
        for q in QUEUES {
            let confirm = ch
                .basic_publish(
                    "damage-x".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(format!("{q}-{i}").into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(matches!(confirm, Confirmation::Ack(_)));
        }
    }
    conn.close(200, "bye".into()).await.ok();
    shutdown(server).await;
    dir
}

/// Start on `dir`: the message count of each queue, or the error text.
async fn start_again(dir: &Path, accept_loss: bool) -> Result<Vec<u32>, String> {
    let mut config = Config::ephemeral(dir);
    config.accept_data_loss = accept_loss;
    let started = tokio::time::timeout(Duration::from_secs(60), Server::start(config))
        .await
        .expect("the start ends (with or without the store)");
    let server = started.map_err(|e| e.to_string())?;
    let uri = format!("amqp://guest:guest@{}/%2f", server.local_addr());
    let conn = lapin::Connection::connect(&uri, Default::default())
        .await
        .unwrap();
    let mut counts = Vec::new();
    for q in QUEUES {
        let ch = conn.create_channel().await.unwrap();
        counts.push(
            declare_passive(&ch, q)
                .await
                .map_or(0, |q| q.message_count()),
        );
    }
    conn.close(200, "bye".into()).await.ok();
    shutdown(server).await;
    Ok(counts)
}

/// Every confirmed message, or a refusal naming the data directory.
async fn recovered_or_refused(dir: &Path) -> &'static str {
    match start_again(dir, false).await {
        Ok(counts) => {
            assert_eq!(
                counts,
                vec![PER_QUEUE; QUEUES.len()],
                "started with less than was confirmed"
            );
            "recovered"
        }
        Err(text) => {
            eprintln!("refused: {text}");
            assert!(
                text.contains(dir.to_str().unwrap()),
                "the error names the data directory: {text}"
            );
            assert!(
                text.contains("damaged") || text.contains("corrupt"),
                "the error says the store is damaged: {text}"
            );
            "refused"
        }
    }
}

/// The store's main file (sled's log).
fn data_file(dir: &Path) -> PathBuf {
    dir.join("db").join("db")
}

fn flip(path: &Path, at: impl Fn(u64) -> u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let offset = at(len).min(len - 1);
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    // Several bits in a few bytes: sled's checksums must see it.
    for i in 0..8 {
        let o = (offset + i * 7).min(len - 1);
        file.read_exact_at(&mut byte, o).unwrap();
        byte[0] ^= 0x5a;
        file.write_all_at(&byte, o).unwrap();
    }
}

fn cut(path: &Path, keep: impl Fn(u64) -> u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(keep(len)).unwrap();
}

async fn check(name: &str, damage: impl FnOnce(&Path)) {
    if outside_broker_requested() {
        return;
    }
    let dir = filled_store(name).await;
    damage(&dir);
    let outcome = recovered_or_refused(&dir).await;
    eprintln!("{name}: {outcome}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_undamaged_store_recovers_everything_after_a_clean_stop() {
    if outside_broker_requested() {
        return;
    }
    let dir = filled_store("damage-none").await;
    assert_eq!(recovered_or_refused(&dir).await, "recovered");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_store_truncated_to_half_is_refused_or_recovered() {
    check("damage-half", |dir| cut(&data_file(dir), |len| len / 2)).await;
}

#[tokio::test]
async fn a_store_with_its_tail_cut_is_refused_or_recovered() {
    check("damage-tail-cut", |dir| {
        cut(&data_file(dir), |len| len.saturating_sub(4096))
    })
    .await;
}

#[tokio::test]
async fn bit_flips_near_the_head_are_refused_or_recovered() {
    check("damage-flip-head", |dir| flip(&data_file(dir), |_| 64)).await;
}

#[tokio::test]
async fn bit_flips_in_the_middle_are_refused_or_recovered() {
    check("damage-flip-middle", |dir| {
        flip(&data_file(dir), |len| len / 2)
    })
    .await;
}

#[tokio::test]
async fn bit_flips_near_the_tail_are_refused_or_recovered() {
    check("damage-flip-tail", |dir| {
        flip(&data_file(dir), |len| len.saturating_sub(200))
    })
    .await;
}

#[tokio::test]
async fn a_missing_data_file_is_refused() {
    if outside_broker_requested() {
        return;
    }
    let dir = filled_store("damage-missing-db").await;
    std::fs::remove_file(data_file(&dir)).unwrap();
    assert_eq!(recovered_or_refused(&dir).await, "refused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_store_with_every_file_missing_is_refused() {
    if outside_broker_requested() {
        return;
    }
    let dir = filled_store("damage-missing-all").await;
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    assert_eq!(recovered_or_refused(&dir).await, "refused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn accepting_the_loss_starts_with_what_is_left() {
    if outside_broker_requested() {
        return;
    }
    let dir = filled_store("damage-accepted").await;
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    let counts = start_again(&dir, true)
        .await
        .expect("starts with the loss accepted");
    assert_eq!(counts, vec![0; QUEUES.len()]);
    // The loss was accepted once: the next start is a normal one.
    assert!(start_again(&dir, false).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
