//! What berth adds to an OCI spec for its own runtime to read back: the
//! annotations that carry work done inside the container at create time, and
//! the `PATH` a process gets when the spec sets none. The engine writes them
//! (`berth_core::container::spec`); the built-in runtime and the external
//! runtime glue read them.

/// Annotation naming the user to resolve inside the container at create time
/// (`--user name[:group]`, or a bare uid whose gid and groups come from /etc/passwd).
pub const ANNOTATION_USER: &str = "io.berth.user";
/// Annotation listing `--group-add` entries (comma-separated) to resolve with the user.
pub const ANNOTATION_GROUP_ADD: &str = "io.berth.group-add";
/// Annotation asking for the built-in init (`--init`): PID 1 reaps and forwards signals.
pub const ANNOTATION_INIT: &str = "io.berth.init";

/// Docker's default `PATH` for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
