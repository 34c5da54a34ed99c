//! Linux capabilities: names, numbers, and the raw calls that set them.
//!
//! One table maps Docker's names (`NET_ADMIN`, `CAP_NET_ADMIN`) to the
//! kernel's numbers and to oci-spec's enum, so the spec builder and the
//! runtime agree. The setters are raw `capset`/`prctl` calls: they run in a
//! freshly forked container process, where a small, allocation-light path is
//! what we want.

use std::collections::HashSet;
use std::io;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Every capability the kernel defines, by number (linux/capability.h).
const TABLE: &[(&str, u32, Capability)] = &[
    ("CHOWN", 0, Capability::Chown),
    ("DAC_OVERRIDE", 1, Capability::DacOverride),
    ("DAC_READ_SEARCH", 2, Capability::DacReadSearch),
    ("FOWNER", 3, Capability::Fowner),
    ("FSETID", 4, Capability::Fsetid),
    ("KILL", 5, Capability::Kill),
    ("SETGID", 6, Capability::Setgid),
    ("SETUID", 7, Capability::Setuid),
    ("SETPCAP", 8, Capability::Setpcap),
    ("LINUX_IMMUTABLE", 9, Capability::LinuxImmutable),
    ("NET_BIND_SERVICE", 10, Capability::NetBindService),
    ("NET_BROADCAST", 11, Capability::NetBroadcast),
    ("NET_ADMIN", 12, Capability::NetAdmin),
    ("NET_RAW", 13, Capability::NetRaw),
    ("IPC_LOCK", 14, Capability::IpcLock),
    ("IPC_OWNER", 15, Capability::IpcOwner),
    ("SYS_MODULE", 16, Capability::SysModule),
    ("SYS_RAWIO", 17, Capability::SysRawio),
    ("SYS_CHROOT", 18, Capability::SysChroot),
    ("SYS_PTRACE", 19, Capability::SysPtrace),
    ("SYS_PACCT", 20, Capability::SysPacct),
    ("SYS_ADMIN", 21, Capability::SysAdmin),
    ("SYS_BOOT", 22, Capability::SysBoot),
    ("SYS_NICE", 23, Capability::SysNice),
    ("SYS_RESOURCE", 24, Capability::SysResource),
    ("SYS_TIME", 25, Capability::SysTime),
    ("SYS_TTY_CONFIG", 26, Capability::SysTtyConfig),
    ("MKNOD", 27, Capability::Mknod),
    ("LEASE", 28, Capability::Lease),
    ("AUDIT_WRITE", 29, Capability::AuditWrite),
    ("AUDIT_CONTROL", 30, Capability::AuditControl),
    ("SETFCAP", 31, Capability::Setfcap),
    ("MAC_OVERRIDE", 32, Capability::MacOverride),
    ("MAC_ADMIN", 33, Capability::MacAdmin),
    ("SYSLOG", 34, Capability::Syslog),
    ("WAKE_ALARM", 35, Capability::WakeAlarm),
    ("BLOCK_SUSPEND", 36, Capability::BlockSuspend),
    ("AUDIT_READ", 37, Capability::AuditRead),
    ("PERFMON", 38, Capability::Perfmon),
    ("BPF", 39, Capability::Bpf),
    ("CHECKPOINT_RESTORE", 40, Capability::CheckpointRestore),
];

/// Docker's default capability set for a container that is not privileged.
pub const DOCKER_DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Parses a Docker capability name (`NET_ADMIN`, `CAP_NET_ADMIN`, any case).
/// `ALL` is not a capability; callers handle it.
pub fn parse(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    TABLE.iter().find(|(n, _, _)| *n == bare).map(|(_, _, c)| *c)
}

/// The kernel's number for `cap`.
pub fn number(cap: Capability) -> u32 {
    TABLE.iter().find(|(_, _, c)| *c == cap).map(|(_, n, _)| *n).unwrap_or(u32::MAX)
}

/// `CAP_X` name of `cap` (as `docker inspect` and /proc show them).
pub fn name(cap: Capability) -> String {
    TABLE.iter().find(|(_, _, c)| *c == cap).map(|(n, _, _)| format!("CAP_{n}")).unwrap_or_default()
}

/// Every capability in the table (what `--privileged` and `--cap-add ALL` grant).
pub fn all() -> Vec<Capability> {
    TABLE.iter().map(|(_, _, c)| *c).collect()
}

