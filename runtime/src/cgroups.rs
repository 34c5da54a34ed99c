//! cgroups for containers, on v1, v2 and hybrid hosts (the layout is detected
//! per controller: this machine has v1 controllers and a v2 mount with only
//! hugetlb). `Cgroups` is what callers use; `open` gives the `V1` or `V2`
//! implementation for this host's layout.
//!
//! Where a hierarchy is mounted comes from /proc/self/mountinfo, which
//! controllers exist from /proc/cgroups. A relative cgroup path (`berth/<id>`)
//! is placed, on v1, under this process's own cgroup in each hierarchy (as
//! runc does), so containers stay inside whatever limits the daemon runs
//! under; on a pure v2 host it is placed under the mount's root, because v2
//! forbids enabling controllers for children of a cgroup that holds
//! processes. An absolute path is taken from each hierarchy's root.
//!
//! This module never touches a cgroup it did not create, except for the
//! `cpuset` and `subtree_control` set-up of the intermediate directories it
//! makes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceType, LinuxResources};

use super::RuntimeError;

/// Resource usage read from a container's cgroup (`docker stats`).
#[derive(Clone, Debug, Default)]
pub struct CgroupStats {
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_cache: u64,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
}

/// One container's cgroup, whatever the host's layout (youki's
/// `CgroupManager` is the model). `open` picks the implementation: `V2` on a
/// host with only the unified hierarchy, `V1` otherwise — which also covers
/// hybrid hosts, where the container is placed in the v2 mount as well but
/// limited through the v1 controllers.
pub trait Cgroups: Send + Sync {
    /// The cgroup's directory in every hierarchy it spans (whether or not it exists yet).
    fn paths(&self) -> Vec<PathBuf>;
    /// Creates the cgroup and applies `resources`; on error nothing it made is left.
    fn create(&self, resources: &LinuxResources) -> Result<(), RuntimeError>;
    /// Moves `pid` into the cgroup.
    fn add_task(&self, pid: i32) -> Result<(), RuntimeError>;
    /// `docker update`: applies new limits to a live cgroup.
    fn update(&self, resources: &LinuxResources) -> Result<(), RuntimeError>;
    /// `docker pause`: freezes every process.
    fn freeze(&self) -> Result<(), RuntimeError>;
    /// `docker unpause`.
    fn thaw(&self) -> Result<(), RuntimeError>;
    /// Current usage (`docker stats`).
    fn stats(&self) -> Result<CgroupStats, RuntimeError>;
    /// Whether the kernel OOM-killed a process of this cgroup.
    fn oom_killed(&self) -> Result<bool, RuntimeError>;
    /// PIDs of every process in the cgroup (`docker top`).
    fn pids(&self) -> Result<Vec<i32>, RuntimeError>;
    /// Removes the cgroup from every hierarchy (it must be empty).
    fn destroy(&self) -> Result<(), RuntimeError>;
}

/// The cgroup at `path` (`<parent>/<id>`, relative to where this process
/// sits in each hierarchy, or absolute from each hierarchy's root) on this
/// host's layout. Nothing is created yet.
pub fn open(path: &str) -> Result<Box<dyn Cgroups>, RuntimeError> {
    on_layout(path, hierarchies()?)
}

/// `open` on the hierarchies `hs`.
fn on_layout(path: &str, hs: Vec<Hierarchy>) -> Result<Box<dyn Cgroups>, RuntimeError> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
        return Err(RuntimeError::InvalidConfig(format!("invalid cgroup path {path:?}")));
    }
    let pure = pure_v2(&hs);
    let mut dirs: Vec<Dir> = hs
        .into_iter()
        .map(|h| {
            let start = if path.starts_with('/') { h.mountpoint.clone() } else { h.base.clone() };
            Dir { path: start.join(rel), hierarchy: h }
        })
        .collect();
    if pure && dirs.len() == 1 {
        return Ok(Box::new(V2 { dir: dirs.remove(0) }));
    }
    Ok(Box::new(V1 { dirs }))
}

/// A mounted hierarchy and this process's place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    mountpoint: PathBuf,
    /// v1 controllers (and `name=...`) of the mount; empty for v2.
    controllers: Vec<String>,
    v2: bool,
    /// Where relative paths start: this process's cgroup (v1) or the root (v2).
    base: PathBuf,
}

