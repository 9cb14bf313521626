//! Series keys: a metric name plus a set of labels.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashbrown::Equivalent;

/// One label: `(name, value)`.
pub type Label = (Arc<str>, Arc<str>);

/// Identity of a series: metric name and label set (labels sorted by name).
///
/// The hash is computed once at construction and is independent of the order the labels
/// were given in, so a lookup with unsorted `&[(&str, &str)]` labels needs no allocation.
#[derive(Clone)]
pub struct Key {
    name: Arc<str>,
    labels: Arc<[Label]>,
    hash: u64,
}

fn seed() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x5eed_ab4c_u64)
}

fn hash_parts<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let s = seed();
    let mut h = s.hash_one(name);
    for (k, v) in labels {
        // Wrapping sum of per-label hashes: the key hash does not depend on label order.
        h = h.wrapping_add(s.hash_one((k, v)).rotate_left(7));
    }
    h
}

impl Key {
    /// Builds a key; labels are sorted by name (and value).
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Key {
        let mut owned: Vec<Label> = labels
            .iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect();
        owned.sort();
        Key {
            hash: hash_parts(name, labels.iter().copied()),
            name: Arc::from(name),
            labels: owned.into(),
        }
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }

    pub(crate) fn hash64(&self) -> u64 {
        self.hash
    }

    /// Whether this key has exactly the given labels, in any order.
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        KeyRef::new(name, labels).equivalent(self)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.name == other.name && self.labels == other.labels
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        (&self.name, &self.labels).cmp(&(&other.name, &other.labels))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// A borrowed key for allocation-free lookups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) labels: &'a [(&'a str, &'a str)],
    pub(crate) hash: u64,
}

impl<'a> KeyRef<'a> {
    pub(crate) fn new(name: &'a str, labels: &'a [(&'a str, &'a str)]) -> Self {
        KeyRef {
            name,
            labels,
            hash: hash_parts(name, labels.iter().copied()),
        }
    }

    pub(crate) fn to_key(self) -> Key {
        Key::new(self.name, self.labels)
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash
            && self.name == &*key.name
            && self.labels.len() == key.labels.len()
            && self
                .labels
                .iter()
                .all(|(k, v)| key.labels.iter().any(|(kk, vv)| **kk == **k && **vv == **v))
    }
}

/// Hasher for maps keyed by [`Key`]: the key hash is already well mixed, pass it through.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a Key is hashed; fold the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `BuildHasher` for [`KeyHasher`].
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct BuildKeyHasher;

impl BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_order_does_not_change_identity() {
        let a = Key::new("m", &[("a", "1"), ("b", "2")]);
        let b = Key::new("m", &[("b", "2"), ("a", "1")]);
        assert_eq!(a, b);
        assert!(KeyRef::new("m", &[("b", "2"), ("a", "1")]).equivalent(&a));
        assert!(!KeyRef::new("m", &[("b", "2"), ("a", "3")]).equivalent(&a));
        assert_eq!(a.label("b"), Some("2"));
    }

    #[test]
    fn display_shows_name_and_labels() {
        let k = Key::new("latency", &[("service", "api")]);
        assert_eq!(k.to_string(), "latency{service=\"api\"}");
    }
}
