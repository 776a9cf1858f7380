//! The outgoing side of a connection: a shared buffer of encoded frames and
//! the writer task that drains it into the socket.
//!
//! Any task may append frames (a queue delivering, the connection answering
//! a method). The writer takes everything pending at once and writes it with
//! one vectored write, so frames produced while a write is in progress are
//! coalesced into the next one. The writer is woken only when the buffer goes
//! from empty to non-empty.
//!
//! A connection handling a batch of input opens a [`Batch`] on its thread for
//! the duration. Outboxes that go from empty to non-empty during the batch
//! are not handed to their writers at once: when the batch ends, each one
//! holding only a little (a trickle of deliveries, a reply) is written
//! straight to its socket from the batch's thread with a non-blocking write.
//! That saves a message the hand-off to another task (a wake-up and a switch)
//! on its way to the consumer. Larger amounts, a socket that cannot take
//! everything, and any outbox whose writer is busy go to the writer task as
//! before, so a busy broker still spreads socket writes over its workers.

use std::cell::RefCell;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::socket::SocketWrite;
use crate::protocol::FrameBuf;

/// Above this many pending bytes a connection gets no more deliveries and its
/// reader pauses, so a client that does not read cannot make the broker buffer
/// without bound.
const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Below this, deliveries resume.
const LOW_WATER: usize = 1024 * 1024;
/// At most this many bytes are written by a batch's thread itself (see the
/// module documentation); more is left to the writer task.
const INLINE_MAX: usize = 16 * 1024;
/// Most slices handed to one vectored write.
const MAX_IOV: usize = 64;

#[derive(Debug)]
struct Pending {
    frames: FrameBuf,
    /// Someone (the writer task, or a batch writing inline) holds frames
    /// taken from `frames` and is writing them: nobody else may write.
    writing: bool,
    /// The socket's write half, shared by the writer task and inline
    /// writes; dropped here (with anything still pending) when the writer
    /// ends or the socket fails, so the socket closes even while others
    /// still hold the outbox. Without it, pushed frames are discarded.
    socket: Option<Arc<dyn SocketWrite>>,
    /// An inline write left bytes in the socket's TLS layer that it could
    /// not send without waiting: the writer task flushes them.
    unflushed: bool,
    /// The negotiated heartbeat interval: the writer sends a heartbeat
    /// frame at least every half of it.
    heartbeat: Option<Duration>,
}

#[derive(Debug)]
pub struct Outbox {
    pending_frames: Mutex<Pending>,
    wake_writer: Notify,
    /// Bytes appended and not yet written to the socket.
    pending: AtomicUsize,
    /// Set when a delivery was held back for lack of room.
    starved: AtomicBool,
    /// Wakes whoever waits for room (the reader, deliveries).
    drained: Notify,
    closed: AtomicBool,
    /// A write failed: the socket is gone and nothing more can be sent.
    broken: AtomicBool,
}

impl Outbox {
    /// An outbox writing to `socket`, once [`run_writer`] runs for it.
    pub fn new(socket: Arc<dyn SocketWrite>) -> Self {
        Outbox {
            pending_frames: Mutex::new(Pending {
                frames: FrameBuf::new(),
                writing: false,
                socket: Some(socket),
                unflushed: false,
                heartbeat: None,
            }),
            wake_writer: Notify::new(),
            pending: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        }
    }

    /// Append frames. The closure runs under the outbox lock: keep it to
    /// encoding. Once the socket is gone the frames are discarded.
    pub fn push<R>(self: &Arc<Self>, write: impl FnOnce(&mut FrameBuf) -> R) -> R {
        let mut p = self.pending_frames.lock();
        let before = p.frames.len();
        let result = write(&mut p.frames);
        if p.socket.is_none() {
            // Nothing was pending (see `release_socket`): drop only these.
            p.frames.take();
            return result;
        }
        let added = p.frames.len() - before;
        let idle = !p.writing;
        // Counted before the lock is let go, so no write of these bytes can
        // be subtracted first (the count would wrap for a moment).
        self.pending.fetch_add(added, Ordering::Relaxed);
        drop(p);
        if before == 0 && added > 0 && idle && !Batch::defer(self) {
            self.wake_writer.notify_one();
        }
        result
    }

    /// Start (or stop) sending heartbeats every half of `interval`.
    pub fn set_heartbeat(&self, interval: Option<Duration>) {
        self.pending_frames.lock().heartbeat = interval;
        self.wake_writer.notify_one();
    }

    /// Whether more deliveries may be queued for this socket. A `false`
    /// answer is remembered, so the writer reports when room returns.
    pub fn has_room(&self) -> bool {
        if self.pending.load(Ordering::Relaxed) < HIGH_WATER && !self.is_closed() {
            return true;
        }
        self.starved.store(true, Ordering::Relaxed);
        false
    }

