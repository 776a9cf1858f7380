//! A client's socket as the connection and its outbox see it, whatever
//! carries it: plain TCP, or TLS over TCP.
//!
//! A [`ClientSocket`] splits into a reader (any `AsyncRead`, owned by the
//! connection's task) and a [`SocketWrite`], shared by the writer task and
//! the inline writes at the end of a batch (see `outbox`). Plain TCP splits
//! without a lock, and its write is a non-blocking vectored `write(2)` as
//! before; the TLS session, one state machine for both directions, is held
//! under a mutex taken only for the length of one poll.
//!
//! Nothing here knows about AMQP.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// The write side of a client's socket, usable from several tasks (never at
/// once: the outbox's `writing` flag decides who writes).
pub trait SocketWrite: Send + Sync + std::fmt::Debug + 'static {
    /// Write some of `bufs`; `Pending` (with `cx` woken when it is worth
    /// trying again) when the socket takes nothing now. A TLS socket may
    /// accept bytes it has not sent yet: [`SocketWrite::poll_flush`] sends them.
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Send what was accepted and not sent yet (nothing to do for TCP).
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Half-close after the last frame, so the peer reads the end of the
    /// stream (TLS: a `close_notify` alert first).
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// SO_LINGER 0: closing the socket resets the connection and drops what
    /// the peer has not taken.
    fn reset_on_close(&self) -> io::Result<()>;
}

/// An accepted client socket, ready for AMQP.
pub trait ClientSocket: Send + 'static {
    type Reader: AsyncRead + Unpin + Send + 'static;

    /// The reading half, and the writing half for the outbox.
    fn split(self) -> (Self::Reader, Arc<dyn SocketWrite>);

    /// The local address the client connected to.
    fn local_addr(&self) -> Option<std::net::SocketAddr>;
}

// ---- plain TCP ---------------------------------------------------------------

impl ClientSocket for TcpStream {
    type Reader = OwnedReadHalf;

    fn split(self) -> (OwnedReadHalf, Arc<dyn SocketWrite>) {
        let (reader, writer) = self.into_split();
        (reader, Arc::new(writer))
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        TcpStream::local_addr(self).ok()
    }
}

impl SocketWrite for OwnedWriteHalf {
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            // The write first: the common case (room in the socket) costs
            // one system call and no readiness bookkeeping.
            match self.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            ready!(self.as_ref().poll_write_ready(cx))?;
        }
    }

    fn poll_flush(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(self.as_ref()))
    }

    fn reset_on_close(&self) -> io::Result<()> {
        set_linger_zero(self.as_ref())
    }
}

// ---- TLS -----------------------------------------------------------------------

/// Both halves of a TLS connection: one session under one lock.
type SharedTls = Arc<Mutex<TlsStream<TcpStream>>>;

/// The reading half of a TLS connection.
#[derive(Debug)]
pub struct TlsReader(SharedTls);

/// The writing half of a TLS connection.
#[derive(Debug)]
pub struct TlsWriter(SharedTls);

impl ClientSocket for TlsStream<TcpStream> {
    type Reader = TlsReader;

    fn split(self) -> (TlsReader, Arc<dyn SocketWrite>) {
        let shared = Arc::new(Mutex::new(self));
        (TlsReader(shared.clone()), Arc::new(TlsWriter(shared)))
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.get_ref().0.local_addr().ok()
    }
}

impl AsyncRead for TlsReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Reading only reads from the socket (tokio-rustls writes from a
        // read only a last alert on error), so the reader's waker stays on
        // the read side and the writer's on the write side.
        Pin::new(&mut *self.0.lock()).poll_read(cx, buf)
    }
}

impl SocketWrite for TlsWriter {
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.lock()).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.lock()).poll_flush(cx)
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.lock()).poll_shutdown(cx)
    }

    fn reset_on_close(&self) -> io::Result<()> {
        set_linger_zero(self.0.lock().get_ref().0)
    }
}

// ---- socket options ------------------------------------------------------------

fn shutdown_write(socket: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // SAFETY: `fd` is the open socket `socket` owns; shutdown does not
    // invalidate it (the stream still closes it once, on drop).
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_linger_zero(socket: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the open socket `socket` owns, and the option value is
    // a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
