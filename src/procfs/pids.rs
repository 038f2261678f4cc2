//! One file of every process, `/proc/<pid>/<name>`, kept open between collections.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// At most this many descriptors are kept (a router has a hundred processes or so); the files of
/// processes beyond it are opened, read and closed at every collection, so a box with thousands
/// of processes does not run the agent out of descriptors (1,024 by default).
pub const MAX_KEPT: usize = 256;

/// `/proc/<pid>/<name>` of every process, each opened once and read again with `pread` at offset
/// 0, where the kernel makes it anew: one system call a process instead of three.
///
/// A kept descriptor whose process has exited answers `ESRCH`; it is closed, and the file is
/// opened again by its path at once, since a new process may have the same pid. The files of
/// processes not read during a round are closed at [`PidFiles::end_round`].
#[derive(Debug)]
pub struct PidFiles {
    /// The process directory (`proc` under the root), then `<pid>/<name>` while one is opened.
    path: PathBuf,
    name: &'static str,
    kept: HashMap<u32, Kept>,
    round: u64,
}

#[derive(Debug)]
struct Kept {
    file: File,
    /// The round it was last read in.
    round: u64,
}

impl PidFiles {
    /// The file `name` of the processes under the directory `proc` (such as `/proc`).
    pub fn new(proc: PathBuf, name: &'static str) -> PidFiles {
        PidFiles {
            path: proc,
            name,
            kept: HashMap::new(),
            round: 0,
        }
    }

    /// Reads the start of the file of process `pid` (as much as `buf` holds, in one read) and
    /// returns how many bytes it read. A process that has exited answers `NotFound` or `ESRCH`.
    pub fn read(&mut self, pid: u32, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kept) = self.kept.get_mut(&pid) {
            if let Ok(n) = kept.file.read_at(buf, 0) {
                kept.round = self.round;
                return Ok(n);
            }
            self.kept.remove(&pid);
        }
        let file = self.open(pid)?;
        let n = file.read_at(buf, 0)?;
        if self.kept.len() < MAX_KEPT {
            let round = self.round;
            self.kept.insert(pid, Kept { file, round });
        }
        Ok(n)
    }

    /// Ends a round of reads: the files of the processes not read since the last call are closed.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.kept.retain(|_, kept| kept.round == round);
        self.round += 1;
    }

    /// How many descriptors are kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    fn open(&mut self, pid: u32) -> io::Result<File> {
        self.path.push(pid.to_string());
        self.path.push(self.name);
        let file = File::open(&self.path);
        self.path.pop();
        self.path.pop();
        file
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::ErrorKind;

    use super::*;
    use crate::files::scratch::scratch;

    fn process(dir: &std::path::Path, pid: u32, stat: &str) {
        fs::create_dir_all(dir.join(pid.to_string())).unwrap();
        fs::write(dir.join(format!("{pid}/stat")), stat).unwrap();
    }

    #[test]
    fn reads_each_process_again_and_closes_those_gone() {
        let dir = scratch("pids");
        process(&dir.0, 1, "1 (init) S");
        process(&dir.0, 42, "42 (sh) R");
        let mut files = PidFiles::new(dir.0.clone(), "stat");
        let mut buf = [0; 64];
        let n = files.read(42, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"42 (sh) R");
        files.read(1, &mut buf).unwrap();
        files.end_round();
        assert_eq!(files.kept(), 2);

        fs::write(dir.0.join("42/stat"), "42 (sh) S").unwrap();
        let n = files.read(42, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"42 (sh) S");
        files.end_round();
        // Process 1 was not read in that round: its file is closed.
        assert_eq!(files.kept(), 1);

        fs::remove_dir_all(dir.0.join("42")).unwrap();
        files.end_round();
        let e = files.read(42, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(files.kept(), 0);
    }

    #[test]
    fn beyond_the_bound_files_are_read_but_not_kept() {
        let dir = scratch("pids-bound");
        let mut files = PidFiles::new(dir.0.clone(), "stat");
        let mut buf = [0; 64];
        for pid in 1..=MAX_KEPT as u32 + 3 {
            process(&dir.0, pid, &format!("{pid} (p) S"));
            let n = files.read(pid, &mut buf).unwrap();
            assert_eq!(&buf[..n], format!("{pid} (p) S").as_bytes());
        }
        assert_eq!(files.kept(), MAX_KEPT);
    }

    #[test]
    fn the_live_system_s_own_process_is_read_again_after_it_changes() {
        let mut files = PidFiles::new(PathBuf::from("/proc"), "stat");
        let pid = std::process::id();
        let mut buf = [0; 1024];
        let before = files.read(pid, &mut buf).unwrap();
        assert!(buf[..before].starts_with(format!("{pid} (").as_bytes()));
        // Its CPU time (in clock ticks) grows as this thread reads: a read at offset 0 of the
        // kept descriptor shows the kernel's new figures, not the first read's.
        let first = buf[..before].to_vec();
        let changed = (0..1_000_000).any(|_| {
            let n = files.read(pid, &mut buf).unwrap();
            buf[..n] != first[..]
        });
        assert!(changed, "the kept /proc/{pid}/stat never changed");
        assert_eq!(files.kept(), 1);
    }
}
