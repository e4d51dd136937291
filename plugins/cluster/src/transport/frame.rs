//! The wire frame and its codec: length-delimited msgpack envelopes.
//!
//! # Layout
//!
//! ```text
//! +----------------+--------------------------------------------------+
//! | length: u32 BE | envelope: msgpack array of 4                     |
//! | (envelope size)|   [kind: uint, request_id: uint, channel: uint,  |
//! |                |    body: bin]                                    |
//! +----------------+--------------------------------------------------+
//! ```
//!
//! - `length` is the size of the envelope in bytes, without the 4 length
//!   bytes (the default framing of tokio-util's `LengthDelimitedCodec`). It
//!   MUST NOT exceed the receiver's limit (`max_frame_bytes`, and
//!   [`HANDSHAKE_MAX_FRAME_BYTES`] until the handshake is done); a frame over
//!   it closes the connection before any of it is buffered.
//! - `kind` is a [`FrameKind`] (`0` Hello ... `6` Failure).
//! - `request_id` pairs a [`FrameKind::Request`] with its
//!   [`FrameKind::Response`] or [`FrameKind::Failure`]; it is `0` on the
//!   other kinds.
//! - `channel` is a [`Channel`] (`0` Gossip ... `6` Migration); handshake
//!   frames use [`Channel::Control`].
//! - `body` is opaque bytes for the channel's owner (a msgpack map for the
//!   handshake kinds, see `handshake`; UTF-8 text for `Failure`). Integers
//!   may use any msgpack int encoding; the encoder here picks the smallest.
//!
//! The envelope is written and read with `rmp`'s low-level calls rather than
//! through serde so that a received body is a zero-copy slice of the frame
//! buffer. It is byte-for-byte what `rmp_serde` makes of the tuple
//! `(u8, u64, u8, serde_bytes::ByteBuf)`, which the integration tests use to
//! speak the protocol from a raw socket.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::error::TransportError;
use super::Channel;

/// Largest frame accepted before the handshake completes: a `Hello` is a few
/// hundred bytes, so a peer that has not identified itself cannot make the
/// node buffer a full-size frame.
pub(crate) const HANDSHAKE_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Size of the length prefix in front of every envelope.
const LENGTH_PREFIX: usize = 4;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FrameKind {
    /// Dialer → acceptor, first frame of a connection.
    Hello = 0,
    /// Acceptor → dialer: the handshake succeeded.
    HelloAck = 1,
    /// Acceptor → dialer: the handshake failed; the acceptor closes next.
    Refused = 2,
    /// A one-way message.
    Message = 3,
    /// A request; the answer carries the same `request_id`.
    Request = 4,
    /// The successful answer to a request.
    Response = 5,
    /// The failed answer to a request; the body is the error text.
    Failure = 6,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Hello,
            1 => Self::HelloAck,
            2 => Self::Refused,
            3 => Self::Message,
            4 => Self::Request,
            5 => Self::Response,
            6 => Self::Failure,
            _ => return None,
        })
    }
}

impl Channel {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Gossip,
            1 => Self::Raft,
            2 => Self::Control,
            3 => Self::Forward,
            4 => Self::Replication,
            5 => Self::Query,
            6 => Self::Migration,
            7 => Self::Repair,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub kind: FrameKind,
    pub request_id: u64,
    pub channel: Channel,
    pub body: Bytes,
}

impl Frame {
    pub fn new(kind: FrameKind, request_id: u64, channel: Channel, body: Bytes) -> Self {
        Self {
            kind,
            request_id,
            channel,
            body,
        }
    }

    /// Size of this frame's envelope (what the length prefix says).
    pub fn envelope_len(&self) -> usize {
        envelope_len(self.request_id, self.body.len())
    }

    /// Bytes this frame takes on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        LENGTH_PREFIX + self.envelope_len()
    }
}

/// Size of an envelope carrying `body_len` bytes of body.
pub(crate) fn envelope_len(request_id: u64, body_len: usize) -> usize {
    // array header + kind + channel: one byte each (all values < 128).
    3 + uint_len(request_id) + bin_header_len(body_len) + body_len
}

/// Checks that a frame with `body_len` bytes of body fits `max`.
pub(crate) fn check_size(body_len: usize, max: usize) -> Result<(), TransportError> {
    // u64::MAX is the longest request id, so the check holds for any id.
    let size = envelope_len(u64::MAX, body_len);
    if size > max {
        return Err(TransportError::FrameTooLarge { size, max });
    }
    Ok(())
}

fn uint_len(v: u64) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn bin_header_len(len: usize) -> usize {
    match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// Reads and writes [`Frame`]s: `LengthDelimitedCodec` framing (4-byte
/// big-endian length) around the msgpack envelope.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    inner: LengthDelimitedCodec,
    max: usize,
}

impl FrameCodec {
    /// A codec refusing frames whose envelope exceeds `max` bytes, both ways.
    pub fn new(max: usize) -> Self {
        Self {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(max)
                .new_codec(),
            max,
        }
    }

