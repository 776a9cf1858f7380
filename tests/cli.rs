//! The `warren` binary itself: what it refuses at start, how it logs, and
//! that logging never takes it down. Warren's own command line, so these
//! tests skip when WARREN_TEST_AMQP_URI points at another broker.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{Warren, WarrenCommand, collect_lines, run_to_exit};
use common::*;
use lapin::options::*;
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn external() -> bool {
    std::env::var_os("WARREN_TEST_AMQP_URI").is_some()
}

/// Publish one message and get it back, through a fresh connection.
async fn round_trip(warren: &Warren) {
    let conn = within(
        10,
        Connection::connect(&warren.uri(), ConnectionProperties::default()),
    )
    .await
    .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let queue = temp_queue(&ch).await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"still here",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let got = within(5, async {
        loop {
            if let Some(m) = ch
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(got.delivery.data, b"still here");
    conn.close(200, "bye".into()).await.expect("close");
}

/// Start the binary with its standard output collected, and wait until it
/// has logged that it listens: the lines so far, and the process.
async fn start_logging_to_a_pipe(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Warren, Arc<Mutex<Vec<String>>>) {
    let mut command = WarrenCommand::new();
    command
        .command
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    let mut warren = command.spawn();
    let lines = Arc::new(Mutex::new(Vec::new()));
    collect_lines(warren.child.0.stdout.take().unwrap(), lines.clone());
    warren.wait_until_accepting().await;
    within(10, async {
        while !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("listening for AMQP"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (warren, lines)
}

#[tokio::test]
async fn logging_to_a_full_device_does_not_stop_the_broker() {
    if external() {
        return;
    }
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    let mut command = WarrenCommand::new();
    command
        .command
        .args(["--log-level", "debug"])
        .stdout(full())
        .stderr(full());
    let mut warren = command.spawn();
    warren.wait_until_accepting().await;
    // Every connection logs several lines, none of which can be written.
    for _ in 0..3 {
        round_trip(&warren).await;
    }
    assert!(
        warren.child.0.try_wait().unwrap().is_none(),
        "warren exited"
    );
    warren.terminate();
    let status = warren.wait_exit(10).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test]
async fn frame_max_below_the_protocol_minimum_is_refused_at_start() {
    if external() {
        return;
    }
    let (status, stderr) = run_to_exit(&["--frame-max", "10"], &[]).await;
    let status = status.expect("warren refuses to start");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("--frame-max") && stderr.contains("4096"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(&[], &[("WARREN_FRAME_MAX", "4095")]).await;
    assert!(!status.expect("refused").success(), "{stderr}");
}

#[tokio::test]
async fn an_unreadable_memory_watermark_or_disk_limit_is_refused_at_start() {
    if external() {
        return;
    }
    let (status, stderr) = run_to_exit(&["--memory-high-watermark", "banana"], &[]).await;
    let status = status.expect("warren refuses to start");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("--memory-high-watermark") && stderr.contains("banana"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(&[], &[("WARREN_DISK_FREE_LIMIT", "plenty")]).await;
    let status = status.expect("warren refuses to start");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("--disk-free-limit") && stderr.contains("plenty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_embedded_broker_refuses_the_same_settings() {
    if external() {
        return;
    }
    let dir = temp_dir("refused");
    for adjust in [
        (|c: &mut warren::Config| c.frame_max = 10) as fn(&mut warren::Config),
        |c| c.memory_high_watermark = "banana".into(),
        |c| c.disk_free_limit = "plenty".into(),
    ] {
        let mut config = warren::Config::ephemeral(&dir);
        adjust(&mut config);
        let error = warren::Server::start(config)
            .await
            .expect_err("the broker refuses to start");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    if external() {
        return;
    }
    let (mut warren, lines) = start_logging_to_a_pipe(&[], &[]).await;
    round_trip(&warren).await;
    warren.terminate();
    let status = warren.wait_exit(10).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in {lines:?}"
    );
}

#[tokio::test]
async fn json_log_format_writes_one_object_per_line() {
    if external() {
        return;
    }
    for (args, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("WARREN_LOG_FORMAT", "json")][..]),
    ] {
        let (mut warren, lines) = start_logging_to_a_pipe(args, env).await;
        round_trip(&warren).await;
        warren.terminate();
        let status = warren.wait_exit(10).await;
        assert_eq!(status.code(), Some(0), "exit status {status}");
        let lines = lines.lock().unwrap().clone();
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let object = value.as_object().unwrap_or_else(|| panic!("{line}"));
            assert!(object.contains_key("timestamp"), "{line}");
            assert!(object.contains_key("level"), "{line}");
            assert!(object.contains_key("message"), "{line}");
        }
        assert!(
            lines.iter().any(|l| l.contains("connection opened")),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_at_start() {
    if external() {
        return;
    }
    let (status, stderr) = run_to_exit(&["--log-format", "xml"], &[]).await;
    assert!(!status.expect("refused").success(), "{stderr}");
    assert!(stderr.contains("--log-format"), "{stderr}");
}
