//! Field tables: a structural check that runs before amq-protocol decodes
//! one, and the helpers that read and compare their values the way RabbitMQ
//! does (argument lookups, equivalence checks, headers matching).
//!
//! The check exists because a field table may nest tables and arrays, and a
//! decoder that recurses on untrusted input can be made to exhaust its stack
//! with a 128 KiB frame of nested headers. [`check_table`] walks the same bytes
//! iteratively-bounded and refuses nesting deeper than [`MAX_DEPTH`].

use amq_protocol::types::{AMQPValue, FieldTable};

/// Nesting RabbitMQ users meet in practice is 2 or 3 deep (x-death is 3).
pub const MAX_DEPTH: usize = 64;

/// Why a table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The bytes end inside the table or a length points past its end.
    Truncated,
    /// A value has a type tag no AMQP peer defines.
    UnknownType(u8),
    /// Tables or arrays nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Check the field table at the start of `buf` (with its u32 length prefix)
/// and return how many bytes it occupies.
pub fn check_table(buf: &[u8]) -> Result<usize, TableError> {
    check_table_keys(buf, &mut |_| {})
}

/// [`check_table`], calling `on_key` with each top-level key on the way.
pub fn check_table_keys(buf: &[u8], on_key: &mut dyn FnMut(&[u8])) -> Result<usize, TableError> {
    let len = read_u32(buf, 0)? as usize;
    let end = 4usize.checked_add(len).ok_or(TableError::Truncated)?;
    if end > buf.len() {
        return Err(TableError::Truncated);
    }
    check_table_body(&buf[4..end], 1, on_key)?;
    Ok(end)
}

fn check_table_body(
    mut buf: &[u8],
    depth: usize,
    on_key: &mut dyn FnMut(&[u8]),
) -> Result<(), TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooDeep);
    }
    while !buf.is_empty() {
        let key_len = buf[0] as usize;
        if buf.len() < 1 + key_len + 1 {
            return Err(TableError::Truncated);
        }
        on_key(&buf[1..1 + key_len]);
        let used = check_value(&buf[1 + key_len..], depth)?;
        buf = &buf[1 + key_len + used..];
    }
    Ok(())
}

fn check_array_body(mut buf: &[u8], depth: usize) -> Result<(), TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooDeep);
    }
    while !buf.is_empty() {
        let used = check_value(buf, depth)?;
        buf = &buf[used..];
    }
    Ok(())
}

/// The size of the tagged value at the start of `buf` (tag included), if
/// it is well formed.
pub fn value_len(buf: &[u8]) -> Option<usize> {
    check_value(buf, 1).ok()
}

/// Check one tagged value; returns its size including the tag.
fn check_value(buf: &[u8], depth: usize) -> Result<usize, TableError> {
    let tag = *buf.first().ok_or(TableError::Truncated)?;
    let fixed = |n: usize| {
        if buf.len() > n {
            Ok(1 + n)
        } else {
            Err(TableError::Truncated)
        }
    };
    match tag {
        b't' | b'b' | b'B' => fixed(1),
        b's' | b'U' | b'u' => fixed(2),
        b'I' | b'i' | b'f' => fixed(4),
        b'l' | b'L' | b'd' | b'T' => fixed(8),
        b'D' => fixed(5),
        b'V' => Ok(1),
        b'S' | b'x' | b'A' | b'F' => {
            let len = read_u32(buf, 1)? as usize;
            let end = 5usize.checked_add(len).ok_or(TableError::Truncated)?;
            if end > buf.len() {
                return Err(TableError::Truncated);
            }
            match tag {
                b'F' => check_table_body(&buf[5..end], depth + 1, &mut |_| {})?,
                b'A' => check_array_body(&buf[5..end], depth + 1)?,
                _ => {}
            }
            Ok(end)
        }
        other => Err(TableError::UnknownType(other)),
    }
}

fn read_u32(buf: &[u8], at: usize) -> Result<u32, TableError> {
    buf.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(TableError::Truncated)
}

/// Skip a short string at the start of `buf`; returns its size with the prefix.
fn skip_short_string(buf: &[u8]) -> Result<usize, TableError> {
    let len = *buf.first().ok_or(TableError::Truncated)? as usize;
    if buf.len() < 1 + len {
        return Err(TableError::Truncated);
    }
    Ok(1 + len)
}

