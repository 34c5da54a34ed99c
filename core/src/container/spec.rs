//! Builds the OCI runtime spec (`config.json`) of a container from Docker's
//! config, host config and the image's config, with Docker's defaults
//! (capabilities, masked and read-only paths, mounts, rlimits).
//!
//! Everything here is pure computation over the record (plus reads of the
//! host's limits and device list): no process is started and nothing is
//! mounted, so it is unit-tested without root.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use berth_model::container::ContainerRecord;
use berth_model::volume::MountPoint;
use berth_runtime::{caps, seccomp, RuntimeError};
use berth_runtime::oci::{ANNOTATION_GROUP_ADD, ANNOTATION_INIT, ANNOTATION_USER, DEFAULT_PATH};
use oci_spec::runtime::{
    Capability, Linux, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

use crate::network::NetnsMode;

/// Docker's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// Docker's default soft and hard `RLIMIT_NOFILE`.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// Paths Docker hides from a container that is not privileged.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in a container that is not privileged.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Everything `build` needs, gathered by the engine.
pub struct SpecInputs<'a> {
    pub record: &'a ContainerRecord,
    /// The image's config (defaults for env, cmd, user, workdir, stop signal).
    pub image_config: &'a oci_spec::image::ImageConfiguration,
    /// Where the shim mounts the container's root filesystem.
    pub rootfs: PathBuf,
    /// The container's directory holding `hostname`, `hosts`, `resolv.conf`.
    pub container_dir: PathBuf,
    pub netns: NetnsMode,
    /// cgroup parent path (`--cgroup-parent`, default `berth`).
    pub cgroup_parent: String,
    /// Volumes, binds and tmpfs mounts with their host sources, from
    /// `VolumeService::mount_container_volumes`, in the order they are mounted.
    pub volume_mounts: Vec<berth_model::volume::MountPoint>,
    /// Docker's `--link` variables (`ALIAS_NAME`, `ALIAS_PORT_...`), from
    /// `NetworkService::link_env`; the image's and the container's env override them.
    pub link_env: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConfig(msg.into())
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// `KEY=VALUE` list with `KEY` replaced in place or appended (Docker's ReplaceOrAppendEnvValues).
fn merge_env(env: &mut Vec<String>, more: &[String]) {
    for kv in more {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = kv.clone(),
            None => env.push(kv.clone()),
        }
    }
}

/// The process environment Docker gives a container.
fn environment(inputs: &SpecInputs<'_>, hostname: &str) -> Vec<String> {
    let cfg = &inputs.record.config;
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    if cfg.tty {
        env.push("TERM=xterm".to_string());
    }
    merge_env(&mut env, &inputs.link_env);
    if let Some(image_env) = inputs.image_config.config().as_ref().and_then(|c| c.env().clone()) {
        merge_env(&mut env, &image_env);
    }
    if let Some(container_env) = &cfg.env {
        merge_env(&mut env, container_env);
    }
    env
}

/// Capabilities after `--privileged`, `--cap-add` and `--cap-drop` (ALL allowed in both).
fn capabilities(inputs: &SpecInputs<'_>) -> Result<HashSet<Capability>, RuntimeError> {
    let hc = &inputs.record.host_config;
    if hc.privileged {
        return Ok(caps::available().into_iter().collect());
    }
    let parse_list = |list: &Option<Vec<String>>, flag: &str| -> Result<(bool, Vec<Capability>), RuntimeError> {
        let mut all = false;
        let mut out = Vec::new();
        for name in list.iter().flatten() {
            let bare = name.trim().to_ascii_uppercase();
            if bare == "ALL" || bare == "CAP_ALL" {
                all = true;
            } else {
                out.push(caps::parse(name).ok_or_else(|| invalid(format!("invalid {flag}: unknown capability: {name:?}")))?);
            }
        }
        Ok((all, out))
    };
    let (add_all, add) = parse_list(&hc.cap_add, "--cap-add")?;
    let (drop_all, drop) = parse_list(&hc.cap_drop, "--cap-drop")?;
    let mut set: HashSet<Capability> = caps::DOCKER_DEFAULT.iter().copied().collect();
    // Docker applies drops first, then adds: `--cap-drop ALL --cap-add X` keeps X.
    if drop_all {
        set.clear();
    }
    for c in &drop {
        set.remove(c);
    }
    if add_all {
        set.extend(caps::available());
    }
    set.extend(add);
    Ok(set)
}

/// What `--security-opt` asks for.
#[derive(Debug, Default)]
struct SecurityOpts {
    no_new_privileges: bool,
    /// `seccomp=unconfined`.
    seccomp_unconfined: bool,
    /// `seccomp=PROFILE`: the profile's JSON (the docker CLI sends the file's text).
    seccomp_profile: Option<String>,
}

/// Parses `--security-opt`; options berth cannot honour are refused rather than ignored.
fn security_opts(inputs: &SpecInputs<'_>) -> Result<SecurityOpts, RuntimeError> {
    let mut out = SecurityOpts::default();
    for opt in inputs.record.host_config.security_opt.iter().flatten() {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None) => out.no_new_privileges = true,
            ("no-new-privileges", Some(v)) => {
                out.no_new_privileges =
                    v.parse::<bool>().map_err(|_| invalid(format!("invalid --security-opt {opt:?}: {v:?} is not a boolean")))?
            }
            ("seccomp", Some("unconfined")) => out.seccomp_unconfined = true,
            ("seccomp", Some(profile)) if profile.trim_start().starts_with('{') => out.seccomp_profile = Some(profile.to_string()),
            ("seccomp", Some(path)) => {
                return Err(invalid(format!(
                    "invalid --security-opt seccomp={path}: the daemon takes the profile's JSON, not a path (the docker and berth CLIs read the file and send its contents)"
                )))
            }
            // There is no AppArmor or SELinux profile to turn off.
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            _ => return Err(invalid(format!("invalid --security-opt {opt:?}: not supported by berth"))),
        }
    }
    Ok(out)
}

