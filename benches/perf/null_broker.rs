//! `null-broker`: a fake AMQP 0-9-1 server that costs next to nothing, to
//! measure the benchmark client itself. It answers the handshake and every
//! set-up method with its -ok, throws published messages away (confirming
//! them at once, one multiple ack per read, when confirms are on), and
//! floods every consumer with deliveries of --size bytes as fast as the
//! socket takes them, ignoring prefetch and acks. Run it as its own process
//! (so its CPU is not counted as the client's) and point `throughput` at it:
//! what the client then reports is the most it can publish and consume.
//! It exits after --lifetime seconds.
//!
//! With --echo it floods nobody: each message published with routing key K
//! is handed at once, as a basic.deliver, to the consumer of queue K (on
//! whichever connection consumes it). Pointed at by `latency`, it gives the
//! latency floor of this client plus two loopback hops and one task hand-off:
//! what any broker's figure contains before the broker does any work.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use warren::protocol::FrameBuf;
use warren::protocol::frame::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use warren::protocol::method::{
    CLASS_BASIC, CLASS_CHANNEL, CLASS_CONFIRM, CLASS_CONNECTION, CLASS_EXCHANGE, CLASS_QUEUE,
};

use crate::client::{Args, ClientError, Reader, Result, Writer, put_longstr, put_shortstr};

/// --echo: the consumer of each queue, by queue name.
#[derive(Clone)]
struct EchoTarget {
    tx: mpsc::UnboundedSender<Out>,
    channel: u16,
    ctag: String,
    next_tag: Arc<AtomicU64>,
}
type Registry = Arc<Mutex<HashMap<String, EchoTarget>>>;

/// A publish whose content is still arriving (--echo).
#[derive(Default)]
struct InFlight {
    routing_key: String,
    exchange: String,
    props: Vec<u8>,
    body_len: u64,
    body: Vec<u8>,
    have_header: bool,
}

enum Out {
    Bytes(Vec<u8>),
    Flood(u16, String),
    Close,
}

pub async fn serve(
    listen: &str,
    size: usize,
    lifetime: Duration,
    echo: bool,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "[null-broker] listening on {} (pid {}), {}, exiting in {} s",
        listener.local_addr()?,
        std::process::id(),
        if echo {
            "echoing publishes to the consumer of the queue named by the routing key".to_string()
        } else {
            format!("{size}-byte deliveries")
        },
        lifetime.as_secs()
    );
    let registry: Option<Registry> = echo.then(Registry::default);
    let deadline = tokio::time::sleep(lifetime);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = r?;
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, size, registry).await
                        && !matches!(e, ClientError::Eof)
                    {
                        eprintln!("[null-broker] connection: {e}");
                    }
                });
            }
            _ = &mut deadline => break,
        }
    }
    eprintln!("[null-broker] lifetime over, exiting");
    Ok(())
}

fn method(channel: u16, class: u16, id: u16, args: impl FnOnce(&mut bytes::BytesMut)) -> Vec<u8> {
    let mut fb = FrameBuf::new();
    fb.put_method(channel, class, id, args);
    fb.take().concat()
}

/// --echo: hand a complete message to the consumer of its routing key's queue.
fn echo(registry: &Registry, m: InFlight) {
    let Some(t) = registry.lock().get(&m.routing_key).cloned() else {
        return;
    };
    let tag = t.next_tag.fetch_add(1, Ordering::Relaxed) + 1;
    let mut fb = FrameBuf::new();
    fb.put_method(t.channel, CLASS_BASIC, 60, |b| {
        put_shortstr(b, &t.ctag);
        b.put_u64(tag);
        b.put_u8(0);
        put_shortstr(b, &m.exchange);
        put_shortstr(b, &m.routing_key);
    });
    fb.put_content(t.channel, &m.props, &Bytes::from(m.body), 131_072);
    let _ = t.tx.send(Out::Bytes(fb.take().concat()));
}