    /// Whether the reader should stop taking input until the writer catches up.
    pub fn is_congested(&self) -> bool {
        self.pending.load(Ordering::Relaxed) >= HIGH_WATER
    }

    /// Wait until the pending bytes fall under the low-water mark, or the
    /// outbox closes (then there is no room to wait for: see `is_broken`).
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

    /// Whether a write failed: the peer is gone (or the socket broke), so
    /// the connection has nothing left to do.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Give up a socket whose peer does not take what is pending: when it
    /// closes, it is reset rather than left to the kernel to deliver (and
    /// hold) the rest.
    pub fn abandon_socket(&self) {
        if let Some(socket) = self.pending_frames.lock().socket.clone() {
            let _ = socket.reset_on_close();
        }
        self.release_socket();
    }

    /// Give up the socket: frames still pending are dropped and later ones
    /// discarded, and the socket closes once the writer lets go of it.
    pub fn release_socket(&self) {
        let mut p = self.pending_frames.lock();
        let dropped = p.frames.take();
        p.socket = None;
        let bytes: usize = dropped.iter().map(Bytes::len).sum();
        self.pending.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Take everything pending for writing, unless someone is writing
    /// already; nothing (an empty list) when only a flush is owed.
    fn take(&self) -> Option<Vec<Bytes>> {
        let mut p = self.pending_frames.lock();
        if p.writing || (p.frames.is_empty() && !p.unflushed) || p.socket.is_none() {
            return None;
        }
        p.writing = true;
        p.unflushed = false;
        Some(p.frames.take())
    }

    /// A write of `written` bytes ended; `unwritten` (what is left of the
    /// taken frames) goes back in front of anything appended since. Whether
    /// frames are left to write.
    fn wrote(&self, written: usize, unwritten: Vec<Bytes>) -> bool {
        let mut p = self.pending_frames.lock();
        p.writing = false;
        p.frames.prepend(unwritten);
        let more = !p.frames.is_empty();
        drop(p);
        self.pending.fetch_sub(written, Ordering::Relaxed);
        more
    }

    /// Nobody is writing and nothing is pending.
    fn is_idle(&self) -> bool {
        let p = self.pending_frames.lock();
        !p.writing && p.frames.is_empty()
    }

    /// The socket failed: nothing more will be written, and what is
    /// pending is dropped at once (a dead consumer's backlog is not kept
    /// until its connection task notices).
    fn failed(&self) {
        self.broken.store(true, Ordering::Release);
        self.closed.store(true, Ordering::Release);
        self.release_socket();
        self.drained.notify_waiters();
    }

    /// End of a batch that appended to this idle outbox: write what it holds
    /// from this thread if it is small and the socket takes all of it now,
    /// otherwise wake the writer task.
    fn flush_inline(&self) {
        if self.is_closed() || self.starved.load(Ordering::Relaxed) {
            return self.wake_writer.notify_one();
        }
        let (total, batch, socket) = {
            let mut p = self.pending_frames.lock();
            if p.writing || p.frames.is_empty() {
                // The writer has it (or already wrote it).
                return;
            }
            let Some(socket) = p.socket.clone() else {
                return;
            };
            if p.frames.len() > INLINE_MAX {
                drop(p);
                return self.wake_writer.notify_one();
            }
            p.writing = true;
            (p.frames.len(), p.frames.take(), socket)
        };
        let (written, unwritten) = match try_write(&*socket, batch) {
            Ok(progress) => progress,
            Err(_) => {
                self.wrote(total, Vec::new());
                self.failed();
                return self.wake_writer.notify_one();
            }
        };
        // A TLS socket may hold some of it still (TCP never does).
        let flushed = written == total && try_flush(&*socket);
        if !flushed {
            self.pending_frames.lock().unflushed = true;
        }
        let more = self.wrote(written, unwritten);
        if more || !flushed || self.is_closed() {
            self.wake_writer.notify_one();
        }
    }
}

/// The outboxes a batch on this thread deferred. The list keeps its
/// capacity from batch to batch.
#[derive(Default)]
struct Deferred {
    open: bool,
    outboxes: Vec<Arc<Outbox>>,
}

thread_local! {
    static BATCH: RefCell<Deferred> = RefCell::default();
}

/// A batch of input being handled on this thread (see the module
/// documentation). Open it, handle the input without awaiting, then
/// [`Batch::finish`] it; dropping it unfinished hands every deferred outbox
/// to its writer.
pub struct Batch {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Batch {
    pub fn open() -> Batch {
        BATCH.with(|b| b.borrow_mut().open = true);
        Batch {
            _not_send: std::marker::PhantomData,
        }
    }

