//! Packaging: the static binary in an empty root, shellcheck on every shell script, the OpenWrt
//! package (the release tarball and hash its Makefile names, the feed's cargo build of the small
//! variant, the init script's UCI → JSON conversion by each key's type and its procd calls with
//! stand-ins for OpenWrt's shell libraries from tests/packaging/stubs, the rpcd plugin against a
//! running pipit), the sysvinit script's lifecycle against the built binary, and the systemd unit
//! under `systemd-analyze verify`.

mod common;

use std::collections::{BTreeMap, HashSet};
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

/// A directory of its own under cargo's target directory (`CARGO_TARGET_DIR` when set, relative
/// to the repository as cargo reads it), for a build that must not wait on the one running these
/// tests.
fn target_dir(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), |dir| repo().join(dir))
        .join(name)
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
            .env("CARGO_TARGET_DIR", target_dir("static")));
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

/// A static glibc build is linked by packaging/cc-hot-first: the ordering happened (it reports the
/// names it placed first) and placed only functions of packaging/hot-functions.txt (keys, matched
/// by the same sed script). How many of the listed keys a build has depends on the toolchain and
/// the features, so no share of the list is required; build-static.sh has run the binary.
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
    let placed: Vec<String> = text(&keyed.stdout).lines().map(str::to_string).collect();
    assert!(
        !placed.is_empty(),
        "no function placed first: run packaging/hot-functions.sh to write a list for this build"
    );
    let unlisted: Vec<&String> = placed.iter().filter(|k| !listed.contains(*k)).collect();
    assert!(
        unlisted.is_empty(),
        "placed first but not in packaging/hot-functions.txt: {unlisted:?}"
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
        "packaging/openwrt/pipit/files/pipit.init",
        "packaging/openwrt/pipit/files/pipit.rpcd",
        "packaging/openwrt-cargo.sh",
        "packaging/release-tarball.sh",
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

/// The uid of the user `pipit`, which the OpenWrt package creates (`USERID`) and its init script
/// runs pipit as; made here, as the package would, when this machine has none.
fn pipit_uid() -> u32 {
    let id = || Command::new("id").args(["-u", "pipit"]).output().unwrap();
    let mut out = id();
    if !out.status.success() {
        // Another test may be making it at the same time: whichever wins, `id` then answers.
        let _ = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", "pipit"])
            .status();
        out = id();
    }
    assert!(
        out.status.success(),
        "no user pipit and useradd could not make one"
    );
    text(&out.stdout).trim().parse().unwrap()
}

impl OpenWrt {
    fn new(uci: &str) -> OpenWrt {
        pipit_uid();
        let dir = TempDir::new("openwrt");
        for sub in ["uci", "run"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let openwrt = OpenWrt { dir };
        openwrt.set_uci(uci);
        openwrt
    }

    fn shipped_uci() -> String {
        fs::read_to_string(repo().join("packaging/openwrt/pipit/files/pipit.config")).unwrap()
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
            format!("procd_set_param env RUST_LOG={log_level} RUNTIME_DIRECTORY=/var/run/pipit"),
            "procd_set_param user pipit".to_owned(),
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
            {"name": "self", "type": "self", "interval": "60s"},
            {"name": "wifi", "type": "wifi"}
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
        text(&check.stdout).contains("OK, 5 source(s), 1 output(s)"),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn the_shipped_ping_section_once_enabled_gives_a_config_pipit_accepts() {
    let ping_off = "config source 'ping'\n\toption enabled '0'";
    let uci = shipped_enabled();
    assert!(uci.contains(ping_off), "{uci}");
    let openwrt = OpenWrt::new(&uci.replace(ping_off, "config source 'ping'"));
    let json = openwrt.json();
    let ping = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "ping")
        .unwrap_or_else(|| panic!("no ping source in {json}"));
    assert_eq!(
        *ping,
        serde_json::json!({"name": "ping", "type": "ping", "hosts": ["192.0.2.1"], "count": 10})
    );
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    let check = check_config(&openwrt.config());
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
}

#[test]
fn the_init_script_gives_pipits_directories_to_its_user_and_moves_aside_what_another_user_made() {
    use std::os::unix::fs::{MetadataExt, lchown, symlink};
    let uid = pipit_uid();
    let openwrt = OpenWrt::new(&shipped_enabled());
    let state = openwrt.path("run/fsroot/tmp/pipit");
    let runtime = openwrt.path("run/fsroot/var/run/pipit");
    let check = |dir: &Path| {
        let meta = fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir(), "{}", dir.display());
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (uid, 0o700),
            "{}",
            dir.display()
        );
    };
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    check(&state);
    check(&runtime);
    // The config it runs may hold secrets: its user's alone.
    let config = fs::metadata(openwrt.config()).unwrap();
    assert_eq!((config.uid(), config.mode() & 0o777), (uid, 0o600));
    fs::remove_dir(&state).unwrap();

    // Left by a pipit that ran as root: given to the user with what it holds.
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(state.join("cache.json"), "{}").unwrap();
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    check(&state);
    assert_eq!(
        fs::metadata(state.join("cache.json")).unwrap().uid(),
        uid,
        "the cache a root pipit left"
    );
    fs::remove_dir_all(&state).unwrap();

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
                "agent.state_dir /tmp/pipit is not a directory of root's or pipit's closed to \
                 others: moved aside to /tmp/pipit.untrusted."
            ),
            "{planted}: {}",
            start.syslog
        );
        fs::remove_dir(&state).unwrap();
    }
    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only");
    assert_eq!(meta.uid(), 0);
}

