//! The one call into libc: `statvfs(3)`, which the standard library does not wrap.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::FsStats;

/// The space and inode counts of the file system holding `path`.
pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let mut out = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that lives until the call returns, and `out`
    // points to writable memory of the size and alignment of `struct statvfs`, which is all the
    // call writes to.
    let rc = unsafe { libc::statvfs(path.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled in the whole struct.
    let s = unsafe { out.assume_init() };
    // The field types differ between targets (u32 on 32-bit routers, u64 elsewhere).
    #[allow(clippy::unnecessary_cast)]
    Ok(FsStats {
        fragment_size: s.f_frsize as u64,
        blocks: s.f_blocks as u64,
        blocks_free: s.f_bfree as u64,
        blocks_available: s.f_bavail as u64,
        inodes: s.f_files as u64,
        inodes_free: s.f_ffree as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_root_file_system() {
        let s = statvfs(Path::new("/")).unwrap();
        assert!(s.fragment_size > 0 && s.blocks > 0);
        assert!(s.blocks_available <= s.blocks_free && s.blocks_free <= s.blocks);
        assert_eq!(
            statvfs(Path::new("/nonexistent/pipit")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
