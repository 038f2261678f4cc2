//! The disk spool of one output: batches its targets could not take, kept in segment files until
//! they can be replayed, oldest first.
//!
//! Layout: a directory (created 0700) of segment files `<16 hex digits>.seg` (0600). A segment is a
//! run of records; a record is a 4-byte big-endian payload length, the payload's CRC-32 (4 bytes,
//! big-endian), and the payload: one batch, as JSON lines of events. A new segment is started when
//! the current one reaches `segment_bytes`.
//!
//! Bounds: the spool never holds more than `max_bytes`. When a batch does not fit, `drop_oldest`
//! deletes the oldest segments to make room and `drop_newest` refuses the batch; either way every
//! event dropped is counted.
//!
//! Replay: [`Spool::peek`] reads the oldest record; after the caller delivered it, [`Spool::commit`]
//! moves past it, and a segment whose records are all delivered is deleted. The read position is
//! saved in the file `cursor` by [`Spool::checkpoint`] (at shutdown, and by the caller from time to
//! time); after a crash, records delivered since the last checkpoint are delivered again (at least
//! once: nothing is lost, a few may be duplicated). A corrupt record (bad length or checksum, torn
//! by a power cut) is skipped and counted, never fatal.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::crc32;
use crate::event::Event;

/// Size of a record header: length and checksum.
const HEADER: u64 = 8;
/// Largest payload accepted when reading; a longer length means the record is corrupt.
const MAX_PAYLOAD: u64 = 64 << 20;

/// What to drop when a batch does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Delete the oldest segments to make room (keeps the freshest data; the default).
    DropOldest,
    /// Refuse the new batch (keeps the oldest data).
    DropNewest,
}

/// When spool writes are forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never: the kernel writes back in its own time (a power cut loses the last few seconds).
    Never,
    /// When a segment is full and closed (the default: one fsync per `segment_bytes`).
    Segment,
    /// After every batch (the safest and the hardest on flash).
    Always,
}

/// Settings of a spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The directory; one per output.
    pub dir: PathBuf,
    /// Most bytes on disk, headers included.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
    /// What to drop when full.
    pub when_full: WhenFull,
    /// When to fsync.
    pub fsync: Fsync,
}

/// What the spool holds and has dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes on disk not yet delivered (whole segments, including delivered records of the oldest).
    pub bytes: u64,
    /// Events waiting to be replayed.
    pub events: u64,
    /// Events dropped because the spool was full.
    pub dropped_full: u64,
    /// Records skipped because they were corrupt.
    pub corrupt_records: u64,
    /// Events written since the spool was opened.
    pub written_events: u64,
    /// Bytes written since the spool was opened, headers included.
    pub written_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Events in this segment not yet committed.
    events: u64,
}

/// An open spool.
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Offset of the next record to replay in the oldest segment.
    read_offset: u64,
    /// The record returned by the last `peek`: its length on disk and its event count.
    peeked: Option<(u64, u64)>,
    /// The id of the next segment; ids only grow, so the cursor never names a reused one.
    next_id: u64,
    stats: SpoolStats,
}

/// Errors of the spool's own files; the message names the path.
#[derive(Debug)]
pub struct SpoolError(pub String);

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(path: &Path, e: io::Error) -> SpoolError {
    SpoolError(format!("spool {}: {e}", path.display()))
}

