#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// A test-support crate: failing a check means panicking, exactly like `assert!`.
#![allow(clippy::panic)]

#[cfg(feature = "async")]
pub mod asynchronous;
pub mod redis_server;

use convert_ports::{DataStore, StoreData, StoreError, StoreOp};
use serde_json::{Value, json};
use std::sync::Arc;

fn sample(tag: &str) -> StoreData {
    let d = StoreData::from_value(json!({
        "bucketing": {"100218245": "100299457", "exp-b": "v-2"},
        "locations": ["home", "checkout"],
        "segments": {"country": "DE", "customSegments": ["200299434"], "plan": tag},
        "goals": {"purchase": true},
        "fromAnotherSdk": {"kept": [1, 2, 3]},
    }));
    match d {
        Ok(d) => d,
        Err(e) => panic!("sample record: {e}"),
    }
}

fn mark_goal(d: &mut StoreData, goal: &str) -> bool {
    d.mark_goal(goal)
}

/// Runs `op` again while it fails with [`StoreError::Contention`] (nothing was written: the
/// documented recourse is to try again), up to 100 times. The races in this suite put far more
/// writers on one key than production traffic does, and on an overloaded machine a writer can lose
/// a store's whole attempt budget; what the suite checks is that no write is lost or doubled.
fn retry_contention<T>(mut op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut tries = 0;
    loop {
        match op() {
            Err(StoreError::Contention(_)) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

fn expect<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Reading a key that was never written gives `None`.
pub fn missing_key_is_none(s: &dyn DataStore) {
    assert_eq!(expect(s.get("contract-missing-1-2-nobody"), "get"), None);
}

/// A full record comes back exactly as written, unknown members included.
pub fn round_trip(s: &dyn DataStore) {
    let d = sample("round-trip");
    expect(s.set("contract-rt-1-2-v", &d), "set");
    assert_eq!(expect(s.get("contract-rt-1-2-v"), "get"), Some(d));
}

/// A second `set` replaces the record.
pub fn overwrite(s: &dyn DataStore) {
    expect(s.set("contract-ow-1-2-v", &sample("first")), "set");
    let mut second = StoreData::default();
    second.mark_goal("purchase");
    expect(s.set("contract-ow-1-2-v", &second), "set");
    assert_eq!(expect(s.get("contract-ow-1-2-v"), "get"), Some(second));
}

/// `delete` removes a record; deleting a missing key is not an error.
pub fn delete(s: &dyn DataStore) {
    expect(s.set("contract-del-1-2-v", &sample("d")), "set");
    expect(s.delete("contract-del-1-2-v"), "delete");
    assert_eq!(expect(s.get("contract-del-1-2-v"), "get"), None);
    expect(s.delete("contract-del-1-2-never"), "delete missing");
}

/// `update` on a missing key creates it only when the closure reports a change, and reports
/// whether it wrote.
pub fn update_creates_only_when_changed(s: &dyn DataStore) {
    let wrote = expect(s.update("contract-up-1-2-none", &mut |_| false), "update");
    assert!(!wrote);
    assert_eq!(expect(s.get("contract-up-1-2-none"), "get"), None);
    let wrote = expect(
        s.update("contract-up-1-2-some", &mut |d| mark_goal(d, "signup")),
        "update",
    );
    assert!(wrote);
    let got = expect(s.get("contract-up-1-2-some"), "get").unwrap_or_default();
    assert!(got.goal_triggered("signup"));
}

/// `update` sees the current record and keeps what it does not change.
pub fn update_merges_into_the_current_record(s: &dyn DataStore) {
    let mut d = sample("merge");
    expect(s.set("contract-merge-1-2-v", &d), "set");
    expect(
        s.update("contract-merge-1-2-v", &mut |r| mark_goal(r, "second")),
        "update",
    );
    mark_goal(&mut d, "second");
    assert_eq!(expect(s.get("contract-merge-1-2-v"), "get"), Some(d));
}

/// `update` returning `false` on a stored record leaves it exactly as it was.
pub fn update_without_change_keeps_the_record(s: &dyn DataStore) {
    let d = sample("unchanged");
    expect(s.set("contract-nochange-1-2-v", &d), "set");
    let mut seen = None;
    let wrote = expect(
        s.update("contract-nochange-1-2-v", &mut |r| {
            seen = Some(r.clone());
            false
        }),
        "update",
    );
    assert!(!wrote);
    assert_eq!(seen, Some(d.clone()), "the closure sees the stored record");
    assert_eq!(expect(s.get("contract-nochange-1-2-v"), "get"), Some(d));
}

/// Edits a closure makes are discarded when it returns `false` (it claims nothing changed).
///
/// Not part of [`contract_tests!`]: the in-memory store hands the closure its record in place.
/// The persistent stores (which read, call, then write) guarantee it.
pub fn update_discards_changes_when_false(s: &dyn DataStore) {
    let d = sample("discard");
    expect(s.set("contract-discard-1-2-v", &d), "set");
    let wrote = expect(
        s.update("contract-discard-1-2-v", &mut |r| {
            mark_goal(r, "not-written");
            false
        }),
        "update",
    );
    assert!(!wrote);
    assert_eq!(expect(s.get("contract-discard-1-2-v"), "get"), Some(d));
}

fn increment(d: &mut StoreData) -> bool {
    let n = d
        .extra()
        .and_then(|e| e.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    d.extra_mut().insert("n".into(), json!(n + 1));
    true
}

/// Each of `writers` (one thread per entry) increments the counter at `key` 25 times, all
/// starting together; returns the count read back through the first writer.
fn count_together(writers: Vec<Arc<dyn DataStore>>, key: &'static str) -> Option<Value> {
    let first = Arc::clone(writers.first()?);
    expect(first.delete(key), "delete");
    let barrier = Arc::new(std::sync::Barrier::new(writers.len()));
    let threads: Vec<_> = writers
        .into_iter()
        .map(|s| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..25 {
                    expect(retry_contention(|| s.update(key, &mut increment)), "update");
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok(), "a writer thread panicked");
    }
    let d = expect(first.get(key), "get").unwrap_or_default();
    d.extra().and_then(|e| e.get("n")).cloned()
}

/// Each of `racers` (one thread per entry) tries, all at once, to mark goal `purchase` of a fresh
/// record at `key`; returns how many saw it first.
fn goal_winners(racers: Vec<Arc<dyn DataStore>>, key: &str) -> usize {
    let Some(first) = racers.first() else {
        return 0;
    };
    expect(first.delete(key), "delete");
    let barrier = Arc::new(std::sync::Barrier::new(racers.len()));
    let handles: Vec<_> = racers
        .into_iter()
        .map(|s| {
            let key = key.to_string();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = false;
                expect(
                    retry_contention(|| {
                        s.update(&key, &mut |d| {
                            won = mark_goal(d, "purchase");
                            won
                        })
                    }),
                    "update",
                );
                won
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|w| *w)
        .count()
}

/// Concurrent read-modify-writes of one key lose nothing: 8 threads × 25 increments.
pub fn concurrent_updates_are_atomic(s: Arc<dyn DataStore>) {
    let n = count_together(vec![s; 8], "contract-atomic-1-2-counter");
    assert_eq!(n, Some(json!(200)));
}

/// 8 threads of one instance racing to mark the same goal: exactly one sees it first.
pub fn one_winner_among_threads(s: Arc<dyn DataStore>) {
    for round in 0..5 {
        let key = format!("contract-threads-1-2-visitor-{round}");
        assert_eq!(
            goal_winners(vec![Arc::clone(&s); 8], &key),
            1,
            "round {round}"
        );
    }
}

/// Several instances on one backend, two threads each, incrementing one counter 25 times per
/// thread: no increment is lost.
pub fn counter_across_instances(stores: Vec<Arc<dyn DataStore>>) {
    let expected = stores.len() * 50;
    let writers = stores
        .iter()
        .flat_map(|s| [Arc::clone(s), Arc::clone(s)])
        .collect();
    let n = count_together(writers, "contract-xcounter-1-2-counter");
    if expected > 0 {
        assert_eq!(n, Some(json!(expected)));
    }
}

/// Two instances (clients, connections) racing to mark the same goal: exactly one wins.
pub fn one_winner_across_instances(a: Arc<dyn DataStore>, b: Arc<dyn DataStore>) {
    for round in 0..20 {
        let key = format!("contract-race-1-2-visitor-{round}");
        let racers = vec![Arc::clone(&a), Arc::clone(&b)];
        assert_eq!(goal_winners(racers, &key), 1, "round {round}");
    }
}

/// Keys with non-ASCII characters, spaces and quotes are distinct and round-trip.
pub fn unicode_keys(s: &dyn DataStore) {
    let keys = [
        "contract-uni-1-2-😀",
        "contract-uni-1-2-用户123",
        "contract-uni-1-2-with space",
        "contract-uni-1-2-\"quoted\"",
        "contract-uni-1-2-café",
        "contract-uni-1-2-cafe\u{301}",
    ];
    for (i, k) in keys.iter().enumerate() {
        expect(s.set(k, &sample(&format!("u{i}"))), "set");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            expect(s.get(k), "get"),
            Some(sample(&format!("u{i}"))),
            "{k}"
        );
    }
}

/// A record of about 1 MiB round-trips.
pub fn large_values(s: &dyn DataStore) {
    let mut d = sample("large");
    let seg = d.segments_mut();
    for i in 0..10_000 {
        seg.insert(format!("prop-{i:05}"), json!("x".repeat(100)));
    }
    expect(s.set("contract-large-1-2-v", &d), "set");
    assert_eq!(expect(s.get("contract-large-1-2-v"), "get"), Some(d));
}

/// Keys that share a prefix do not see each other.
pub fn keys_are_isolated(s: &dyn DataStore) {
    expect(s.set("contract-iso-1-2-a", &sample("a")), "set");
    expect(s.set("contract-iso-1-2-ab", &sample("ab")), "set");
    expect(s.delete("contract-iso-1-2-a"), "delete");
    assert_eq!(expect(s.get("contract-iso-1-2-a"), "get"), None);
    assert_eq!(
        expect(s.get("contract-iso-1-2-ab"), "get"),
        Some(sample("ab"))
    );
}

/// `apply` marks a goal once: the first call reports the change, a repeat does not, and the
/// other members of the record are kept.
pub fn apply_marks_a_goal_once(s: &dyn DataStore) {
    let key = "contract-apply-1-2-v";
    expect(s.set(key, &sample("apply")), "set");
    let goal = [StoreOp::Goal("signup".into())];
    let first = expect(s.apply(key, None, &goal), "apply");
    assert_eq!(first.changed, vec![true]);
    let again = expect(s.apply(key, None, &goal), "apply");
    assert_eq!(again.changed, vec![false]);
    let mut expected = sample("apply");
    expected.mark_goal("signup");
    assert_eq!(expect(s.get(key), "get"), Some(expected));
}

/// `seen` is only a hint: ops apply to the stored record even when `seen` is stale, and a
/// goal `seen` lacks but the store holds is reported as not marked by this call.
pub fn apply_with_a_stale_hint_applies_to_the_stored_record(s: &dyn DataStore) {
    let key = "contract-stale-1-2-v";
    expect(s.set(key, &sample("stored")), "set");
    let stale = StoreData::default();
    let ops = [
        StoreOp::Goal("purchase".into()),
        StoreOp::Goal("newsletter".into()),
    ];
    let out = expect(s.apply(key, Some(&stale), &ops), "apply");
    assert_eq!(
        out.changed,
        vec![false, true],
        "purchase was already marked"
    );
    let mut expected = sample("stored");
    expected.mark_goal("newsletter");
    assert_eq!(expect(s.get(key), "get"), Some(expected));
    // On an absent key with a hint that claims a record: the ops build a new one.
    let absent = "contract-stale-1-2-absent";
    let out = expect(s.apply(absent, Some(&sample("x")), &ops), "apply");
    assert_eq!(out.changed, vec![true, true]);
}

/// 8 threads applying the same goal mark: exactly one reports it marked.
pub fn one_apply_winner_among_threads(s: Arc<dyn DataStore>) {
    for round in 0..5 {
        let key = format!("contract-apply-threads-1-2-visitor-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (s, key, barrier) = (Arc::clone(&s), key.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    expect(
                        s.apply(&key, None, &[StoreOp::Goal("purchase".into())]),
                        "apply",
                    )
                    .written()
                })
            })
            .collect();
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1, "round {round}");
    }
}

