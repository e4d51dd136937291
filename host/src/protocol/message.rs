//! The [`Message`] enum, [`decode_frame`] and [`Message::encode`].
//!
//! Decoding a frame: [`check_frame`] (size, depth, lengths), then a look at
//! the top-level map's `type` string, then serde into that type's struct with
//! the protocol's own deserializer ([`super::de`]). An unknown `type` is not
//! an error: it comes back as [`Decoded::Unknown`]; the caller drops the
//! frame and answers `ERROR` naming the type.

use serde::{Deserialize, Serialize};

use super::de;
use super::error::{EncodeError, FrameError};
use super::messages::{
    Auth, AuthAck, AuthFail, AuthRequired, Batch, ClientApplyAck, ClientOp, CounterRequest,
    CounterState, DeviceAck, DeviceHello, EntryProcess, EntryProcessBatch,
    EntryProcessBatchResponse, EntryProcessResponse, ErrorPayload, GcPrune, JournalEventMessage,
    JournalRead, JournalReadResponse, JournalSubscribe, JournalUnsubscribe, ListResolvers,
    ListResolversResponse, LockGranted, LockRelease, LockReleased, LockRequest, MerkleReqBucket,
    OpAck, OpBatch, OpRejected, OrMapDiffRequest, OrMapDiffResponse, OrMapPushDiff, OrMapSyncInit,
    OrMapSyncRespLeaf, OrMapSyncRespRoot, PartitionMap, PartitionMapRequest, Ping, Pong, QueryResp,
    QuerySub, QuerySyncInit, QueryUnsub, QueryUpdatePayload, RegisterResolver, ResolverResponse,
    Search, SearchResp, SearchSub, SearchUnsub, SearchUpdatePayload, ServerBatchEvent, ServerEvent,
    SyncInit, SyncResetRequired, SyncRespBuckets, SyncRespLeaf, SyncRespRoot, TopicMessage,
    TopicPub, TopicRef, UnregisterResolver,
};
use super::scan::{check_frame, read_head, skip_value};

/// The `{payload: T}` wrapper of payload-layout messages (`type` is ignored).
#[derive(Deserialize)]
struct Envelope<T> {
    payload: T,
}

