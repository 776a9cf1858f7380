//! Headers routing: bindings match on message headers, with `x-match` of
//! all, any, all-with-x or any-with-x, as RabbitMQ defines them.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::Destination;
use crate::amqp_err;
use crate::protocol::AmqpResult;
use crate::protocol::table::{type_name, value_text, values_equal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKind {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

/// One binding's pattern, prepared at bind time.
#[derive(Debug)]
struct Pattern {
    kind: MatchKind,
    /// The fields to compare; `x-match` itself never, other `x-` keys only
    /// for the -with-x kinds.
    fields: Vec<(String, AMQPValue)>,
}

impl Pattern {
    fn new(arguments: &FieldTable) -> Pattern {
        let kind = match arguments
            .inner()
            .get("x-match")
            .and_then(crate::protocol::table::as_bytes)
        {
            Some(b"any") => MatchKind::Any,
            Some(b"all-with-x") => MatchKind::AllWithX,
            Some(b"any-with-x") => MatchKind::AnyWithX,
            _ => MatchKind::All,
        };
        let with_x = matches!(kind, MatchKind::AllWithX | MatchKind::AnyWithX);
        let fields = arguments
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
            .collect();
        Pattern { kind, fields }
    }

    fn matches(&self, headers: Option<&FieldTable>) -> bool {
        let field_matches = |(key, expected): &(String, AMQPValue)| {
            headers
                .and_then(|h| h.inner().get(key.as_str()))
                .is_some_and(|actual| {
                    matches!(expected, AMQPValue::Void) || values_equal(expected, actual)
                })
        };
        match self.kind {
            MatchKind::All | MatchKind::AllWithX => self.fields.iter().all(field_matches),
            MatchKind::Any | MatchKind::AnyWithX => self.fields.iter().any(field_matches),
        }
    }
}

/// Refuse an `x-match` RabbitMQ would refuse (406 PRECONDITION_FAILED).
pub fn validate_binding(arguments: &FieldTable) -> AmqpResult<()> {
    match arguments.inner().get("x-match") {
        None => Ok(()),
        Some(AMQPValue::LongString(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => Err(amqp_err!(
                PreconditionFailed,
                "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                crate::protocol::frame::erlang_binary(other)
            )),
        },
        Some(other) => Err(amqp_err!(
            PreconditionFailed,
            "Invalid x-match field type {} (value {}); expected longstr",
            type_name(other),
            value_text(other)
        )),
    }
}

#[derive(Debug, Default)]
pub struct HeadersRouter {
    bindings: Vec<(Pattern, FieldTable, Destination)>,
}

impl HeadersRouter {
    pub fn add(&mut self, arguments: &FieldTable, destination: Destination) {
        self.bindings
            .push((Pattern::new(arguments), arguments.clone(), destination));
    }

    pub fn remove(&mut self, arguments: &FieldTable, destination: &Destination) {
        if let Some(i) = self.bindings.iter().position(|(_, args, d)| {
            d.same(destination) && crate::protocol::table::tables_equal(args, arguments)
        }) {
            self.bindings.remove(i);
        }
    }

    pub fn route(&self, headers: Option<&FieldTable>, out: &mut dyn FnMut(&Destination)) {
        for (pattern, _, destination) in &self.bindings {
            if pattern.matches(headers) {
                out(destination);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    #[test]
    fn all_and_any() {
        let all = Pattern::new(&table(&[
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", AMQPValue::LongInt(2)),
        ]));
        let any = Pattern::new(&table(&[
            ("x-match", s("any")),
            ("a", s("1")),
            ("b", AMQPValue::LongInt(2)),
        ]));
        let both = table(&[("a", s("1")), ("b", AMQPValue::LongLongInt(2))]);
        let one = table(&[("a", s("1"))]);
        assert!(all.matches(Some(&both)));
        assert!(!all.matches(Some(&one)));
        assert!(any.matches(Some(&one)));
        assert!(!any.matches(None));
    }

    #[test]
    fn default_is_all_and_empty_all_matches_everything() {
        assert!(Pattern::new(&FieldTable::default()).matches(None));
        assert!(!Pattern::new(&table(&[("x-match", s("any"))])).matches(None));
    }

    #[test]
    fn x_keys_count_only_with_x() {
        let plain = Pattern::new(&table(&[("x-match", s("all")), ("x-k", s("v"))]));
        let with_x = Pattern::new(&table(&[("x-match", s("all-with-x")), ("x-k", s("v"))]));
        let headers = table(&[("x-k", s("other"))]);
        assert!(plain.matches(Some(&headers)));
        assert!(!with_x.matches(Some(&headers)));
        assert!(with_x.matches(Some(&table(&[("x-k", s("v"))]))));
    }

    #[test]
    fn void_pattern_means_presence() {
        let p = Pattern::new(&table(&[("k", AMQPValue::Void)]));
        assert!(p.matches(Some(&table(&[("k", AMQPValue::Boolean(false))]))));
        assert!(!p.matches(Some(&table(&[("j", AMQPValue::Void)]))));
    }

    #[test]
    fn bad_x_match_is_refused() {
        let err = validate_binding(&table(&[("x-match", s("some"))])).unwrap_err();
        assert_eq!(
            err.reply_text(),
            "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x"
        );
        assert!(validate_binding(&table(&[("x-match", AMQPValue::LongInt(1))])).is_err());
    }
}
