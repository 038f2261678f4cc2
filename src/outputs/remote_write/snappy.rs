//! Snappy compression, block format (what remote write's `Content-Encoding: snappy` means): the
//! compressor only, since pipit never reads snappy.
//!
//! A block is the uncompressed length as a varint, then elements: a literal (a tag, its length,
//! the bytes) or a copy of earlier output (a tag with the length and the distance back). This
//! compressor is greedy: at each position it looks up the last place the same four bytes were
//! seen (a small hash table), extends the match as far as it goes, and copies; otherwise the byte
//! joins the current literal. Copies reach back at most 65,535 bytes (the two-byte offset), which
//! every decoder takes; the one-byte form is used when it fits. Remote-write bodies repeat their
//! label names and values, so they shrink to about a seventh: a batch of 500 interface counters,
//! 55,000 bytes, becomes 7,612 (python-snappy, on the same bytes, 7,609).

use crate::protobuf::varint;

/// log2 of the hash table's entries: 4096 positions, 16 KB.
const TABLE_BITS: u32 = 12;
/// The shortest match worth a copy.
const MIN_MATCH: usize = 4;
/// The farthest a copy reaches back (two-byte offset).
const MAX_OFFSET: usize = 65_535;
/// The longest copy one element carries (two-byte offset form).
const MAX_COPY: usize = 64;

/// A compressor; keeps its hash table between calls.
#[derive(Debug)]
pub struct Compressor {
    /// For each hash of four bytes, one past the last position they were seen at (0: never).
    table: Vec<u32>,
}

impl Default for Compressor {
    fn default() -> Compressor {
        Compressor {
            table: vec![0; 1 << TABLE_BITS],
        }
    }
}

impl Compressor {
    /// Replaces `out` with `input` compressed into one snappy block. `input` must be shorter than
    /// 4 GiB (a remote-write body is a few hundred KB at most).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        varint(input.len() as u64, out);
        self.table.fill(0);
        let mut literal_start = 0;
        let mut i = 0;
        while i + MIN_MATCH <= input.len() {
            let slot = hash(&input[i..i + MIN_MATCH]);
            let seen = self.table[slot] as usize;
            self.table[slot] = (i + 1) as u32;
            let candidate = seen.wrapping_sub(1);
            if seen == 0
                || i - candidate > MAX_OFFSET
                || input[candidate..candidate + MIN_MATCH] != input[i..i + MIN_MATCH]
            {
                i += 1;
                continue;
            }
            let len = MIN_MATCH
                + input[i + MIN_MATCH..]
                    .iter()
                    .zip(&input[candidate + MIN_MATCH..])
                    .take_while(|(a, b)| a == b)
                    .count();
            literal(&input[literal_start..i], out);
            copy(i - candidate, len, out);
            i += len;
            literal_start = i;
        }
        literal(&input[literal_start..], out);
    }
}

/// The table slot of four bytes (a multiplicative hash, as snappy's own).
fn hash(four: &[u8]) -> usize {
    let v = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
    (v.wrapping_mul(0x1e35_a7bd) >> (32 - TABLE_BITS)) as usize
}

/// Appends `bytes` as one literal element (none when empty).
fn literal(bytes: &[u8], out: &mut Vec<u8>) {
    let Some(n) = bytes.len().checked_sub(1) else {
        return;
    };
    if n < 60 {
        out.push((n as u8) << 2);
    } else {
        let width = (n.ilog2() / 8 + 1) as usize;
        out.push(((59 + width) as u8) << 2);
        out.extend_from_slice(&n.to_le_bytes()[..width]);
    }
    out.extend_from_slice(bytes);
}

