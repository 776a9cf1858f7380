//! Frames on the wire: the decoder that cuts the read buffer into frames, and
//! [`FrameBuf`], the buffer every outgoing frame is written into.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] 0xCE`. The decoder
//! only checks framing (size and end marker); what a frame type means on a
//! channel is the connection's business. Payloads are `Bytes` slices of the
//! read buffer, so a message body is never copied on its way in.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::error::AmqpError;
use super::reply::ReplyCode;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Type, channel and size.
pub const FRAME_HEADER_SIZE: usize = 7;
/// Header plus end marker: what a frame costs on top of its payload.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame-max a peer may negotiate (spec: FRAME-MIN-SIZE).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// The protocol header a 0-9-1 client opens with, and the one we answer a
/// wrong header with before closing.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// A framing failure. `lost_sync` means the byte stream can no longer be cut
/// into frames, so nothing after it may be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{error}")]
    Protocol { error: AmqpError, lost_sync: bool },
}

/// Cuts frames out of a read buffer.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// The negotiated frame-max: the largest frame, header and end marker
    /// included, a peer should send. Like RabbitMQ, the decoder lets the
    /// payload alone reach this size, since many clients leave out the
    /// eight bytes of overhead (AMQPStorm's body frames, for one).
    pub frame_max: u32,
}

impl FrameCodec {
    pub fn new(frame_max: u32) -> Self {
        FrameCodec { frame_max }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < FRAME_HEADER_SIZE {
            return Ok(None);
        }
        let kind = src[0];
        let channel = u16::from_be_bytes([src[1], src[2]]);
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]) as usize;
        if size > self.frame_max as usize {
            // RabbitMQ names the limit without its slack.
            let limit = (self.frame_max as usize).saturating_sub(FRAME_OVERHEAD);
            return Err(FrameError::Protocol {
                error: AmqpError::new(
                    ReplyCode::FrameError,
                    format!("type {kind}, all octets = <<>>: {{frame_too_large,{size},{limit}}}"),
                ),
                lost_sync: true,
            });
        }
        let total = size + FRAME_OVERHEAD;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let end = src[total - 1];
        if end != FRAME_END {
            let payload = &src[FRAME_HEADER_SIZE..total - 1];
            return Err(FrameError::Protocol {
                error: AmqpError::new(
                    ReplyCode::FrameError,
                    format!(
                        "type {kind}, {}: {{invalid_frame_end_marker,{end}}}",
                        payload_snippet(payload)
                    ),
                ),
                lost_sync: true,
            });
        }
        let mut frame = src.split_to(total);
        frame.truncate(total - 1);
        let payload = frame.split_off(FRAME_HEADER_SIZE).freeze();
        Ok(Some(Frame {
            kind,
            channel,
            payload,
        }))
    }
}

/// "all octets = <<...>>" or "first 16 octets = <<...>>", as RabbitMQ quotes
/// a payload in its frame errors.
pub fn payload_snippet(payload: &[u8]) -> String {
    if payload.len() <= 16 {
        format!("all octets = {}", erlang_binary(payload))
    } else {
        format!("first 16 octets = {}", erlang_binary(&payload[..16]))
    }
}

/// Formats bytes the way Erlang prints a binary: `<<"abc">>` when printable,
/// `<<0,20,1>>` otherwise.
pub fn erlang_binary(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        let text: String = bytes
            .iter()
            .map(|&b| match b {
                b'"' => "\\\"".to_string(),
                b'\\' => "\\\\".to_string(),
                _ => (b as char).to_string(),
            })
            .collect();
        format!("<<\"{text}\">>")
    } else {
        let parts: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        format!("<<{}>>", parts.join(","))
    }
}

/// Bodies at least this large are queued as their own `Bytes` segment and
/// written with `writev`; smaller ones are cheaper to copy next to their
/// method and header frames.
const ZERO_COPY_BODY: usize = 4096;

