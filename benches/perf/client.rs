//! A minimal, pipelined AMQP 0-9-1 client for benchmarking.
//!
//! Set-up is request/response on [`Conn`] (handshake with PLAIN, channel
//! open, declares, binds, qos, confirm.select, consume). The hot path then
//! takes the connection apart with [`Conn::into_parts`]: a [`Reader`] that
//! cuts frames straight out of its read buffer without allocating, and a
//! [`Writer`] whose buffer collects any number of frames for one write.
//! Server-to-client methods are decoded here by hand (the broker's
//! `method::decode` reads client methods only).

use std::fmt;
use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use warren::protocol::FrameBuf;
use warren::protocol::frame::{
    FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_OVERHEAD, PROTOCOL_HEADER,
};
use warren::protocol::method::{
    CLASS_BASIC, CLASS_CHANNEL, CLASS_CONFIRM, CLASS_CONNECTION, CLASS_EXCHANGE, CLASS_QUEUE,
};

/// The frame-max we ask for (the broker may offer less).
pub const CLIENT_FRAME_MAX: u32 = 131_072;
const READ_CHUNK: usize = 256 * 1024;
/// How long a blocking socket's read or write waits before returning, so a
/// thread blocked on it can look for cancellation.
pub const BLOCKING_POLL: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by peer (EOF)")]
    Eof,
    #[error("connection.close from broker: {code} {text} (on method {class}.{method})")]
    ConnectionClosed {
        code: u16,
        text: String,
        class: u16,
        method: u16,
    },
    #[error("channel {channel} closed by broker: {code} {text} (on method {class}.{method})")]
    ChannelClosed {
        channel: u16,
        code: u16,
        text: String,
        class: u16,
        method: u16,
    },
    #[error("protocol: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

fn proto<T>(msg: impl Into<String>) -> Result<T> {
    Err(ClientError::Protocol(msg.into()))
}

// ---------------------------------------------------------------------------
// URI

/// `amqp://user:pass@host:port/vhost`, vhost percent-decoded (`%2f` is `/`).
#[derive(Debug, Clone)]
pub struct AmqpUri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

impl AmqpUri {
    pub fn parse(uri: &str) -> std::result::Result<AmqpUri, String> {
        let rest = uri
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("{uri:?}: only amqp:// URIs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(ui) => match ui.find(':') {
                Some(i) => (percent_decode(&ui[..i])?, percent_decode(&ui[i + 1..])?),
                None => (percent_decode(ui)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = match hostport.rfind(':') {
            Some(i) => (
                hostport[..i].to_string(),
                hostport[i + 1..]
                    .parse::<u16>()
                    .map_err(|_| format!("{uri:?}: bad port"))?,
            ),
            None => (hostport.to_string(), 5672),
        };
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) => percent_decode(p)?,
        };
        Ok(AmqpUri {
            host: if host.is_empty() {
                "127.0.0.1".into()
            } else {
                host
            },
            port,
            user,
            pass,
            vhost,
        })
    }

    /// The URI without the password, for reports.
    pub fn display(&self) -> String {
        let vhost = self.vhost.replace('%', "%25").replace('/', "%2f");
        format!("amqp://{}@{}:{}/{}", self.user, self.host, self.port, vhost)
    }
}

// ---------------------------------------------------------------------------
// Encoding helpers

pub fn put_shortstr(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(255)];
    b.put_u8(s.len() as u8);
    b.put_slice(s);
}

pub fn put_longstr(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
    b.put_slice(s);
}

fn put_empty_table(b: &mut BytesMut) {
    b.put_u32(0);
}

