//! One undo log for everything a run changes — overlay merges and disk-image setup
//! alike: each step that changes the system first asks [`Txn::step`] (where a test may
//! inject a fault), then registers how to undo itself. On error the undos run newest
//! first, so the mount table, loop and dm devices afterwards equal those before; on
//! success [`Txn::commit`] forgets them and runs what a step asked to be done only then
//! (a dm device's deferred removal, a loop device's fd given up). Several classes merged
//! by one call share one transaction, so the call is all or nothing.

use std::fmt::Display;

use crate::fault::Injector;

type Undo = Box<dyn FnOnce() -> Result<(), String>>;
type OnCommit = Box<dyn FnOnce()>;

/// Steps done so far and how to undo them.
pub struct Txn {
    undo: Vec<(String, Undo)>,
    on_commit: Vec<OnCommit>,
    faults: Injector,
}

/// A step a test asked to fail ([`crate::fault`]): its number and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected(pub usize, pub String);

impl Txn {
    /// An empty transaction whose steps are counted by `faults`.
    pub fn new(faults: Injector) -> Txn {
        Txn {
            undo: Vec::new(),
            on_commit: Vec::new(),
            faults,
        }
    }

    /// Called before each step that changes the system; fails where a test asked.
    pub fn step(&mut self, what: &str) -> Result<(), Injected> {
        self.faults
            .step()
            .map_err(|n| Injected(n, what.to_string()))
    }

    /// Registers how to undo the step just done.
    pub fn on_undo<E: Display>(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<(), E> + 'static,
    ) {
        self.undo.push((
            what.into(),
            Box::new(move || f().map_err(|e| e.to_string())),
        ));
    }

    /// Registers what to do when the transaction is committed (never on rollback).
    pub fn on_commit(&mut self, f: impl FnOnce() + 'static) {
        self.on_commit.push(Box::new(f));
    }

    /// Undoes every step, newest first; an undo that fails is logged and the rest go on.
    pub fn rollback(&mut self) {
        self.on_commit.clear();
        while let Some((what, f)) = self.undo.pop() {
            if let Err(e) = f() {
                crate::log::warn(&format!("rollback of {what} failed: {e}"));
            }
        }
    }

    /// Keeps what was done: the undos are dropped without running, the commit actions
    /// run in the order they were registered.
    pub fn commit(&mut self) {
        self.undo.clear();
        for f in self.on_commit.drain(..) {
            f();
        }
    }
}

impl Drop for Txn {
    /// A transaction neither committed nor rolled back (an early return, a panic) is
    /// rolled back.
    fn drop(&mut self) {
        self.rollback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn logger(log: &Rc<RefCell<Vec<u32>>>, n: u32) -> impl FnOnce() -> Result<(), String> {
        let log = log.clone();
        move || {
            log.borrow_mut().push(n);
            Ok(())
        }
    }

    #[test]
    fn rollback_runs_undos_newest_first_and_commit_runs_none() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut t = Txn::new(Injector::default());
        for n in 1..=3 {
            t.on_undo(format!("step {n}"), logger(&log, n));
        }
        t.rollback();
        assert_eq!(*log.borrow(), [3, 2, 1]);
        let mut t = Txn::new(Injector::default());
        t.on_undo("x", logger(&log, 9));
        let l = log.clone();
        t.on_commit(move || l.borrow_mut().push(5));
        let l = log.clone();
        t.on_commit(move || l.borrow_mut().push(6));
        t.commit();
        drop(t);
        assert_eq!(*log.borrow(), [3, 2, 1, 5, 6]);
        // Rolled back: no commit action runs.
        let mut t = Txn::new(Injector::default());
        let l = log.clone();
        t.on_commit(move || l.borrow_mut().push(8));
        t.rollback();
        assert_eq!(*log.borrow(), [3, 2, 1, 5, 6]);
        // Dropped without either: rolled back.
        let t2 = {
            let mut t = Txn::new(Injector::default());
            t.on_undo("y", logger(&log, 7));
            t
        };
        drop(t2);
        assert_eq!(*log.borrow(), [3, 2, 1, 5, 6, 7]);
    }

    #[test]
    fn the_chosen_step_fails() {
        let mut t = Txn::new(Injector::failing_at(2));
        assert!(t.step("a").is_ok());
        assert_eq!(t.step("b"), Err(Injected(2, "b".into())));
    }
}