/// Check every field table in the arguments of a client method, so that the
/// amq-protocol decoder only ever sees well-nested tables. Methods without
/// tables pass untouched.
pub fn check_method_tables(class_id: u16, method_id: u16, args: &[u8]) -> Result<(), TableError> {
    // Field layouts up to and including each table: s = short string,
    // h = u16, b = octet of bits, T = table.
    let layout: &[u8] = match (class_id, method_id) {
        (10, 11) => b"T",                 // connection.start-ok: client-properties
        (40, 10) => b"hssbT",             // exchange.declare
        (40, 30) | (40, 40) => b"hsssbT", // exchange.bind / unbind
        (50, 10) => b"hsbT",              // queue.declare
        (50, 20) => b"hsssbT",            // queue.bind
        (50, 50) => b"hsssT",             // queue.unbind
        (60, 20) => b"hssbT",             // basic.consume
        _ => return Ok(()),
    };
    let mut at = 0usize;
    for field in layout {
        let rest = args.get(at..).ok_or(TableError::Truncated)?;
        at += match field {
            b's' => skip_short_string(rest)?,
            b'h' => 2,
            b'b' => 1,
            _ => check_table(rest)?,
        };
    }
    Ok(())
}

/// RabbitMQ's name for a value's type, as its error texts print it.
pub fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// The value as RabbitMQ prints it inside quotes in error texts.
pub fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Float(f) => format_float(*f as f64),
        AMQPValue::Double(f) => format_float(*f),
        AMQPValue::DecimalValue(d) => format!("{{{},{}}}", d.scale, d.value),
        AMQPValue::Void => "undefined".to_string(),
        AMQPValue::FieldTable(t) => {
            let parts: Vec<String> = t
                .into_iter()
                .map(|(k, v)| format!("{{<<\"{}\">>,{},{}}}", k, type_name(v), value_text(v)))
                .collect();
            format!("[{}]", parts.join(","))
        }
        AMQPValue::FieldArray(a) => {
            let parts: Vec<String> = a
                .as_slice()
                .iter()
                .map(|v| format!("{{{},{}}}", type_name(v), value_text(v)))
                .collect();
            format!("[{}]", parts.join(","))
        }
        other => as_i128(other).map(|n| n.to_string()).unwrap_or_default(),
    }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// The "the value 'X' of type 'T'" phrase of RabbitMQ's equivalence errors.
pub fn describe_value(value: Option<&AMQPValue>) -> String {
    match value {
        None => "none".to_string(),
        Some(v) => format!("the value '{}' of type '{}'", value_text(v), type_name(v)),
    }
}

/// Integer value of any integer-typed field.
pub fn as_i128(value: &AMQPValue) -> Option<i128> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => *v as i128,
        AMQPValue::ShortShortUInt(v) => *v as i128,
        AMQPValue::ShortInt(v) => *v as i128,
        AMQPValue::ShortUInt(v) => *v as i128,
        AMQPValue::LongInt(v) => *v as i128,
        AMQPValue::LongUInt(v) => *v as i128,
        AMQPValue::LongLongInt(v) => *v as i128,
        AMQPValue::Timestamp(v) => *v as i128,
        _ => return None,
    })
}

/// Type classes as RabbitMQ groups them for equivalence: every integer width
/// (and decimal) is "int", both float widths are "float".
fn type_class(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::ShortShortInt(_)
        | AMQPValue::ShortShortUInt(_)
        | AMQPValue::ShortInt(_)
        | AMQPValue::ShortUInt(_)
        | AMQPValue::LongInt(_)
        | AMQPValue::LongUInt(_)
        | AMQPValue::LongLongInt(_)
        | AMQPValue::DecimalValue(_) => "int",
        AMQPValue::Float(_) | AMQPValue::Double(_) => "float",
        other => type_name(other),
    }
}

/// Argument equivalence: same type class and same value.
pub fn equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    type_class(a) == type_class(b) && values_equal(a, b)
}

