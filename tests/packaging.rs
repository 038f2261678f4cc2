//! Packaging: the static binary in an empty root, shellcheck on every shell script, the OpenWrt
//! init script (its UCI → JSON conversion and its procd calls, with stand-ins for OpenWrt's shell
//! libraries from tests/packaging/stubs), the sysvinit script's lifecycle against the built binary,
//! and the systemd unit under `systemd-analyze verify`.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::peers::{TempDir, wait_until};
use common::pipit::{binary, text};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

// ------------------------------------------------------------ static binary --

/// The binary built by packaging/build-static.sh, once per test run, in its own target directory
/// so that the build does not wait on the one running these tests.
fn static_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = run(Command::new(repo().join("packaging/build-static.sh"))
            .env("CARGO_TARGET_DIR", repo().join("target/static")));
        assert!(
            out.status.success(),
            "build-static.sh failed:\n{}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();

        let (path, size) = last
            .split_once(' ')
            .unwrap_or_else(|| panic!("unexpected last line: {last:?}"));
        assert!(size.ends_with(" bytes"), "{last}");
        let path = repo().join(path);
        assert!(path.is_file(), "{}", path.display());
        if last.contains("-linux-gnu/") {
            assert_hot_functions_placed_first(&path, &text(&out.stderr));
        }
        path
    })
}

/// A static glibc build is linked by packaging/cc-hot-first: most of the functions listed in
/// packaging/hot-functions.txt (keys, written from the `small` build) must be among the symbols it
/// reports having placed first (names, keyed here by the same sed script).
fn assert_hot_functions_placed_first(binary: &Path, stderr: &str) {
    assert!(
        stderr.contains(" functions placed first (packaging/hot-functions.txt)"),
        "build-static.sh did not report the hot functions:\n{stderr}"
    );
    let listed: HashSet<String> = fs::read_to_string(repo().join("packaging/hot-functions.txt"))
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    let report = binary.with_file_name("pipit.hot-first");
    let keyed = run(Command::new("sed")
        .arg("-f")
        .arg(repo().join("packaging/symbol-key.sed"))
        .arg(&report));
    assert!(keyed.status.success(), "sed on {}", report.display());
    let placed: HashSet<String> = text(&keyed.stdout).lines().map(str::to_string).collect();
    let found = listed.intersection(&placed).count();
    assert!(
        found * 10 >= listed.len() * 9,
        "only {found} of the {} listed functions placed first",
        listed.len()
    );
}

const EMPTY_ROOT_CONFIG: &str = r#"{
  "agent": {"host_root": "/", "state_dir": "/state"},
  "sources": [{"type": "cpu"}, {"type": "load"}, {"type": "memory"}, {"type": "self"}],
  "outputs": [{"type": "stdout"}]
}"#;

