//! Process-wide interning of the long strings of a config (ids, keys and names over 23 bytes).
//!
//! Every decision copies its experience's and variation's ids, keys and names into the
//! [`BucketedVariation`](crate::BucketedVariation) it returns. A [`Str`] of up to 23 bytes is
//! stored inline, so copying it touches nothing shared; a longer one built with `Str::new` is an
//! `Arc<str>`, so every copy and every drop writes its reference count. With several threads
//! deciding for the same experience, that count's cache line moves between cores on every
//! decision, together with whatever config data shares the line.
//!
//! Config strings over 23 bytes are therefore interned: the text is stored once for the life of
//! the process and the config holds a `&'static str` view of it, which copies like an inline
//! string. The same text loaded again (a config refresh, a second SDK instance of the same
//! project) reuses the stored copy, so memory grows only with the distinct long strings ever
//! loaded. That growth is capped at [`INTERN_CAP_BYTES`]; past the cap, strings are shared
//! through a reference count as before (correct, only slower with many threads).

use crate::config::Str;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Total bytes of text the process-wide interner keeps at most (16 MiB). A config of 500
/// experiences with 5 variations and 1,000 audiences holds well under 1 MiB of long strings.
pub const INTERN_CAP_BYTES: usize = 16 << 20;

/// Strings up to this length are inline in a [`Str`] and need no interning.
const INLINE: usize = 23;

/// A set of leaked strings with a byte budget.
#[derive(Debug)]
struct Interner {
    set: hashbrown::HashSet<&'static str, foldhash::fast::RandomState>,
    bytes: usize,
    cap: usize,
}

impl Interner {
    fn new(cap: usize) -> Self {
        Interner {
            set: hashbrown::HashSet::with_hasher(foldhash::fast::RandomState::default()),
            bytes: 0,
            cap,
        }
    }

    /// The stored copy of `text`, stored now if the budget allows; `None` when it is full.
    fn get_or_store(&mut self, text: &str) -> Option<&'static str> {
        if let Some(&stored) = self.set.get(text) {
            return Some(stored);
        }
        if self.bytes.saturating_add(text.len()) > self.cap {
            return None;
        }
        let stored: &'static str = Box::leak(Box::<str>::from(text));
        self.bytes += text.len();
        self.set.insert(stored);
        Some(stored)
    }

    fn str(&mut self, text: &str) -> Str {
        if text.len() <= INLINE {
            return Str::new(text);
        }
        match self.get_or_store(text) {
            Some(stored) => Str::new_static(stored),
            None => Str::new(text),
        }
    }
}

static INTERNER: LazyLock<Mutex<Interner>> =
    LazyLock::new(|| Mutex::new(Interner::new(INTERN_CAP_BYTES)));

/// A config string as a [`Str`]: inline up to 23 bytes, interned beyond (see the module docs).
pub(crate) fn config_str(text: &str) -> Str {
    if text.len() <= INLINE {
        return Str::new(text);
    }
    // A poisoned lock only means a thread panicked inside `get_or_store`, which leaves the set
    // consistent (the string is counted and inserted after it is leaked).
    INTERNER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .str(text)
}

/// Bytes held by the process-wide interner (for metrics and tests).
pub fn interned_bytes() -> usize {
    INTERNER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_stay_inline_and_long_ones_are_shared_without_a_count() {
        let mut i = Interner::new(1 << 10);
        let short = i.str("three-arms");
        assert_eq!(short, "three-arms");
        assert!(!short.is_heap_allocated());
        assert_eq!(i.bytes, 0, "inline strings are not stored");

        let name = "Three arms with one location rule";
        let a = i.str(name);
        let copy = String::from(name);
        let b = i.str(&copy);
        assert_eq!(a, name);
        assert!(
            !a.is_heap_allocated(),
            "an interned string has no reference count"
        );
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same text is stored once");
        assert_eq!(i.bytes, name.len());
    }

    #[test]
    fn past_the_cap_strings_are_reference_counted_and_nothing_more_is_stored() {
        let mut i = Interner::new(60);
        let first = i.str(&"a".repeat(40));
        assert!(!first.is_heap_allocated());
        let over = i.str(&"b".repeat(40));
        assert_eq!(over, "b".repeat(40));
        assert!(
            over.is_heap_allocated(),
            "over the cap: an Arc<str> as before"
        );
        assert_eq!(i.bytes, 40);
        // Text already stored is still served from the store.
        assert!(!i.str(&"a".repeat(40)).is_heap_allocated());
    }

    #[test]
    fn the_process_wide_interner_serves_config_strings() {
        let text = "a name long enough to be interned, unique to this test";
        let a = config_str(text);
        let b = config_str(text);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "loading it again stores nothing new"
        );
        assert!(!b.is_heap_allocated());
        assert!(interned_bytes() >= text.len());
    }
}