/// A field table of string and bool entries, nested one level for capabilities.
pub enum FieldVal<'a> {
    Str(&'a str),
    Bool(bool),
    Table(&'a [(&'a str, FieldVal<'a>)]),
}

fn put_table(b: &mut BytesMut, entries: &[(&str, FieldVal<'_>)]) {
    let mut t = BytesMut::new();
    for (k, v) in entries {
        put_shortstr(&mut t, k);
        match v {
            FieldVal::Str(s) => {
                t.put_u8(b'S');
                put_longstr(&mut t, s.as_bytes());
            }
            FieldVal::Bool(x) => {
                t.put_u8(b't');
                t.put_u8(*x as u8);
            }
            FieldVal::Table(inner) => {
                t.put_u8(b'F');
                put_table(&mut t, inner);
            }
        }
    }
    b.put_u32(t.len() as u32);
    b.put_slice(&t);
}

/// Bit flags packed into one octet, first flag in the lowest bit.
fn bits(flags: &[bool]) -> u8 {
    flags
        .iter()
        .enumerate()
        .fold(0u8, |acc, (i, &f)| acc | ((f as u8) << i))
}

// ---------------------------------------------------------------------------
// Decoding

/// Reads method arguments.
pub struct Args<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Args<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Args { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.pos + n > self.b.len() {
            return proto("method arguments end early");
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    pub fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    pub fn shortstr(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
}

/// One frame, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Class and method ids and the argument bytes of a method frame.
    pub fn method(&self) -> Result<(u16, u16, &'a [u8])> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return proto("not a method frame");
        }
        let p = self.payload;
        Ok((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
            &p[4..],
        ))
    }
}

/// The server-to-client methods the benchmark reacts to.
#[derive(Debug)]
pub enum Incoming<'a> {
    Deliver { tag: u64, redelivered: bool },
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool },
    Return { code: u16, text: &'a [u8] },
    Cancel,
    ConnectionClose(ClientError),
    ConnectionCloseOk,
    ChannelClose(ClientError),
    Blocked(&'a [u8]),
    Unblocked,
    Other,
}

fn close_error(args: &[u8], channel: Option<u16>) -> Result<ClientError> {
    let mut a = Args::new(args);
    let code = a.u16()?;
    let text = String::from_utf8_lossy(a.shortstr()?).into_owned();
    let class = a.u16()?;
    let method = a.u16()?;
    Ok(match channel {
        None => ClientError::ConnectionClosed {
            code,
            text,
            class,
            method,
        },
        Some(channel) => ClientError::ChannelClosed {
            channel,
            code,
            text,
            class,
            method,
        },
    })
}

/// Decode a method frame sent by the broker.
pub fn decode_incoming<'a>(frame: &FrameRef<'a>) -> Result<Incoming<'a>> {
    let (class, method, args) = frame.method()?;
    let mut a = Args::new(args);
    Ok(match (class, method) {
        (CLASS_BASIC, 60) => {
            a.shortstr()?; // consumer tag
            let tag = a.u64()?;
            let redelivered = a.u8()? & 1 != 0;
            Incoming::Deliver { tag, redelivered }
        }
        (CLASS_BASIC, 80) => {
            let tag = a.u64()?;
            Incoming::Ack {
                tag,
                multiple: a.u8()? & 1 != 0,
            }
        }
        (CLASS_BASIC, 120) => {
            let tag = a.u64()?;
            Incoming::Nack {
                tag,
                multiple: a.u8()? & 1 != 0,
            }
        }
        (CLASS_BASIC, 50) => {
            let code = a.u16()?;
            Incoming::Return {
                code,
                text: a.shortstr()?,
            }
        }
        (CLASS_BASIC, 30) => Incoming::Cancel,
        (CLASS_CONNECTION, 50) => Incoming::ConnectionClose(close_error(args, None)?),
        (CLASS_CONNECTION, 51) => Incoming::ConnectionCloseOk,
        (CLASS_CONNECTION, 60) => Incoming::Blocked(a.shortstr()?),
        (CLASS_CONNECTION, 61) => Incoming::Unblocked,
        (CLASS_CHANNEL, 40) => Incoming::ChannelClose(close_error(args, Some(frame.channel))?),
        _ => Incoming::Other,
    })
}

/// A message delivered to a consumer, once its body is complete.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub channel: u16,
    pub tag: u64,
    /// The first bytes of the body (a timestamp, when the producer stamps one).
    pub head: [u8; 16],
    pub head_len: usize,
}

