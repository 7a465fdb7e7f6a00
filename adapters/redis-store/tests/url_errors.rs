//! A bad Redis URL is refused at `open` with a message that says what is wrong and which forms
//! are accepted, and never echoes the password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_store_redis::RedisStore;

fn message(url: &str) -> String {
    match RedisStore::open(url) {
        Ok(_) => panic!("{url}: accepted"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn says(url: &str, what: &str) {
    let m = message(url);
    assert!(m.contains(what), "{url}: {m}");
    assert!(m.contains("expected redis://"), "{url}: {m}");
    assert!(!m.contains("s3cret"), "{url}: password echoed: {m}");
}

#[test]
fn bad_urls_say_what_is_wrong() {
    says("localhost:6379", "no scheme");
    says("not a url", "no scheme");
    says("http://localhost:6379", "unknown scheme `http`");
    says("redis://", "no host");
    says("redis://:s3cret@", "no host");
    says(
        "redis://:s3cret@localhost:notaport",
        "port `notaport` is not a number",
    );
    says("redis://localhost:99999", "port `99999`");
    says("redis://a:1,b:2", "use redis+cluster://");
    says("redis+cluster://", "no host");
    says("redis+cluster://:s3cret@a:1,,b:2", "empty host");
    says("redis+cluster://a:1,b:x", "port `x`");
    says("redis://localhost/abc", "database");
    // The password is redacted, the user kept.
    let m = message("redis://app:s3cret@localhost:bad");
    assert!(m.contains("redis://app:***@localhost:bad"), "{m}");
}

#[test]
fn good_urls_are_accepted_without_connecting() {
    for url in [
        "redis://127.0.0.1:1",
        "redis://:pw@127.0.0.1:1/2",
        "redis://[::1]:1",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2",
    ] {
        RedisStore::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