/// Value equality as Erlang's `==` sees decoded AMQP values: numbers compare
/// by value across widths, strings by bytes, containers element by element.
pub fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return x == y;
    }
    match (a, b) {
        (AMQPValue::Float(_) | AMQPValue::Double(_), _)
        | (_, AMQPValue::Float(_) | AMQPValue::Double(_)) => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        (AMQPValue::Boolean(x), AMQPValue::Boolean(y)) => x == y,
        (AMQPValue::Void, AMQPValue::Void) => true,
        (AMQPValue::DecimalValue(x), AMQPValue::DecimalValue(y)) => x == y,
        (AMQPValue::FieldTable(x), AMQPValue::FieldTable(y)) => tables_equal(x, y),
        (AMQPValue::FieldArray(x), AMQPValue::FieldArray(y)) => {
            x.as_slice().len() == y.as_slice().len()
                && x.as_slice()
                    .iter()
                    .zip(y.as_slice())
                    .all(|(p, q)| values_equal(p, q))
        }
        _ => match (as_bytes(a), as_bytes(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Table equality with [`values_equal`] on the values.
pub fn tables_equal(a: &FieldTable, b: &FieldTable) -> bool {
    a.inner().len() == b.inner().len()
        && a.inner()
            .iter()
            .zip(b.inner())
            .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
}

fn as_f64(value: &AMQPValue) -> Option<f64> {
    match value {
        AMQPValue::Float(f) => Some(*f as f64),
        AMQPValue::Double(f) => Some(*f),
        other => as_i128(other).map(|n| n as f64),
    }
}

/// The bytes of a string-like value.
pub fn as_bytes(value: &AMQPValue) -> Option<&[u8]> {
    match value {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

/// A string-like argument as text.
pub fn as_text(value: &AMQPValue) -> Option<String> {
    as_bytes(value).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Look up a key in a table.
pub fn lookup<'a>(table: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    table.inner().get(key)
}

/// Encode a table (length prefix included) with amq-protocol's encoder.
pub fn encode_table(table: &FieldTable) -> Vec<u8> {
    super::frame::cookie_gen(amq_protocol::types::generation::gen_field_table(table))
}

/// Decode a table whose bytes (length prefix included) were already
/// checked by [`check_table`].
pub fn decode_table(buf: &[u8]) -> Option<FieldTable> {
    check_table(buf).ok()?;
    amq_protocol::types::parsing::parse_field_table(buf)
        .ok()
        .map(|(_, table)| table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn table_bytes(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn accepts_a_flat_table() {
        let mut body = vec![1, b'a', b'I', 0, 0, 0, 5];
        body.extend_from_slice(&[1, b'b', b'S', 0, 0, 0, 2, b'h', b'i']);
        let bytes = table_bytes(&body);
        assert_eq!(check_table(&bytes), Ok(bytes.len()));
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_deeply() {
        // 10,000 nested tables: each level is key "k", tag 'F', then its length.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..10_000 {
            let mut level = vec![1, b'k', b'F'];
            level.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            level.extend_from_slice(&inner);
            inner = level;
        }
        let bytes = table_bytes(&inner);
        assert_eq!(check_table(&bytes), Err(TableError::TooDeep));
    }

    #[test]
    fn refuses_lengths_past_the_end() {
        let bytes = table_bytes(&[1, b'a', b'S', 0, 0, 0, 99, b'x']);
        assert_eq!(check_table(&bytes), Err(TableError::Truncated));
        assert_eq!(check_table(&[0, 0, 0, 9]), Err(TableError::Truncated));
    }

    #[test]
    fn refuses_unknown_types() {
        let bytes = table_bytes(&[1, b'a', b'z', 0]);
        assert_eq!(check_table(&bytes), Err(TableError::UnknownType(b'z')));
    }

    #[test]
    fn numbers_compare_across_widths() {
        assert!(values_equal(
            &AMQPValue::LongInt(5),
            &AMQPValue::LongLongInt(5)
        ));
        assert!(values_equal(
            &AMQPValue::ShortShortUInt(1),
            &AMQPValue::Double(1.0)
        ));
        assert!(!values_equal(
            &AMQPValue::LongInt(5),
            &AMQPValue::Boolean(true)
        ));
        assert!(values_equal(
            &AMQPValue::LongString(LongString::from("x")),
            &AMQPValue::ShortString(ShortString::from("x"))
        ));
        assert!(equivalent(&AMQPValue::LongInt(5), &AMQPValue::ShortInt(5)));
        assert!(!equivalent(&AMQPValue::LongInt(1), &AMQPValue::Double(1.0)));
    }

    #[test]
    fn describes_values_like_rabbitmq() {
        assert_eq!(
            describe_value(Some(&AMQPValue::LongLongInt(100))),
            "the value '100' of type 'long'"
        );
        assert_eq!(describe_value(None), "none");
    }
}