/// Runs `pipit COMMAND -c /pipit.json` chrooted into `root` (holding only the binary and that
/// config) with /proc mounted in a private mount namespace and an empty environment.
fn in_chroot(root: &Path, command: &str) -> Output {
    run(Command::new("unshare")
        .args(["--mount", "--fork", "--", "/bin/sh", "-c"])
        .arg(
            r#"mount -t proc proc "$1/proc" && exec env -i "$(command -v chroot)" "$1" /pipit "$2" -c /pipit.json"#,
        )
        .args(["sh"])
        .arg(root)
        .arg(command)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

#[test]
fn static_binary_runs_in_an_empty_root() {
    let bin = static_binary();
    let root = TempDir::new("empty-root");
    fs::copy(bin, root.path().join("pipit")).unwrap();
    fs::write(root.path().join("pipit.json"), EMPTY_ROOT_CONFIG).unwrap();
    fs::create_dir(root.path().join("proc")).unwrap();

    let probe = Command::new("unshare")
        .args(["--mount", "--fork", "--", "/bin/sh", "-c"])
        .arg(r#"mount -t proc proc "$1/proc" && test -r "$1/proc/stat""#)
        .args(["sh"])
        .arg(root.path())
        .output();
    let chroot = match &probe {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(text(&out.stderr).trim().to_owned()),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    };
    let (check, once) = if let Err(why) = chroot {
        eprintln!(
            "note: cannot mount /proc in a private namespace ({why}); running the static binary \
             from an empty directory with an empty environment instead of a chroot"
        );
        let empty = TempDir::new("empty-dir");
        let config = root.path().join("pipit.json");
        let go = |command: &str| {
            run(Command::new(root.path().join("pipit"))
                .arg(command)
                .arg("-c")
                .arg(&config)
                .current_dir(empty.path())
                .env_clear())
        };
        (go("check"), go("once"))
    } else {
        (
            in_chroot(root.path(), "check"),
            in_chroot(root.path(), "once"),
        )
    };

    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let summary = text(&check.stdout);
    assert!(
        summary.contains("OK, 4 source(s), 1 output(s)"),
        "{summary}"
    );

    assert_eq!(once.status.code(), Some(0), "{}", text(&once.stderr));
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .replace('.', "_");
    let lines = text(&once.stdout);
    for metric in ["cpu.total.user", "load.1", "memory.total", "self.rss"] {
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with(&format!("{host}.{metric} "))),
            "no {host}.{metric} in:\n{lines}"
        );
    }
}

// ---------------------------------------------------------------- shellcheck --

/// Every shell script in the repository: `*.sh` files and files whose `#!` line names a shell.
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            if name == ".git" || name == "target" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                walk(&path, found);
            } else if is_shell_script(&path) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(repo(), &mut found);
    found
}

fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "sh") {
        return true;
    }
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(line) = std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.strip_prefix("#!"))
    else {
        return false;
    };
    let mut words = line.split_whitespace();
    let mut interpreter = words.next().unwrap_or_default();
    if interpreter.ends_with("/env") {
        interpreter = words.next().unwrap_or_default();
    }
    let name = interpreter.rsplit('/').next().unwrap_or_default();
    ["sh", "bash", "dash", "ash"].contains(&name)
}

