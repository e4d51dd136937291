//! The structural pre-scan: hostile-input limits applied before any decoding.
//!
//! Every inbound frame passes [`check_frame`] before serde sees it. The scan
//! walks the msgpack bytes **iteratively** (an explicit stack of at most
//! [`MAX_DEPTH`] counters, never recursion), and refuses:
//!
//! - frames over [`MAX_FRAME_BYTES`];
//! - nesting deeper than [`MAX_DEPTH`] containers, so the recursive decoders
//!   that run afterwards (serde, `rmpv`) are never driven deep enough to
//!   exhaust a stack;
//! - any header whose declared length exceeds the bytes left: a `str`, `bin`
//!   or `ext` longer than the rest of the frame, an array of `n` elements
//!   with fewer than `n` bytes left, a map of `n` entries with fewer than
//!   `2n`. Since every element takes at least one byte, this bounds every
//!   allocation a later decoder sizes from a header by the frame size: a
//!   tiny frame cannot ask for gigabytes;
//! - truncated values, the reserved marker `0xc1`, and trailing bytes.
//!
//! The scan allocates nothing but its counter stack and reads each byte once.

use super::error::FrameError;

/// Largest inbound frame accepted, in bytes (2 MiB, TopGun's WebSocket cap).
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Deepest container nesting accepted. The message map itself is level 1, so
/// 256 nested arrays are accepted and 257 are not. Empty containers count.
pub const MAX_DEPTH: usize = 256;

/// What one msgpack header says about the value it opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    /// Offset just past the header and any inline payload (string bytes,
    /// binary, scalar body); for containers, where the first child starts.
    pub(crate) next: usize,
    /// Number of child values that follow (elements, or 2 × map entries).
    pub(crate) children: u64,
    /// True for arrays and maps, empty or not.
    pub(crate) container: bool,
}

fn truncated(at: usize, needed: usize, buf: &[u8]) -> FrameError {
    FrameError::Truncated {
        offset: at,
        needed,
        remaining: buf.len().saturating_sub(at),
    }
}

/// Reads a big-endian unsigned integer of `n` bytes at `pos`.
fn be(buf: &[u8], at: usize, pos: usize, n: usize) -> Result<u64, FrameError> {
    let bytes = buf
        .get(pos..pos + n)
        .ok_or_else(|| truncated(at, pos + n - at, buf))?;
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A payload of `len` bytes follows a header that ends at `pos`.
fn payload(buf: &[u8], at: usize, pos: usize, len: u64) -> Result<Head, FrameError> {
    let remaining = buf.len() - pos;
    match usize::try_from(len) {
        Ok(n) if n <= remaining => Ok(Head {
            next: pos + n,
            children: 0,
            container: false,
        }),
        _ => Err(FrameError::LengthExceedsInput {
            offset: at,
            declared: len,
            unit: "bytes",
            remaining,
        }),
    }
}

/// A container of `count` elements (map entries count twice) follows a header that
/// ends at `pos`.
fn container(buf: &[u8], at: usize, pos: usize, count: u64, map: bool) -> Result<Head, FrameError> {
    let remaining = buf.len() - pos;
    let children = if map { count * 2 } else { count };
    if children > remaining as u64 {
        return Err(FrameError::LengthExceedsInput {
            offset: at,
            declared: count,
            unit: if map { "map entries" } else { "array elements" },
            remaining,
        });
    }
    Ok(Head {
        next: pos,
        children,
        container: true,
    })
}

/// Reads the header of the value that starts at `at`, checking every
/// declared length against the bytes that remain.
///
/// # Errors
/// [`FrameError::Truncated`], [`FrameError::LengthExceedsInput`] or
/// [`FrameError::ReservedMarker`].
pub(crate) fn read_head(buf: &[u8], at: usize) -> Result<Head, FrameError> {
    let marker = *buf.get(at).ok_or_else(|| truncated(at, 1, buf))?;
    let pos = at + 1;
    let scalar = |n: usize| -> Result<Head, FrameError> {
        if buf.len() - pos < n {
            return Err(truncated(at, 1 + n, buf));
        }
        Ok(Head {
            next: pos + n,
            children: 0,
            container: false,
        })
    };
    match marker {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => scalar(0),
        0x80..=0x8f => container(buf, at, pos, u64::from(marker & 0x0f), true),
        0x90..=0x9f => container(buf, at, pos, u64::from(marker & 0x0f), false),
        0xa0..=0xbf => payload(buf, at, pos, u64::from(marker & 0x1f)),
        0xc1 => Err(FrameError::ReservedMarker { offset: at }),
        // bin 8/16/32 and str 8/16/32: a length, then that many bytes.
        0xc4 | 0xd9 => payload(buf, at, pos + 1, be(buf, at, pos, 1)?),
        0xc5 | 0xda => payload(buf, at, pos + 2, be(buf, at, pos, 2)?),
        0xc6 | 0xdb => payload(buf, at, pos + 4, be(buf, at, pos, 4)?),
        // ext 8/16/32: a length, a type byte, then that many bytes.
        0xc7 => payload(buf, at, pos + 1, be(buf, at, pos, 1)? + 1),
        0xc8 => payload(buf, at, pos + 2, be(buf, at, pos, 2)? + 1),
        0xc9 => payload(buf, at, pos + 4, be(buf, at, pos, 4)? + 1),
        0xca => scalar(4),
        0xcb => scalar(8),
        0xcc | 0xd0 => scalar(1),
        0xcd | 0xd1 => scalar(2),
        0xce | 0xd2 => scalar(4),
        0xcf | 0xd3 => scalar(8),
        // fixext 1/2/4/8/16: a type byte, then the data.
        0xd4 => scalar(2),
        0xd5 => scalar(3),
        0xd6 => scalar(5),
        0xd7 => scalar(9),
        0xd8 => scalar(17),
        0xdc => container(buf, at, pos + 2, be(buf, at, pos, 2)?, false),
        0xdd => container(buf, at, pos + 4, be(buf, at, pos, 4)?, false),
        0xde => container(buf, at, pos + 2, be(buf, at, pos, 2)?, true),
        0xdf => container(buf, at, pos + 4, be(buf, at, pos, 4)?, true),
    }
}

/// Facts the scan learned about an accepted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Deepest container nesting seen (0 for a bare scalar).
    pub max_depth: usize,
}

