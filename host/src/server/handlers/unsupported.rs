//! Entry processors and conflict resolvers: features that run client code
//! (a JavaScript function body) on the server. This node runs no client
//! code, so each request is answered with its own response type saying so
//! (`success: false` and an `error` that names the feature), and a
//! `LIST_RESOLVERS` gets the truth: none. The connection stays open.

use std::collections::BTreeMap;

use crate::protocol::messages::{
    EntryProcess, EntryProcessBatch, EntryProcessBatchResponse, EntryProcessResponse,
    EntryProcessResult, ListResolvers, ListResolversResponse, RegisterResolver, ResolverResponse,
    UnregisterResolver,
};
use crate::protocol::Message;
use crate::server::session::Session;

/// The error of every entry-processor request.
pub const ENTRY_PROCESSORS_UNSUPPORTED: &str =
    "entry processors are not supported: this node does not run client code; \
     read the key, compute, and write it back with OP_BATCH instead";

/// The error of every resolver registration or removal.
pub const RESOLVERS_UNSUPPORTED: &str =
    "conflict resolvers are not supported: this node does not run client code; \
     concurrent writes merge by timestamp (last write wins) or as OR-map sets";

/// `ENTRY_PROCESS` → `ENTRY_PROCESS_RESPONSE {success: false, error}`.
pub async fn entry_process(s: &Session, r: EntryProcess) {
    tracing::debug!(conn = s.id, map = %r.map_name, key = %r.key, "entry processor refused");
    s.reply(&Message::EntryProcessResponse(EntryProcessResponse {
        request_id: r.request_id,
        success: false,
        result: None,
        new_value: None,
        error: Some(ENTRY_PROCESSORS_UNSUPPORTED.to_string()),
    }))
    .await;
}

/// `ENTRY_PROCESS_BATCH` → `ENTRY_PROCESS_BATCH_RESPONSE` with a failed
/// result for every key.
pub async fn entry_process_batch(s: &Session, r: EntryProcessBatch) {
    let results: BTreeMap<String, EntryProcessResult> = r
        .keys
        .into_iter()
        .map(|k| {
            (
                k,
                EntryProcessResult {
                    success: false,
                    result: None,
                    new_value: None,
                    error: Some(ENTRY_PROCESSORS_UNSUPPORTED.to_string()),
                },
            )
        })
        .collect();
    s.reply(&Message::EntryProcessBatchResponse(
        EntryProcessBatchResponse {
            request_id: r.request_id,
            results,
        },
    ))
    .await;
}

/// `REGISTER_RESOLVER` → `REGISTER_RESOLVER_RESPONSE {success: false, error}`.
pub async fn register(s: &Session, r: RegisterResolver) {
    tracing::debug!(conn = s.id, map = %r.map_name, "resolver registration refused");
    s.reply(&Message::RegisterResolverResponse(refusal(r.request_id)))
        .await;
}

/// `UNREGISTER_RESOLVER` → `UNREGISTER_RESOLVER_RESPONSE {success: false, error}`.
pub async fn unregister(s: &Session, r: UnregisterResolver) {
    s.reply(&Message::UnregisterResolverResponse(refusal(r.request_id)))
        .await;
}

/// `LIST_RESOLVERS` → `LIST_RESOLVERS_RESPONSE {resolvers: []}`.
pub async fn list(s: &Session, r: ListResolvers) {
    s.reply(&Message::ListResolversResponse(ListResolversResponse {
        request_id: r.request_id,
        resolvers: Vec::new(),
    }))
    .await;
}

fn refusal(request_id: String) -> ResolverResponse {
    ResolverResponse {
        request_id,
        success: false,
        error: Some(RESOLVERS_UNSUPPORTED.to_string()),
    }
}
