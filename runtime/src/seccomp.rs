//! Seccomp: Docker's profile format (`--security-opt seccomp=PROFILE`), the
//! default profile of every container that is not privileged, and loading
//! a spec's filter in the container process with libseccomp (as runc and
//! crun do, so the three runtimes read one `linux.seccomp` alike).
//!
//! berth's default profile is a denylist. Every syscall is allowed except
//! those Docker documents as blocked by its default profile (the kernel
//! keyring, modules, `mount` and new namespaces, clocks, reboot, ...), each
//! allowed again when the container holds the capability Docker ties it to,
//! plus the newer mount API (`fsopen`, `open_tree`, `move_mount`, ...), which
//! would otherwise get round the `mount` rule. Docker's own default is an
//! allowlist: a syscall newer than its profile is refused by Docker and
//! allowed by berth. A profile given with `--security-opt seccomp=` is used
//! as written, allowlist or denylist.

use std::collections::HashSet;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall};
use serde::Deserialize;

use super::caps;

/// What `docker info` says of the default profile.
pub const DEFAULT_PROFILE_NAME: &str = "default";

/// A seccomp profile in Docker's JSON format.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: LinuxSeccompAction,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures the filter covers (besides the native one).
    #[serde(default)]
    pub architectures: Vec<Arch>,
    /// The newer form of `architectures`: the native arch's entry names its
    /// sub-architectures.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Vec<Arch>,
}

/// One entry of `syscalls`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: String,
    pub action: LinuxSeccompAction,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<LinuxSeccompArg>,
    /// The rule applies only if all of these hold...
    #[serde(default)]
    pub includes: Filter,
    /// ...and none of these.
    #[serde(default)]
    pub excludes: Filter,
}

/// When a rule applies: by the container's capabilities, the machine's
/// architecture (Go's names: `amd64`, `arm64`) and kernel version.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: String,
}

/// The machine a profile is resolved for.
#[derive(Clone, Debug)]
pub struct Target {
    /// Capability names (`CAP_SYS_ADMIN`) of the container's bounding set.
    pub caps: HashSet<String>,
    /// The kernel's version, (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine, for a container with `caps`.
    pub fn here(caps: &HashSet<Capability>) -> Target {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Target { caps: caps.iter().map(|c| caps::name(*c)).collect(), kernel: kernel_version(&release).unwrap_or((0, 0)) }
    }
}

