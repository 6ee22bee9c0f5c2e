//! Fault injection for tests: an environment variable names the N-th step of a run
//! that fails (or another the step that pauses, so a test can kill the process there).
//! The variables are read only by builds with the `fault-injection` cargo feature (the
//! test suite turns it on); a release build has the counting but never a fault.
//!
//! Every step that changes the system calls [`Injector::step`] first, so a test can
//! sweep N = 1, 2, … and check after each failure that everything done before it was
//! undone. The merge executor and the image opener count their steps separately; the
//! merge steps of one process are counted on across its transactions (an export's
//! private merge, its attach, the main process's put), so a sweep reaches each of them.

/// Environment variable: the N-th step of the merge executor fails with `EIO`.
pub const MERGE_FAIL_ENV: &str = "EXTMERGE_FAIL_AT_STEP";
/// Environment variable: the N-th step of the merge executor sleeps 30 s (to be
/// killed), or S seconds with `N:S`.
pub const MERGE_PAUSE_ENV: &str = "EXTMERGE_PAUSE_AT_STEP";
/// Environment variable: the N-th step of image setup (loop device, dm device, keyring,
/// mount, staging directory, attach) fails.
pub const IMAGE_FAIL_ENV: &str = "EXTMERGE_FAIL_AT_IMAGE_STEP";
/// Environment variable: the Varlink service's I/O timeout in milliseconds, instead of
/// 45 s, so a test sees a silent peer cut off without waiting that long.
pub const VARLINK_TIMEOUT_ENV: &str = "EXTMERGE_VARLINK_TIMEOUT_MS";

/// Which steps a test asked to fail or pause, as read from the environment by a
/// front-end (as part of `options::Environment`). Only builds with the `fault-injection`
/// cargo feature read the variables; release builds always get "none".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSettings {
    /// [`MERGE_FAIL_ENV`].
    pub merge_fail_at: Option<usize>,
    /// [`MERGE_PAUSE_ENV`]: the step and the seconds.
    pub merge_pause_at: Option<(usize, u64)>,
    /// [`IMAGE_FAIL_ENV`].
    pub image_fail_at: Option<usize>,
    /// [`VARLINK_TIMEOUT_ENV`].
    pub varlink_timeout_ms: Option<u64>,
}

impl FaultSettings {
    /// The settings of this process: the variables with the `fault-injection` feature,
    /// nothing without it.
    pub fn from_process() -> FaultSettings {
        #[cfg(feature = "fault-injection")]
        {
            let n = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok());
            FaultSettings {
                merge_fail_at: n(MERGE_FAIL_ENV),
                merge_pause_at: std::env::var(MERGE_PAUSE_ENV).ok().and_then(|v| {
                    let (n, s) = v.split_once(':').unwrap_or((&v, "30"));
                    Some((n.parse().ok()?, s.parse().ok()?))
                }),
                image_fail_at: n(IMAGE_FAIL_ENV),
                varlink_timeout_ms: std::env::var(VARLINK_TIMEOUT_ENV)
                    .ok()
                    .and_then(|v| v.parse().ok()),
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        FaultSettings::default()
    }

    /// The merge executor's injector. One asked to fail or pause counts on the
    /// process's count of merge steps.
    pub fn merge(&self) -> Injector {
        let asked = self.merge_fail_at.is_some() || self.merge_pause_at.is_some();
        Injector {
            steps: 0,
            fail_at: self.merge_fail_at,
            pause_at: self.merge_pause_at,
            process: asked.then_some(&MERGE_STEPS),
        }
    }

    /// The image opener's injector.
    pub fn image(&self) -> Injector {
        Injector {
            steps: 0,
            fail_at: self.image_fail_at,
            pause_at: None,
            process: None,
        }
    }
}

/// The merge steps this process has counted (see [`FaultSettings::merge`]).
static MERGE_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts steps and fails or pauses the one a test asked for.
#[derive(Debug, Default)]
pub struct Injector {
    steps: usize,
    fail_at: Option<usize>,
    pause_at: Option<(usize, u64)>,
    /// Counts on this process-wide count instead of its own.
    process: Option<&'static std::sync::atomic::AtomicUsize>,
}

impl Injector {
    /// An injector that fails step `n` (for tests that run in-process, where an
    /// environment variable would reach every thread).
    pub fn failing_at(n: usize) -> Injector {
        Injector {
            fail_at: Some(n),
            ..Injector::default()
        }
    }

    /// Counts one step; `Err(n)` when step `n` is the one to fail.
    pub fn step(&mut self) -> Result<(), usize> {
        self.steps = match self.process {
            Some(c) => c.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            None => self.steps + 1,
        };
        if let Some((n, secs)) = self.pause_at {
            if n == self.steps {
                // Test hook: a window in which the test kills us (kill -9 mid-merge).
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
        }
        if self.fail_at == Some(self.steps) {
            return Err(self.steps);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_the_chosen_step() {
        let mut i = Injector {
            fail_at: Some(3),
            ..Injector::default()
        };
        assert_eq!(i.step(), Ok(()));
        assert_eq!(i.step(), Ok(()));
        assert_eq!(i.step(), Err(3));
        assert_eq!(i.step(), Ok(()));
        let mut none = Injector::default();
        assert!((0..100).all(|_| none.step().is_ok()));
    }
}