/// Outgoing frames, encoded and waiting for the socket. Small frames are packed
/// into one contiguous tail; large bodies stay shared `Bytes` segments.
#[derive(Debug, Default)]
pub struct FrameBuf {
    segments: Vec<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl FrameBuf {
    pub fn new() -> Self {
        FrameBuf::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put `segments` back in front of everything else (what a write left).
    pub fn prepend(&mut self, segments: Vec<Bytes>) {
        if segments.is_empty() {
            return;
        }
        self.len += segments.iter().map(Bytes::len).sum::<usize>();
        self.segments.splice(0..0, segments);
    }

    /// Everything written so far, in order, leaving the buffer empty.
    pub fn take(&mut self) -> Vec<Bytes> {
        let mut out = std::mem::take(&mut self.segments);
        if !self.tail.is_empty() {
            out.push(self.tail.split().freeze());
        }
        self.len = 0;
        out
    }

    /// A method frame whose arguments `args` writes after the class and method ids.
    pub fn put_method(
        &mut self,
        channel: u16,
        class_id: u16,
        method_id: u16,
        args: impl FnOnce(&mut BytesMut),
    ) {
        let buf = &mut self.tail;
        buf.reserve(64);
        buf.put_u8(FRAME_METHOD);
        buf.put_u16(channel);
        let size_at = buf.len();
        buf.put_u32(0);
        let start = buf.len();
        buf.put_u16(class_id);
        buf.put_u16(method_id);
        args(buf);
        let size = (buf.len() - start) as u32;
        buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
        buf.put_u8(FRAME_END);
    }

    /// A method frame encoded by amq-protocol (used for everything off the hot path).
    pub fn put_class(&mut self, channel: u16, method: &amq_protocol::protocol::AMQPClass) {
        use amq_protocol::protocol::gen_class;
        // Encoding into a Vec cannot fail: it grows as needed.
        let encoded = cookie_gen(gen_class(method));
        let buf = &mut self.tail;
        buf.reserve(encoded.len() + FRAME_OVERHEAD);
        buf.put_u8(FRAME_METHOD);
        buf.put_u16(channel);
        buf.put_u32(encoded.len() as u32);
        buf.put_slice(&encoded);
        buf.put_u8(FRAME_END);
    }

    /// A content header frame carrying the raw property bytes, then the body
    /// cut into frames of at most `frame_max` bytes.
    pub fn put_content(&mut self, channel: u16, properties: &[u8], body: &Bytes, frame_max: u32) {
        let buf = &mut self.tail;
        buf.reserve(FRAME_OVERHEAD + 12 + properties.len());
        buf.put_u8(FRAME_HEADER);
        buf.put_u16(channel);
        buf.put_u32((12 + properties.len()) as u32);
        buf.put_u16(60);
        buf.put_u16(0);
        buf.put_u64(body.len() as u64);
        buf.put_slice(properties);
        buf.put_u8(FRAME_END);
        if body.is_empty() {
            return;
        }
        let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        let mut offset = 0;
        while offset < body.len() {
            let end = (offset + chunk).min(body.len());
            self.put_body_frame(channel, body.slice(offset..end));
            offset = end;
        }
    }

    fn put_body_frame(&mut self, channel: u16, part: Bytes) {
        self.tail.reserve(FRAME_OVERHEAD);
        self.tail.put_u8(FRAME_BODY);
        self.tail.put_u16(channel);
        self.tail.put_u32(part.len() as u32);
        if part.len() >= ZERO_COPY_BODY {
            // Hand the body over by reference: freeze what precedes it.
            let head = self.tail.split().freeze();
            self.len += head.len() + part.len();
            self.segments.push(head);
            self.segments.push(part);
        } else {
            self.tail.extend_from_slice(&part);
        }
        self.tail.put_u8(FRAME_END);
    }

    pub fn put_heartbeat(&mut self) {
        self.tail
            .extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
    }

    /// Raw bytes (the protocol header we answer a bad one with).
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
    }
}

/// Run a cookie-factory serializer into a fresh vector.
pub fn cookie_gen<F>(serializer: F) -> Vec<u8>
where
    F: amq_protocol::frame::SerializeFn<Vec<u8>>,
{
    // A Vec sink grows on demand, so serialization cannot run out of room;
    // an empty vector stands in for the impossible failure.
    match serializer(amq_protocol::frame::WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> FrameCodec {
        FrameCodec::new(131072)
    }

    #[test]
    fn decodes_complete_frames_and_waits_for_partial_ones() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[1, 0, 5, 0, 0, 0, 3, b'a', b'b', b'c', 0xCE, 8, 0]);
        let frame = codec().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.kind, 1);
        assert_eq!(frame.channel, 5);
        assert_eq!(&frame.payload[..], b"abc");
        assert!(codec().decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn bad_end_marker_is_a_frame_error() {
        let mut buf = BytesMut::from(&[1u8, 0, 0, 0, 0, 0, 1, 7, 0][..]);
        match codec().decode(&mut buf) {
            Err(FrameError::Protocol { error, lost_sync }) => {
                assert!(lost_sync);
                assert_eq!(error.code, ReplyCode::FrameError);
                assert_eq!(
                    error.explanation,
                    "type 1, all octets = <<7>>: {invalid_frame_end_marker,0}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_it_is_read() {
        let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 3, 13, 64][..]);
        match codec().decode(&mut buf) {
            Err(FrameError::Protocol { error, .. }) => assert_eq!(
                error.explanation,
                "type 3, all octets = <<>>: {frame_too_large,200000,131064}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn payload_may_fill_frame_max_but_not_exceed_it() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame_bytes(3, 1, &vec![b'x'; 4096]));
        let frame = FrameCodec::new(4096).decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.payload.len(), 4096);
        let mut buf = BytesMut::from(&frame_bytes(3, 1, &vec![b'x'; 4097])[..7]);
        match FrameCodec::new(4096).decode(&mut buf) {
            Err(FrameError::Protocol { error, lost_sync }) => {
                assert!(lost_sync);
                assert_eq!(
                    error.explanation,
                    "type 3, all octets = <<>>: {frame_too_large,4097,4088}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn frame_bytes(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&channel.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v.push(FRAME_END);
        v
    }

    #[test]
    fn content_is_split_at_frame_max() {
        let mut out = FrameBuf::new();
        let body = Bytes::from(vec![7u8; 10_000]);
        out.put_content(1, &[0, 0], &body, 4096);
        let bytes: Vec<u8> = out.take().concat();
        // header frame (8 + 14) then 10000 bytes in frames of 4088
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = FrameCodec::new(4096);
        let header = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(header.kind, FRAME_HEADER);
        let mut sizes = vec![];
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            assert_eq!(f.kind, FRAME_BODY);
            sizes.push(f.payload.len());
        }
        assert_eq!(sizes, vec![4088, 4088, 1824]);
    }

    #[test]
    fn erlang_binary_formatting() {
        assert_eq!(erlang_binary(b"abc"), "<<\"abc\">>");
        assert_eq!(erlang_binary(&[0, 20]), "<<0,20>>");
        assert_eq!(erlang_binary(b""), "<<>>");
    }
}