#[test]
fn every_shell_script_passes_shellcheck() {
    assert!(
        have("shellcheck"),
        "shellcheck is not installed: run tests/install-deps.sh"
    );
    let scripts = shell_scripts();
    for expected in [
        "packaging/build-static.sh",
        "packaging/cc-hot-first",
        "packaging/hot-functions.sh",
        "packaging/openwrt/files/pipit.init",
        "packaging/sysvinit/pipit",
        "tests/packaging/stubs/jshn.sh",
        "tests/run.sh",
    ] {
        assert!(
            scripts.contains(&repo().join(expected)),
            "{expected} not among {scripts:?}"
        );
    }
    let out = run(Command::new("shellcheck")
        .arg("--external-sources")
        .args(&scripts)
        .current_dir(repo()));
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ------------------------------------------------------------------- OpenWrt --

/// The OpenWrt init script run through tests/packaging/openwrt-init.sh with a UCI config of ours.
struct OpenWrt {
    dir: TempDir,
}

/// What one action of the init script did.
struct Action {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// One line per procd call, in order.
    procd: Vec<String>,
    /// What went to the system log.
    syslog: String,
}

impl OpenWrt {
    fn new(uci: &str) -> OpenWrt {
        let dir = TempDir::new("openwrt");
        for sub in ["uci", "run"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let openwrt = OpenWrt { dir };
        openwrt.set_uci(uci);
        openwrt
    }

    fn shipped_uci() -> String {
        fs::read_to_string(repo().join("packaging/openwrt/files/pipit.config")).unwrap()
    }

    fn set_uci(&self, uci: &str) {
        fs::write(self.dir.path().join("uci/pipit"), uci).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config pipit runs with.
    fn config(&self) -> PathBuf {
        self.path("run/pipit.json")
    }

    fn act(&self, action: &str, running: bool) -> Action {
        for log in ["procd.log", "logger.log"] {
            fs::write(self.path(log), "").unwrap();
        }
        let out = run(Command::new("sh")
            .arg(repo().join("tests/packaging/openwrt-init.sh"))
            .arg(action)
            .env("UCI_CONFIG_DIR", self.path("uci"))
            .env("PIPIT_BIN", binary())
            .env("RUN_DIR", self.path("run"))
            .env("PROCD_LOG", self.path("procd.log"))
            .env("LOGGER_LOG", self.path("logger.log"))
            .env("PROCD_RUNNING", if running { "1" } else { "0" }));
        Action {
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            procd: fs::read_to_string(self.path("procd.log"))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
            syslog: fs::read_to_string(self.path("logger.log")).unwrap(),
        }
    }

    /// The JSON config built from the UCI config.
    fn json(&self) -> serde_json::Value {
        let out = self.act("json", false);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
    }

    /// The procd calls of a start that ran pipit with the given log level.
    fn started(&self, log_level: &str) -> Vec<String> {
        vec![
            "start".to_owned(),
            "procd_open_instance".to_owned(),
            format!(
                "procd_set_param command {} run -c {}",
                binary(),
                self.config().display()
            ),
            format!("procd_set_param env RUST_LOG={log_level}"),
            "procd_set_param respawn 3600 5 5".to_owned(),
            "procd_set_param term_timeout 15".to_owned(),
            "procd_set_param stdout 1".to_owned(),
            "procd_set_param stderr 1".to_owned(),
            "procd_close_instance".to_owned(),
            "procd_add_reload_trigger pipit".to_owned(),
        ]
    }
}

fn check_config(path: &Path) -> Output {
    run(Command::new(binary()).arg("check").arg("-c").arg(path))
}

/// The shipped config with the agent and the stdout output enabled.
fn shipped_enabled() -> String {
    let uci = OpenWrt::shipped_uci();
    let agent_off = "config agent 'agent'\n\t# Set to '1' once an output below is enabled.\n\toption enabled '0'";
    assert!(uci.contains(agent_off), "{uci}");
    let stdout_off = "config output 'stdout'\n\toption enabled '0'";
    assert!(uci.contains(stdout_off), "{uci}");
    uci.replace(agent_off, "config agent 'agent'\n\toption enabled '1'")
        .replace(stdout_off, "config output 'stdout'")
}

#[test]
fn shipped_uci_config_keeps_state_in_ram_and_waits_to_be_enabled() {
    let openwrt = OpenWrt::new(&OpenWrt::shipped_uci());
    let expected = serde_json::json!({
        "agent": {"interval": "30s", "state_dir": "/tmp/pipit", "queue_size": 1000},
        "sources": [
            {"name": "cpu", "type": "cpu"},
            {"name": "load", "type": "load"},
            {"name": "memory", "type": "memory"},
            {"name": "self", "type": "self", "interval": "60s"}
        ],
        "outputs": []
    });
    assert_eq!(openwrt.json(), expected);

    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    assert!(
        start.stderr.contains("pipit is disabled"),
        "{}",
        start.stderr
    );
    assert_eq!(start.procd, ["start", "procd_add_reload_trigger pipit"]);
    assert!(!openwrt.config().exists());
}

#[test]
fn enabled_uci_config_starts_pipit_under_procd_with_a_checked_config() {
    let openwrt = OpenWrt::new(&shipped_enabled());
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    assert_eq!(start.procd, openwrt.started("info"));
    let config = openwrt.config();
    let mode = fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", config.display());
    let check = check_config(&config);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("OK, 4 source(s), 1 output(s)"),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn the_init_script_makes_the_state_dir_roots_and_moves_aside_one_another_user_made() {
    use std::os::unix::fs::{MetadataExt, lchown, symlink};
    let openwrt = OpenWrt::new(&shipped_enabled());
    let state = openwrt.path("run/root/tmp/pipit");
    let check = |state: &Path| {
        let meta = fs::symlink_metadata(state).unwrap();
        assert!(meta.is_dir());
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));
    };
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    check(&state);
    fs::remove_dir(&state).unwrap();

    // Made first by `nobody`, with a symlink to a root-only file where the cache goes; then a
    // symlink in its place.
    let secret = openwrt.path("secret");
    fs::write(&secret, "root only").unwrap();
    for planted in ["directory", "symlink"] {
        if planted == "directory" {
            fs::create_dir(&state).unwrap();
            symlink(&secret, state.join("cache.json.tmp")).unwrap();
            lchown(&state, Some(65534), Some(65534)).unwrap();
        } else {
            symlink(&secret, &state).unwrap();
            lchown(&state, Some(65534), Some(65534)).unwrap();
        }
        let start = openwrt.act("start", false);
        assert_eq!(start.code, Some(0), "{planted}: {}", start.stderr);
        check(&state);
        assert_eq!(fs::read_dir(&state).unwrap().count(), 0, "{planted}");
        assert!(
            start.syslog.contains(
                "agent.state_dir /tmp/pipit is not a directory of root's closed to others: moved \
                 aside to /tmp/pipit.untrusted."
            ),
            "{planted}: {}",
            start.syslog
        );
        fs::remove_dir(&state).unwrap();
    }
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only");
}

#[test]
fn every_uci_mapping_rule_gives_the_expected_json() {
    let fixtures = repo().join("tests/fixtures/uci");
    let openwrt = OpenWrt::new(&fs::read_to_string(fixtures.join("pipit")).unwrap());
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixtures.join("pipit.json")).unwrap()).unwrap();
    assert_eq!(openwrt.json(), expected);

    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    assert_eq!(start.procd, openwrt.started("debug"));
    let generated: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(openwrt.config()).unwrap()).unwrap();
    assert_eq!(generated, expected);
    let check = check_config(&openwrt.config());
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
}

