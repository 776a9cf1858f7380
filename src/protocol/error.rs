//! The one error type every protocol handler returns.
//!
//! An [`AmqpError`] carries the reply code and the explanation; the connection
//! turns it into exactly one `channel.close` or `connection.close`, with the
//! class and method of the command that failed. Nothing else in the crate
//! writes close frames for errors.

use super::reply::ReplyCode;

/// A protocol exception, as RabbitMQ would raise it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} - {explanation}", code.name())]
pub struct AmqpError {
    pub code: ReplyCode,
    /// The human-readable part after "CODE_NAME - ".
    pub explanation: String,
    /// The failing method; (0, 0) when the error is not tied to one.
    pub class_id: u16,
    pub method_id: u16,
    /// Forces a connection close even for a soft code (e.g. errors on channel 0).
    pub connection_level: bool,
}

impl AmqpError {
    pub fn new(code: ReplyCode, explanation: impl Into<String>) -> Self {
        AmqpError {
            code,
            explanation: explanation.into(),
            class_id: 0,
            method_id: 0,
            connection_level: false,
        }
    }

    /// Record which method failed, unless an inner layer already did.
    pub fn in_method(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// Escalate to a connection close.
    pub fn on_connection(mut self) -> Self {
        self.connection_level = true;
        self
    }

    /// Whether this error closes the connection rather than the channel.
    pub fn closes_connection(&self) -> bool {
        self.connection_level || self.code.is_hard()
    }

    /// The reply text as RabbitMQ writes it: "NOT_FOUND - no queue 'q' in vhost '/'".
    /// Short strings hold 255 bytes at most: like RabbitMQ, a longer text
    /// keeps its first 252 bytes (on a char boundary) and ends in "...".
    pub fn reply_text(&self) -> String {
        if self.explanation.is_empty() {
            // RabbitMQ's text when its own code failed: the name alone.
            return self.code.name().to_string();
        }
        let mut text = format!("{} - {}", self.code.name(), self.explanation);
        if text.len() > 255 {
            let mut end = 252;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("...");
        }
        text
    }
}

/// Build an [`AmqpError`] with a formatted explanation:
/// `amqp_err!(NotFound, "no queue '{}' in vhost '{}'", q, vhost)`.
#[macro_export]
macro_rules! amqp_err {
    ($code:ident, $($fmt:tt)+) => {
        $crate::protocol::AmqpError::new($crate::protocol::ReplyCode::$code, format!($($fmt)+))
    };
}

/// Result alias for protocol handlers.
pub type AmqpResult<T> = Result<T, AmqpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_has_rabbitmq_prefix() {
        let e = amqp_err!(NotFound, "no queue '{}' in vhost '{}'", "q", "/");
        assert_eq!(e.reply_text(), "NOT_FOUND - no queue 'q' in vhost '/'");
        assert!(!e.closes_connection());
        assert!(e.clone().on_connection().closes_connection());
    }

    #[test]
    fn long_reply_text_is_cut_to_a_short_string() {
        let e = AmqpError::new(ReplyCode::PreconditionFailed, "é".repeat(300));
        let text = e.reply_text();
        assert!(text.len() <= 255);
        assert!(text.starts_with("PRECONDITION_FAILED - "));
        assert!(text.ends_with("..."));
    }
}
