//! The disk spool of one output: batches its targets could not take, kept in segment files until
//! they can be replayed, oldest first.
//!
//! Layout: a directory (created 0700) of segment files `<16 hex digits>.seg` (0600) and the read
//! position `cursor` (0600). A segment is a run of records; a record is a 4-byte big-endian payload
//! length, the payload's CRC-32 (4 bytes, big-endian), and the payload: one batch, as JSON lines of
//! events. A new segment is started when the current one reaches `segment_bytes`.
//!
//! Files: the directory and every file in it go through [`crate::files`]. A segment or cursor that
//! is not a regular file owned by pipit's user with mode 0600 and one link (one another user
//! planted or forged) is refused, logged and counted (`refused_files`), never replayed; a new
//! segment is created only under a free name, never through something planted there. Each segment
//! stays open from when it is found or made until it is deleted, so it is checked once and read
//! through that handle.
//!
//! Bounds: the spool never holds more than `max_bytes`. When a batch does not fit, `drop_oldest`
//! deletes the oldest segments to make room and `drop_newest` refuses the batch; either way every
//! event dropped is counted.
//!
//! Replay: [`Spool::peek`] reads the oldest record; after the caller delivered it, [`Spool::commit`]
//! moves past it, and a segment whose records are all delivered is deleted at once. The read
//! position is saved by [`Spool::checkpoint`] (at shutdown, and by the caller from time to time)
//! into `cursor`, a file of fixed size made when the spool opens and then overwritten in place:
//! neither saving the position nor deleting a segment needs a free block, so replay drains a spool
//! on a full file system. After a crash, records delivered since the last checkpoint are delivered
//! again (at least once: nothing is lost, a few may be duplicated). A corrupt record (bad length or
//! checksum, torn by a power cut) is skipped and counted, never fatal.
//!
//! A full file system: a batch that does not fit is cut back off the segment (freeing what it
//! took) and refused with [`SpoolError::no_space`]; the next batch tries again. A directory removed
//! (or replaced) while in use is noticed at the next append or read: it is made again and every
//! undelivered record, read back through the open segments, is written into it; what cannot be is
//! counted as `lost_events`.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::crc32;
use crate::event::Event;
use crate::files::{self, Dir, FilesError, Sharing};

/// Size of a record header: length and checksum.
const HEADER: u64 = 8;
/// Largest payload accepted when reading; a longer length means the record is corrupt.
const MAX_PAYLOAD: u64 = 64 << 20;
/// The most segments a spool is made of: each stays open while it holds events, so a config
/// whose `max_bytes` would need more gets larger segments.
pub const MAX_SEGMENTS: u64 = 64;
/// What becomes of a refused segment, for its log line.
const LEFT_ALONE: &str = "it is left alone and never replayed";
/// The cursor file's name.
const CURSOR: &str = "cursor";
/// Bytes of the cursor: `<16 hex digits> <20 decimal digits>\n`, always this long.
const CURSOR_LEN: usize = 38;

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
    pub dir: std::path::PathBuf,
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
    /// Files refused (another owner, a loose mode, a symlink, a FIFO): never read or replayed.
    pub refused_files: u64,
    /// Undelivered events lost because the directory was removed and they could not be written
    /// again.
    pub lost_events: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Events in this segment not yet committed.
    events: u64,
    file: File,
}

/// An open spool.
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    dir: Dir,
    segments: VecDeque<Segment>,
    /// Whether the newest segment still takes records.
    writing: bool,
    /// The cursor file, once made.
    cursor: Option<File>,
    /// Offset of the next record to replay in the oldest segment.
    read_offset: u64,
    /// The record returned by the last `peek`: its length on disk and its event count.
    peeked: Option<(u64, u64)>,
    /// The id of the next segment; ids only grow, so the cursor never names a reused one.
    next_id: u64,
    stats: SpoolStats,
}

