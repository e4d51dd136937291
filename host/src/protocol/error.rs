//! Why an inbound frame was refused, and what the connection should do about it.
//!
//! Every variant is a reason to drop the frame and keep the connection: the
//! TopGun server and client both treat a bad frame as noise, not as a reason
//! to hang up. Unlike TopGun, the client is told: it gets an `ERROR` with the
//! code [`FrameError::client_error_code`] gives (413 for a BATCH over its
//! item cap, 400 for the rest) and the error's text, which says what was
//! wrong and where, so a buggy client is not left guessing why its frames
//! went unanswered.

/// An inbound frame that could not be turned into a [`super::Message`].
///
/// Offsets are byte offsets into the frame (or into the BATCH item for
/// errors found inside one), so a logged error points at the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is larger than [`super::MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the refused frame.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame has no bytes at all.
    #[error("empty frame: expected one msgpack map")]
    Empty,
    /// Containers nest deeper than [`super::MAX_DEPTH`].
    #[error("msgpack nesting exceeds {max} levels (container at byte {offset})")]
    TooDeep {
        /// The limit in force.
        max: usize,
        /// Where the container that crossed the limit starts.
        offset: usize,
    },
    /// A string, binary, extension or container declares more content than
    /// the frame has left: the header lies about its length.
    #[error(
        "value at byte {offset} declares {declared} {unit} but only {remaining} bytes remain in the frame"
    )]
    LengthExceedsInput {
        /// Where the lying header starts.
        offset: usize,
        /// The declared length (bytes, elements or entries).
        declared: u64,
        /// What `declared` counts.
        unit: &'static str,
        /// Bytes left after the header.
        remaining: usize,
    },
    /// The frame ends inside a value's header.
    #[error("frame truncated: the value at byte {offset} needs {needed} header bytes, {remaining} remain")]
    Truncated {
        /// Where the cut value starts.
        offset: usize,
        /// Header bytes the value needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// The reserved msgpack marker `0xc1` appeared.
    #[error("reserved msgpack marker 0xc1 at byte {offset}")]
    ReservedMarker {
        /// Where the marker is.
        offset: usize,
    },
    /// Bytes follow the first complete msgpack value. A frame carries exactly
    /// one message.
    #[error("{extra} trailing bytes after the message ending at byte {offset}; a frame carries exactly one msgpack value")]
    TrailingBytes {
        /// Where the first value ended.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// The top-level value is not a map.
    #[error("a message must be a msgpack map with a string `type`, found {found}")]
    NotAMap {
        /// The kind of value found instead.
        found: &'static str,
    },
    /// The top-level map has no `type` key.
    #[error("message has no `type` key")]
    MissingType,
    /// The `type` key holds something other than a string.
    #[error("message `type` must be a string")]
    TypeNotString,
    /// The message type is known but its fields do not match its schema
    /// (a missing required field, a wrong type, a fractional integer, ...).
    #[error("malformed {msg_type} message: {reason}")]
    Invalid {
        /// The wire type that failed.
        msg_type: &'static str,
        /// What serde found wrong, with the field where it knows it.
        reason: String,
    },
    /// A BATCH envelope holds more than [`super::MAX_BATCH_ITEMS`] messages.
    /// The caller answers `ERROR 413` (see [`FrameError::client_error_code`]).
    #[error("BATCH holds more than {max} messages")]
    BatchTooLarge {
        /// The limit in force.
        max: usize,
    },
    /// A BATCH item's 4-byte length prefix is cut off or declares more bytes
    /// than the envelope has left. Nothing of the batch is processed.
    #[error("BATCH item {index} at byte {offset}: {problem}")]
    BatchFraming {
        /// Zero-based item index.
        index: usize,
        /// Offset of the item's length prefix in `data`.
        offset: usize,
        /// What is wrong with the prefix.
        problem: String,
    },
    /// A BATCH item is itself a BATCH. Nesting is refused so a batch cannot
    /// multiply its own item limit.
    #[error("BATCH item {index} is itself a BATCH; nested batches are not allowed")]
    NestedBatch {
        /// Zero-based item index.
        index: usize,
    },
    /// An error found inside one BATCH item, tagged with the item's index.
    #[error("BATCH item {index}: {source}")]
    InBatchItem {
        /// Zero-based item index.
        index: usize,
        /// The item's own error.
        source: Box<FrameError>,
    },
}

impl FrameError {
    /// The `ERROR` code the client is sent with this error's text: 413 for
    /// a frame or BATCH over its limit, 400 for everything else. The
    /// connection stays open either way.
    #[must_use]
    pub fn client_error_code(&self) -> u32 {
        match self {
            Self::BatchTooLarge { .. } | Self::TooLarge { .. } => 413,
            Self::InBatchItem { source, .. } => source.client_error_code(),
            _ => 400,
        }
    }
}

/// A message that could not be encoded.
///
/// Only values the wire cannot carry cause this: a [`super::RawMsgpack`]
/// whose bytes are not valid msgpack, or a map with a non-string key.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {msg_type}: {source}")]
pub struct EncodeError {
    /// The wire type being encoded.
    pub msg_type: &'static str,
    /// The serializer's complaint.
    #[source]
    pub source: rmp_serde::encode::Error,
}