macro_rules! messages {
    (
        flat { $( $(#[$fdoc:meta])* $fname:literal => $fvar:ident($fty:ty), )* }
        payload { $( $(#[$pdoc:meta])* $pname:literal => $pvar:ident($pty:ty), )* }
    ) => {
        /// One wire message of a type this node handles.
        ///
        /// Flat messages are tuple variants (their fields sit beside `type`);
        /// payload messages are `{ payload }` struct variants, mirroring the
        /// wire's `{type, payload: {...}}`. Serializing with
        /// [`Message::encode`] writes exactly that shape.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "type")]
        #[allow(
            clippy::large_enum_variant,
            reason = "decoded once, moved by value, never stored in bulk"
        )]
        pub enum Message {
            $( $(#[$fdoc])* #[serde(rename = $fname)] $fvar($fty), )*
            $(
                $(#[$pdoc])*
                #[serde(rename = $pname)]
                $pvar {
                    /// The message's `payload`.
                    payload: $pty,
                },
            )*
        }

        impl Message {
            /// Every wire `type` this node decodes.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($fname,)* $($pname,)*];

            /// The wire `type` of this message.
            #[must_use]
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$fvar(_) => $fname, )*
                    $( Self::$pvar { .. } => $pname, )*
                }
            }

            /// Deserializes `frame` as the message type `type_name`;
            /// `Ok(None)` when the type is not one this node handles.
            fn decode_as(type_name: &str, frame: &[u8]) -> Result<Option<Self>, FrameError> {
                Ok(Some(match type_name {
                    $( $fname => Self::$fvar(de::from_slice::<$fty>(frame).map_err(|e| invalid($fname, e))?), )*
                    $( $pname => Self::$pvar {
                        payload: de::from_slice::<Envelope<$pty>>(frame).map_err(|e| invalid($pname, e))?.payload,
                    }, )*
                    _ => return Ok(None),
                }))
            }
        }
    };
}

fn invalid(msg_type: &'static str, e: de::DeError) -> FrameError {
    FrameError::Invalid {
        msg_type,
        reason: e.0,
    }
}

messages! {
    flat {
        /// `AUTH_REQUIRED` (S→C).
        "AUTH_REQUIRED" => AuthRequired(AuthRequired),
        /// `AUTH` (C→S).
        "AUTH" => Auth(Auth),
        /// `AUTH_ACK` (S→C).
        "AUTH_ACK" => AuthAck(AuthAck),
        /// `AUTH_FAIL` (S→C).
        "AUTH_FAIL" => AuthFail(AuthFail),
        /// `PING` (C→S).
        "PING" => Ping(Ping),
        /// `PONG` (S→C).
        "PONG" => Pong(Pong),
        /// `SYNC_INIT` (C→S).
        "SYNC_INIT" => SyncInit(SyncInit),
        /// `ORMAP_SYNC_INIT` (C→S).
        "ORMAP_SYNC_INIT" => OrMapSyncInit(OrMapSyncInit),
        /// `BATCH` (C→S): unpack with [`super::unpack_batch`].
        "BATCH" => Batch(Batch),
        /// `DEVICE_HELLO` (C→S).
        "DEVICE_HELLO" => DeviceHello(DeviceHello),
        /// `DEVICE_ACK` (S→C).
        "DEVICE_ACK" => DeviceAck(DeviceAck),
        /// `CLIENT_APPLY_ACK` (C→S).
        "CLIENT_APPLY_ACK" => ClientApplyAck(ClientApplyAck),
        /// `ENTRY_PROCESS` (C→S).
        "ENTRY_PROCESS" => EntryProcess(EntryProcess),
        /// `ENTRY_PROCESS_BATCH` (C→S).
        "ENTRY_PROCESS_BATCH" => EntryProcessBatch(EntryProcessBatch),
        /// `ENTRY_PROCESS_RESPONSE` (S→C).
        "ENTRY_PROCESS_RESPONSE" => EntryProcessResponse(EntryProcessResponse),
        /// `ENTRY_PROCESS_BATCH_RESPONSE` (S→C).
        "ENTRY_PROCESS_BATCH_RESPONSE" => EntryProcessBatchResponse(EntryProcessBatchResponse),
        /// `REGISTER_RESOLVER` (C→S).
        "REGISTER_RESOLVER" => RegisterResolver(RegisterResolver),
        /// `REGISTER_RESOLVER_RESPONSE` (S→C).
        "REGISTER_RESOLVER_RESPONSE" => RegisterResolverResponse(ResolverResponse),
        /// `UNREGISTER_RESOLVER` (C→S).
        "UNREGISTER_RESOLVER" => UnregisterResolver(UnregisterResolver),
        /// `UNREGISTER_RESOLVER_RESPONSE` (S→C).
        "UNREGISTER_RESOLVER_RESPONSE" => UnregisterResolverResponse(ResolverResponse),
        /// `LIST_RESOLVERS` (C→S).
        "LIST_RESOLVERS" => ListResolvers(ListResolvers),
        /// `JOURNAL_SUBSCRIBE` (C→S).
        "JOURNAL_SUBSCRIBE" => JournalSubscribe(JournalSubscribe),
        /// `JOURNAL_UNSUBSCRIBE` (C→S).
        "JOURNAL_UNSUBSCRIBE" => JournalUnsubscribe(JournalUnsubscribe),
        /// `JOURNAL_READ` (C→S).
        "JOURNAL_READ" => JournalRead(JournalRead),
        /// `JOURNAL_READ_RESPONSE` (S→C).
        "JOURNAL_READ_RESPONSE" => JournalReadResponse(JournalReadResponse),
        /// `JOURNAL_EVENT` (S→C): the entry sits under `event`.
        "JOURNAL_EVENT" => JournalEvent(JournalEventMessage),
        /// `LIST_RESOLVERS_RESPONSE` (S→C).
        "LIST_RESOLVERS_RESPONSE" => ListResolversResponse(ListResolversResponse),
    }
    payload {
        /// `ERROR` (S→C).
        "ERROR" => Error(ErrorPayload),
        /// `CLIENT_OP` (C→S).
        "CLIENT_OP" => ClientOp(ClientOp),
        /// `OP_BATCH` (C→S).
        "OP_BATCH" => OpBatch(OpBatch),
        /// `OP_ACK` (S→C).
        "OP_ACK" => OpAck(OpAck),
        /// `OP_REJECTED` (S→C).
        "OP_REJECTED" => OpRejected(OpRejected),
        /// `SERVER_EVENT` (S→C).
        "SERVER_EVENT" => ServerEvent(ServerEvent),
        /// `SERVER_BATCH_EVENT` (S→C).
        "SERVER_BATCH_EVENT" => ServerBatchEvent(ServerBatchEvent),
        /// `QUERY_SUB` (C→S).
        "QUERY_SUB" => QuerySub(QuerySub),
        /// `QUERY_RESP` (S→C).
        "QUERY_RESP" => QueryResp(QueryResp),
        /// `QUERY_UPDATE` (S→C).
        "QUERY_UPDATE" => QueryUpdate(QueryUpdatePayload),
        /// `QUERY_UNSUB` (C→S).
        "QUERY_UNSUB" => QueryUnsub(QueryUnsub),
        /// `QUERY_SYNC_INIT` (C→S): accepted, nothing to do.
        "QUERY_SYNC_INIT" => QuerySyncInit(QuerySyncInit),
        /// `SEARCH` (C→S).
        "SEARCH" => Search(Search),
        /// `SEARCH_RESP` (S→C).
        "SEARCH_RESP" => SearchResp(SearchResp),
        /// `SEARCH_SUB` (C→S): a live search.
        "SEARCH_SUB" => SearchSub(SearchSub),
        /// `SEARCH_UNSUB` (C→S).
        "SEARCH_UNSUB" => SearchUnsub(SearchUnsub),
        /// `SEARCH_UPDATE` (S→C).
        "SEARCH_UPDATE" => SearchUpdate(SearchUpdatePayload),
        /// `SYNC_RESP_ROOT` (S→C).
        "SYNC_RESP_ROOT" => SyncRespRoot(SyncRespRoot),
        /// `MERKLE_REQ_BUCKET` (C→S).
        "MERKLE_REQ_BUCKET" => MerkleReqBucket(MerkleReqBucket),
        /// `SYNC_RESP_BUCKETS` (S→C).
        "SYNC_RESP_BUCKETS" => SyncRespBuckets(SyncRespBuckets),
        /// `SYNC_RESP_LEAF` (S→C).
        "SYNC_RESP_LEAF" => SyncRespLeaf(SyncRespLeaf),
        /// `SYNC_RESET_REQUIRED` (S→C).
        "SYNC_RESET_REQUIRED" => SyncResetRequired(SyncResetRequired),
        /// `ORMAP_SYNC_RESP_ROOT` (S→C).
        "ORMAP_SYNC_RESP_ROOT" => OrMapSyncRespRoot(OrMapSyncRespRoot),
        /// `ORMAP_MERKLE_REQ_BUCKET` (C→S).
        "ORMAP_MERKLE_REQ_BUCKET" => OrMapMerkleReqBucket(MerkleReqBucket),
        /// `ORMAP_SYNC_RESP_BUCKETS` (S→C).
        "ORMAP_SYNC_RESP_BUCKETS" => OrMapSyncRespBuckets(SyncRespBuckets),
        /// `ORMAP_SYNC_RESP_LEAF` (S→C).
        "ORMAP_SYNC_RESP_LEAF" => OrMapSyncRespLeaf(OrMapSyncRespLeaf),
        /// `ORMAP_DIFF_REQUEST` (C→S).
        "ORMAP_DIFF_REQUEST" => OrMapDiffRequest(OrMapDiffRequest),
        /// `ORMAP_DIFF_RESPONSE` (S→C).
        "ORMAP_DIFF_RESPONSE" => OrMapDiffResponse(OrMapDiffResponse),
        /// `ORMAP_PUSH_DIFF` (C→S).
        "ORMAP_PUSH_DIFF" => OrMapPushDiff(OrMapPushDiff),
        /// `LOCK_REQUEST` (C→S).
        "LOCK_REQUEST" => LockRequest(LockRequest),
        /// `LOCK_GRANTED` (S→C).
        "LOCK_GRANTED" => LockGranted(LockGranted),
        /// `LOCK_RELEASE` (C→S).
        "LOCK_RELEASE" => LockRelease(LockRelease),
        /// `LOCK_RELEASED` (S→C).
        "LOCK_RELEASED" => LockReleased(LockReleased),
        /// `TOPIC_SUB` (C→S).
        "TOPIC_SUB" => TopicSub(TopicRef),
        /// `TOPIC_UNSUB` (C→S).
        "TOPIC_UNSUB" => TopicUnsub(TopicRef),
        /// `TOPIC_PUB` (C→S).
        "TOPIC_PUB" => TopicPub(TopicPub),
        /// `TOPIC_MESSAGE` (S→C).
        "TOPIC_MESSAGE" => TopicMessage(TopicMessage),
        /// `PARTITION_MAP_REQUEST` (C→S).
        "PARTITION_MAP_REQUEST" => PartitionMapRequest(PartitionMapRequest),
        /// `PARTITION_MAP` (S→C).
        "PARTITION_MAP" => PartitionMap(PartitionMap),
        /// `GC_PRUNE` (S→C).
        "GC_PRUNE" => GcPrune(GcPrune),
        /// `COUNTER_REQUEST` (C→S).
        "COUNTER_REQUEST" => CounterRequest(CounterRequest),
        /// `COUNTER_SYNC` (C→S).
        "COUNTER_SYNC" => CounterSync(CounterState),
        /// `COUNTER_RESPONSE` (S→C).
        "COUNTER_RESPONSE" => CounterResponse(CounterState),
        /// `COUNTER_UPDATE` (S→C).
        "COUNTER_UPDATE" => CounterUpdate(CounterState),
    }
}

impl Message {
    /// Encodes the message as one frame: a msgpack map with string keys,
    /// `type` first.
    ///
    /// # Errors
    /// Only for values the wire cannot carry: a [`super::RawMsgpack`] whose
    /// bytes are not valid msgpack, or non-string map keys.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        rmp_serde::to_vec_named(self).map_err(|source| EncodeError {
            msg_type: self.type_name(),
            source,
        })
    }
}

/// What a well-formed frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a transient return value, matched at once"
)]
pub enum Decoded {
    /// A message of a type this node handles.
    Message(Message),
    /// A well-formed message whose `type` this node does not handle. The
    /// caller drops it, answers `ERROR` naming the type, and keeps the
    /// connection.
    Unknown {
        /// The `type` it carried.
        type_name: String,
    },
}