/// `6.1.0-18-amd64` -> (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The machine's architecture as seccomp knows it, and its 32-bit ABIs.
fn native_arches() -> (Arch, &'static [Arch], &'static [&'static str]) {
    #[cfg(target_arch = "x86_64")]
    return (Arch::ScmpArchX86_64, &[Arch::ScmpArchX86, Arch::ScmpArchX32], &["amd64", "x86_64"]);
    #[cfg(target_arch = "aarch64")]
    return (Arch::ScmpArchAarch64, &[Arch::ScmpArchArm], &["arm64", "aarch64"]);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return (Arch::ScmpArchNative, &[], &[]);
}

impl Profile {
    /// A profile the user gave (the JSON text, as the docker CLI sends it).
    pub fn parse(json: &str) -> Result<Profile, String> {
        let profile: Profile = serde_json::from_str(json).map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
        for rule in &profile.syscalls {
            if rule.names.is_empty() && rule.name.is_empty() {
                return Err("decoding seccomp profile failed: a syscalls entry has neither names nor name".into());
            }
            for f in [&rule.includes, &rule.excludes] {
                if !f.min_kernel.is_empty() && kernel_version(&f.min_kernel).is_none() {
                    return Err(format!("decoding seccomp profile failed: minKernel {:?} is not a kernel version such as 4.8", f.min_kernel));
                }
            }
            if rule.action == LinuxSeccompAction::ScmpActNotify {
                return Err("seccomp profile: SCMP_ACT_NOTIFY needs a listener, which berth does not offer".into());
            }
        }
        if profile.default_action == LinuxSeccompAction::ScmpActNotify {
            return Err("seccomp profile: SCMP_ACT_NOTIFY needs a listener, which berth does not offer".into());
        }
        Ok(profile)
    }

    /// berth's default profile (see the module's doc).
    pub fn berth_default() -> Profile {
        let blocked = |names: &[&str], unless: &[&str]| Rule {
            names: names.iter().map(|s| s.to_string()).collect(),
            name: String::new(),
            action: LinuxSeccompAction::ScmpActErrno,
            errno_ret: Some(libc::EPERM as u32),
            args: Vec::new(),
            includes: Filter::default(),
            excludes: Filter { caps: unless.iter().map(|s| s.to_string()).collect(), ..Filter::default() },
        };
        let mut syscalls = vec![
            // Not namespaced, or gone from the kernel: refused to everyone.
            blocked(&["add_key", "keyctl", "request_key", "nfsservctl", "sysfs", "_sysctl", "uselib", "ustat", "vm86", "vm86old"], &[]),
            blocked(
                &[
                    "bpf", "fanotify_init", "lookup_dcookie", "mount", "mount_setattr", "fsopen", "fsconfig", "fsmount", "fspick",
                    "move_mount", "open_tree", "perf_event_open", "pivot_root", "quotactl", "quotactl_fd", "setns", "swapon",
                    "swapoff", "umount", "umount2", "unshare",
                ],
                &["CAP_SYS_ADMIN"],
            ),
            blocked(&["name_to_handle_at", "open_by_handle_at"], &["CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"]),
            blocked(&["clock_adjtime", "clock_settime", "settimeofday", "stime"], &["CAP_SYS_TIME"]),
            blocked(&["create_module", "delete_module", "finit_module", "get_kernel_syms", "init_module", "query_module"], &["CAP_SYS_MODULE"]),
            blocked(&["ioperm", "iopl"], &["CAP_SYS_RAWIO"]),
            blocked(&["kexec_file_load", "kexec_load", "reboot"], &["CAP_SYS_BOOT"]),
            blocked(&["get_mempolicy", "mbind", "move_pages", "set_mempolicy"], &["CAP_SYS_NICE"]),
            blocked(&["acct"], &["CAP_SYS_PACCT"]),
            blocked(&["userfaultfd"], &["CAP_SYS_PTRACE"]),
            blocked(&["vhangup"], &["CAP_SYS_TTY_CONFIG"]),
            blocked(&["syslog"], &["CAP_SYSLOG"]),
        ];
        // Tracing is allowed from 4.8 on (the seccomp bypass through ptrace
        // was closed then), as in Docker.
        let mut tracing = blocked(&["kcmp", "pidfd_getfd", "process_vm_readv", "process_vm_writev", "ptrace"], &["CAP_SYS_PTRACE"]);
        tracing.excludes.min_kernel = "4.8".into();
        syscalls.push(tracing);
        // clone with a namespace flag is a new namespace, as unshare.
        for flag in [libc::CLONE_NEWNS, libc::CLONE_NEWUTS, libc::CLONE_NEWIPC, libc::CLONE_NEWUSER, libc::CLONE_NEWPID, libc::CLONE_NEWNET, libc::CLONE_NEWCGROUP] {
            let mut rule = blocked(&["clone"], &["CAP_SYS_ADMIN"]);
            rule.args = vec![masked_eq(0, flag as u64)];
            syscalls.push(rule);
        }
        // clone3 passes its flags in memory, where a filter cannot look:
        // ENOSYS makes the C library fall back to clone, which it can.
        let mut clone3 = blocked(&["clone3"], &["CAP_SYS_ADMIN"]);
        clone3.errno_ret = Some(libc::ENOSYS as u32);
        syscalls.push(clone3);
        // `personality` stays open: Docker allows five values of its one
        // argument, and a libseccomp rule cannot compare an argument twice
        // ("none of these"), nor can the rules be ORed into that.
        Profile {
            default_action: LinuxSeccompAction::ScmpActAllow,
            default_errno_ret: None,
            architectures: Vec::new(),
            arch_map: Vec::new(),
            syscalls,
        }
    }

    /// The profile as an OCI `linux.seccomp` for `target`: the rules that
    /// apply there, with the native architecture and its 32-bit ABIs.
    pub fn to_oci(&self, target: &Target) -> LinuxSeccomp {
        let (native, subs, go_names) = native_arches();
        let mut arches = vec![native];
        match self.arch_map.iter().find(|m| m.architecture == native) {
            Some(m) => arches.extend(m.sub_architectures.iter().copied()),
            None if self.architectures.is_empty() && self.arch_map.is_empty() => arches.extend(subs.iter().copied()),
            None => arches.extend(self.architectures.iter().copied().filter(|a| *a != native && subs.contains(a))),
        }
        let has_cap = |c: &String| target.caps.contains(c);
        let is_native = |a: &String| go_names.contains(&a.as_str());
        let kernel_at_least = |v: &str| kernel_version(v).is_some_and(|min| target.kernel >= min);
        // Docker's reading: every `includes` condition holds; any `excludes` one does.
        let included = |f: &Filter| {
            f.caps.iter().all(has_cap) && (f.arches.is_empty() || f.arches.iter().any(is_native)) && (f.min_kernel.is_empty() || kernel_at_least(&f.min_kernel))
        };
        let excluded = |f: &Filter| f.caps.iter().any(has_cap) || f.arches.iter().any(is_native) || kernel_at_least(&f.min_kernel);
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| included(&r.includes) && !excluded(&r.excludes))
            .map(|r| {
                let mut names = r.names.clone();
                if !r.name.is_empty() {
                    names.push(r.name.clone());
                }
                let mut s = LinuxSyscall::default();
                s.set_names(names);
                s.set_action(r.action);
                s.set_errno_ret(r.errno_ret);
                s.set_args((!r.args.is_empty()).then(|| r.args.clone()));
                s
            })
            .collect();
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(Some(arches));
        out.set_syscalls(Some(syscalls));
        out
    }
}

