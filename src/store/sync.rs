//! Group commit: one flusher thread makes every write registered before a
//! flush durable with that flush.
//!
//! A writer inserts into sled, then calls [`Syncer::request`] and gets a
//! ticket. The flusher thread loops: take the highest ticket issued so far,
//! flush sled to disk, publish that ticket as durable. Every write whose
//! ticket is at most the durable one is on disk. While a flush runs, new
//! requests pile up and the next flush covers them all, so confirm
//! throughput grows with the number of publishers instead of paying one
//! fsync per message.
//!
//! A flush that fails settles its tickets as failed rather than durable:
//! the publishes they cover are nacked ([`Syncer::failed`]), the store
//! reports itself failing (the disk alarm is raised while it is), and the
//! failure is logged once until a flush succeeds again. The writes stay in
//! sled's buffer, so a later successful flush may still make them durable;
//! a nack only says the broker does not vouch for them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::{error, info};

/// How many failed ticket ranges are remembered: a channel settles its
/// publishes as soon as their flush ends, so only recent ones matter.
const FAILED_RANGES: usize = 1024;

#[derive(Debug)]
pub struct Syncer {
    /// Highest ticket handed out.
    requested: AtomicU64,
    /// Highest ticket settled (made durable, or failed).
    durable: watch::Sender<u64>,
    /// Ticket ranges (inclusive) whose flush failed, oldest first.
    failed: Mutex<VecDeque<(u64, u64)>>,
    /// The last flush failed.
    failing: AtomicBool,
    wake: Mutex<()>,
    wake_cv: Condvar,
    stop: AtomicBool,
    /// False with `--sync off`: every ticket is durable at once.
    enabled: bool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Runs on the flusher thread before each flush; false when something it
/// had to make durable (a stream's segment) failed, which keeps the ticket
/// pending.
pub type BeforeFlush = Box<dyn Fn() -> bool + Send + Sync>;

impl Syncer {
    /// Start the flusher thread for `db`.
    pub fn start(db: sled::Db, enabled: bool, before_flush: BeforeFlush) -> Arc<Syncer> {
        let (durable, _) = watch::channel(0);
        let syncer = Arc::new(Syncer {
            requested: AtomicU64::new(0),
            durable,
            failed: Mutex::default(),
            failing: AtomicBool::new(false),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            enabled,
            thread: Mutex::new(None),
        });
        if enabled {
            let worker = syncer.clone();
            let handle = std::thread::Builder::new()
                .name("warren-sync".into())
                .spawn(move || worker.run(db, before_flush));
            match handle {
                Ok(h) => *syncer.thread.lock() = Some(h),
                Err(e) => error!("cannot start the sync thread: {e}"),
            }
        }
        syncer
    }

    /// Register writes made so far; the returned ticket is durable once
    /// [`Syncer::durable`] reaches it.
    pub fn request(&self) -> u64 {
        if !self.enabled {
            return 0;
        }
        let ticket = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let _guard = self.wake.lock();
        self.wake_cv.notify_one();
        ticket
    }

    /// Whether flushes wait for the disk (false with `--sync off`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The highest settled ticket (everything, without syncing): durable
    /// unless [`Syncer::failed`].
    pub fn durable(&self) -> u64 {
        if !self.enabled {
            return u64::MAX;
        }
        *self.durable.borrow()
    }

    pub fn is_durable(&self, ticket: u64) -> bool {
        ticket == 0 || self.durable() >= ticket
    }

    /// Whether the flush that settled `ticket` failed.
    pub fn failed(&self, ticket: u64) -> bool {
        ticket != 0
            && self
                .failed
                .lock()
                .iter()
                .any(|&(from, to)| (from..=to).contains(&ticket))
    }

    /// Whether the last flush failed (the disk alarm stays raised until one
    /// succeeds).
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever a flush completes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Wait until `ticket` is durable.
    pub async fn wait(&self, ticket: u64) {
        if self.is_durable(ticket) {
            return;
        }
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|d| *d >= ticket).await;
    }

    fn run(&self, db: sled::Db, before_flush: BeforeFlush) {
        loop {
            {
                let mut guard = self.wake.lock();
                while self.requested.load(Ordering::Acquire) <= self.durable()
                    && !self.stop.load(Ordering::Acquire)
                {
                    self.wake_cv.wait(&mut guard);
                }
            }
            let target = self.requested.load(Ordering::Acquire);
            if !before_flush() {
                // Already logged; confirms stay pending.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            if let Err(e) = db.flush() {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    error!(
                        "flushing the store failed: {e}; publishes waiting for it are nacked \
                         and the disk alarm is raised until a flush succeeds"
                    );
                }
                let from = self.durable() + 1;
                {
                    let mut failed = self.failed.lock();
                    if failed.len() == FAILED_RANGES {
                        failed.pop_front();
                    }
                    failed.push_back((from, target));
                }
                self.durable.send_replace(target);
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                // Do not spin on a disk that keeps failing.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            if self.failing.swap(false, Ordering::AcqRel) {
                info!("flushing the store works again");
            }
            self.durable.send_replace(target);
            if self.stop.load(Ordering::Acquire) && self.requested.load(Ordering::Acquire) <= target
            {
                return;
            }
        }
    }

    /// Flush what is pending and stop the thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.lock();
            self.wake_cv.notify_one();
        }
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}
