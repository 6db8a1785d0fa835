//! `${VAR}` and `${VAR:-default}` in a configuration file.
//!
//! A value arrives as plain text, never as structure: the file is scanned as TOML is lexed,
//! and each reference is replaced according to where it stands. Inside a `"..."` (or
//! `"""..."""`) string the value is escaped, so quotes, backslashes and line breaks in it
//! stay part of the string; inside a `'...'` string, where TOML has no escapes, a value that
//! would end the string is refused; outside strings only a bare scalar (a number, a boolean,
//! a date) may be substituted. A `${` inside a value is not expanded again. `$${` writes a
//! literal `${`. References in comments are left alone, so a comment may mention a variable
//! that is not set.

use super::Located;

/// Where in the TOML text the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside strings and comments.
    Bare,
    /// After `#`, to the end of the line.
    Comment,
    /// `"..."`.
    Basic,
    /// `"""..."""`.
    MultiBasic,
    /// `'...'`.
    Literal,
    /// `'''...'''`.
    MultiLiteral,
}

/// Replaces every `${VAR}` and `${VAR:-default}` in `text` using `lookup`. Returns every
/// undefined variable, malformed reference and value that cannot stand where it is, each
/// with its byte offset in `text`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<Located>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut context = Context::Bare;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        // References first: they stand in every context but comments.
        if context != Context::Comment {
            if rest.starts_with("$${") {
                out.push_str("${");
                i += 3;
                continue;
            }
            if let Some(body) = rest.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    problems.push(Located::at(i, "unterminated `${`: expected `}`"));
                    out.push_str(rest);
                    break;
                };
                let reference = &body[..end];
                match resolve(reference, &lookup) {
                    Ok(value) => match place(&value, context) {
                        Ok(placed) => out.push_str(&placed),
                        Err(why) => problems.push(Located::at(
                            i,
                            format!("the value of `${{{reference}}}` {why}"),
                        )),
                    },
                    Err(problem) => problems.push(Located::at(i, problem)),
                }
                i += 2 + end + 1;
                continue;
            }
        }
        let (step, next) = advance(rest, context);
        out.push_str(&rest[..step]);
        context = next;
        i += step;
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The value of `NAME` or `NAME:-default`.
fn resolve(reference: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!(
            "invalid variable name {name:?} in `${{{reference}}}`"
        ));
    }
    match (lookup(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a \
             default)"
        )),
    }
}

/// `value` as it must be written where `context` is, or why it cannot be.
fn place(value: &str, context: Context) -> Result<String, String> {
    match context {
        Context::Basic | Context::MultiBasic => Ok(escape_basic(value)),
        Context::Literal if value.contains(['\'', '\n', '\r']) => Err(
            "holds a quote or a line break, which cannot be written in a '...' string: use a \
             \"...\" string"
                .to_owned(),
        ),
        Context::MultiLiteral if value.contains("'''") => Err(
            "holds `'''`, which cannot be written in a '''...''' string: use a \"...\" string"
                .to_owned(),
        ),
        Context::Literal | Context::MultiLiteral => Ok(value.to_owned()),
        Context::Bare
            if !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:+-".contains(c)) =>
        {
            Ok(value.to_owned())
        }
        Context::Bare => Err(
            "is not a plain number, boolean or date, so it can only stand inside a string: \
             write \"${…}\""
                .to_owned(),
        ),
        Context::Comment => Ok(String::new()),
    }
}

