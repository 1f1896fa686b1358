//! The AGS IAM revocation list (`GET /iam/v3/oauth/revocationlist`).
//!
//! Wire shape: `{"revoked_tokens": {"m": .., "k": .., "bits": [u64 words]}, "revoked_users":
//! [{"id": .., "revoked_at": RFC 3339}]}`. Revoked tokens are a Bloom filter over the raw token
//! text, hashed the way AccelByte's Go SDK (and Guava's `MURMUR128_MITZ_64`) hash it: one
//! 128-bit MurmurHash3 (x64 variant, seed 0), then `k` indexes by double hashing. The filter's
//! size is the number of words × 64; the `m` field is ignored, as the SDK ignores it. A user is
//! revoked for every token issued at or before their `revoked_at`.

use std::collections::HashMap;

use serde::Deserialize;

/// A parsed revocation list. The default is empty: nothing revoked.
#[derive(Debug, Default, Clone)]
pub struct RevocationList {
    tokens: Option<BloomFilter>,
    /// User id → revocation time (Unix seconds).
    users: HashMap<String, i64>,
}

impl RevocationList {
    /// Parses IAM's JSON. Missing or null parts count as empty; a user entry with an
    /// unreadable time is skipped (and counted in the second value) rather than failing the
    /// whole list.
    pub fn parse(body: &[u8]) -> Result<(Self, usize), serde_json::Error> {
        let wire: Wire = serde_json::from_slice(body)?;
        let tokens = wire.revoked_tokens.and_then(|f| {
            let words: Vec<u64> = f.bits.into_iter().map(Word::into_u64).collect();
            BloomFilter::from_words(words, f.k.unwrap_or(0))
        });
        let mut users = HashMap::new();
        let mut skipped = 0;
        for u in wire.revoked_users.unwrap_or_default() {
            match chrono::DateTime::parse_from_rfc3339(&u.revoked_at) {
                Ok(at) => {
                    let at = at.timestamp();
                    let slot = users.entry(u.id).or_insert(at);
                    *slot = (*slot).max(at);
                }
                Err(_) => skipped += 1,
            }
        }
        Ok((RevocationList { tokens, users }, skipped))
    }

    pub fn is_token_revoked(&self, raw_token: &str) -> bool {
        self.tokens
            .as_ref()
            .is_some_and(|f| f.might_contain(raw_token.as_bytes()))
    }

    /// `issued_at` is the token's `iat` (Unix seconds); a token without one is treated as
    /// issued before any revocation.
    pub fn is_user_revoked(&self, user_id: &str, issued_at: Option<i64>) -> bool {
        self.users
            .get(user_id)
            .is_some_and(|&revoked_at| revoked_at >= issued_at.unwrap_or(i64::MIN))
    }

    pub fn revoked_user_count(&self) -> usize {
        self.users.len()
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    revoked_tokens: Option<WireFilter>,
    #[serde(default)]
    revoked_users: Option<Vec<WireUser>>,
}

#[derive(Deserialize)]
struct WireFilter {
    #[serde(default)]
    bits: Vec<Word>,
    #[serde(default)]
    k: Option<u32>,
}

/// A bit word; Go writes `uint64`, other producers may write the same bits as `int64`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Word {
    Unsigned(u64),
    Signed(i64),
}

impl Word {
    fn into_u64(self) -> u64 {
        match self {
            Word::Unsigned(v) => v,
            Word::Signed(v) => v as u64,
        }
    }
}

#[derive(Deserialize)]
struct WireUser {
    id: String,
    revoked_at: String,
}

/// The Bloom filter of revoked tokens, bit-compatible with IAM's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    words: Vec<u64>,
    k: u32,
}

impl BloomFilter {
    /// `None` when the filter cannot hold anything (no words or `k` = 0).
    pub fn from_words(words: Vec<u64>, k: u32) -> Option<Self> {
        (!words.is_empty() && k > 0).then_some(BloomFilter { words, k })
    }