#[test]
fn agent_user_root_keeps_pipit_running_as_root() {
    use std::os::unix::fs::MetadataExt;
    let shipped = shipped_enabled();
    assert!(shipped.contains("\toption user 'pipit'\n"), "{shipped}");
    let uci = shipped.replace("option user 'pipit'", "option user 'root'");
    let openwrt = OpenWrt::new(&uci);
    let start = openwrt.act("start", false);
    assert_eq!(start.code, Some(0), "{}", start.stderr);
    assert!(
        start.procd.iter().any(|c| c == "procd_set_param user root"),
        "{:?}",
        start.procd
    );
    let state = fs::metadata(openwrt.path("run/fsroot/tmp/pipit")).unwrap();
    assert_eq!((state.uid(), state.mode() & 0o7777), (0, 0o700));
    assert!(openwrt.json().get("agent").unwrap().get("user").is_none());
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

/// The value of `VAR:=value` in the OpenWrt Makefile.
fn makefile_var(makefile: &str, var: &str) -> String {
    let prefix = format!("{var}:=");
    let values: Vec<&str> = makefile
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(&prefix))
        .collect();
    assert_eq!(values.len(), 1, "{var} set {} times", values.len());
    values[0].trim().to_owned()
}

fn openwrt_makefile() -> String {
    fs::read_to_string(repo().join("packaging/openwrt/pipit/Makefile")).unwrap()
}

/// Runs packaging/release-tarball.sh for `revision` into `out`: (tarball, sha256, version).
fn release_tarball(revision: &str, out: &Path) -> (PathBuf, String, String) {
    let made = run(Command::new(repo().join("packaging/release-tarball.sh"))
        .arg(revision)
        .arg(out));
    assert!(made.status.success(), "{}", text(&made.stderr));
    let stdout = text(&made.stdout);
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{stdout}");
    (
        PathBuf::from(words[0]),
        words[1].to_owned(),
        words[2].to_owned(),
    )
}

