//! Fuzz targets for Warren: what each does with one input.
//!
//! The AFL entry points in `src/bin/fuzz_*.rs` call these functions; `replay`
//! calls them on files without AFL, to reproduce a finding. A target fails by
//! panicking (AFL's hook turns any panic, on any thread, into an abort):
//!
//! - [`frame`]: the frame decoder cutting an arbitrary byte stream;
//! - [`method`]: the method decoder on an arbitrary method payload;
//! - [`properties`]: the content-header properties parser, and every accessor
//!   the broker calls on parsed properties;
//! - [`table`]: the field-table check and decoder, and that what it accepts
//!   re-encodes into a table it accepts again (dead-lettering copies do that);
//! - [`connection`]: the connection state machine: a sequence of frames sent
//!   over a real socket to an in-process broker, after a normal handshake.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use amq_protocol::types::AMQPValue;
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;
use warren::protocol::frame::{FRAME_END, FRAME_METHOD, FrameCodec};
use warren::protocol::{Properties, method, table};

/// The frame decoder on a byte stream, at the default and the smallest
/// frame-max: every frame is cut or refused, never read past the buffer.
pub fn frame(data: &[u8]) {
    for frame_max in [131_072, 4096] {
        let mut codec = FrameCodec::new(frame_max);
        let mut buf = BytesMut::from(data);
        let mut frames = 0usize;
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            // RabbitMQ takes payloads up to frame-max itself (slack for
            // clients that forget the 8 bytes of framing), never more.
            assert!(frame.payload.len() <= frame_max as usize);
            frames += 1;
            assert!(frames <= data.len() / 8, "more frames than the bytes hold");
        }
    }
}

/// The method decoder on one method-frame payload.
pub fn method(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    if let Some((class_id, method_id)) = method::method_ids(&payload) {
        let _ = method::has_content(class_id, method_id);
        if data.len() >= 4 {
            let _ = table::check_method_tables(class_id, method_id, &data[4..]);
        }
    }
    let _ = method::decode(&payload);
}

/// The properties parser on the part of a content header after class,
/// weight and body size, and everything the broker reads from the result.
pub fn properties(data: &[u8]) {
    let Ok(props) = Properties::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = props.delivery_mode();
    let _ = props.is_persistent();
    let _ = props.priority();
    let _ = props.expiration();
    let _ = props.reply_to();
    let _ = props.user_id();
    let _ = props.has_routing_headers();
    let _ = props.headers();
    let basic = props.decode();
    // What a dead-lettered or rewritten copy is built from.
    let copy = Properties::from_fields(&props.fields());
    let _ = Properties::from_basic(&basic);
    let _ = copy.decode();
    let _ = props.with_header("x-fuzz", AMQPValue::LongLongInt(1));
}

/// The field-table check and decoder; an accepted table must survive a
/// re-encode (copies of headers are made that way).
pub fn table(data: &[u8]) {
    let checked = table::check_table(data);
    let Some(decoded) = table::decode_table(data) else {
        return;
    };
    assert!(checked.is_ok(), "decoded a table the check refused");
    let encoded = table::encode_table(&decoded);
    assert!(
        table::decode_table(&encoded).is_some(),
        "a decoded table did not decode again after re-encoding"
    );
    for value in decoded.inner().values() {
        let _ = table::value_text(value);
        let _ = table::as_i128(value);
        let _ = table::type_name(value);
    }
}

// --- the connection state machine ------------------------------------------

/// How long one input may take from connect to the broker's last byte. A
/// broker that neither answers nor closes by then is stalled: a finding.
const INPUT_DEADLINE: Duration = Duration::from_secs(10);

struct Broker {
    addr: SocketAddr,
}

/// One broker per process. AFL forks its children before the first input,
/// so each child starts its own (threads do not survive a fork) in a data
/// directory of its own under `WARREN_FUZZ_DIR`, and removes those of
/// children that are gone.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let base = std::env::var_os("WARREN_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("warren-fuzz-connection"));
        let _ = std::fs::create_dir_all(&base);
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name.to_string_lossy().to_string();
                if !PathBuf::from("/proc").join(&pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let data_dir = base.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&data_dir);
        let config = warren::Config::ephemeral(&data_dir);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = warren::Server::start(config).await.expect("broker starts");
                tx.send(server.local_addr()).expect("report address");
                // Runs until the process exits.
                std::future::pending::<()>().await;
                drop(server);
            });
        });
        Broker {
            addr: rx.recv().expect("broker address"),
        }
    })
}

fn method_frame(channel: u16, class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&method_id.to_be_bytes());
    payload.extend_from_slice(args);
    raw_frame(FRAME_METHOD, channel, &payload)
}

fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

fn short_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// Protocol header, start-ok (PLAIN guest/guest), tune-ok (channel-max
/// 2047, frame-max 131072, no heartbeats), open of vhost "/": sent at once,
/// as pipelining clients do.
pub fn handshake_bytes() -> Vec<u8> {
    let mut out = b"AMQP\x00\x00\x09\x01".to_vec();
    let mut start_ok = Vec::new();
    start_ok.extend_from_slice(&0u32.to_be_bytes()); // client properties
    short_str(&mut start_ok, b"PLAIN");
    let response = b"\0guest\0guest";
    start_ok.extend_from_slice(&(response.len() as u32).to_be_bytes());
    start_ok.extend_from_slice(response);
    short_str(&mut start_ok, b"en_US");
    out.extend(method_frame(0, 10, 11, &start_ok));
    let mut tune_ok = Vec::new();
    tune_ok.extend_from_slice(&2047u16.to_be_bytes());
    tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
    tune_ok.extend_from_slice(&0u16.to_be_bytes());
    out.extend(method_frame(0, 10, 31, &tune_ok));
    let mut open = Vec::new();
    short_str(&mut open, b"/");
    short_str(&mut open, b"");
    open.push(0);
    out.extend(method_frame(0, 10, 40, &open));
    out
}

/// Marks an input sent as it is, framing and all (see [`frames_of`]).
pub const RAW_INPUT: u8 = 0xFF;

/// The bytes an input stands for after the handshake. Mostly a sequence of
/// records `type:u8 channel:u16 length:u16 payload[length]` (the last
/// payload may be cut short), each becoming one well-framed frame, so that
/// mutations explore what frames mean rather than how they are cut. An
/// input whose first byte is [`RAW_INPUT`] is sent raw instead: broken
/// framing (sizes, end markers, oversized frames) as the connection sees it.
pub fn frames_of(data: &[u8]) -> Vec<u8> {
    if let Some((&RAW_INPUT, raw)) = data.split_first() {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 2);
    let mut rest = data;
    while rest.len() >= 5 {
        let kind = rest[0];
        let channel = u16::from_be_bytes([rest[1], rest[2]]);
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        let len = len.min(rest.len() - 5);
        out.extend(raw_frame(kind, channel, &rest[5..5 + len]));
        rest = &rest[5 + len..];
    }
    out
}

/// The record encoding of one frame (the inverse of [`frames_of`]).
pub fn record(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Handshake, the input's frames, then `connection.close`; reads until the
/// broker's close-ok or end of stream (answering a close of its own with
/// close-ok). Panics if the broker does neither within [`INPUT_DEADLINE`].
pub fn connection(data: &[u8]) {
    let broker = broker();
    let mut wire = handshake_bytes();
    wire.extend(frames_of(data));
    let mut close = Vec::new();
    close.extend_from_slice(&200u16.to_be_bytes());
    short_str(&mut close, b"fuzz");
    close.extend_from_slice(&[0, 0, 0, 0]);
    wire.extend(method_frame(0, 10, 50, &close));
    // Raw bytes may leave the broker inside a frame that never ends (as
    // RabbitMQ would be): end the stream so that it sees end of input.
    let raw = data.first() == Some(&RAW_INPUT);
    drive(broker.addr, &wire, raw);
}

/// Sends `wire` on a fresh connection (then half-closes it if
/// `end_input`) and reads the broker's answer until it is done with the
/// connection.
pub fn drive(addr: SocketAddr, wire: &[u8], end_input: bool) {
    let mut sock = TcpStream::connect(addr).expect("connect to the in-process broker");
    let _ = sock.set_nodelay(true);
    let started = Instant::now();
    let _ = sock.set_write_timeout(Some(INPUT_DEADLINE));
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    // The broker may close after an error before reading everything:
    // a failed write is then the end of the input.
    let wrote_all = sock.write_all(wire).is_ok();
    if end_input {
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
    let mut codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let mut answered_close = false;
    loop {
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            if frame.kind == FRAME_METHOD && frame.channel == 0 && frame.payload.len() >= 4 {
                match (
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                    u16::from_be_bytes([frame.payload[2], frame.payload[3]]),
                ) {
                    (10, 51) => return,
                    (10, 50) if !answered_close => {
                        answered_close = true;
                        let _ = sock.write_all(&method_frame(0, 10, 51, &[]));
                    }
                    _ => {}
                }
            }
        }
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        if started.elapsed() > INPUT_DEADLINE {
            panic!(
                "broker neither closed nor answered connection.close within {:?} \
                 (all input written: {wrote_all})",
                INPUT_DEADLINE
            );
        }
    }
}
