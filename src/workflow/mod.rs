//! Care-coordination workflows: state machines in the Amazon States Language (ASL,
//! <https://states-language.net/spec.html>), as Step Functions runs them.
//!
//! Today this is the loader's first half: [`validate`] checks a definition as Step Functions
//! would before accepting it, and names the state and the rule broken for every problem
//! (`careline workflow validate`). The interpreter and durable execution build on the same
//! walk.

pub(crate) mod jsonata;
pub mod validate;

pub use validate::{Problem, Severity, validate};
