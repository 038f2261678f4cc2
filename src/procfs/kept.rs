//! Files a source reads at every collection, kept open and read again from their start.

use std::fs::File;

use super::{Procfs, ReadError, open_reading, read_from_start};

/// The files under a root that one source reads at every collection, each opened once and then
/// read again with `pread` at offset 0, where the kernel makes a `/proc` or `/sys` file anew: one
/// or two system calls a collection instead of an open, the reads and a close.
///
/// A kept file that fails to read (a device gone, `ENODEV`; a process gone, `ESRCH`) is closed
/// and opened again by its path at once, as [`Procfs::read_into`] would; if that fails too, its
/// error is the one returned and nothing is kept.
#[derive(Debug)]
pub struct KeptFiles {
    procfs: Procfs,
    open: Vec<(String, File)>,
}

impl KeptFiles {
    /// No file open yet; files are read under `procfs`'s root.
    pub fn new(procfs: Procfs) -> KeptFiles {
        KeptFiles {
            procfs,
            open: Vec::new(),
        }
    }

    /// Where the files are read.
    pub fn procfs(&self) -> &Procfs {
        &self.procfs
    }

    /// Reads the file `rel` (as for [`Procfs::read_into`]) into `buf`, replacing its contents,
    /// from the descriptor kept since the last read if there is one.
    pub fn read_into(&mut self, rel: &str, buf: &mut String) -> Result<(), ReadError> {
        if let Some(i) = self.open.iter().position(|(r, _)| r == rel) {
            if read_from_start(&self.open[i].1, buf).is_ok() {
                return Ok(());
            }
            self.open.swap_remove(i);
        }
        let file = open_reading(&self.procfs, rel, buf)?;
        self.open.push((rel.to_owned(), file));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::ErrorKind;

    use super::*;
    use crate::files::scratch::scratch;

    #[test]
    fn reads_the_same_file_again_from_its_start() {
        let dir = scratch("kept-again");
        fs::create_dir(dir.0.join("proc")).unwrap();
        let file = dir.0.join("proc/loadavg");
        fs::write(&file, "0.10 0.20 0.30 1/100 42\n").unwrap();
        let mut files = KeptFiles::new(Procfs::new(&dir.0));
        let mut buf = String::new();
        files.read_into("proc/loadavg", &mut buf).unwrap();
        assert_eq!(buf, "0.10 0.20 0.30 1/100 42\n");
        // Rewritten in place, as the kernel makes its files anew: the kept descriptor sees it.
        fs::write(&file, "1.5 1.0 0.5 2/100 43\n").unwrap();
        files.read_into("proc/loadavg", &mut buf).unwrap();
        assert_eq!(buf, "1.5 1.0 0.5 2/100 43\n");
        assert_eq!(files.open.len(), 1);
    }

    #[test]
    fn a_file_that_is_gone_is_one_clear_error_and_not_kept() {
        let dir = scratch("kept-gone");
        let mut files = KeptFiles::new(Procfs::new(&dir.0));
        let mut buf = String::from("old");
        let e = files.read_into("proc/net/wireless", &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("proc/net/wireless: "), "{e}");
        assert!(files.open.is_empty());
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_and_the_file_is_opened_again() {
        let dir = scratch("kept-utf8");
        let file = dir.0.join("stat");
        fs::write(&file, "cpu 1 2 3\n").unwrap();
        let mut files = KeptFiles::new(Procfs::new(&dir.0));
        let mut buf = String::new();
        files.read_into("stat", &mut buf).unwrap();
        fs::write(&file, b"cpu \xff\n").unwrap();
        let e = files.read_into("stat", &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(buf, "");
        assert!(files.open.is_empty());
        fs::write(&file, "cpu 4 5 6\n").unwrap();
        files.read_into("stat", &mut buf).unwrap();
        assert_eq!(buf, "cpu 4 5 6\n");
    }
}
