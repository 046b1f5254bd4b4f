//! A map for what a node keeps in memory to answer faster, with a budget:
//! each entry has a weight, and an insert that would pass the budget first
//! drops the entries no longer fresh, then, if that is not enough, all.
//! Rebuilding a copy costs a read; running out of memory costs the node.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

pub struct Budgeted<K, V> {
    entries: HashMap<K, (V, usize)>,
    /// The sum of the entries' weights.
    used: usize,
    budget: usize,
}

impl<K: Hash + Eq, V> Budgeted<K, V> {
    pub fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            used: 0,
            budget,
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Keeps `value` under `key`; `fresh` tells which entries are still
    /// worth their room when the budget runs out.
    pub fn insert(&mut self, key: K, value: V, weight: usize, fresh: impl Fn(&K, &V) -> bool) {
        if let Some((_, old)) = self.entries.remove(&key) {
            self.used -= old;
        }
        if self.used + weight > self.budget {
            self.entries.retain(|k, (v, _)| fresh(k, v));
            self.used = self.entries.values().map(|(_, w)| w).sum();
            if self.used + weight > self.budget {
                self.entries.clear();
                self.used = 0;
            }
        }
        self.used += weight;
        self.entries.insert(key, (value, weight));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_drops_the_stale_first_then_everything() {
        let mut map = Budgeted::new(10);
        map.insert("old", 1, 4, |_, _| true);
        map.insert("young", 2, 4, |_, _| true);
        // replacing an entry frees its weight first
        map.insert("young", 3, 4, |_, _| panic!("within budget"));
        assert_eq!(map.get("young"), Some(&3));
        // over budget: only the stale entry goes
        map.insert("new", 4, 4, |k, _| *k != "old");
        assert_eq!(
            (map.get("old"), map.get("young"), map.get("new")),
            (None, Some(&3), Some(&4))
        );
        assert_eq!(map.used, 8);
        // still over with every entry fresh: all go
        map.insert("big", 5, 6, |_, _| true);
        assert_eq!(
            (map.get("young"), map.get("new"), map.get("big")),
            (None, None, Some(&5))
        );
        assert_eq!(map.used, 6);
    }
}
