//! The term dictionary: each distinct term text gets a small integer id.
//!
//! Postings and the per-document term cache hold `TermId`s, not strings, so
//! a document's terms cost 8 bytes each and re-indexing a document compares
//! integers. Ids are reference-counted by the number of documents holding the
//! term; an id whose count drops to 0 is freed and may be given to another
//! term later, so the dictionary does not grow with terms that are gone.

use std::collections::HashMap;

/// Dense id of a term within one [`TermDict`].
pub(crate) type TermId = u32;

#[derive(Debug)]
struct Slot {
    text: Box<str>,
    docs: u32,
}

/// Interns term texts. See the module docs for the id lifecycle.
#[derive(Debug, Default)]
pub(crate) struct TermDict {
    ids: HashMap<Box<str>, TermId>,
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
}
