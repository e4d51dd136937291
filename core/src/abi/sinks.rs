//! ABI mirrors of the sinks the host gives the storage module: live-query
//! updates, change events and journal entries.

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use abi_stable::sabi_trait;
use abi_stable::std_types::RArc;

use super::convert::conversions;
use super::guard::{guard, report, FfiResult};
use crate::module::journal::{JournalEvent, JournalSink};
use crate::module::storage_types::{ChangeEvent, ChangeSink, QuerySink, QueryUpdate};

/// ABI mirror of [`QuerySink`].
#[sabi_trait]
pub trait FfiQuerySink: Send + Sync + Clone {
    /// See [`QuerySink::deliver`].
    #[sabi(last_prefix_field)]
    fn deliver(&self, update: &QueryUpdate) -> FfiResult<()>;
}

/// A query sink as it crosses the boundary.
pub type FfiQuerySinkBox = FfiQuerySink_TO<'static, RArc<()>>;

/// Exports a native query sink.
#[derive(Clone)]
pub struct QuerySinkExport(pub std::sync::Arc<dyn QuerySink>);

impl FfiQuerySink for QuerySinkExport {
    fn deliver(&self, update: &QueryUpdate) -> FfiResult<()> {
        guard("query_sink.deliver", || {
            self.0.deliver(update);
            Ok(())
        })
    }
}

/// A query sink received through the boundary.
pub struct ForeignQuerySink(pub FfiQuerySinkBox);

impl QuerySink for ForeignQuerySink {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn deliver(&self, update: &QueryUpdate) {
        report(self.0.deliver(update), || ());
    }
}

conversions! {
    native: QuerySink,
    ffi_box: FfiQuerySinkBox,
    ffi_to: FfiQuerySink_TO,
    export: QuerySinkExport,
    foreign: ForeignQuerySink,
    to_ffi: query_sink_to_ffi,
    from_ffi: query_sink_from_ffi,
    to_ffi_forced: query_sink_to_ffi_forced,
    from_ffi_forced: query_sink_from_ffi_forced,
}

/// ABI mirror of [`ChangeSink`].
#[sabi_trait]
pub trait FfiChangeSink: Send + Sync + Clone {
    /// See [`ChangeSink::on_change`].
    #[sabi(last_prefix_field)]
    fn on_change(&self, event: &ChangeEvent) -> FfiResult<()>;
}

/// A change sink as it crosses the boundary.
pub type FfiChangeSinkBox = FfiChangeSink_TO<'static, RArc<()>>;

/// Exports a native change sink.
#[derive(Clone)]
pub struct ChangeSinkExport(pub std::sync::Arc<dyn ChangeSink>);

impl FfiChangeSink for ChangeSinkExport {
    fn on_change(&self, event: &ChangeEvent) -> FfiResult<()> {
        guard("change_sink.on_change", || {
            self.0.on_change(event);
            Ok(())
        })
    }
}

/// A change sink received through the boundary.
pub struct ForeignChangeSink(pub FfiChangeSinkBox);

impl ChangeSink for ForeignChangeSink {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn on_change(&self, event: &ChangeEvent) {
        report(self.0.on_change(event), || ());
    }
}

conversions! {
    native: ChangeSink,
    ffi_box: FfiChangeSinkBox,
    ffi_to: FfiChangeSink_TO,
    export: ChangeSinkExport,
    foreign: ForeignChangeSink,
    to_ffi: change_sink_to_ffi,
    from_ffi: change_sink_from_ffi,
    to_ffi_forced: change_sink_to_ffi_forced,
    from_ffi_forced: change_sink_from_ffi_forced,
}

/// ABI mirror of [`JournalSink`].
#[sabi_trait]
pub trait FfiJournalSink: Send + Sync + Clone {
    /// See [`JournalSink::deliver`].
    #[sabi(last_prefix_field)]
    fn deliver(&self, event: &JournalEvent) -> FfiResult<()>;
}

/// A journal sink as it crosses the boundary.
pub type FfiJournalSinkBox = FfiJournalSink_TO<'static, RArc<()>>;

/// Exports a native journal sink.
#[derive(Clone)]
pub struct JournalSinkExport(pub std::sync::Arc<dyn JournalSink>);

impl FfiJournalSink for JournalSinkExport {
    fn deliver(&self, event: &JournalEvent) -> FfiResult<()> {
        guard("journal_sink.deliver", || {
            self.0.deliver(event);
            Ok(())
        })
    }
}

/// A journal sink received through the boundary.
pub struct ForeignJournalSink(pub FfiJournalSinkBox);

impl JournalSink for ForeignJournalSink {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn deliver(&self, event: &JournalEvent) {
        report(self.0.deliver(event), || ());
    }
}

conversions! {
    native: JournalSink,
    ffi_box: FfiJournalSinkBox,
    ffi_to: FfiJournalSink_TO,
    export: JournalSinkExport,
    foreign: ForeignJournalSink,
    to_ffi: journal_sink_to_ffi,
    from_ffi: journal_sink_from_ffi,
    to_ffi_forced: journal_sink_to_ffi_forced,
    from_ffi_forced: journal_sink_from_ffi_forced,
}
