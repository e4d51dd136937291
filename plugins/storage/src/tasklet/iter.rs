//! Work over an iterator as a tasklet: each slice takes items and folds them
//! into an accumulator until the budget is used or `max_items_per_slice`
//! items were taken; the tasklet is done when the iterator is exhausted.
//!
//! The budget is checked every `check_every` items (default 1, like the
//! legacy server); raise it when items are so cheap that reading the clock
//! would dominate, at the price of overrunning by up to that many items.

use std::fmt;

use super::{Deadline, Progress, Tasklet};

/// The per-item step of an [`IterTasklet`]: folds one item into the
/// accumulator. Implemented by every matching closure.
pub trait Fold<A, T>: FnMut(&mut A, T) + Send + 'static {}

impl<A, T, F: FnMut(&mut A, T) + Send + 'static> Fold<A, T> for F {}

/// A tasklet folding the items of `I` into an `A` with `F`.
pub struct IterTasklet<I, A, F> {
    name: String,
    iter: I,
    acc: Option<A>,
    fold: F,
    max_items_per_slice: usize,
    check_every: usize,
    processed: u64,
    on_cancel: Option<Box<dyn FnOnce() + Send>>,
}

impl<I, A, F> fmt::Debug for IterTasklet<I, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IterTasklet")
            .field("name", &self.name)
            .field("processed", &self.processed)
            .field("max_items_per_slice", &self.max_items_per_slice)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

impl<I, A, F> IterTasklet<I, A, F>
where
    I: Iterator + Send + 'static,
    A: Send + 'static,
    F: FnMut(&mut A, I::Item) + Send + 'static,
{
    /// Folds `iter` into `init` with `fold`, at most 1000 items per slice,
    /// checking the budget after every item.
    pub fn new(name: impl Into<String>, iter: I, init: A, fold: F) -> Self {
        Self {
            name: name.into(),
            iter,
            acc: Some(init),
            fold,
            max_items_per_slice: 1000,
            check_every: 1,
            processed: 0,
            on_cancel: None,
        }
    }

    /// Takes at most `n` (at least 1) items per slice.
    #[must_use]
    pub fn max_items_per_slice(mut self, n: usize) -> Self {
        self.max_items_per_slice = n.max(1);
        self
    }

    /// Reads the clock only every `n` (at least 1) items.
    #[must_use]
    pub fn check_every(mut self, n: usize) -> Self {
        self.check_every = n.max(1);
        self
    }

    /// Runs `hook` if the tasklet is cancelled.
    #[must_use]
    pub fn on_cancel(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.on_cancel = Some(Box::new(hook));
        self
    }

    /// Items folded so far.
    #[must_use]
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

impl<I, A, F> Tasklet for IterTasklet<I, A, F>
where
    I: Iterator + Send + 'static,
    A: Send + 'static,
    F: FnMut(&mut A, I::Item) + Send + 'static,
{
    type Output = A;

    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self, deadline: Deadline<'_>) -> Progress<A> {
        let acc = self
            .acc
            .as_mut()
            .expect("an IterTasklet MUST NOT be stepped after Done");
        let mut taken = 0usize;
        loop {
            let Some(item) = self.iter.next() else {
                return Progress::Done(self.acc.take().expect("checked above"));
            };
            (self.fold)(acc, item);
            taken += 1;
            self.processed += 1;
            if taken >= self.max_items_per_slice
                || (taken % self.check_every == 0 && deadline.expired())
            {
                return Progress::MadeProgress;
            }
        }
    }

    fn on_cancel(&mut self) {
        if let Some(hook) = self.on_cancel.take() {
            hook();
        }
    }
}

/// Collects `f(item)` for every item, in order.
pub fn map<I, U, F>(
    name: impl Into<String>,
    iter: I,
    mut f: F,
) -> IterTasklet<I, Vec<U>, impl Fold<Vec<U>, I::Item>>
where
    I: Iterator + Send + 'static,
    U: Send + 'static,
    F: FnMut(I::Item) -> U + Send + 'static,
{
    let init = Vec::with_capacity(iter.size_hint().0);
    IterTasklet::new(name, iter, init, move |out: &mut Vec<U>, item| {
        out.push(f(item));
    })
}

/// Collects the items for which `keep` is true, in order.
pub fn filter<I, T, P>(
    name: impl Into<String>,
    iter: I,
    mut keep: P,
) -> IterTasklet<I, Vec<T>, impl Fold<Vec<T>, T>>
where
    I: Iterator<Item = T> + Send + 'static,
    T: Send + 'static,
    P: FnMut(&T) -> bool + Send + 'static,
{
    IterTasklet::new(name, iter, Vec::new(), move |out: &mut Vec<T>, item| {
        if keep(&item) {
            out.push(item);
        }
    })
}

/// Calls `f` on every item; the result is the number of items.
pub fn for_each<I, F>(
    name: impl Into<String>,
    iter: I,
    mut f: F,
) -> IterTasklet<I, u64, impl Fold<u64, I::Item>>
where
    I: Iterator + Send + 'static,
    F: FnMut(I::Item) + Send + 'static,
{
    IterTasklet::new(name, iter, 0u64, move |n: &mut u64, item| {
        f(item);
        *n += 1;
    })
}

/// Folds the items into `init` with `f`: the result is
/// `f(...f(f(init, a), b)..., z)`.
pub fn reduce<I, A, F>(
    name: impl Into<String>,
    iter: I,
    init: A,
    f: F,
) -> IterTasklet<I, A, impl Fold<A, I::Item>>
where
    I: Iterator + Send + 'static,
    A: Send + 'static,
    F: FnMut(&mut A, I::Item) + Send + 'static,
{
    IterTasklet::new(name, iter, init, f)
}