/// `create` writes a record only where none is stored and otherwise returns the stored one,
/// untouched; of 8 threads creating the same key, exactly one writes.
pub fn create_writes_only_when_absent(s: Arc<dyn DataStore>) {
    let key = "contract-create-1-2-v";
    let mine = sample("mine");
    assert_eq!(expect(s.create(key, &mine), "create"), None);
    assert_eq!(expect(s.get(key), "get"), Some(mine.clone()));
    let theirs = sample("theirs");
    assert_eq!(expect(s.create(key, &theirs), "create"), Some(mine.clone()));
    assert_eq!(expect(s.get(key), "get"), Some(mine));
    // An empty record counts as none.
    let empty_key = "contract-create-1-2-empty";
    expect(s.set(empty_key, &StoreData::default()), "set");
    assert_eq!(expect(s.create(empty_key, &theirs), "create"), None);
    assert_eq!(expect(s.get(empty_key), "get"), Some(theirs));
    for round in 0..5 {
        let key = format!("contract-create-race-1-2-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (s, key, barrier) = (Arc::clone(&s), key.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    expect(s.create(&key, &sample(&format!("t{i}"))), "create").is_none()
                })
            })
            .collect();
        let writers = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|w| *w)
            .count();
        assert_eq!(writers, 1, "round {round}");
    }
}