    /// An empty filter of `words` × 64 bits (tests, tools).
    pub fn with_capacity(words: usize, k: u32) -> Self {
        BloomFilter {
            words: vec![0; words.max(1)],
            k: k.max(1),
        }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn k(&self) -> u32 {
        self.k
    }

    pub fn insert(&mut self, data: &[u8]) {
        for i in indexes(data, self.bit_len(), self.k) {
            self.words[(i / 64) as usize] |= 1 << (i % 64);
        }
    }

    pub fn might_contain(&self, data: &[u8]) -> bool {
        indexes(data, self.bit_len(), self.k)
            .all(|i| self.words[(i / 64) as usize] & (1 << (i % 64)) != 0)
    }

    fn bit_len(&self) -> u64 {
        self.words.len() as u64 * 64
    }
}

/// The `k` bit positions of `data` in a filter of `m` bits.
fn indexes(data: &[u8], m: u64, k: u32) -> impl Iterator<Item = u64> {
    let (h1, h2) = murmur3_x64_128(data);
    // Guava's scheme: positions come from a signed running sum with the sign bit masked off.
    let mut combined = h1 as i64;
    (0..k).map(move |_| {
        let i = (combined & i64::MAX) as u64 % m;
        combined = combined.wrapping_add(h2 as i64);
        i
    })
}

/// MurmurHash3, x64 128-bit variant, seed 0; returns the two 64-bit halves.
fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mix_k1 = |k: u64| k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k: u64| k.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);

    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
        let k2 = u64::from_le_bytes(block[8..].try_into().expect("8 bytes"));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        let mut k2 = 0u64;
        for (i, b) in tail[8..].iter().enumerate() {
            k2 |= u64::from(*b) << (8 * i);
        }
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        let mut k1 = 0u64;
        for (i, b) in tail.iter().take(8).enumerate() {
            k1 |= u64::from(*b) << (8 * i);
        }
        h1 ^= mix_k1(k1);
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_published_vectors() {
        assert_eq!(murmur3_x64_128(b""), (0, 0));
        // Well-known x64_128 digests (seed 0), as the two little-endian halves.
        assert_eq!(
            murmur3_x64_128(b"hello"),
            (0xcbd8_a7b3_41bd_9b02, 0x5b1e_906a_48ae_1d19)
        );
        assert_eq!(
            murmur3_x64_128(b"The quick brown fox jumps over the lazy dog"),
            (0xe34b_bc7b_bc07_1b6c, 0x7a43_3ca9_c49a_9347)
        );
    }

    #[test]
    fn indexes_match_guava_murmur128_mitz_64() {
        // The positions Guava (and AccelByte's Go port) compute for this input.
        let got: Vec<u64> = indexes(b"this_is_a_test_string", 9600, 7).collect();
        assert_eq!(got, [3942, 6555, 9168, 2181, 4794, 7407, 420]);
    }

    #[test]
    fn filter_finds_what_was_inserted_and_little_else() {
        let mut f = BloomFilter::with_capacity(64, 7);
        for i in 0..50 {
            f.insert(format!("token-{i}").as_bytes());
        }
        assert!((0..50).all(|i| f.might_contain(format!("token-{i}").as_bytes())));
        let false_positives = (1000..2000)
            .filter(|i| f.might_contain(format!("token-{i}").as_bytes()))
            .count();
        assert!(false_positives < 20, "{false_positives} false positives");
    }

    #[test]
    fn parses_iam_shape_and_applies_rules() {
        let mut f = BloomFilter::with_capacity(16, 3);
        f.insert(b"a.b.c");
        let body = serde_json::json!({
            "revoked_tokens": {"m": 1024, "k": f.k(), "bits": f.words()},
            "revoked_users": [
                {"id": "u1", "revoked_at": "2025-01-01T00:00:00Z"},
                {"id": "u2", "revoked_at": "not a time"}
            ]
        });
        let (list, skipped) = RevocationList::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(skipped, 1);
        assert!(list.is_token_revoked("a.b.c"));
        assert!(!list.is_token_revoked("x.y.z"));
        let revoked_at = 1_735_689_600; // 2025-01-01T00:00:00Z
        assert!(list.is_user_revoked("u1", Some(revoked_at - 10)));
        assert!(list.is_user_revoked("u1", Some(revoked_at)));
        assert!(!list.is_user_revoked("u1", Some(revoked_at + 1)));
        assert!(list.is_user_revoked("u1", None));
        assert!(!list.is_user_revoked("u2", Some(0)));
    }

    #[test]
    fn accepts_signed_words_and_nulls() {
        let (list, _) = RevocationList::parse(
            br#"{"revoked_tokens":{"k":2,"bits":[-1, 5]},"revoked_users":null}"#,
        )
        .unwrap();
        assert_eq!(list.tokens.as_ref().unwrap().words()[0], u64::MAX);
        let (empty, _) = RevocationList::parse(b"{}").unwrap();
        assert!(!empty.is_token_revoked("anything"));
        assert_eq!(empty.revoked_user_count(), 0);
    }
}