    /// Changes the limit (raised once the handshake is done).
    pub fn set_max(&mut self, max: usize) {
        self.inner.set_max_frame_length(max);
        self.max = max;
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Parses one envelope; the body is a slice of `buf`.
fn parse_envelope(buf: Bytes) -> Result<Frame, String> {
    let mut rd: &[u8] = &buf;
    let n = rmp::decode::read_array_len(&mut rd).map_err(|_| {
        format!(
            "expected a msgpack array of 4, found first byte {:#04x}",
            buf.first().copied().unwrap_or(0)
        )
    })?;
    if n != 4 {
        return Err(format!("envelope is an array of {n}, expected 4"));
    }
    let kind: u8 = rmp::decode::read_int(&mut rd).map_err(|e| format!("frame kind: {e}"))?;
    let kind = FrameKind::from_u8(kind).ok_or_else(|| format!("unknown frame kind {kind}"))?;
    let request_id: u64 = rmp::decode::read_int(&mut rd).map_err(|e| format!("request id: {e}"))?;
    let channel: u8 = rmp::decode::read_int(&mut rd).map_err(|e| format!("channel: {e}"))?;
    let channel = Channel::from_u8(channel).ok_or_else(|| format!("unknown channel {channel}"))?;
    let len = rmp::decode::read_bin_len(&mut rd).map_err(|e| format!("body header: {e}"))? as usize;
    if rd.len() != len {
        return Err(format!(
            "body header says {len} bytes, the frame holds {}",
            rd.len()
        ));
    }
    let start = buf.len() - len;
    Ok(Frame::new(kind, request_id, channel, buf.slice(start..)))
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        // A TLS record (handshake 0x16 or alert 0x15, version 0x03..) read
        // as a length prefix is hundreds of MiB: name the real cause.
        if self.max <= HANDSHAKE_MAX_FRAME_BYTES
            && src.len() >= 2
            && matches!(src[0], 0x15 | 0x16)
            && src[1] == 0x03
        {
            return Err(invalid(
                "received a TLS record instead of a frame: the peer has TLS on and this node \
                 has it off"
                    .to_owned(),
            ));
        }
        let Some(envelope) = self.inner.decode(src)? else {
            return Ok(None);
        };
        parse_envelope(envelope.freeze())
            .map(Some)
            .map_err(|e| invalid(format!("malformed frame: {e}")))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let len = frame.envelope_len();
        if len > self.max {
            return Err(invalid(format!(
                "frame of {len} bytes exceeds the limit of {} bytes",
                self.max
            )));
        }
        dst.reserve(LENGTH_PREFIX + len);
        // `len <= max`, and the limit is a usize the config bounds well below 4 GiB.
        dst.put_u32(u32::try_from(len).map_err(|_| invalid(format!("frame of {len} bytes")))?);
        let mut w = dst.writer();
        let header = (|| -> Result<(), rmp::encode::ValueWriteError> {
            rmp::encode::write_array_len(&mut w, 4)?;
            rmp::encode::write_uint(&mut w, frame.kind as u64)?;
            rmp::encode::write_uint(&mut w, frame.request_id)?;
            rmp::encode::write_uint(&mut w, frame.channel as u64)?;
            rmp::encode::write_bin_len(&mut w, frame.body.len() as u32)?;
            Ok(())
        })();
        header.map_err(|e| invalid(format!("encoding frame header: {e}")))?;
        let dst = w.into_inner();
        dst.extend_from_slice(frame.body.chunk());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) -> Frame {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        assert_eq!(buf.len(), frame.wire_len(), "wire_len matches the encoding");
        let out = codec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn t10_frames_round_trip_with_every_int_width() {
        for id in [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            for body_len in [0, 1, 255, 256, 65_535, 65_536] {
                let f = Frame::new(
                    FrameKind::Request,
                    id,
                    Channel::Migration,
                    Bytes::from(vec![7u8; body_len]),
                );
                assert_eq!(roundtrip(f.clone()), f);
            }
        }
    }

    #[test]
    fn t10_envelope_is_what_rmp_serde_makes_of_the_tuple() {
        let f = Frame::new(
            FrameKind::Response,
            300,
            Channel::Query,
            Bytes::from_static(b"hi"),
        );
        let mut buf = BytesMut::new();
        FrameCodec::new(1024).encode(f, &mut buf).unwrap();
        let serde =
            rmp_serde::to_vec(&(5u8, 300u64, 5u8, serde_bytes::ByteBuf::from(b"hi".to_vec())))
                .unwrap();
        assert_eq!(&buf[4..], &serde[..]);
    }

    #[test]
    fn t60_oversized_and_malformed_frames_are_errors() {
        let mut codec = FrameCodec::new(100);
        let big = Frame::new(
            FrameKind::Message,
            0,
            Channel::Gossip,
            Bytes::from(vec![0; 200]),
        );
        assert!(codec.encode(big, &mut BytesMut::new()).is_err());
        assert!(check_size(100, 100).is_err());
        assert!(check_size(50, 100).is_ok());

        // A length prefix over the limit fails before the body arrives.
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert!(codec.decode(&mut buf).is_err());

        // A TLS record where the handshake's first frame should be.
        let mut hs = FrameCodec::new(HANDSHAKE_MAX_FRAME_BYTES);
        let mut buf = BytesMut::from(&[0x16u8, 0x03, 0x01, 0x02, 0x00][..]);
        let err = hs.decode(&mut buf).unwrap_err().to_string();
        assert!(err.contains("TLS record"), "{err}");

        // A well-framed envelope that is not a 4-array.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 2, 0xc1, 0xc1][..]);
        assert!(codec.decode(&mut buf).is_err());

        // Unknown kind, unknown channel, body length mismatch.
        for env in [
            &[0x94, 9, 0, 0, 0xc4, 0][..],
            &[0x94, 3, 0, 9, 0xc4, 0][..],
            &[0x94, 3, 0, 0, 0xc4, 5, 1][..],
        ] {
            let mut buf = BytesMut::new();
            buf.put_u32(env.len() as u32);
            buf.extend_from_slice(env);
            assert!(codec.decode(&mut buf).is_err(), "{env:?}");
        }
    }
}