    /// Write every deferred outbox (inline when small, else by its writer).
    pub fn finish(self) {
        Batch::close(Outbox::flush_inline);
    }

    /// Remember `outbox` for the end of the open batch; false with none open.
    fn defer(outbox: &Arc<Outbox>) -> bool {
        BATCH.with(|b| {
            let mut b = b.borrow_mut();
            if b.open {
                b.outboxes.push(outbox.clone());
            }
            b.open
        })
    }

    /// End the batch, handing each deferred outbox to `flush`.
    fn close(flush: impl Fn(&Outbox)) {
        let mut outboxes = BATCH.with(|b| {
            let mut b = b.borrow_mut();
            b.open = false;
            std::mem::take(&mut b.outboxes)
        });
        for outbox in outboxes.drain(..) {
            flush(&outbox);
        }
        BATCH.with(|b| b.borrow_mut().outboxes = outboxes);
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // After `finish` nothing is left; otherwise the writers take over.
        Batch::close(|outbox| outbox.wake_writer.notify_one());
    }
}

/// Drain `outbox` into its socket until the outbox is closed and empty or the
/// socket fails. With a heartbeat interval set, a heartbeat frame goes out
/// whenever the writer has had nothing to do for half of it (writes made
/// inline by batches do not wake it, so it may send one while the socket
/// is busy: an extra heartbeat is harmless, a missing one is not). `on_room`
/// runs when a starved outbox drains below the low-water mark, and when the
/// socket has failed, so that the connection learns it is over even while it
/// waits for room rather than reading.
pub async fn run_writer(outbox: Arc<Outbox>, on_room: impl Fn()) {
    let Some(socket) = outbox.pending_frames.lock().socket.clone() else {
        return;
    };
    loop {
        if outbox.is_broken() {
            // An inline write failed.
            on_room();
            return;
        }
        if let Some(batch) = outbox.take() {
            let written: usize = batch.iter().map(Bytes::len).sum();
            if write_all(&*socket, batch).await.is_err() {
                outbox.wrote(written, Vec::new());
                outbox.failed();
                on_room();
                return;
            }
            outbox.wrote(written, Vec::new());
            if outbox.pending.load(Ordering::Relaxed) < LOW_WATER {
                outbox.drained.notify_waiters();
                if outbox.starved.swap(false, Ordering::Relaxed) {
                    on_room();
                }
            }
            continue;
        }
        if outbox.is_closed() && outbox.is_idle() {
            break;
        }
        let heartbeat = outbox.pending_frames.lock().heartbeat;
        match heartbeat {
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
    }
    outbox.release_socket();
    // Half-close: the peer reads EOF after the last frame.
    let _ = std::future::poll_fn(|cx| socket.poll_shutdown(cx)).await;
}

/// Write as much of `segments` as the socket takes without waiting: the
/// bytes written and the segments (or parts) left over.
fn try_write(
    socket: &dyn SocketWrite,
    mut segments: Vec<Bytes>,
) -> std::io::Result<(usize, Vec<Bytes>)> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut first = 0;
    let mut total = 0;
    while first < segments.len() {
        let Poll::Ready(written) = write_some(socket, &mut cx, &segments[first..])? else {
            break;
        };
        total += written;
        first = advance(&mut segments, first, written);
    }
    segments.drain(..first);
    Ok((total, segments))
}

/// Send what the socket's TLS layer holds, without waiting: whether all of
/// it went (always, for TCP).
fn try_flush(socket: &dyn SocketWrite) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    // An error shows at the next write.
    !matches!(socket.poll_flush(&mut cx), Poll::Pending)
}

/// Write every segment, waiting for the socket whenever it is full, then
/// flush.
async fn write_all(socket: &dyn SocketWrite, mut segments: Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    while first < segments.len() {
        let written = std::future::poll_fn(|cx| write_some(socket, cx, &segments[first..])).await?;
        first = advance(&mut segments, first, written);
    }
    std::future::poll_fn(|cx| socket.poll_flush(cx)).await
}

/// One vectored write of (the first `MAX_IOV` of) `segments`: the bytes
/// written, or `Pending` when the socket takes nothing now.
fn write_some(
    socket: &dyn SocketWrite,
    cx: &mut Context<'_>,
    segments: &[Bytes],
) -> Poll<std::io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let n = segments.len().min(MAX_IOV);
    for (slice, segment) in slices.iter_mut().zip(segments) {
        *slice = IoSlice::new(segment);
    }
    match socket.poll_write_vectored(cx, &slices[..n]) {
        Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
        other => other,
    }
}