#[test]
fn openwrt_makefile_names_a_revision_whose_tarball_has_its_hash() {
    let makefile = openwrt_makefile();
    let revision = makefile
        .lines()
        .find_map(|l| l.strip_prefix("# Source: revision "))
        .expect("a '# Source: revision' line")
        .trim()
        .to_owned();
    let name = makefile_var(&makefile, "PKG_NAME");
    let version = makefile_var(&makefile, "PKG_VERSION");
    let source = makefile_var(&makefile, "PKG_SOURCE")
        .replace("$(PKG_NAME)", &name)
        .replace("$(PKG_VERSION)", &version);
    let hash = makefile_var(&makefile, "PKG_HASH");

    let dir = TempDir::new("tarball");
    let (tarball, made_hash, made_version) = release_tarball(&revision, &dir.path().join("a"));
    let fix = "run packaging/release-tarball.sh --update-makefile and commit the Makefile";
    assert_eq!(made_version, version, "{fix}");
    assert_eq!(made_hash, hash, "{fix}");
    assert_eq!(tarball.file_name().unwrap().to_str(), Some(source.as_str()));

    // The same bytes on every run.
    let (again, _, _) = release_tarball(&revision, &dir.path().join("b"));
    assert_eq!(fs::read(&tarball).unwrap(), fs::read(&again).unwrap());

    // What the build and the license files need; not the feed directory.
    let listed = run(Command::new("tar").arg("-tzf").arg(&tarball));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let entries = text(&listed.stdout);
    let top = format!("{name}-{version}/");
    assert!(entries.lines().all(|e| e.starts_with(&top)), "{entries}");
    let mut needed = vec!["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"];
    let licenses = makefile_var(&makefile, "PKG_LICENSE_FILES");
    needed.extend(licenses.split_whitespace());
    for file in needed {
        assert!(
            entries.lines().any(|e| e == format!("{top}{file}")),
            "{file} not in {}",
            tarball.display()
        );
    }
    assert!(
        !entries.contains(&format!("{top}packaging/openwrt/")),
        "{entries}"
    );
}

#[test]
fn openwrt_makefile_leaves_only_the_release_placeholders() {
    let makefile = openwrt_makefile();
    let mut found: Vec<&str> = makefile
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|p| !p.contains(char::is_whitespace))
        .collect();
    found.sort_unstable();
    found.dedup();
    assert_eq!(
        found,
        ["PIPIT_MAINTAINER", "PIPIT_PROJECT_URL", "PIPIT_RELEASE_URL"]
    );
    for line in [
        "include ../../lang/rust/rust-package.mk",
        "PKG_SOURCE_URL:=@PIPIT_RELEASE_URL@",
        "PKG_MAINTAINER:=@PIPIT_MAINTAINER@",
        "PKG_LICENSE_FILES:=LICENSE-MIT LICENSE-APACHE",
    ] {
        assert!(makefile.lines().any(|l| l == line), "no {line:?}");
    }
    for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
        assert!(repo().join(license).is_file(), "{license}");
    }
}

