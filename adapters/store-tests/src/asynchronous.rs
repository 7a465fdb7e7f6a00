//! The contract in async form (cargo feature `async`): the same guarantees checked through
//! [`AsyncDataStore`] (`get`, `apply`, `create`, `delete`), with concurrent *tasks* on a
//! multi-thread tokio runtime where the sync suite uses threads.
//!
//! [`Inline`] turns an in-process [`DataStore`] (the memory store) into an [`AsyncDataStore`],
//! so the async suite also runs against it. [`async_contract_tests!`](crate::async_contract_tests)
//! makes one `#[test]` per case.

use crate::{expect, sample};
use convert_ports::{Applied, AsyncDataStore, DataStore, StoreData, StoreFuture, StoreOp};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

/// An in-process [`DataStore`] seen as an [`AsyncDataStore`]: each call runs the sync method
/// inline (fine for stores that never wait, such as the memory store; a store that does I/O
/// belongs behind `spawn_blocking` instead).
#[derive(Debug, Default)]
pub struct Inline<S>(pub S);

impl<S: DataStore> AsyncDataStore for Inline<S> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(std::future::ready(self.0.get(key)))
    }
    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> StoreFuture<'a, Applied> {
        Box::pin(std::future::ready(self.0.apply(key, seen, ops)))
    }
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(std::future::ready(self.0.create(key, record)))
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.0.delete(key)))
    }
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn is_persistent(&self) -> bool {
        self.0.is_persistent()
    }
}

/// Runs `f` to completion on a fresh multi-thread runtime (2 workers, so tasks really race).
pub fn block_on<F: Future<Output = ()>>(f: impl FnOnce() -> F) {
    let rt = expect(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "tokio runtime",
    );
    rt.block_on(f());
}

/// The store shared by the tasks of a case.
pub type Shared = Arc<dyn AsyncDataStore>;

fn goal(g: &str) -> StoreOp {
    StoreOp::Goal(g.into())
}

/// Waits for every task; panics (failing the case) if one did.
async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(expect(t.await, "task"));
    }
    out
}

/// Reading a key that was never written gives `None`.
pub async fn missing_key_is_none(s: Shared) {
    assert_eq!(
        expect(s.get("acontract-missing-1-2-nobody").await, "get"),
        None
    );
}

/// A full record written by `create` comes back exactly as written, unknown members included.
pub async fn create_round_trip(s: Shared) {
    let key = "acontract-rt-1-2-v";
    let d = sample("round-trip");
    assert_eq!(expect(s.create(key, &d).await, "create"), None);
    assert_eq!(expect(s.get(key).await, "get"), Some(d));
}

/// `create` writes only where no record is stored and otherwise returns the stored one,
/// untouched; an empty record counts as none.
pub async fn create_writes_only_when_absent(s: Shared) {
    let key = "acontract-create-1-2-v";
    let mine = sample("mine");
    assert_eq!(expect(s.create(key, &mine).await, "create"), None);
    let theirs = sample("theirs");
    assert_eq!(
        expect(s.create(key, &theirs).await, "create"),
        Some(mine.clone())
    );
    assert_eq!(expect(s.get(key).await, "get"), Some(mine));
    let empty_key = "acontract-create-1-2-empty";
    let _ = expect(s.create(empty_key, &StoreData::default()).await, "create");
    assert_eq!(expect(s.create(empty_key, &theirs).await, "create"), None);
    assert_eq!(expect(s.get(empty_key).await, "get"), Some(theirs));
}

/// 16 tasks creating the same key at once: exactly one writes, every other one gets the
/// winner's record back, and the winner's record is what is stored.
pub async fn one_create_winner_among_tasks(s: Shared) {
    for round in 0..5 {
        let key = format!("acontract-create-race-1-2-{round}");
        let tasks = (0..16)
            .map(|i| {
                let (s, key) = (Arc::clone(&s), key.clone());
                tokio::spawn(async move {
                    let mine = sample(&format!("t{i}"));
                    let got = expect(s.create(&key, &mine).await, "create");
                    (mine, got)
                })
            })
            .collect();
        let results = join_all(tasks).await;
        let winners: Vec<&StoreData> = results
            .iter()
            .filter(|(_, got)| got.is_none())
            .map(|(mine, _)| mine)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}");
        let stored = expect(s.get(&key).await, "get");
        assert_eq!(stored.as_ref(), Some(winners[0]), "round {round}");
        for (_, got) in results.iter().filter(|(_, got)| got.is_some()) {
            assert_eq!(got.as_ref(), Some(winners[0]), "round {round}");
        }
    }
}

