//! A raw AMQP client for the tests that send what no real client would:
//! malformed frames, methods out of order, wrong channels.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame as read off the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// (class, method) of a method frame.
    pub fn method(&self) -> Option<(u16, u16)> {
        (self.kind == 1 && self.payload.len() >= 4).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                u16::from_be_bytes([self.payload[2], self.payload[3]]),
            )
        })
    }

    /// For connection.close / channel.close: (reply code, reply text, class, method).
    pub fn close_info(&self) -> Option<(u16, String, u16, u16)> {
        match self.method()? {
            (10, 50) | (20, 40) => {
                let p = &self.payload[4..];
                let code = u16::from_be_bytes([p[0], p[1]]);
                let len = p[2] as usize;
                let text = String::from_utf8_lossy(&p[3..3 + len]).into_owned();
                let rest = &p[3 + len..];
                Some((
                    code,
                    text,
                    u16::from_be_bytes([rest[0], rest[1]]),
                    u16::from_be_bytes([rest[2], rest[3]]),
                ))
            }
            _ => None,
        }
    }
}

pub fn short_str(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

pub fn long_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// Encode one frame.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

/// Encode a method frame.
pub fn method(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = class.to_be_bytes().to_vec();
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    frame(1, channel, &payload)
}

/// A content header frame for class 60 with the given body size and raw properties.
pub fn content_header(channel: u16, body_size: u64, properties: &[u8]) -> Vec<u8> {
    let mut payload = 60u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&body_size.to_be_bytes());
    payload.extend_from_slice(properties);
    frame(2, channel, &payload)
}

/// basic.publish arguments.
pub fn publish_args(exchange: &str, routing_key: &str, flags: u8) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend(short_str(exchange));
    v.extend(short_str(routing_key));
    v.push(flags);
    v
}

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: std::net::SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next frame, `None` on timeout or end of stream.
    pub async fn recv(&mut self, timeout: Duration) -> Option<RawFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.buf.len() >= size + 8 {
                    let f = RawFrame {
                        kind: self.buf[0],
                        channel: u16::from_be_bytes([self.buf[1], self.buf[2]]),
                        payload: self.buf[7..7 + size].to_vec(),
                    };
                    self.buf.drain(..size + 8);
                    return Some(f);
                }
            }
            let mut chunk = vec![0u8; 65536];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => n,
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read until a method frame with (class, method) arrives.
    pub async fn expect_method(&mut self, class: u16, method_id: u16) -> RawFrame {
        loop {
            let f = self
                .recv(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("no {class}.{method_id} arrived"));
            if f.method() == Some((class, method_id)) {
                return f;
            }
        }
    }

    /// Read raw bytes until the peer closes or `timeout` passes.
    pub async fn read_raw(&mut self, timeout: Duration) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        out
    }

    /// Whether the peer closed the socket within `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Protocol header, start-ok (PLAIN guest/guest with the usual
    /// capabilities), tune-ok echoing the server's values, open "/".
    pub async fn handshake(addr: std::net::SocketAddr) -> RawConn {
        let mut c = RawConn::handshake_until_open(addr, "guest", "guest", "/").await;
        c.expect_method(10, 41).await;
        c
    }

    /// The handshake as `user` up to `connection.open` of `vhost`, sent
    /// with tune-ok: the next frame is open-ok or a close.
    pub async fn handshake_until_open(
        addr: std::net::SocketAddr,
        user: &str,
        password: &str,
        vhost: &str,
    ) -> RawConn {
        let mut c = RawConn::connect(addr).await;
        c.send(b"AMQP\x00\x00\x09\x01").await;
        c.expect_method(10, 10).await;
        c.send(&start_ok(format!("\0{user}\0{password}").as_bytes()))
            .await;
        let tune = c.expect_method(10, 30).await;
        let p = &tune.payload[4..];
        let channel_max = u16::from_be_bytes([p[0], p[1]]);
        let frame_max = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
        let mut args = channel_max.to_be_bytes().to_vec();
        args.extend_from_slice(&frame_max.to_be_bytes());
        args.extend_from_slice(&0u16.to_be_bytes());
        let mut open = short_str(vhost);
        open.extend(short_str(""));
        open.push(0);
        // tune-ok and open in one write, as real clients do.
        let mut both = method(0, 10, 31, &args);
        both.extend(method(0, 10, 40, &open));
        c.send(&both).await;
        c
    }

    /// Open channel `id` and wait for open-ok.
    pub async fn open_channel(&mut self, id: u16) {
        self.send(&method(id, 20, 10, &short_str(""))).await;
        self.expect_method(20, 11).await;
    }

    /// The next connection.close or channel.close, as (channel, code, text, class, method).
    pub async fn expect_close(&mut self) -> (u16, u16, String, u16, u16) {
        loop {
            let f = self
                .recv(Duration::from_secs(5))
                .await
                .expect("a close frame");
            if let Some((code, text, class, method)) = f.close_info() {
                return (f.channel, code, text, class, method);
            }
        }
    }
}

/// connection.start-ok with a PLAIN response and the common client capabilities.
pub fn start_ok(response: &[u8]) -> Vec<u8> {
    let mut caps = Vec::new();
    for cap in [
        "authentication_failure_close",
        "consumer_cancel_notify",
        "publisher_confirms",
        "basic.nack",
        "connection.blocked",
    ] {
        caps.extend(short_str(cap));
        caps.extend_from_slice(b"t\x01");
    }
    let mut props = short_str("capabilities");
    props.push(b'F');
    props.extend(long_str(&caps));
    let mut args = long_str(&props);
    args.extend(short_str("PLAIN"));
    args.extend(long_str(response));
    args.extend(short_str("en_US"));
    method(0, 10, 11, &args)
}

impl RawConn {
    /// Close the socket with a reset (SO_LINGER 0), as a client that dies
    /// with unread input does.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is this open socket's; the option value is
        // a valid `linger` of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
        drop(self.stream);
    }

    /// Send FIN but keep the socket (and whatever the peer sent) unread.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.expect("shutdown(Write)");
    }
}