/// An error of the spool's own files; the message names the path.
#[derive(Debug)]
pub struct SpoolError {
    /// What went wrong, with the path.
    pub message: String,
    /// True when the file system is full: the batch was not kept, and the next one tries again.
    pub no_space: bool,
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpoolError {}

impl From<FilesError> for SpoolError {
    fn from(e: FilesError) -> SpoolError {
        SpoolError {
            no_space: e.is_full(),
            message: format!("spool: {e}"),
        }
    }
}

fn err(dir: &Dir, name: &str, e: io::Error) -> SpoolError {
    SpoolError {
        no_space: files::is_full(&e),
        message: format!("spool {}: {e}", dir.join(name).display()),
    }
}

fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

impl Spool {
    /// Opens (creating if needed) the spool directory and scans what an earlier run left.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = Dir::open(&config.dir, Sharing::Private)?;
        let mut ids: Vec<u64> = dir
            .names()?
            .iter()
            .filter_map(|name| {
                let stem = name.strip_suffix(".seg")?;
                (stem.len() == 16).then(|| u64::from_str_radix(stem, 16).ok())?
            })
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            config,
            dir,
            segments: VecDeque::new(),
            writing: false,
            cursor: None,
            read_offset: 0,
            peeked: None,
            next_id: ids.last().map_or(1, |last| last + 1),
            stats: SpoolStats::default(),
        };
        let cursor = spool.open_cursor();
        for id in ids {
            let name = segment_name(id);
            let file = match spool.dir.open_file(&name, false) {
                Ok(file) => file,
                Err(e) => {
                    spool.refuse(&e, LEFT_ALONE);
                    continue;
                }
            };
            if cursor.is_some_and(|(cid, _)| cid > id) {
                // Already delivered before the checkpoint.
                spool.dir.remove(&name)?;
                continue;
            }
            let start = match cursor {
                Some((cid, offset)) if cid == id => offset,
                _ => 0,
            };
            let (bytes, events, corrupt) =
                scan(&file, start).map_err(|e| err(&spool.dir, &name, e))?;
            spool.stats.corrupt_records += corrupt;
            if spool.segments.is_empty() {
                spool.read_offset = start.min(bytes);
            }
            spool.stats.bytes += bytes;
            spool.stats.events += events;
            spool.segments.push_back(Segment {
                id,
                bytes,
                events,
                file,
            });
        }
        Ok(spool)
    }

    /// Logs and counts a file refused by its checks; `then` says what becomes of it.
    fn refuse(&mut self, e: &FilesError, then: &str) {
        self.stats.refused_files += 1;
        log::warn!(target: "spool", "{e}; {then}");
    }

    /// Opens the cursor, or makes it (at its fixed size) if missing or refused; returns the saved
    /// position. On a full file system there is no cursor until a checkpoint can make one.
    fn open_cursor(&mut self) -> Option<(u64, u64)> {
        match self.dir.open_file(CURSOR, true) {
            Ok(file) => {
                let mut text = [0u8; CURSOR_LEN];
                let saved = file.read_exact_at(&mut text, 0).ok().and_then(|()| {
                    let (id, offset) = std::str::from_utf8(&text).ok()?.trim().split_once(' ')?;
                    Some((u64::from_str_radix(id, 16).ok()?, offset.parse().ok()?))
                });
                self.cursor = Some(file);
                return saved;
            }
            Err(e @ FilesError::Refused { .. }) => {
                self.refuse(
                    &e,
                    "removed and made again: replay starts at the oldest segment's beginning",
                );
                if let Err(e) = self.dir.remove(CURSOR) {
                    log::warn!(target: "spool", "{e}");
                }
            }
            Err(_) => {}
        }
        let _ = self.make_cursor();
        None
    }

    /// Makes the cursor file at its fixed size, saying "nothing delivered".
    fn make_cursor(&mut self) -> Result<(), SpoolError> {
        let file = self.dir.create_new(CURSOR)?;
        file.write_all_at(&cursor_text(0, 0), 0)
            .map_err(|e| err(&self.dir, CURSOR, e))?;
        self.cursor = Some(file);
        Ok(())
    }

    /// What the spool holds and has dropped.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// What the spool drops when full.
    pub fn when_full(&self) -> WhenFull {
        self.config.when_full
    }

    /// The spool's directory, for messages.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Saves the read position and, unless the policy is `never`, forces the segment being
    /// written to the disk.
    pub fn close(mut self) -> Result<(), SpoolError> {
        if self.config.fsync != Fsync::Never && self.writing {
            if let Some(last) = self.segments.back() {
                let _ = last.file.sync_data();
            }
        }
        self.checkpoint()
    }

    /// True when nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.stats.events == 0
    }

    /// Saves the read position, so that a restart does not replay what was delivered. It
    /// overwrites the cursor in place: no new block is needed.
    pub fn checkpoint(&mut self) -> Result<(), SpoolError> {
        let text = match self.segments.front() {
            Some(oldest) => cursor_text(oldest.id, self.read_offset),
            None => cursor_text(0, 0),
        };
        if self.cursor.is_none() {
            self.make_cursor()?;
        }
        let Some(cursor) = &self.cursor else {
            return Ok(());
        };
        cursor
            .write_all_at(&text, 0)
            .map_err(|e| err(&self.dir, CURSOR, e))
    }

    /// Makes the directory again if it was removed or replaced, and writes back what it held.
    fn recover_if_gone(&mut self) -> Result<(), SpoolError> {
        if !self.dir.is_gone() {
            return Ok(());
        }
        let held = self.stats.events;
        log::warn!(
            target: "spool",
            "{} was removed or replaced while in use: making it again and writing back the {held} \
             undelivered event(s) it held",
            self.dir.path().display()
        );
        // What is written back was counted as written when it first came.
        let written = (self.stats.written_events, self.stats.written_bytes);
        let old: Vec<Segment> = self.segments.drain(..).collect();
        let mut offset = self.read_offset;
        self.read_offset = 0;
        self.peeked = None;
        self.writing = false;
        self.cursor = None;
        self.stats.bytes = 0;
        self.stats.events = 0;
        let reopened = Dir::open(&self.config.dir, Sharing::Private);
        let mut lost = 0;
        match reopened {
            Ok(dir) => {
                self.dir = dir;
                let _ = self.make_cursor();
                for segment in old {
                    let mut at = std::mem::take(&mut offset);
                    let mut read = 0;
                    while at < segment.bytes {
                        match read_record(&segment.file, at, segment.bytes) {
                            Ok(Record::Batch(len, events)) => {
                                read += events.len() as u64;
                                lost += self.append(&events).unwrap_or(events.len() as u64);
                                at += len;
                            }
                            Ok(Record::Corrupt(len)) => {
                                self.stats.corrupt_records += 1;
                                at += len;
                            }
                            Err(_) => {
                                lost += segment.events.saturating_sub(read);
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                lost = held;
                self.stats.lost_events += lost;
                return Err(e.into());
            }
        }
        (self.stats.written_events, self.stats.written_bytes) = written;
        self.stats.lost_events += lost;
        if lost > 0 {
            log::warn!(target: "spool", "{lost} event(s) could not be written back and are lost");
        }
        Ok(())
    }

    /// Appends a batch. Returns how many events were dropped to respect `max_bytes` (the batch's
    /// own with `drop_newest`, older ones with `drop_oldest`).
    pub fn push(&mut self, batch: &[Event]) -> Result<u64, SpoolError> {
        if batch.is_empty() {
            return Ok(0);
        }
        self.recover_if_gone()?;
        self.append(batch)
    }

    fn append(&mut self, batch: &[Event]) -> Result<u64, SpoolError> {
        let mut payload = Vec::with_capacity(batch.len() * 128);
        for event in batch {
            serde_json::to_writer(&mut payload, event).map_err(|e| SpoolError {
                message: format!("spool: cannot encode an event: {e}"),
                no_space: false,
            })?;
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
            Some(last) => !self.writing || last.bytes >= self.config.segment_bytes,
        };
        if needs_new {
            self.rotate()?;
        }
        let last = self.segments.back_mut().expect("rotate made a segment");
        let mut record = Vec::with_capacity(record_len as usize);
        record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        record.extend_from_slice(&crc32::checksum(&payload).to_be_bytes());
        record.extend_from_slice(&payload);
        let written = last.file.write_all_at(&record, last.bytes).and_then(|()| {
            if self.config.fsync == Fsync::Always {
                last.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Cut off what part of the record went in: it frees its blocks, and the segment ends
            // with a whole record again.
            let _ = last.file.set_len(last.bytes);
            return Err(err(&self.dir, &segment_name(last.id), e));
        }
        last.bytes += record_len;
        last.events += batch.len() as u64;
        self.stats.bytes += record_len;
        self.stats.events += batch.len() as u64;
        self.stats.written_bytes += record_len;
        self.stats.written_events += batch.len() as u64;
        Ok(dropped)
    }

    /// Closes the segment being written (fsyncing it per policy) and starts a new one under a free
    /// name. A name someone else took (a planted symlink or file) is refused, counted and skipped.
    fn rotate(&mut self) -> Result<(), SpoolError> {
        if self.writing && self.config.fsync != Fsync::Never {
            if let Some(last) = self.segments.back() {
                let _ = last.file.sync_data();
            }
        }
        self.writing = false;
        loop {
            let id = self.next_id;
            self.next_id += 1;
            match self.dir.create_new(&segment_name(id)) {
                Ok(file) => {
                    self.segments.push_back(Segment {
                        id,
                        bytes: 0,
                        events: 0,
                        file,
                    });
                    self.writing = true;
                    return Ok(());
                }
                Err(e @ FilesError::Refused { .. }) if self.stats.refused_files < 1000 => {
                    self.refuse(&e, LEFT_ALONE);
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        self.recover_if_gone()?;
        loop {
            let Some(oldest) = self.segments.front() else {
                return Ok(None);
            };
            let size = oldest.bytes;
            if self.read_offset >= size {
                if self.segments.len() == 1 && self.writing {
                    return Ok(None);
                }
                self.remove_oldest()?;
                continue;
            }
            match read_record(&oldest.file, self.read_offset, size) {
                Ok(Record::Batch(len, events)) => {
                    self.peeked = Some((len, events.len() as u64));
                    return Ok(Some(events));
                }
                Ok(Record::Corrupt(len)) => {
                    self.stats.corrupt_records += 1;
                    self.read_offset += len;
                }
                Err(e) => return Err(err(&self.dir, &segment_name(oldest.id), e)),
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
            self.writing = false;
        }
        self.stats.bytes -= oldest.bytes;
        self.stats.events -= oldest.events;
        self.read_offset = 0;
        self.peeked = None;
        self.dir.remove(&segment_name(oldest.id))?;
        Ok(oldest.events)
    }
}

/// The cursor's text for segment `id` at `offset`, always [`CURSOR_LEN`] bytes.
fn cursor_text(id: u64, offset: u64) -> Vec<u8> {
    format!("{id:016x} {offset:020}\n").into_bytes()
}

enum Record {
    /// A good record: its length on disk and its events.
    Batch(u64, Vec<Event>),
    /// A corrupt record and how far to skip past it.
    Corrupt(u64),
}

/// Reads the record at `offset` of a segment of `size` bytes.
fn read_record(file: &File, offset: u64, size: u64) -> io::Result<Record> {
    let mut header = [0u8; HEADER as usize];
    let rest = size - offset;
    if rest < HEADER || file.read_exact_at(&mut header, offset).is_err() {
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
    file.read_exact_at(&mut payload, offset + HEADER)?;
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
fn scan(file: &File, start: u64) -> io::Result<(u64, u64, u64)> {
    let size = file.metadata()?.len();
    let (mut offset, mut events, mut corrupt) = (start.min(size), 0, 0);
    while offset < size {
        match read_record(file, offset, size)? {
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
    use std::fs;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use super::*;

    struct TestDir(PathBuf);
    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> TestDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TestDir(
            std::env::temp_dir().join(format!("pipit-spool-{tag}-{}-{nanos}", std::process::id())),
        )
    }

    fn config(
        dir: &TestDir,
        max_bytes: u64,
        segment_bytes: u64,
        when_full: WhenFull,
    ) -> SpoolConfig {
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

    #[test]
    fn the_cursor_is_owner_only_and_never_grows() {
        let d = dir("cursor");
        let mut spool = Spool::open(config(&d, 1 << 20, 300, WhenFull::DropOldest)).unwrap();
        for b in 0..6 {
            spool.push(&batch(b * 3, 3)).unwrap();
        }
        let cursor = d.0.join(CURSOR);
        for _ in 0..4 {
            spool.peek().unwrap().unwrap();
            spool.commit().unwrap();
            spool.checkpoint().unwrap();
            let meta = fs::metadata(&cursor).unwrap();
            assert_eq!(meta.len(), CURSOR_LEN as u64);
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_segment_pipit_did_not_write_is_refused_and_never_replayed() {
        let d = dir("forged");
        let mut spool = Spool::open(config(&d, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
        spool.push(&batch(0, 2)).unwrap();
        drop(spool);
        // A copy of a real segment under the next name, as anyone could write it: mode 0644.
        let real = fs::read(d.0.join(segment_name(1))).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(d.0.join(segment_name(2)))
            .unwrap();
        fs::write(d.0.join(segment_name(2)), &real).unwrap();
        let mut spool = Spool::open(config(&d, 1 << 20, 1 << 20, WhenFull::DropOldest)).unwrap();
        assert_eq!(spool.stats().refused_files, 1);
        assert_eq!(drain(&mut spool), vec![0, 1]);
        assert!(d.0.join(segment_name(2)).exists(), "left alone");
        // The next segment is made under a new name, not appended to the refused one.
        spool.push(&batch(7, 1)).unwrap();
        assert!(d.0.join(segment_name(3)).exists());
        assert_eq!(fs::read(d.0.join(segment_name(2))).unwrap(), real);
    }

    #[test]
    fn a_removed_directory_is_made_again_with_what_it_held() {
        let d = dir("removed");
        let mut spool = Spool::open(config(&d, 1 << 20, 200, WhenFull::DropOldest)).unwrap();
        for b in 0..5 {
            spool.push(&batch(b * 2, 2)).unwrap();
        }
        spool.peek().unwrap().unwrap();
        spool.commit().unwrap();
        fs::remove_dir_all(&d.0).unwrap();
        spool.push(&batch(10, 2)).unwrap();
        assert!(d.0.is_dir());
        assert_eq!(spool.stats().lost_events, 0);
        assert_eq!(drain(&mut spool), (2..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_name_taken_before_a_new_segment_is_made_is_refused_and_skipped() {
        let d = dir("planted");
        let victim = dir("planted-victim");
        fs::create_dir_all(&victim.0).unwrap();
        let target = victim.0.join("target");
        fs::write(&target, "keep").unwrap();
        let mut spool = Spool::open(config(&d, 1 << 20, 1024, WhenFull::DropOldest)).unwrap();
        spool.push(&batch(0, 20)).unwrap();
        std::os::unix::fs::symlink(&target, d.0.join(segment_name(2))).unwrap();
        spool.push(&batch(20, 1)).unwrap();
        assert_eq!(spool.stats().refused_files, 1);
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(d.0.join(segment_name(3)).is_file());
        assert_eq!(drain(&mut spool), (0..21).collect::<Vec<_>>());
    }
}
