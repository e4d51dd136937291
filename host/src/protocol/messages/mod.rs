//! The typed payloads of every message this node handles, one file per
//! domain. The [`super::Message`] enum puts the `type` tag around them.
//!
//! Conventions every struct here follows:
//! - `#[serde(rename_all = "camelCase")]`; unknown fields are ignored.
//! - Optional fields are `Option` with `#[serde(default)]` and are omitted
//!   when `None` (TypeScript strips `undefined`, so absent is the norm).
//! - Every integer is read through [`super::num`], so float64 integers from
//!   JavaScript decode.
//! - Dynamic values are [`super::RawMsgpack`] or [`rmpv::Value`], as
//!   [`super::raw`] explains.

pub mod coord;
pub mod counters;
pub mod events;
pub mod http_sync;
pub mod journal;
pub mod query;
pub mod records;
pub mod session;
pub mod sync;
pub mod unsupported;
pub mod write;

pub use coord::{
    Batch, LockGranted, LockRelease, LockReleased, LockRequest, NodeEndpoints, NodeInfo,
    NodeStatus, PartitionInfo, PartitionMap, PartitionMapRequest, TopicMessage, TopicPub, TopicRef,
};
pub use counters::{CounterRequest, CounterState};
pub use events::{ChangeType, QueryUpdatePayload, ServerBatchEvent, ServerEvent, ServerEventType};
pub use http_sync::{
    decode_http_sync, DeltaRecord, HttpAck, HttpQuery, HttpQueryResult, HttpSearch,
    HttpSearchResult, HttpSyncError, HttpSyncRequest, HttpSyncResponse, MapDelta, SyncMapRequest,
};
pub use journal::{
    JournalEventData, JournalEventMessage, JournalRead, JournalReadResponse, JournalSubscribe,
    JournalUnsubscribe,
};
pub use query::{
    CursorStatus, QueryResp, QueryResultEntry, QuerySub, QuerySyncInit, QueryUnsub, Search,
    SearchOptions, SearchResp, SearchResult, SearchSub, SearchUnsub, SearchUpdatePayload,
};
pub use records::{OrMapEntry, WireLwwRecord, WireOrRecord};
pub use session::{
    Auth, AuthAck, AuthFail, AuthRequired, ClientApplyAck, DeviceAck, DeviceHello, ErrorPayload,
    Ping, Pong,
};
pub use sync::{
    GcPrune, MerkleReqBucket, OrMapDiffRequest, OrMapDiffResponse, OrMapPushDiff, OrMapSyncInit,
    OrMapSyncRespLeaf, OrMapSyncRespRoot, SyncInit, SyncLeafRecord, SyncResetRequired,
    SyncRespBuckets, SyncRespLeaf, SyncRespRoot,
};
pub use unsupported::{
    EntryProcess, EntryProcessBatch, EntryProcessBatchResponse, EntryProcessResponse,
    EntryProcessResult, ListResolvers, ListResolversResponse, RegisterResolver, ResolverResponse,
    UnregisterResolver,
};
pub use write::{ClientOp, OpAck, OpBatch, OpRejected, OpResult};
