//! Default storage module (filled in by the storage work).
//!
//! # Layout
//!
//! - `write_ack`: [`write_ack::WriteAckManager`], the write-concern levels of
//!   each write and the callers waiting for them (`notify_acks` /
//!   `await_acks`).
//! - `tasklet`: [`tasklet::TaskletScheduler`], long work cut into slices under
//!   a time budget so that it never stalls writes.
//! - `event_pool`: [`event_pool::EventPool`], reusable change-event buffers
//!   for the fan-out path.

pub mod event_pool;
pub mod tasklet;
pub mod write_ack;