/// `value` escaped for a TOML basic string.
fn escape_basic(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// How many bytes of `rest` the scanner copies as they are, and the context after them.
fn advance(rest: &str, context: Context) -> (usize, Context) {
    let one = rest.chars().next().map_or(1, char::len_utf8);
    match context {
        Context::Bare => {
            if rest.starts_with("\"\"\"") {
                (3, Context::MultiBasic)
            } else if rest.starts_with("'''") {
                (3, Context::MultiLiteral)
            } else if rest.starts_with('"') {
                (1, Context::Basic)
            } else if rest.starts_with('\'') {
                (1, Context::Literal)
            } else if rest.starts_with('#') {
                (1, Context::Comment)
            } else {
                (one, Context::Bare)
            }
        }
        Context::Comment if rest.starts_with('\n') => (1, Context::Bare),
        Context::Comment => (one, Context::Comment),
        Context::Basic | Context::MultiBasic if rest.starts_with('\\') => {
            // An escape and the character it escapes.
            let escaped = rest[1..].chars().next().map_or(0, char::len_utf8);
            (1 + escaped, context)
        }
        Context::Basic if rest.starts_with('"') || rest.starts_with('\n') => (1, Context::Bare),
        Context::MultiBasic if rest.starts_with("\"\"\"") => (3, Context::Bare),
        Context::Literal if rest.starts_with('\'') || rest.starts_with('\n') => (1, Context::Bare),
        Context::MultiLiteral if rest.starts_with("'''") => (3, Context::Bare),
        _ => (one, context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka-1:9092".into()),
            "EMPTY" => Some(String::new()),
            "QUOTE" => Some("pa\"ss\\word".into()),
            "EVIL" => Some("x\"\n[inputs.evil]\nzmq = { socket = \"pull\" }\n#".into()),
            "NESTED" => Some("${HOST}".into()),
            "PORT" => Some("9092".into()),
            "APOS" => Some("it's".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let text = "a = \"${HOST}\"\nb = \"${MISSING:-9464}\"\nc = \"$${HOST} $5 ${EMPTY}x\"\n\
                    # ${NOT_SET}\nd = 1 # ${NOT_SET} either\ne = ${PORT}\n";
        assert_eq!(
            interpolate(text, env).expect("valid"),
            "a = \"kafka-1:9092\"\nb = \"9464\"\nc = \"${HOST} $5 x\"\n# ${NOT_SET}\n\
             d = 1 # ${NOT_SET} either\ne = 9092\n"
        );
    }

    #[test]
    fn values_arrive_as_text_and_never_as_structure() {
        let text = "password = \"${QUOTE}\"\nname = \"${EVIL}\"\nnested = \"${NESTED}\"\n";
        let out = interpolate(text, env).expect("valid");
        let parsed: toml::Table = toml::from_str(&out).expect("still one table of three strings");
        assert_eq!(parsed.len(), 3, "{out}");
        assert_eq!(parsed["password"].as_str(), Some("pa\"ss\\word"));
        assert_eq!(
            parsed["name"].as_str(),
            Some("x\"\n[inputs.evil]\nzmq = { socket = \"pull\" }\n#")
        );
        assert_eq!(parsed["nested"].as_str(), Some("${HOST}"));
        let multi = interpolate("m = \"\"\"\n${EVIL}\"\"\"\n", env).expect("valid");
        let parsed: toml::Table = toml::from_str(&multi).expect("one string");
        assert_eq!(parsed.len(), 1, "{multi}");
    }

    #[test]
    fn values_that_cannot_stand_where_they_are_are_refused() {
        for text in ["a = '${APOS}'\n", "a = ${EVIL}\n", "a = ${EMPTY}\n"] {
            let problems = interpolate(text, env).expect_err(text);
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert_eq!(problems[0].offset, text.find("${"), "{text}");
            assert!(
                problems[0].message.starts_with("the value of `${"),
                "{problems:?}"
            );
        }
        assert_eq!(
            interpolate("a = '${HOST}'\n", env).expect("valid"),
            "a = 'kafka-1:9092'\n"
        );
    }

    #[test]
    fn reports_every_problem_with_its_offset() {
        let text = "a = \"${MISSING}\"\nb = \"${1BAD}\"\nc = \"${OPEN";
        let problems = interpolate(text, env).expect_err("problems");
        let found: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.offset.unwrap_or(0), p.message.as_str()))
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, 5);
        assert!(found[0].1.contains("`MISSING` is not set"));
        assert_eq!(found[1].0, text.find("${1BAD}").unwrap_or(0));
        assert!(found[1].1.contains("invalid variable name"));
        assert!(found[2].1.contains("unterminated"));
    }
}
