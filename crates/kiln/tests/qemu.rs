//! `kiln run --backend qemu` end to end, in real microVMs (TCG here): a
//! real workflow on the `debian` image, isolation between runs and from the
//! host, nothing left behind after runs, orphans of a `kill -9`ed kiln
//! reaped by the next start, and the guest features build tools need.
//!
//! Each test has a private `KILN_HOME` (its `images` a link to the real
//! data directory's), so the VM directories below `<home>/qemu-vms/` and
//! the QEMU and passt processes whose command line names them are this
//! test's alone, even while other tests boot VMs. Needs the images
//! (`./scripts/build-images.sh`); without them each test says why and
//! passes, unless `KILN_REQUIRE_QEMU` is set (CI), where it fails.

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Backend, Repo, RunOutput};

/// A repository whose runs boot microVMs, or `None` (said why) when the
/// qemu backend cannot run here and skipping is allowed.
fn qemu_repo(test: &str) -> Option<Repo> {
    support::qemu_available(test, &["minimal", "debian"])
        .then(|| Repo::with_examples_on(Backend::Qemu))
}

/// A fresh random hex string (from the kernel), for markers and secrets.
fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `path` (relative to the repository) and commits it.
fn commit_file(repo: &Repo, path: &str, text: &str, message: &str) {
    let full = repo.root().join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(&full, text).expect("write");
    support::git(&repo.root(), &["add", path]);
    support::git(&repo.root(), &["commit", "-q", "-m", message]);
}

/// Host processes (pid, program name) whose command line mentions `dir`:
/// the QEMU and passt of VMs kept below it. Zombies count as gone.
fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().skip(1).any(|a| a.contains(&needle)) && alive(pid) {
            let program = args[0].rsplit('/').next().unwrap_or_default().to_string();
            found.push((pid, program));
        }
    }
    found
}

