//! The `pipit` command line: config errors, `check`, `once`, help and exit codes.

mod common;

use std::fs;

use common::peers::TempDir;
use common::pipit::{fixture, pipit, text};

/// Writes `body` as a config file and runs `pipit check -c` on it.
fn check(dir: &TempDir, body: &str) -> (i32, String, String) {
    let path = dir.path().join("pipit.json");
    fs::write(&path, body).unwrap();
    let out = pipit(&["check", "-c", path.to_str().unwrap()]);
    (
        out.status.code().unwrap(),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn bad_configs_give_the_precise_message_and_exit_1() {
    let dir = TempDir::new("cli-bad");
    let file = dir.path().join("pipit.json");
    let f = file.display();
    let cases: &[(&str, String)] = &[
        (
            r#"{"sources": [{"type": "load", "intervl": "10s"}], "outputs": [{"type": "stdout"}]}"#,
            format!(
                "{f}:1:42: sources[0].intervl: unknown key; expected one of: attributes, hostname, interval, name, prefix, tags, timeout, ttl, type"
            ),
        ),
        (
            r#"{"sources": [{"type": "load", "interval": 10}], "outputs": [{"type": "stdout"}]}"#,
            format!(
                "{f}:1:43: sources[0].interval: expected a duration such as \"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\", got the number 10"
            ),
        ),
        (
            r#"{"sources": [{"type": "load"}, {"type": "cpu", "interval": "ten"}], "outputs": [{"type": "stdout"}]}"#,
            format!(
                "{f}:1:60: sources[1].interval: expected a duration such as \"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\", got \"ten\""
            ),
        ),
        (
            r#"{"sources": [{"type": "cpu", "per_core": "yes"}], "outputs": [{"type": "stdout"}]}"#,
            format!("{f}:1:42: sources[0].per_core: expected true or false, got \"yes\""),
        ),
        (
            r#"{"outputs": [{"type": "stdout"},]}"#,
            format!("{f}:1:33: invalid JSON: expected a value, found ']'"),
        ),
        (
            "",
            format!("{f}:1:1: invalid JSON: expected a value, found the end of the file"),
        ),
    ];
    for (body, expected) in cases {
        let (code, stdout, stderr) = check(&dir, body);
        assert_eq!(code, 1, "{body}");
        assert_eq!(stdout, "", "{body}");
        assert_eq!(stderr, format!("{expected}\n1 error(s)\n"), "{body}");
    }
}

#[test]
fn check_reports_every_error_at_once() {
    let dir = TempDir::new("cli-all");
    let (code, _, stderr) = check(
        &dir,
        r#"{"agent": {"interval": "0s"}, "sources": [{"type": "nope"}], "outputs": [{"type": "stdout", "format": "xml"}], "extra": 1}"#,
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(
        lines[0].ends_with("agent.interval: expected a duration of at least 10ms, got \"0s\""),
        "{stderr}"
    );
    assert!(
        lines[1].contains("sources[0].type: expected one of \"cpu\""),
        "{stderr}"
    );
    assert!(
        lines[2]
            .ends_with("outputs[0].format: expected one of \"graphite\", \"json\", got \"xml\""),
        "{stderr}"
    );
    assert!(
        lines[3].contains(
            ": extra: unknown key; expected one of: agent, control, http_server, outputs, sources"
        ),
        "{stderr}"
    );
    assert_eq!(lines[4], "4 error(s)");
}

#[test]
fn a_missing_or_unreadable_config_named_with_c_is_an_error() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path().join("nope.json");
    for command in ["check", "once", "run"] {
        let out = pipit(&[command, "-c", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let expected = format!(
            "{}: no such file; name an existing config file with -c",
            missing.display()
        );
        assert!(
            text(&out.stderr).lines().any(|l| l == expected),
            "{command}: {}",
            text(&out.stderr)
        );
    }
    // A directory cannot be read as a file, whoever runs the test.
    let out = pipit(&["check", "-c", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&format!("{}: cannot read the file: ", dir.path().display()))
    );
}

#[test]
fn an_unreadable_config_is_an_error() {
    let dir = TempDir::new("cli-unreadable");
    let path = dir.path().join("secret.json");
    fs::write(&path, r#"{"outputs": [{"type": "stdout"}]}"#).unwrap();
    let mut perms = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    fs::set_permissions(&path, perms).unwrap();
    let is_root = text(
        &std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
        == "0";
    let out = if is_root {
        // Root reads anything: run as nobody, which is what an unreadable file means.
        let mut dir_perms = fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut dir_perms, 0o755);
        fs::set_permissions(dir.path(), dir_perms).unwrap();
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                common::pipit::binary(),
                "check",
                "-c",
            ])
            .arg(&path)
            .output()
            .expect("setpriv (util-linux) runs")
    } else {
        pipit(&["check", "-c", path.to_str().unwrap()])
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}: cannot read the file: permission denied\n1 error(s)\n",
            path.display()
        )
    );
}

#[test]
fn check_prints_a_summary_of_a_valid_config() {
    let dir = TempDir::new("cli-ok");
    let (code, stdout, _) = check(
        &dir,
        r#"{"agent": {"hostname": "r1"}, "sources": [{"type": "load", "interval": "5s"}, {"type": "cpu", "name": "cores", "per_core": true}],
            "outputs": [{"type": "stdout", "format": "json"}]}"#,
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with(": OK, 2 source(s), 1 output(s), host \"r1\""),
        "{stdout}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["source", "load", "type", "load", "every", "5s"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["source", "cores", "type", "cpu", "every", "10s"]
    );
    assert!(lines[3].starts_with("  output stdout"), "{stdout}");
}

