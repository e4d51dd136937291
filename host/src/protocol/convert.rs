//! From wire writes to core ops, and from core ops to wire events.
//!
//! The kind of a [`ClientOp`] is decided exactly as the TopGun server does
//! ([`ClientOp::kind`]), and write concerns are parsed leniently, as the
//! legacy TypeScript server did ([`parse_write_concern`]).

use abi_stable::std_types::ROption;
use hangar_core::{KeyedOp, LwwRecord, MapOp, Timestamp, WriteConcern};

use super::messages::{ClientOp, OpBatch, ServerEvent, ServerEventType, WireLwwRecord};
use hangar_core::ConsistencyLevel;

/// What a [`ClientOp`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientOpKind {
    /// LWW put of `record`.
    Put,
    /// LWW remove: a tombstone.
    Remove,
    /// OR-Map add of `orRecord`.
    OrAdd,
    /// OR-Map remove of `orTag`.
    OrRemove,
}

/// A `CLIENT_OP` that is well-formed msgpack but asks for nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CLIENT_OP for {map}/{key} carries no record, orRecord or orTag (and is not a REMOVE)")]
pub struct EmptyOpError {
    /// The op's map.
    pub map: String,
    /// The op's key.
    pub key: String,
}

/// Parses a wire write concern.
///
/// Absent means MEMORY, the protocol's default. An unknown name also means
/// MEMORY: the legacy TypeScript server fell back to its default rather
/// than refusing the write, and clients written against it rely on that.
/// Names are matched exactly (`"APPLIED"`, not `"applied"`).
#[must_use]
pub fn parse_write_concern(name: Option<&str>) -> WriteConcern {
    name.and_then(WriteConcern::parse)
        .unwrap_or(WriteConcern::Memory)
}

/// Parses a write's replication consistency (`EVENTUAL`, `QUORUM`,
/// `STRONG`, any case); `None` when absent.
///
/// # Errors
/// The text names the value and what is accepted.
pub fn parse_consistency(name: Option<&str>) -> Result<Option<ConsistencyLevel>, String> {
    let Some(n) = name else { return Ok(None) };
    match n.to_ascii_uppercase().as_str() {
        "EVENTUAL" => Ok(Some(ConsistencyLevel::Eventual)),
        "QUORUM" => Ok(Some(ConsistencyLevel::Quorum)),
        "STRONG" => Ok(Some(ConsistencyLevel::Strong)),
        _ => Err(format!(
            "consistency {n:?} is not one of EVENTUAL, QUORUM, STRONG"
        )),
    }
}

impl ClientOp {
    /// Decides what this op asks for, in TopGun's order:
    /// 1. REMOVE if `opType` is `"REMOVE"` or `record` is `null`;
    /// 2. OR_ADD if `orRecord` is present (not null);
    /// 3. OR_REMOVE if `orTag` is present (not null);
    /// 4. PUT if `record` is present.
    ///
    /// # Errors
    /// [`EmptyOpError`] when none of these applies.
    pub fn kind(&self) -> Result<ClientOpKind, EmptyOpError> {
        if self.op_type.as_deref() == Some("REMOVE") || matches!(self.record, Some(None)) {
            Ok(ClientOpKind::Remove)
        } else if matches!(self.or_record, Some(Some(_))) {
            Ok(ClientOpKind::OrAdd)
        } else if matches!(self.or_tag, Some(Some(_))) {
            Ok(ClientOpKind::OrRemove)
        } else if matches!(self.record, Some(Some(_))) {
            Ok(ClientOpKind::Put)
        } else {
            Err(EmptyOpError {
                map: self.map_name.clone(),
                key: self.key.clone(),
            })
        }
    }

    /// The write concern this op names itself, parsed as
    /// [`parse_write_concern`] does; `None` if it names none.
    #[must_use]
    pub fn own_write_concern(&self) -> Option<WriteConcern> {
        self.write_concern
            .as_deref()
            .map(|s| parse_write_concern(Some(s)))
    }

    /// Converts to the core op. Record values move as raw msgpack bytes; no
    /// value is decoded or re-encoded.
    ///
    /// `now` supplies the tombstone's timestamp for a REMOVE that carries no
    /// record (`record: null` or absent); otherwise the client's timestamp is
    /// kept. Re-stamping with the server HLC, if wanted, is the caller's
    /// business.
    ///
    /// # Errors
    /// [`EmptyOpError`] as [`ClientOp::kind`].
    pub fn into_keyed_op(self, now: impl FnOnce() -> Timestamp) -> Result<KeyedOp, EmptyOpError> {
        // Same order as kind(); a test holds the two in agreement.
        let remove = self.op_type.as_deref() == Some("REMOVE") || matches!(self.record, Some(None));
        let op = if remove {
            let timestamp = match self.record {
                Some(Some(r)) => r.timestamp,
                _ => now(),
            };
            MapOp::Lww(LwwRecord {
                value: ROption::RNone,
                timestamp,
                ttl_ms: ROption::RNone,
            })
        } else if let Some(Some(r)) = self.or_record {
            MapOp::OrAdd(r.into())
        } else if let Some(Some(tag)) = self.or_tag {
            MapOp::OrRemove(tag.into())
        } else if let Some(Some(r)) = self.record {
            MapOp::Lww(r.into())
        } else {
            return Err(EmptyOpError {
                map: self.map_name,
                key: self.key,
            });
        };
        Ok(KeyedOp {
            map: self.map_name.into(),
            key: self.key.into(),
            op,
        })
    }
}

impl OpBatch {
    /// The write concern that applies to `op` of this batch: the op's own,
    /// else the batch's, else MEMORY (unknown names count as MEMORY).
    #[must_use]
    pub fn write_concern_for(&self, op: &ClientOp) -> WriteConcern {
        op.own_write_concern()
            .unwrap_or_else(|| parse_write_concern(self.write_concern.as_deref()))
    }
}

impl ServerEvent {
    /// The event that tells subscribers about an applied op: PUT or REMOVE
    /// (a tombstone record with `value: null`) for LWW, OR_ADD with the
    /// record, OR_REMOVE with the tag.
    #[must_use]
    pub fn from_keyed_op(op: &KeyedOp) -> Self {
        let mut ev = Self {
            map_name: op.map.to_string(),
            event_type: ServerEventType::Put,
            key: op.key.to_string(),
            record: None,
            or_record: None,
            or_tag: None,
        };
        match &op.op {
            MapOp::Lww(r) => {
                if r.is_tombstone() {
                    ev.event_type = ServerEventType::Remove;
                }
                ev.record = Some(WireLwwRecord::from(r.clone()));
            }
            MapOp::OrAdd(r) => {
                ev.event_type = ServerEventType::OrAdd;
                ev.or_record = Some(r.clone().into());
            }
            MapOp::OrRemove(tag) => {
                ev.event_type = ServerEventType::OrRemove;
                ev.or_tag = Some(tag.to_string());
            }
        }
        ev
    }
}
