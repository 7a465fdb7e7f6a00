//! `convert bench`: decisions per second for one experience (shared/BATCH-PROTOCOL.md).

use crate::batch::build_instance_with;
use crate::request::{self, BenchMode, BenchRequest, DataStore, RequestError};
use convert_sdk::{
    BucketingAttributes, Decision, HttpRequest, HttpResponse, Transport, TransportError,
};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `"sink": true`: a transport that answers 200 at once and keeps nothing, so tracking delivery
/// is measured without a network.
struct Sink;

impl Transport for Sink {
    fn send(&self, _request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

/// The most timed decisions (and warm-up decisions) a `context+decide` run takes.
pub const MAX_N: u64 = 1_000_000_000;
/// The most timed decisions a `decide-only` run takes: it creates every context first.
pub const MAX_N_DECIDE_ONLY: u64 = 20_000_000;

/// Runs a bench request and returns its result object.
pub fn run(request: &Value) -> Result<Value, RequestError> {
    let req: BenchRequest = request::parse(request)?;
    let bench = &*req.bench;
    let key = bench.key.clone();
    let mode = bench.mode.unwrap_or(BenchMode::ContextDecide);
    // `decide-only` holds every context at once: its bound keeps that within a few GB.
    let max_n = match mode {
        BenchMode::DecideOnly => MAX_N_DECIDE_ONLY,
        BenchMode::ContextDecide => MAX_N,
    };
    let n = bench.n.unwrap_or(100_000);
    if n > max_n {
        return Err(RequestError(format!(
            "bench.n: {n} is more than {max_n}, the most a {} run takes",
            mode.as_str()
        )));
    }
    let warmup = bench.warmup.unwrap_or(10_000);
    if warmup > MAX_N {
        return Err(RequestError(format!(
            "bench.warmup: {warmup} is more than {MAX_N}"
        )));
    }
    let (n, warmup) = (n as usize, warmup as usize);
    let prefix = bench
        .visitor_prefix
        .clone()
        .unwrap_or_else(|| "bench-visitor-".to_string());
    let threads = bench.threads.unwrap_or(1).clamp(1, 256) as usize;
    let attrs = BucketingAttributes {
        visitor_properties: bench.attributes.clone(),
        location_properties: bench.location_properties.clone(),
        enable_tracking: Some(bench.enable_tracking == Some(true)),
        ..Default::default()
    };
    let sdk = req.sdk.as_deref().cloned().unwrap_or_default();
    let sink = bench.sink == Some(true);
    let transport: Option<Arc<dyn Transport>> = sink.then(|| Arc::new(Sink) as Arc<dyn Transport>);
    let inst = build_instance_with(&req.config, &sdk, transport).map_err(RequestError)?;
    let core = inst.core;
    if core.config().experience_by_key(&key).is_none() {
        return Err(RequestError(format!(
            "no experience with key {key:?} in the config"
        )));
    }

    // Warm-up on distinct visitors, so the timed ones are fresh too.
    for i in 0..warmup {
        let ctx = core.create_context(format!("{prefix}warmup-{i}"), None);
        std::hint::black_box(ctx.run_experience(&key, &attrs));
    }

    // The warm-up's events are delivered (untimed) before the timed run starts.
    if sink {
        let _ = core.flush_timeout(Duration::from_secs(60));
    }
    let before = core.metrics();

    let per_thread = n.div_ceil(threads);
    let start = std::sync::Barrier::new(threads);
    let (thread_secs, bucketed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let core = core.clone();
                let key = &key;
                let attrs = &attrs;
                let prefix = &prefix;
                let start = &start;
                s.spawn(move || {
                    let lo = t * per_thread;
                    let hi = ((t + 1) * per_thread).min(n);
                    let mut bucketed = 0u64;
                    let contexts: Vec<_> = if mode == BenchMode::DecideOnly {
                        (lo..hi)
                            .map(|i| core.create_context(visitor_id(prefix, i), None))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    start.wait();
                    let t0 = Instant::now();
                    if mode == BenchMode::DecideOnly {
                        for ctx in &contexts {
                            if matches!(ctx.run_experience(key, attrs), Decision::Variation(_)) {
                                bucketed += 1;
                            }
                        }
                    } else {
                        for i in lo..hi {
                            let ctx = core.create_context(visitor_id(prefix, i), None);
                            if matches!(ctx.run_experience(key, attrs), Decision::Variation(_)) {
                                bucketed += 1;
                            }
                        }
                    }
                    (t0.elapsed().as_secs_f64(), bucketed)
                })
            })
            .collect();
        let mut per_thread_secs = Vec::with_capacity(threads);
        let mut total = 0u64;
        for h in handles {
            let (secs, b) = h.join().unwrap_or((0.0, 0));
            per_thread_secs.push(secs);
            total += b;
        }
        (per_thread_secs, total)
    });
    // The rate is the whole job over its slowest thread; each thread's own time is reported too
    // (a thread descheduled for a while shows up as an uneven split).
    let elapsed = thread_secs.iter().copied().fold(0.0f64, f64::max);
    let mut out = Map::new();
    out.insert("sdk".into(), json!("rust"));
    out.insert("mode".into(), json!(mode.as_str()));
    out.insert("key".into(), json!(key));
    out.insert("n".into(), json!(n));
    out.insert("threads".into(), json!(threads));
    out.insert("seconds".into(), json!(elapsed));
    out.insert("threadSeconds".into(), json!(thread_secs));
    let dps = if elapsed > 0.0 {
        n as f64 / elapsed
    } else {
        0.0
    };
    out.insert("decisionsPerSecond".into(), json!(dps.round()));
    out.insert("bucketed".into(), json!(bucketed));
    if sink {
        // Counted after a final flush that is not timed.
        let _ = core.flush_timeout(Duration::from_secs(60));
        let after = core.metrics();
        let delivered = after.delivered_events - before.delivered_events;
        let dropped = after.undelivered_events() - before.undelivered_events();
        let queued = delivered + dropped + core.queued_events() as u64;
        out.insert("eventsQueued".into(), json!(queued));
        out.insert("eventsDelivered".into(), json!(delivered));
        out.insert("eventsDropped".into(), json!(dropped));
    }
    if *sdk.data_store() != DataStore::Memory {
        store_passes(&core, &key, &attrs, &prefix, n, threads, &mut out);
    }
    Ok(Value::Object(out))
}

