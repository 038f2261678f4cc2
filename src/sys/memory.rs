//! pipit's own resident memory kept small: one malloc arena, the allocator's free pages given back,
//! and the program's pages that steady running does not use unmapped (BENCHMARKS.md, "Resident
//! memory").

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;

/// Has glibc's malloc keep one arena for every thread instead of one per busy thread (up to eight
/// a core). pipit's threads allocate little and seldom at the same moment, so the extra arenas
/// bought only resident memory: about 100 KiB with the router source set (BENCHMARKS.md). With
/// other C libraries (musl keeps one allocator state already) this does nothing.
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) only sets a parameter of the allocator; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives back what steady running does not use, and returns how many KiB of the program's pages
/// were unmapped:
///
/// - the pages that glibc's malloc holds free: start-up (the config, the first collections) and a
///   reload free more than steady running reuses, about 100 KiB with the router source set;
/// - the program's code and read-only data that are mapped but not in use. Start-up touches code
///   all over the binary, and the kernel maps a file's pages in blocks of up to 64 KiB around each
///   fault, so without this nearly the whole binary stays resident. Unmapped, the pages in use
///   come back at their next use (from the page cache: a minor fault), and the build places those
///   side by side (packaging/cc-hot-first), so they are few.
///
/// The run loop calls it 10 s after start and then once a minute; it takes about 2 ms (measured
/// under strace, which slows every system call). Nothing is lost by it: what it unmaps is what the
/// file holds, and the unused pages stay in the page cache for the kernel to keep or reclaim as
/// for any file. The program's pages go first, so that the allocator's trim also gives back what
/// reading /proc/self/smaps took.
pub fn trim_memory() -> usize {
    let kib = unmap_idle_program_pages().unwrap_or_else(|e| {
        log::debug!(target: "agent", "program pages left mapped: {e}");
        0
    });
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only releases free memory of the allocator; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
    kib
}

/// Unmaps the program's read-only mappings that hold nothing but the file's own pages, and returns
/// their resident KiB before. A mapping qualifies only when it is of the executable itself (which
/// is never unmapped while the program runs, so the range read from smaps is still that mapping
/// when madvise comes), private, not writable, and holds no anonymous page: the pages the start-up
/// code relocated (RELRO) are anonymous copies and would be lost, so such a mapping is left alone.
fn unmap_idle_program_pages() -> io::Result<usize> {
    let exe = std::fs::metadata("/proc/self/exe")?;
    let program = FileId {
        major: libc::major(exe.dev()),
        minor: libc::minor(exe.dev()),
        inode: exe.ino(),
    };
    let smaps = BufReader::new(File::open("/proc/self/smaps")?);
    let mut kib = 0;
    for mapping in clean_mappings_of(smaps, program)? {
        // SAFETY: the range is a private, read-only mapping of the executable with no anonymous
        // page (checked above in smaps, and the executable is never unmapped): MADV_DONTNEED only
        // drops its page table entries, and the next access maps the same bytes from the file
        // again. No content changes.
        let done = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        kib += mapping.resident_kib;
    }
    Ok(kib)
}

/// The device and inode of a file, as /proc/PID/smaps names a mapping's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u32,
    minor: u32,
    inode: u64,
}

/// A mapping that [`clean_mappings_of`] found safe to unmap.
#[derive(Debug, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    end: usize,
    resident_kib: usize,
}

/// The mappings in `smaps` (/proc/PID/smaps, read a line at a time) of the file `file` that are
/// private, not writable, and hold no anonymous page.
fn clean_mappings_of(mut smaps: impl BufRead, file: FileId) -> io::Result<Vec<CleanMapping>> {
    let mut found = Vec::new();
    // The mapping being read, while it still qualifies, with its Rss once seen.
    let mut current: Option<CleanMapping> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if smaps.read_line(&mut line)? == 0 {
            return Ok(found);
        }
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        let Some(field) = first.strip_suffix(':') else {
            current = candidate(first, &mut words, file);
            continue;
        };
        let value = words.next().and_then(|v| v.parse::<usize>().ok());
        match (field, current.as_mut(), value) {
            ("Rss", Some(mapping), Some(kib)) => mapping.resident_kib = kib,
            ("Anonymous", Some(_), Some(0)) => found.extend(current.take()),
            ("Anonymous", Some(_), _) => current = None,
            _ => {}
        }
    }
}