/// Runs every case of [`contract_tests!`] in turn, each on a fresh store from `make`; panics at
/// the first failure (use the macro for one test per case).
pub fn run_all<S: DataStore>(make: impl Fn() -> S) {
    missing_key_is_none(&make());
    round_trip(&make());
    overwrite(&make());
    delete(&make());
    update_creates_only_when_changed(&make());
    update_merges_into_the_current_record(&make());
    update_without_change_keeps_the_record(&make());
    concurrent_updates_are_atomic(Arc::new(make()));
    one_winner_among_threads(Arc::new(make()));
    unicode_keys(&make());
    large_values(&make());
    keys_are_isolated(&make());
    apply_marks_a_goal_once(&make());
    apply_with_a_stale_hint_applies_to_the_stored_record(&make());
    one_apply_winner_among_threads(Arc::new(make()));
    create_writes_only_when_absent(Arc::new(make()));
}

/// One `#[test]` per contract case for the store built by `$make` (an expression returning a
/// `DataStore`). Put it at the top level of a test file.
///
/// `contract_tests!(optional $make)` takes a maker returning `Option<impl DataStore>`: when it
/// returns `None` (a backend that is not available and not required), each case returns at once;
/// the maker is expected to say why.
#[macro_export]
macro_rules! contract_tests {
    (optional $make:expr) => {
        $crate::contract_tests!(@cases (|| ($make)()));
    };
    ($make:expr) => {
        $crate::contract_tests!(@cases (|| Some(($make)())));
    };
    (@cases $make:tt) => {
        #[test]
        fn contract_missing_key_is_none() {
            if let Some(s) = $make() {
                $crate::missing_key_is_none(&s);
            }
        }
        #[test]
        fn contract_round_trip() {
            if let Some(s) = $make() {
                $crate::round_trip(&s);
            }
        }
        #[test]
        fn contract_overwrite() {
            if let Some(s) = $make() {
                $crate::overwrite(&s);
            }
        }
        #[test]
        fn contract_delete() {
            if let Some(s) = $make() {
                $crate::delete(&s);
            }
        }
        #[test]
        fn contract_update_creates_only_when_changed() {
            if let Some(s) = $make() {
                $crate::update_creates_only_when_changed(&s);
            }
        }
        #[test]
        fn contract_update_merges_into_the_current_record() {
            if let Some(s) = $make() {
                $crate::update_merges_into_the_current_record(&s);
            }
        }
        #[test]
        fn contract_update_without_change_keeps_the_record() {
            if let Some(s) = $make() {
                $crate::update_without_change_keeps_the_record(&s);
            }
        }
        #[test]
        fn contract_one_winner_among_threads() {
            if let Some(s) = $make() {
                $crate::one_winner_among_threads(::std::sync::Arc::new(s));
            }
        }
        #[test]
        fn contract_concurrent_updates_are_atomic() {
            if let Some(s) = $make() {
                $crate::concurrent_updates_are_atomic(::std::sync::Arc::new(s));
            }
        }
        #[test]
        fn contract_unicode_keys() {
            if let Some(s) = $make() {
                $crate::unicode_keys(&s);
            }
        }
        #[test]
        fn contract_large_values() {
            if let Some(s) = $make() {
                $crate::large_values(&s);
            }
        }
        #[test]
        fn contract_keys_are_isolated() {
            if let Some(s) = $make() {
                $crate::keys_are_isolated(&s);
            }
        }
        #[test]
        fn contract_apply_marks_a_goal_once() {
            if let Some(s) = $make() {
                $crate::apply_marks_a_goal_once(&s);
            }
        }
        #[test]
        fn contract_apply_with_a_stale_hint_applies_to_the_stored_record() {
            if let Some(s) = $make() {
                $crate::apply_with_a_stale_hint_applies_to_the_stored_record(&s);
            }
        }
        #[test]
        fn contract_create_writes_only_when_absent() {
            if let Some(s) = $make() {
                $crate::create_writes_only_when_absent(::std::sync::Arc::new(s));
            }
        }
        #[test]
        fn contract_one_apply_winner_among_threads() {
            if let Some(s) = $make() {
                $crate::one_apply_winner_among_threads(::std::sync::Arc::new(s));
            }
        }
    };
}
