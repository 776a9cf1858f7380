//! `null-broker`: a fake AMQP 0-9-1 server that costs next to nothing, to
//! measure the benchmark client itself. It answers the handshake and every
//! set-up method with its -ok, throws published messages away (confirming
//! them at once, one multiple ack per read, when confirms are on), and
//! floods every consumer with deliveries of --size bytes as fast as the
//! socket takes them, ignoring prefetch and acks. Run it as its own process
//! (so its CPU is not counted as the client's) and point `throughput` at it:
//! what the client then reports is the most it can publish and consume.
//! It exits after --lifetime seconds.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use warren::protocol::FrameBuf;
use warren::protocol::frame::FRAME_METHOD;
use warren::protocol::method::{
    CLASS_BASIC, CLASS_CHANNEL, CLASS_CONFIRM, CLASS_CONNECTION, CLASS_EXCHANGE, CLASS_QUEUE,
};

use crate::client::{Args, ClientError, Reader, Result, Writer, put_longstr, put_shortstr};

enum Out {
    Bytes(Vec<u8>),
    Flood(u16, String),
    Close,
}

pub async fn serve(listen: &str, size: usize, lifetime: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "[null-broker] listening on {} (pid {}), {size}-byte deliveries, exiting in {} s",
        listener.local_addr()?,
        std::process::id(),
        lifetime.as_secs()
    );
    let deadline = tokio::time::sleep(lifetime);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = r?;
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, size).await
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

async fn connection(stream: TcpStream, size: usize) -> Result<()> {
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
    let result: Result<()> = async {
        loop {
            while let Some(frame) = reader.next_frame()? {
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
                        a.shortstr()?;
                        let tag = String::from_utf8_lossy(a.shortstr()?).into_owned();
                        consumers += 1;
                        let tag = if tag.is_empty() {
                            format!("null-ctag-{consumers}")
                        } else {
                            tag
                        };
                        send(method(ch, CLASS_BASIC, 21, |b| put_shortstr(b, &tag)));
                        let _ = tx.send(Out::Flood(ch, tag));
                    }
                    (CLASS_BASIC, 40) => {
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