/// `(arg[index] & mask) == mask`: the flag is set.
fn masked_eq(index: usize, mask: u64) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).op(LinuxSeccompOperator::ScmpCmpMaskedEq).value(mask).value_two(mask);
    // The builder fails only for a field left unset; all of them are set.
    b.build().unwrap_or_default()
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err("SCMP_ACT_NOTIFY needs a listener, which berth does not offer".into()),
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        _ => ScmpArch::Native,
    }
}

fn compare(a: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // Docker's and the OCI's form: the mask in `value`, the value in `valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
    };
    let datum = match a.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
        _ => a.value(),
    };
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

/// Builds the filter of `seccomp` (libseccomp; names this kernel's tables
/// do not know are skipped, as runc does). `no_new_privs`: whether the
/// process has it, so that loading needs no CAP_SYS_ADMIN.
pub fn compile(seccomp: &LinuxSeccomp, no_new_privs: bool) -> Result<ScmpFilterContext, String> {
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let err = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("creating the filter", e))?;
    // libseccomp sets no_new_privs itself unless told not to: that would
    // stop setuid programs in every container.
    ctx.set_ctl_nnp(no_new_privs).map_err(|e| err("no_new_privs", e))?;
    for a in seccomp.architectures().iter().flatten() {
        ctx.add_arch(arch(*a)).map_err(|e| err(&format!("architecture {a}"), e))?;
    }
    for rule in seccomp.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            // libseccomp refuses a rule that repeats the default.
            continue;
        }
        let conditions: Vec<ScmpArgCompare> = rule.args().iter().flatten().map(compare).collect();
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            ctx.add_rule_conditional(act, syscall, &conditions).map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

