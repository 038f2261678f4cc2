//! The router's radios and tunnels through the whole agent (`pipit once`), on this machine's
//! kernel: without nl80211 and without WireGuard each source says so in one line and sends
//! nothing, while the OpenVPN status files of the OpenWrt fixture tree are reported.

mod common;

use std::fs;

use common::peers::TempDir;
use common::pipit::{fixture, pipit, text};
use pipit::netlink::nl80211::Nl80211;
use pipit::netlink::wireguard::WireGuard;

#[test]
fn radios_and_tunnels_a_kernel_lacks_are_said_once_and_openvpn_is_read() {
    let dir = TempDir::new("radios");
    let path = dir.path().join("pipit.json");
    // The fixture files were written when the tree was checked out: no age refuses them.
    let config = format!(
        r#"{{"agent": {{"hostname": "gw", "host_root": "{}"}},
            "sources": [{{"type": "wifi"}}, {{"type": "wireguard"}},
                        {{"type": "openvpn", "max_age": "36500d"}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        fixture("openwrt").display()
    );
    fs::write(&path, config).unwrap();
    let out = pipit(&["once", "-c", path.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // `once` collects rate sources twice: the line still comes once.
    let said = |source: &str, what: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(&format!("src.{source}")) && l.contains(what))
            .count()
    };
    if Nl80211::open().is_err() {
        assert_eq!(
            said("wifi", "this kernel does not support nl80211"),
            1,
            "{stderr}"
        );
        assert!(!stdout.contains(".wifi."), "{stdout}");
    }
    if WireGuard::open().is_err() {
        assert_eq!(
            said("wireguard", "this kernel does not support wireguard"),
            1,
            "{stderr}"
        );
        assert!(!stdout.contains(".wireguard."), "{stdout}");
    }

    let lines: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    for expected in [
        "gw.openvpn.home.clients 2",
        "gw.openvpn.office.clients 2",
        "gw.openvpn.office.client.alice.connected",
        "gw.openvpn.lab.clients 3",
        "gw.openvpn.lab.client.dave_example_com.connected",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no {expected:?} in\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("rx_bytes"),
        "the files were not written again between the two collections: no rate\n{stdout}"
    );
}
