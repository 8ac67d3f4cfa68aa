//! Contact flows: the Amazon Connect flow language, run by Careline on every call.
//!
//! A flow file is read once at start ([`load`]), checked as a whole ([`validate`]: every
//! problem at once, each naming file, action Identifier and Type), compiled into a shared,
//! index-linked program ([`program`]) and run per call by a sans-IO interpreter
//! ([`interpreter`]): the call task feeds it [`interpreter::Event`]s with the time and
//! carries out the [`interpreter::Effect`]s it drains. Everything that touches the outside
//! world (speech synthesis, Lambda-over-HTTP, media streaming, queues) is a thin shell beside
//! the core: [`tts`], [`lambda`], [`streaming`], [`queues`].

pub mod attributes;
pub(crate) mod catalog;
pub mod collect;
pub(crate) mod condition;
pub mod criteria;
pub(crate) mod diagnostic;
pub mod engine;
pub(crate) mod hours;
pub mod http;
pub mod interpreter;
pub mod lambda;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod params;
pub(crate) mod program;
pub(crate) mod queues;
pub(crate) mod resources;
pub(crate) mod ssml;
pub(crate) mod streaming;
pub(crate) mod template;
pub mod tts;
pub(crate) mod validate;
pub mod voices;

pub use catalog::{Catalog, CatalogError};
pub use diagnostic::{Diagnostic, Severity};
pub use interpreter::{Audio, Effect, Event, FlowRun};
