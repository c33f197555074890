//! Group commit: threads share one SQLite connection, and each write becomes durable in a
//! commit shared with the writes other threads made meanwhile.
//!
//! SQLite has one writer at a time, so threads with a connection each take turns at the write
//! lock and pay a commit (WAL frames, checksums, a write call) per operation. With a shared
//! connection the first write opens a transaction (the group); later writes join it, each atomic on
//! its own (see `SqliteStore::begin_batch`); a writer returns only once a commit covering its write has finished.
//! The thread that finds no commit under way commits the whole group, so a group is as large as
//! the writes that arrived while the previous commit ran.
//!
//! Groups are numbered from 1 and end (commit or fail) in order: a group opens only when no
//! other is open, and only the open group is ever committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use oms_core::error::{OmsError, OmsResult};

use crate::codec::storage;

/// Failed groups remembered for their waiters; older failures are dropped (their waiters have
/// long since read them: a waiter reads its outcome before the next group can end).
const FAILURES_KEPT: usize = 64;

/// How long a committing thread waits at most for writers already on their way to join the
/// group: long enough for a queue of writes to run, short next to a commit's own cost.
const GATHER_AT_MOST: Duration = Duration::from_millis(2);

/// The group-commit state of one connection.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    enabled: AtomicBool,
    state: Mutex<GroupState>,
    ended: Condvar,
    /// Signalled when no writer is on its way any more.
    quiet: Condvar,
}

#[derive(Debug, Default)]
struct GroupState {
    /// The group whose transaction is open, 0 when none is.
    open: u64,
    /// Groups opened so far (the newest group's number).
    opened: u64,
    /// Every group up to this number has ended.
    ended: u64,
    /// A thread is committing the open group.
    committing: bool,
    /// Writers between [`GroupCommit::arrive`] and [`GroupCommit::depart`].
    on_the_way: usize,
    /// Writes that joined a group, and groups that ended, since group commit was enabled.
    writes: u64,
    groups: u64,
    /// Why a group's commit failed, for its waiters.
    failed: BTreeMap<u64, String>,
}

