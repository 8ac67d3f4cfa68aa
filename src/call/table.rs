//! The live calls, by Call-ID. Lookup only (DESIGN.md): a call's state lives in its task;
//! the table holds the handle to talk to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::CallCommand;

pub struct CallHandle {
    pub commands: mpsc::UnboundedSender<CallCommand>,
    pub started: Instant,
}

#[derive(Default)]
pub struct CallTable {
    calls: DashMap<String, CallHandle>,
    admitted: AtomicUsize,
}

/// One admitted call: holds its place under the cap until dropped.
pub struct Admission<'a> {
    table: &'a CallTable,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.table.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CallTable {
    /// Takes a place if fewer than `max` calls are admitted (atomic: two INVITEs racing for
    /// the last place cannot both win).
    pub fn try_admit(&self, max: usize) -> Option<Admission<'_>> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admission { table: self })
    }

    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    pub fn insert(&self, call_id: String, handle: CallHandle) {
        self.calls.insert(call_id, handle);
    }

    pub fn remove(&self, call_id: &str) {
        self.calls.remove(call_id);
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Sends the command `cmd` makes to every live call.
    pub fn broadcast(&self, cmd: impl Fn() -> CallCommand) {
        for entry in self.calls.iter() {
            let _ = entry.commands.send(cmd());
        }
    }

    /// Whether a call is live (answered and not yet ended).
    pub fn contains(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    pub fn send(&self, call_id: &str, cmd: CallCommand) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|h| h.commands.send(cmd).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_is_capped_and_released_on_drop() {
        let t = CallTable::default();
        let a = t.try_admit(2).unwrap();
        let b = t.try_admit(2).unwrap();
        assert!(t.try_admit(2).is_none());
        drop(a);
        assert_eq!(t.admitted(), 1);
        assert!(t.try_admit(2).is_some());
        drop(b);
    }
}