async fn connection(stream: TcpStream, size: usize, registry: Option<Registry>) -> Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let mut header = [0u8; 8];
    rd.read_exact(&mut header).await?;
    let mut reader = Reader::new(rd);
    let (tx, rx) = mpsc::unbounded_channel::<Out>();
    let writer_task = tokio::spawn(write_loop(Writer::new(wr), rx, size));
    let send = |b: Vec<u8>| {
        let _ = tx.send(Out::Bytes(b));
    };
    send(method(0, CLASS_CONNECTION, 10, |b| {
        b.put_u8(0);
        b.put_u8(9);
        b.put_u32(0);
        put_longstr(b, b"PLAIN");
        put_longstr(b, b"en_US");
    }));
    // (confirm on, last tag) per channel
    let mut confirms: Vec<(bool, u64, bool)> = vec![(false, 0, false); 2048];
    let mut consumers = 0u32;
    let mut inflight: HashMap<u16, InFlight> = HashMap::new();
    let mut my_queues: Vec<String> = Vec::new();
    let result: Result<()> = async {
        loop {
            while let Some(frame) = reader.next_frame()? {
                if let Some(reg) = &registry
                    && (frame.kind == FRAME_HEADER || frame.kind == FRAME_BODY)
                {
                    let ch = frame.channel;
                    let done = match inflight.get_mut(&ch) {
                        Some(m) if frame.kind == FRAME_HEADER && frame.payload.len() >= 12 => {
                            let mut n = [0u8; 8];
                            n.copy_from_slice(&frame.payload[4..12]);
                            m.body_len = u64::from_be_bytes(n);
                            m.props = frame.payload[12..].to_vec();
                            m.have_header = true;
                            m.body_len == 0
                        }
                        Some(m) if m.have_header => {
                            m.body.extend_from_slice(frame.payload);
                            m.body.len() as u64 >= m.body_len
                        }
                        _ => false,
                    };
                    if done && let Some(m) = inflight.remove(&ch) {
                        echo(reg, m);
                    }
                    continue;
                }
                if frame.kind != FRAME_METHOD {
                    continue;
                }
                let ch = frame.channel;
                let (class, id, args) = frame.method()?;
                let mut a = Args::new(args);
                match (class, id) {
                    (CLASS_CONNECTION, 11) => send(method(0, CLASS_CONNECTION, 30, |b| {
                        b.put_u16(2047);
                        b.put_u32(131_072);
                        b.put_u16(0);
                    })),
                    (CLASS_CONNECTION, 31) => {}
                    (CLASS_CONNECTION, 40) => {
                        send(method(0, CLASS_CONNECTION, 41, |b| put_shortstr(b, "")))
                    }
                    (CLASS_CONNECTION, 50) => {
                        send(method(0, CLASS_CONNECTION, 51, |_| {}));
                        return Ok(());
                    }
                    (CLASS_CONNECTION, 51) => return Ok(()),
                    (CLASS_CHANNEL, 10) => {
                        send(method(ch, CLASS_CHANNEL, 11, |b| put_longstr(b, b"")))
                    }
                    (CLASS_CHANNEL, 40) => send(method(ch, CLASS_CHANNEL, 41, |_| {})),
                    (CLASS_EXCHANGE, 10) => send(method(ch, CLASS_EXCHANGE, 11, |_| {})),
                    (CLASS_EXCHANGE, 20) => send(method(ch, CLASS_EXCHANGE, 21, |_| {})),
                    (CLASS_QUEUE, 10) => {
                        a.u16()?;
                        let name = String::from_utf8_lossy(a.shortstr()?).into_owned();
                        send(method(ch, CLASS_QUEUE, 11, |b| {
                            put_shortstr(b, if name.is_empty() { "null-q" } else { &name });
                            b.put_u32(0);
                            b.put_u32(0);
                        }))
                    }
                    (CLASS_QUEUE, 20) => send(method(ch, CLASS_QUEUE, 21, |_| {})),
                    (CLASS_QUEUE, 30) => send(method(ch, CLASS_QUEUE, 31, |b| b.put_u32(0))),
                    (CLASS_QUEUE, 40) => send(method(ch, CLASS_QUEUE, 41, |b| b.put_u32(0))),
                    (CLASS_BASIC, 10) => send(method(ch, CLASS_BASIC, 11, |_| {})),
                    (CLASS_BASIC, 20) => {
                        a.u16()?;
                        let queue = String::from_utf8_lossy(a.shortstr()?).into_owned();
                        let tag = String::from_utf8_lossy(a.shortstr()?).into_owned();
                        consumers += 1;
                        let tag = if tag.is_empty() {
                            format!("null-ctag-{consumers}")
                        } else {
                            tag
                        };
                        send(method(ch, CLASS_BASIC, 21, |b| put_shortstr(b, &tag)));
                        match &registry {
                            Some(reg) => {
                                reg.lock().insert(
                                    queue.clone(),
                                    EchoTarget {
                                        tx: tx.clone(),
                                        channel: ch,
                                        ctag: tag,
                                        next_tag: Arc::default(),
                                    },
                                );
                                my_queues.push(queue);
                            }
                            None => {
                                let _ = tx.send(Out::Flood(ch, tag));
                            }
                        }
                    }
                    (CLASS_BASIC, 40) => {
                        if registry.is_some() {
                            a.u16()?;
                            let exchange = String::from_utf8_lossy(a.shortstr()?).into_owned();
                            let routing_key = String::from_utf8_lossy(a.shortstr()?).into_owned();
                            inflight.insert(
                                ch,
                                InFlight {
                                    routing_key,
                                    exchange,
                                    ..InFlight::default()
                                },
                            );
                        }
                        let c = &mut confirms[ch as usize % 2048];
                        if c.0 {
                            c.1 += 1;
                            c.2 = true;
                        }
                    }
                    (CLASS_CONFIRM, 10) => {
                        confirms[ch as usize % 2048].0 = true;
                        send(method(ch, CLASS_CONFIRM, 11, |_| {}))
                    }
                    _ => {}
                }
            }
            for (ch, c) in confirms.iter_mut().enumerate() {
                if c.2 {
                    c.2 = false;
                    let tag = c.1;
                    send(method(ch as u16, CLASS_BASIC, 80, |b| {
                        b.put_u64(tag);
                        b.put_u8(1);
                    }));
                }
            }
            reader.fill().await?;
        }
    }
    .await;
    if let Some(reg) = &registry {
        let mut map = reg.lock();
        for q in &my_queues {
            map.remove(q);
        }
    }
    let _ = tx.send(Out::Close);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
    result
}

