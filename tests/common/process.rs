//! The `warren` binary as a child process, for tests of its command line,
//! its logging and its exit: started on a free loopback port, killed (and
//! reaped) when dropped, also when a test panics.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Read `reader` line by line on a thread of its own, into `into`.
pub fn collect_lines<R>(reader: R, into: Arc<Mutex<Vec<String>>>)
where
    R: std::io::Read + Send + 'static,
{
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            match line {
                Ok(line) => into.lock().unwrap().push(line),
                Err(_) => return,
            }
        }
    });
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary, told to listen on a free loopback port with a fresh data
/// directory; add arguments and standard streams, then [`Warren::spawn`].
pub struct WarrenCommand {
    pub command: Command,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl WarrenCommand {
    pub fn new() -> WarrenCommand {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data_dir = super::temp_dir("binary");
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
        command
            .arg("--listen")
            .arg(addr.to_string())
            .args(["--management-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            // Metrics on an ephemeral loopback port, not 0.0.0.0:15692
            // (a test's own --prometheus-listen still wins).
            .env("WARREN_PROMETHEUS_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        WarrenCommand {
            command,
            addr,
            data_dir,
        }
    }

    pub fn spawn(mut self) -> Warren {
        let child = self.command.spawn().expect("the warren binary starts");
        Warren {
            child: KillOnDrop(child),
            addr: self.addr,
            data_dir: self.data_dir,
        }
    }
}

/// A running `warren` process.
pub struct Warren {
    pub child: KillOnDrop,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Warren {
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Wait (bounded) until the port accepts connections; panics if the
    /// process exits first.
    pub async fn wait_until_accepting(&mut self) {
        for _ in 0..200 {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("warren exited early with {status}");
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("warren never accepted on {}", self.addr);
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.0.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    /// Wait (at most `secs`) for the process to exit.
    pub async fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        super::within(secs, async {
            loop {
                if let Some(status) = self.child.0.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Run the binary with `args` (after a free `--listen` port and a fresh
/// `--data-dir`) and `env`, waiting at most 10 s for it to exit: its exit
/// status (None if it was still running, and then killed) and what it
/// wrote to standard error.
pub async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<ExitStatus>, String) {
    let mut warren = WarrenCommand::new();
    warren
        .command
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    let mut warren = warren.spawn();
    let lines = Arc::new(Mutex::new(Vec::new()));
    collect_lines(warren.child.0.stderr.take().unwrap(), lines.clone());
    let mut status = None;
    for _ in 0..500 {
        status = warren.child.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(warren);
    // The reader thread sees end of file once the process is gone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stderr = lines.lock().unwrap().join("\n");
    (status, stderr)
}
