//! AMQP values in JSON and back, as RabbitMQ's management API writes them:
//! field tables as objects, message properties with their names, and
//! the other way for arguments and published properties.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use crate::protocol::properties::Fields;

/// A field table as a JSON object (the same rendering definitions use).
pub fn table(table: &FieldTable) -> Value {
    crate::definitions::table_to_json(table)
}

/// A JSON object as a field table (RabbitMQ's types: strings are long
/// strings, integers signed 64-bit, fractions doubles).
pub fn to_table(value: &Value) -> ApiResult<FieldTable> {
    let mut table = FieldTable::default();
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                table.insert(ShortString::from(key.as_str()), to_value(value));
            }
        }
        // RabbitMQ's forms send an empty list for no arguments.
        Value::Array(a) if a.is_empty() => {}
        _ => return Err(ApiError::bad_request("arguments must be an object")),
    }
    Ok(table)
}

fn to_value(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => {
            let mut array = FieldArray::default();
            for item in items {
                array.push(to_value(item));
            }
            AMQPValue::FieldArray(array)
        }
        Value::Object(_) => AMQPValue::FieldTable(to_table(value).unwrap_or_default()),
    }
}

/// Message properties as RabbitMQ lists them for `get`: only those set,
/// and an empty list (not an object) when none are.
pub fn properties(p: &BasicProperties) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            out.insert(key.to_string(), v);
        }
    };
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| json!(s.as_str()));
    put("content_type", text(p.content_type()));
    put("content_encoding", text(p.content_encoding()));
    put("priority", p.priority().map(|v| json!(v)));
    put("correlation_id", text(p.correlation_id()));
    put("reply_to", text(p.reply_to()));
    put("expiration", text(p.expiration()));
    put("message_id", text(p.message_id()));
    put("timestamp", p.timestamp().map(|v| json!(v)));
    put("type", text(p.kind()));
    put("user_id", text(p.user_id()));
    put("app_id", text(p.app_id()));
    put("cluster_id", text(p.cluster_id()));
    put("delivery_mode", p.delivery_mode().map(|v| json!(v)));
    put("headers", p.headers().as_ref().map(table));
    if out.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Object(out)
    }
}

/// Properties of a message published through the API.
pub fn to_properties(value: &Value) -> ApiResult<Fields> {
    let mut fields = Fields::default();
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return Ok(fields),
        Value::Array(a) if a.is_empty() => return Ok(fields),
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    let text = |key: &str| -> ApiResult<Option<ShortString>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(ShortString::from(s.as_str()))),
            Some(Value::Number(n)) => Ok(Some(ShortString::from(n.to_string()))),
            Some(_) => Err(ApiError::bad_request(format!("invalid property '{key}'"))),
        }
    };
    let number = |key: &str| -> ApiResult<Option<u64>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid property '{key}'"))),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid property '{key}'"))),
            Some(_) => Err(ApiError::bad_request(format!("invalid property '{key}'"))),
        }
    };
    fields.content_type = text("content_type")?;
    fields.content_encoding = text("content_encoding")?;
    fields.correlation_id = text("correlation_id")?;
    fields.reply_to = text("reply_to")?;
    fields.expiration = text("expiration")?;
    fields.message_id = text("message_id")?;
    fields.kind = text("type")?;
    fields.user_id = text("user_id")?;
    fields.app_id = text("app_id")?;
    fields.cluster_id = text("cluster_id")?;
    fields.timestamp = number("timestamp")?;
    fields.delivery_mode = number("delivery_mode")?.map(|v| v.min(255) as u8);
    fields.priority = number("priority")?.map(|v| v.min(255) as u8);
    if let Some(headers) = map.get("headers") {
        fields.headers = Some(to_table(headers)?);
    }
    Ok(fields)
}