impl Spool {
    /// Opens (creating if needed) the spool directory and scans what an earlier run left.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(|e| err(&config.dir, e))?;
        let mut ids: Vec<u64> = fs::read_dir(&config.dir)
            .map_err(|e| err(&config.dir, e))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                let stem = name.to_str()?.strip_suffix(".seg")?;
                (stem.len() == 16).then(|| u64::from_str_radix(stem, 16).ok())?
            })
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            config,
            segments: VecDeque::new(),
            writer: None,
            read_offset: 0,
            peeked: None,
            next_id: ids.last().map_or(1, |last| last + 1),
            stats: SpoolStats::default(),
        };
        let cursor = spool.read_cursor();
        for id in ids {
            let path = spool.segment_path(id);
            let start = match cursor {
                Some((cid, offset)) if cid == id => offset,
                _ => 0,
            };
            let (bytes, events, corrupt) = scan(&path, start).map_err(|e| err(&path, e))?;
            spool.stats.corrupt_records += corrupt;
            if cursor.is_some_and(|(cid, _)| cid > id) {
                // Already delivered before the checkpoint.
                let _ = fs::remove_file(&path);
                continue;
            }
            if spool.segments.is_empty() {
                spool.read_offset = start.min(bytes);
            }
            spool.stats.bytes += bytes;
            spool.stats.events += events;
            spool.segments.push_back(Segment { id, bytes, events });
        }
        Ok(spool)
    }

    /// What the spool holds and has dropped.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// What the spool drops when full.
    pub fn when_full(&self) -> WhenFull {
        self.config.when_full
    }

    /// Saves the read position and, unless the policy is `never`, forces the segment being
    /// written to the disk.
    pub fn close(mut self) -> Result<(), SpoolError> {
        if let Some(writer) = self.writer.take() {
            if self.config.fsync != Fsync::Never {
                let _ = writer.sync_data();
            }
        }
        self.checkpoint()
    }

    /// True when nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.stats.events == 0
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.config.dir.join(format!("{id:016x}.seg"))
    }

    fn cursor_path(&self) -> PathBuf {
        self.config.dir.join("cursor")
    }

    fn read_cursor(&self) -> Option<(u64, u64)> {
        let text = fs::read_to_string(self.cursor_path()).ok()?;
        let (id, offset) = text.trim().split_once(' ')?;
        Some((u64::from_str_radix(id, 16).ok()?, offset.parse().ok()?))
    }

    /// Saves the read position, so that a restart does not replay what was delivered.
    pub fn checkpoint(&mut self) -> Result<(), SpoolError> {
        let path = self.cursor_path();
        let Some(oldest) = self.segments.front() else {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(&path, e)),
                _ => Ok(()),
            };
        };
        let tmp = self.config.dir.join("cursor.tmp");
        let text = format!("{:016x} {}\n", oldest.id, self.read_offset);
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| err(&path, e))
    }

    /// Appends a batch. Returns how many events were dropped to respect `max_bytes` (the batch's
    /// own with `drop_newest`, older ones with `drop_oldest`).
    pub fn push(&mut self, batch: &[Event]) -> Result<u64, SpoolError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut payload = Vec::with_capacity(batch.len() * 128);
        for event in batch {
            serde_json::to_writer(&mut payload, event)
                .map_err(|e| SpoolError(format!("spool: cannot encode an event: {e}")))?;
            payload.push(b'\n');
        }
        let record_len = HEADER + payload.len() as u64;
        let mut dropped = 0;
        if self.stats.bytes + record_len > self.config.max_bytes {
            match self.config.when_full {
                WhenFull::DropNewest => {
                    self.stats.dropped_full += batch.len() as u64;
                    return Ok(batch.len() as u64);
                }
                WhenFull::DropOldest => {
                    while self.stats.bytes + record_len > self.config.max_bytes
                        && !self.segments.is_empty()
                    {
                        dropped += self.drop_oldest_segment()?;
                    }
                    if record_len > self.config.max_bytes {
                        self.stats.dropped_full += batch.len() as u64;
                        return Ok(dropped + batch.len() as u64);
                    }
                }
            }
        }
        let needs_new = match self.segments.back() {
            None => true,
            Some(last) => self.writer.is_none() || last.bytes >= self.config.segment_bytes,
        };
        if needs_new {
            self.rotate()?;
        }
        let last = self.segments.back_mut().expect("rotate made a segment");
        let path = self.config.dir.join(format!("{:016x}.seg", last.id));
        let writer = self.writer.as_mut().expect("rotate opened a writer");
        let mut record = Vec::with_capacity(record_len as usize);
        record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        record.extend_from_slice(&crc32::checksum(&payload).to_be_bytes());
        record.extend_from_slice(&payload);
        writer.write_all(&record).map_err(|e| err(&path, e))?;
        if self.config.fsync == Fsync::Always {
            writer.sync_data().map_err(|e| err(&path, e))?;
        }
        last.bytes += record_len;
        last.events += batch.len() as u64;
        self.stats.bytes += record_len;
        self.stats.events += batch.len() as u64;
        self.stats.written_bytes += record_len;
        self.stats.written_events += batch.len() as u64;
        Ok(dropped)
    }

    /// Closes the segment being written (fsyncing it per policy) and starts a new one.
    fn rotate(&mut self) -> Result<(), SpoolError> {
        if let Some(old) = self.writer.take() {
            if self.config.fsync != Fsync::Never {
                let _ = old.sync_data();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err(&path, e))?;
        self.writer = Some(file);
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            events: 0,
        });
        Ok(())
    }

    /// Deletes the oldest segment as dropped; returns the undelivered events it held.
    fn drop_oldest_segment(&mut self) -> Result<u64, SpoolError> {
        let events = self.remove_oldest()?;
        self.stats.dropped_full += events;
        Ok(events)
    }

    /// The oldest undelivered batch, or `None` when the spool is empty. Corrupt records are
    /// skipped (and counted) on the way. Call [`Spool::commit`] once it is delivered.
    pub fn peek(&mut self) -> Result<Option<Vec<Event>>, SpoolError> {
        loop {
            let Some(oldest) = self.segments.front() else {
                return Ok(None);
            };
            let (id, size) = (oldest.id, oldest.bytes);
            if self.read_offset >= size {
                if self.segments.len() == 1 && self.writer.is_some() {
                    return Ok(None);
                }
                self.remove_oldest()?;
                continue;
            }
            let path = self.segment_path(id);
            match read_record(&path, self.read_offset, size) {
                Ok(Record::Batch(len, events)) => {
                    self.peeked = Some((len, events.len() as u64));
                    return Ok(Some(events));
                }
                Ok(Record::Corrupt(len)) => {
                    self.stats.corrupt_records += 1;
                    self.read_offset += len;
                }
                Err(e) => return Err(err(&path, e)),
            }
        }
    }

    /// Marks the batch returned by the last [`Spool::peek`] as delivered.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        let Some((len, events)) = self.peeked.take() else {
            return Ok(());
        };
        self.read_offset += len;
        if let Some(oldest) = self.segments.front_mut() {
            oldest.events = oldest.events.saturating_sub(events);
        }
        self.stats.events = self.stats.events.saturating_sub(events);
        let done = self
            .segments
            .front()
            .is_some_and(|s| self.read_offset >= s.bytes);
        if done {
            self.remove_oldest()?;
        }
        Ok(())
    }

    /// Deletes the oldest segment; returns the undelivered events it held.
    fn remove_oldest(&mut self) -> Result<u64, SpoolError> {
        let Some(oldest) = self.segments.pop_front() else {
            return Ok(0);
        };
        if self.segments.is_empty() {
            self.writer = None;
        }
        let path = self.segment_path(oldest.id);
        fs::remove_file(&path).map_err(|e| err(&path, e))?;
        self.stats.bytes -= oldest.bytes;
        self.stats.events -= oldest.events;
        self.read_offset = 0;
        self.peeked = None;
        Ok(oldest.events)
    }
}