/// Checks that `frame` is exactly one well-formed msgpack value within the
/// size, depth and length limits. Runs in one pass with no recursion.
///
/// # Errors
/// [`FrameError::Empty`], [`FrameError::TooLarge`], [`FrameError::TooDeep`],
/// [`FrameError::LengthExceedsInput`], [`FrameError::Truncated`],
/// [`FrameError::ReservedMarker`] or [`FrameError::TrailingBytes`].
pub fn check_frame(frame: &[u8]) -> Result<ScanReport, FrameError> {
    if frame.is_empty() {
        return Err(FrameError::Empty);
    }
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    check_structure(frame, MAX_DEPTH)
}

/// The structural half of [`check_frame`], with the depth limit as a
/// parameter (tests use it to probe the boundary).
///
/// # Errors
/// As [`check_frame`], without the size checks.
pub(crate) fn check_structure(buf: &[u8], max_depth: usize) -> Result<ScanReport, FrameError> {
    // stack[i]: child values still to read in the i-th open container.
    let mut stack: Vec<u64> = Vec::with_capacity(16);
    let mut max_seen = 0;
    let mut pos = 0;
    loop {
        let head = read_head(buf, pos)?;
        if head.container {
            if stack.len() >= max_depth {
                return Err(FrameError::TooDeep {
                    max: max_depth,
                    offset: pos,
                });
            }
            max_seen = max_seen.max(stack.len() + 1);
        }
        pos = head.next;
        if head.children > 0 {
            stack.push(head.children);
            continue;
        }
        // A value just completed: close every container it completes.
        loop {
            match stack.last_mut() {
                None => {
                    if pos != buf.len() {
                        return Err(FrameError::TrailingBytes {
                            offset: pos,
                            extra: buf.len() - pos,
                        });
                    }
                    return Ok(ScanReport {
                        max_depth: max_seen,
                    });
                }
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    stack.pop();
                }
            }
        }
    }
}

