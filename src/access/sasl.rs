//! The SASL mechanisms: PLAIN and AMQPLAIN, which RabbitMQ offers by
//! default and which turn a `connection.start-ok` response into a user name
//! and password, and EXTERNAL (RabbitMQ's `rabbitmq_auth_mechanism_ssl`),
//! which takes the user name from the client's TLS certificate and ignores
//! the response.

use crate::protocol::table::{as_bytes, decode_table};

/// RabbitMQ's default `auth_mechanisms`.
pub const DEFAULT_MECHANISMS: [&str; 2] = ["PLAIN", "AMQPLAIN"];

/// Every mechanism Warren can be configured with.
pub const KNOWN_MECHANISMS: [&str; 3] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

/// The mechanisms `connection.start` offers, given the configured ones
/// (RabbitMQ's `auth_mechanisms`) and whether the connection is TLS. The
/// order is RabbitMQ's, which lists its registry rather than the
/// configuration: `PLAIN AMQPLAIN` without the EXTERNAL plugin, `AMQPLAIN
/// EXTERNAL PLAIN` with it (EXTERNAL only on TLS connections, with or
/// without a client certificate, as the plugin offers it).
pub fn offered(configured: &[String], tls: bool) -> Vec<&'static str> {
    let has = |name: &str| configured.iter().any(|m| m == name);
    let order: &[&'static str] = if has("EXTERNAL") {
        &["AMQPLAIN", "EXTERNAL", "PLAIN"]
    } else {
        &["PLAIN", "AMQPLAIN"]
    };
    order
        .iter()
        .copied()
        .filter(|&name| has(name) && (name != "EXTERNAL" || tls))
        .collect()
}

/// Why a login failed. `Refused` texts go to the log, never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown mechanism name.
    Mechanism(String),
    /// A mechanism this connection did not offer.
    NotOffered(String),
    /// The response could not be parsed for the mechanism.
    Malformed(&'static str),
    /// Wrong user or password, a blank password, or a loopback-only user
    /// from afar.
    Refused(String),
}

/// The user name and password in a response to `mechanism`.
pub fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, String), AuthError> {
    match mechanism {
        "PLAIN" => parse_plain(response),
        "AMQPLAIN" => parse_amqplain(response),
        other => Err(AuthError::Mechanism(other.to_string())),
    }
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

    #[test]
    fn plain() {
        assert_eq!(
            credentials("PLAIN", b"\0guest\0guest"),
            Ok(("guest".into(), "guest".into()))
        );
        assert_eq!(
            credentials("PLAIN", b"admin\0app\0"),
            Ok(("app".into(), "".into()))
        );
        assert!(matches!(
            credentials("PLAIN", b"guest"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn offered_mechanisms_follow_rabbitmq_order() {
        let default: Vec<String> = DEFAULT_MECHANISMS.iter().map(|m| m.to_string()).collect();
        assert_eq!(offered(&default, false), ["PLAIN", "AMQPLAIN"]);
        assert_eq!(offered(&default, true), ["PLAIN", "AMQPLAIN"]);
        let all: Vec<String> = KNOWN_MECHANISMS.iter().map(|m| m.to_string()).collect();
        assert_eq!(offered(&all, false), ["AMQPLAIN", "PLAIN"]);
        assert_eq!(offered(&all, true), ["AMQPLAIN", "EXTERNAL", "PLAIN"]);
        assert_eq!(offered(&["EXTERNAL".to_string()], true), ["EXTERNAL"]);
    }

    #[test]
    fn amqplain() {
        let mut body = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "pw")] {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.push(b'S');
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &body),
            Ok(("guest".into(), "pw".into()))
        );
        assert!(matches!(
            credentials("AMQPLAIN", &body[..7]),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            credentials("EXTERNAL", b""),
            Err(AuthError::Mechanism(_))
        ));
    }
}