enum Record {
    /// A good record: its length on disk and its events.
    Batch(u64, Vec<Event>),
    /// A corrupt record and how far to skip past it.
    Corrupt(u64),
}

/// Reads the record at `offset` of a segment of `size` bytes.
fn read_record(path: &Path, offset: u64, size: u64) -> io::Result<Record> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut header = [0u8; HEADER as usize];
    let rest = size - offset;
    if rest < HEADER || file.read_exact(&mut header).is_err() {
        return Ok(Record::Corrupt(rest));
    }
    let len = u64::from(u32::from_be_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD || HEADER + len > rest {
        // The length itself is damaged: nothing after it can be trusted in this segment.
        return Ok(Record::Corrupt(rest));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact(&mut payload)?;
    if crc32::checksum(&payload) != crc {
        return Ok(Record::Corrupt(HEADER + len));
    }
    match decode(&payload) {
        Some(events) => Ok(Record::Batch(HEADER + len, events)),
        None => Ok(Record::Corrupt(HEADER + len)),
    }
}

/// The events of a record's payload, or `None` if any line is not an event.
fn decode(payload: &[u8]) -> Option<Vec<Event>> {
    let text = std::str::from_utf8(payload).ok()?;
    text.lines()
        .map(|line| Event::from_json(&serde_json::from_str(line).ok()?).ok())
        .collect()
}

/// Size, undelivered events from `start`, and corrupt records of a segment file.
fn scan(path: &Path, start: u64) -> io::Result<(u64, u64, u64)> {
    let size = fs::metadata(path)?.len();
    let (mut offset, mut events, mut corrupt) = (start.min(size), 0, 0);
    while offset < size {
        match read_record(path, offset, size)? {
            Record::Batch(len, batch) => {
                events += batch.len() as u64;
                offset += len;
            }
            Record::Corrupt(len) => {
                corrupt += 1;
                offset += len;
            }
        }
    }
    Ok((size, events, corrupt))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Dir(std::env::temp_dir().join(format!("pipit-spool-{tag}-{}-{nanos}", std::process::id())))
    }

    fn config(dir: &Dir, max_bytes: u64, segment_bytes: u64, when_full: WhenFull) -> SpoolConfig {
        SpoolConfig {
            dir: dir.0.clone(),
            max_bytes,
            segment_bytes,
            when_full,
            fsync: Fsync::Segment,
        }
    }

    fn batch(from: i64, n: i64) -> Vec<Event> {
        (from..from + n)
            .map(|i| {
                Event::new("m", "h")
                    .with_metric(i)
                    .with_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            })
            .collect()
    }

    fn drain(spool: &mut Spool) -> Vec<i64> {
        let mut seen = Vec::new();
        while let Some(events) = spool.peek().unwrap() {
            seen.extend(events.iter().map(|e| match e.metric {
                Some(crate::Metric::Int(i)) => i,
                _ => panic!("not an int"),
            }));
            spool.commit().unwrap();
        }
        seen
    }

    #[test]
    fn replays_oldest_first_across_segments_and_deletes_what_was_delivered() {
        let d = dir("order");
        let mut spool = Spool::open(config(&d, 1 << 20, 500, WhenFull::DropOldest)).unwrap();
        for b in 0..10 {
            assert_eq!(spool.push(&batch(b * 5, 5)).unwrap(), 0);
        }
        assert_eq!(spool.stats().events, 50);
        assert!(fs::read_dir(&d.0).unwrap().count() > 2, "several segments");
        assert_eq!(drain(&mut spool), (0..50).collect::<Vec<_>>());
        assert_eq!(spool.stats().events, 0);
        spool.push(&batch(50, 1)).unwrap();
        assert_eq!(drain(&mut spool), vec![50]);
    }

    #[test]
    fn survives_a_restart_and_resumes_after_the_checkpoint() {
        let d = dir("restart");
        {
            let mut spool = Spool::open(config(&d, 1 << 20, 300, WhenFull::DropOldest)).unwrap();
            for b in 0..6 {
                spool.push(&batch(b * 3, 3)).unwrap();
            }
            // Deliver two batches, checkpoint, deliver one more without a checkpoint.
            for _ in 0..2 {
                spool.peek().unwrap().unwrap();
                spool.commit().unwrap();
            }
            spool.checkpoint().unwrap();
            spool.peek().unwrap().unwrap();
            spool.commit().unwrap();
        }
        let mut spool = Spool::open(config(&d, 1 << 20, 300, WhenFull::DropOldest)).unwrap();
        // The batch delivered after the checkpoint comes again (at least once); nothing is lost.
        assert_eq!(spool.stats().events, 12);
        assert_eq!(drain(&mut spool), (6..18).collect::<Vec<_>>());
    }

    #[test]
    fn a_corrupt_record_is_skipped_and_counted() {
        let d = dir("corrupt");
        let mut spool = Spool::open(config(&d, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
        for b in 0..3 {
            spool.push(&batch(b * 2, 2)).unwrap();
        }
        drop(spool);
        let seg = d.0.join(format!("{:016x}.seg", 1));
        let mut bytes = fs::read(&seg).unwrap();
        let first_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        // Flip a payload byte of the second record.
        bytes[8 + first_len + 8 + 3] ^= 0xff;
        // And tear the last record, as a power cut would.
        let torn = bytes.len() - 5;
        bytes.truncate(torn);
        fs::write(&seg, bytes).unwrap();
        let mut spool = Spool::open(config(&d, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
        assert_eq!(spool.stats().corrupt_records, 2);
        assert_eq!(drain(&mut spool), vec![0, 1]);
    }

    #[test]
    fn at_its_bound_drop_oldest_drops_exactly_the_oldest_segments() {
        let d = dir("drop-oldest");
        let one = {
            let probe = dir("probe");
            let mut s =
                Spool::open(config(&probe, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
            s.push(&batch(1000, 4)).unwrap();
            s.stats().bytes
        };
        // Room for exactly five records of this size; one record per segment.
        let mut spool = Spool::open(config(&d, one * 5, 1, WhenFull::DropOldest)).unwrap();
        let mut dropped = 0;
        for b in 0..8 {
            dropped += spool.push(&batch(1000 + b * 4, 4)).unwrap();
        }
        assert_eq!(dropped, 12);
        assert_eq!(spool.stats().dropped_full, 12);
        assert!(spool.stats().bytes <= one * 5);
        assert_eq!(drain(&mut spool), (1012..1032).collect::<Vec<_>>());
    }

    #[test]
    fn at_its_bound_drop_newest_refuses_the_new_batch() {
        let d = dir("drop-newest");
        let mut spool = Spool::open(config(&d, 400, 1 << 20, WhenFull::DropNewest)).unwrap();
        let mut dropped = 0;
        for b in 0..10 {
            dropped += spool.push(&batch(b * 2, 2)).unwrap();
        }
        let kept = spool.stats().events;
        assert_eq!(kept + dropped, 20);
        assert!(dropped > 0);
        assert_eq!(drain(&mut spool), (0..kept as i64).collect::<Vec<_>>());
    }

    #[test]
    fn files_are_owner_only() {
        let d = dir("modes");
        let mut spool = Spool::open(config(&d, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
        spool.push(&batch(0, 1)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&d.0).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let seg = d.0.join(format!("{:016x}.seg", 1));
        assert_eq!(
            fs::metadata(seg).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