/// The container's directory in one hierarchy.
#[derive(Clone, Debug)]
struct Dir {
    path: PathBuf,
    hierarchy: Hierarchy,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        if self.hierarchy.v2 {
            // On v2 a cgroup lists the controllers its parent hands down.
            read_trim(&self.path.join("cgroup.controllers")).map(|s| s.split_whitespace().any(|c| c == controller)).unwrap_or(false)
        } else {
            self.hierarchy.controllers.iter().any(|c| c == controller)
        }
    }
}

fn sys(step: impl Into<String>, source: io::Error) -> RuntimeError {
    RuntimeError::Sys { step: step.into(), source }
}

fn read_trim(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

fn write_file(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(|e| sys(format!("writing {value:?} to {}", path.display()), e))
}

/// Controllers the kernel has and enables (/proc/cgroups).
fn kernel_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

/// Unescapes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the hierarchies from mountinfo and the process's cgroup file.
fn parse_hierarchies(mountinfo: &str, self_cgroup: &str, known: &[String]) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mountpoint, fstype, opts) = (unescape(pre[3]), PathBuf::from(unescape(pre[4])), post[0], post[2]);
        let (v2, controllers) = match fstype {
            "cgroup2" => (true, Vec::new()),
            "cgroup" => {
                let c: Vec<String> = opts
                    .split(',')
                    .filter(|o| known.iter().any(|k| k == o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if c.is_empty() {
                    continue;
                }
                (false, c)
            }
            _ => continue,
        };
        // The same hierarchy may be mounted twice; the first mount wins.
        if out.iter().any(|h| h.v2 == v2 && h.controllers == controllers) {
            continue;
        }
        // This process's cgroup in the hierarchy, relative to the mount's root.
        let own = self_cgroup.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            let matches = if v2 {
                ctl.is_empty()
            } else {
                let mut a: Vec<&str> = ctl.split(',').collect();
                let mut b: Vec<&str> = controllers.iter().map(String::as_str).collect();
                a.sort_unstable();
                b.sort_unstable();
                a == b
            };
            matches.then(|| path.to_string())
        });
        let base = if v2 {
            mountpoint.clone()
        } else {
            let own = own.unwrap_or_else(|| "/".into());
            let rel = Path::new(&own).strip_prefix(&root).unwrap_or(Path::new(""));
            mountpoint.join(rel)
        };
        out.push(Hierarchy { mountpoint, controllers, v2, base });
    }
    out
}

fn hierarchies() -> Result<Vec<Hierarchy>, RuntimeError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| sys("reading /proc/self/mountinfo", e))?;
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| sys("reading /proc/self/cgroup", e))?;
    let known = kernel_controllers(&std::fs::read_to_string("/proc/cgroups").unwrap_or_default());
    let hs = parse_hierarchies(&mountinfo, &self_cgroup, &known);
    if hs.is_empty() {
        return Err(RuntimeError::InvalidConfig("no cgroup hierarchy is mounted (see /proc/self/mountinfo)".into()));
    }
    Ok(hs)
}

