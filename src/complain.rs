//! Logging a failure that repeats without flooding a router's small log ring.
//!
//! The first failure is logged; repeats are suppressed and summarised at growing intervals
//! (1 min, 2, 4, … up to 1 h) with a count; the recovery is logged once.

use std::time::{Duration, Instant};

const FIRST_REMINDER: Duration = Duration::from_secs(60);
const MAX_REMINDER: Duration = Duration::from_secs(3600);

/// The log state of one thing that can fail, such as one source or one output target.
#[derive(Debug)]
pub struct Complaint {
    component: String,
    failing_since: Option<Instant>,
    next_reminder: Option<Instant>,
    reminder_gap: Duration,
    suppressed: u64,
    failures: u64,
}

impl Complaint {
    /// A complaint whose lines are logged under `component` (such as `src.cpu`).
    pub fn new(component: impl Into<String>) -> Complaint {
        Complaint {
            component: component.into(),
            failing_since: None,
            next_reminder: None,
            reminder_gap: FIRST_REMINDER,
            suppressed: 0,
            failures: 0,
        }
    }

    /// Records a failure: logged now if it is the first or a reminder is due; suppressed otherwise.
    pub fn fail(&mut self, message: &str) {
        self.fail_at(Instant::now(), message);
    }

    fn fail_at(&mut self, now: Instant, message: &str) {
        self.failures += 1;
        match self.next_reminder {
            None => {
                log::warn!(target: &self.component, "{message}");
                self.failing_since = Some(now);
                self.reminder_gap = FIRST_REMINDER;
                self.next_reminder = Some(now + self.reminder_gap);
            }
            Some(due) if now >= due => {
                log::warn!(
                    target: &self.component,
                    "{message} (still failing; {} similar message(s) suppressed)",
                    self.suppressed
                );
                self.suppressed = 0;
                self.reminder_gap = (self.reminder_gap * 2).min(MAX_REMINDER);
                self.next_reminder = Some(now + self.reminder_gap);
            }
            Some(_) => self.suppressed += 1,
        }
    }

    /// Records a success: if it ends a run of failures, says so once.
    pub fn recover(&mut self) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                target: &self.component,
                "recovered after {} failure(s) over {}s",
                self.failures,
                since.elapsed().as_secs()
            );
        }
        self.next_reminder = None;
        self.suppressed = 0;
        self.failures = 0;
    }

    /// True while failures go on.
    pub fn is_failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// How many failures were suppressed since the last line logged.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_suppressed_until_a_reminder_is_due() {
        let mut c = Complaint::new("test");
        let t0 = Instant::now();
        c.fail_at(t0, "down");
        for i in 1..=100 {
            c.fail_at(t0 + Duration::from_millis(i * 10), "down");
        }
        assert_eq!(c.suppressed(), 100);
        c.fail_at(t0 + FIRST_REMINDER, "down");
        assert_eq!(c.suppressed(), 0, "a reminder resets the count");
        c.fail_at(t0 + FIRST_REMINDER + Duration::from_secs(61), "down");
        assert_eq!(c.suppressed(), 1, "the second reminder waits twice as long");
        assert!(c.is_failing());
        c.recover();
        assert!(!c.is_failing());
        assert_eq!(c.suppressed(), 0);
    }
}