/// `delete` removes a record; deleting a missing key is not an error.
pub async fn delete(s: Shared) {
    let key = "acontract-del-1-2-v";
    expect(s.create(key, &sample("d")).await, "create");
    expect(s.delete(key).await, "delete");
    assert_eq!(expect(s.get(key).await, "get"), None);
    expect(s.delete("acontract-del-1-2-never").await, "delete missing");
}

/// `apply` marks a goal once: the first call reports the change, a repeat does not, and the
/// rest of the record is kept.
pub async fn apply_marks_a_goal_once(s: Shared) {
    let key = "acontract-apply-1-2-v";
    expect(s.create(key, &sample("apply")).await, "create");
    let ops = [goal("signup")];
    assert_eq!(
        expect(s.apply(key, None, &ops).await, "apply").changed,
        [true]
    );
    assert_eq!(
        expect(s.apply(key, None, &ops).await, "apply").changed,
        [false]
    );
    let mut expected = sample("apply");
    expected.mark_goal("signup");
    assert_eq!(expect(s.get(key).await, "get"), Some(expected));
}

/// `seen` is only a hint: ops apply to the stored record even when `seen` is stale, and a goal
/// `seen` lacks but the store holds is reported as not marked by this call; on an absent key
/// the ops build a new record.
pub async fn apply_with_a_stale_hint_applies_to_the_stored_record(s: Shared) {
    let key = "acontract-stale-1-2-v";
    expect(s.create(key, &sample("stored")).await, "create");
    let stale = StoreData::default();
    let ops = [goal("purchase"), goal("newsletter")];
    let out = expect(s.apply(key, Some(&stale), &ops).await, "apply");
    assert_eq!(out.changed, [false, true], "purchase was already marked");
    let mut expected = sample("stored");
    expected.mark_goal("newsletter");
    assert_eq!(expect(s.get(key).await, "get"), Some(expected));
    let absent = "acontract-stale-1-2-absent";
    let out = expect(s.apply(absent, Some(&sample("x")), &ops).await, "apply");
    assert_eq!(out.changed, [true, true]);
    let stored = expect(s.get(absent).await, "get").unwrap_or_default();
    assert!(stored.goal_triggered("purchase") && stored.goal_triggered("newsletter"));
}

/// Each of `racers` (one task per entry) reads `key`, then marks goal `purchase` from what it
/// read, all at once; returns how many report the mark as theirs.
async fn apply_winners(racers: Vec<Shared>, key: &str) -> usize {
    let tasks = racers
        .into_iter()
        .map(|s| {
            let key = key.to_string();
            tokio::spawn(async move {
                let seen = expect(s.get(&key).await, "get");
                expect(
                    s.apply(&key, seen.as_ref(), &[goal("purchase")]).await,
                    "apply",
                )
                .written()
            })
        })
        .collect();
    join_all(tasks).await.into_iter().filter(|w| *w).count()
}

/// 16 tasks applying the same goal mark at once: exactly one reports it marked.
pub async fn one_apply_winner_among_tasks(s: Shared) {
    for round in 0..5 {
        let key = format!("acontract-apply-race-1-2-{round}");
        let racers = vec![Arc::clone(&s); 16];
        assert_eq!(apply_winners(racers, &key).await, 1, "round {round}");
    }
}

/// 24 tasks each marking their own goal on one record, from what they read (so most `seen`
/// hints are stale by the time they write): every mark is reported as made and none is lost.
pub async fn concurrent_applies_lose_nothing(s: Shared) {
    let key = "acontract-many-1-2-v";
    expect(s.delete(key).await, "delete");
    let tasks = (0..24)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let seen = expect(s.get(key).await, "get");
                let g = format!("g{i}");
                expect(s.apply(key, seen.as_ref(), &[goal(&g)]).await, "apply").changed
            })
        })
        .collect();
    for changed in join_all(tasks).await {
        assert_eq!(changed, [true]);
    }
    let stored = expect(s.get(key).await, "get").unwrap_or_default();
    for i in 0..24 {
        assert!(stored.goal_triggered(&format!("g{i}")), "g{i} lost");
    }
}