/// A process's cgroup directories, for binding a container's own cgroups
/// into its /sys/fs/cgroup: `(subdirectory name, host directory)`, the names
/// being the mountpoints' last components; on a pure v2 host one entry with
/// an empty name. `proc_entry` is a PID or `self`.
pub fn process_dirs(proc_entry: &str) -> Result<Vec<(String, PathBuf)>, RuntimeError> {
    let self_cgroup = std::fs::read_to_string(format!("/proc/{proc_entry}/cgroup"))
        .map_err(|e| sys(format!("reading /proc/{proc_entry}/cgroup"), e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| sys("reading /proc/self/mountinfo", e))?;
    let known = kernel_controllers(&std::fs::read_to_string("/proc/cgroups").unwrap_or_default());
    let hs = parse_hierarchies(&mountinfo, &self_cgroup, &known);
    let pure = pure_v2(&hs);
    let mut out = Vec::new();
    for h in hs {
        let name = if pure { String::new() } else { h.mountpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default() };
        let dir = if h.v2 {
            // The v2 base is the root: find the process's own path.
            let own = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
            h.mountpoint.join(own.trim_start_matches('/'))
        } else {
            h.base.clone()
        };
        out.push((name, dir));
    }
    Ok(out)
}

/// Starts, on a background thread, a no-op cgroup move: this process into
/// the cgroup it is already in. Why: every write to `cgroup.procs` takes the
/// kernel's global `cgroup_threadgroup_rwsem` for writing, and when no such
/// write happened recently that first waits for an RCU grace period (measured
/// 7-22 ms on a 2-core host, most of a container start). The rwsem stays in
/// its fast mode for about a grace period after the last writer, so a write
/// started now, while the caller spawns the shim, pays that wait in parallel
/// and the container's real move right after is cheap (~1.5 ms measured).
/// Best effort: it changes no cgroup membership, and a failure only costs the
/// wait it tried to hide.
pub fn prime_attach() {
    let spawned = std::thread::Builder::new().name("cgroup-prime".into()).stack_size(64 * 1024).spawn(|| {
        let dir = match process_dirs("self") {
            Ok(dirs) => dirs.into_iter().next().map(|(_, d)| d),
            Err(e) => {
                tracing::debug!(error = %e, "priming cgroup attach: finding our cgroup");
                None
            }
        };
        if let Some(dir) = dir {
            if let Err(e) = write_file(&dir.join("cgroup.procs"), &std::process::id().to_string()) {
                tracing::debug!(error = %e, "priming cgroup attach");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "priming cgroup attach: starting the thread");
    }
}

/// Moves `pid` into the same cgroups as `like` (for `exec`), in every hierarchy.
pub fn join_cgroups_of(like: i32, pid: i32) -> Result<(), RuntimeError> {
    for (_, dir) in process_dirs(&like.to_string())? {
        write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

/// Whether this host's cgroups are a single v2 hierarchy.
fn pure_v2(hs: &[Hierarchy]) -> bool {
    hs.iter().all(|h| h.v2)
}

/// Creates `path` and every missing parent below `stop`, preparing each new
/// directory as the hierarchy needs (cpuset values on v1, controllers on v2).
/// Returns the directories it created, deepest last.
fn make_dirs(h: &Hierarchy, path: &Path, pure_v2: bool) -> Result<Vec<PathBuf>, RuntimeError> {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        match p.parent() {
            Some(parent) if parent.starts_with(&h.mountpoint) => p = parent.to_path_buf(),
            _ => break,
        }
    }
    missing.reverse();
    let mut created = Vec::new();
    for dir in &missing {
        if pure_v2 {
            // Hand every controller the parent has down to the new child.
            if let Some(parent) = dir.parent() {
                enable_controllers(parent)?;
            }
        }
        match std::fs::create_dir(dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                undo_dirs(&created);
                return Err(sys(format!("creating cgroup {}", dir.display()), e));
            }
        }
    }
    if !h.v2 && h.controllers.iter().any(|c| c == "cpuset") {
        // A new v1 cpuset starts empty and refuses tasks: copy the parent's,
        // top down. Every directory of the path is checked, not only the ones
        // created here: a concurrent start may have created a parent and not
        // yet filled it when this one copied from it.
        let chain: Vec<&Path> = path.ancestors().take_while(|p| *p != h.mountpoint && p.starts_with(&h.mountpoint)).collect();
        for dir in chain.into_iter().rev() {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if !read_trim(&dir.join(file)).unwrap_or_default().is_empty() {
                    continue;
                }
                let parent = dir.parent().map(|p| read_trim(&p.join(file)).unwrap_or_default()).unwrap_or_default();
                if let Err(e) = write_file(&dir.join(file), &parent) {
                    undo_dirs(&created);
                    return Err(e);
                }
            }
        }
    }
    Ok(created)
}

fn enable_controllers(dir: &Path) -> Result<(), RuntimeError> {
    let available = read_trim(&dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = read_trim(&dir.join("cgroup.subtree_control")).unwrap_or_default();
    let wanted: Vec<String> = available
        .split_whitespace()
        .filter(|c| ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"].contains(c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write_file(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

fn undo_dirs(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Docker's cpu.shares to cgroup v2's cpu.weight (the conversion runc and crun use).
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// Creates every directory of `dirs` (see `make_dirs`), then `apply`s;
/// undoes what it created when either fails.
fn create_dirs(dirs: &[Dir], pure_v2: bool, apply: impl FnOnce() -> Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    let mut created = Vec::new();
    for d in dirs {
        // A parent removed concurrently (its last child went away) makes
        // create_dir fail with ENOENT: build the chain again.
        let mut attempts = 0;
        loop {
            match make_dirs(&d.hierarchy, &d.path, pure_v2) {
                Ok(c) => {
                    created.extend(c);
                    break;
                }
                Err(RuntimeError::Sys { ref source, .. }) if source.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                    attempts += 1;
                }
                Err(e) => {
                    undo_dirs(&created);
                    return Err(e);
                }
            }
        }
    }
    if let Err(e) = apply() {
        undo_dirs(&created);
        return Err(e);
    }
    Ok(())
}

fn add_task_to(dirs: &[Dir], pid: i32) -> Result<(), RuntimeError> {
    for d in dirs {
        write_file(&d.path.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

fn pids_in(dir: &Dir) -> Result<Vec<i32>, RuntimeError> {
    let procs = dir.path.join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(|e| sys(format!("reading {}", procs.display()), e))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn destroy_dirs(dirs: &[Dir]) -> Result<(), RuntimeError> {
    let mut first_err = None;
    for d in dirs {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::remove_dir(&d.path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                // EBUSY while exiting tasks drain out of the cgroup.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    first_err.get_or_insert_with(|| sys(format!("removing cgroup {}", d.path.display()), e));
                    break;
                }
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// How a hierarchy freezes a cgroup: the file written, the value for
/// frozen and thawed, and where the state shows.
struct Freezer {
    file: &'static str,
    values: (&'static str, &'static str),
    state_file: &'static str,
    states: (&'static str, &'static str),
}

/// v1's freezer controller: `freezer.state` goes FREEZING -> FROZEN.
const FREEZER_V1: Freezer =
    Freezer { file: "freezer.state", values: ("FROZEN", "THAWED"), state_file: "freezer.state", states: ("FROZEN", "THAWED") };
/// v2's core freezer: `cgroup.events` says `frozen 1`.
const FREEZER_V2: Freezer =
    Freezer { file: "cgroup.freeze", values: ("1", "0"), state_file: "cgroup.events", states: ("frozen 1", "frozen 0") };

/// Freezes or thaws `dir` with `f`, waiting (up to 10 s) until the kernel says it is done.
fn set_frozen(dir: &Path, f: &Freezer, frozen: bool) -> Result<(), RuntimeError> {
    let (value, want) = if frozen { (f.values.0, f.states.0) } else { (f.values.1, f.states.1) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // v1 FREEZING can stall while tasks are in uninterruptible sleep; writing again retries.
        write_file(&dir.join(f.file), value)?;
        let state = read_trim(&dir.join(f.state_file)).map_err(|e| sys(format!("reading {}", f.state_file), e))?;
        if state.lines().any(|l| l == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            if frozen {
                // Leave it running rather than half-frozen.
                let _ = write_file(&dir.join(f.file), f.values.1);
            }
            return Err(sys(
                format!("{} {}: still {state:?} after 10s", if frozen { "freezing" } else { "thawing" }, dir.display()),
                io::Error::from(io::ErrorKind::TimedOut),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_num(p: PathBuf) -> Option<u64> {
    read_trim(&p).ok().and_then(|s| s.parse::<u64>().ok())
}

/// The value of `key` in a flat-keyed file (`cpu.stat`, `memory.stat`).
fn read_key(p: PathBuf, key: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The count of `oom_kill` events in `file` (`memory.oom_control`, `memory.events`).
fn oom_kills(file: PathBuf) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse::<u64>().ok())
}

/// A cgroup on a v1 host: one directory per controller hierarchy, and on a
/// hybrid host one in the v2 mount too, for membership only (the v2 mount of
/// a hybrid host has no controller berth limits through).
struct V1 {
    dirs: Vec<Dir>,
}

impl V1 {
    fn apply(&self, res: &LinuxResources, creating: bool) -> Result<(), RuntimeError> {
        for d in self.dirs.iter().filter(|d| !d.hierarchy.v2) {
            apply_v1(d, res, creating)?;
        }
        Ok(())
    }

    fn controller(&self, name: &str) -> Option<&Dir> {
        self.dirs.iter().find(|d| !d.hierarchy.v2 && d.has(name))
    }

    /// The freezer: v1's controller, else (hybrid hosts without it) v2's.
    fn freezer(&self) -> Result<(&Dir, &'static Freezer), RuntimeError> {
        if let Some(d) = self.controller("freezer") {
            return Ok((d, &FREEZER_V1));
        }
        self.dirs
            .iter()
            .find(|d| d.hierarchy.v2 && d.path.join(FREEZER_V2.file).exists())
            .map(|d| (d, &FREEZER_V2))
            .ok_or_else(|| RuntimeError::InvalidConfig("no freezer: neither a v1 freezer nor cgroup.freeze is available".into()))
    }
}

impl Cgroups for V1 {
    fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    fn create(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        create_dirs(&self.dirs, false, || self.apply(resources, true))
    }

    fn add_task(&self, pid: i32) -> Result<(), RuntimeError> {
        add_task_to(&self.dirs, pid)
    }

    fn update(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        self.apply(resources, false)
    }

    fn freeze(&self) -> Result<(), RuntimeError> {
        let (d, f) = self.freezer()?;
        set_frozen(&d.path, f, true)
    }

    fn thaw(&self) -> Result<(), RuntimeError> {
        let (d, f) = self.freezer()?;
        set_frozen(&d.path, f, false)
    }

    fn stats(&self) -> Result<CgroupStats, RuntimeError> {
        let mut st = CgroupStats::default();
        if let Some(d) = self.controller("cpuacct") {
            let p = &d.path;
            st.cpu_usage_ns = read_num(p.join("cpuacct.usage")).unwrap_or(0);
            // cpuacct.stat counts USER_HZ ticks.
            // SAFETY: sysconf has no memory-safety preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            st.cpu_user_ns = read_key(p.join("cpuacct.stat"), "user").unwrap_or(0) * 1_000_000_000 / hz;
            st.cpu_system_ns = read_key(p.join("cpuacct.stat"), "system").unwrap_or(0) * 1_000_000_000 / hz;
        }
        if let Some(d) = self.controller("memory") {
            let p = &d.path;
            st.memory_usage = read_num(p.join("memory.usage_in_bytes")).unwrap_or(0);
            st.memory_limit = read_num(p.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
            st.memory_cache =
                read_key(p.join("memory.stat"), "total_cache").or_else(|| read_key(p.join("memory.stat"), "cache")).unwrap_or(0);
        }
        if let Some(d) = self.controller("pids") {
            st.pids_current = read_num(d.path.join("pids.current")).unwrap_or(0);
            st.pids_limit = read_num(d.path.join("pids.max"));
        }
        Ok(st)
    }

    fn oom_killed(&self) -> Result<bool, RuntimeError> {
        Ok(self.controller("memory").and_then(|d| oom_kills(d.path.join("memory.oom_control"))).is_some_and(|k| k > 0))
    }

    fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        // Prefer a hierarchy every container process is sure to be in.
        let dir = self
            .controller("pids")
            .or_else(|| self.controller("memory"))
            .or_else(|| self.dirs.first())
            .ok_or_else(|| RuntimeError::InvalidConfig("no cgroup hierarchy".into()))?;
        pids_in(dir)
    }

    fn destroy(&self) -> Result<(), RuntimeError> {
        destroy_dirs(&self.dirs)
    }
}

/// A cgroup on a host with only the unified (v2) hierarchy.
struct V2 {
    dir: Dir,
}

impl Cgroups for V2 {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.path.clone()]
    }

    fn create(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        create_dirs(std::slice::from_ref(&self.dir), true, || apply_v2(&self.dir, resources))
    }

    fn add_task(&self, pid: i32) -> Result<(), RuntimeError> {
        add_task_to(std::slice::from_ref(&self.dir), pid)
    }

    fn update(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        apply_v2(&self.dir, resources)
    }

    fn freeze(&self) -> Result<(), RuntimeError> {
        set_frozen(&self.dir.path, &FREEZER_V2, true)
    }

    fn thaw(&self) -> Result<(), RuntimeError> {
        set_frozen(&self.dir.path, &FREEZER_V2, false)
    }

    fn stats(&self) -> Result<CgroupStats, RuntimeError> {
        let p = &self.dir.path;
        Ok(CgroupStats {
            cpu_usage_ns: read_key(p.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            cpu_user_ns: read_key(p.join("cpu.stat"), "user_usec").unwrap_or(0) * 1000,
            cpu_system_ns: read_key(p.join("cpu.stat"), "system_usec").unwrap_or(0) * 1000,
            memory_usage: read_num(p.join("memory.current")).unwrap_or(0),
            memory_limit: read_num(p.join("memory.max")).unwrap_or(u64::MAX),
            memory_cache: read_key(p.join("memory.stat"), "file").unwrap_or(0),
            pids_current: read_num(p.join("pids.current")).unwrap_or(0),
            pids_limit: read_num(p.join("pids.max")),
        })
    }

    fn oom_killed(&self) -> Result<bool, RuntimeError> {
        Ok(oom_kills(self.dir.path.join("memory.events")).is_some_and(|k| k > 0))
    }

    fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        pids_in(&self.dir)
    }

    fn destroy(&self) -> Result<(), RuntimeError> {
        destroy_dirs(std::slice::from_ref(&self.dir))
    }
}

fn apply_v1(d: &Dir, res: &LinuxResources, creating: bool) -> Result<(), RuntimeError> {
    let p = &d.path;
    if d.has("memory") {
        if let Some(mem) = res.memory() {
            if let Some(limit) = mem.limit() {
                let memsw = p.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                if !has_memsw {
                    tracing::debug!(cgroup = %p.display(), "no swap accounting (memory.memsw.limit_in_bytes missing): swap limit not applied");
                }
                let swap = mem.swap().filter(|_| has_memsw);
                // memsw must stay >= limit: when raising, memsw goes first.
                let current_limit = read_trim(&p.join("memory.limit_in_bytes")).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(i64::MAX);
                let raising = limit > current_limit || limit == -1;
                if raising {
                    if let Some(s) = swap {
                        write_file(&memsw, &s.to_string())?;
                    }
                    write_file(&p.join("memory.limit_in_bytes"), &limit.to_string())?;
                } else {
                    write_file(&p.join("memory.limit_in_bytes"), &limit.to_string())?;
                    if let Some(s) = swap {
                        write_file(&memsw, &s.to_string())?;
                    }
                }
            }
            if let Some(r) = mem.reservation() {
                write_file(&p.join("memory.soft_limit_in_bytes"), &r.to_string())?;
            }
            if let Some(s) = mem.swappiness() {
                write_file(&p.join("memory.swappiness"), &s.to_string())?;
            }
            if mem.disable_oom_killer() == Some(true) {
                write_file(&p.join("memory.oom_control"), "1")?;
            }
        }
    }
    if let Some(cpu) = res.cpu() {
        if d.has("cpu") {
            if let Some(shares) = cpu.shares() {
                write_file(&p.join("cpu.shares"), &shares.to_string())?;
            }
            if let Some(period) = cpu.period() {
                write_file(&p.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = cpu.quota() {
                write_file(&p.join("cpu.cfs_quota_us"), &(if quota <= 0 { -1 } else { quota }).to_string())?;
            }
        }
        if d.has("cpuset") {
            if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                write_file(&p.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                write_file(&p.join("cpuset.mems"), mems)?;
            }
        }
    }
    if d.has("pids") {
        if let Some(pids) = res.pids() {
            let v = if pids.limit() > 0 { pids.limit().to_string() } else { "max".to_string() };
            write_file(&p.join("pids.max"), &v)?;
        }
    }
    if d.has("devices") && creating {
        for rule in res.devices().iter().flatten() {
            let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
            let access = rule.access().clone().unwrap_or_else(|| "rwm".to_string());
            let line = if typ == LinuxDeviceType::A && rule.major().is_none() && rule.minor().is_none() {
                "a".to_string()
            } else {
                let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
                format!("{} {}:{} {}", typ.as_str(), n(rule.major()), n(rule.minor()), access)
            };
            let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
            write_file(&p.join(file), &line)?;
        }
    }
    Ok(())
}

fn apply_v2(d: &Dir, res: &LinuxResources) -> Result<(), RuntimeError> {
    let p = &d.path;
    let limit_str = |v: i64| if v < 0 { "max".to_string() } else { v.to_string() };
    if let Some(mem) = res.memory() {
        if let Some(limit) = mem.limit() {
            write_file(&p.join("memory.max"), &limit_str(limit))?;
            if let Some(swap) = mem.swap() {
                // OCI's swap is memory + swap; v2's memory.swap.max is swap alone.
                let v = if swap < 0 || limit < 0 { "max".to_string() } else { (swap - limit).max(0).to_string() };
                let f = p.join("memory.swap.max");
                if f.exists() {
                    write_file(&f, &v)?;
                } else {
                    tracing::debug!(cgroup = %p.display(), "no memory.swap.max: swap limit not applied");
                }
            }
        }
        if let Some(r) = mem.reservation() {
            write_file(&p.join("memory.low"), &r.to_string())?;
        }
        if mem.disable_oom_killer() == Some(true) {
            tracing::debug!("cgroup v2 cannot disable the OOM killer; --oom-kill-disable ignored");
        }
    }
    if let Some(cpu) = res.cpu() {
        if let Some(shares) = cpu.shares() {
            write_file(&p.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            let quota = cpu.quota().filter(|q| *q > 0).map_or("max".to_string(), |q| q.to_string());
            let period = cpu.period().unwrap_or(100_000);
            write_file(&p.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            write_file(&p.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            write_file(&p.join("cpuset.mems"), mems)?;
        }
    }
    if let Some(pids) = res.pids() {
        write_file(&p.join("pids.max"), &limit_str(if pids.limit() > 0 { pids.limit() } else { -1 }))?;
    }
    if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        // v2 device control needs an eBPF program; berth does not load one.
        tracing::debug!(cgroup = %p.display(), "cgroup v2: device rules are not enforced");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const SELF: &str = "9:name=systemd:/\n4:memory:/session/abc\n3:cpuset:/\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_layout_is_detected_per_controller() {
        let known: Vec<String> = ["cpu", "cpuset", "memory", "hugetlb"].iter().map(|s| s.to_string()).collect();
        let hs = parse_hierarchies(HYBRID, SELF, &known);
        assert_eq!(hs.len(), 5);
        let mem = hs.iter().find(|h| h.controllers == ["memory"]).expect("memory");
        assert_eq!(mem.base, PathBuf::from("/sys/fs/cgroup/memory/session/abc"));
        let cpu = hs.iter().find(|h| h.controllers == ["cpu"]).expect("cpu");
        assert_eq!(cpu.base, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert!(hs.iter().any(|h| h.controllers == ["name=systemd"]));
        let v2 = hs.iter().find(|h| h.v2).expect("v2");
        assert_eq!(v2.mountpoint, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!pure_v2(&hs));
    }

    #[test]
    fn pure_v2_and_escapes() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let hs = parse_hierarchies(mi, "0::/user.slice/x\n", &[]);
        assert_eq!(hs.len(), 1);
        assert!(pure_v2(&hs));
        assert_eq!(hs[0].base, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(kernel_controllers("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nrdma\t0\t1\t0\n"), vec!["cpu"]);
    }

    #[test]
    fn a_container_cgroup_spans_the_layout_it_is_opened_on() {
        let known: Vec<String> = ["cpu", "cpuset", "memory"].iter().map(|s| s.to_string()).collect();
        // Hybrid: one directory per v1 hierarchy under the daemon's own cgroup, and one in the v2 mount.
        let hybrid = on_layout("berth/abc", parse_hierarchies(HYBRID, SELF, &known)).expect("hybrid");
        let paths = hybrid.paths();
        assert_eq!(paths.len(), 5);
        assert!(paths.contains(&PathBuf::from("/sys/fs/cgroup/memory/session/abc/berth/abc")));
        assert!(paths.contains(&PathBuf::from("/sys/fs/cgroup/unified/berth/abc")));
        // Pure v2: one directory, from the mount's root.
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let v2 = on_layout("berth/abc", parse_hierarchies(mi, "0::/user.slice/x\n", &[])).expect("v2");
        assert_eq!(v2.paths(), vec![PathBuf::from("/sys/fs/cgroup/berth/abc")]);
        // An absolute path starts at each hierarchy's root.
        let abs = on_layout("/custom/abc", parse_hierarchies(HYBRID, SELF, &known)).expect("absolute");
        assert!(abs.paths().contains(&PathBuf::from("/sys/fs/cgroup/memory/custom/abc")));
        for bad in ["", "/", "berth/../x", "./x"] {
            let err = on_layout(bad, parse_hierarchies(mi, "0::/\n", &[])).err().expect(bad);
            assert!(err.to_string().contains("invalid cgroup path"), "{bad}: {err}");
        }
    }
}
