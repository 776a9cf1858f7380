//! The management HTTP API as `warren ctl` calls it: RabbitMQ's paths,
//! Basic auth from the URL, JSON in and out, RabbitMQ's error bodies
//! (`{"error": ..., "reason": ...}`) turned into [`CtlError`]s.
//!
//! Blocking (ureq): a command makes a handful of requests in a row, so a
//! runtime would buy nothing.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// What can go wrong talking to the API, each with the exit code
/// rabbitmqctl uses for the same kind of failure (sysexits.h).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the management API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the management API refused the credentials: {0}")]
    Refused(String),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{path}: {error}")]
    File { path: String, error: std::io::Error },
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 64,
            CtlError::Unreachable { .. } => 69,
            CtlError::Refused(_) => 77,
            CtlError::Api(_) => 70,
            CtlError::Timeout(_) => 75,
            CtlError::File { .. } => 74,
        }
    }
}

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A management API endpoint: `http://host:port[/prefix]` with the user
/// and password the URL carried.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    authorization: String,
    agent: ureq::Agent,
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Result<Value, CtlError> {
        serde_json::from_str(&self.body)
            .map_err(|e| CtlError::Api(format!("the API answered with invalid JSON: {e}")))
    }
}

impl Api {
    /// From `http://user:password@host:port[/prefix]`; the user and password
    /// default to guest:guest, percent-escapes in them are decoded.
    pub fn new(url: &str) -> Result<Api, CtlError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                CtlError::Usage(
                    "https:// is not supported; use http:// (the API on loopback or a private network)"
                        .into(),
                )
            } else {
                CtlError::Usage(format!("not an http:// URL: {url}"))
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (credentials, host),
            None => ("guest:guest", authority),
        };
        if host.is_empty() {
            return Err(CtlError::Usage(format!("no host in {url}")));
        }
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let credentials = format!("{}:{}", decode(user)?, decode(password)?);
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Api {
            base: format!("http://{host}{}", path.trim_end_matches('/')),
            authorization,
            agent,
        })
    }

    /// The URL without credentials, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send one request to `path` (under `/api`); any status comes back.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, CtlError> {
        let url = format!("{}/api/{path}", self.base);
        let unreachable = |e: ureq::Error| CtlError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let response = match (method, body) {
            ("GET" | "DELETE", _) => {
                let mut request = match method {
                    "GET" => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                request = request.header("authorization", &self.authorization);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            (_, body) => {
                let mut request = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                request = request.header("authorization", &self.authorization);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let text = body.map(Value::to_string).unwrap_or_default();
                request.content_type("application/json").send(text)
            }
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .map_err(unreachable)?;
        Ok(Answer { status, body })
    }

    /// A request that must succeed (2xx); RabbitMQ's error body otherwise.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, CtlError> {
        let answer = self.request(method, path, body, headers)?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        Err(error_of(&answer))
    }

    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call("GET", path, None, &[])?.json()
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("PUT", path, Some(body), &[]).map(drop)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("POST", path, Some(body), &[]).map(drop)
    }

    pub fn delete(&self, path: &str) -> Result<(), CtlError> {
        self.call("DELETE", path, None, &[]).map(drop)
    }

    /// Whether `path` exists (200) or not (404); other answers are errors.
    pub fn exists(&self, path: &str) -> Result<bool, CtlError> {
        let answer = self.request("GET", path, None, &[])?;
        match answer.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(error_of(&answer)),
        }
    }
}

/// The error an unsuccessful answer stands for, with RabbitMQ's reason.
pub fn error_of(answer: &Answer) -> CtlError {
    let parsed: Option<Value> = serde_json::from_str(&answer.body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let reason = field("reason")
        .or_else(|| field("error"))
        .unwrap_or_else(|| answer.body.trim().to_string());
    match answer.status {
        401 => CtlError::Refused(reason),
        404 => CtlError::Api(format!("not found ({reason})")),
        status => CtlError::Api(format!("HTTP {status}: {reason}")),
    }
}

/// A path segment: every byte but the unreserved ones percent-encoded
/// (vhost `/` is `%2F`).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-decode the user or password of a URL.
fn decode(text: &str) -> Result<String, CtlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CtlError::Usage(format!("bad percent-escape in the URL: {text}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| CtlError::Usage("the URL's credentials are not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("my-queue_1.x~"), "my-queue_1.x~");
    }

    #[test]
    fn credentials_and_prefix_come_from_the_url() {
        let api = Api::new("http://ops:p%40ss@localhost:15672/mgmt/").unwrap();
        assert_eq!(api.base(), "http://localhost:15672/mgmt");
        let expected = base64::engine::general_purpose::STANDARD.encode("ops:p@ss");
        assert_eq!(api.authorization, format!("Basic {expected}"));
        let default = Api::new("http://127.0.0.1:15672").unwrap();
        let guest = base64::engine::general_purpose::STANDARD.encode("guest:guest");
        assert_eq!(default.authorization, format!("Basic {guest}"));
        assert!(matches!(Api::new("https://x"), Err(CtlError::Usage(_))));
    }
}
