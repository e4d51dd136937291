//! The term dictionary: each distinct term text gets a small integer id.
//!
//! Postings and the per-document term cache hold `TermId`s, not strings, so
//! a document's terms cost 8 bytes each and re-indexing a document compares
//! integers. Ids are reference-counted by the number of documents holding the
//! term; an id whose count drops to 0 is freed and may be given to another
//! term later, so the dictionary does not grow with terms that are gone.
//!
//! **Word cache.** Stemming is the most expensive step of indexing, and
//! natural text repeats words, so the dictionary also maps each word it has
//! seen (before stemming) to its term. The mapping is exact, never stale: a
//! word always stems to the same term, and a term's words are forgotten
//! when the term's id is freed. It costs one entry per distinct word of the
//! live terms.

use std::borrow::Cow;

use foldhash::HashMap;

/// Dense id of a term within one [`TermDict`].
pub(crate) type TermId = u32;

#[derive(Debug)]
struct Slot {
    text: Box<str>,
    docs: u32,
    /// Words cached as stemming to this term.
    words: Vec<Box<str>>,
}

/// Interns term texts. See the module docs for the id lifecycle.
#[derive(Debug, Default)]
pub(crate) struct TermDict {
    ids: HashMap<Box<str>, TermId>,
    words: HashMap<Box<str>, TermId>,
    slots: Vec<Option<Slot>>,
    free: Vec<TermId>,
}

impl TermDict {
    /// The id of `text`, creating it (with no documents yet) if needed.
    ///
    /// An id created here MUST be retained by the caller before the next
    /// call that may free ids ([`TermDict::release`]); otherwise it leaks
    /// until it is retained and released.
    pub(crate) fn intern(&mut self, text: &str) -> TermId {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let slot = Slot {
            text: text.into(),
            docs: 0,
            words: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                let id =
                    TermId::try_from(self.slots.len()).expect("fewer than 2^32 distinct terms");
                self.slots.push(Some(slot));
                id
            }
        };
        self.ids.insert(text.into(), id);
        id
    }

    /// The term of `word` (a word before stemming): from the word cache, or
    /// `stem(word)` interned and cached. `None` when `stem` drops the word.
    ///
    /// Contract: `stem` MUST be a pure function of the word. The same
    /// retain rule as for [`TermDict::intern`] applies.
    pub(crate) fn intern_word<'w>(
        &mut self,
        word: &'w str,
        stem: impl FnOnce(&'w str) -> Option<Cow<'w, str>>,
    ) -> Option<TermId> {
        if let Some(&id) = self.words.get(word) {
            return Some(id);
        }
        let term = stem(word)?;
        let id = self.intern(&term);
        self.words.insert(word.into(), id);
        self.slot_mut(id).words.push(word.into());
        Some(id)
    }

    /// The id of `text` if some document holds it.
    pub(crate) fn get(&self, text: &str) -> Option<TermId> {
        self.ids.get(text).copied()
    }

    /// The text of a live id.
    pub(crate) fn text(&self, id: TermId) -> &str {
        &self.slot(id).text
    }

    /// One more document holds `id`.
    pub(crate) fn retain(&mut self, id: TermId) {
        self.slot_mut(id).docs += 1;
    }

    /// One document fewer holds `id`; frees the id when none is left.
    pub(crate) fn release(&mut self, id: TermId) {
        let slot = self.slot_mut(id);
        slot.docs -= 1;
        if slot.docs == 0 {
            let slot = self.slots[id as usize].take().expect("live slot");
            self.ids.remove(&slot.text);
            for w in &slot.words {
                self.words.remove(w);
            }
            self.free.push(id);
        }
    }

    /// Number of live terms.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    fn slot(&self, id: TermId) -> &Slot {
        self.slots[id as usize].as_ref().expect("live term id")
    }

    fn slot_mut(&mut self, id: TermId) -> &mut Slot {
        self.slots[id as usize].as_mut().expect("live term id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_interning_is_stable_and_ids_are_reused_after_release() {
        let mut d = TermDict::default();
        let a = d.intern("alpha");
        let b = d.intern("beta");
        assert_ne!(a, b);
        assert_eq!(d.intern("alpha"), a);
        d.retain(a);
        d.retain(a);
        d.retain(b);
        d.release(a);
        assert_eq!(d.get("alpha"), Some(a));
        d.release(a);
        assert_eq!(d.get("alpha"), None);
        assert_eq!(d.len(), 1);
        let c = d.intern("gamma");
        assert_eq!(c, a, "freed id is reused");
        assert_eq!(d.text(c), "gamma");
        assert_eq!(d.text(b), "beta");
    }

    #[test]
    fn t11_word_cache_maps_words_to_terms_and_forgets_freed_terms() {
        let mut d = TermDict::default();
        let stems = std::cell::Cell::new(0);
        let stem = |w: &str| {
            stems.set(stems.get() + 1);
            Some(Cow::Owned(w.trim_end_matches("ing").to_owned()))
        };
        let run = d.intern_word("running", stem).unwrap();
        d.retain(run);
        assert_eq!(d.intern_word("running", stem), Some(run));
        assert_eq!(d.intern_word("runn", stem), Some(run));
        assert_eq!(stems.get(), 2, "the second lookup of a word does not stem");
        d.release(run);
        // The term is gone; a reused id must not answer for the old words.
        let other = d.intern("other");
        assert_eq!(other, run);
        d.retain(other);
        let again = d.intern_word("running", stem).unwrap();
        assert_ne!(again, other);
        assert_eq!(d.text(again), "runn");
        assert_eq!(stems.get(), 3);
        assert_eq!(d.intern_word("zz", |_| None), None);
    }
}