/// The Makefile's lines that turn the feed's panic=abort into unwind, run by GNU make on
/// CARGO_PKG_CONFIG_VARS as the feed's rust-values.mk sets it without CONFIG_DEBUG.
#[test]
fn openwrt_makefile_keeps_unwinding_under_the_feed_flags() {
    let makefile = openwrt_makefile();
    let lines: Vec<&str> = makefile
        .lines()
        .filter(|l| {
            l.starts_with("PIPIT_PANIC_UNWIND:=") || l.starts_with("CARGO_PKG_CONFIG_VARS:=")
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let feed = "CARGO_PKG_CONFIG_VARS:=CARGO_BUILD_TARGET=mips-unknown-linux-musl \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false \
        CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=false CARGO_PROFILE_RELEASE_LTO=false \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
        CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_RPATH=false \
        RUSTFLAGS=\"-Ctarget-feature=-crt-static -Cpanic=abort -Clink-arg=-fuse-ld=bfd -C prefer-dynamic\"";
    let dir = TempDir::new("make-panic");
    let harness = dir.path().join("Makefile");
    fs::write(
        &harness,
        format!(
            "{feed}\n{}\nall:\n\t@echo '$(CARGO_PKG_CONFIG_VARS)'\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let out = run(Command::new("make").arg("-s").arg("-f").arg(&harness));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let vars = text(&out.stdout);
    assert!(!vars.contains("abort"), "{vars}");
    assert!(
        vars.contains("CARGO_PROFILE_RELEASE_PANIC=unwind"),
        "{vars}"
    );
    assert!(vars.contains("-Cpanic=unwind -Clink-arg"), "{vars}");
    assert!(
        vars.contains("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true"),
        "{vars}"
    );
}

/// The `small` variant built from the committed tree's release tarball by
/// packaging/openwrt-cargo.sh, the feed's cargo command and flags for this machine.
#[test]
fn feed_build_of_the_small_variant_checks_and_collects() {
    let dir = TempDir::new("feed-build");
    let (tarball, _, version) = release_tarball("HEAD", dir.path());
    // -m: the files get the time of unpacking, so pipit itself is compiled again (and its rustc
    // command line logged) while target/openwrt-feed keeps the dependencies from run to run.
    let unpacked = run(Command::new("tar")
        .arg("-xmzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path()));
    assert!(unpacked.status.success(), "{}", text(&unpacked.stderr));
    let source = dir.path().join(format!("pipit-{version}"));
    let root = dir.path().join("root");
    let built = run(Command::new(repo().join("packaging/openwrt-cargo.sh"))
        .arg(&source)
        .arg(&root)
        .arg("small")
        .env("CARGO_TARGET_DIR", target_dir("openwrt-feed")));
    assert!(built.status.success(), "{}", text(&built.stderr));
    let log = text(&built.stderr);
    for flag in [
        "-C opt-level=z",
        "-Cpanic=unwind",
        "-C overflow-checks=on",
        "-C prefer-dynamic",
        "-Ctarget-feature=-crt-static",
        "--cfg 'feature=\"small\"'",
    ] {
        assert!(log.contains(flag), "{flag} not in the cargo log:\n{log}");
    }
    assert!(!log.contains("panic=abort"), "{log}");
    assert!(!log.contains("feature=\"http\""), "{log}");

    let bin = root.join("bin/pipit");
    let libdir = text(&run(Command::new("rustc").args(["--print", "target-libdir"])).stdout)
        .trim()
        .to_owned();
    let needed = run(Command::new("readelf").arg("-d").arg(&bin));
    assert!(
        text(&needed.stdout).contains("Shared library: [libstd-"),
        "std is not linked as a shared library, as the feed links it:\n{}",
        text(&needed.stdout)
    );
    let config = dir.path().join("pipit.json");
    fs::write(
        &config,
        EMPTY_ROOT_CONFIG.replace("/state", dir.path().join("state").to_str().unwrap()),
    )
    .unwrap();
    let go = |command: &str| {
        run(Command::new(&bin)
            .arg(command)
            .arg("-c")
            .arg(&config)
            .env("LD_LIBRARY_PATH", &libdir))
    };
    let check = go("check");
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("OK, 4 source(s), 1 output(s)"),
        "{}",
        text(&check.stdout)
    );
    let once = go("once");
    assert_eq!(once.status.code(), Some(0), "{}", text(&once.stderr));
    let lines = text(&once.stdout);
    for metric in [
        ".cpu.total.user ",
        ".load.1 ",
        ".memory.total ",
        ".self.rss ",
    ] {
        assert!(lines.contains(metric), "no {metric} in:\n{lines}");
    }
}

/// Runs the rpcd plugin as rpcd does: `ARGS`, with `stdin` written to its standard input, and
/// parses what it prints as one JSON object.
fn rpcd_plugin(config: &Path, args: &[&str], stdin: &str) -> (Option<i32>, serde_json::Value) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(repo().join("packaging/openwrt/pipit/files/pipit.rpcd"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PIPIT_BIN", binary())
        .env("PIPIT_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {stdout:?}; stderr: {}",
            text(&out.stderr)
        )
    });
    assert!(value.is_object(), "{args:?}: not an object: {stdout}");
    (out.status.code(), value)
}

#[test]
fn rpcd_plugin_answers_list_and_calls_from_a_running_pipit() {
    let dir = TempDir::new("rpcd");
    let socket = dir.path().join("pipit.sock");
    let config = dir.path().join("pipit.json");
    let write_config = |sources: &str| {
        let text = format!(
            r#"{{"agent": {{"hostname": "h", "state_dir": "{state}"}},
  "control": {{"socket": "{socket}"}},
  "sources": [{sources}],
  "outputs": [{{"type": "stdout"}}]}}"#,
            state = dir.path().join("state").display(),
            socket = socket.display()
        );
        fs::write(&config, text).unwrap();
    };
    write_config(r#"{"type": "load", "interval": "100ms"}"#);

    let (code, list) = rpcd_plugin(&config, &["list"], "");
    assert_eq!(code, Some(0));
    assert_eq!(
        list,
        serde_json::json!({"status": {}, "metrics": {}, "reload": {}})
    );

    // No agent yet: an error object that says so.
    let (_, absent) = rpcd_plugin(&config, &["call", "status"], "{}");
    assert_eq!(absent["error"]["code"], "not_running", "{absent}");

    let _agent = common::pipit::Agent::start(&config, "info");
    let status = wait_until("a status answer", Duration::from_secs(10), || {
        let (code, answer) = rpcd_plugin(&config, &["call", "status"], "{}");
        answer.get("result").cloned().map(|r| (code, r))
    });
    assert_eq!(status.0, Some(0));
    assert_eq!(status.1["config"]["file"], config.to_str().unwrap());

    let metrics = wait_until("load.1 among the metrics", Duration::from_secs(10), || {
        let (_, answer) = rpcd_plugin(&config, &["call", "metrics"], "{}");
        let listed = answer["result"]["metrics"].as_array()?.clone();
        listed
            .iter()
            .any(|m| m["name"] == "load.1")
            .then_some(listed)
    });
    assert!(metrics.iter().all(|m| m["source"] == "load"), "{metrics:?}");

    // reload reads the config again: the new source's metrics come.
    write_config(
        r#"{"type": "load", "interval": "100ms"}, {"type": "memory", "interval": "100ms"}"#,
    );
    let (code, reload) = rpcd_plugin(&config, &["call", "reload"], "{}");
    assert_eq!(code, Some(0), "{reload}");
    assert_eq!(reload["result"]["reloaded"], true, "{reload}");
    wait_until(
        "memory.total among the metrics",
        Duration::from_secs(10),
        || {
            let (_, answer) = rpcd_plugin(&config, &["call", "metrics"], "{}");
            answer["result"]["metrics"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == "memory.total")
                .then_some(())
        },
    );

    // A config the agent refuses: an error object, and the agent keeps running.
    write_config(r#"{"type": "lod"}"#);
    let (_, refused) = rpcd_plugin(&config, &["call", "reload"], "{}");
    assert_eq!(refused["error"]["code"], "failed", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{refused}"
    );
    let (_, still) = rpcd_plugin(&config, &["call", "status"], "{}");
    assert!(still["result"]["pid"].is_u64(), "{still}");

    let (code, unknown) = rpcd_plugin(&config, &["call", "stop"], "{}");
    assert_ne!(code, Some(0));
    assert_eq!(unknown["error"]["code"], "unknown_method", "{unknown}");
}

#[test]
fn rpcd_acl_grants_the_plugin_methods() {
    let acl: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(repo().join("packaging/openwrt/pipit/files/pipit.acl.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        acl["pipit"]["read"]["ubus"]["pipit"],
        serde_json::json!(["status", "metrics"])
    );
    assert_eq!(
        acl["pipit"]["write"]["ubus"]["pipit"],
        serde_json::json!(["reload"])
    );
    let makefile = openwrt_makefile();
    for line in [
        "\t$(INSTALL_BIN) ./files/pipit.rpcd $(1)/usr/libexec/rpcd/pipit",
        "\t$(INSTALL_DATA) ./files/pipit.acl.json $(1)/usr/share/rpcd/acl.d/pipit.json",
    ] {
        assert!(makefile.lines().any(|l| l == line), "no {line:?}");
    }
}

// ----------------------------------------------------------- UCI key types --

/// Where the init script reads each key's type (installed as /usr/share/pipit/uci-types).
const UCI_TYPES: &str = "packaging/openwrt/pipit/files/pipit.uci-types";

/// One key pipit's reader knows: section (`agent`, `source`, `output`), type (`-` for agent),
/// key, kind (`number`, `boolean`, `array` of strings, `numbers` (an array of them), `object`,
/// `string`).
type KeyType = (String, String, String, String);

/// `pipit check` on `config`: its error lines as (key path, message).
fn check_errors(dir: &Path, config: &serde_json::Value) -> Vec<(String, String)> {
    let file = dir.join("probe.json");
    fs::write(&file, serde_json::to_string_pretty(config).unwrap()).unwrap();
    let out = check_config(&file);
    text(&out.stderr)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(": ")?;
            let (path, message) = rest.split_once(": ")?;
            Some((path.to_owned(), message.to_owned()))
        })
        .collect()
}

/// The names in `one of "a", "b", got …`.
fn one_of(message: &str) -> Vec<String> {
    let list = message
        .strip_prefix("expected one of ")
        .and_then(|m| m.rsplit_once(", got ").map(|(l, _)| l))
        .unwrap_or_default();
    list.split(", ")
        .map(|n| n.trim_matches('"').to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The kind of a key, and a value pipit accepts (or at least reads on from) for it, from what
/// pipit says it expected there; `round` picks among the names of a choice.
fn kind_and_sample(expected: &str, round: usize) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    let choices = one_of(&format!("expected {expected}, got null"));
    if expected.starts_with("a whole number") || expected.starts_with("a finite number") {
        ("number", json!(1))
    } else if expected == "true or false" {
        ("boolean", json!(true))
    } else if expected.starts_with("an array") {
        ("array", json!([]))
    } else if expected.starts_with("an object") {
        ("object", json!({}))
    } else if expected.starts_with("a duration") {
        ("string", json!("1s"))
    } else if !choices.is_empty() {
        ("string", json!(choices[round.min(choices.len() - 1)]))
    } else if expected.contains("path") {
        ("string", json!("/"))
    } else {
        ("string", json!("x"))
    }
}

/// Every key pipit's reader knows in the agent section and in each source and output type, with
/// its kind, asked of pipit itself: an unknown key is refused with the keys known there, and a key
/// set to null with what it expected. Keys that are read only when another key has some value are
/// found by probing again with a value for every key (each name of a choice in turn).
fn probe_uci_types() -> Vec<KeyType> {
    use serde_json::{Map, Value, json};
    let dir = TempDir::new("uci-types");
    let types = check_errors(
        dir.path(),
        &json!({"sources": [{"type": "zz"}], "outputs": [{"type": "zz"}]}),
    );
    let types_of = |path: &str| {
        types
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| one_of(m))
            .unwrap_or_else(|| panic!("no type list for {path} in {types:?}"))
    };
    // (path, section, type) of every table probed.
    // The sections of one table each, then one per source and output type.
    let singles = ["agent", "http_server"];
    let mut tables: Vec<(String, String, String)> = singles
        .iter()
        .map(|s| (s.to_string(), s.to_string(), "-".to_owned()))
        .collect();
    for (section, list) in [("source", "sources"), ("output", "outputs")] {
        for (i, name) in types_of(&format!("{list}[0].type")).into_iter().enumerate() {
            tables.push((format!("{list}[{i}]"), section.to_owned(), name));
        }
    }
    let build = |members: &dyn Fn(&str) -> Map<String, Value>| {
        let mut config = json!({"sources": [], "outputs": []});
        for single in singles {
            config[single] = Value::Object(members(single));
        }
        for (path, section, name) in &tables[singles.len()..] {
            let mut table = members(path);
            table.insert("type".into(), json!(name));
            config[format!("{section}s")]
                .as_array_mut()
                .unwrap()
                .push(Value::Object(table));
        }
        config
    };
    // path -> key -> what pipit expects there, once it has said.
    let mut known: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let value_of = |expected: &Option<String>, round: usize, unset: Value| {
        expected
            .as_deref()
            .map_or(unset, |e| kind_and_sample(e, round).1)
    };
    for round in 0..5 {
        let keys = known.clone();
        let errors = check_errors(
            dir.path(),
            &build(&|path| {
                let mut table: Map<String, Value> = keys
                    .get(path)
                    .into_iter()
                    .flatten()
                    .map(|(k, e)| (k.clone(), value_of(e, round, json!("x"))))
                    .collect();
                table.insert("zz_unknown".into(), Value::Null);
                table
            }),
        );
        for (path, message) in &errors {
            let Some(table) = path.strip_suffix(".zz_unknown") else {
                continue;
            };
            let list = message
                .strip_prefix("unknown key; expected one of: ")
                .unwrap_or_else(|| panic!("{path}: {message}"));
            for key in list.split(", ").filter(|k| *k != "type") {
                known
                    .entry(table.to_owned())
                    .or_default()
                    .entry(key.to_owned())
                    .or_insert(None);
            }
        }
        // Every key pipit has not yet typed is null, the others keep a value pipit reads on from.
        let keys = known.clone();
        let errors = check_errors(
            dir.path(),
            &build(&|path| {
                keys.get(path)
                    .into_iter()
                    .flatten()
                    .map(|(k, e)| (k.clone(), value_of(e, round, Value::Null)))
                    .collect()
            }),
        );
        for (path, message) in &errors {
            let Some(expected) = message
                .strip_suffix(", got null")
                .and_then(|m| m.strip_prefix("expected "))
            else {
                continue;
            };
            let Some((table, key)) = path.rsplit_once('.') else {
                continue;
            };
            if let Some(entry) = known.get_mut(table).and_then(|t| t.get_mut(key)) {
                entry.get_or_insert_with(|| expected.to_owned());
            }
        }
    }
    // What an array holds: each array key set to [null], the others to a value.
    let is_array = |e: &Option<String>| e.as_deref().is_some_and(|e| e.starts_with("an array"));
    let errors = check_errors(
        dir.path(),
        &build(&|path| {
            known
                .get(path)
                .into_iter()
                .flatten()
                .map(|(k, e)| {
                    let value = if is_array(e) {
                        json!([null])
                    } else {
                        value_of(e, 0, json!("x"))
                    };
                    (k.clone(), value)
                })
                .collect()
        }),
    );
    let mut found = Vec::new();
    for (path, section, name) in &tables {
        for (key, expected) in known.get(path).into_iter().flatten() {
            let mut kind = expected
                .as_deref()
                .map_or("string", |e| kind_and_sample(e, 0).0);
            let item = format!("{path}.{key}[0]");
            let holds = errors.iter().find(|(p, _)| *p == item).map(|(_, m)| m);
            if is_array(expected)
                && holds.is_some_and(|m| {
                    kind_and_sample(
                        m.trim_start_matches("expected ")
                            .trim_end_matches(", got null"),
                        0,
                    )
                    .0 == "number"
                })
            {
                kind = "numbers";
            }
            found.push((section.clone(), name.clone(), key.clone(), kind.to_owned()));
        }
    }
    found
}

fn read_uci_types() -> Vec<KeyType> {
    fs::read_to_string(repo().join(UCI_TYPES))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.len(), 4, "{UCI_TYPES}: {l}");
            (w[0].into(), w[1].into(), w[2].into(), w[3].into())
        })
        .collect()
}

