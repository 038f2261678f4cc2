//! Writers that move a cursor over room reserved in a buffer, shared by the plaintext and pickle
//! encoders to write each line or entry in place.
//!
//! With the release build's size optimisation, `copy_from_slice`, `extend_from_slice` and range
//! indexing stay calls (the first two to `memcpy`), which cost more than the few bytes they copy;
//! whole arrays written through `split_first_chunk_mut` are plain moves. The writers are forced
//! inline for the same reason. A cursor too short for what is written is a bug of its caller's
//! reservation, not of the input: the writers then panic rather than write past it.

/// Writes `bytes` at the cursor and moves it past them.
#[inline(always)]
pub(super) fn put<const N: usize>(out: &mut &mut [u8], bytes: [u8; N]) {
    let Some((head, rest)) = std::mem::take(out).split_first_chunk_mut::<N>() else {
        unreachable!("room was reserved");
    };
    *head = bytes;
    *out = rest;
}

/// Writes `src` at the cursor and moves it past it: up to 64 bytes as one byte or two fixed-size
/// copies that overlap, longer ones with `copy_from_slice`.
#[inline(always)]
pub(super) fn put_bytes(out: &mut &mut [u8], src: &[u8]) {
    let Some((dst, rest)) = std::mem::take(out).split_at_mut_checked(src.len()) else {
        unreachable!("room was reserved");
    };
    match src.len() {
        0 => {}
        1 => copy_overlapping::<1>(dst, src),
        2..4 => copy_overlapping::<2>(dst, src),
        4..8 => copy_overlapping::<4>(dst, src),
        8..16 => copy_overlapping::<8>(dst, src),
        16..32 => copy_overlapping::<16>(dst, src),
        32..=64 => copy_overlapping::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
    *out = rest;
}

/// Copies `src` into `dst` of the same length, `K` to `2 * K` bytes, as its first and its last
/// `K` bytes.
#[inline(always)]
fn copy_overlapping<const K: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Some(first), Some(to)) = (src.first_chunk::<K>(), dst.first_chunk_mut::<K>()) {
        *to = *first;
    }
    // `last_chunk` stays a call; splitting first and taking the first chunk of the rest does not.
    let tail = src.len().saturating_sub(K);
    if let (Some((_, src)), Some((_, dst))) =
        (src.split_at_checked(tail), dst.split_at_mut_checked(tail))
        && let (Some(last), Some(to)) = (src.first_chunk::<K>(), dst.first_chunk_mut::<K>())
    {
        *to = *last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_every_length_around_the_copy_sizes_are_whole() {
        let src: Vec<u8> = (0..300).map(|i| (i % 251) as u8 + 1).collect();
        for n in (0..=70).chain([127, 128, 129, 300]) {
            let mut room = [0u8; 320];
            let mut out = &mut room[..];
            put(&mut out, [0xaa]);
            put_bytes(&mut out, &src[..n]);
            put(&mut out, [0xbb, 0xcc]);
            let left = out.len();
            assert_eq!(left, 320 - n - 3, "{n}");
            assert_eq!(room[0], 0xaa);
            assert_eq!(&room[1..=n], &src[..n], "{n}");
            assert_eq!(room[n + 1..n + 3], [0xbb, 0xcc], "{n}");
            assert!(room[n + 3..].iter().all(|&b| b == 0), "{n}");
        }
    }
}
