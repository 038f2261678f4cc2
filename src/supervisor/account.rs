//! User and group names to ids, read straight from `/etc/passwd` and `/etc/group`.
//!
//! No NSS: a router has no LDAP, and linking the C library's resolver into a static binary is
//! neither small nor reliable. Users known only to a directory service cannot be named.

use std::fs;

/// The file user names are looked up in.
pub const PASSWD: &str = "/etc/passwd";
/// The file group names are looked up in.
pub const GROUP: &str = "/etc/group";

/// A user a child process can run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

/// Looks `name` up in [`PASSWD`]; the error says why in words.
pub fn user(name: &str) -> Result<Account, String> {
    let text = fs::read_to_string(PASSWD).map_err(|e| format!("cannot read {PASSWD}: {e}"))?;
    find_user(&text, name).ok_or_else(|| format!("no user \"{name}\" in {PASSWD}"))
}

/// Looks `name` up in [`GROUP`] and returns its id; the error says why in words.
pub fn group(name: &str) -> Result<u32, String> {
    let text = fs::read_to_string(GROUP).map_err(|e| format!("cannot read {GROUP}: {e}"))?;
    find_group(&text, name).ok_or_else(|| format!("no group \"{name}\" in {GROUP}"))
}

/// The user `name` in passwd(5) text (`name:password:uid:gid:gecos:home:shell`).
pub fn find_user(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name || name.is_empty() {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Account {
            name: name.to_owned(),
            uid,
            gid,
        })
    })
}

/// The id of group `name` in group(5) text (`name:password:gid:members`).
pub fn find_group(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name || name.is_empty() {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/ash\n# comment\nbroken\nnetwork:*:101:101:network:/var:/bin/false\nnobody:*:65534:65534:nobody:/var:/bin/false\nbad:x:notanumber:1::/:/bin/false\n";

    #[test]
    fn finds_users_by_exact_name() {
        assert_eq!(
            find_user(PASSWD_TEXT, "nobody"),
            Some(Account {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(find_user(PASSWD_TEXT, "root").map(|a| a.uid), Some(0));
        assert_eq!(find_user(PASSWD_TEXT, "nob"), None);
        assert_eq!(find_user(PASSWD_TEXT, "bad"), None);
        assert_eq!(find_user(PASSWD_TEXT, "broken"), None);
        assert_eq!(find_user(PASSWD_TEXT, ""), None);
    }

    #[test]
    fn finds_groups_by_exact_name() {
        let text = "root:x:0:\nnogroup:x:65534:\ndialout:x:20:alice,bob\n";
        assert_eq!(find_group(text, "dialout"), Some(20));
        assert_eq!(find_group(text, "nogroup"), Some(65534));
        assert_eq!(find_group(text, "wheel"), None);
    }
}