fn render_uci_types(types: &[KeyType]) -> String {
    let mut text = String::from(
        "# Generated by tests/packaging.rs from what pipit's config reader expects of each key:\n\
         # PIPIT_UPDATE_UCI_TYPES=1 cargo test --test packaging uci_types\n\
         # section type key kind; the init script turns a UCI value into JSON by its kind.\n",
    );
    for (section, name, key, kind) in types {
        text.push_str(&format!("{section} {name} {key} {kind}\n"));
    }
    text
}

/// The (section, type) pairs of the list, in its order.
fn uci_sections(types: &[KeyType]) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for (section, name, _, _) in types {
        if !sections.contains(&(section.clone(), name.clone())) {
            sections.push((section.clone(), name.clone()));
        }
    }
    sections
}

/// The table of docs/packaging.md ("UCI options") made from the same list: per section and type,
/// the keys that are not plain strings.
fn render_uci_table(types: &[KeyType]) -> String {
    let mut text = String::from(
        "| section | type | numbers | booleans | lists (arrays) | lists of numbers | lists of `key=value` (objects) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (section, name) in uci_sections(types) {
        let of = |kind: &str| {
            let keys: Vec<String> = types
                .iter()
                .filter(|t| t.0 == section && t.1 == name && t.3 == kind)
                .map(|t| format!("`{}`", t.2))
                .collect();
            keys.join(", ")
        };
        let name = if name == "-" {
            String::new()
        } else {
            format!("`{name}`")
        };
        text.push_str(&format!(
            "| `{section}` | {name} | {} | {} | {} | {} | {} |\n",
            of("number"),
            of("boolean"),
            of("array"),
            of("numbers"),
            of("object")
        ));
    }
    text
}

