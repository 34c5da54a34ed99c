//! cgroups for containers, on v1, v2 and hybrid hosts (the layout is detected
//! per controller: this machine has v1 controllers and a v2 mount with only
//! hugetlb).

use oci_spec::runtime::LinuxResources;

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

/// One container's cgroup (`<parent>/<id>` in every controller).
pub struct Cgroup {
    /// Path relative to each controller's mount, e.g. `berth/<id>`.
    pub path: String,
}

impl Cgroup {
    /// The cgroup at `path` (relative to the controllers' mounts); nothing is created yet.
    pub fn new(path: &str) -> Cgroup {
        Cgroup { path: path.to_string() }
    }

    /// Creates the cgroup in every controller and applies `resources`.
    pub fn create(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        let _ = resources;
        todo!("RUNTIME helper")
    }

    /// Moves `pid` into the cgroup.
    pub fn add_task(&self, pid: i32) -> Result<(), RuntimeError> {
        let _ = pid;
        todo!("RUNTIME helper")
    }

    /// `docker update`: applies new limits to a live cgroup.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), RuntimeError> {
        let _ = resources;
        todo!("RUNTIME helper")
    }

    /// `docker pause`: freezes every process (freezer).
    pub fn freeze(&self) -> Result<(), RuntimeError> {
        todo!("RUNTIME helper")
    }

    /// `docker unpause`.
    pub fn thaw(&self) -> Result<(), RuntimeError> {
        todo!("RUNTIME helper")
    }

    /// Current usage.
    pub fn stats(&self) -> Result<CgroupStats, RuntimeError> {
        todo!("RUNTIME helper")
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> Result<bool, RuntimeError> {
        todo!("RUNTIME helper")
    }

    /// PIDs of every process in the cgroup (`docker top`).
    pub fn pids(&self) -> Result<Vec<i32>, RuntimeError> {
        todo!("RUNTIME helper")
    }

    /// Removes the cgroup from every controller (it must be empty).
    pub fn destroy(&self) -> Result<(), RuntimeError> {
        todo!("RUNTIME helper")
    }
}