/// The container's seccomp filter: none when privileged or `seccomp=unconfined`,
/// else the given profile or berth's default, resolved for its capabilities.
fn seccomp_filter(
    security: &SecurityOpts,
    privileged: bool,
    capabilities: &HashSet<Capability>,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, RuntimeError> {
    if privileged || security.seccomp_unconfined {
        return Ok(None);
    }
    let profile = match &security.seccomp_profile {
        Some(json) => seccomp::Profile::parse(json).map_err(invalid)?,
        None => seccomp::Profile::berth_default(),
    };
    Ok(Some(profile.to_oci(&seccomp::Target::here(capabilities))))
}

fn rlimit_type(name: &str) -> Option<(PosixRlimitType, libc::__rlimit_resource_t)> {
    Some(match name {
        "as" => (PosixRlimitType::RlimitAs, libc::RLIMIT_AS),
        "core" => (PosixRlimitType::RlimitCore, libc::RLIMIT_CORE),
        "cpu" => (PosixRlimitType::RlimitCpu, libc::RLIMIT_CPU),
        "data" => (PosixRlimitType::RlimitData, libc::RLIMIT_DATA),
        "fsize" => (PosixRlimitType::RlimitFsize, libc::RLIMIT_FSIZE),
        "locks" => (PosixRlimitType::RlimitLocks, libc::RLIMIT_LOCKS),
        "memlock" => (PosixRlimitType::RlimitMemlock, libc::RLIMIT_MEMLOCK),
        "msgqueue" => (PosixRlimitType::RlimitMsgqueue, libc::RLIMIT_MSGQUEUE),
        "nice" => (PosixRlimitType::RlimitNice, libc::RLIMIT_NICE),
        "nofile" => (PosixRlimitType::RlimitNofile, libc::RLIMIT_NOFILE),
        "nproc" => (PosixRlimitType::RlimitNproc, libc::RLIMIT_NPROC),
        "rss" => (PosixRlimitType::RlimitRss, libc::RLIMIT_RSS),
        "rtprio" => (PosixRlimitType::RlimitRtprio, libc::RLIMIT_RTPRIO),
        "rttime" => (PosixRlimitType::RlimitRttime, libc::RLIMIT_RTTIME),
        "sigpending" => (PosixRlimitType::RlimitSigpending, libc::RLIMIT_SIGPENDING),
        "stack" => (PosixRlimitType::RlimitStack, libc::RLIMIT_STACK),
        _ => return None,
    })
}

/// This process's hard limit for `resource` (what a child may be given
/// without CAP_SYS_RESOURCE).
fn host_hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid out pointer.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return u64::MAX;
    }
    lim.rlim_max
}

fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
    // Fields set through the builder: PosixRlimit has no setters. The builder
    // cannot fail (every field has a default).
    PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build().unwrap_or_default()
}

/// Docker's default rlimits plus `--ulimit`s. Defaults are clamped to what
/// this host allows; an explicit ulimit above it is refused.
fn rlimits(inputs: &SpecInputs<'_>) -> Result<Vec<PosixRlimit>, RuntimeError> {
    let may_raise = caps::have(Capability::SysResource);
    let mut out: Vec<PosixRlimit> = Vec::new();
    let mut explicit_nofile = false;
    for u in inputs.record.host_config.ulimits.iter().flatten() {
        let (typ, res) = rlimit_type(&u.name).ok_or_else(|| invalid(format!("invalid ulimit type: {}", u.name)))?;
        // Docker: -1 is unlimited.
        let conv = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
        let (soft, hard) = (conv(u.soft), conv(u.hard));
        if soft > hard {
            return Err(invalid(format!(
                "invalid ulimit {}: soft limit {} is greater than hard limit {}",
                u.name, u.soft, u.hard
            )));
        }
        let host = host_hard_limit(res);
        if hard > host && !may_raise {
            return Err(invalid(format!(
                "ulimit {}={}:{} exceeds the host's hard limit {} (raising it needs CAP_SYS_RESOURCE, which the daemon lacks)",
                u.name, u.soft, u.hard, host
            )));
        }
        if typ == PosixRlimitType::RlimitNofile {
            explicit_nofile = true;
        }
        out.retain(|r| r.typ() != typ);
        out.push(rlimit(typ, soft, hard));
    }
    if !explicit_nofile {
        let host = host_hard_limit(libc::RLIMIT_NOFILE);
        let mut n = DEFAULT_NOFILE;
        if n > host && !may_raise {
            tracing::debug!(default = n, host_hard = host, "clamping the default RLIMIT_NOFILE to the host's hard limit");
            n = host;
        }
        out.insert(0, rlimit(PosixRlimitType::RlimitNofile, n, n));
    }
    Ok(out)
}

/// Splits `uid[:gid]`; numbers only.
fn numeric_user(user: &str) -> (Option<u32>, Option<u32>) {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    (u.parse().ok(), g.and_then(|g| g.parse().ok()))
}

/// Docker's default device cgroup rules: deny all, then mknod anything and
/// use the standard nodes, ptys and tun.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |allow: bool, typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{A, B, C};
    vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"),   // null
        rule(true, C, Some(1), Some(8), "rwm"),   // random
        rule(true, C, Some(1), Some(7), "rwm"),   // full
        rule(true, C, Some(5), Some(0), "rwm"),   // tty
        rule(true, C, Some(1), Some(5), "rwm"),   // zero
        rule(true, C, Some(1), Some(9), "rwm"),   // urandom
        rule(true, C, Some(5), Some(1), "rwm"),   // console
        rule(true, C, Some(136), None, "rwm"),    // pts/*
        rule(true, C, Some(5), Some(2), "rwm"),   // ptmx
        rule(true, C, Some(10), Some(200), "rwm"), // net/tun
    ]
}