const TABLE_BEGIN: &str = "<!-- uci-types table: generated by tests/packaging.rs -->\n";
const TABLE_END: &str = "<!-- end of uci-types table -->\n";

/// The key types the init script reads and the table in the docs are what pipit's reader says
/// today. PIPIT_UPDATE_UCI_TYPES=1 writes both.
#[test]
fn uci_types_and_their_docs_table_follow_the_config_reader() {
    let probed = probe_uci_types();
    let docs_path = repo().join("docs/packaging.md");
    let docs = fs::read_to_string(&docs_path).unwrap();
    let (before, rest) = docs
        .split_once(TABLE_BEGIN)
        .expect("the table's begin marker");
    let (table, after) = rest.split_once(TABLE_END).expect("the table's end marker");
    let rendered = render_uci_table(&probed);
    if std::env::var_os("PIPIT_UPDATE_UCI_TYPES").is_some() {
        fs::write(repo().join(UCI_TYPES), render_uci_types(&probed)).unwrap();
        fs::write(
            &docs_path,
            format!("{before}{TABLE_BEGIN}{rendered}{TABLE_END}{after}"),
        )
        .unwrap();
        return;
    }
    let fix = "run PIPIT_UPDATE_UCI_TYPES=1 cargo test --test packaging uci_types";
    assert_eq!(read_uci_types(), probed, "{UCI_TYPES} is stale: {fix}");
    assert_eq!(table, rendered, "docs/packaging.md's table is stale: {fix}");
    for expected in [
        ("agent", "-", "queue_size", "number"),
        ("source", "cpu", "per_core", "boolean"),
        ("output", "graphite", "port", "number"),
        ("output", "influxdb", "token", "string"),
        ("output", "influxdb", "db", "string"),
        ("output", "stdout", "rate_burst", "number"),
    ] {
        let found = probed
            .iter()
            .any(|t| (t.0.as_str(), t.1.as_str(), t.2.as_str(), t.3.as_str()) == expected);
        assert!(found, "{expected:?} not found");
    }
}