#[test]
fn once_prints_the_expected_events_from_fixture_files() {
    let dir = TempDir::new("cli-once");
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"hostname": "fixture.lan", "host_root": "{}"}},
            "sources": [{{"type": "load"}}, {{"type": "memory", "prefix": "box"}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        fixture("minimal").display()
    );
    fs::write(&path, config).unwrap();
    let out = pipit(&["once", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<(String, String)> = text(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect();
    let expected = [
        ("fixture_lan.load.1", "0.42"),
        ("fixture_lan.load.5", "0.3"),
        ("fixture_lan.load.15", "0.15"),
        ("fixture_lan.box.memory.total", "129191936"),
        ("fixture_lan.box.memory.used", "57171968"),
        ("fixture_lan.box.memory.free", "62472192"),
        ("fixture_lan.box.memory.buffers", "4333568"),
        ("fixture_lan.box.memory.cached", "17956864"),
        ("fixture_lan.box.memory.available", "72019968"),
        ("fixture_lan.box.memory.percent_used", "44.253511302748805"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn once_json_carries_every_template_field() {
    let dir = TempDir::new("cli-once-json");
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"hostname": "r1", "host_root": "{}"}},
            "sources": [{{"type": "load", "interval": "30s", "tags": ["lab"], "attributes": {{"site": "attic"}}}}],
            "outputs": [{{"type": "stdout"}}]}}"#,
        fixture("minimal").display()
    );
    fs::write(&path, config).unwrap();
    let out = pipit(&["once", "--json", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["service"], "load.1");
    assert_eq!(first["host"], "r1");
    assert_eq!(first["metric"], 0.42);
    assert_eq!(first["ttl"], 60.0);
    assert_eq!(first["tags"], serde_json::json!(["lab"]));
    assert_eq!(first["attributes"]["site"], "attic");
    assert_eq!(first["kind"], "metric");
}

#[test]
fn once_reports_a_failing_source_and_exits_3() {
    let dir = TempDir::new("cli-once-fail");
    let path = dir.path().join("pipit.json");
    let config = format!(
        r#"{{"agent": {{"host_root": "{}"}}, "sources": [{{"type": "load"}}], "outputs": [{{"type": "stdout"}}]}}"#,
        dir.path().display()
    );
    fs::write(&path, config).unwrap();
    let out = pipit(&["once", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pipit: source load: failed: ")
            && stderr.contains("proc/loadavg: No such file"),
        "{stderr}"
    );
}

#[test]
fn help_version_and_usage_errors() {
    let help = pipit(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = text(&help.stdout);
    for word in [
        "run",
        "check",
        "once",
        "Exit codes:",
        "SIGHUP",
        "-c, --config FILE",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
    let version = pipit(&["--version"]);
    assert_eq!(
        text(&version.stdout),
        format!("pipit {}\n", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        &["frobnicate"][..],
        &[],
        &["run", "--bogus"],
        &["check", "-c"],
    ] {
        let out = pipit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).ends_with("; see pipit --help\n"),
            "{args:?}"
        );
    }
}