async fn write_loop(
    mut writer: Writer<tokio::net::tcp::OwnedWriteHalf>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    size: usize,
) -> Result<()> {
    // One delivery, encoded once; the delivery tag is patched per copy.
    let mut floods: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut tag = 0u64;
    loop {
        loop {
            match rx.try_recv() {
                Ok(Out::Bytes(b)) => writer.buf.extend_from_slice(&b),
                Ok(Out::Flood(ch, ctag)) => floods.push(delivery_template(ch, &ctag, size)),
                Ok(Out::Close) => {
                    writer.flush().await?;
                    return Ok(());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if floods.is_empty() {
            writer.flush().await?;
            match rx.recv().await {
                Some(Out::Bytes(b)) => writer.buf.extend_from_slice(&b),
                Some(Out::Flood(ch, ctag)) => floods.push(delivery_template(ch, &ctag, size)),
                Some(Out::Close) | None => {
                    writer.flush().await?;
                    return Ok(());
                }
            }
            continue;
        }
        for (tpl, tag_at) in &floods {
            let per = ((64 * 1024) / tpl.len()).max(1);
            for _ in 0..per {
                tag += 1;
                let at = writer.buf.len();
                writer.buf.extend_from_slice(tpl);
                writer.buf[at + tag_at..at + tag_at + 8].copy_from_slice(&tag.to_be_bytes());
            }
        }
        writer.flush().await?;
    }
}

fn delivery_template(channel: u16, ctag: &str, size: usize) -> (Vec<u8>, usize) {
    let mut fb = FrameBuf::new();
    fb.put_method(channel, CLASS_BASIC, 60, |b| {
        put_shortstr(b, ctag);
        b.put_u64(0);
        b.put_u8(0);
        put_shortstr(b, "");
        put_shortstr(b, "null-q");
    });
    fb.put_content(channel, &[0, 0], &Bytes::from(vec![b'n'; size]), 131_072);
    // frame header (7) + class/method (4) + ctag shortstr
    let tag_at = 7 + 4 + 1 + ctag.len().min(255);
    (fb.take().concat(), tag_at)
}
