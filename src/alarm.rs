//! Resource alarms: memory above the high watermark, or free disk below the
//! limit. While one is raised, connections that publish are blocked (their
//! sockets are not read and clients that asked get `connection.blocked`);
//! consumers keep going, which is what clears the alarm.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Which alarms are raised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
}

impl AlarmState {
    pub fn active(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason `connection.blocked` carries, as RabbitMQ words it.
    pub fn reason(&self) -> &'static str {
        match (self.memory, self.disk) {
            (true, true) => "low on memory and disk",
            (true, false) => "low on memory",
            _ => "low on disk",
        }
    }
}

/// The alarms and their thresholds. Thresholds can change at run time
/// (RabbitMQ's `set_vm_memory_high_watermark` / `set_disk_free_limit`);
/// the monitor applies them at its next check.
#[derive(Debug)]
pub struct Alarms {
    state: watch::Sender<AlarmState>,
    /// `state.active()`, readable without the channel's lock: every
    /// publish frame checks it.
    active: AtomicBool,
    memory_limit: AtomicU64,
    disk_limit: AtomicU64,
    /// Wakes the monitor for an immediate check.
    recheck: Notify,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms::new()
    }
}

impl Alarms {
    pub fn new() -> Alarms {
        Alarms {
            state: watch::channel(AlarmState::default()).0,
            active: AtomicBool::new(false),
            memory_limit: AtomicU64::new(u64::MAX),
            disk_limit: AtomicU64::new(0),
            recheck: Notify::new(),
        }
    }

    /// Set the memory high watermark, in bytes, and check at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
        self.recheck.notify_one();
    }

    /// Set the disk free limit, in bytes, and check at once.
    pub fn set_disk_limit(&self, bytes: u64) {
        self.disk_limit.store(bytes, Ordering::Relaxed);
        self.recheck.notify_one();
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    pub fn disk_limit(&self) -> u64 {
        self.disk_limit.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> AlarmState {
        *self.state.borrow()
    }

    /// Whether any alarm is raised (a plain atomic read).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Apply `change`; whether the state changed.
    fn update(&self, change: impl FnOnce(&mut AlarmState)) -> bool {
        self.state.send_if_modified(|state| {
            let before = *state;
            change(state);
            self.active.store(state.active(), Ordering::Release);
            before != *state
        })
    }
}

/// Resident set size of this process, in bytes.
pub fn process_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

/// Total RAM of the machine, in bytes.
pub fn total_ram() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Free space available to this process on the filesystem holding `path`.
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // The field widths vary by platform (u64 on Linux x86_64).
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    Some(free)
}

/// Hand memory the allocator holds but does not use back to the system.
/// Messages come and go in bursts (a backlog is published, then drained),
/// and glibc keeps the freed space of its heaps, scattered between live
/// allocations, unless asked to release it. The monitor calls it on every
/// tick, once a second: a 1M-message backlog peaked ~30% lower than with
/// every 5 s, for well under 1% of a core.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused pages of the allocator's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Check memory and disk (the filesystem holding `data_dir`) once a second
/// against the thresholds in `alarms`, raise or clear the alarms, log each
/// change, and call `on_change` when the state changed (the broker then
/// tells its connections). The disk alarm is also raised while
/// `store_failing` says the store cannot flush. Runs until `stop` changes.
pub async fn monitor(
    alarms: Arc<Alarms>,
    data_dir: PathBuf,
    on_change: impl Fn() + Send + 'static,
    store_failing: impl Fn() -> bool + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    info!(
        "memory high watermark {} MiB, disk free limit {} MB",
        alarms.memory_limit() >> 20,
        alarms.disk_limit() / 1_000_000
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                tokio::task::spawn_blocking(return_free_memory);
            }
            _ = alarms.recheck.notified() => {}
            _ = stop.changed() => return,
        }
        let memory_limit = alarms.memory_limit();
        let disk_limit = alarms.disk_limit();
        if let Some(rss) = process_rss() {
            let high = rss > memory_limit;
            if high != alarms.state().memory {
                if high {
                    warn!(
                        "memory alarm set: {} MiB used, watermark {} MiB; blocking publishers",
                        rss >> 20,
                        memory_limit >> 20
                    );
                } else {
                    info!("memory alarm cleared: {} MiB used", rss >> 20);
                }
                if alarms.update(|s| s.memory = high) {
                    on_change();
                }
            }
        }
        let failing = store_failing();
        if let Some(free) = disk_free(&data_dir).or(failing.then_some(0)) {
            let low = free < disk_limit || failing;
            if low != alarms.state().disk {
                if failing {
                    // The flusher logged the failure itself.
                    warn!("disk alarm set: the store cannot flush; blocking publishers");
                } else if low {
                    warn!(
                        "disk alarm set: {} MB free, limit {} MB; blocking publishers",
                        free / 1_000_000,
                        disk_limit / 1_000_000
                    );
                } else {
                    info!("disk alarm cleared: {} MB free", free / 1_000_000);
                }
                if alarms.update(|s| s.disk = low) {
                    on_change();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_and_machine_figures() {
        assert!(process_rss().is_some_and(|r| r > 0));
        assert!(total_ram().is_some_and(|r| r > 0));
        assert!(disk_free(Path::new("/")).is_some());
    }
}
