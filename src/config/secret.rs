//! Which config values are secrets, and how a value is shown in an error without giving one away.
//!
//! A value is secret when its key says so (`token`, `password`, `secret`, and `username`, which
//! pairs with a password), when it is a value of a `headers` object (an `Authorization` header) or
//! of an `env` object (a command's environment), and, in any value, the user part of a URL
//! (`http://user:password@host/`). Config errors show such a value by its kind alone, such as
//! `got a URL with credentials (hidden)`, and a component keeps one in a [`Secret`].

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use super::json::Value;

/// Keys whose value is a secret wherever they are.
const SECRET_KEYS: [&str; 4] = ["token", "password", "secret", "username"];

/// Objects every value of which is a secret.
const SECRET_OBJECTS: [&str; 2] = ["headers", "env"];

/// Whether the value at the key path `path` (such as `outputs[0].token` or
/// `sources[2].headers.Authorization`) is a secret.
pub fn is_secret(path: &str) -> bool {
    let mut keys = path.split('.').map(|k| k.split('[').next().unwrap_or(k));
    let last = keys.next_back().unwrap_or_default();
    SECRET_KEYS.contains(&last) || keys.any(|k| SECRET_OBJECTS.contains(&k))
}

/// Whether `text` holds a URL with a user part (`scheme://user@host`, `scheme://user:pw@host`).
pub fn has_credentials(text: &str) -> bool {
    text.match_indices("://").any(|(at, sep)| {
        let rest = &text[at + sep.len()..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    })
}

/// `text` with the user part of every URL in it replaced by `***` (`http://***@host/`).
pub fn hide_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &after[user_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The value at `path` as an error may show it: [`Value::describe`], unless that would show a
/// secret.
pub fn describe(path: &str, value: &Value) -> String {
    match value {
        Value::String(s) if has_credentials(s) => "a URL with credentials (hidden)".to_owned(),
        Value::String(_) if is_secret(path) => "a string (hidden)".to_owned(),
        Value::Number { .. } if is_secret(path) => "a number (hidden)".to_owned(),
        other => other.describe(),
    }
}

/// A value that must never reach a log line: its `Debug` shows a keyed hash instead, equal for
/// equal values within one run (so a reload notices a changed token) and useless to anyone else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The texts that give the secret away when quoted: the value, and for `user:password` each
    /// part of four characters or more.
    pub fn revealing(&self) -> Vec<&str> {
        let mut texts = vec![self.0.as_str()];
        if let Some((user, password)) = self.0.split_once(':') {
            texts.extend([user, password].into_iter().filter(|p| p.len() >= 4));
        }
        texts
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        write!(
            f,
            "Secret(#{:016x})",
            KEY.get_or_init(RandomState::new).hash_one(&self.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_and_the_values_of_secret_objects_are_secret() {
        for path in [
            "token",
            "outputs[0].token",
            "outputs[1].password",
            "x.username",
            "sources[2].headers.Authorization",
            "sources[2].headers.X.Api.Key",
            "sources[0].env.API_KEY",
        ] {
            assert!(is_secret(path), "{path}");
        }
        for path in ["outputs[0].url", "sources[2].headers", "tokens", "a.env_x"] {
            assert!(!is_secret(path), "{path}");
        }
    }

    #[test]
    fn urls_with_a_user_part_are_found_anywhere() {
        assert!(has_credentials("htp://user:PASSWORD@127.0.0.1:8086"));
        assert!(has_credentials("see https://tok@h/"));
        assert!(!has_credentials("http://h/a@b"));
        assert!(!has_credentials("http://h?q=a@b"));
        assert!(!has_credentials("user@host"));
    }

    #[test]
    fn user_parts_are_hidden_in_any_text() {
        assert_eq!(
            hide_credentials("GET http://u:pw@h:80/p?q=a@b failed; \"ftp://tok@x\" too"),
            "GET http://***@h:80/p?q=a@b failed; \"ftp://***@x\" too"
        );
        assert_eq!(hide_credentials("http://h/a@b ://"), "http://h/a@b ://");
    }

    #[test]
    fn a_secret_never_shows_and_says_what_gives_it_away() {
        let pair = Secret::new("admin:hunter2".to_owned());
        assert!(!format!("{pair:?}").contains("hunter2"));
        assert_eq!(pair.revealing(), vec!["admin:hunter2", "admin", "hunter2"]);
        assert_eq!(
            Secret::new("ab:cdefg".to_owned()).revealing(),
            vec!["ab:cdefg", "cdefg"],
            "a part too short to be told from other text is not replaced on its own"
        );
    }

    #[test]
    fn secrets_are_described_by_their_kind() {
        let s = |t: &str| Value::String(t.to_owned());
        assert_eq!(
            describe("outputs[0].url", &s("htp://u:pw@h")),
            "a URL with credentials (hidden)"
        );
        assert_eq!(describe("a.token", &s("t0k")), "a string (hidden)");
        let n = Value::Number {
            text: "1234".into(),
        };
        assert_eq!(describe("a.password", &n), "a number (hidden)");
        assert_eq!(describe("a.port", &n), "the number 1234");
        assert_eq!(describe("a.token", &Value::Bool(true)), "true");
    }
}
