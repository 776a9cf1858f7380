//! Lists as `warren ctl` prints them: an aligned table with a header row,
//! or a JSON array of objects with just the chosen columns.

use serde_json::{Map, Value};

/// The value at a dotted path (`message_stats.publish`), if any.
pub fn lookup<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = item.get(path) {
        return Some(value);
    }
    path.split('.').try_fold(item, |value, key| value.get(key))
}

/// A value as one table cell: strings bare, lists joined with commas,
/// objects as compact JSON, absent or null as nothing.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| cell(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// `items` as an aligned table of `columns`, header first. Cells are
/// separated by two spaces; the last column is not padded.
pub fn table(items: &[Value], columns: &[String]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(lookup(item, c))).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.to_vec();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (text, width)) in row.iter().zip(&widths).enumerate() {
            out.push_str(text);
            if i < last {
                let pad = width - text.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `items` as a JSON array of objects holding only `columns`.
pub fn json(items: &[Value], columns: &[String]) -> String {
    let objects: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut object = Map::new();
            for column in columns {
                let value = lookup(item, column).cloned().unwrap_or(Value::Null);
                object.insert(column.clone(), value);
            }
            Value::Object(object)
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_under_their_header() {
        let items = vec![
            json!({"name": "orders", "messages": 12, "tags": ["a", "b"]}),
            json!({"name": "q", "messages": 0, "nested": {"x": 1}}),
        ];
        let columns = vec!["name".to_string(), "messages".into(), "nested.x".into()];
        assert_eq!(
            table(&items, &columns),
            "name    messages  nested.x\norders  12        \nq       0         1\n"
        );
        assert_eq!(cell(lookup(&items[0], "tags")), "a,b");
    }

    #[test]
    fn json_keeps_only_the_columns() {
        let items = vec![json!({"name": "q", "messages": 3, "other": true})];
        let columns = vec!["name".to_string(), "messages".into()];
        let parsed: Value = serde_json::from_str(&json(&items, &columns)).unwrap();
        assert_eq!(parsed, json!([{"name": "q", "messages": 3}]));
    }
}
