//! Requests for features that run client code on the server: entry
//! processors (`ENTRY_PROCESS`, `ENTRY_PROCESS_BATCH`) and conflict
//! resolvers (`REGISTER_RESOLVER`, `UNREGISTER_RESOLVER`, `LIST_RESOLVERS`).
//! This node runs no client code, so it answers each with its response
//! type saying so (`success: false` and an `error`), rather than leaving the
//! client waiting for an answer that never comes.
//!
//! All are flat: fields sit beside `type`. The processor or resolver
//! itself is kept as a dynamic value (never run), so every message
//! round-trips.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `ENTRY_PROCESS` (C→S): run a processor on one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryProcess {
    /// Correlates the answer.
    pub request_id: String,
    /// The map.
    #[serde(default)]
    pub map_name: String,
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The processor `{name, code, args?}` (never run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<rmpv::Value>,
}

/// `ENTRY_PROCESS_BATCH` (C→S): run a processor on several keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryProcessBatch {
    /// Correlates the answer.
    pub request_id: String,
    /// The map.
    #[serde(default)]
    pub map_name: String,
    /// The keys; the answer has one result per key.
    #[serde(default)]
    pub keys: Vec<String>,
    /// The processor `{name, code, args?}` (never run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<rmpv::Value>,
}

/// One key's outcome in `ENTRY_PROCESS_RESPONSE` and
/// `ENTRY_PROCESS_BATCH_RESPONSE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryProcessResult {
    /// Whether the processor ran.
    pub success: bool,
    /// What the processor returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<rmpv::Value>,
    /// The key's value afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<rmpv::Value>,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ENTRY_PROCESS_RESPONSE` (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryProcessResponse {
    /// The request answered.
    pub request_id: String,
    /// Whether the processor ran.
    pub success: bool,
    /// What the processor returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<rmpv::Value>,
    /// The key's value afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<rmpv::Value>,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ENTRY_PROCESS_BATCH_RESPONSE` (S→C): one result per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryProcessBatchResponse {
    /// The request answered.
    pub request_id: String,
    /// Key → outcome.
    pub results: BTreeMap<String, EntryProcessResult>,
}

/// `REGISTER_RESOLVER` (C→S): install a conflict resolver on a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResolver {
    /// Correlates the answer.
    pub request_id: String,
    /// The map.
    #[serde(default)]
    pub map_name: String,
    /// The resolver `{name, code, priority?, keyPattern?}` (never run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<rmpv::Value>,
}

/// `UNREGISTER_RESOLVER` (C→S): remove a resolver by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterResolver {
    /// Correlates the answer.
    pub request_id: String,
    /// The map.
    #[serde(default)]
    pub map_name: String,
    /// The resolver.
    #[serde(default)]
    pub resolver_name: String,
}

/// `REGISTER_RESOLVER_RESPONSE` and `UNREGISTER_RESOLVER_RESPONSE` (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolverResponse {
    /// The request answered.
    pub request_id: String,
    /// Whether it was done.
    pub success: bool,
    /// Why it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `LIST_RESOLVERS` (C→S).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResolvers {
    /// Correlates the answer.
    pub request_id: String,
    /// Only this map's resolvers, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_name: Option<String>,
}

/// `LIST_RESOLVERS_RESPONSE` (S→C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResolversResponse {
    /// The request answered.
    pub request_id: String,
    /// The resolvers installed: always none on this node.
    pub resolvers: Vec<rmpv::Value>,
}
