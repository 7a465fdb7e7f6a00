//! A process-wide logger that keeps WARN (and worse) lines, for the test binaries that check
//! how much and what the SDK logs, and the project and retry policy they share. Each such binary
//! installs the logger once (`log::set_logger`), so it is the only test of its binary.

use std::sync::Mutex;
use std::time::Duration;

/// The project of the delivery-log tests: one goal, `g`.
pub fn one_goal_config() -> serde_json::Value {
    serde_json::json!({"account_id": "1", "project": {"id": "2"}, "goals": [{"id": "7", "key": "g"}]})
}

/// Retries 5 ms after a failure at first, 20 ms apart at most: a test's outage is retried often.
#[allow(dead_code)] // not every binary retries
pub fn quick_retry() -> convert_sdk::RetryPolicy {
    convert_sdk::RetryPolicy::default()
        .initial(Duration::from_millis(5))
        .max(Duration::from_millis(20))
}

/// Keeps the warnings whose text contains `needle` (every warning when it is empty).
pub struct CountWarnings {
    needle: &'static str,
    lines: Mutex<Vec<String>>,
}

impl CountWarnings {
    /// A logger keeping the warnings containing `needle` (`""`: all of them).
    pub const fn new(needle: &'static str) -> Self {
        CountWarnings {
            needle,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Installs `self` as the process's logger, at WARN level.
    pub fn install(&'static self) {
        log::set_logger(self).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    }

    /// The number of warnings kept so far.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The warnings kept so far, in order.
    #[allow(dead_code)] // not every binary reads the text
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl log::Log for CountWarnings {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.level() <= log::Level::Warn {
            let text = r.args().to_string();
            if self.needle.is_empty() || text.contains(self.needle) {
                self.lines.lock().unwrap().push(text);
            }
        }
    }
    fn flush(&self) {}
}
