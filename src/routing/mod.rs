//! Routing: who answers a waiting contact. Queues, agents and their states, routing profiles
//! and the policy that offers each contact to an agent (automatic contact distribution).
//!
//! [`acd`] is the sans-IO core: it is fed agents' state changes, contacts entering and leaving
//! queues, agents' answers to offers and the time, and it answers with offers to make and
//! withdraw and the agents' new states, plus its next deadline. The server's shell owns the
//! timers and the connections to agents' browsers and phones.

pub mod acd;
#[cfg(test)]
mod acd_tests;
pub mod callbacks;
pub mod desk;