/// Keys with non-ASCII characters, spaces and quotes are distinct and round-trip.
pub async fn unicode_keys(s: Shared) {
    let keys = [
        "acontract-uni-1-2-😀",
        "acontract-uni-1-2-用户123",
        "acontract-uni-1-2-with space",
        "acontract-uni-1-2-\"quoted\"",
        "acontract-uni-1-2-café",
        "acontract-uni-1-2-cafe\u{301}",
    ];
    for (i, k) in keys.iter().enumerate() {
        let _ = expect(s.create(k, &sample(&format!("u{i}"))).await, "create");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            expect(s.get(k).await, "get"),
            Some(sample(&format!("u{i}"))),
            "{k}"
        );
    }
}

/// A record of about 1 MiB round-trips.
pub async fn large_values(s: Shared) {
    let key = "acontract-large-1-2-v";
    let mut d = sample("large");
    let seg = d.segments_mut();
    for i in 0..10_000 {
        seg.insert(format!("prop-{i:05}"), json!("x".repeat(100)));
    }
    let _ = expect(s.create(key, &d).await, "create");
    assert_eq!(expect(s.get(key).await, "get"), Some(d));
}

/// Keys that share a prefix do not see each other.
pub async fn keys_are_isolated(s: Shared) {
    let (a, ab) = ("acontract-iso-1-2-a", "acontract-iso-1-2-ab");
    let _ = expect(s.create(a, &sample("a")).await, "create");
    let _ = expect(s.create(ab, &sample("ab")).await, "create");
    expect(s.delete(a).await, "delete");
    assert_eq!(expect(s.get(a).await, "get"), None);
    assert_eq!(expect(s.get(ab).await, "get"), Some(sample("ab")));
}

/// Two instances (clients, connections) on one backend, 4 tasks each, racing to mark the same
/// goal: exactly one wins, in each of 20 rounds.
pub async fn one_winner_across_instances(a: Shared, b: Shared) {
    for round in 0..20 {
        let key = format!("acontract-xrace-1-2-visitor-{round}");
        let racers = [&a, &b]
            .into_iter()
            .flat_map(|s| std::iter::repeat_n(Arc::clone(s), 4))
            .collect();
        assert_eq!(apply_winners(racers, &key).await, 1, "round {round}");
    }
}

/// Every case of [`async_contract_tests!`](crate::async_contract_tests) in turn, on the store
/// `make` gives; panics at the first failure.
pub async fn run_all(s: Shared) {
    missing_key_is_none(Arc::clone(&s)).await;
    create_round_trip(Arc::clone(&s)).await;
    create_writes_only_when_absent(Arc::clone(&s)).await;
    one_create_winner_among_tasks(Arc::clone(&s)).await;
    delete(Arc::clone(&s)).await;
    apply_marks_a_goal_once(Arc::clone(&s)).await;
    apply_with_a_stale_hint_applies_to_the_stored_record(Arc::clone(&s)).await;
    one_apply_winner_among_tasks(Arc::clone(&s)).await;
    concurrent_applies_lose_nothing(Arc::clone(&s)).await;
    unicode_keys(Arc::clone(&s)).await;
    large_values(Arc::clone(&s)).await;
    keys_are_isolated(s).await;
}

/// One `#[test]` per case of the async contract, for the store made by `$make`: a closure
/// returning a future of `Option<Arc<dyn AsyncDataStore>>` (`None`: the backend is not available
/// and not required; the maker says why). It runs inside the case's tokio runtime, so a store
/// that spawns tasks (redis-rs's `ConnectionManager`) may be opened there. Put it at the top
/// level of a test file.
#[macro_export]
macro_rules! async_contract_tests {
    ($make:expr) => {
        $crate::async_contract_tests!(@cases $make;
            missing_key_is_none, create_round_trip, create_writes_only_when_absent,
            one_create_winner_among_tasks, delete, apply_marks_a_goal_once,
            apply_with_a_stale_hint_applies_to_the_stored_record, one_apply_winner_among_tasks,
            concurrent_applies_lose_nothing, unicode_keys, large_values, keys_are_isolated);
    };
    (@cases $make:expr; $($case:ident),*) => {
        mod async_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::asynchronous::block_on(|| async {
                        if let Some(s) = ($make)().await {
                            $crate::asynchronous::$case(s).await;
                        }
                    });
                }
            )*
        }
    };
}
