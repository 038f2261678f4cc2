//! The mount table, read again only when the kernel says it changed.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::{Procfs, ReadError, open_reading, read_from_start};
use crate::sys;

/// Where the mount table is, under the root.
const MOUNTS: &str = "proc/self/mounts";

/// `/proc/self/mounts` under a root, kept open and read again only when the mount table may have
/// changed. The kernel writes the whole table out at every read (every mount with its options),
/// while a mount or an unmount is rare; it also marks this file with `POLLPRI` when the table
/// changes after the last poll of the open file, so one poll without waiting tells whether the
/// text read last is still the table. A file not on procfs (a fixture tree in the tests) says
/// nothing by poll: it is read at every call.
#[derive(Debug)]
pub struct MountTable {
    procfs: Procfs,
    file: Option<File>,
    /// True when `file` is procfs's, which marks the table's changes.
    notifies: bool,
    text: String,
}

impl MountTable {
    /// Nothing read yet; the table is read under `procfs`'s root.
    pub fn new(procfs: Procfs) -> MountTable {
        MountTable {
            procfs,
            file: None,
            notifies: false,
            text: String::new(),
        }
    }

    /// The table's text: read at the first call, and again when it may have changed. A file that
    /// fails to read is opened again by its path at once; if that fails too, its error is
    /// returned.
    pub fn read(&mut self) -> Result<&str, ReadError> {
        if let Some(file) = &self.file {
            // Polled before the read: a change after the poll is marked for the next one.
            let unchanged =
                self.notifies && matches!(sys::exceptional_now(file.as_raw_fd()), Ok(false));
            if unchanged || read_from_start(file, &mut self.text).is_ok() {
                return Ok(&self.text);
            }
            self.file = None;
        }
        // Opened before the read: the open takes the table's state that its first poll compares
        // with, so a change between the two is read here or marked then.
        match open_reading(&self.procfs, MOUNTS, &mut self.text) {
            Ok(file) => {
                self.notifies = sys::is_on_procfs(&file);
                self.file = Some(file);
                Ok(&self.text)
            }
            Err(e) => {
                self.text.clear();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::ErrorKind;

    use super::*;
    use crate::files::scratch::scratch;

    #[test]
    fn a_fixture_table_is_read_at_every_call() {
        let dir = scratch("mounts-fixture");
        fs::create_dir_all(dir.0.join("proc/self")).unwrap();
        let file = dir.0.join(MOUNTS);
        fs::write(&file, "/dev/sda1 / ext4 rw 0 0\n").unwrap();
        let mut table = MountTable::new(Procfs::new(&dir.0));
        assert_eq!(table.read().unwrap(), "/dev/sda1 / ext4 rw 0 0\n");
        assert!(!table.notifies);
        fs::write(&file, "/dev/sda1 / ext4 ro 0 0\n").unwrap();
        assert_eq!(table.read().unwrap(), "/dev/sda1 / ext4 ro 0 0\n");
    }

    #[test]
    fn a_missing_table_is_one_clear_error() {
        let dir = scratch("mounts-missing");
        let mut table = MountTable::new(Procfs::new(&dir.0));
        let e = table.read().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("proc/self/mounts: "), "{e}");
    }

    #[test]
    fn the_live_table_is_read_once_until_it_changes() {
        let mut table = MountTable::new(Procfs::new("/"));
        let first = table.read().unwrap().to_owned();
        assert!(table.notifies, "/proc is procfs");
        assert!(first.lines().any(|l| l.split(' ').nth(1) == Some("/")));
        // Unchanged: the text kept is the table, without a read (a read would give the same).
        assert_eq!(table.read().unwrap(), first);
    }
}
