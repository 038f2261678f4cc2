//! A spool segment file as a crash or a power cut may have left it, opened and drained.
//!
//! The first byte holds flags: bit 0 sets every record's checksum right (so the payloads reach
//! the event decoder rather than stopping at the checksum), bit 1 writes a cursor file whose offset
//! is the next two bytes, bit 2 writes the segment twice (ids 1 and 2).
#![no_main]

use pipit::delivery::spool::{Fsync, Spool, SpoolConfig, WhenFull};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let dir = pipit_fuzz::scratch("spool");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the spool directory is made");
    if flags & 2 != 0 && rest.len() >= 2 {
        let offset = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        std::fs::write(dir.join("cursor"), format!("0000000000000001 {offset}\n"))
            .expect("the cursor is written");
    }
    let mut segment = rest.to_vec();
    if flags & 1 != 0 {
        fix_checksums(&mut segment);
    }
    std::fs::write(dir.join("0000000000000001.seg"), &segment).expect("the segment is written");
    if flags & 4 != 0 {
        std::fs::write(dir.join("0000000000000002.seg"), &segment).expect("the segment is written");
    }
    let config = SpoolConfig {
        dir,
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        fsync: Fsync::Never,
    };
    let Ok(mut spool) = Spool::open(config) else {
        return;
    };
    // Every record is either delivered or skipped: the drain ends.
    for _ in 0..=segment.len() * 2 {
        match spool.peek() {
            Ok(Some(_)) => spool.commit().expect("a peeked record commits"),
            Ok(None) | Err(_) => break,
        }
    }
    assert!(
        spool.peek().map_or(true, |batch| batch.is_none()),
        "the drain ended early"
    );
    spool.checkpoint().expect("the cursor is written");
});

/// Writes the right CRC-32 into every record header whose length fits in the segment.
fn fix_checksums(segment: &mut [u8]) {
    let mut at = 0;
    while at + 8 <= segment.len() {
        let len = u32::from_be_bytes([
            segment[at],
            segment[at + 1],
            segment[at + 2],
            segment[at + 3],
        ]) as usize;
        let Some(end) = (at + 8)
            .checked_add(len)
            .filter(|&end| end <= segment.len())
        else {
            return;
        };
        let crc = pipit::crc32::checksum(&segment[at + 8..end]);
        segment[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}
