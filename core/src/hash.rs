//! The hash every TopGun client and node agrees on: 32-bit FNV-1a over the
//! UTF-16 code units of a string (what JavaScript's `charCodeAt` yields), and
//! the partition function built on it.
//!
//! These are wire contracts: clients route by `partition_of`, and Merkle
//! trees exchanged with clients hash keys with `fnv1a_utf16`.

/// Number of partitions in a Hangar (and TopGun) cluster. A wire contract.
pub const PARTITION_COUNT: u32 = 271;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a over the UTF-16 code units of `s`, as the TypeScript client computes
/// it. Characters outside the BMP contribute their two surrogate units.
#[must_use]
pub fn fnv1a_utf16(s: &str) -> u32 {
    let mut h = FNV_OFFSET;
    for unit in s.encode_utf16() {
        h ^= u32::from(unit);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The partition that owns `key`: `fnv1a_utf16(key) % 271`.
#[must_use]
pub fn partition_of(key: &str) -> u32 {
    fnv1a_utf16(key) % PARTITION_COUNT
}

/// Combines hashes the way Merkle nodes do: a wrapping u32 sum.
#[must_use]
pub fn combine_hashes(hashes: impl IntoIterator<Item = u32>) -> u32 {
    hashes.into_iter().fold(0u32, u32::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_known_vectors_match_the_typescript_client() {
        assert_eq!(fnv1a_utf16("hello"), 1_335_831_723);
        assert_eq!(fnv1a_utf16("key1"), 927_623_783);
        assert_eq!(fnv1a_utf16(""), 2_166_136_261);
        assert_eq!(fnv1a_utf16("users:abc123"), 3_636_285_003);
        assert_eq!(fnv1a_utf16("test-key"), 2_593_649_543);
    }

    #[test]
    fn t11_partitions_match_the_typescript_client() {
        assert_eq!(partition_of("hello"), 95);
        assert_eq!(partition_of("key1"), 268);
        assert_eq!(partition_of(""), 199);
        assert_eq!(partition_of("users:abc123"), 228);
        assert_eq!(partition_of("test-key"), 141);
    }

    #[test]
    fn t12_non_bmp_characters_hash_as_surrogate_pairs() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16.
        let mut h = FNV_OFFSET;
        for unit in [0xD83Du32, 0xDE00] {
            h ^= unit;
            h = h.wrapping_mul(FNV_PRIME);
        }
        assert_eq!(fnv1a_utf16("\u{1F600}"), h);
    }

    #[test]
    fn t13_combine_wraps() {
        assert_eq!(combine_hashes([u32::MAX, 2]), 1);
        assert_eq!(combine_hashes([]), 0);
    }
}
