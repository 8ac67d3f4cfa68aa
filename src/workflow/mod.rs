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
