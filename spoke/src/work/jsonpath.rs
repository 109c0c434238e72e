//! The part of kube JSONPath that status feedback uses: `.field`, `[index]` and
//! `[?(@.field=="value")]` filters, evaluated to the first match.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    Filter { field: String, value: String },
}

/// A path that is not understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {why}")]
pub struct PathError {
    path: String,
    why: &'static str,
}

fn parse(path: &str) -> Result<Vec<Step>, PathError> {
    let fail = |why| PathError {
        path: path.to_owned(),
        why,
    };
    let inner = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let mut rest = inner;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(fail("empty field name"));
            }
            steps.push(Step::Field(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("[?(@.") {
            let end = after
                .find(")]")
                .ok_or_else(|| fail("unterminated filter"))?;
            let (field, value) = after[..end]
                .split_once("==")
                .ok_or_else(|| fail("filters compare with =="))?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            steps.push(Step::Filter {
                field: field.trim().to_owned(),
                value: value.to_owned(),
            });
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| fail("unterminated index"))?;
            let index = after[..end]
                .trim()
                .parse()
                .map_err(|_| fail("index is not a number"))?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(fail("expected '.', '[' or a filter"));
        }
    }
    if steps.is_empty() {
        return Err(fail("empty path"));
    }
    Ok(steps)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value at `path` under `root`, if any.
pub fn evaluate<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, PathError> {
    let mut current = root;
    for step in parse(path)? {
        let next = match step {
            Step::Field(name) => current.get(&name),
            Step::Index(i) => current.get(i),
            Step::Filter { field, value } => current.as_array().and_then(|items| {
                items
                    .iter()
                    .find(|item| item.get(&field).map(text).as_deref() == Some(value.as_str()))
            }),
        };
        match next {
            Some(v) => current = v,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indexes_and_filters() {
        let status = json!({
            "readyReplicas": 2,
            "phase": "Running",
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]
        });
        assert_eq!(evaluate(&status, ".readyReplicas"), Ok(Some(&json!(2))));
        assert_eq!(evaluate(&status, "{.phase}"), Ok(Some(&json!("Running"))));
        assert_eq!(
            evaluate(&status, r#".conditions[?(@.type=="Ready")].status"#),
            Ok(Some(&json!("False")))
        );
        assert_eq!(
            evaluate(&status, ".conditions[0].type"),
            Ok(Some(&json!("Available")))
        );
        assert_eq!(evaluate(&status, ".missing.deeper"), Ok(None));
        assert_eq!(evaluate(&status, ".conditions[9]"), Ok(None));
    }

    #[test]
    fn bad_paths_are_errors() {
        for bad in ["", "readyReplicas", ".a[", ".a[x]", ".a[?(@.t=x", "..a"] {
            assert!(evaluate(&json!({}), bad).is_err(), "{bad}");
        }
    }
}
