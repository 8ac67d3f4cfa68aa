//! ASL Reference Paths (`$.a.b[0]`, `$['a b']`, `$$.Execution.Id`): reading a value at a
//! path and writing one there (ResultPath). Only what a Reference Path may hold (names and
//! indices; no filters, wildcards or slices), which is what ResultPath must be and what the
//! paths of real workflows are; a path beyond that is an error that names it.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path: which document it reads (`$` the state's, `$$` the context object) and the
/// steps into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefPath {
    pub context: bool,
    pub steps: Vec<Step>,
}

pub(crate) fn parse(path: &str) -> Result<RefPath, String> {
    let (context, rest) = if let Some(r) = path.strip_prefix("$$") {
        (true, r)
    } else if let Some(r) = path.strip_prefix('$') {
        (false, r)
    } else {
        return Err(format!("`{path}` does not start with `$`"));
    };
    let chars: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                if name.is_empty() || name == "*" || name.starts_with('.') {
                    return Err(format!(
                        "`{path}`: only names and indices are supported here"
                    ));
                }
                steps.push(Step::Key(name));
                i = j;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| format!("`{path}`: `[` is never closed"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Key(q.to_string()));
                } else if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else {
                    return Err(format!(
                        "`{path}`: `[{inner}]` is not a name or an index (filters, wildcards \
                         and slices are not supported)"
                    ));
                }
                i = close + 1;
            }
            c => return Err(format!("`{path}`: unexpected `{c}`")),
        }
    }
    Ok(RefPath { context, steps })
}

/// The value at `path` in `doc` (or the context object), if there is one.
pub(crate) fn get<'a>(
    path: &str,
    doc: &'a Value,
    context: &'a Value,
) -> Result<Option<&'a Value>, String> {
    let p = parse(path)?;
    let mut at = if p.context { context } else { doc };
    for step in &p.steps {
        let next = match (step, at) {
            (Step::Key(k), Value::Object(m)) => m.get(k),
            (Step::Index(n), Value::Array(a)) => a.get(*n),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// `doc` with `value` placed at `path` (ResultPath): objects are made on the way, `$` replaces
/// the whole document.
pub(crate) fn set(path: &str, doc: Value, value: Value) -> Result<Value, String> {
    let p = parse(path)?;
    if p.context {
        return Err(format!(
            "`{path}`: a result cannot be written into the context object"
        ));
    }
    fn put(at: Value, steps: &[Step], value: Value, path: &str) -> Result<Value, String> {
        let Some((first, rest)) = steps.split_first() else {
            return Ok(value);
        };
        match first {
            Step::Key(k) => {
                let mut m = match at {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let inner = m.remove(k).unwrap_or(Value::Null);
                m.insert(k.clone(), put(inner, rest, value, path)?);
                Ok(Value::Object(m))
            }
            Step::Index(n) => match at {
                Value::Array(mut a) if *n < a.len() => {
                    let inner = std::mem::take(&mut a[*n]);
                    a[*n] = put(inner, rest, value, path)?;
                    Ok(Value::Array(a))
                }
                _ => Err(format!("`{path}`: index {n} is not in the document")),
            },
        }
    }
    put(doc, &p.steps, value, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_names_indices_and_the_context() {
        let doc = json!({"a": {"b": [10, {"c d": 3}]}, "x": null});
        let ctx = json!({"Execution": {"Id": "e-1"}});
        assert_eq!(get("$", &doc, &ctx).unwrap(), Some(&doc));
        assert_eq!(get("$.a.b[0]", &doc, &ctx).unwrap(), Some(&json!(10)));
        assert_eq!(get("$.a.b[1]['c d']", &doc, &ctx).unwrap(), Some(&json!(3)));
        assert_eq!(get("$.x", &doc, &ctx).unwrap(), Some(&Value::Null));
        assert_eq!(get("$.missing.deeper", &doc, &ctx).unwrap(), None);
        assert_eq!(
            get("$$.Execution.Id", &doc, &ctx).unwrap(),
            Some(&json!("e-1"))
        );
        assert!(get("$..a", &doc, &ctx).is_err());
        assert!(get("$.a[?(@.b)]", &doc, &ctx).is_err());
        assert!(get("a.b", &doc, &ctx).is_err());
    }

    #[test]
    fn result_paths_write_into_the_document() {
        let doc = json!({"keep": 1, "list": [0, 1]});
        assert_eq!(set("$", doc.clone(), json!(5)).unwrap(), json!(5));
        assert_eq!(
            set("$.r.s", doc.clone(), json!("x")).unwrap(),
            json!({"keep": 1, "list": [0, 1], "r": {"s": "x"}})
        );
        assert_eq!(
            set("$.list[1]", doc.clone(), json!(9)).unwrap(),
            json!({"keep": 1, "list": [0, 9]})
        );
        assert!(set("$.list[5]", doc.clone(), json!(9)).is_err());
        assert!(set("$$.Execution", doc, json!(9)).is_err());
    }
}
