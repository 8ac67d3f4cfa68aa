//! Telehealth rooms: a clinician meets a patient (and an interpreter, family, a colleague)
//! by browser or phone, everyone hearing everyone else.
//!
//! [`room`] is the sans-IO core of one room (who is in, who waits, who hosts, when it ends).
//! The audio is the media engine's conference ([`crate::media::conference`]) on the media
//! clock: no thread or timer per room.

pub mod link;
pub mod room;
pub mod service;
pub mod store;