/// The bytes of the string whose header starts at `pos` and whose value ends
/// at `next`; `None` if the value there is not a string.
fn str_body(frame: &[u8], pos: usize, next: usize) -> Option<&[u8]> {
    let header = match frame[pos] {
        0xa0..=0xbf => 1,
        0xd9 => 2,
        0xda => 3,
        0xdb => 5,
        _ => return None,
    };
    frame.get(pos + header..next)
}

/// Finds the top-level `type` string of a frame that passed the scan.
fn find_type(frame: &[u8]) -> Result<&str, FrameError> {
    let head = read_head(frame, 0)?;
    let found = match frame[0] {
        0x80..=0x8f | 0xde | 0xdf => None,
        0x90..=0x9f | 0xdc | 0xdd => Some("an array"),
        0xa0..=0xbf | 0xd9..=0xdb => Some("a string"),
        0xc4..=0xc6 => Some("binary"),
        0xc0 => Some("nil"),
        _ => Some("a scalar"),
    };
    if let Some(found) = found {
        return Err(FrameError::NotAMap { found });
    }
    let entries = head.children / 2;
    let mut pos = head.next;
    for _ in 0..entries {
        // skip_value, not read_head: a key may itself be a container.
        let key_end = skip_value(frame, pos)?;
        let is_type = str_body(frame, pos, key_end) == Some(b"type".as_slice());
        pos = key_end;
        if is_type {
            let value = read_head(frame, pos)?;
            let body = str_body(frame, pos, value.next).ok_or(FrameError::TypeNotString)?;
            return std::str::from_utf8(body).map_err(|_| FrameError::TypeNotString);
        }
        pos = skip_value(frame, pos)?;
    }
    Err(FrameError::MissingType)
}

/// Decodes one inbound frame.
///
/// Applies every hostile-input limit first ([`check_frame`]), then decodes
/// the typed message. A `BATCH` comes back as [`Message::Batch`]; unpack it
/// with [`super::unpack_batch`].
///
/// # Errors
/// Any [`FrameError`]: the frame is dropped and the connection stays up. An
/// unknown `type` is not an error but [`Decoded::Unknown`].
pub fn decode_frame(frame: &[u8]) -> Result<Decoded, FrameError> {
    check_frame(frame)?;
    decode_checked(frame)
}

/// [`decode_frame`] for a frame that already passed [`check_frame`].
pub(crate) fn decode_checked(frame: &[u8]) -> Result<Decoded, FrameError> {
    let type_name = find_type(frame)?;
    match Message::decode_as(type_name, frame)? {
        Some(m) => Ok(Decoded::Message(m)),
        None => Ok(Decoded::Unknown {
            type_name: type_name.to_owned(),
        }),
    }
}
