//! Users and SASL authentication (PLAIN and AMQPLAIN).

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::RwLock;

use crate::protocol::table::{as_bytes, decode_table};

/// The mechanisms offered in `connection.start`, in RabbitMQ's order.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    password: String,
    /// May connect only from a loopback address (RabbitMQ's loopback_users).
    pub loopback_only: bool,
}

/// Why a login failed; the text goes to the log, never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown mechanism name.
    Mechanism(String),
    /// The response could not be parsed for the mechanism.
    Malformed(&'static str),
    /// Wrong user or password, or a loopback-only user from afar.
    Refused(String),
}

#[derive(Debug, Default)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
}

impl Users {
    pub fn add(&self, name: &str, password: &str, loopback_only: bool) {
        self.users.write().insert(
            name.to_string(),
            User {
                name: name.to_string(),
                password: password.to_string(),
                loopback_only,
            },
        );
    }

    /// Check a `start-ok` response; returns the user name on success.
    pub fn authenticate(
        &self,
        mechanism: &str,
        response: &[u8],
        peer: IpAddr,
    ) -> Result<String, AuthError> {
        let (name, password) = match mechanism {
            "PLAIN" => parse_plain(response)?,
            "AMQPLAIN" => parse_amqplain(response)?,
            other => return Err(AuthError::Mechanism(other.to_string())),
        };
        let users = self.users.read();
        let user = users
            .get(&name)
            .filter(|u| constant_time_eq(u.password.as_bytes(), password.as_bytes()))
            .ok_or_else(|| AuthError::Refused(format!("user '{name}' - invalid credentials")))?;
        if user.loopback_only && !is_loopback(peer) {
            return Err(AuthError::Refused(format!(
                "user '{name}' can only connect via localhost"
            )));
        }
        Ok(user.name.clone())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// PLAIN: `[authzid] NUL authcid NUL password`.
fn parse_plain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut parts = response.split(|&b| b == 0);
    let (_authz, user, pass) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => {
            return Err(AuthError::Malformed(
                "PLAIN response is not authzid NUL user NUL password",
            ));
        }
    };
    Ok((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut framed = (response.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(response);
    let table = decode_table(&framed).ok_or(AuthError::Malformed(
        "AMQPLAIN response is not a field table",
    ))?;
    let field = |key: &str| {
        table
            .inner()
            .get(key)
            .and_then(as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    match (field("LOGIN"), field("PASSWORD")) {
        (Some(user), Some(pass)) => Ok((user, pass)),
        _ => Err(AuthError::Malformed(
            "AMQPLAIN response lacks LOGIN or PASSWORD",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let u = Users::default();
        u.add("guest", "guest", true);
        u.add("app", "secret", false);
        u
    }

    #[test]
    fn plain_login() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            users().authenticate("PLAIN", b"\0guest\0guest", local),
            Ok("guest".into())
        );
        assert!(matches!(
            users().authenticate("PLAIN", b"\0guest\0nope", local),
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(
            users().authenticate("PLAIN", b"guest", local),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn guest_is_loopback_only() {
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(matches!(
            users().authenticate("PLAIN", b"\0guest\0guest", remote),
            Err(AuthError::Refused(_))
        ));
        assert!(
            users()
                .authenticate("PLAIN", b"\0app\0secret", remote)
                .is_ok()
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(
            users()
                .authenticate("PLAIN", b"\0guest\0guest", mapped)
                .is_ok()
        );
    }

    #[test]
    fn amqplain_login() {
        let mut body = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.push(b'S');
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            users().authenticate("AMQPLAIN", &body, local),
            Ok("guest".into())
        );
        assert!(matches!(
            users().authenticate("EXTERNAL", b"", local),
            Err(AuthError::Mechanism(_))
        ));
    }
}
