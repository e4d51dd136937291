//! A counting global allocator, for tests and benchmarks that measure
//! allocations: calls per thread and in all, bytes held as requested, and an
//! estimate of what glibc malloc really hands out for them.
//!
//! Install it in a test or bench binary:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: hangar_testkit::alloc::Counting = hangar_testkit::alloc::Counting;
//! ```
//!
//! The counters only move while [`Counting`] is the global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static CHUNKS: AtomicI64 = AtomicI64::new(0);

thread_local! {
    // A const thread-local with no destructor: safe to touch from the
    // allocator.
    static THREAD_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Counts every allocation and reallocation (per thread and in all) and the
/// bytes held; forwards every call to the system allocator unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

/// glibc malloc's chunk for a request on 64-bit: size + 8, rounded up to 16,
/// at least 32.
fn chunk(size: usize) -> i64 {
    i64::try_from(((size + 8 + 15) & !15).max(32)).unwrap_or(i64::MAX)
}

fn bytes(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn count_call() {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let _ = THREAD_CALLS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics and a const thread-local, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_call();
        LIVE.fetch_add(bytes(layout.size()), Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(bytes(layout.size()), Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_call();
        LIVE.fetch_add(bytes(new_size) - bytes(layout.size()), Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(new_size) - chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation and reallocation calls so far, all threads.
#[must_use]
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Bytes requested and not freed, all threads.
#[must_use]
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// [`live_bytes`] as glibc malloc chunks (header and rounding included): an
/// estimate of the heap really used.
#[must_use]
pub fn live_chunk_bytes() -> i64 {
    CHUNKS.load(Ordering::Relaxed)
}

/// Allocation and reallocation calls made on this thread while running `f`
/// (tests running in parallel on other threads do not count).
pub fn allocations_on_this_thread(f: impl FnOnce()) -> u64 {
    let before = THREAD_CALLS.with(Cell::get);
    f();
    THREAD_CALLS.with(Cell::get) - before
}