/// Every key of the list, set in UCI, reaches the JSON config as its kind: a number key's digits
/// a number, a boolean key's '1' true, a string key's digits a string, an array key's option a
/// one-item array, an object key's `key=value` list an object.
#[test]
fn every_uci_key_becomes_the_json_type_pipit_expects() {
    use serde_json::json;
    let types = read_uci_types();
    let mut uci = String::new();
    let sections = uci_sections(&types);
    for (section, name) in &sections {
        if section == "agent" || section == "http_server" {
            uci.push_str(&format!("config {section} '{section}'\n"));
        } else {
            uci.push_str(&format!("config {section}\n\toption type '{name}'\n"));
        }
        for (_, _, key, kind) in types.iter().filter(|t| &t.0 == section && &t.1 == name) {
            let line = match kind.as_str() {
                "boolean" => format!("\toption {key} '1'\n"),
                "object" => format!("\tlist {key} 'a=1'\n"),
                "numbers" => format!("\tlist {key} '12'\n\tlist {key} '-3'\n"),
                "array" | "number" | "string" => format!("\toption {key} '12'\n"),
                other => panic!("{section} {name} {key}: unknown kind {other}"),
            };
            uci.push_str(&line);
        }
        uci.push('\n');
    }
    let json = OpenWrt::new(&uci).json();
    let mut index = BTreeMap::new();
    for (section, name) in &sections {
        let table = if section == "agent" || section == "http_server" {
            &json[section]
        } else {
            let list = format!("{section}s");
            let i = index.entry(list.clone()).or_insert(0);
            *i += 1;
            let table = &json[&list][*i - 1];
            assert_eq!(table["type"], json!(name), "{json}");
            table
        };
        for (_, _, key, kind) in types.iter().filter(|t| &t.0 == section && &t.1 == name) {
            let expected = match kind.as_str() {
                "number" => json!(12),
                "boolean" => json!(true),
                "array" => json!(["12"]),
                "numbers" => json!([12, -3]),
                "object" => json!({"a": "1"}),
                _ => json!("12"),
            };
            assert_eq!(table[key], expected, "{section} {name} {key} ({kind})");
        }
    }
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
