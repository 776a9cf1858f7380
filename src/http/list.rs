//! RabbitMQ's list parameters: `name` (with `use_regex`), `sort` (a field,
//! dotted for nested ones), `sort_reverse`, `page` and `page_size` (which
//! turn the answer into a page object) and `columns`.

use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

/// The largest page RabbitMQ serves.
const MAX_PAGE_SIZE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 100;

/// The query string of a list request.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub name: Option<String>,
    pub use_regex: Option<String>,
    pub sort: Option<String>,
    pub sort_reverse: Option<String>,
    pub columns: Option<String>,
}

impl ListQuery {
    /// Answer with `items` filtered, sorted, paged and cut to the columns
    /// asked for. Items are sorted by vhost and name unless told otherwise.
    pub fn answer(&self, mut items: Vec<Value>) -> ApiResult<Value> {
        let total = items.len();
        let paged = self.page.is_some();
        // As in RabbitMQ, the name filter applies to pages only.
        if let Some(filter) = self.name.as_deref().filter(|f| paged && !f.is_empty()) {
            let regex = self.use_regex.as_deref() == Some("true");
            let matcher = if regex {
                Some(
                    regex::RegexBuilder::new(filter)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| ApiError::bad_request(format!("invalid regex: {e}")))?,
                )
            } else {
                None
            };
            let lower = filter.to_lowercase();
            items.retain(|item| {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                match &matcher {
                    Some(re) => re.is_match(name),
                    None => name.to_lowercase().contains(&lower),
                }
            });
        }
        let filtered = items.len();
        self.sort(&mut items);
        let page = self.page()?;
        if let Some((page, size)) = page {
            let page_count = filtered.div_ceil(size).max(1);
            if page > page_count && filtered > 0 {
                return Err(ApiError::bad_request("Page out of range"));
            }
            let start = ((page - 1) * size).min(filtered);
            let end = (start + size).min(filtered);
            let items: Vec<Value> = items.drain(start..end).map(|i| self.cut(i)).collect();
            return Ok(json!({
                "filtered_count": filtered,
                "item_count": items.len(),
                "items": items,
                "page": page,
                "page_count": if filtered == 0 { 0 } else { page_count },
                "page_size": size,
                "total_count": total,
            }));
        }
        Ok(Value::Array(
            items.into_iter().map(|i| self.cut(i)).collect(),
        ))
    }

    /// (page, page size) when paging was asked for.
    fn page(&self) -> ApiResult<Option<(usize, usize)>> {
        let Some(page) = &self.page else {
            return Ok(None);
        };
        let invalid = || {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_pagination_parameters",
                format!(
                    "Invalid pagination parameters: page number {page}, page size {}",
                    self.page_size.as_deref().unwrap_or("undefined")
                ),
            )
        };
        let number: usize = page.parse().map_err(|_| invalid())?;
        let size: usize = match &self.page_size {
            Some(s) => s.parse().map_err(|_| invalid())?,
            None => DEFAULT_PAGE_SIZE,
        };
        if number == 0 || size == 0 || size > MAX_PAGE_SIZE {
            return Err(invalid());
        }
        Ok(Some((number, size)))
    }

    fn sort(&self, items: &mut [Value]) {
        let reverse = self.sort_reverse.as_deref() == Some("true");
        match self.sort.as_deref().filter(|s| !s.is_empty()) {
            Some(field) => {
                let path: Vec<&str> = field.split('.').collect();
                items.sort_by(|a, b| compare(lookup(a, &path), lookup(b, &path)));
            }
            None => items.sort_by(|a, b| {
                compare(a.get("vhost"), b.get("vhost"))
                    .then_with(|| compare(a.get("name"), b.get("name")))
            }),
        }
        if reverse {
            items.reverse();
        }
    }

    /// Keep only the columns asked for (dotted names keep nested fields).
    fn cut(&self, item: Value) -> Value {
        let Some(columns) = self.columns.as_deref().filter(|c| !c.is_empty()) else {
            return item;
        };
        let mut out = Map::new();
        for column in columns.split(',') {
            let path: Vec<&str> = column.trim().split('.').collect();
            if let Some(value) = lookup(&item, &path) {
                insert_path(&mut out, &path, value.clone());
            }
        }
        Value::Object(out)
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn insert_path(out: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            out.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = out
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Numbers by value, strings by text, missing values first.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> ListQuery {
        let uri: axum::http::Uri = format!("http://localhost/?{q}").parse().unwrap();
        axum::extract::Query::<ListQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn pages_filter_sort_and_columns() {
        let items: Vec<Value> = (0..25)
            .map(|i| json!({"name": format!("q{i:02}"), "vhost": "/", "messages": 25 - i}))
            .collect();
        let page = query("page=2&page_size=10&columns=name&sort=messages")
            .answer(items.clone())
            .unwrap();
        assert_eq!(page["page_count"], 3);
        assert_eq!(page["item_count"], 10);
        assert_eq!(page["items"][0], json!({"name": "q14"}));
        let filtered = query("name=q1&page=1").answer(items.clone()).unwrap();
        assert_eq!(filtered["filtered_count"], 10);
        assert_eq!(filtered["total_count"], 25);
        let regex = query("page=1&name=^q0[12]$&use_regex=true")
            .answer(items.clone())
            .unwrap();
        assert_eq!(regex["item_count"], 2);
        assert!(query("page=0").answer(items).is_err());
    }
}