/// Every character and block device under the host's /dev (two levels), for `--privileged`.
fn host_devices() -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![(PathBuf::from("/dev"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
            let ft = md.file_type();
            // The container gets its own ptys and console.
            if path == Path::new("/dev/pts") || path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
                continue;
            }
            if ft.is_dir() && depth < 1 {
                dirs.push((path, depth + 1));
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            let rdev = md.rdev();
            let mut d = LinuxDevice::default();
            d.set_path(path);
            d.set_typ(typ);
            d.set_major(libc::major(rdev) as i64);
            d.set_minor(libc::minor(rdev) as i64);
            d.set_file_mode(Some(md.mode() & 0o7777));
            d.set_uid(Some(md.uid()));
            d.set_gid(Some(md.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// `--memory`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--cpuset-*`,
/// `--pids-limit` and the device rules as OCI resources.
pub fn resources(record: &ContainerRecord) -> Result<LinuxResources, RuntimeError> {
    let hc = &record.host_config;
    let mut res = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    if hc.memory < 0 {
        return Err(invalid("invalid --memory: must be positive"));
    }
    if hc.memory > 0 {
        if hc.memory < 6 * 1024 * 1024 {
            return Err(invalid("Minimum memory limit allowed is 6MB"));
        }
        mem.set_limit(Some(hc.memory));
        any_mem = true;
        // Docker: --memory-swap is memory + swap; unset means twice the memory.
        let swap = match hc.memory_swap {
            0 => hc.memory * 2,
            -1 => -1,
            s if s < hc.memory => {
                return Err(invalid(
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ))
            }
            s => s,
        };
        mem.set_swap(Some(swap));
    } else if hc.memory_swap > 0 {
        return Err(invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
    }
    if hc.memory_reservation > 0 {
        mem.set_reservation(Some(hc.memory_reservation));
        any_mem = true;
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s >= 0) {
        if s > 100 {
            return Err(invalid(format!("invalid --memory-swappiness {s}: must be between 0 and 100")));
        }
        mem.set_swappiness(Some(s as u64));
        any_mem = true;
    }
    if let Some(disable) = hc.oom_kill_disable.filter(|d| *d) {
        mem.set_disable_oom_killer(Some(disable));
        any_mem = true;
    }
    if any_mem {
        res.set_memory(Some(mem));
    }

    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if hc.nano_cpus != 0 && (hc.cpu_quota != 0 || hc.cpu_period != 0) {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if hc.nano_cpus < 0 {
        return Err(invalid("invalid --cpus: must be positive"));
    }
    if hc.nano_cpus > 0 {
        let period: u64 = 100_000;
        cpu.set_period(Some(period));
        cpu.set_quota(Some((hc.nano_cpus as i128 * period as i128 / 1_000_000_000) as i64));
        any_cpu = true;
    }
    if hc.cpu_period > 0 {
        cpu.set_period(Some(hc.cpu_period as u64));
        any_cpu = true;
    }
    if hc.cpu_quota != 0 {
        cpu.set_quota(Some(hc.cpu_quota));
        any_cpu = true;
    }
    if hc.cpu_shares > 0 {
        cpu.set_shares(Some(hc.cpu_shares as u64));
        any_cpu = true;
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(hc.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !hc.cpuset_mems.is_empty() {
        cpu.set_mems(Some(hc.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }
    if let Some(limit) = hc.pids_limit {
        let mut pids = LinuxPids::default();
        // Docker: 0 and -1 both mean unlimited.
        pids.set_limit(if limit > 0 { limit } else { -1 });
        res.set_pids(Some(pids));
    }
    if hc.privileged {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".to_string()));
        res.set_devices(Some(vec![all]));
    } else {
        res.set_devices(Some(default_device_rules()));
    }
    Ok(res)
}

/// A namespace of `typ`, new or at `path`.
fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

/// `host` or the empty default for `--pid`/`--ipc`/`--uts`; `container:` and
/// others are not supported yet and say so.
fn share_mode(flag: &str, mode: &str) -> Result<bool, RuntimeError> {
    match mode {
        "" | "private" | "shareable" => Ok(false),
        "host" => Ok(true),
        other => Err(invalid(format!("--{flag} {other:?} is not supported by berth yet"))),
    }
}

/// Only namespaced sysctls may be set (Docker's list): any other would be
/// written from inside the container straight to the host's kernel.
fn check_sysctl(key: &str, host_net: bool, host_ipc: bool) -> Result<(), RuntimeError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        if host_ipc {
            return Err(invalid(format!("sysctl {key:?} is not allowed in the host's IPC namespace")));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if host_net {
            return Err(invalid(format!("sysctl {key:?} is not allowed in the host's network namespace")));
        }
        return Ok(());
    }
    Err(invalid(format!("sysctl {key:?} is not allowed: only namespaced sysctls (net.*, fs.mqueue.*, kernel IPC) can be set")))
}

/// `--device /dev/x[:/dev/y[:rwm]]` (Docker's DeviceMapping objects): the
/// node to create and the cgroup rule that lets the container use it.
fn user_devices(record: &ContainerRecord) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), RuntimeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for v in record.host_config.devices.iter().flatten() {
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let host = field("PathOnHost");
        if !host.starts_with('/') {
            return Err(invalid(format!("invalid device {v}: PathOnHost must be an absolute path")));
        }
        let inside = Some(field("PathInContainer")).filter(|p| !p.is_empty()).unwrap_or_else(|| host.clone());
        let perms = Some(field("CgroupPermissions")).filter(|p| !p.is_empty()).unwrap_or_else(|| "rwm".to_string());
        if !inside.starts_with('/') || perms.chars().any(|c| !"rwm".contains(c)) {
            return Err(invalid(format!("invalid device mapping {host}:{inside}:{perms}")));
        }
        let md = std::fs::metadata(&host)
            .map_err(|e| invalid(format!("error gathering device information while adding custom device {host:?}: {e}")))?;
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(invalid(format!("error gathering device information while adding custom device {host:?}: not a device node")));
        };
        let (major, minor) = (libc::major(md.rdev()) as i64, libc::minor(md.rdev()) as i64);
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from(&inside));
        d.set_typ(typ);
        d.set_major(major);
        d.set_minor(minor);
        d.set_file_mode(Some(md.mode() & 0o7777));
        d.set_uid(Some(md.uid()));
        d.set_gid(Some(md.gid()));
        nodes.push(d);
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(Some(major));
        r.set_minor(Some(minor));
        r.set_access(Some(perms));
        rules.push(r);
    }
    Ok((nodes, rules))
}

/// The OCI mounts of the container's volumes, binds and tmpfs mounts, as
/// `VolumeService::mount_container_volumes` resolved them (host sources, parents
/// before children). Parsing `-v`/`--mount`/`--tmpfs` is the volume
/// module's; this only says how each kind is mounted, as Docker does: a
/// recursive bind (read-only by remount, with the asked propagation), or a
/// tmpfs with `noexec,nosuid,nodev` unless the options say otherwise.
fn volume_mounts(points: &[MountPoint]) -> Result<Vec<Mount>, RuntimeError> {
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        if !p.destination.starts_with('/') {
            return Err(invalid(format!("invalid mount config: mount path must be absolute: {:?}", p.destination)));
        }
        match p.kind.as_str() {
            "bind" | "volume" => {
                if !p.source.starts_with('/') {
                    return Err(invalid(format!(
                        "mount at {}: the {} has no absolute host source ({:?})",
                        p.destination, p.kind, p.source
                    )));
                }
                let mut options = vec!["rbind"];
                if !p.rw {
                    options.push("ro");
                }
                if !p.propagation.is_empty() {
                    options.push(&p.propagation);
                }
                out.push(mount(&p.destination, "bind", &p.source, &options));
            }
            "tmpfs" => {
                let mut options = vec!["noexec", "nosuid", "nodev"];
                // Later words win in the runtime (`exec` clears `noexec`).
                options.extend(p.tmpfs_options.split(',').filter(|o| !o.is_empty()));
                if !p.rw && !options.contains(&"ro") {
                    options.push("ro");
                }
                out.push(mount(&p.destination, "tmpfs", "tmpfs", &options));
            }
            other => return Err(invalid(format!("mount at {}: unknown mount type {other:?}", p.destination))),
        }
    }
    Ok(out)
}

/// Docker's root propagation: shared when a mount asks for shared
/// propagation, slave when one asks for slave, else private (a shared or
/// slave bind only receives events if the root lets them through).
fn rootfs_propagation(points: &[MountPoint]) -> &'static str {
    let has = |words: &[&str]| points.iter().any(|p| words.contains(&p.propagation.as_str()));
    if has(&["shared", "rshared"]) {
        "rshared"
    } else if has(&["slave", "rslave"]) {
        "rslave"
    } else {
        "rprivate"
    }
}

/// The OCI spec for a container.
pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec, RuntimeError> {
    let record = inputs.record;
    let cfg = &record.config;
    let hc = &record.host_config;
    let image_cfg = inputs.image_config.config().as_ref();

    let host_net = inputs.netns == NetnsMode::Host;
    let host_uts = share_mode("uts", &hc.uts_mode)? || host_net;
    let host_pid = share_mode("pid", &hc.pid_mode)?;
    let host_ipc = share_mode("ipc", &hc.ipc_mode)?;

    let hostname = if host_uts {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    } else if cfg.hostname.is_empty() {
        record.id.short().to_string()
    } else {
        cfg.hostname.clone()
    };

    // process
    let mut args = Vec::with_capacity(record.args.len() + 1);
    if record.path.is_empty() {
        return Err(invalid("No command specified"));
    }
    args.push(record.path.clone());
    args.extend(record.args.iter().cloned());
    let mut process = Process::default();
    process.set_terminal(Some(cfg.tty));
    if let Some([height, width]) = record.host_config.console_size.filter(|s| cfg.tty && s[0] > 0 && s[1] > 0) {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(height)
            .width(width)
            .build()
            .map_err(|e| invalid(format!("console size {height}x{width}: {e}")))?;
        process.set_console_size(Some(size));
    }
    process.set_args(Some(args));
    process.set_env(Some(environment(inputs, &hostname)));
    let cwd = if !cfg.working_dir.is_empty() {
        cfg.working_dir.clone()
    } else {
        image_cfg.and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(invalid(format!("the working directory '{cwd}' is invalid, it needs to be an absolute path")));
    }
    process.set_cwd(PathBuf::from(cwd));

    let mut annotations = HashMap::new();
    let user = if cfg.user.is_empty() { image_cfg.and_then(|c| c.user().clone()).unwrap_or_default() } else { cfg.user.clone() };
    let mut oci_user = User::default();
    let (uid, gid) = numeric_user(&user);
    oci_user.set_uid(uid.unwrap_or(0));
    oci_user.set_gid(gid.unwrap_or(0));
    let mut group_names = Vec::new();
    let mut gids = Vec::new();
    for g in hc.group_add.iter().flatten() {
        match g.parse::<u32>() {
            Ok(n) => gids.push(n),
            Err(_) => group_names.push(g.clone()),
        }
    }
    if !gids.is_empty() {
        oci_user.set_additional_gids(Some(gids));
    }
    // Names, and a uid whose gid, groups and $HOME come from /etc/passwd, are
    // resolved inside the container at create time.
    let fully_numeric = uid.is_some() && gid.is_some();
    if !user.is_empty() && !fully_numeric {
        annotations.insert(ANNOTATION_USER.to_string(), user.clone());
    }
    if !group_names.is_empty() {
        annotations.insert(ANNOTATION_GROUP_ADD.to_string(), group_names.join(","));
    }
    process.set_user(oci_user);
    let security = security_opts(inputs)?;
    let capabilities = capabilities(inputs)?;
    let seccomp = seccomp_filter(&security, hc.privileged, &capabilities)?;
    process.set_capabilities(Some(caps::docker_sets(&capabilities)));
    process.set_no_new_privileges(Some(security.no_new_privileges));
    process.set_rlimits(Some(rlimits(inputs)?));
    if hc.oom_score_adj != 0 {
        if !(-1000..=1000).contains(&hc.oom_score_adj) {
            return Err(invalid(format!("Invalid value {}, range for oom score adj is [-1000, 1000]", hc.oom_score_adj)));
        }
        process.set_oom_score_adj(Some(hc.oom_score_adj as i32));
    }
    if hc.init == Some(true) {
        annotations.insert(ANNOTATION_INIT.to_string(), "true".to_string());
    }

    // mounts, in the order the runtime performs them
    let shm_size = if hc.shm_size > 0 { hc.shm_size } else { DEFAULT_SHM_SIZE };
    let shm_opt = format!("size={shm_size}");
    let sys_opts: &[&str] = if hc.privileged { &["nosuid", "noexec", "nodev", "rw"] } else { &["nosuid", "noexec", "nodev", "ro"] };
    let cgroup_opts: &[&str] = if hc.privileged { &["nosuid", "noexec", "nodev", "relatime", "rw"] } else { &["nosuid", "noexec", "nodev", "relatime", "ro"] };
    // A user mount at one of these paths replaces the default one, as in Docker.
    let user_dests: HashSet<&str> = inputs.volume_mounts.iter().map(|m| m.destination.as_str()).collect();
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        mount("/sys", "sysfs", "sysfs", sys_opts),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_opts),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt]),
    ];
    mounts.retain(|m| !user_dests.contains(m.destination().to_string_lossy().as_ref()) || m.destination() == Path::new("/proc"));
    for (dest, file) in [("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname"), ("/etc/hosts", "hosts")] {
        if user_dests.contains(dest) {
            continue;
        }
        let src = inputs.container_dir.join(file);
        mounts.push(mount(dest, "bind", &src.to_string_lossy(), &["rbind", "rprivate"]));
    }
    mounts.extend(volume_mounts(&inputs.volume_mounts)?);

    // linux
    let mut namespaces = Vec::new();
    if !host_pid {
        namespaces.push(ns(LinuxNamespaceType::Pid, None));
    }
    match &inputs.netns {
        NetnsMode::New => namespaces.push(ns(LinuxNamespaceType::Network, None)),
        NetnsMode::Host => {}
        NetnsMode::Join(path) => namespaces.push(ns(LinuxNamespaceType::Network, Some(path.clone()))),
    }
    if !host_ipc {
        namespaces.push(ns(LinuxNamespaceType::Ipc, None));
    }
    if !host_uts {
        namespaces.push(ns(LinuxNamespaceType::Uts, None));
    }
    namespaces.push(ns(LinuxNamespaceType::Mount, None));

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources(record)?));
    linux.set_cgroups_path(Some(PathBuf::from(format!("{}/{}", inputs.cgroup_parent.trim_end_matches('/'), record.id))));
    if hc.privileged {
        linux.set_masked_paths(Some(Vec::new()));
        linux.set_readonly_paths(Some(Vec::new()));
        linux.set_devices(Some(host_devices()));
    } else {
        let masked = hc.masked_paths.clone().unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect());
        let readonly = hc.readonly_paths.clone().unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect());
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(readonly));
        let (nodes, rules) = user_devices(record)?;
        linux.set_devices(Some(nodes));
        if let Some(res) = linux.resources_mut().as_mut() {
            let mut all = res.devices().clone().unwrap_or_default();
            all.extend(rules);
            res.set_devices(Some(all));
        }
    }
    if let Some(sysctls) = &hc.sysctls {
        for key in sysctls.keys() {
            check_sysctl(key, host_net, host_ipc)?;
        }
        linux.set_sysctl(Some(sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
    }
    linux.set_rootfs_propagation(Some(rootfs_propagation(&inputs.volume_mounts).to_string()));
    linux.set_seccomp(seccomp);

    let mut root = Root::default();
    root.set_path(inputs.rootfs.clone());
    root.set_readonly(Some(hc.readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_hostname(if host_uts { None } else { Some(hostname) });
    if !host_uts && !cfg.domainname.is_empty() {
        spec.set_domainname(Some(cfg.domainname.clone()));
    }
    spec.set_mounts(Some(mounts));
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The process of a `docker exec`: the container's process settings (caps,
/// rlimits, no_new_privileges, env) with the exec's command, extra env, user,
/// working dir and tty. A user name goes into `user.username` and is resolved
/// inside the container by `linux::exec`.
pub fn exec_process(
    spec: &Spec,
    cmd: &[String],
    env: &[String],
    user: &str,
    working_dir: &str,
    tty: bool,
    privileged: bool,
) -> Result<Process, RuntimeError> {
    if cmd.is_empty() {
        return Err(invalid("No exec command specified"));
    }
    let base = spec.process().as_ref().ok_or_else(|| invalid("the container's spec has no process"))?;
    let mut p = base.clone();
    p.set_args(Some(cmd.to_vec()));
    p.set_terminal(Some(tty));
    let mut e = base.env().clone().unwrap_or_default();
    if tty && !e.iter().any(|v| v.starts_with("TERM=")) {
        e.push("TERM=xterm".to_string());
    }
    merge_env(&mut e, env);
    p.set_env(Some(e));
    if !working_dir.is_empty() {
        if !working_dir.starts_with('/') {
            return Err(invalid(format!("the working directory '{working_dir}' is invalid, it needs to be an absolute path")));
        }
        p.set_cwd(PathBuf::from(working_dir));
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let user = if user.is_empty() { annotations.get(ANNOTATION_USER).cloned().unwrap_or_default() } else { user.to_string() };
    let mut u = base.user().clone();
    if !user.is_empty() {
        let (uid, gid) = numeric_user(&user);
        u.set_uid(uid.unwrap_or(0));
        u.set_gid(gid.unwrap_or(0));
        // Resolved inside the container unless fully numeric.
        u.set_username(if uid.is_some() && gid.is_some() { None } else { Some(user) });
    }
    p.set_user(u);
    if privileged {
        p.set_capabilities(Some(caps::docker_sets(&caps::available().into_iter().collect())));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::container::{ContainerConfig, ContainerState, HostConfig, Ulimit};

    fn record(config: ContainerConfig, host_config: HostConfig) -> ContainerRecord {
        ContainerRecord {
            id: "c".repeat(64).parse().expect("id"),
            name: "t".into(),
            created: "2026-01-01T00:00:00Z".into(),
            image: format!("sha256:{}", "d".repeat(64)).parse().expect("digest"),
            path: "sh".into(),
            args: vec!["-c".into(), "echo hi".into()],
            config,
            host_config,
            state: ContainerState::default(),
            restart_count: 0,
            rw_layer: String::new(),
            manually_stopped: false,
            networks: Default::default(),
            ports: Default::default(),
            sandbox_key: String::new(),
            mounts: Vec::new(),
        }
    }

    fn image(json: &str) -> oci_spec::image::ImageConfiguration {
        serde_json::from_str(json).expect("image config")
    }

    fn build_with(config: ContainerConfig, host_config: HostConfig, netns: NetnsMode) -> Result<Spec, RuntimeError> {
        let rec = record(config, host_config);
        let img = image(r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/img/bin","FOO=image","BAR=b"],"WorkingDir":"/srv","User":""},"rootfs":{"type":"layers","diff_ids":[]}}"#);
        build(&SpecInputs {
            record: &rec,
            image_config: &img,
            rootfs: "/run/x/rootfs".into(),
            container_dir: "/var/lib/x/containers/c".into(),
            netns,
            cgroup_parent: "berth".into(),
            volume_mounts: Vec::new(),
            link_env: Vec::new(),
        })
    }

    fn caps_of(spec: &Spec) -> HashSet<Capability> {
        let p = spec.process().as_ref().expect("process");
        p.capabilities().as_ref().expect("caps").bounding().clone().expect("bounding").into_iter().collect()
    }

    #[test]
    fn process_env_cwd_and_args() {
        let cfg = ContainerConfig { env: Some(vec!["FOO=container".into()]), tty: true, ..Default::default() };
        let spec = build_with(cfg, HostConfig::default(), NetnsMode::New).expect("spec");
        let p = spec.process().as_ref().expect("process");
        assert_eq!(p.args().as_ref().expect("args"), &vec!["sh".to_string(), "-c".into(), "echo hi".into()]);
        let env = p.env().as_ref().expect("env");
        assert_eq!(
            env,
            &vec![
                "PATH=/img/bin".to_string(),
                format!("HOSTNAME={}", "c".repeat(12)),
                "TERM=xterm".into(),
                "FOO=container".into(),
                "BAR=b".into()
            ]
        );
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("cccccccccccc"));
        assert_eq!(spec.root().as_ref().expect("root").path(), Path::new("/run/x/rootfs"));
        let linux = spec.linux().as_ref().expect("linux");
        assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new(&format!("berth/{}", "c".repeat(64)))));
    }

    #[test]
    fn default_path_when_image_has_none() {
        let rec = record(ContainerConfig::default(), HostConfig::default());
        let img = image(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        let spec = build(&SpecInputs {
            record: &rec,
            image_config: &img,
            rootfs: "/r".into(),
            container_dir: "/c".into(),
            netns: NetnsMode::New,
            cgroup_parent: "berth".into(),
            volume_mounts: Vec::new(),
            link_env: Vec::new(),
        })
        .expect("spec");
        let p = spec.process().as_ref().expect("process");
        assert_eq!(p.env().as_ref().expect("env")[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(p.cwd(), Path::new("/"));
        assert!(!p.env().as_ref().expect("env").iter().any(|e| e.starts_with("TERM=")));
    }

    #[test]
    fn docker_default_capabilities_and_changes() {
        let spec = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::New).expect("spec");
        let set = caps_of(&spec);
        assert_eq!(set, caps::DOCKER_DEFAULT.iter().copied().collect());
        assert!(!set.contains(&Capability::SysAdmin));
        let p = spec.process().as_ref().expect("process");
        assert_eq!(p.capabilities().as_ref().expect("caps").ambient().as_ref().map(|a| a.len()), Some(0));

        let hc = HostConfig { cap_add: Some(vec!["CAP_SYS_ADMIN".into(), "net_admin".into()]), cap_drop: Some(vec!["MKNOD".into()]), ..Default::default() };
        let set = caps_of(&build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec"));
        assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::NetAdmin));
        assert!(!set.contains(&Capability::Mknod));

        let hc = HostConfig { cap_drop: Some(vec!["ALL".into()]), cap_add: Some(vec!["CHOWN".into()]), ..Default::default() };
        let set = caps_of(&build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec"));
        assert_eq!(set, [Capability::Chown].into_iter().collect());

        let hc = HostConfig { cap_add: Some(vec!["ALL".into()]), ..Default::default() };
        assert_eq!(caps_of(&build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec")).len(), caps::available().len());

        let hc = HostConfig { cap_add: Some(vec!["NOPE".into()]), ..Default::default() };
        let err = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect_err("bad cap");
        assert!(matches!(err, RuntimeError::InvalidConfig(ref m) if m.contains("NOPE")), "{err}");
    }

    #[test]
    fn privileged_gets_everything() {
        let hc = HostConfig { privileged: true, ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        assert_eq!(caps_of(&spec).len(), caps::available().len());
        assert!(caps_of(&spec).contains(&Capability::SysAdmin));
        let linux = spec.linux().as_ref().expect("linux");
        assert_eq!(linux.masked_paths().as_ref().map(|m| m.len()), Some(0));
        assert_eq!(linux.readonly_paths().as_ref().map(|m| m.len()), Some(0));
        assert!(linux.devices().as_ref().expect("devices").iter().any(|d| d.path() == Path::new("/dev/null")));
        let rules = linux.resources().as_ref().and_then(|r| r.devices().clone()).expect("rules");
        assert!(rules.len() == 1 && rules[0].allow());
    }

    #[test]
    fn masked_and_readonly_paths_and_namespaces() {
        let spec = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::New).expect("spec");
        let linux = spec.linux().as_ref().expect("linux");
        let masked = linux.masked_paths().as_ref().expect("masked");
        assert!(masked.contains(&"/proc/kcore".to_string()) && masked.contains(&"/sys/firmware".to_string()));
        assert_eq!(masked.len(), MASKED_PATHS.len());
        assert!(linux.readonly_paths().as_ref().expect("ro").contains(&"/proc/sys".to_string()));
        let types: Vec<_> = linux.namespaces().as_ref().expect("ns").iter().map(|n| n.typ()).collect();
        use LinuxNamespaceType::*;
        assert_eq!(types, vec![Pid, Network, Ipc, Uts, Mount]);

        let spec = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::Host).expect("spec");
        let types: Vec<_> = spec.linux().as_ref().expect("linux").namespaces().as_ref().expect("ns").iter().map(|n| n.typ()).collect();
        assert_eq!(types, vec![Pid, Ipc, Mount], "host network shares the host's uts too");
        assert_eq!(spec.hostname(), &None);

        let spec = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::Join("/run/netns/x".into())).expect("spec");
        let nss = spec.linux().as_ref().expect("linux").namespaces().clone().expect("ns");
        let net = nss.iter().find(|n| n.typ() == Network).expect("net");
        assert_eq!(net.path().as_deref(), Some(Path::new("/run/netns/x")));
    }

    #[test]
    fn mounts_in_order_with_shm_size() {
        let hc = HostConfig { shm_size: 128 * 1024 * 1024, readonly_rootfs: true, ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        let mounts = spec.mounts().as_ref().expect("mounts");
        let dests: Vec<_> = mounts.iter().map(|m| m.destination().to_string_lossy().to_string()).collect();
        assert_eq!(
            dests,
            vec!["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]
        );
        let shm = &mounts[6];
        assert!(shm.options().as_ref().expect("opts").contains(&"size=134217728".to_string()));
        assert_eq!(mounts[9].source().as_deref(), Some(Path::new("/var/lib/x/containers/c/hosts")));
        assert!(mounts[3].options().as_ref().expect("opts").contains(&"ro".to_string()));
        assert_eq!(spec.root().as_ref().expect("root").readonly(), Some(true));
        let default_shm = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::New).expect("spec");
        assert!(default_shm.mounts().as_ref().expect("m")[6].options().as_ref().expect("o").contains(&"size=67108864".to_string()));
    }

    #[test]
    fn users_numeric_and_named() {
        let cfg = ContainerConfig { user: "1000:1001".into(), ..Default::default() };
        let spec = build_with(cfg, HostConfig::default(), NetnsMode::New).expect("spec");
        let u = spec.process().as_ref().expect("p").user().clone();
        assert_eq!((u.uid(), u.gid()), (1000, 1001));
        assert!(!spec.annotations().as_ref().expect("a").contains_key(ANNOTATION_USER));

        let cfg = ContainerConfig { user: "nobody".into(), ..Default::default() };
        let hc = HostConfig { group_add: Some(vec!["audio".into(), "44".into()]), ..Default::default() };
        let spec = build_with(cfg, hc, NetnsMode::New).expect("spec");
        let a = spec.annotations().as_ref().expect("a");
        assert_eq!(a.get(ANNOTATION_USER).map(String::as_str), Some("nobody"));
        assert_eq!(a.get(ANNOTATION_GROUP_ADD).map(String::as_str), Some("audio"));
        assert_eq!(spec.process().as_ref().expect("p").user().additional_gids(), &Some(vec![44]));

        let cfg = ContainerConfig { user: "1000".into(), ..Default::default() };
        let spec = build_with(cfg, HostConfig::default(), NetnsMode::New).expect("spec");
        assert_eq!(spec.process().as_ref().expect("p").user().uid(), 1000);
        assert_eq!(spec.annotations().as_ref().expect("a").get(ANNOTATION_USER).map(String::as_str), Some("1000"));
    }

    #[test]
    fn security_opts_and_init() {
        let hc = HostConfig { security_opt: Some(vec!["no-new-privileges".into()]), init: Some(true), ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        assert_eq!(spec.process().as_ref().expect("p").no_new_privileges(), Some(true));
        assert_eq!(spec.annotations().as_ref().expect("a").get(ANNOTATION_INIT).map(String::as_str), Some("true"));
        let hc = HostConfig { security_opt: Some(vec!["no-new-privileges:false".into()]), ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        assert_eq!(spec.process().as_ref().expect("p").no_new_privileges(), Some(false));
        let hc = HostConfig { security_opt: Some(vec!["apparmor=myprofile".into()]), ..Default::default() };
        assert!(build_with(ContainerConfig::default(), hc, NetnsMode::New).is_err());
    }

    #[test]
    fn seccomp_default_unconfined_privileged_and_profiles() {
        let seccomp_of = |hc: HostConfig| build_with(ContainerConfig::default(), hc, NetnsMode::New).map(|s| s.linux().as_ref().and_then(|l| l.seccomp().clone()));
        let default = seccomp_of(HostConfig::default()).expect("spec").expect("a filter by default");
        assert!(default.syscalls().iter().flatten().any(|r| r.names().contains(&"mount".to_string())));
        let opt = |o: &str| HostConfig { security_opt: Some(vec![o.to_string()]), ..Default::default() };
        assert!(seccomp_of(opt("seccomp=unconfined")).expect("spec").is_none());
        assert!(seccomp_of(HostConfig { privileged: true, ..Default::default() }).expect("spec").is_none());
        let own = seccomp_of(opt(r#"seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#))
            .expect("spec")
            .expect("the given profile");
        assert_eq!(own.default_action(), oci_spec::runtime::LinuxSeccompAction::ScmpActErrno);
        let e = seccomp_of(opt("seccomp=/etc/profile.json")).expect_err("a path").to_string();
        assert!(e.contains("the daemon takes the profile's JSON, not a path"), "{e}");
        let e = seccomp_of(opt("seccomp={\"defaultAction\": 1}")).expect_err("bad JSON").to_string();
        assert!(e.contains("decoding seccomp profile failed"), "{e}");
    }

    #[test]
    fn rlimits_default_clamped_and_explicit_checked() {
        let spec = build_with(ContainerConfig::default(), HostConfig::default(), NetnsMode::New).expect("spec");
        let r = spec.process().as_ref().expect("p").rlimits().clone().expect("rlimits");
        let nofile = r.iter().find(|r| r.typ() == PosixRlimitType::RlimitNofile).expect("nofile");
        let host = host_hard_limit(libc::RLIMIT_NOFILE);
        assert!(nofile.hard() <= host.max(DEFAULT_NOFILE) && nofile.hard() > 0);
        if !caps::have(Capability::SysResource) {
            assert_eq!(nofile.hard(), host.min(DEFAULT_NOFILE));
            let over = (host.min(i64::MAX as u64 / 2) as i64) + 1;
            let hc = HostConfig { ulimits: Some(vec![Ulimit { name: "nofile".into(), soft: 10, hard: over }]), ..Default::default() };
            let err = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect_err("above host hard");
            assert!(err.to_string().contains("exceeds the host's hard limit"), "{err}");
        }
        let hc = HostConfig { ulimits: Some(vec![Ulimit { name: "nofile".into(), soft: 100, hard: 200 }]), ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        let r = spec.process().as_ref().expect("p").rlimits().clone().expect("rlimits");
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].soft(), r[0].hard()), (100, 200));
        let hc = HostConfig { ulimits: Some(vec![Ulimit { name: "bogus".into(), soft: 1, hard: 1 }]), ..Default::default() };
        assert!(build_with(ContainerConfig::default(), hc, NetnsMode::New).is_err());
    }

    #[test]
    fn resources_from_docker_flags() {
        let hc = HostConfig {
            memory: 32 * 1024 * 1024,
            nano_cpus: 1_500_000_000,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            pids_limit: Some(20),
            ..Default::default()
        };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        let res = spec.linux().as_ref().and_then(|l| l.resources().clone()).expect("resources");
        let mem = res.memory().expect("memory");
        assert_eq!(mem.limit(), Some(32 * 1024 * 1024));
        assert_eq!(mem.swap(), Some(64 * 1024 * 1024));
        let cpu = res.cpu().clone().expect("cpu");
        assert_eq!((cpu.quota(), cpu.period(), cpu.shares()), (Some(150_000), Some(100_000), Some(512)));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(res.pids().expect("pids").limit(), 20);
        let rules = res.devices().clone().expect("rules");
        assert!(!rules[0].allow());
        assert!(rules.iter().any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3)));

        let hc = HostConfig { memory: 1024, ..Default::default() };
        assert!(build_with(ContainerConfig::default(), hc, NetnsMode::New).is_err());
        let hc = HostConfig { memory: 64 << 20, memory_swap: -1, ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        assert_eq!(spec.linux().as_ref().and_then(|l| l.resources().clone()).and_then(|r| *r.memory()).and_then(|m| m.swap()), Some(-1));
    }

    #[test]
    fn devices() {
        let dev = serde_json::json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"});
        let hc = HostConfig { devices: Some(vec![dev]), ..Default::default() };
        let spec = build_with(ContainerConfig::default(), hc, NetnsMode::New).expect("spec");
        let linux = spec.linux().as_ref().expect("linux");
        let d = &linux.devices().as_ref().expect("devices")[0];
        assert_eq!((d.path().as_path(), d.major(), d.minor()), (Path::new("/dev/mynull"), 1, 3));
        let rules = linux.resources().as_ref().and_then(|r| r.devices().clone()).expect("rules");
        assert!(rules.iter().any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3) && r.access().as_deref() == Some("rw")));
        let bad = serde_json::json!({"PathOnHost": "/etc/passwd"});
        let hc = HostConfig { devices: Some(vec![bad]), ..Default::default() };
        assert!(build_with(ContainerConfig::default(), hc, NetnsMode::New).expect_err("not a device").to_string().contains("not a device"));
    }

    fn build_with_mounts(points: Vec<MountPoint>) -> Result<Spec, RuntimeError> {
        let rec = record(ContainerConfig::default(), HostConfig::default());
        let img = image(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        build(&SpecInputs {
            record: &rec,
            image_config: &img,
            rootfs: "/r".into(),
            container_dir: "/c".into(),
            netns: NetnsMode::New,
            cgroup_parent: "berth".into(),
            volume_mounts: points,
            link_env: Vec::new(),
        })
    }

    #[test]
    fn volume_bind_and_tmpfs_mounts() {
        let point = |kind: &str, source: &str, dest: &str, rw: bool| MountPoint {
            kind: kind.into(),
            source: source.into(),
            destination: dest.into(),
            rw,
            ..Default::default()
        };
        let mut bind = point("bind", "/srv/host", "/data", false);
        bind.propagation = "rslave".into();
        let vol = point("volume", "/var/lib/berth/volumes/v/_data", "/data/v", true);
        let mut tmp = point("tmpfs", "", "/scratch", true);
        tmp.tmpfs_options = "size=1m,exec".into();
        let mut ro_tmp = point("tmpfs", "", "/ro", false);
        ro_tmp.tmpfs_options = "mode=700".into();
        let spec = build_with_mounts(vec![bind, vol, tmp, ro_tmp]).expect("spec");
        let mounts = spec.mounts().as_ref().expect("mounts");
        let find = |d: &str| mounts.iter().find(|m| m.destination() == Path::new(d)).expect(d).clone();
        let opts = |m: &Mount| m.options().clone().unwrap_or_default();
        let b = find("/data");
        assert_eq!((b.typ().as_deref(), b.source().as_deref()), (Some("bind"), Some(Path::new("/srv/host"))));
        assert_eq!(opts(&b), vec!["rbind", "ro", "rslave"]);
        let v = find("/data/v");
        assert_eq!(opts(&v), vec!["rbind"]);
        assert_eq!(v.source().as_deref(), Some(Path::new("/var/lib/berth/volumes/v/_data")));
        let t = find("/scratch");
        assert_eq!(t.typ().as_deref(), Some("tmpfs"));
        assert_eq!(opts(&t), vec!["noexec", "nosuid", "nodev", "size=1m", "exec"]);
        assert_eq!(opts(&find("/ro")), vec!["noexec", "nosuid", "nodev", "mode=700", "ro"]);
        // User mounts come after the defaults, in the order given (parents first).
        let pos = |d: &str| mounts.iter().position(|m| m.destination() == Path::new(d)).expect(d);
        assert!(pos("/etc/hosts") < pos("/data") && pos("/data") < pos("/data/v"));

        // A user mount replaces Docker's default one at the same path.
        let spec = build_with_mounts(vec![point("bind", "/h/hosts", "/etc/hosts", true), point("tmpfs", "", "/dev/shm", true)])
            .expect("spec");
        let mounts = spec.mounts().as_ref().expect("mounts");
        assert_eq!(mounts.iter().filter(|m| m.destination() == Path::new("/etc/hosts")).count(), 1);
        assert_eq!(mounts.iter().filter(|m| m.destination() == Path::new("/dev/shm")).count(), 1);
        assert_eq!(
            mounts.iter().find(|m| m.destination() == Path::new("/etc/hosts")).and_then(|m| m.source().clone()),
            Some(PathBuf::from("/h/hosts"))
        );

        let prop = |spec: &Spec| spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone()).unwrap_or_default();
        assert_eq!(prop(&spec), "rprivate");
        let mut shared = point("bind", "/s", "/s", true);
        shared.propagation = "rshared".into();
        assert_eq!(prop(&build_with_mounts(vec![shared]).expect("spec")), "rshared");
        let mut slave = point("bind", "/s", "/s", true);
        slave.propagation = "slave".into();
        assert_eq!(prop(&build_with_mounts(vec![slave]).expect("spec")), "rslave");

        let err = build_with_mounts(vec![point("volume", "", "/x", true)]).expect_err("no source");
        assert!(err.to_string().contains("/x"), "{err}");
        assert!(build_with_mounts(vec![point("bind", "/a", "rel", true)]).is_err());
        assert!(build_with_mounts(vec![point("npipe", "/a", "/b", true)]).is_err());
    }

    #[test]
    fn only_namespaced_sysctls() {
        let sysctl = |k: &str| HostConfig { sysctls: Some([(k.to_string(), "1".to_string())].into_iter().collect()), ..Default::default() };
        assert!(build_with(ContainerConfig::default(), sysctl("net.ipv4.ip_forward"), NetnsMode::New).is_ok());
        assert!(build_with(ContainerConfig::default(), sysctl("kernel.shmmax"), NetnsMode::New).is_ok());
        assert!(build_with(ContainerConfig::default(), sysctl("net.ipv4.ip_forward"), NetnsMode::Host).is_err());
        let err = build_with(ContainerConfig::default(), sysctl("vm.swappiness"), NetnsMode::New).expect_err("host-wide");
        assert!(err.to_string().contains("vm.swappiness"), "{err}");
    }

    #[test]
    fn exec_process_inherits_and_overrides() {
        let cfg = ContainerConfig { user: "alice".into(), ..Default::default() };
        let spec = build_with(cfg, HostConfig::default(), NetnsMode::New).expect("spec");
        let p = exec_process(&spec, &["ls".into()], &["X=1".into()], "", "/tmp", true, false).expect("exec");
        assert_eq!(p.args().as_ref().expect("args"), &vec!["ls".to_string()]);
        assert!(p.env().as_ref().expect("env").contains(&"X=1".to_string()));
        assert!(p.env().as_ref().expect("env").contains(&"TERM=xterm".to_string()));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.user().username().as_deref(), Some("alice"));
        let p = exec_process(&spec, &["ls".into()], &[], "0:0", "", false, false).expect("exec");
        assert_eq!(p.user().username(), &None);
        assert!(exec_process(&spec, &[], &[], "", "", false, false).is_err());
    }
}
