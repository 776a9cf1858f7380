//! Permission patterns: the regular expressions of permissions and topic
//! permissions, matched as RabbitMQ matches them.
//!
//! RabbitMQ runs Erlang's `re` (PCRE) unanchored on the resource name or
//! routing key, and reads an empty pattern as `^$`. Warren compiles the same
//! text with the `regex` crate. The one syntax difference that real
//! permissions meet is the brace: PCRE reads `{` as a quantifier only in
//! `{n}`, `{n,}` and `{n,m}` and as a literal otherwise (topic permissions
//! hold `{username}`), where `regex` refuses it; such braces are escaped
//! before compiling. Lookaround and backreferences, which `regex` does not
//! have, are refused when the permission is set.

use regex::bytes::Regex;

/// A compiled permission pattern with its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compile `source`; the error says why it is not a pattern.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let effective = if source.is_empty() { "^$" } else { source };
        let regex = Regex::new(&escape_literal_braces(effective)).map_err(|e| e.to_string())?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `subject`.
    pub fn is_match(&self, subject: &[u8]) -> bool {
        self.regex.is_match(subject)
    }
}

/// Replace `{name}` by its value for each variable, as RabbitMQ expands
/// topic permissions: values go in as they are, unescaped, and a variable
/// without a value stays as written.
pub fn expand_variables(source: &str, variables: &[(&str, &str)]) -> String {
    let mut text = source.to_string();
    for (name, value) in variables {
        let placeholder = format!("{{{name}}}");
        if text.contains(&placeholder) {
            text = text.replace(&placeholder, value);
        }
    }
    text
}

/// Escape the braces PCRE reads as literals (every `{` that does not open
/// `{n}`, `{n,}` or `{n,m}`, and every `}` that does not close one),
/// outside character classes and escapes.
fn escape_literal_braces(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                // Copy the escape and the escaped character as they are.
                let end = pattern[i + 1..]
                    .chars()
                    .next()
                    .map_or(i + 1, |ch| i + 1 + ch.len_utf8());
                out.push_str(&pattern[i..end]);
                i = end;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                // A `]` first in a class (after an optional `^`) is literal.
                if bytes.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            b']' if in_class => in_class = false,
            b'{' if !in_class => {
                let len = match quantifier_len(&bytes[i..]) {
                    Some(len) => {
                        out.push_str(&pattern[i..i + len]);
                        len
                    }
                    None => {
                        out.push_str("\\{");
                        1
                    }
                };
                i += len;
                continue;
            }
            b'}' if !in_class => {
                out.push_str("\\}");
                i += 1;
                continue;
            }
            _ => {}
        }
        let end = pattern[i..]
            .chars()
            .next()
            .map_or(i + 1, |ch| i + ch.len_utf8());
        out.push_str(&pattern[i..end]);
        i = end;
    }
    out
}

/// The length of a PCRE quantifier `{n}`, `{n,}` or `{n,m}` at the start
/// of `text`, if there is one.
fn quantifier_len(text: &[u8]) -> Option<usize> {
    let digits = |from: usize| {
        text[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let first = digits(1);
    if first == 0 {
        return None;
    }
    let mut i = 1 + first;
    if text.get(i) == Some(&b',') {
        i += 1;
        i += digits(i);
    }
    (text.get(i) == Some(&b'}')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, subject: &str) -> bool {
        Pattern::new(pattern).unwrap().is_match(subject.as_bytes())
    }

    #[test]
    fn unanchored_as_in_rabbitmq() {
        assert!(matches(".*", "anything"));
        assert!(matches(".*", ""));
        assert!(matches("app", "my-app-queue"));
        assert!(!matches("^app", "my-app-queue"));
        assert!(matches("^app-.*", "app-1"));
        assert!(matches("^(amq\\.gen.*|app)$", "amq.gen-abc"));
        assert!(!matches("^(amq\\.gen.*|app)$", "apps"));
    }

    #[test]
    fn empty_pattern_matches_only_the_empty_name() {
        assert!(matches("", ""));
        assert!(!matches("", "q"));
        assert_eq!(Pattern::new("").unwrap().as_str(), "");
    }

    #[test]
    fn invalid_patterns_are_refused() {
        assert!(Pattern::new("(").is_err());
        assert!(Pattern::new("[a-").is_err());
        assert!(Pattern::new("a(?=b)").is_err());
    }

    #[test]
    fn braces_are_literal_unless_quantifiers() {
        assert!(matches("^a{2}$", "aa"));
        assert!(matches("^a{1,}$", "aaa"));
        assert!(matches("^a{1,2}$", "aa"));
        assert!(!matches("^a{1,2}$", "aaa"));
        assert!(matches("^r\\.{client_id}.*", "r.{client_id}x"));
        assert!(!matches("^r\\.{client_id}.*", "r.abc"));
        assert!(matches("^{x$", "{x"));
        assert!(matches("^x}$", "x}"));
        assert!(matches("^[{}]+$", "{}"));
        assert!(matches("^[]{]+$", "]{"));
        assert!(matches("^\\{a\\}$", "{a}"));
        assert!(matches("^é{2}$", "éé"));
    }

    #[test]
    fn topic_variables_expand_raw() {
        let vars = [("username", "alice"), ("vhost", "prod")];
        let expanded = expand_variables("^{username}\\.{vhost}\\..*|{client_id}", &vars);
        assert_eq!(expanded, "^alice\\.prod\\..*|{client_id}");
        assert!(matches(&expanded, "alice.prod.x"));
        assert!(!matches(&expanded, "bob.prod.x"));
        // Values are not escaped: a dot in a name matches any character.
        let dotted = expand_variables("^{username}$", &[("username", "a.b")]);
        assert!(matches(&dotted, "axb"));
    }
}
