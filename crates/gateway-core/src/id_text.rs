//! The text of a device id or metric name: shared by a reference count, or
//! interned for the life of the process.
//!
//! Every reading carries clones of its device and metric ids. With counted
//! text, a CSV line of four values made eight atomic increments on the
//! connection's worker and eight decrements where the pipeline dropped the
//! readings, on the other core, so each count's cache line went back and
//! forth: about a fifth of the CPU of an acknowledged line (`perf
//! annotate`). An interned text is never freed, so cloning it is a copy.
//!
//! Only texts an adapter holds for long are interned (the columns it was
//! configured with, the devices a connection names), and only
//! [`INTERN_LIMIT`] of them in the whole process: a client naming a new
//! device on every line fills the table once, after which ids are counted
//! as before, so what is never freed stays bounded.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

/// Distinct texts interned per process, at most 128 bytes each plus about
/// 60 of bookkeeping: under 1 MiB however they are chosen.
pub const INTERN_LIMIT: usize = 4096;

#[derive(Clone)]
pub(crate) enum IdText {
    Shared(Arc<str>),
    // A thin reference (to a sized cell holding the text) keeps the enum
    // at two words: the variant is told by the niche of the Arc's pointer,
    // and a reading stays 56 bytes.
    Interned(&'static Kept),
}

/// An interned text: never freed.
pub(crate) struct Kept(Box<str>);

type Table = HashMap<&'static str, &'static Kept>;

static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();

impl IdText {
    pub(crate) fn shared(text: String) -> Self {
        Self::Shared(Arc::from(text))
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Shared(text) => text,
            Self::Interned(kept) => &kept.0,
        }
    }

    /// Where the text lies: equal for clones, and for every copy of an
    /// interned text.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        self.as_str().as_ptr() as usize
    }

    /// The same text, interned if the table has room (or has it already);
    /// else a counted clone.
    pub(crate) fn interned(&self) -> Self {
        match self {
            Self::Interned(_) => self.clone(),
            Self::Shared(text) => intern(text).map_or_else(|| self.clone(), Self::Interned),
        }
    }

    pub(crate) fn is_interned(&self) -> bool {
        matches!(self, Self::Interned(_))
    }
}

fn intern(text: &str) -> Option<&'static Kept> {
    // A poisoned lock only means another thread panicked while inserting;
    // the text is then shared by count, which is always correct.
    let mut table = TABLE.get_or_init(Mutex::default).lock().ok()?;
    if let Some(found) = table.get(text) {
        return Some(found);
    }
    if table.len() >= INTERN_LIMIT {
        return None;
    }
    let kept: &'static Kept = Box::leak(Box::new(Kept(Box::from(text))));
    table.insert(&kept.0, kept);
    Some(kept)
}

impl PartialEq for IdText {
    fn eq(&self, other: &Self) -> bool {
        self.addr() == other.addr() && self.as_str().len() == other.as_str().len()
            || self.as_str() == other.as_str()
    }
}

impl Eq for IdText {}

impl Hash for IdText {
    // As `str` hashes, whichever way the text is held: an interned and a
    // counted copy of one id are one key.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for IdText {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdText {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn hash_of(t: &IdText) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn an_interned_copy_is_the_same_key_as_the_counted_one() {
        let counted = IdText::shared("kitchen-fridge".to_string());
        let interned = counted.interned();
        assert!(interned.is_interned());
        assert_eq!(counted, interned);
        assert_eq!(hash_of(&counted), hash_of(&interned));
        assert_eq!(counted.cmp(&interned), std::cmp::Ordering::Equal);
        assert_eq!(format!("{interned:?}"), "\"kitchen-fridge\"");
        assert_ne!(interned, IdText::shared("kitchen-freezer".to_string()));
    }

    #[test]
    fn one_text_is_interned_once() {
        let a = IdText::shared("hall-co2".to_string()).interned();
        let b = IdText::shared("hall-co2".to_string()).interned();
        assert_eq!(a.addr(), b.addr(), "the second lookup finds the first");
        assert_eq!(a.clone().addr(), a.addr());
    }
}