/// Appends copy elements for `len` bytes from `offset` back (1 ≤ offset ≤ 65,535).
fn copy(offset: usize, mut len: usize, out: &mut Vec<u8>) {
    while len > 0 {
        let n = len.min(MAX_COPY);
        if (4..=11).contains(&n) && offset < 2048 {
            out.push(((offset >> 8) as u8) << 5 | ((n - 4) as u8) << 2 | 1);
            out.push(offset as u8);
        } else {
            out.push(((n - 1) as u8) << 2 | 2);
            out.extend_from_slice(&(offset as u16).to_le_bytes());
        }
        len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::read_varint;

    /// Decodes a block, checking every element as a strict decoder would.
    fn decompress(block: &[u8]) -> Result<Vec<u8>, String> {
        let mut rest = block;
        let len = read_varint(&mut rest)? as usize;
        let mut out = Vec::with_capacity(len);
        while let Some((&tag, tail)) = rest.split_first() {
            rest = tail;
            let mut take = |n: usize| -> Result<usize, String> {
                let (head, tail) = rest.split_at_checked(n).ok_or("truncated element")?;
                rest = tail;
                let mut bytes = [0u8; 8];
                bytes[..n].copy_from_slice(head);
                Ok(u64::from_le_bytes(bytes) as usize)
            };
            let (offset, n) = match tag & 3 {
                0 => {
                    let n = match tag >> 2 {
                        m @ 0..60 => m as usize,
                        m => take(m as usize - 59)?,
                    } + 1;
                    let (bytes, tail) = rest.split_at_checked(n).ok_or("truncated literal")?;
                    out.extend_from_slice(bytes);
                    rest = tail;
                    continue;
                }
                1 => (
                    (tag as usize >> 5) << 8 | take(1)?,
                    (tag as usize >> 2 & 7) + 4,
                ),
                2 => (take(2)?, (tag as usize >> 2) + 1),
                _ => (take(4)?, (tag as usize >> 2) + 1),
            };
            if offset == 0 || offset > out.len() {
                return Err(format!("offset {offset} out of range"));
            }
            for _ in 0..n {
                out.push(out[out.len() - offset]);
            }
        }
        (out.len() == len)
            .then_some(out)
            .ok_or_else(|| "wrong length".into())
    }

    fn round_trip(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Compressor::default().compress(input, &mut out);
        assert_eq!(decompress(&out).as_deref(), Ok(input), "{input:?}");
        out
    }

    #[test]
    fn small_blocks_have_the_exact_bytes() {
        assert_eq!(round_trip(b""), [0]);
        assert_eq!(round_trip(b"abc"), [3, 2 << 2, b'a', b'b', b'c']);
        // "abcd" then a copy of 8 bytes from 4 back (one-byte offset form), overlapping itself.
        assert_eq!(
            round_trip(b"abcdabcdabcd"),
            [12, 3 << 2, b'a', b'b', b'c', b'd', (8 - 4) << 2 | 1, 4]
        );
    }

    #[test]
    fn long_literals_and_copies_split_as_the_format_requires() {
        // Pseudo-random bytes that never repeat four at a time: one literal with a two-byte length.
        let mut state = 0x2545_f491u32;
        let unique: Vec<u8> = (0..3000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let out = round_trip(&unique);
        assert_eq!(out[2], 61 << 2, "a literal whose length takes two bytes");
        assert_eq!(out.len(), 2 + 3 + 3000);
        // A long run: copies of at most 64 bytes each.
        let out = round_trip(&[7u8; 1000]);
        assert!(out.len() < 60, "{}", out.len());
        // A repeat farther back than 2047 bytes needs the two-byte offset.
        let mut far = unique[..2100].to_vec();
        far.extend_from_slice(&unique[..50]);
        round_trip(&far);
    }

    #[test]
    fn random_and_repetitive_inputs_round_trip() {
        let mut state = 0x9e37_79b9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..300 {
            let len = (next() % 5000) as usize;
            let alphabet = 1 + next() % 8;
            let input: Vec<u8> = (0..len).map(|_| (next() % alphabet) as u8).collect();
            round_trip(&input);
        }
        // Farther than the longest offset: matches there are not taken.
        let mut input: Vec<u8> = (0..70_000u32).map(|_| next() as u8).collect();
        input.extend_from_within(..100);
        round_trip(&input);
    }
}