impl Delivery {
    /// The producer's timestamp (first 8 body bytes, big-endian ns), if present.
    pub fn stamp(&self) -> Option<u64> {
        (self.head_len >= 8).then(|| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&self.head[..8]);
            u64::from_be_bytes(a)
        })
    }
}

#[derive(Default, Clone, Copy)]
struct Pending {
    active: bool,
    have_header: bool,
    tag: u64,
    body_len: u64,
    got: u64,
    head: [u8; 16],
    head_len: usize,
}

/// Reassembles deliver + header + body frames, per channel.
#[derive(Default)]
pub struct Assembler {
    pending: Vec<Pending>,
}

impl Assembler {
    fn slot(&mut self, channel: u16) -> &mut Pending {
        let i = channel as usize;
        if self.pending.len() <= i {
            self.pending.resize(i + 1, Pending::default());
        }
        &mut self.pending[i]
    }

    /// A `basic.deliver` started a message on `channel`.
    pub fn deliver(&mut self, channel: u16, tag: u64) {
        *self.slot(channel) = Pending {
            active: true,
            tag,
            ..Pending::default()
        };
    }

    /// Feed a header or body frame; returns the delivery when it completes.
    pub fn content(&mut self, frame: &FrameRef<'_>) -> Result<Option<Delivery>> {
        let channel = frame.channel;
        let p = self.slot(channel);
        if !p.active {
            // Content after basic.get-ok/return etc.: not ours to count.
            return Ok(None);
        }
        if frame.kind == FRAME_HEADER {
            if frame.payload.len() < 12 {
                return proto("short content header");
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&frame.payload[4..12]);
            p.body_len = u64::from_be_bytes(a);
            p.have_header = true;
        } else {
            if !p.have_header {
                return proto("body frame before content header");
            }
            let data = frame.payload;
            if p.head_len < p.head.len() {
                let n = (p.head.len() - p.head_len).min(data.len());
                p.head[p.head_len..p.head_len + n].copy_from_slice(&data[..n]);
                p.head_len += n;
            }
            p.got += data.len() as u64;
        }
        if p.have_header && p.got >= p.body_len {
            p.active = false;
            return Ok(Some(Delivery {
                channel,
                tag: p.tag,
                head: p.head,
                head_len: p.head_len,
            }));
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// Reader and writer

/// Frames cut straight out of one growing read buffer.
pub struct Reader<R> {
    rd: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame_max: usize,
    /// Frames set aside while waiting for a set-up reply, replayed first.
    stash: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Read once from the socket (at least one byte, or `Eof`).
    pub async fn fill(&mut self) -> Result<usize> {
        self.make_room();
        let n = self.rd.read(&mut self.buf[self.end..]).await?;
        self.filled(n)
    }
}

impl Reader<std::net::TcpStream> {
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.rd)
    }

    /// [`Reader::fill`] on a blocking socket. A read timeout set on the
    /// socket comes back as an `Io` error of kind `WouldBlock`.
    pub fn fill_blocking(&mut self) -> Result<usize> {
        use std::io::Read;
        self.make_room();
        let n = self.rd.read(&mut self.buf[self.end..])?;
        self.filled(n)
    }
}

impl<R> Reader<R> {
    pub fn new(rd: R) -> Self {
        Reader {
            rd,
            buf: vec![0; READ_CHUNK * 2],
            start: 0,
            end: 0,
            frame_max: CLIENT_FRAME_MAX as usize,
            stash: Vec::new(),
        }
    }