/// The mapping a smaps header line describes, if it is a private, non-writable mapping of `file`:
/// `start-end perms offset major:minor inode [path]`, `range` being its first word.
fn candidate<'a>(
    range: &str,
    rest: &mut impl Iterator<Item = &'a str>,
    file: FileId,
) -> Option<CleanMapping> {
    let (start, end) = range.split_once('-')?;
    let perms = rest.next()?.as_bytes();
    let _offset = rest.next()?;
    let (major, minor) = rest.next()?.split_once(':')?;
    let inode = rest.next()?.parse::<u64>().ok()?;
    let id = FileId {
        major: u32::from_str_radix(major, 16).ok()?,
        minor: u32::from_str_radix(minor, 16).ok()?,
        inode,
    };
    let private_read_only = matches!(perms, [b'r', b'-', _, b'p']);
    (private_read_only && id == file).then_some(CleanMapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        resident_kib: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/smaps/static-pie");
    const PIPIT: FileId = FileId {
        major: 0xfe,
        minor: 0,
        inode: 10076462,
    };

    #[test]
    fn finds_the_code_and_read_only_data_but_not_the_relocated_pages() {
        // The static binary's four mappings: r--p (read-only data, 256 KiB resident), r-xp (code,
        // 1,412 KiB), r--p RELRO (48 KiB, all anonymous: relocated at start), rw-p (data).
        let found = clean_mappings_of(FIXTURE.as_bytes(), PIPIT).unwrap();
        assert_eq!(
            found,
            vec![
                CleanMapping {
                    start: 0x7fb1f75b1000,
                    end: 0x7fb1f7623000,
                    resident_kib: 256
                },
                CleanMapping {
                    start: 0x7fb1f7623000,
                    end: 0x7fb1f7794000,
                    resident_kib: 1412
                },
            ]
        );
    }

    #[test]
    fn another_file_or_an_unreadable_header_yields_nothing() {
        let other = FileId {
            inode: PIPIT.inode + 1,
            ..PIPIT
        };
        assert!(
            clean_mappings_of(FIXTURE.as_bytes(), other)
                .unwrap()
                .is_empty()
        );
        let garbage = "zz-yy r--p 0 fe:00 10076462 /usr/bin/pipit\nRss: 4 kB\nAnonymous: 0 kB\n";
        assert!(
            clean_mappings_of(garbage.as_bytes(), PIPIT)
                .unwrap()
                .is_empty()
        );
        // Without its Anonymous line a mapping is never taken.
        let cut = "1000-2000 r-xp 0 fe:00 10076462 /usr/bin/pipit\nRss: 4 kB\n";
        assert!(clean_mappings_of(cut.as_bytes(), PIPIT).unwrap().is_empty());
    }

    /// Something that lives in the relocated read-only data: a trait object's vtable, reached
    /// through a static. Were that mapping unmapped, its pointers would read back unrelocated.
    static GREETING: &(dyn Fn() -> String + Sync) = &|| "still here".to_string();

    #[test]
    fn unmapping_the_program_pages_in_this_process_keeps_it_running() {
        let kib = unmap_idle_program_pages().unwrap();
        assert!(
            kib > 0,
            "the test binary's code was resident, so some was unmapped"
        );
        assert_eq!(GREETING(), "still here");
        // The code in use comes back: a second pass finds it mapped again.
        assert!(unmap_idle_program_pages().unwrap() > 0);
    }
}
