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

/// What [`timed_threads`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadTimes {
    /// CPU time each thread spent per operation in its timed part, in nanoseconds (0 where
    /// [`thread_cpu_ns`] cannot be read).
    pub cpu_ns_per_op: Vec<u64>,
    /// Operations of all threads per second of wall clock, until the slowest thread finished.
    pub ops_per_second: f64,
}

/// Runs `threads` threads of `ops` operations each, for the multi-threaded benches: thread `t`
/// runs `setup(t)` (warm-up, untimed), waits for every other thread to finish its own, then runs
/// `timed(t, state)` with the state its setup returned, timed with its CPU time and the wall
/// clock.
pub fn timed_threads<S>(
    threads: usize,
    ops: usize,
    setup: impl Fn(usize) -> S + Sync,
    timed: impl Fn(usize, S) + Sync,
) -> ThreadTimes {
    let start = std::sync::Barrier::new(threads);
    let results: Vec<(u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (setup, timed, start) = (&setup, &timed, &start);
                s.spawn(move || {
                    let state = setup(t);
                    start.wait();
                    let (cpu, wall) = (thread_cpu_ns(), std::time::Instant::now());
                    timed(t, state);
                    (
                        (thread_cpu_ns() - cpu) / ops.max(1) as u64,
                        wall.elapsed().as_secs_f64(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let slowest = results.iter().map(|r| r.1).fold(0.0, f64::max);
    ThreadTimes {
        cpu_ns_per_op: results.iter().map(|r| r.0).collect(),
        ops_per_second: (ops * threads) as f64 / slowest,
    }
}