    /// Make at least `READ_CHUNK` bytes free after `end`.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < READ_CHUNK {
            // Move the partial frame to the front, growing if it is huge.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < READ_CHUNK {
                self.buf.resize(self.end + READ_CHUNK * 2, 0);
            }
        }
    }

    fn filled(&mut self, n: usize) -> Result<usize> {
        if n == 0 {
            return Err(ClientError::Eof);
        }
        self.end += n;
        Ok(n)
    }

    /// The next complete frame in the buffer, if any.
    pub fn next_frame(&mut self) -> Result<Option<FrameRef<'_>>> {
        let avail = self.end - self.start;
        if avail < 7 {
            return Ok(None);
        }
        let b = &self.buf[self.start..self.end];
        let kind = b[0];
        let channel = u16::from_be_bytes([b[1], b[2]]);
        let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
        if size + FRAME_OVERHEAD > self.frame_max.max(4096) * 2 {
            return proto(format!("frame of {size} bytes exceeds frame-max"));
        }
        let total = size + FRAME_OVERHEAD;
        if avail < total {
            return Ok(None);
        }
        if b[total - 1] != FRAME_END {
            return proto(format!("bad frame end marker {:#x}", b[total - 1]));
        }
        let from = self.start + 7;
        self.start += total;
        Ok(Some(FrameRef {
            kind,
            channel,
            payload: &self.buf[from..from + size],
        }))
    }

    /// Set the raw bytes of the frame just returned aside, to be read again
    /// after set-up.
    fn stash_last(&mut self, total: usize) {
        let at = self.start - total;
        self.stash.extend_from_slice(&self.buf[at..self.start]);
    }

    /// Put stashed frames back in front of the unread bytes.
    fn unstash(&mut self) {
        if self.stash.is_empty() {
            return;
        }
        let mut joined = std::mem::take(&mut self.stash);
        joined.extend_from_slice(&self.buf[self.start..self.end]);
        let len = joined.len();
        if self.buf.len() < len + READ_CHUNK {
            self.buf.resize(len + READ_CHUNK * 2, 0);
        }
        self.buf[..len].copy_from_slice(&joined);
        self.start = 0;
        self.end = len;
    }
}

