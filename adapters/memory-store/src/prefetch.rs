//! The one `unsafe` call of the workspace: a cache prefetch hint.
//!
//! A new visitor's record goes into the slot of the visitor it evicts, which in a store of
//! thousands of visitors is rarely in the CPU cache. Reading it only after the decision has run
//! left the whole decision waiting for memory at its end; asking for it before the decision runs
//! lets the load overlap the decision's own work (`cargo bench -p convert-sdk --bench
//! workloads`, `fresh_decision`, and `docs/performance.md`). `xtask test` checks that no other
//! file of the workspace allows `unsafe_code`.

/// Asks the CPU to start loading every cache line of `*value` into its caches. A hint only: it
/// reads nothing the program can observe, writes nothing and never faults. A no-op on targets
/// other than x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    let mut offset = 0;
    while offset < std::mem::size_of::<T>() {
        line(start.wrapping_add(offset));
        offset += 64;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn line(p: *const u8) {
    // SAFETY: `prefetcht0` is a hint with no architectural effect: it never faults, whatever the
    // address, and neither reads nor writes memory the program can observe. `_mm_prefetch` is
    // only `unsafe` because it is a `#[target_feature(enable = "sse")]` function, and SSE is part
    // of the x86-64 baseline, so it is always available here.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn line(_: *const u8) {}
