//! Hand-written JSON output: one flat object per line, keys in insertion
//! order (serde is not a dependency of the crate).

use std::fmt::Write;

/// One JSON value. Objects are flat except for the nesting `Obj` allows.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Obj(Json),
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::Int(v as i64)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(v as i64)
    }
}
impl From<u16> for Val {
    fn from(v: u16) -> Self {
        Val::Int(v as i64)
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Self {
        Val::Int(v as i64)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Num(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Str(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Str(v)
    }
}
impl From<Json> for Val {
    fn from(v: Json) -> Self {
        Val::Obj(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// An ordered JSON object.
#[derive(Debug, Clone, Default)]
pub struct Json {
    fields: Vec<(String, Val)>,
}

impl Json {
    pub fn new() -> Self {
        Json::default()
    }

    /// Set `key` (replacing an earlier value of the same key in place).
    pub fn set(&mut self, key: &str, val: impl Into<Val>) -> &mut Self {
        let val = val.into();
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| k == key) {
            slot.1 = val;
        } else {
            self.fields.push((key.to_string(), val));
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&Val> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A numeric field as f64, if present and numeric.
    pub fn num(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Val::Int(i) => Some(*i as f64),
            Val::Num(n) if n.is_finite() => Some(*n),
            _ => None,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(512);
        write_obj(&mut out, self);
        out
    }
}

fn write_obj(out: &mut String, obj: &Json) {
    out.push('{');
    for (i, (k, v)) in obj.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_val(out, v);
    }
    out.push('}');
}

fn write_val(out: &mut String, v: &Val) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Num(n) => write_num(out, *n),
        Val::Str(s) => write_str(out, s),
        Val::Obj(o) => write_obj(out, o),
    }
}

/// Finite numbers with precision that suits their size; NaN and infinities as null.
fn write_num(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
        return;
    }
    let a = n.abs();
    let _ = if a >= 1000.0 {
        write!(out, "{n:.1}")
    } else if a >= 1.0 {
        write!(out, "{n:.3}")
    } else {
        write!(out, "{n:.6}")
    };
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