/// Loads a filter built by `compile` into this process (and what it execs).
pub fn load(filter: &ScmpFilterContext) -> Result<(), String> {
    filter.load().map_err(|e| format!("seccomp: loading the filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target { caps: caps.iter().map(|s| s.to_string()).collect(), kernel: (6, 1) }
    }

    fn blocked_names(s: &LinuxSeccomp) -> HashSet<String> {
        s.syscalls().iter().flatten().filter(|r| r.action() != LinuxSeccompAction::ScmpActAllow).flat_map(|r| r.names().clone()).collect()
    }

    #[test]
    fn the_default_profile_follows_the_containers_capabilities() {
        let p = Profile::berth_default();
        let plain = blocked_names(&p.to_oci(&target(&["CAP_CHOWN", "CAP_NET_RAW"])));
        for name in ["mount", "unshare", "setns", "keyctl", "reboot", "open_tree", "clone", "clone3", "bpf"] {
            assert!(plain.contains(name), "{name} is blocked by default");
        }
        assert!(!plain.contains("ptrace"), "ptrace is allowed from kernel 4.8");
        assert!(blocked_names(&p.to_oci(&Target { kernel: (4, 4), ..target(&[]) })).contains("ptrace"));
        let admin = blocked_names(&p.to_oci(&target(&["CAP_SYS_ADMIN"])));
        for name in ["mount", "unshare", "setns", "clone", "clone3", "open_tree"] {
            assert!(!admin.contains(name), "{name} is allowed with CAP_SYS_ADMIN");
        }
        assert!(admin.contains("keyctl") && admin.contains("reboot"));
        let seccomp = p.to_oci(&target(&[]));
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(seccomp.architectures().clone().unwrap_or_default(), [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]);
    }

    #[test]
    fn a_docker_profile_resolves_its_includes_and_excludes() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["chmod"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64", "arm64"]}},
                {"name": "personality", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "comment": "unknown keys are ignored"}
            ]
        }"#;
        let p = Profile::parse(json).expect("parse");
        let names = |s: &LinuxSeccomp| -> Vec<String> { s.syscalls().iter().flatten().flat_map(|r| r.names().clone()).collect() };
        let plain = p.to_oci(&target(&[]));
        assert_eq!(names(&plain), ["read", "write", "ptrace", "personality", "clone3"]);
        assert_eq!(names(&p.to_oci(&target(&["CAP_SYS_ADMIN"]))), ["read", "write", "mount", "ptrace", "personality", "clone3"]);
        assert_eq!(names(&p.to_oci(&Target { kernel: (4, 4), ..target(&[]) })), ["read", "write", "personality", "clone3"]);
        assert_eq!(plain.default_errno_ret(), Some(1));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(plain.architectures().clone().unwrap_or_default(), [Arch::ScmpArchX86_64, Arch::ScmpArchX86]);
        let personality = plain.syscalls().iter().flatten().find(|r| r.names() == &["personality"]).expect("personality");
        assert_eq!(personality.args().as_ref().map(Vec::len), Some(1));

        let e = Profile::parse("{\"defaultAction\": \"SCMP_ACT_MAYBE\"}").expect_err("bad action");
        assert!(e.starts_with("decoding seccomp profile failed:"), "{e}");
        let e = Profile::parse("not json").expect_err("not json");
        assert!(e.starts_with("decoding seccomp profile failed:"), "{e}");
        let e = Profile::parse(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#).expect_err("no names");
        assert!(e.contains("neither names nor name"), "{e}");
    }

    #[test]
    fn every_rule_of_the_default_profile_compiles() {
        let p = Profile::berth_default();
        for caps in [&[][..], &["CAP_SYS_ADMIN"][..]] {
            compile(&p.to_oci(&target(caps)), false).expect("compiles");
        }
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(kernel_version("4.8"), Some((4, 8)));
        assert_eq!(kernel_version(""), None);
    }
}