/// Whether a process runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Waits (bounded) for every pid to be gone; returns those still running.
fn still_running(pids: &[u32]) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file below `dir` whose name ends with `suffix` (symlinks not
/// followed, so the linked images are not searched).
fn files_named(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            found.extend(files_named(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// A host TCP service a step connects to (bash `/dev/tcp`) and blocks on:
/// when the test accepts the connection, the step is provably running in
/// its VM, and it goes on only when the test says so. Guests cannot reach
/// the host's loopback, so it listens on the host's routed address.
struct Gate {
    listener: TcpListener,
}

impl Gate {
    fn new() -> Gate {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        // Connecting a UDP socket only picks a route; nothing is sent.
        socket.connect("203.0.113.1:9").expect("a default route");
        let ip = socket.local_addr().expect("local address").ip();
        assert!(!ip.is_loopback(), "the gate needs a routed host address");
        let listener = TcpListener::bind((ip, 0)).expect("bind the gate");
        listener.set_nonblocking(true).expect("nonblocking");
        Gate { listener }
    }

    /// bash lines for a `run: |` block (indented by `indent`) that wait at
    /// the gate.
    fn wait_script(&self, indent: usize) -> String {
        let addr = self.listener.local_addr().expect("gate address");
        let pad = " ".repeat(indent);
        format!(
            "{pad}exec 3<>/dev/tcp/{}/{}\n{pad}read -r -t 300 go <&3\n{pad}[ \"$go\" = go ]\n",
            addr.ip(),
            addr.port()
        )
    }

    /// Waits until a step connected; fails the test (with the run's output)
    /// if `kiln` exits first or nothing comes within a generous bound.
    fn arrived(&self, kiln: &mut Child) -> TcpStream {
        let until = Instant::now() + Duration::from_secs(180);
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => return conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("gate: {e}"),
            }
            if let Some(status) = kiln.try_wait().expect("try_wait") {
                panic!("kiln exited ({status}) before its step reached the gate");
            }
            assert!(Instant::now() < until, "no step reached the gate");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `kiln run WORKFLOW --backend qemu --json EXTRA…` in the background, its
/// output collected by threads.
struct Background {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Background {
    fn start(repo: &Repo, workflow: &str, extra: &[&str]) -> Background {
        let mut child = Command::new(support::kiln_bin())
            .args(["run", workflow, "--backend", "qemu", "--json"])
            .args(extra)
            .current_dir(repo.root())
            .env("KILN_HOME", repo.home())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln");
        let read_all = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
        let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
        Background {
            child,
            stdout,
            stderr,
        }
    }

    fn finish(mut self) -> RunOutput {
        let status = self.child.wait().expect("wait for kiln");
        RunOutput::new(std::process::Output {
            status,
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr.join().expect("stderr reader"),
        })
    }
}

/// The `debian` image runs a real workflow: the built-in checkout with full
/// history, git reading and writing history in the VM, python3 computing a
/// value that reaches a later step and a dependent job through
/// `GITHUB_OUTPUT`.
#[test]
fn debian_image_runs_a_real_workflow_with_git_and_python() {
    let Some(repo) = qemu_repo("debian_image_runs_a_real_workflow_with_git_and_python") else {
        return;
    };
    // Data the test knows the answer for, different on every run.
    let seed = random_hex();
    let numbers: Vec<u64> = seed
        .as_bytes()
        .chunks(2)
        .map(|pair| u64::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex"))
        .collect();
    let json = serde_json::to_string(&numbers).expect("json");
    let subject = format!("numbers {seed}");
    commit_file(&repo, "data/numbers.json", &json, &subject);
    commit_file(
        &repo,
        ".github/workflows/real.yml",
        r#"name: real
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      total: ${{ steps.compute.outputs.total }}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: git sees the commit
        run: |
          echo "head=$(git rev-parse HEAD)"
          echo "parent subject=$(git log -1 --skip=1 --format=%s)"
          echo "commits=$(git rev-list --count HEAD)"
          echo "clean=$(git status --porcelain | wc -l)"
      - id: compute
        name: python3 computes
        shell: bash
        run: |
          python3 - >> "$GITHUB_OUTPUT" <<'PY'
          import json, pathlib
          numbers = json.loads(pathlib.Path("data/numbers.json").read_text())
          print(f"total={sum(numbers)}")
          print(f"count={len(numbers)}")
          PY
      - name: a later step reads the output
        env:
          TOTAL: ${{ steps.compute.outputs.total }}
        run: echo "total=$TOTAL count=${{ steps.compute.outputs.count }}"
      - name: git commits in the VM
        run: |
          git config user.email ci@kiln.invalid
          git config user.name "Kiln CI"
          echo made-in-the-vm > vm.txt
          git add vm.txt
          git commit -q -m "made in the vm"
          echo "commits=$(git rev-list --count HEAD) last=$(git log -1 --format=%s)"
  report:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "needs total=${{ needs.build.outputs.total }}"
"#,
        "add the real workflow",
    );
    let run = repo.run_workflow(".github/workflows/real.yml", &["--image", "debian"]);
    run.assert_code(0);
    assert!(
        run.json["vms"][0]
            .as_str()
            .is_some_and(|v| v.starts_with("qemu-")),
        "{}",
        run.json["vms"]
    );
    let head = repo.head_sha();
    assert_eq!(
        run.log("build", "git sees the commit"),
        [
            format!("head={head}").as_str(),
            &format!("parent subject={subject}"),
            "commits=4",
            "clean=0"
        ]
    );
    let total: u64 = numbers.iter().sum();
    assert_eq!(
        run.step("build", "python3 computes")["outputs"],
        serde_json::json!({"total": total.to_string(), "count": numbers.len().to_string()})
    );
    assert_eq!(
        run.log("build", "a later step reads the output"),
        [format!("total={total} count={}", numbers.len())]
    );
    assert_eq!(
        run.log("build", "git commits in the VM"),
        ["commits=5 last=made in the vm"]
    );
    assert_eq!(
        run.log(
            "report",
            "Run echo \"needs total=${{ needs.build.outputs.total }}\""
        ),
        [format!("needs total={total}")]
    );
}

/// Where run 1 writes and run 2 must find nothing: tmpfs, the root file
/// system (RAM on `minimal`, the disk overlay on `debian`), home and the
/// workspace; `label=path` pairs for the steps.
const MARKED: &str = "tmp=/tmp/kiln-marker-$MARKER var-tmp=/var/tmp/kiln-marker-$MARKER \
                      etc=/etc/kiln-marker-$MARKER home=$HOME/kiln-marker-$MARKER \
                      workspace=$GITHUB_WORKSPACE/kiln-marker-$MARKER";

/// A file written by one run is absent in the next, on both images (on
/// `debian` the root disk is shared read-only; each run writes only to its
/// own overlay).
#[test]
fn a_file_written_by_one_run_is_absent_in_the_next() {
    let Some(repo) = qemu_repo("a_file_written_by_one_run_is_absent_in_the_next") else {
        return;
    };
    let workflow = |name: &str, steps: &str| {
        let text = format!("on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n{steps}");
        std::fs::write(repo.root().join(name), text).expect("write");
    };
    workflow(
        "write.yml",
        &format!(
            "      - run: for e in {MARKED}; do echo \"$MARKER\" > \"${{e#*=}}\"; done\n      \
             - name: check\n        \
               run: for e in {MARKED}; do [ \"$(cat \"${{e#*=}}\")\" = \"$MARKER\" ] && echo \"present ${{e%%=*}}\"; done\n"
        ),
    );
    workflow(
        "check.yml",
        &format!(
            "      - name: check\n        \
               run: for e in {MARKED}; do if [ -e \"${{e#*=}}\" ]; then echo \"PRESENT ${{e#*=}}\"; else echo \"absent ${{e%%=*}}\"; fi; done\n"
        ),
    );
    let expected = |word: &str| -> Vec<String> {
        ["tmp", "var-tmp", "etc", "home", "workspace"]
            .iter()
            .map(|label| format!("{word} {label}"))
            .collect()
    };
    for image in ["minimal", "debian"] {
        let marker = format!("MARKER={}", random_hex());
        let args = ["--image", image, "--env", &marker];
        let first = repo.run_workflow("write.yml", &args);
        first.assert_code(0);
        assert_eq!(first.log("j", "check"), expected("present"), "{image}");
        let second = repo.run_workflow("check.yml", &args);
        second.assert_code(0);
        assert_eq!(second.log("j", "check"), expected("absent"), "{image}");
        assert_ne!(first.json["vms"], second.json["vms"]);
    }
}

/// The guest sees only what was put in: a host file (outside the
/// repository) and an uncommitted file of the repository exist neither at
/// their paths nor anywhere in the guest's files, while a committed file's
/// content is found by the same search (so the search works).
#[test]
fn the_guest_cannot_read_host_files() {
    let Some(repo) = qemu_repo("the_guest_cannot_read_host_files") else {
        return;
    };
    let host_secret = format!("host-secret-{}", random_hex());
    let untracked_secret = format!("untracked-secret-{}", random_hex());
    let committed = format!("committed-token-{}", random_hex());
    let host_file = repo.scratch("host-secret.txt");
    std::fs::write(&host_file, &host_secret).expect("write");
    commit_file(&repo, "committed.txt", &committed, "a committed file");
    std::fs::write(repo.root().join("untracked.txt"), &untracked_secret).expect("write");
    std::fs::write(
        repo.root().join("probe.yml"),
        r#"on: push
jobs:
  j:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - name: by path
        run: |
          for p in "$HOST_FILE" "$GITHUB_WORKSPACE/untracked.txt" "$GITHUB_WORKSPACE/committed.txt"; do
            if [ -e "$p" ]; then echo "exists ${p##*/}"; else echo "missing ${p##*/}"; fi
          done
      - name: by content
        run: |
          # Each needle arrives in two halves, so only grep's own argument
          # (in /proc, which is not searched) ever holds it whole.
          search() {
            find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -print0 2>/dev/null |
              xargs -0 grep -lF -- "$1" 2>/dev/null | wc -l | tr -d ' '
          }
          echo "host secret in $(search "$HOST_A$HOST_B") files"
          echo "untracked secret in $(search "$UNTRACKED_A$UNTRACKED_B") files"
          echo "committed token in $(search "$COMMITTED_A$COMMITTED_B") files"
"#,
    )
    .expect("write");
    fn half(s: &str) -> (&str, &str) {
        s.split_at(s.len() / 2)
    }
    let (host_a, host_b) = half(&host_secret);
    let (untracked_a, untracked_b) = half(&untracked_secret);
    let (committed_a, committed_b) = half(&committed);
    let envs = [
        format!("HOST_FILE={}", host_file.display()),
        format!("HOST_A={host_a}"),
        format!("HOST_B={host_b}"),
        format!("UNTRACKED_A={untracked_a}"),
        format!("UNTRACKED_B={untracked_b}"),
        format!("COMMITTED_A={committed_a}"),
        format!("COMMITTED_B={committed_b}"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for env in &envs {
        args.extend(["--env", env.as_str()]);
    }
    let run = repo.run_workflow("probe.yml", &args);
    run.assert_code(0);
    assert_eq!(
        run.log("j", "by path"),
        [
            "missing host-secret.txt",
            "missing untracked.txt",
            "exists committed.txt"
        ]
    );
    assert_eq!(
        run.log("j", "by content"),
        [
            "host secret in 0 files",
            "untracked secret in 0 files",
            "committed token in 1 files"
        ]
    );
}

/// After several runs that end in different ways (success, a failed step,
/// a timed-out step; both images), nothing is left: no QEMU or passt
/// process naming this test's state directory, no VM directory, no disk
/// overlay. While a run is in progress the same checks do see its VM, so
/// they are not blind.
#[test]
fn runs_leave_no_process_overlay_or_state_directory() {
    let Some(repo) = qemu_repo("runs_leave_no_process_overlay_or_state_directory") else {
        return;
    };
    let state = repo.home().join("qemu-vms");
    let workflow = |name: &str, steps: &str| {
        std::fs::write(
            repo.root().join(name),
            format!("on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n{steps}"),
        )
        .expect("write");
    };
    workflow("ok.yml", "      - run: echo fine\n");
    workflow("fails.yml", "      - run: exit 3\n");
    workflow(
        "times-out.yml",
        "      - timeout-minutes: ${{ 0.02 }}\n        run: sleep 60\n",
    );
    let gate = Gate::new();
    workflow(
        "gated.yml",
        &format!(
            "      - name: gated\n        run: |\n{}          echo passed the gate\n",
            gate.wait_script(10)
        ),
    );

    // The control: a live run's VM is visible to these checks.
    // Cold boot: no background snapshot build, so the run's VM is
    // the only one in the state directory.
    let mut live = Background::start(&repo, "gated.yml", &["--image", "debian", "--no-snapshot"]);
    let mut conn = gate.arrived(&mut live.child);
    let dirs = repo.vm_dirs_left();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        dirs[0].join("overlay.qcow2").is_file(),
        "no overlay in {dirs:?}"
    );
    let mut programs: Vec<String> = processes_mentioning(&state)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    programs.sort();
    assert!(
        programs.len() == 2
            && programs[0].starts_with("passt")
            && programs[1].starts_with("qemu-system"),
        "{programs:?}"
    );
    conn.write_all(b"go\n").expect("open the gate");
    let gated = live.finish();
    gated.assert_code(0);
    assert_eq!(gated.log("j", "gated"), ["passed the gate"]);

    let mut vms = Vec::new();
    for (name, image, code) in [
        ("ok.yml", "minimal", 0),
        ("fails.yml", "debian", 1),
        ("times-out.yml", "debian", 1),
        ("ok.yml", "debian", 0),
    ] {
        // `run_workflow` also checks that no VM directory is left.
        let run = repo.run_workflow(name, &["--image", image]);
        run.assert_code(code);
        vms.push(run.json["vms"][0].as_str().expect("vm id").to_string());
        let left = processes_mentioning(&state);
        assert!(left.is_empty(), "after {name} on {image}: {left:?}");
    }
    let distinct: std::collections::BTreeSet<&String> = vms.iter().collect();
    assert_eq!(distinct.len(), vms.len(), "a VM id was reused: {vms:?}");
    assert!(repo.vm_dirs_left().is_empty());
    assert_eq!(files_named(&repo.home(), ".qcow2"), Vec::<PathBuf>::new());
    assert_eq!(
        processes_mentioning(&repo.home()),
        Vec::<(u32, String)>::new()
    );
}

/// `kill -9` of `kiln run` while a step runs in a `debian` VM leaves that
/// VM's QEMU and passt running and its directory (with the disk overlay)
/// on disk; the next `kiln run` start reaps them — processes killed,
/// directory gone — and says so.
#[test]
fn kill_9_mid_run_then_the_next_start_reaps_the_orphan() {
    let Some(repo) = qemu_repo("kill_9_mid_run_then_the_next_start_reaps_the_orphan") else {
        return;
    };
    let gate = Gate::new();
    std::fs::write(
        repo.root().join("slow.yml"),
        format!(
            "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - run: |\n{}          sleep 600\n",
            gate.wait_script(10)
        ),
    )
    .expect("write");
    // Cold boot: no background snapshot build, so the run's VM is
    // the only one in the state directory.
    let mut doomed = Background::start(&repo, "slow.yml", &["--image", "debian", "--no-snapshot"]);
    let _conn = gate.arrived(&mut doomed.child);
    let dirs = repo.vm_dirs_left();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let orphan_dir = dirs[0].clone();
    assert!(orphan_dir.join("overlay.qcow2").is_file());
    let processes = processes_mentioning(&orphan_dir);
    let names: Vec<&str> = processes.iter().map(|(_, p)| p.as_str()).collect();
    assert!(
        names.iter().any(|p| p.starts_with("qemu-system"))
            && names.iter().any(|p| p.starts_with("passt")),
        "{processes:?}"
    );
    let pids: Vec<u32> = processes.iter().map(|(pid, _)| *pid).collect();

    doomed.child.kill().expect("kill -9 kiln"); // SIGKILL
    let killed = doomed.finish();
    assert_eq!(killed.code, -1, "kiln was not killed by a signal");
    // Nothing cleaned up after kiln: the VM outlives it (QEMU and passt run
    // in their own process groups), so what removes it below is the reaping.
    assert!(pids.iter().all(|&p| alive(p)), "{processes:?}");
    assert!(orphan_dir.join("overlay.qcow2").is_file());

    let next = repo.run_example("hello.yml", &[]);
    next.assert_code(0);
    assert!(
        next.stderr
            .contains("reaped 1 VM(s) left by a previous kiln process"),
        "{}",
        next.stderr
    );
    let orphan_name = orphan_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let logged = next
        .stderr
        .lines()
        .find(|l| l.contains("reaped orphaned qemu vm") && l.contains(&orphan_name))
        .unwrap_or_else(|| panic!("no log line naming {orphan_name}:\n{}", next.stderr));
    for pid in &pids {
        assert!(logged.contains(&pid.to_string()), "{pid} not in {logged:?}");
    }
    assert_eq!(still_running(&pids), Vec::<u32>::new(), "{processes:?}");
    assert!(!orphan_dir.exists(), "{} left", orphan_dir.display());
    assert!(repo.vm_dirs_left().is_empty());
    assert_eq!(
        processes_mentioning(&repo.home()),
        Vec::<(u32, String)>::new()
    );
}

/// `examples/guest-features.yml` on the `debian` image (the `minimal` one
/// is covered by tests/examples.rs with `KILN_TEST_BACKEND=qemu`).
#[test]
fn guest_features_on_the_debian_image() {
    let Some(repo) = qemu_repo("guest_features_on_the_debian_image") else {
        return;
    };
    let run = repo.run_example("guest-features.yml", &["--image", "debian"]);
    support::assert_guest_features(&run, &repo.head_sha());
}

/// Ctrl-C (SIGINT to `kiln run`) while a step runs in the VM: the step is
/// interrupted there, `always()` steps still run in the same VM, the run
/// ends cancelled (exit 1), and the VM is gone.
#[test]
fn ctrl_c_cancels_a_run_in_its_vm() {
    let Some(repo) = qemu_repo("ctrl_c_cancels_a_run_in_its_vm") else {
        return;
    };
    let gate = Gate::new();
    std::fs::write(
        repo.root().join("slow.yml"),
        format!(
            "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - name: slow\n        run: |\n\
             {}          echo not-reached\n      \
             - name: cleanup\n        if: always()\n        run: echo \"cleanup ran, job ${{{{ job.status }}}}\"\n      \
             - name: skipped\n        run: echo must-not-run\n",
            gate.wait_script(10)
        ),
    )
    .expect("write");
    let mut run = Background::start(&repo, "slow.yml", &[]);
    let _conn = gate.arrived(&mut run.child);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(run.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let run = run.finish();
    run.assert_code(1);
    assert_eq!(run.conclusion(), "cancelled");
    assert_eq!(run.step_status("j", "slow").1, "cancelled");
    assert_eq!(run.log("j", "cleanup"), ["cleanup ran, job cancelled"]);
    assert_eq!(run.step_status("j", "skipped"), ("skipped", "skipped"));
    run.assert_absent("not-reached");
    run.assert_absent("must-not-run");
    assert!(repo.vm_dirs_left().is_empty(), "{:?}", repo.vm_dirs_left());
    assert_eq!(
        processes_mentioning(&repo.home()),
        Vec::<(u32, String)>::new()
    );
}
