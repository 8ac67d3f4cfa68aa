//! Reading flow files: both export shapes, with JSON errors located by line and column.

use std::path::Path;

use serde_json::Value;

use super::diagnostic::Diagnostic;
use super::model::{Document, Wrapper};

/// A flow file read and unwrapped, not yet checked.
#[derive(Debug)]
pub struct Source {
    /// The path as given (used in every diagnostic).
    pub file: String,
    /// `Name` of the wrapper, else the file stem.
    pub name: String,
    /// `Type` of the wrapper (CONTACT_FLOW, CUSTOMER_QUEUE, ...), when present.
    pub flow_type: Option<String>,
    pub document: Document,
}

/// Reads one file. A file that cannot be read or parsed yields one error diagnostic.
pub(crate) fn read(path: &Path) -> Result<Source, Diagnostic> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::error(&file, format!("cannot read the file: {e}")))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    parse(&file, &stem, &text)
}

/// Parses a flow from text; `stem` names it when the text does not.
pub(crate) fn parse(file: &str, stem: &str, text: &str) -> Result<Source, Diagnostic> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(file, "", &e))?;
    let Value::Object(map) = &value else {
        return Err(Diagnostic::error(
            file,
            "the file is not a JSON object; a flow is `{\"Version\", \"StartAction\", \
             \"Actions\"}` or `{\"Name\", \"Type\", \"Content\"}`",
        ));
    };
    if map.contains_key("Content") && !map.contains_key("Actions") {
        let wrapper: Wrapper = serde_json::from_value(value.clone()).map_err(|e| {
            Diagnostic::error(file, format!("the DescribeContactFlow wrapper: {e}"))
        })?;
        let document: Document = match wrapper.content {
            Value::String(text) => {
                serde_json::from_str(&text).map_err(|e| json_error(file, "in `Content`: ", &e))?
            }
            content @ Value::Object(_) => serde_json::from_value(content).map_err(|e| {
                Diagnostic::error(file, format!("`Content` is not a flow document: {e}"))
            })?,
            _ => {
                return Err(Diagnostic::error(
                    file,
                    "`Content` is neither the flow document nor its JSON text",
                ));
            }
        };
        return Ok(Source {
            file: file.to_string(),
            name: wrapper.name.unwrap_or_else(|| stem.to_string()),
            flow_type: wrapper.flow_type,
            document,
        });
    }
    let document: Document = serde_json::from_value(value)
        .map_err(|e| Diagnostic::error(file, format!("not a flow document: {e}")))?;
    Ok(Source {
        file: file.to_string(),
        name: stem.to_string(),
        flow_type: None,
        document,
    })
}

fn json_error(file: &str, prefix: &str, e: &serde_json::Error) -> Diagnostic {
    // serde_json's message already ends in "at line L column C"; say it plainly.
    let msg = e.to_string();
    let reason = msg
        .rsplit_once(" at line ")
        .map(|(r, _)| r.to_string())
        .unwrap_or(msg);
    Diagnostic::error(
        file,
        format!(
            "{prefix}invalid JSON at line {} column {}: {reason}",
            e.line(),
            e.column()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &str = r#"{"Version":"2019-10-30","StartAction":"a","Actions":[
        {"Identifier":"a","Type":"DisconnectParticipant","Parameters":{},"Transitions":{}}]}"#;

    #[test]
    fn both_export_shapes_read_alike() {
        let bare = parse("x.json", "x", BARE).unwrap();
        assert_eq!(bare.name, "x");
        assert_eq!(bare.document.actions.as_ref().unwrap().len(), 1);
        let wrapped = serde_json::json!({"Name": "main", "Type": "CONTACT_FLOW", "Content": BARE});
        let w = parse("y.json", "y", &wrapped.to_string()).unwrap();
        assert_eq!(w.name, "main");
        assert_eq!(w.flow_type.as_deref(), Some("CONTACT_FLOW"));
        assert_eq!(w.document.start_action.as_deref(), Some("a"));
        // Content as the document itself, not its text.
        let object: Value = serde_json::from_str(BARE).unwrap();
        let o = serde_json::json!({"Name": "obj", "Type": "CONTACT_FLOW", "Content": object});
        let o = parse("z.json", "z", &o.to_string()).unwrap();
        assert_eq!(o.name, "obj");
        assert_eq!(o.document.actions.as_ref().unwrap().len(), 1);
        let neither = serde_json::json!({"Name": "n", "Content": 7});
        let err = parse("n.json", "n", &neither.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Content` is neither"), "{err}");
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let err = parse(
            "f.json",
            "f",
            "{\n  \"Version\": \"2019-10-30\",\n  \"Actions\": [,]\n}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("f.json: invalid JSON at line 3 column 15"),
            "{err}"
        );
        let wrapped = serde_json::json!({"Name": "n", "Content": "{\"Version\": }"});
        let err = parse("w.json", "w", &wrapped.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in `Content`: invalid JSON at line 1 column 13"),
            "{err}"
        );
    }
}