/// Returns the offset just past the value that starts at `at`, without
/// decoding it. Iterative: it keeps one counter, whatever the nesting.
///
/// # Errors
/// As [`read_head`] for any header inside the value.
pub(crate) fn skip_value(buf: &[u8], at: usize) -> Result<usize, FrameError> {
    let mut pending: u64 = 1;
    let mut pos = at;
    while pending > 0 {
        let head = read_head(buf, pos)?;
        pos = head.next;
        // children <= remaining bytes, so this cannot overflow a u64.
        pending = pending - 1 + head.children;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut v = vec![0x91u8; depth];
        v.push(0xc0);
        v
    }

    #[test]
    fn t10_scalars_maps_and_arrays_pass() {
        assert_eq!(check_frame(&[0x01]).unwrap().max_depth, 0);
        // {"a": [1, "x"]}
        let f = [0x81, 0xa1, b'a', 0x92, 0x01, 0xa1, b'x'];
        assert_eq!(check_frame(&f).unwrap().max_depth, 2);
        assert_eq!(skip_value(&f, 0).unwrap(), f.len());
        assert_eq!(skip_value(&f, 3).unwrap(), f.len());
    }

    #[test]
    fn t20_depth_256_passes_257_fails() {
        assert_eq!(check_frame(&nested_arrays(256)).unwrap().max_depth, 256);
        assert!(matches!(
            check_frame(&nested_arrays(257)),
            Err(FrameError::TooDeep {
                max: 256,
                offset: 256
            })
        ));
    }

    #[test]
    fn t21_empty_containers_count_toward_depth() {
        let mut f = vec![0x91u8; 256];
        f.push(0x90); // an empty array as the 257th level
        assert!(matches!(check_frame(&f), Err(FrameError::TooDeep { .. })));
        f.pop();
        f.pop();
        f.push(0x90); // 255 wrappers + empty array = 256 levels
        assert!(check_frame(&f).is_ok());
    }

    #[test]
    fn t22_a_million_levels_are_rejected_without_recursion() {
        assert!(matches!(
            check_frame(&nested_arrays(1_000_000)),
            Err(FrameError::TooDeep { .. })
        ));
        // skip_value keeps one counter, so it walks the same input fine.
        let deep = nested_arrays(1_000_000);
        assert_eq!(skip_value(&deep, 0).unwrap(), deep.len());
    }

    #[test]
    fn t30_lying_lengths_are_rejected_before_allocation() {
        let cases: &[(&[u8], &str)] = &[
            (&[0xdd, 0xff, 0xff, 0xff, 0xff], "array elements"),
            (&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], "map entries"),
            (&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], "bytes"),
            (&[0xc6, 0x7f, 0xff, 0xff, 0xff], "bytes"),
            (&[0xc9, 0x00, 0x00, 0x10, 0x00, 0x01], "bytes"),
            // a map of 2 entries needs 4 values but only 3 bytes follow
            (&[0x82, 0x01, 0x02, 0x03], "map entries"),
        ];
        for (frame, unit) in cases {
            match check_frame(frame) {
                Err(FrameError::LengthExceedsInput { unit: u, .. }) => assert_eq!(u, *unit),
                other => panic!("{frame:02x?}: expected LengthExceedsInput, got {other:?}"),
            }
        }
    }

    #[test]
    fn t31_truncation_reserved_marker_and_trailing_bytes() {
        assert!(matches!(
            check_frame(&[0xcd, 0x01]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            check_frame(&[0xdc, 0x00]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            check_frame(&[0x92, 0x01]),
            Err(FrameError::LengthExceedsInput { .. })
        ));
        assert!(matches!(
            check_frame(&[0x91, 0x92, 0x01, 0x02, 0x92]),
            Err(FrameError::TrailingBytes { .. })
        ));
        assert!(matches!(
            check_frame(&[0x91, 0xc1]),
            Err(FrameError::ReservedMarker { offset: 1 })
        ));
        assert!(matches!(
            check_frame(&[0x01, 0x02]),
            Err(FrameError::TrailingBytes {
                offset: 1,
                extra: 1
            })
        ));
        assert_eq!(check_frame(&[]), Err(FrameError::Empty));
    }

    #[test]
    fn t32_frames_over_2_mib_are_rejected() {
        let mut big = vec![0xc6, 0x00, 0x20, 0x00, 0x00];
        big.resize(5 + MAX_FRAME_BYTES, 0);
        assert!(matches!(
            check_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
        // exactly at the limit is fine
        let n = MAX_FRAME_BYTES - 5;
        let mut ok = vec![0xc6];
        ok.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        ok.resize(MAX_FRAME_BYTES, 0);
        assert!(check_frame(&ok).is_ok());
    }

    #[test]
    fn t33_every_fixed_width_marker_is_sized_right() {
        // u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 fixext1..16 ext8 bin8 str8
        let values: Vec<Vec<u8>> = vec![
            vec![0xcc, 1],
            vec![0xcd, 1, 2],
            vec![0xce, 1, 2, 3, 4],
            vec![0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0xd0, 1],
            vec![0xd1, 1, 2],
            vec![0xd2, 1, 2, 3, 4],
            vec![0xd3, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0xca, 1, 2, 3, 4],
            vec![0xcb, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0xd4, 1, 9],
            vec![0xd5, 1, 9, 9],
            vec![0xd6, 1, 9, 9, 9, 9],
            vec![0xd7, 1, 9, 9, 9, 9, 9, 9, 9, 9],
            [vec![0xd8, 1], vec![9; 16]].concat(),
            vec![0xc7, 2, 1, 9, 9],
            vec![0xc4, 2, 9, 9],
            vec![0xd9, 2, b'h', b'i'],
        ];
        for v in values {
            // each alone, and each inside an array followed by a sentinel
            assert!(check_frame(&v).is_ok(), "{v:02x?}");
            let mut wrapped = vec![0x92];
            wrapped.extend_from_slice(&v);
            wrapped.push(0x07);
            assert!(check_frame(&wrapped).is_ok(), "{wrapped:02x?}");
            // one byte short is truncated (or a lying length), never a pass
            assert!(check_frame(&v[..v.len() - 1]).is_err(), "{v:02x?}");
        }
    }
}