impl GroupCommit {
    /// Whether writes are grouped.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Group every later write.
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    fn state(&self) -> OmsResult<MutexGuard<'_, GroupState>> {
        self.state
            .lock()
            .map_err(|_| storage("sqlite group commit lock poisoned"))
    }

    /// Whether a group's transaction is open.
    pub(crate) fn is_open(&self) -> OmsResult<bool> {
        Ok(self.state()?.open != 0)
    }

    /// A writer is about to take the connection to write: the next commit waits for it.
    pub(crate) fn arrive(&self) -> OmsResult<()> {
        self.state()?.on_the_way += 1;
        Ok(())
    }

    /// The writer that arrived has written (or given up) and released the connection.
    pub(crate) fn depart(&self) -> OmsResult<()> {
        let mut st = self.state()?;
        st.on_the_way = st.on_the_way.saturating_sub(1);
        if st.on_the_way == 0 {
            self.quiet.notify_all();
        }
        Ok(())
    }

    /// The open group, opening one with `begin` when none is. Called with the connection lock
    /// held, so no commit can end the group before the caller's write joins it.
    pub(crate) fn join(&self, begin: impl FnOnce() -> OmsResult<()>) -> OmsResult<u64> {
        {
            let mut st = self.state()?;
            if st.open != 0 {
                st.writes += 1;
                return Ok(st.open);
            }
        }
        begin()?;
        let mut st = self.state()?;
        st.opened += 1;
        st.open = st.opened;
        st.writes += 1;
        Ok(st.open)
    }

    /// Writes that joined a group and groups that ended so far.
    pub(crate) fn counts(&self) -> OmsResult<(u64, u64)> {
        let st = self.state()?;
        Ok((st.writes, st.groups))
    }

    /// Record that the open group ended: committed, or failed with `reason`. Called with the
    /// connection lock held, by the committing thread.
    pub(crate) fn end_open(&self, failure: Option<&OmsError>) -> OmsResult<()> {
        let mut st = self.state()?;
        let group = st.open;
        if group == 0 {
            return Ok(());
        }
        if let Some(e) = failure {
            st.failed.insert(group, e.to_string());
            while st.failed.len() > FAILURES_KEPT {
                st.failed.pop_first();
            }
        }
        st.open = 0;
        st.ended = group;
        st.groups += 1;
        Ok(())
    }

    /// Wait until `group` has ended, committing it when no other thread is. `commit` commits
    /// the open group (taking the connection lock, then calling [`GroupCommit::end_open`]).
    /// `Ok` when the group committed; the commit's error when it failed.
    pub(crate) fn wait(&self, group: u64, commit: impl Fn() -> OmsResult<()>) -> OmsResult<()> {
        let mut st = self.state()?;
        loop {
            if st.ended >= group {
                return match st.failed.get(&group) {
                    None => Ok(()),
                    Some(reason) => Err(storage(format!(
                        "the shared commit of this write failed: {reason}"
                    ))),
                };
            }
            if st.committing {
                st = self
                    .ended
                    .wait(st)
                    .map_err(|_| storage("sqlite group commit lock poisoned"))?;
                continue;
            }
            st.committing = true;
            // Writers already on their way join the group before it commits (bounded, so a
            // steady stream of writers cannot hold a commit back).
            let deadline = Instant::now() + GATHER_AT_MOST;
            while st.on_the_way > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .quiet
                    .wait_timeout(st, left)
                    .map_err(|_| storage("sqlite group commit lock poisoned"))?
                    .0;
            }
            drop(st);
            let outcome = commit();
            st = self.state()?;
            st.committing = false;
            if let Err(e) = outcome {
                // The commit could not even record its end (a poisoned lock): fail every waiter
                // of the open group rather than leave them waiting.
                if st.open == group {
                    st.failed.insert(group, e.to_string());
                    st.open = 0;
                    st.ended = group;
                }
            }
            self.ended.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GroupCommit;
    use oms_core::error::OmsError;

    #[test]
    fn groups_open_once_and_end_in_order() {
        let g = GroupCommit::default();
        assert!(!g.enabled());
        g.enable();
        assert!(g.enabled());
        let mut begun = 0;
        let first = g
            .join(|| {
                begun += 1;
                Ok(())
            })
            .unwrap();
        let again = g
            .join(|| {
                begun += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!((first, again, begun), (1, 1, 1));
        assert!(g.is_open().unwrap());
        // The waiter commits its own group.
        g.wait(1, || g.end_open(None)).unwrap();
        assert!(!g.is_open().unwrap());
        // An ended group is not waited for again.
        g.wait(1, || panic!("nothing to commit")).unwrap();
        assert_eq!(g.join(|| Ok(())).unwrap(), 2);
    }

    #[test]
    fn a_failed_commit_is_every_waiters_error() {
        let g = GroupCommit::default();
        g.enable();
        let group = g.join(|| Ok(())).unwrap();
        let disk_full = OmsError::Storage {
            reason: "disk full".into(),
        };
        let err = g.wait(group, || g.end_open(Some(&disk_full))).unwrap_err();
        assert_eq!(err.code(), "storage");
        assert!(err.to_string().contains("disk full"), "{err}");
        // Another waiter of the same group reads the same failure.
        let again = g.wait(group, || panic!("already ended")).unwrap_err();
        assert!(again.to_string().contains("disk full"));
    }

    #[test]
    fn a_failed_begin_opens_no_group() {
        let g = GroupCommit::default();
        g.enable();
        let busy = g.join(|| {
            Err(OmsError::Storage {
                reason: "busy".into(),
            })
        });
        assert_eq!(busy.unwrap_err().code(), "storage");
        assert!(!g.is_open().unwrap());
        assert_eq!(g.join(|| Ok(())).unwrap(), 1);
    }

    #[test]
    fn a_commit_that_cannot_record_its_end_still_releases_the_waiters() {
        let g = GroupCommit::default();
        g.enable();
        let group = g.join(|| Ok(())).unwrap();
        let err = g
            .wait(group, || {
                Err(OmsError::Storage {
                    reason: "lock poisoned".into(),
                })
            })
            .unwrap_err();
        assert!(err.to_string().contains("lock poisoned"));
        assert!(!g.is_open().unwrap());
    }
}
