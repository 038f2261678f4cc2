//! Network namespaces a test makes for itself, joined by a veth pair, and removed on drop (also
//! when the test fails). Names carry a tag and the test process's pid, so tests running at the
//! same time on one machine never meet.

use std::process::{Command, Output};

/// Runs `ip ARGS…`, panicking with its stderr if it fails.
pub fn ip(args: &[&str]) -> Output {
    run("ip", args)
}

/// Runs `program ARGS…`, panicking with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces, `a` and `b`, joined by a veth pair: `a_if` in `a`, `b_if` in `b`, both up.
pub struct VethPair {
    /// The first namespace.
    pub a: String,
    /// The second namespace.
    pub b: String,
    /// The veth end in `a`.
    pub a_if: String,
    /// The veth end in `b`.
    pub b_if: String,
}

impl VethPair {
    /// Makes the pair for `tag` (at most 6 characters, so interface names stay within 15), with
    /// `a_addr` and `b_addr` (such as `10.99.0.1/24`) on the two ends.
    pub fn new(tag: &str, a_addr: &str, b_addr: &str) -> VethPair {
        assert!(
            tag.len() <= 6,
            "tag {tag:?} is too long for an interface name"
        );
        let pid = std::process::id();
        let pair = VethPair {
            a: format!("pipit-{tag}-{pid}-a"),
            b: format!("pipit-{tag}-{pid}-b"),
            a_if: format!("{tag}{pid}a"),
            b_if: format!("{tag}{pid}b"),
        };
        // Built one step at a time, each undone by drop if a later one fails.
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "-n", &pair.a, "link", "add", &pair.a_if, "type", "veth", "peer", "name", &pair.b_if,
            "netns", &pair.b,
        ]);
        for (ns, dev, addr) in [(&pair.a, &pair.a_if, a_addr), (&pair.b, &pair.b_if, b_addr)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            if !addr.is_empty() {
                ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// A command run inside namespace `ns`.
    pub fn command(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Removing a namespace removes the veth end in it, and with it the other end.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
