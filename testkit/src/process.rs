//! Facts about the running process, for tests and self-tests that bound its resources.

/// The process's OS threads now, from `/proc/self/status` (0 where it cannot be read, as on
/// systems without procfs).
pub fn os_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time the calling thread has run, in nanoseconds, from `/proc/thread-self/schedstat` (0
/// where it cannot be read). Benchmarks read it around their loops to report what each thread
/// spent, whatever else competes for the cores.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
