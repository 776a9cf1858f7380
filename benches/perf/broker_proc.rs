//! Starting and stopping a broker process for the scenarios that time a
//! start (`startup`, `wait-ready --exec`), and waiting for a broker to answer
//! the AMQP handshake.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{AmqpUri, Conn};

/// A broker started from a shell command line, in its own process group,
/// its output going to a log file.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    /// Just before `fork`: the zero of every start-up time.
    pub t0: Instant,
}

impl Spawned {
    /// Run CMD: split on whitespace and executed directly, or through
    /// `sh -c "exec CMD"` when it holds shell syntax (quotes, `$`, `;`, …).
    pub fn spawn(cmd: &str, log: &str) -> Result<Spawned, String> {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if words.is_empty() {
            return Err("empty broker command".into());
        }
        let shell = cmd.contains(|c: char| "'\"$|&;<>*?`\\(){}".contains(c));
        let mut command = if shell {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("exec {cmd}"));
            c
        } else {
            let mut c = Command::new(words[0]);
            c.args(&words[1..]);
            c
        };
        let out = File::create(log).map_err(|e| format!("creating {log}: {e}"))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("duplicating {log}: {e}"))?;
        let t0 = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {cmd:?}: {e}"))?;
        let pid = child.id();
        Ok(Spawned { child, pid, t0 })
    }

    /// `Err` once the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("broker process exited early: {status}")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("waiting for the broker: {e}")),
        }
    }

    /// Whether any process of its group is still alive.
    fn group_alive(&self) -> bool {
        // SAFETY: kill with signal 0 only checks for existence.
        unsafe { libc::kill(-(self.pid as i32), 0) == 0 }
    }

    /// SIGTERM to the process, wait (bounded) for it and its group to exit,
    /// SIGKILL the group if they do not. Returns the time the exit took and
    /// whether the stop was clean (no SIGKILL needed).
    pub async fn stop(&mut self, limit: Duration) -> (Duration, bool) {
        let t = Instant::now();
        // SAFETY: signalling a child we started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        let mut clean = false;
        while t.elapsed() < limit {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited && !self.group_alive() {
                clean = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !clean {
            eprintln!(
                "[perf] broker pid {} did not stop within {:.0} s: SIGKILL to its group",
                self.pid,
                limit.as_secs_f64()
            );
            // SAFETY: our child's own process group (process_group(0) above).
            unsafe {
                libc::kill(-(self.pid as i32), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        (t.elapsed(), clean)
    }

    /// Leave the process running after this tool exits.
    pub fn detach(self) {
        drop(self.child);
    }
}

/// Try the AMQP handshake every millisecond until it succeeds, `check`
/// fails, or `deadline` passes. Returns the open connection and the number
/// of attempts.
pub async fn wait_handshake(
    uri: &AmqpUri,
    deadline: Instant,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(Conn, u64), String> {
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let last_err =
            match tokio::time::timeout(Duration::from_secs(5), Conn::connect(uri, "perf-wait"))
                .await
            {
                Ok(Ok(c)) => return Ok((c, attempts)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "handshake took over 5 s".to_string(),
            };
        check()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "no handshake after {attempts} attempts (last: {last_err})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
