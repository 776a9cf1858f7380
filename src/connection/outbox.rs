//! The outgoing side of a connection: a shared buffer of encoded frames and
//! the writer task that drains it into the socket.
//!
//! Any task may append frames (a queue delivering, the connection answering
//! a method). The writer takes everything pending at once and writes it with
//! one vectored write, so frames produced while a write is in progress are
//! coalesced into the next one. The writer is woken only when the buffer goes
//! from empty to non-empty.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::protocol::FrameBuf;

/// Above this many pending bytes a connection gets no more deliveries and its
/// reader pauses, so a client that does not read cannot make the broker buffer
/// without bound.
const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Below this, deliveries resume.
const LOW_WATER: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub struct Outbox {
    frames: Mutex<FrameBuf>,
    wake_writer: Notify,
    /// Bytes appended and not yet written to the socket.
    pending: AtomicUsize,
    /// Set when a delivery was held back for lack of room.
    starved: AtomicBool,
    /// Wakes whoever waits for room (the reader, deliveries).
    drained: Notify,
    closed: AtomicBool,
}

impl Outbox {
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Append frames. The closure runs under the outbox lock: keep it to encoding.
    pub fn push<R>(&self, write: impl FnOnce(&mut FrameBuf) -> R) -> R {
        let mut frames = self.frames.lock();
        let before = frames.len();
        let result = write(&mut frames);
        let added = frames.len() - before;
        drop(frames);
        self.pending.fetch_add(added, Ordering::Relaxed);
        if before == 0 && added > 0 {
            self.wake_writer.notify_one();
        }
        result
    }

    /// Whether more deliveries may be queued for this socket. A `false`
    /// answer is remembered, so the writer reports when room returns.
    pub fn has_room(&self) -> bool {
        if self.pending.load(Ordering::Relaxed) < HIGH_WATER {
            return true;
        }
        self.starved.store(true, Ordering::Relaxed);
        false
    }

    /// Whether the reader should stop taking input until the writer catches up.
    pub fn is_congested(&self) -> bool {
        self.pending.load(Ordering::Relaxed) >= HIGH_WATER
    }

    /// Wait until the pending bytes fall under the low-water mark.
    pub async fn wait_for_room(&self) {
        loop {
            let drained = self.drained.notified();
            if self.pending.load(Ordering::Relaxed) < LOW_WATER || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    /// Stop accepting work: the writer flushes what is pending and shuts the socket.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn take(&self) -> Vec<Bytes> {
        self.frames.lock().take()
    }
}

/// Drain `outbox` into `socket` until the outbox is closed and empty or the
/// socket fails. `heartbeat` is the negotiated interval: when the socket has
/// been idle for half of it, a heartbeat frame is sent. `on_room` runs when a
/// starved outbox drains below the low-water mark.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    outbox: Arc<Outbox>,
    mut socket: W,
    heartbeat: Arc<Mutex<Option<Duration>>>,
    on_room: impl Fn(),
) {
    loop {
        let batch = outbox.take();
        if batch.is_empty() {
            if outbox.is_closed() {
                break;
            }
            let idle = *heartbeat.lock();
            match idle {
                Some(interval) => {
                    let wait = interval / 2;
                    if tokio::time::timeout(wait, outbox.wake_writer.notified())
                        .await
                        .is_err()
                    {
                        outbox.push(|f| f.put_heartbeat());
                    }
                }
                None => outbox.wake_writer.notified().await,
            }
            continue;
        }
        let written: usize = batch.iter().map(Bytes::len).sum();
        if write_all(&mut socket, batch).await.is_err() {
            outbox.closed.store(true, Ordering::Release);
            outbox.drained.notify_waiters();
            return;
        }
        let before = outbox.pending.fetch_sub(written, Ordering::Relaxed);
        let now = before.saturating_sub(written);
        if now < LOW_WATER {
            outbox.drained.notify_waiters();
            if outbox.starved.swap(false, Ordering::Relaxed) {
                on_room();
            }
        }
    }
    let _ = socket.flush().await;
    let _ = socket.shutdown().await;
}

/// Write every segment, using vectored writes when there are several.
async fn write_all<W: AsyncWrite + Unpin>(
    socket: &mut W,
    mut segments: Vec<Bytes>,
) -> std::io::Result<()> {
    if segments.len() == 1 {
        return socket.write_all(&segments[0]).await;
    }
    let mut first = 0;
    while first < segments.len() {
        let slices: Vec<IoSlice<'_>> = segments[first..]
            .iter()
            .take(64)
            .map(|s| IoSlice::new(s))
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 && first < segments.len() {
            let len = segments[first].len();
            if written >= len {
                written -= len;
                first += 1;
            } else {
                segments[first].advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}
