//! A process-wide logger that counts WARN (and worse) lines, for the test binaries that check
//! how much the SDK logs. Each such binary installs it once (`log::set_logger`), so it is the
//! only test of its binary.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the warnings whose text contains `needle` (every warning when it is empty).
pub struct CountWarnings {
    needle: &'static str,
    count: AtomicUsize,
}

impl CountWarnings {
    /// A counter of the warnings containing `needle` (`""`: all of them).
    pub const fn new(needle: &'static str) -> Self {
        CountWarnings {
            needle,
            count: AtomicUsize::new(0),
        }
    }

    /// Installs `self` as the process's logger, at WARN level.
    pub fn install(&'static self) {
        log::set_logger(self).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    }

    /// The warnings counted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl log::Log for CountWarnings {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.level() <= log::Level::Warn
            && (self.needle.is_empty() || r.args().to_string().contains(self.needle))
        {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}
