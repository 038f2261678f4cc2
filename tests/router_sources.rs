//! Router sources against the real thing, in network namespaces each test makes for itself.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::netns::{VethPair, ip};
use common::peers::{TempDir, wait_until};
use common::sources::{Built, value};

/// A process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks for a lease on `iface` in namespace `ns` with busybox's DHCP client, as the MAC address
/// `mac`, running `script` on its events.
fn udhcpc(ns: &str, iface: &str, mac: &str, script: &Path) {
    ip(&["-n", ns, "link", "set", iface, "down"]);
    ip(&["-n", ns, "link", "set", iface, "address", mac]);
    ip(&["-n", ns, "link", "set", iface, "up"]);
    // -q: quit once leased; -n: quit if none after -t 5 tries -T 1 s apart, so it is bounded.
    let mut cmd = VethPair::command(ns, "busybox");
    cmd.args([
        "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", iface, "-s",
    ]);
    cmd.arg(script);
    let out = cmd
        .output()
        .expect("busybox runs (tests/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "udhcpc as {mac} got no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dhcp_leases_counts_what_dnsmasq_hands_out() {
    let dir = TempDir::new("dhcp");
    let leases = dir.path().join("dnsmasq.leases");
    // The client puts its address on the interface once leased, as a router's client would.
    let script = dir.path().join("udhcpc.sh");
    fs::write(
        &script,
        "#!/bin/sh\nip addr flush dev \"$interface\"\n\
         [ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let net = VethPair::new("dhcp", "10.199.0.1/24", "");
    let dnsmasq = Killed(
        VethPair::command(&net.a, "/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--no-ping",
                "--bind-interfaces",
                &format!("--interface={}", net.a_if),
                "--dhcp-range=10.199.0.50,10.199.0.150,1h",
                &format!("--dhcp-leasefile={}", leases.display()),
                &format!("--pid-file={}", dir.path().join("pid").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts"),
    );
    wait_until("dnsmasq's lease file", Duration::from_secs(10), || {
        leases.exists().then_some(())
    });
    let mut source = Built::new(&format!(
        r#"{{"type": "dhcp_leases", "dnsmasq_file": "{}", "odhcpd_file": "",
            "networks": {{"test": "10.199.0.0/24", "other": "10.200.0.0/24"}}}}"#,
        leases.display()
    ));
    let mut count = |service: &str| value(&source.events(), service);
    assert_eq!(count("dhcp_leases.total"), 0.0, "no client yet");

    for n in 1..=3 {
        udhcpc(&net.b, &net.b_if, &format!("02:00:00:00:00:0{n}"), &script);
    }
    wait_until("three leases counted", Duration::from_secs(10), || {
        (count("dhcp_leases.total") == 3.0).then_some(())
    });
    assert_eq!(count("dhcp_leases.ipv4"), 3.0);
    assert_eq!(count("dhcp_leases.ipv6"), 0.0);
    assert_eq!(count("dhcp_leases.network.test"), 3.0);
    assert_eq!(count("dhcp_leases.network.other"), 0.0);

    // A client that asks again renews its lease: still three, and dnsmasq rewrote the file.
    let before = fs::metadata(&leases).unwrap().modified().unwrap();
    udhcpc(&net.b, &net.b_if, "02:00:00:00:00:02", &script);
    wait_until("the renewal written", Duration::from_secs(10), || {
        (fs::metadata(&leases).ok()?.modified().ok()? > before).then_some(())
    });
    assert_eq!(count("dhcp_leases.total"), 3.0);
    drop(dnsmasq);
}
