//! `${VAR}` and `${VAR:-default}` in a configuration file, replaced before it is parsed.
//!
//! Substitution works on the raw text, as Vector's does, so a variable may stand anywhere a
//! value can. `$${` writes a literal `${`. Whole-line comments are left alone, so a comment
//! may mention a variable that is not set.

use super::Located;

/// Replaces every `${VAR}` and `${VAR:-default}` in `text` using `lookup`. Returns every
/// undefined variable and malformed reference, each with its byte offset in `text`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<Located>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            line_start += line.len();
            continue;
        }
        let mut rest = line;
        let mut at = line_start;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                at += i + 3;
                continue;
            }
            let Some(body) = tail.strip_prefix("${") else {
                out.push('$');
                rest = &tail[1..];
                at += i + 1;
                continue;
            };
            let Some(end) = body.find('}') else {
                problems.push(Located::at(at + i, "unterminated `${`: expected `}`"));
                out.push_str(tail);
                rest = "";
                break;
            };
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                problems.push(Located::at(
                    at + i,
                    format!("invalid variable name {name:?} in `${{{reference}}}`"),
                ));
            } else {
                match (lookup(name), default) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => problems.push(Located::at(
                        at + i,
                        format!(
                            "environment variable `{name}` is not set (write `${{{name}:-default}}` \
                             to give a default)"
                        ),
                    )),
                }
            }
            let consumed = i + 2 + end + 1;
            rest = &rest[consumed..];
            at += consumed;
        }
        out.push_str(rest);
        line_start += line.len();
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka-1:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let text =
            "a = \"${HOST}\"\nb = \"${PORT:-9464}\"\nc = \"$${HOST} $5 ${EMPTY}x\"\n# ${NOT_SET}\n";
        assert_eq!(
            interpolate(text, env).expect("valid"),
            "a = \"kafka-1:9092\"\nb = \"9464\"\nc = \"${HOST} $5 x\"\n# ${NOT_SET}\n"
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
