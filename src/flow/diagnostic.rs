//! What validation says about a flow: one line per problem, naming the file, the action
//! Identifier and Type, and the reason, so an operator can fix every problem in one pass.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The flow still loads (unreachable actions, references resolved only at run time).
    Warning,
    /// The flow does not load.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// The action's Identifier, when the problem belongs to one action.
    pub action: Option<String>,
    /// The action's Type, when known.
    pub action_type: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            action: None,
            action_type: None,
            message: message.into(),
        }
    }

    pub fn warning(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, message)
        }
    }

    /// Attaches the action this diagnostic is about.
    pub fn at(mut self, id: &str, action_type: &str) -> Diagnostic {
        self.action = Some(id.to_string());
        if !action_type.is_empty() {
            self.action_type = Some(action_type.to_string());
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        match (&self.action, &self.action_type) {
            (Some(id), Some(t)) => write!(f, "action `{id}` ({t}): ")?,
            (Some(id), None) => write!(f, "action `{id}`: ")?,
            _ => {}
        }
        write!(f, "{}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_file_action_type_and_reason() {
        let d = Diagnostic::error(
            "flows/triage.json",
            "condition operator `Resembles` is not one of Equals",
        )
        .at("menu-1", "GetParticipantInput");
        assert_eq!(
            d.to_string(),
            "flows/triage.json: action `menu-1` (GetParticipantInput): condition operator \
             `Resembles` is not one of Equals"
        );
        let w = Diagnostic::warning("f.json", "unreachable").at("x", "");
        assert_eq!(w.to_string(), "f.json: warning: action `x`: unreachable");
    }
}
