//! Unpacking the `BATCH` envelope.
//!
//! `BATCH.data` is repeated `[u32 big-endian length][msgpack message]`.
//! [`unpack_batch`] walks only the length prefixes first, so a lying prefix
//! or an oversized batch is refused before any item is decoded, and it counts
//! the items that are really there: the claimed `count` is never trusted.
//! Each item then goes through exactly the checks of a top-level frame
//! ([`decode_batch_item`]), and an item that is itself a `BATCH` is refused.

use super::error::FrameError;
use super::message::{decode_frame, Decoded, Message};
use super::messages::Batch;

/// Most messages one `BATCH` may carry; more is answered with `ERROR 413`.
pub const MAX_BATCH_ITEMS: usize = 8192;

/// The items of a `BATCH`, framing already validated.
#[derive(Debug, Clone)]
pub struct BatchItems<'a> {
    data: &'a [u8],
    pos: usize,
    left: usize,
}

impl BatchItems<'_> {
    /// Number of items not yet yielded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.left
    }

    /// True when no items remain.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for BatchItems<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Framing was validated by split_batch_data: these reads are in bounds.
        let prefix: [u8; 4] = self.data[self.pos..self.pos + 4].try_into().ok()?;
        let len = u32::from_be_bytes(prefix) as usize;
        let item = &self.data[self.pos + 4..self.pos + 4 + len];
        self.pos += 4 + len;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for BatchItems<'_> {}

/// Validates the framing of a `BATCH` and returns its items.
///
/// # Errors
/// [`FrameError::BatchTooLarge`] once more than [`MAX_BATCH_ITEMS`] items are
/// found (answer `ERROR 413`); [`FrameError::BatchFraming`] for a cut or
/// lying length prefix. In both cases no item should be processed.
pub fn unpack_batch(batch: &Batch) -> Result<BatchItems<'_>, FrameError> {
    split_batch_data(&batch.data)
}

/// [`unpack_batch`] on the raw `data` bytes.
///
/// # Errors
/// As [`unpack_batch`].
pub fn split_batch_data(data: &[u8]) -> Result<BatchItems<'_>, FrameError> {
    let mut pos = 0;
    let mut count = 0;
    while pos < data.len() {
        if count == MAX_BATCH_ITEMS {
            return Err(FrameError::BatchTooLarge {
                max: MAX_BATCH_ITEMS,
            });
        }
        let remaining = data.len() - pos;
        let Some(prefix) = data.get(pos..pos + 4) else {
            return Err(FrameError::BatchFraming {
                index: count,
                offset: pos,
                problem: format!("length prefix needs 4 bytes, {remaining} remain"),
            });
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("slice of 4")) as usize;
        if len > remaining - 4 {
            return Err(FrameError::BatchFraming {
                index: count,
                offset: pos,
                problem: format!("declares {len} bytes but only {} remain", remaining - 4),
            });
        }
        pos += 4 + len;
        count += 1;
    }
    Ok(BatchItems {
        data,
        pos: 0,
        left: count,
    })
}

/// Decodes one `BATCH` item with every check a top-level frame gets.
///
/// # Errors
/// The item's [`FrameError`] wrapped in [`FrameError::InBatchItem`], or
/// [`FrameError::NestedBatch`] if the item is itself a `BATCH`.
pub fn decode_batch_item(index: usize, item: &[u8]) -> Result<Decoded, FrameError> {
    match decode_frame(item) {
        Ok(Decoded::Message(Message::Batch(_))) => Err(FrameError::NestedBatch { index }),
        Ok(d) => Ok(d),
        Err(e) => Err(FrameError::InBatchItem {
            index,
            source: Box::new(e),
        }),
    }
}

/// Unpacks and decodes a whole `BATCH`: the envelope either fails as a
/// whole, or yields one result per item (a bad item is dropped by the
/// caller, the others proceed).
///
/// # Errors
/// As [`unpack_batch`].
pub fn decode_batch(batch: &Batch) -> Result<Vec<Result<Decoded, FrameError>>, FrameError> {
    Ok(unpack_batch(batch)?
        .enumerate()
        .map(|(i, item)| decode_batch_item(i, item))
        .collect())
}

/// Packs messages into `BATCH.data` (the client side of the envelope; used by
/// tests, benchmarks and tools).
///
/// # Panics
/// If an item is larger than 4 GiB.
#[must_use]
pub fn pack_batch_data<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let len = u32::try_from(item.len()).expect("a BATCH item is under 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}