/// With a persistent `sdk.dataStore`: the same visitors again (sticky decisions: one read each),
/// then a conversion of the config's first goal for each (a read and the atomic dedup mark),
/// and the store errors counted over the whole bench.
fn store_passes(
    core: &convert_sdk::Core,
    key: &str,
    attrs: &BucketingAttributes,
    prefix: &str,
    n: usize,
    threads: usize,
    out: &mut Map<String, Value>,
) {
    let per_thread = n.div_ceil(threads);
    let timed = |f: &(dyn Fn(&convert_sdk::Context) + Sync)| -> f64 {
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        let t0 = Instant::now();
                        for i in (t * per_thread)..((t + 1) * per_thread).min(n) {
                            f(&core.create_context(visitor_id(prefix, i), None));
                        }
                        t0.elapsed().as_secs_f64()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0.0))
                .fold(0.0, f64::max)
        })
    };
    let rate = |secs: f64| {
        if secs > 0.0 {
            (n as f64 / secs).round()
        } else {
            0.0
        }
    };
    let sticky = timed(&|ctx| {
        std::hint::black_box(ctx.run_experience(key, attrs));
    });
    out.insert("stickyDecisionsPerSecond".into(), json!(rate(sticky)));
    let goal = core.config().goals.first().map(|g| g.key.to_string());
    if let Some(goal) = goal {
        let conv = convert_sdk::ConversionAttributes::new();
        let secs = timed(&|ctx| {
            let _ = std::hint::black_box(ctx.track_conversion(&goal, &conv));
        });
        out.insert("conversionsPerSecond".into(), json!(rate(secs)));
    }
    out.insert("storeErrors".into(), json!(core.metrics().store_errors));
}

/// `{prefix}{i}`, as a fresh string for each visitor (as a request handler would have it), built
/// without the formatting machinery so the timing is about the SDK.
fn visitor_id(prefix: &str, i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = i;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(prefix.len() + digits.len() - at);
    id.push_str(prefix);
    id.extend(digits[at..].iter().map(|&d| char::from(d)));
    id
}

#[cfg(test)]
mod tests {
    use super::visitor_id;

    #[test]
    fn visitor_ids_are_prefix_and_decimal_index() {
        for i in [0, 7, 10, 99, 100, 123_456, usize::MAX] {
            assert_eq!(visitor_id("v-", i), format!("v-{i}"));
        }
    }
}