/// Frames collected in one buffer and written with one `write_all`.
pub struct Writer<W> {
    wr: W,
    pub buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Writer<std::net::TcpStream> {
    /// [`Writer::flush`] on a blocking socket. With a write timeout set on
    /// the socket, `give_up` is asked each time it runs out; `true` ends
    /// the flush with a `TimedOut` error.
    pub fn flush_blocking(&mut self, give_up: impl Fn() -> bool) -> Result<()> {
        use std::io::Write;
        let mut at = 0;
        while at < self.buf.len() {
            match self.wr.write(&self.buf[at..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if io_timeout(&e) => {
                    if give_up() {
                        return Err(io::Error::from(io::ErrorKind::TimedOut).into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.buf.clear();
        Ok(())
    }
}

impl<W> Writer<W> {
    pub fn new(wr: W) -> Self {
        Writer {
            wr,
            buf: Vec::with_capacity(128 * 1024),
        }
    }

    pub fn put_frames(&mut self, fb: &mut FrameBuf) {
        for seg in fb.take() {
            self.buf.extend_from_slice(&seg);
        }
    }

    /// `basic.ack` (21 bytes on the wire).
    pub fn put_ack(&mut self, channel: u16, tag: u64, multiple: bool) {
        let b = &mut self.buf;
        b.push(FRAME_METHOD);
        b.extend_from_slice(&channel.to_be_bytes());
        b.extend_from_slice(&13u32.to_be_bytes());
        b.extend_from_slice(&CLASS_BASIC.to_be_bytes());
        b.extend_from_slice(&80u16.to_be_bytes());
        b.extend_from_slice(&tag.to_be_bytes());
        b.push(multiple as u8);
        b.push(FRAME_END);
    }

    pub fn put_heartbeat(&mut self) {
        self.buf
            .extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
    }

    /// `connection.close` with reply 200.
    pub fn put_connection_close(&mut self) {
        let mut fb = FrameBuf::new();
        fb.put_method(0, CLASS_CONNECTION, 50, |b| {
            b.put_u16(200);
            put_shortstr(b, "bye");
            b.put_u16(0);
            b.put_u16(0);
        });
        self.put_frames(&mut fb);
    }

    pub fn put_connection_close_ok(&mut self) {
        let mut fb = FrameBuf::new();
        fb.put_method(0, CLASS_CONNECTION, 51, |_| {});
        self.put_frames(&mut fb);
    }
}

// ---------------------------------------------------------------------------
// Publish template

/// One message's method, header and body frames, encoded once and copied per
/// publish; the first 8 body bytes can be overwritten with a timestamp.
#[derive(Clone)]
pub struct PublishTemplate {
    pub bytes: Vec<u8>,
    /// Offset of the first body byte, when the body has room for a stamp.
    pub stamp_at: Option<usize>,
}

impl PublishTemplate {
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        frame_max: u32,
    ) -> Self {
        let mut fb = FrameBuf::new();
        fb.put_method(channel, CLASS_BASIC, 40, |b| {
            b.put_u16(0);
            put_shortstr(b, exchange);
            put_shortstr(b, routing_key);
            b.put_u8(0);
        });
        let method_len = fb.len();
        // delivery-mode is flag bit 12; 2 = persistent.
        let props: &[u8] = if persistent {
            &[0x10, 0x00, 2]
        } else {
            &[0, 0]
        };
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        fb.put_content(channel, props, &Bytes::from(body), frame_max);
        let bytes: Vec<u8> = fb.take().concat();
        let header_len = FRAME_OVERHEAD + 12 + props.len();
        PublishTemplate {
            bytes,
            stamp_at: (size >= 8).then_some(method_len + header_len + 7),
        }
    }

    /// Append `n` copies to `out`, each stamped with `stamp` when possible.
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, n: usize, stamp: Option<u64>) {
        out.reserve(self.bytes.len() * n);
        for _ in 0..n {
            let at = out.len();
            out.extend_from_slice(&self.bytes);
            if let (Some(off), Some(ts)) = (self.stamp_at, stamp) {
                out[at + off..at + off + 8].copy_from_slice(&ts.to_be_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Connection set-up

/// A connection in its set-up phase: synchronous request and reply.
pub struct Conn {
    pub reader: Reader<OwnedReadHalf>,
    pub writer: Writer<OwnedWriteHalf>,
    pub frame_max: u32,
    pub channel_max: u16,
}

impl Conn {
    /// Connect, say the protocol header, authenticate with PLAIN, tune
    /// (heartbeats off) and open the vhost.
    pub async fn connect(uri: &AmqpUri, name: &str) -> Result<Conn> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port)).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            reader: Reader::new(rd),
            writer: Writer::new(wr),
            frame_max: CLIENT_FRAME_MAX,
            channel_max: 2047,
        };
        conn.writer.buf.extend_from_slice(PROTOCOL_HEADER);
        conn.writer.flush().await?;
        conn.expect(0, CLASS_CONNECTION, 10).await?;

        let mut fb = FrameBuf::new();
        fb.put_method(0, CLASS_CONNECTION, 11, |b| {
            put_table(
                b,
                &[
                    ("product", FieldVal::Str("warren-perf")),
                    ("connection_name", FieldVal::Str(name)),
                    (
                        "capabilities",
                        FieldVal::Table(&[
                            ("publisher_confirms", FieldVal::Bool(true)),
                            ("basic.nack", FieldVal::Bool(true)),
                            ("consumer_cancel_notify", FieldVal::Bool(true)),
                            ("connection.blocked", FieldVal::Bool(true)),
                        ]),
                    ),
                ],
            );
            put_shortstr(b, "PLAIN");
            let mut resp = Vec::new();
            resp.push(0);
            resp.extend_from_slice(uri.user.as_bytes());
            resp.push(0);
            resp.extend_from_slice(uri.pass.as_bytes());
            put_longstr(b, &resp);
            put_shortstr(b, "en_US");
        });
        conn.writer.put_frames(&mut fb);
        conn.writer.flush().await?;

        let tune = conn.expect(0, CLASS_CONNECTION, 30).await?;
        let mut a = Args::new(&tune);
        let channel_max = a.u16()?;
        let frame_max = a.u32()?;
        let _heartbeat = a.u16()?;
        conn.channel_max = if channel_max == 0 { 2047 } else { channel_max };
        conn.frame_max = if frame_max == 0 {
            CLIENT_FRAME_MAX
        } else {
            frame_max.min(CLIENT_FRAME_MAX)
        };
        conn.reader.frame_max = conn.frame_max as usize;
        let (cm, fm) = (conn.channel_max, conn.frame_max);
        fb.put_method(0, CLASS_CONNECTION, 31, |b| {
            b.put_u16(cm);
            b.put_u32(fm);
            b.put_u16(0); // no heartbeats: benchmark connections are never idle
        });
        let vhost = uri.vhost.clone();
        fb.put_method(0, CLASS_CONNECTION, 40, |b| {
            put_shortstr(b, &vhost);
            put_shortstr(b, "");
            b.put_u8(0);
        });
        conn.writer.put_frames(&mut fb);
        conn.writer.flush().await?;
        conn.expect(0, CLASS_CONNECTION, 41).await?;
        Ok(conn)
    }

    /// Read until the method `class.method` arrives on `channel`; returns its
    /// arguments. Unrelated frames are kept for the hot path.
    pub async fn expect(&mut self, channel: u16, class: u16, method: u16) -> Result<Vec<u8>> {
        enum Step {
            Skip,
            Stash(usize),
            Found(Vec<u8>),
            ConnectionClosed(ClientError),
            ChannelClosed(ClientError),
            NeedMore,
        }
        loop {
            let step = match self.reader.next_frame()? {
                None => Step::NeedMore,
                Some(frame) => {
                    let total = frame.payload.len() + FRAME_OVERHEAD;
                    match frame.kind {
                        FRAME_HEARTBEAT => Step::Skip,
                        FRAME_METHOD => {
                            let (c, m, args) = frame.method()?;
                            if frame.channel == channel && c == class && m == method {
                                Step::Found(args.to_vec())
                            } else {
                                match decode_incoming(&frame)? {
                                    Incoming::ConnectionClose(e) => Step::ConnectionClosed(e),
                                    Incoming::ChannelClose(e) => Step::ChannelClosed(e),
                                    _ => Step::Stash(total),
                                }
                            }
                        }
                        _ => Step::Stash(total),
                    }
                }
            };
            match step {
                Step::Skip => {}
                Step::Stash(total) => self.reader.stash_last(total),
                Step::Found(args) => return Ok(args),
                Step::ConnectionClosed(e) => {
                    self.writer.put_connection_close_ok();
                    let _ = self.writer.flush().await;
                    return Err(e);
                }
                Step::ChannelClosed(e) => return Err(e),
                Step::NeedMore => {
                    self.reader.fill().await?;
                }
            }
        }
    }

    async fn call(
        &mut self,
        channel: u16,
        class: u16,
        method: u16,
        reply: u16,
        args: impl FnOnce(&mut BytesMut),
    ) -> Result<Vec<u8>> {
        let mut fb = FrameBuf::new();
        fb.put_method(channel, class, method, args);
        self.writer.put_frames(&mut fb);
        self.writer.flush().await?;
        self.expect(channel, class, reply).await
    }

    pub async fn channel_open(&mut self, channel: u16) -> Result<()> {
        self.call(channel, CLASS_CHANNEL, 10, 11, |b| put_shortstr(b, ""))
            .await?;
        Ok(())
    }

    pub async fn exchange_declare(
        &mut self,
        channel: u16,
        name: &str,
        kind: &str,
        durable: bool,
        auto_delete: bool,
    ) -> Result<()> {
        self.call(channel, CLASS_EXCHANGE, 10, 11, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            put_shortstr(b, kind);
            b.put_u8(bits(&[false, durable, auto_delete, false, false]));
            put_empty_table(b);
        })
        .await?;
        Ok(())
    }

    pub async fn exchange_delete(&mut self, channel: u16, name: &str) -> Result<()> {
        self.call(channel, CLASS_EXCHANGE, 20, 21, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(0);
        })
        .await?;
        Ok(())
    }

    /// Declare a queue; returns (name, ready messages, consumers).
    pub async fn queue_declare(
        &mut self,
        channel: u16,
        name: &str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        passive: bool,
    ) -> Result<(String, u32, u32)> {
        let ok = self
            .call(channel, CLASS_QUEUE, 10, 11, |b| {
                b.put_u16(0);
                put_shortstr(b, name);
                b.put_u8(bits(&[passive, durable, exclusive, auto_delete, false]));
                put_empty_table(b);
            })
            .await?;
        let mut a = Args::new(&ok);
        let name = String::from_utf8_lossy(a.shortstr()?).into_owned();
        Ok((name, a.u32()?, a.u32()?))
    }

    /// Declare a durable queue with arguments (a stream, say).
    pub async fn queue_declare_args(
        &mut self,
        channel: u16,
        name: &str,
        arguments: &[(&str, FieldVal<'_>)],
    ) -> Result<()> {
        self.call(channel, CLASS_QUEUE, 10, 11, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(bits(&[false, true, false, false, false]));
            put_table(b, arguments);
        })
        .await?;
        Ok(())
    }

    pub async fn queue_bind(
        &mut self,
        channel: u16,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<()> {
        self.call(channel, CLASS_QUEUE, 20, 21, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, exchange);
            put_shortstr(b, routing_key);
            b.put_u8(0);
            put_empty_table(b);
        })
        .await?;
        Ok(())
    }

    /// Purge a queue; returns the number of messages purged.
    pub async fn queue_purge(&mut self, channel: u16, name: &str) -> Result<u32> {
        let ok = self
            .call(channel, CLASS_QUEUE, 30, 31, |b| {
                b.put_u16(0);
                put_shortstr(b, name);
                b.put_u8(0);
            })
            .await?;
        Args::new(&ok).u32()
    }

    /// Delete a queue; returns the number of messages it held.
    pub async fn queue_delete(&mut self, channel: u16, name: &str) -> Result<u32> {
        let ok = self
            .call(channel, CLASS_QUEUE, 40, 41, |b| {
                b.put_u16(0);
                put_shortstr(b, name);
                b.put_u8(0);
            })
            .await?;
        Args::new(&ok).u32()
    }

    pub async fn basic_qos(&mut self, channel: u16, prefetch: u16, global: bool) -> Result<()> {
        self.call(channel, CLASS_BASIC, 10, 11, |b| {
            b.put_u32(0);
            b.put_u16(prefetch);
            b.put_u8(global as u8);
        })
        .await?;
        Ok(())
    }

    pub async fn confirm_select(&mut self, channel: u16) -> Result<()> {
        self.call(channel, CLASS_CONFIRM, 10, 11, |b| b.put_u8(0))
            .await?;
        Ok(())
    }

    /// Start a consumer; returns its tag. Deliveries that arrive right
    /// behind consume-ok stay in the read buffer.
    pub async fn basic_consume(
        &mut self,
        channel: u16,
        queue: &str,
        no_ack: bool,
        arguments: &[(&str, FieldVal<'_>)],
    ) -> Result<String> {
        let ok = self
            .call(channel, CLASS_BASIC, 20, 21, |b| {
                b.put_u16(0);
                put_shortstr(b, queue);
                put_shortstr(b, "");
                b.put_u8(bits(&[false, no_ack, false, false]));
                put_table(b, arguments);
            })
            .await?;
        Ok(String::from_utf8_lossy(Args::new(&ok).shortstr()?).into_owned())
    }

    /// Close the connection politely and wait for close-ok.
    pub async fn close(mut self) -> Result<()> {
        self.writer.put_connection_close();
        self.writer.flush().await?;
        self.expect(0, CLASS_CONNECTION, 51).await?;
        Ok(())
    }

    /// The halves for the hot path, with any set-aside frames replayed first.
    pub fn into_parts(mut self) -> (Reader<OwnedReadHalf>, Writer<OwnedWriteHalf>) {
        self.reader.unstash();
        (self.reader, self.writer)
    }

    /// The halves as blocking std sockets (reads and writes time out after
    /// [`BLOCKING_POLL`], so the caller can look for cancellation), for a
    /// hot path that runs on its own OS thread: a thread blocked in `read` is woken by the kernel
    /// directly, without a runtime's event loop and task hand-off between
    /// the data arriving and the code that looks at it.
    pub fn into_blocking(
        self,
    ) -> Result<(Reader<std::net::TcpStream>, Writer<std::net::TcpStream>)> {
        let (reader, writer) = self.into_parts();
        let Reader {
            rd,
            buf,
            start,
            end,
            frame_max,
            stash,
        } = reader;
        let stream = rd
            .reunite(writer.wr)
            .map_err(|e| ClientError::Protocol(format!("reuniting socket halves: {e}")))?
            .into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(BLOCKING_POLL))?;
        stream.set_write_timeout(Some(BLOCKING_POLL))?;
        let wr = stream.try_clone()?;
        Ok((
            Reader {
                rd: stream,
                buf,
                start,
                end,
                frame_max,
                stash,
            },
            Writer {
                wr,
                buf: writer.buf,
            },
        ))
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("frame_max", &self.frame_max)
            .finish()
    }
}

/// Discard the buffered frames up to the end of a close handshake: true at
/// connection.close-ok, or at the broker's own connection.close (answered
/// with close-ok in `writer`, to be flushed).
fn close_handshake_done<R, W>(reader: &mut Reader<R>, writer: &mut Writer<W>) -> Result<bool> {
    while let Some(frame) = reader.next_frame()? {
        if frame.kind == FRAME_METHOD {
            match decode_incoming(&frame)? {
                Incoming::ConnectionCloseOk => return Ok(true),
                Incoming::ConnectionClose(_) => {
                    writer.put_connection_close_ok();
                    return Ok(true);
                }
                _ => {}
            }
        }
    }
    Ok(false)
}

/// Read frames until connection.close-ok (or EOF), discarding everything;
/// answers a broker-initiated close. Used when shutting a hot connection down.
pub async fn drain_until_close_ok<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut Reader<R>,
    writer: &mut Writer<W>,
) -> Result<()> {
    loop {
        if close_handshake_done(reader, writer)? {
            let _ = writer.flush().await;
            return Ok(());
        }
        match reader.fill().await {
            Ok(_) => {}
            Err(ClientError::Eof) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error is a blocking socket's timeout running out.
pub fn is_timeout(e: &ClientError) -> bool {
    matches!(e, ClientError::Io(e) if io_timeout(e))
}

fn io_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Close a blocking connection: drop whatever is unsent, send
/// connection.close (given up after 2 s), then read until close-ok (3 s).
pub fn close_blocking(
    reader: &mut Reader<std::net::TcpStream>,
    writer: &mut Writer<std::net::TcpStream>,
) -> Result<()> {
    writer.buf.clear();
    writer.put_connection_close();
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(2);
    writer.flush_blocking(|| std::time::Instant::now() >= limit)?;
    drain_until_close_ok_blocking(reader, writer, std::time::Duration::from_secs(3))
}

/// [`drain_until_close_ok`] on a blocking socket (whose read timeout must be
/// set), given up after `limit`.
fn drain_until_close_ok_blocking(
    reader: &mut Reader<std::net::TcpStream>,
    writer: &mut Writer<std::net::TcpStream>,
    limit: std::time::Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if close_handshake_done(reader, writer)? {
            let _ = writer.flush_blocking(|| std::time::Instant::now() >= deadline);
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Ok(());
        }
        match reader.fill_blocking() {
            Ok(_) => {}
            Err(ClientError::Eof) => return Ok(()),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