/// Every capability this process can still grant (its bounding set from
/// /proc/self/status): what `--privileged` and `--cap-add ALL` mean here.
/// A daemon running without, say, CAP_SYS_RESOURCE cannot hand it out.
pub fn available() -> Vec<Capability> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    TABLE.iter().filter(|(_, n, _)| *n < 64 && bnd & (1 << n) != 0).map(|(_, _, c)| *c).collect()
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A set of capabilities as the kernel's 64-bit mask, leaving out those this
/// kernel does not know (capset would refuse them).
pub fn mask(set: Option<&Capabilities>, last: u32) -> u64 {
    let mut m = 0u64;
    for cap in set.into_iter().flatten() {
        let n = number(*cap);
        if n <= last && n < 64 {
            m |= 1 << n;
        }
    }
    m
}

/// The five sets as kernel masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Masks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Masks {
    /// The masks of `caps` on a kernel whose last capability is `last`.
    pub fn of(caps: &LinuxCapabilities, last: u32) -> Masks {
        Masks {
            bounding: mask(caps.bounding().as_ref(), last),
            effective: mask(caps.effective().as_ref(), last),
            permitted: mask(caps.permitted().as_ref(), last),
            inheritable: mask(caps.inheritable().as_ref(), last),
            ambient: mask(caps.ambient().as_ref(), last),
        }
    }
}

/// Builds a `LinuxCapabilities` with `set` in bounding, effective and
/// permitted (Docker leaves inheritable and ambient empty).
pub fn docker_sets(set: &HashSet<Capability>) -> LinuxCapabilities {
    let caps: Capabilities = set.iter().copied().collect();
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(Some(Capabilities::new()));
    lc.set_ambient(Some(Capabilities::new()));
    lc
}

/// Drops every capability outside `bounding` from the bounding set. Needs
/// CAP_SETPCAP, so it runs before the user switch.
pub fn drop_bounding(bounding: u64, last: u32) -> io::Result<()> {
    for n in 0..=last.min(63) {
        if bounding & (1 << n) == 0 {
            // SAFETY: plain prctl with integer arguments.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                // EINVAL: the kernel does not know this capability.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's effective, permitted and inheritable sets, then raises
/// the ambient ones (which must be permitted and inheritable).
pub fn apply(m: &Masks) -> io::Result<()> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: m.effective as u32, permitted: m.permitted as u32, inheritable: m.inheritable as u32 },
        CapData {
            effective: (m.effective >> 32) as u32,
            permitted: (m.permitted >> 32) as u32,
            inheritable: (m.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data have the layout capset(2) expects for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    for n in 0..64u32 {
        if m.ambient & (1 << n) != 0 {
            // SAFETY: plain prctl with integer arguments.
            let rc = unsafe {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, n as libc::c_ulong, 0, 0)
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// This thread's permitted set (capget).
pub fn permitted() -> io::Result<u64> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data have the layout capget(2) expects for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data[0].permitted as u64 | (data[1].permitted as u64) << 32)
}

impl Masks {
    /// The masks limited to `have`: a process can keep only capabilities it
    /// holds (`--privileged` means every capability the runtime itself has).
    pub fn within(self, have: u64) -> Masks {
        Masks {
            bounding: self.bounding & have,
            effective: self.effective & have,
            permitted: self.permitted & have,
            inheritable: self.inheritable & have,
            ambient: self.ambient & have,
        }
    }
}

/// Whether this process has `cap` in its effective set (from /proc/self/status).
pub fn have(cap: Capability) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let n = number(cap);
    n < 64 && eff & (1 << n) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_prefix() {
        assert_eq!(parse("NET_ADMIN"), Some(Capability::NetAdmin));
        assert_eq!(parse("cap_net_admin"), Some(Capability::NetAdmin));
        assert_eq!(parse("CAP_SYS_ADMIN"), Some(Capability::SysAdmin));
        assert_eq!(parse("NOT_A_CAP"), None);
        assert_eq!(parse("ALL"), None);
        assert_eq!(number(Capability::SysAdmin), 21);
        assert_eq!(name(Capability::Chown), "CAP_CHOWN");
    }

    #[test]
    fn table_matches_oci_names() {
        // The serde name of each enum value must be the table's name: the two
        // tables (ours and oci-spec's) cannot drift apart.
        for (n, _, c) in TABLE {
            let json = serde_json::to_string(c).expect("serialize");
            assert_eq!(json, format!("\"CAP_{n}\""));
        }
        let nums: HashSet<u32> = TABLE.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(nums.len(), TABLE.len());
    }

    #[test]
    fn masks_skip_unknown_caps() {
        let set: Capabilities = [Capability::Chown, Capability::CheckpointRestore].into_iter().collect();
        assert_eq!(mask(Some(&set), 40), 1 | (1 << 40));
        assert_eq!(mask(Some(&set), 39), 1);
    }
}
