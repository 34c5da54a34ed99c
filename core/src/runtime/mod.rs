//! Runtime primitives: mounts now; namespaces, pivot_root, cgroups,
//! capabilities and seccomp come with containers.

pub mod mount;
