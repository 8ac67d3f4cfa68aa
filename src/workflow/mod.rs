//! Care-coordination workflows: state machines in the Amazon States Language (ASL,
//! <https://states-language.net/spec.html>), as Step Functions runs them.
//!
//! [`validate`] checks a definition as Step Functions would before accepting it, naming the
//! state and the rule broken for every problem (`careline workflow validate`).
//! [`Execution`] runs one, sans-IO: task results and the time in, task invocations and its
//! next deadline out. [`store`] keeps executions in the database, one transaction per
//! transition, and [`runner`] is the server's shell that starts them, invokes their tasks
//! and fires their timers.

pub mod appointments;
pub mod call_patient;
pub mod care_tasks;
pub mod discharge;
pub mod execution;
pub(crate) mod intrinsic;
pub(crate) mod jsonata;
pub mod medication;
pub(crate) mod path;
pub mod risk;
pub mod runner;
pub mod store;
pub mod validate;

pub use execution::{
    Action, Definition, Event, Execution, HistoryEvent, Outcome, Snapshot, TaskId, function_name,
};
pub use validate::{Problem, Severity, validate};

/// A built-in task's answer: its input (an object; anything else counts as empty) with
/// `fields` added. The brief's workflow passes a task's whole result on to the next state,
/// so the built-ins keep what they were given.
pub(crate) fn input_with<'a>(
    input: &serde_json::Value,
    fields: impl IntoIterator<Item = (&'a str, serde_json::Value)>,
) -> serde_json::Value {
    let mut out = match input {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in fields {
        out.insert(k.to_string(), v);
    }
    serde_json::Value::Object(out)
}