#[test]
fn reload_sends_sighup_after_a_config_passes_and_refuses_one_that_does_not() {
    let openwrt = OpenWrt::new(&shipped_enabled());
    assert_eq!(openwrt.act("start", false).code, Some(0));

    // A valid change while pipit runs: the new JSON is put in place, then SIGHUP.
    openwrt.set_uci(&shipped_enabled().replace("option interval '30s'", "option interval '20s'"));
    let reload = openwrt.act("reload", true);
    assert_eq!(reload.code, Some(0), "{}", reload.stderr);
    assert_eq!(
        reload.procd,
        [
            "reload",
            "procd_running pipit",
            "procd_send_signal pipit * HUP"
        ]
    );
    let running = fs::read_to_string(openwrt.config()).unwrap();
    assert!(running.contains(r#""interval": "20s""#), "{running}");

    // An invalid one: no signal, the running config stays, the refused one is kept to look at.
    openwrt.set_uci(&shipped_enabled().replace("option type 'load'", "option type 'lod'"));
    let refused = openwrt.act("reload", true);
    assert_ne!(refused.code, Some(0));
    assert_eq!(refused.procd, ["reload", "procd_running pipit"]);
    assert_eq!(fs::read_to_string(openwrt.config()).unwrap(), running);
    let kept = openwrt.path("run/pipit.json.new");
    let error = format!("{}:1:", kept.display());
    assert!(refused.stderr.contains(&error), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("sources[1].type"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.syslog.contains("sources[1].type"),
        "{}",
        refused.syslog
    );

    // Not running: a reload starts it. Disabled: a reload stops it.
    openwrt.set_uci(&shipped_enabled());
    let start = openwrt.act("reload", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    let mut expected = vec!["reload".to_owned(), "procd_running pipit".to_owned()];
    expected.extend(openwrt.started("info"));
    assert_eq!(start.procd, expected);
    openwrt.set_uci(&OpenWrt::shipped_uci());
    let stop = openwrt.act("reload", true);
    assert_eq!(stop.procd, ["reload", "stop"]);
}

#[test]
fn config_file_option_runs_a_json_file_through_a_link() {
    let openwrt = OpenWrt::new("");
    let json = openwrt.path("mine.json");
    fs::write(
        &json,
        r#"{"sources": [{"type": "load"}], "outputs": [{"type": "stdout"}]}"#,
    )
    .unwrap();
    let uci = format!(
        "config agent 'agent'\n\toption config_file '{}'\n\tlist ignored 'x'\n\nconfig source 'cpu'\n\toption type 'cpu'\n",
        json.display()
    );
    openwrt.set_uci(&uci);
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    assert_eq!(start.procd, openwrt.started("info"));
    assert_eq!(fs::read_link(openwrt.config()).unwrap(), json);

    // A JSON file pipit refuses: its errors name the file, and the link stays as it was.
    fs::write(openwrt.path("bad.json"), r#"{"outputs": []}"#).unwrap();
    openwrt.set_uci(&uci.replace("mine.json", "bad.json"));
    let refused = openwrt.act("reload", true);
    assert_ne!(refused.code, Some(0));
    let error = format!("{}:", openwrt.path("bad.json").display());
    assert!(refused.stderr.contains(&error), "{}", refused.stderr);
    assert_eq!(fs::read_link(openwrt.config()).unwrap(), json);

    openwrt.set_uci("config agent 'agent'\n\toption config_file 'pipit.json'\n");
    let relative = openwrt.act("start", false);
    assert_ne!(relative.code, Some(0));
    assert!(
        relative.stderr.contains("must be an absolute path"),
        "{}",
        relative.stderr
    );
}

#[test]
fn attributes_without_an_equals_sign_are_refused() {
    let openwrt = OpenWrt::new(
        "config source 'cpu'\n\toption type 'cpu'\n\tlist attributes 'site'\n\nconfig output\n\toption type 'stdout'\n",
    );
    let json = openwrt.act("json", false);
    assert_ne!(json.code, Some(0));
    assert_eq!(json.stdout, "");
    assert!(
        json.stderr
            .contains("list attributes 'site': expected key=value"),
        "{}",
        json.stderr
    );
    let start = openwrt.act("start", false);
    assert_ne!(start.code, Some(0));
    assert_eq!(start.procd, ["start"]);
}

// ------------------------------------------------------------------ sysvinit --

/// packaging/sysvinit/pipit with every path in a temp dir, run with or without
/// start-stop-daemon.
struct SysV {
    dir: TempDir,
    with_ssd: bool,
}

impl SysV {
    fn new(with_ssd: bool) -> SysV {
        SysV {
            dir: TempDir::new("sysvinit"),
            with_ssd,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, sources: &str) {
        fs::write(
            self.path("pipit.json"),
            format!(
                r#"{{"agent": {{"interval": "200ms", "hostname": "h"}}, "sources": [{sources}], "outputs": [{{"type": "stdout"}}]}}"#
            ),
        )
        .unwrap();
    }

    fn act(&self, action: &str) -> (i32, String) {
        let mut command = Command::new(repo().join("packaging/sysvinit/pipit"));
        command
            .arg(action)
            .env("PIPIT_BIN", binary())
            .env("PIPIT_CONFIG", self.path("pipit.json"))
            .env("PIDFILE", self.path("pipit.pid"))
            .env("PIPIT_LOG", self.path("pipit.log"))
            .env("PIPIT_DEFAULTS", self.path("defaults"))
            .env("STOP_TIMEOUT", "10");
        if !self.with_ssd {
            command.env("START_STOP_DAEMON", "");
        }
        let out = run(&mut command);
        (
            out.status.code().unwrap_or(-1),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn pid(&self) -> u32 {
        let pid = fs::read_to_string(self.path("pipit.pid")).unwrap();
        pid.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pid file holds {pid:?}"))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("pipit.log")).unwrap_or_default()
    }

    fn wait_log(&self, what: &str) {
        wait_until(
            &format!("{what:?} in the log"),
            Duration::from_secs(10),
            || self.log().contains(what).then_some(()),
        );
    }
}

impl Drop for SysV {
    /// Stops a pipit that a failed test left running.
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(self.path("pipit.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|&pid| is_pipit(pid))
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// Whether `pid` is a live pipit (a reaped or zombie process has no exe link).
fn is_pipit(pid: u32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe == fs::canonicalize(binary()).unwrap())
}

fn sysvinit_lifecycle(with_ssd: bool) {
    let sysv = SysV::new(with_ssd);
    sysv.write_config(r#"{"type": "load"}"#);

    assert_eq!(sysv.act("status"), (3, "pipit is not running\n".to_owned()));
    assert_eq!(sysv.act("reload").0, 7);

    let (code, out) = sysv.act("start");
    assert_eq!(code, 0, "{out}");
    let pid = sysv.pid();
    assert!(is_pipit(pid), "pid {pid} from the pid file is not pipit");
    sysv.wait_log("h.load.1 ");
    let log_mode = fs::metadata(sysv.path("pipit.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(log_mode & 0o777, 0o600);

    assert_eq!(
        sysv.act("start"),
        (0, "pipit is already running\n".to_owned())
    );
    assert_eq!(sysv.pid(), pid);
    assert_eq!(
        sysv.act("status"),
        (0, format!("pipit is running (pid {pid})\n"))
    );

    sysv.write_config(r#"{"type": "load"}, {"type": "memory"}"#);
    let (code, out) = sysv.act("reload");
    assert_eq!(code, 0, "{out}");
    sysv.wait_log("INFO agent: reloaded");
    sysv.wait_log("h.memory.total ");
    assert_eq!(sysv.pid(), pid);

    fs::write(sysv.path("pipit.json"), "{").unwrap();
    let (code, out) = sysv.act("reload");
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("invalid JSON"), "{out}");
    assert!(is_pipit(pid));
    assert_eq!(sysv.act("restart").0, 6);
    assert!(is_pipit(pid));

    let (code, out) = sysv.act("stop");
    assert_eq!(code, 0, "{out}");
    assert!(!is_pipit(pid), "pipit {pid} still runs after stop");
    assert!(!sysv.path("pipit.pid").exists());
    assert!(sysv.log().contains("INFO agent: stopped"), "{}", sysv.log());
    assert_eq!(sysv.act("status").0, 3);
    assert_eq!(sysv.act("stop").0, 0);

    // A pid file left behind by a process that is not pipit.
    fs::write(sysv.path("pipit.pid"), format!("{}\n", std::process::id())).unwrap();
    assert_eq!(sysv.act("status").0, 1);
    let (code, out) = sysv.act("start");
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("is invalid; nothing changed"), "{out}");
}

#[test]
fn sysvinit_script_with_start_stop_daemon() {
    assert!(
        have("start-stop-daemon"),
        "start-stop-daemon (dpkg) is not installed"
    );
    sysvinit_lifecycle(true);
}

#[test]
fn sysvinit_script_without_start_stop_daemon() {
    sysvinit_lifecycle(false);
}

// ------------------------------------------------------------------- systemd --

#[test]
fn systemd_unit_verifies_and_its_user_is_created() {
    if !have("systemd-analyze") {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (apt-get install systemd, or run \
             tests/install-deps.sh)"
        );
        return;
    }
    let dir = TempDir::new("systemd");
    // verify insists that ExecStart names an existing file: point it at the built binary.
    let unit = fs::read_to_string(repo().join("packaging/systemd/pipit.service")).unwrap();
    let installed = dir.path().join("pipit.service");
    fs::write(&installed, unit.replace("/usr/bin/pipit", binary())).unwrap();
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&installed)
        .env("SYSTEMD_LOG_LEVEL", "warning"));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("pipit.service"), "{stderr}");

    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    let sysusers = fs::File::open(repo().join("packaging/systemd/pipit.sysusers")).unwrap();
    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg("-")
        .stdin(sysusers));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("pipit:") && l.ends_with(":/var/lib/pipit:/usr/sbin/nologin")),
        "{passwd}"
    );
}