/// Consume `written` bytes from `segments[first..]`; the new first index.
fn advance(segments: &mut [Bytes], mut first: usize, mut written: usize) -> usize {
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
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// An outbox on one end of a loopback connection, and the other end.
    async fn pair() -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_read, write) = client.expect("connect").into_split();
        // The read half is dropped: only the write half matters here.
        let (peer, _) = accepted.expect("accept");
        (Arc::new(Outbox::new(Arc::new(write))), peer)
    }

    async fn read_exactly(peer: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .expect("bytes arrive in time")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn small_batch_is_written_by_the_batch_itself() {
        let (outbox, mut peer) = pair().await;
        // No writer task runs: only an inline write can get the bytes out.
        let batch = Batch::open();
        outbox.push(|f| f.put_raw(b"hello"));
        outbox.push(|f| f.put_raw(b" world"));
        batch.finish();
        assert_eq!(read_exactly(&mut peer, 11).await, b"hello world");
        assert_eq!(outbox.pending.load(Ordering::Relaxed), 0);
        assert!(outbox.is_idle());
    }

    #[tokio::test]
    async fn large_batch_is_left_to_the_writer() {
        let (outbox, mut peer) = pair().await;
        let big = vec![7u8; INLINE_MAX + 1];
        let batch = Batch::open();
        outbox.push(|f| f.put_raw(&big));
        batch.finish();
        // Still pending: the batch handed it to the (not yet running) writer.
        assert_eq!(outbox.pending.load(Ordering::Relaxed), big.len());
        let writer = tokio::spawn(run_writer(outbox.clone(), || {}));
        assert_eq!(read_exactly(&mut peer, big.len()).await, big);
        outbox.close();
        writer.await.expect("writer ends");
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.expect("EOF after close");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn inline_and_writer_writes_keep_the_order_of_pushes() {
        let (outbox, mut peer) = pair().await;
        let writer = tokio::spawn(run_writer(outbox.clone(), || {}));
        let mut expected = Vec::new();
        for i in 0u32..2000 {
            // Mix small inline batches, pushes outside any batch, and
            // batches too large to write inline.
            let chunk: Vec<u8> = match i % 3 {
                2 => i.to_be_bytes().repeat(INLINE_MAX / 4 + 1),
                _ => i.to_be_bytes().to_vec(),
            };
            expected.extend_from_slice(&chunk);
            if i % 3 == 1 {
                outbox.push(|f| f.put_raw(&chunk));
            } else {
                let batch = Batch::open();
                outbox.push(|f| f.put_raw(&chunk));
                batch.finish();
            }
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let reading = tokio::spawn(async move {
            let got = read_exactly(&mut peer, expected.len()).await;
            assert!(got == expected, "bytes out of order");
        });
        reading.await.expect("reader");
        outbox.close();
        writer.await.expect("writer ends");
    }

    #[tokio::test]
    async fn dropping_an_unfinished_batch_hands_its_outboxes_to_the_writer() {
        let (outbox, mut peer) = pair().await;
        let writer = tokio::spawn(run_writer(outbox.clone(), || {}));
        {
            let _batch = Batch::open();
            outbox.push(|f| f.put_raw(b"abc"));
        }
        assert_eq!(read_exactly(&mut peer, 3).await, b"abc");
        outbox.close();
        writer.await.expect("writer ends");
    }

    #[tokio::test]
    async fn a_failed_socket_drops_what_is_pending_and_tells_the_connection() {
        let (outbox, peer) = pair().await;
        // The peer resets the connection (SO_LINGER 0, then close).
        let (peer_read, peer_write) = peer.into_split();
        peer_write.reset_on_close().expect("SO_LINGER");
        drop((peer_read, peer_write));
        let told = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(run_writer(outbox.clone(), {
            let told = told.clone();
            move || told.store(true, Ordering::Relaxed)
        }));
        for _ in 0..500 {
            if outbox.is_broken() {
                break;
            }
            outbox.push(|f| f.put_raw(&[0u8; 64 * 1024]));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer ends")
            .expect("writer");
        assert!(outbox.is_broken());
        assert!(told.load(Ordering::Relaxed), "the connection was not told");
        // Nothing is kept for a socket that is gone, and nothing waits on it.
        outbox.push(|f| f.put_raw(b"late"));
        assert_eq!(outbox.pending.load(Ordering::Relaxed), 0);
        assert!(!outbox.has_room());
        assert!(!outbox.is_congested());
        tokio::time::timeout(Duration::from_secs(1), outbox.wait_for_room())
            .await
            .expect("no room to wait for");
    }

    #[test]
    fn prepend_puts_leftovers_before_later_frames() {
        let mut fb = FrameBuf::new();
        fb.put_raw(b"later");
        fb.prepend(vec![
            Bytes::from_static(b"first "),
            Bytes::from_static(b"then "),
        ]);
        assert_eq!(fb.len(), 16);
        assert_eq!(fb.take().concat(), b"first then later");
    }
}
