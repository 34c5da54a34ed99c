//! Start, stop, kill, restart, pause, remove, rename and wait; the monitor
//! thread of each running container; restart policies on exit and at daemon
//! start; re-adoption of the shims that outlived the previous daemon.

use std::fs;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use berth_model::container::{ContainerRecord, ContainerState, Status};
use berth_runtime::cgroups::{self, Cgroups};
use berth_runtime::clock::now_rfc3339;
use berth_runtime::files::{self, Durability};
use berth_runtime::shim::{recorded_exit, ExitInfo, ShimClient, ShimOptions};

use crate::container::spec::SpecInputs;
use crate::error::{EngineError, EngineResult};
use crate::events;
use super::ContainerService;
use super::live::PendingAttach;
use super::{signal, WaitCondition, WaitResult, Waiter};

/// Default cgroup parent of containers.
pub(crate) const DEFAULT_CGROUP_PARENT: &str = "berth";
/// How long `rm -f` waits for a SIGKILLed container to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// Sets `status` and the booleans Docker keeps beside it.
pub(crate) fn set_status(state: &mut ContainerState, status: Status) {
    state.status = status;
    state.running = matches!(status, Status::Running | Status::Paused | Status::Restarting);
    state.paused = status == Status::Paused;
    state.restarting = status == Status::Restarting;
    state.dead = status == Status::Dead;
}

/// Whether the policy restarts a container that just exited with `exit_code`.
pub fn should_restart(record: &ContainerRecord, exit_code: i64) -> bool {
    if record.manually_stopped {
        return false;
    }
    let p = &record.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => exit_code != 0 && (p.maximum_retry_count == 0 || record.restart_count < p.maximum_retry_count),
        _ => false,
    }
}

/// Whether the daemon starts a stopped container when it starts itself:
/// `always` even after a manual stop, `unless-stopped` only without one.
pub fn restart_at_boot(record: &ContainerRecord) -> bool {
    let p = &record.host_config.restart_policy;
    match p.name.as_str() {
        "always" => true,
        "unless-stopped" => !record.manually_stopped,
        "on-failure" => should_restart(record, record.state.exit_code),
        _ => false,
    }
}

/// Docker's restart backoff: 100 ms doubling, capped (short here: containers
/// that crash in a loop still get their turn quickly).
pub fn restart_delay(restart_count: i64) -> Duration {
    let shift = restart_count.clamp(0, 5) as u32;
    Duration::from_millis(100u64 << shift)
}

/// The exit code Docker records for a container or exec that failed to
/// start: the runtime's 127 (not found) or 126 (not executable) when the
/// command cannot run, 128 for any other failure.
pub(crate) fn start_exit_code(command_exit_code: Option<i32>) -> i64 {
    command_exit_code.map_or(128, i64::from)
}

/// Joins a caller's socket end with a shim stream, both directions.
pub(crate) fn splice(caller: UnixStream, shim: UnixStream) -> io::Result<()> {
    let (mut c_in, mut c_out) = (caller.try_clone()?, caller);
    let (mut s_in, mut s_out) = (shim.try_clone()?, shim);
    std::thread::Builder::new().name("attach-in".into()).spawn(move || {
        let _ = io::copy(&mut c_in, &mut s_out);
        let _ = s_out.shutdown(std::net::Shutdown::Write);
    })?;
    std::thread::Builder::new().name("attach-out".into()).spawn(move || {
        let _ = io::copy(&mut s_in, &mut c_out);
        let _ = c_out.shutdown(std::net::Shutdown::Both);
    })?;
    Ok(())
}

impl ContainerService {
    /// The `Arc` this service lives in (absent only while it is being dropped).
    pub(crate) fn arc(&self) -> Option<Arc<ContainerService>> {
        self.me.upgrade()
    }

    /// `<run>/containers/<id>`: the shim's socket, pid, exit record and rootfs mount point.
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.config.run.join("containers").join(id)
    }

    /// The json-file log.
    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        self.catalog.dir(id).join(format!("{id}-json.log"))
    }

    /// The container's cgroup path (`<parent>/<id>`), relative to where the
    /// daemon sits in each hierarchy.
    fn cgroup_path(record: &ContainerRecord) -> String {
        let parent = record.host_config.cgroup_parent.trim_matches('/');
        let parent = if parent.is_empty() { DEFAULT_CGROUP_PARENT } else { parent };
        format!("{parent}/{}", record.id)
    }

    /// The container's cgroup on this host's layout.
    pub(crate) fn cgroup_of(record: &ContainerRecord) -> EngineResult<Box<dyn Cgroups>> {
        Ok(cgroups::open(&Self::cgroup_path(record))?)
    }

    /// Publishes a container event.
    pub(crate) fn emit(&self, record: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        self.live.events.publish(events::container_event(
            action,
            record.id.as_str(),
            &record.config.image,
            &record.name,
            record.config.labels.as_ref(),
            extra,
            now,
        ));
    }

    /// Stores `record`.
    pub(crate) fn save_container(&self, record: &ContainerRecord) -> EngineResult<()> {
        let tx = self.store.write()?;
        tx.put_container(record)?;
        tx.commit()?;
        Ok(())
    }

    fn must_load(&self, id: &str) -> EngineResult<ContainerRecord> {
        self.catalog.load(id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))
    }

    /// Hands `result` to the waiters of `id` whose condition is in `which`.
    pub(crate) fn notify_waiters(&self, id: &str, result: &WaitResult, which: &[WaitCondition]) {
        let mut waiters = self.live.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|(cond, tx)| {
                if which.contains(cond) {
                    let _ = tx.send(result.clone());
                    false
                } else {
                    true
                }
            });
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// A private waiter for the next exit (stop, kill, rm -f).
    fn next_exit(&self, id: &str) -> Receiver<WaitResult> {
        let (tx, rx) = channel();
        self.live
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push((WaitCondition::NextExit, tx));
        rx
    }

    // ---- start ----

    /// `docker start`. Starting a running container is a no-op (the API answers 304).
    /// Returns false when it was already running.
    pub fn start(&self, id_or_name: &str) -> EngineResult<bool> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record = self.must_load(&id)?;
        match record.state.status {
            Status::Running | Status::Restarting => return Ok(false),
            Status::Paused => {
                return Err(EngineError::Conflict("cannot start a paused container, try unpause instead".into()))
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {id} is marked for removal and cannot be started"
                )))
            }
            Status::Created | Status::Exited => {}
        }
        // A manual start begins the restart count afresh, as Docker does.
        record.restart_count = 0;
        if let Err(e) = self.start_locked(&mut record) {
            // `--rm` containers that cannot start are removed, as Docker does.
            if record.host_config.auto_remove {
                if let Err(re) = self.remove_locked(&record, Some(record.state.exit_code), true) {
                    tracing::warn!(container = %id, error = %re, "removing an --rm container that failed to start");
                }
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Starts `record`'s container; the caller holds its lock. On failure,
    /// attaches waiting for this start end with it.
    fn start_locked(&self, record: &mut ContainerRecord) -> EngineResult<()> {
        let result = self.start_inner(record);
        if result.is_err() {
            self.live.pending_attach.lock().unwrap_or_else(|e| e.into_inner()).remove(record.id.as_str());
        }
        result
    }

    fn start_inner(&self, record: &mut ContainerRecord) -> EngineResult<()> {
        // The shim moves the container into its cgroup in a few milliseconds;
        // the kernel's grace-period wait for that move starts now, in parallel
        // with the spec, the shim's exec and its setup (see `prime_attach`).
        berth_runtime::cgroups::prime_attach();
        let id = record.id.to_string();
        let netns = self.networks.setup_container_network(record)?;
        let volume_mounts = match self.volumes.mount_container_volumes(record) {
            Ok(m) => m,
            Err(e) => {
                self.clean_after_exit(record);
                return Err(e);
            }
        };
        let options = match self.prepare_start(record, netns, volume_mounts) {
            Ok(options) => options,
            Err(e) => {
                self.clean_after_exit(record);
                return Err(e);
            }
        };
        let shim = match ShimClient::spawn(&self.config.berth_exe, &options) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                record.state.error = e.to_string();
                record.state.exit_code = start_exit_code(e.command_exit_code());
                if let Err(se) = self.save_container(record) {
                    tracing::warn!(container = %id, error = %se, "recording a start failure");
                }
                self.clean_after_exit(record);
                return Err(e.into());
            }
        };
        // The PID is read before the start: a short-lived command may be gone,
        // and its shim with it, right after (the monitor then reads exit.json).
        let pid = match shim.state() {
            Ok(st) => st.pid,
            Err(e) => return Err(self.abandon_start(record, &shim, e.into())),
        };
        // Attaches made before the start see all of the output.
        let pending: Vec<PendingAttach> =
            self.live.pending_attach.lock().unwrap_or_else(|e| e.into_inner()).remove(&id).unwrap_or_default();
        for p in pending {
            match shim.attach(p.stdin, p.stdout, p.stderr) {
                Ok(s) => {
                    if let Err(e) = splice(p.stream, s) {
                        tracing::warn!(container = %id, error = %e, "joining an attach to the container");
                    }
                }
                Err(e) => tracing::warn!(container = %id, error = %e, "attaching to the container at start"),
            }
        }
        if let Err(e) = shim.start() {
            return Err(self.abandon_start(record, &shim, e.into()));
        }
        set_status(&mut record.state, Status::Running);
        record.state.pid = pid as i64;
        record.state.started_at = now_rfc3339();
        record.state.exit_code = 0;
        record.state.error.clear();
        record.state.oom_killed = false;
        record.manually_stopped = false;
        self.save_container(record)?;
        self.live.shims.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), shim.clone());
        self.spawn_monitor(&id, shim);
        self.emit(record, "start", &[]);
        Ok(())
    }

    /// The bundle (spec, config.json) and the shim's options for a start
    /// whose network and volumes are set up; writes nothing else.
    fn prepare_start(
        &self,
        record: &ContainerRecord,
        netns: crate::network::NetnsMode,
        volume_mounts: Vec<berth_model::volume::MountPoint>,
    ) -> EngineResult<ShimOptions> {
        let id = record.id.to_string();
        let config_bytes = self.images.content().read(&record.image)?;
        let image_config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| EngineError::Internal(format!("image {}: invalid config: {e}", record.image)))?;
        let state_dir = self.state_dir(&id);
        let bundle = self.catalog.dir(&id);
        self.clean_state_dir(&self.run_trash, &state_dir);
        let rootfs = state_dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(|e| EngineError::io(format!("creating {}", rootfs.display()), e))?;
        let cgroup_path = Self::cgroup_path(record);
        let parent = cgroup_path.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        let spec = crate::container::spec::build(&SpecInputs {
            record,
            image_config: &image_config,
            rootfs: rootfs.clone(),
            container_dir: bundle.clone(),
            netns,
            cgroup_parent: parent,
            volume_mounts,
            link_env: self.networks.link_env(record),
        });
        let spec = spec?;
        let json = serde_json::to_vec(&spec)
            .map_err(|e| EngineError::Internal(format!("encoding the OCI spec of {id}: {e}")))?;
        let spec_path = bundle.join("config.json");
        files::replace(&spec_path, &json, 0o600, Durability::Renamed)
            .map_err(|e| EngineError::io(format!("writing {}", spec_path.display()), e))?;
        let plan = self
            .storage
            .mount_plan(&record.rw_layer, true)
            .map_err(|e| crate::error::driver_error(&format!("container {id}: its writable layer"), e))?;
        let log_opts = &record.host_config.log_config.config;
        let runtime = match record.host_config.runtime.as_str() {
            "" | "berth" => None,
            other => Some(other.to_string()),
        };
        Ok(ShimOptions {
            id: record.id.clone(),
            bundle,
            state_dir: state_dir.clone(),
            rootfs: plan,
            log_path: self.log_path(&id),
            log_max_size: log_opts.get("max-size").and_then(|v| super::create::parse_size(v)),
            log_max_files: log_opts.get("max-file").and_then(|v| v.parse().ok()).unwrap_or(1),
            tty: record.config.tty,
            open_stdin: record.config.open_stdin,
            stdin_once: record.config.stdin_once,
            runtime,
            cgroup_path,
        })
    }

    /// Undoes a start that failed after the shim was spawned and records why.
    fn abandon_start(&self, record: &mut ContainerRecord, shim: &ShimClient, e: EngineError) -> EngineError {
        let _ = shim.kill(libc::SIGKILL);
        let _ = shim.wait();
        record.state.error = e.to_string();
        record.state.exit_code = start_exit_code(e.command_exit_code());
        if let Err(se) = self.save_container(record) {
            tracing::warn!(container = %record.id, error = %se, "recording a start failure");
        }
        self.clean_after_exit(record);
        e
    }

    /// Removes a previous run's state dir (never while a shim uses it) through
    /// `trash`, the one beside it.
    fn clean_state_dir(&self, trash: &berth_runtime::trash::Trash, state_dir: &Path) {
        let rootfs = state_dir.join("rootfs");
        if berth_runtime::mount::is_mount_point(&rootfs) {
            if let Err(e) = berth_runtime::mount::unmount(&rootfs) {
                // Removing it now would delete the container's files through the mount.
                tracing::warn!(path = %rootfs.display(), error = %e, "unmounting a leftover rootfs; its state dir stays");
                return;
            }
        }
        trash.put_or_warn(state_dir, "removing a container's old state");
    }

    /// What is left of a run once its process is gone: the cgroup (the shim
    /// removes it too; whoever is second finds nothing), the network
    /// namespace and endpoints, the volume mounts.
    fn clean_after_exit(&self, record: &mut ContainerRecord) {
        if let Err(e) = Self::cgroup_of(record).and_then(|cg| cg.destroy().map_err(Into::into)) {
            tracing::debug!(container = %record.id, error = %e, "removing the container's cgroup");
        }
        self.networks.teardown_container_network(record);
        self.volumes.unmount_container_volumes(record);
    }

    /// Starts the thread that waits for the container's exit.
    fn spawn_monitor(&self, id: &str, shim: Arc<ShimClient>) {
        let Some(me) = self.arc() else { return };
        let weak = Arc::downgrade(&me);
        let id = id.to_string();
        let name = format!("monitor-{}", &id[..12.min(id.len())]);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let exit = match shim.wait() {
                Ok(e) => e,
                // A shim that finished before anyone waited left its exit on disk.
                Err(e) => match recorded_exit(&shim.state_dir) {
                    Some(exit) => exit,
                    None => {
                        tracing::warn!(container = %id, error = %e, "lost the container's shim and its exit status");
                        ExitInfo { exit_code: 255, oom_killed: false, finished_at: now_rfc3339() }
                    }
                },
            };
            if let Some(engine) = weak.upgrade() {
                engine.handle_exit(&id, exit);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a container monitor thread");
        }
    }

    /// Records an exit, then restarts, removes or leaves the container.
    pub(crate) fn handle_exit(&self, id: &str, exit: ExitInfo) {
        if let Err(e) = self.handle_exit_inner(id, exit) {
            tracing::error!(container = %id, error = %e, "recording the container's exit");
        }
    }

    fn handle_exit_inner(&self, id: &str, exit: ExitInfo) -> EngineResult<()> {
        let restart = {
            let _g = self.live.lock(id);
            let Some(mut record) = self.catalog.load(id)? else { return Ok(()) };
            if !matches!(record.state.status, Status::Running | Status::Paused) {
                return Ok(());
            }
            self.live.shims.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            self.record_exit(&mut record, &exit);
            let result = WaitResult { status_code: exit.exit_code, error: None };
            if should_restart(&record, exit.exit_code) {
                set_status(&mut record.state, Status::Restarting);
                self.save_container(&record)?;
                self.notify_waiters(id, &result, &[WaitCondition::NotRunning, WaitCondition::NextExit]);
                Some(record.restart_count)
            } else if record.host_config.auto_remove {
                self.notify_waiters(id, &result, &[WaitCondition::NotRunning, WaitCondition::NextExit]);
                self.remove_locked(&record, Some(exit.exit_code), true)?;
                None
            } else {
                self.save_container(&record)?;
                self.notify_waiters(id, &result, &[WaitCondition::NotRunning, WaitCondition::NextExit]);
                None
            }
        };
        if let Some(count) = restart {
            self.schedule_restart(id, restart_delay(count));
        }
        Ok(())
    }

    /// Sets the exited state, cleans up and publishes `oom`/`die`.
    fn record_exit(&self, record: &mut ContainerRecord, exit: &ExitInfo) {
        set_status(&mut record.state, Status::Exited);
        record.state.pid = 0;
        record.state.exit_code = exit.exit_code;
        record.state.oom_killed = exit.oom_killed;
        record.state.finished_at = if exit.finished_at.is_empty() { now_rfc3339() } else { exit.finished_at.clone() };
        self.clean_after_exit(record);
        if exit.oom_killed {
            self.emit(record, "oom", &[]);
        }
        self.emit(record, "die", &[("exitCode", exit.exit_code.to_string())]);
    }

    /// Starts a restarting container again after `delay`.
    fn schedule_restart(&self, id: &str, delay: Duration) {
        let Some(me) = self.arc() else { return };
        let weak = Arc::downgrade(&me);
        let id = id.to_string();
        let spawned = std::thread::Builder::new().name("restart".into()).spawn(move || {
            std::thread::sleep(delay);
            let Some(engine) = weak.upgrade() else { return };
            if let Err(e) = engine.policy_restart(&id) {
                tracing::warn!(container = %id, error = %e, "restarting the container (restart policy)");
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a restart thread");
        }
    }

    fn policy_restart(&self, id: &str) -> EngineResult<()> {
        let _g = self.live.lock(id);
        let Some(mut record) = self.catalog.load(id)? else { return Ok(()) };
        // Stopped or removed meanwhile.
        if record.state.status != Status::Restarting || record.manually_stopped {
            return Ok(());
        }
        record.restart_count += 1;
        if let Err(e) = self.start_locked(&mut record) {
            set_status(&mut record.state, Status::Exited);
            record.state.error = e.to_string();
            self.save_container(&record)?;
            let result = WaitResult { status_code: record.state.exit_code, error: Some(e.to_string()) };
            self.notify_waiters(id, &result, &[WaitCondition::NotRunning]);
            return Err(e);
        }
        Ok(())
    }

    // ---- re-adoption ----

    /// At daemon start: reconnects to the shims of running containers,
    /// records the exits that happened while no daemon watched, applies the
    /// restart policies, and removes container state no record names.
    pub(crate) fn readopt_containers(&self) -> EngineResult<()> {
        let records = self.catalog.all()?;
        let mut to_start = Vec::new();
        for mut record in records {
            let id = record.id.to_string();
            if record.state.is_active() {
                let state_dir = self.state_dir(&id);
                let mut exit = None;
                match ShimClient::connect(&state_dir) {
                    Ok(shim) => match shim.state() {
                        Ok(st) if st.exit.is_none() => {
                            if record.state.status == Status::Restarting {
                                set_status(&mut record.state, Status::Running);
                            }
                            record.state.pid = st.pid as i64;
                            self.save_container(&record)?;
                            let shim = Arc::new(shim);
                            self.live.shims
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.clone(), shim.clone());
                            self.spawn_monitor(&id, shim);
                            self.networks.readopt_container_network(&record);
                            tracing::info!(container = %id, "re-adopted a running container");
                            continue;
                        }
                        Ok(st) => exit = st.exit,
                        Err(e) => tracing::info!(container = %id, error = %e, "the container's shim does not answer"),
                    },
                    Err(e) => tracing::info!(container = %id, error = %e, "the container's shim is gone"),
                }
                let exit = exit.or_else(|| recorded_exit(&state_dir)).unwrap_or(ExitInfo {
                    exit_code: if record.state.status == Status::Restarting { record.state.exit_code } else { 255 },
                    oom_killed: false,
                    finished_at: now_rfc3339(),
                });
                self.record_exit(&mut record, &exit);
                self.save_container(&record)?;
                tracing::info!(container = %id, exit_code = exit.exit_code, "the container exited while the daemon was away");
            }
            if record.state.status == Status::Exited && restart_at_boot(&record) {
                to_start.push(id);
            } else if record.state.status == Status::Exited && record.host_config.auto_remove {
                let _g = self.live.lock(&id);
                if let Err(e) = self.remove_locked(&record, Some(record.state.exit_code), true) {
                    tracing::warn!(container = %id, error = %e, "removing an exited --rm container");
                }
            }
        }
        self.remove_orphan_container_dirs()?;
        if !to_start.is_empty() {
            let Some(me) = self.arc() else { return Ok(()) };
            let weak = Arc::downgrade(&me);
            let spawned = std::thread::Builder::new().name("boot-restart".into()).spawn(move || {
                for id in to_start {
                    let Some(engine) = weak.upgrade() else { return };
                    let started = (|| {
                        let _g = engine.live.lock(&id);
                        let Some(mut record) = engine.catalog.load(&id)? else { return Ok(()) };
                        if record.state.status != Status::Exited {
                            return Ok(());
                        }
                        engine.start_locked(&mut record)
                    })();
                    if let Err(e) = started {
                        tracing::warn!(container = %id, error = %e, "restarting a container at daemon start");
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the boot restart thread");
            }
        }
        Ok(())
    }

    /// Container directories in root and run that no record names (a crash
    /// during create or rm).
    fn remove_orphan_container_dirs(&self) -> EngineResult<()> {
        let known: std::collections::HashSet<String> =
            self.catalog.all()?.into_iter().map(|c| c.id.to_string()).collect();
        let bases = [(self.config.root.join("containers"), &self.root_trash), (self.config.run.join("containers"), &self.run_trash)];
        for (base, trash) in bases {
            let Ok(entries) = fs::read_dir(&base) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::info!(path = %e.path().display(), "removing the state of a container the store does not know");
                    self.clean_state_dir(trash, &e.path());
                }
            }
        }
        Ok(())
    }

    // ---- stop, kill, restart ----

    /// `docker stop`: the stop signal, `timeout` seconds (container's
    /// StopTimeout, else 10), then SIGKILL. Returns false when it was not running.
    pub fn stop(
        &self,
        id_or_name: &str,
        signal_name: Option<&str>,
        timeout: Option<i64>,
    ) -> EngineResult<bool> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let (rx, shim, record) = {
            let _g = self.live.lock(&id);
            let mut record = self.must_load(&id)?;
            match record.state.status {
                Status::Restarting => {
                    // No process: cancel the pending restart.
                    record.manually_stopped = true;
                    set_status(&mut record.state, Status::Exited);
                    self.save_container(&record)?;
                    let result = WaitResult { status_code: record.state.exit_code, error: None };
                    self.notify_waiters(&id, &result, &[WaitCondition::NotRunning]);
                    self.emit(&record, "stop", &[]);
                    return Ok(true);
                }
                Status::Running | Status::Paused => {}
                _ => return Ok(false),
            }
            let sig_name = signal_name
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| record.config.stop_signal.clone().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| "SIGTERM".into());
            let sig = signal::parse(&sig_name)?;
            record.manually_stopped = true;
            self.save_container(&record)?;
            let Some(shim) = self.live.shim(&id) else { return Ok(false) };
            let rx = self.next_exit(&id);
            if let Err(e) = shim.kill(sig) {
                tracing::debug!(container = %id, error = %e, "sending the stop signal (the container may have exited)");
            }
            self.emit(&record, "kill", &[("signal", sig.to_string())]);
            if record.state.status == Status::Paused {
                self.thaw(&mut record)?;
            }
            (rx, shim, record)
        };
        let timeout = timeout.or(record.config.stop_timeout).unwrap_or(10);
        let exited =
            if timeout < 0 { rx.recv().is_ok() } else { rx.recv_timeout(Duration::from_secs(timeout as u64)).is_ok() };
        if !exited {
            tracing::info!(container = %id, timeout, "the container did not stop in time; sending SIGKILL");
            // The same registration: an exit between the timeout and the kill is not missed.
            if self.live.shim(&id).is_some() {
                let _ = shim.kill(libc::SIGKILL);
                self.emit(&record, "kill", &[("signal", libc::SIGKILL.to_string())]);
                if rx.recv_timeout(KILL_WAIT).is_err() {
                    return Err(EngineError::Internal(format!(
                        "container {id} did not exit within {}s of SIGKILL",
                        KILL_WAIT.as_secs()
                    )));
                }
            }
        }
        self.emit(&record, "stop", &[]);
        Ok(true)
    }

    /// `docker kill -s SIGNAL` (name like `KILL`/`SIGKILL` or number).
    pub fn kill(&self, id_or_name: &str, signal_name: &str) -> EngineResult<()> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let sig = signal::parse(if signal_name.is_empty() { "SIGKILL" } else { signal_name })?;
        let exit = {
            let _g = self.live.lock(&id);
            let mut record = self.must_load(&id)?;
            let shim = match record.state.status {
                Status::Running | Status::Paused => self.live.shim(&id),
                _ => None,
            };
            let Some(shim) = shim else {
                return Err(EngineError::Conflict(format!("Container {id} is not running")));
            };
            // A killed container stays down under `always`/`unless-stopped`, as in Docker.
            record.manually_stopped = true;
            self.save_container(&record)?;
            // Registered before the signal, so the exit cannot slip past.
            let exit = (sig == libc::SIGKILL).then(|| self.next_exit(&id));
            shim.kill(sig)?;
            self.emit(&record, "kill", &[("signal", sig.to_string())]);
            let stop_sig =
                record.config.stop_signal.as_deref().and_then(|s| signal::parse(s).ok()).unwrap_or(libc::SIGTERM);
            if record.state.status == Status::Paused && (sig == libc::SIGKILL || sig == stop_sig) {
                self.thaw(&mut record)?;
            }
            exit
        };
        // As dockerd: a SIGKILL returns once the container is down, so an
        // inspect right after shows `exited` and 137; other signals return at once.
        if let Some(rx) = exit {
            if rx.recv_timeout(KILL_WAIT).is_err() && self.live.shim(&id).is_some() {
                return Err(EngineError::Internal(format!("container {id} did not exit within {}s of SIGKILL", KILL_WAIT.as_secs())));
            }
        }
        Ok(())
    }

    /// `docker restart`.
    pub fn restart(&self, id_or_name: &str, timeout: Option<i64>) -> EngineResult<()> {
        let record = self.catalog.lookup(id_or_name)?;
        self.stop(record.id.as_str(), None, timeout)?;
        self.start(record.id.as_str())?;
        if let Some(r) = self.catalog.load(record.id.as_str())? {
            self.emit(&r, "restart", &[]);
        }
        Ok(())
    }

    // ---- pause ----

    /// `docker pause` (cgroup freezer).
    pub fn pause(&self, id_or_name: &str) -> EngineResult<()> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record = self.must_load(&id)?;
        match record.state.status {
            Status::Running => {}
            Status::Paused => return Err(EngineError::Conflict(format!("Container {id} is already paused"))),
            _ => return Err(EngineError::Conflict(format!("Container {id} is not running"))),
        }
        Self::cgroup_of(&record)?.freeze()?;
        set_status(&mut record.state, Status::Paused);
        self.save_container(&record)?;
        self.emit(&record, "pause", &[]);
        Ok(())
    }

    /// `docker unpause`.
    pub fn unpause(&self, id_or_name: &str) -> EngineResult<()> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record = self.must_load(&id)?;
        if record.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!("Container {id} is not paused")));
        }
        self.thaw(&mut record)
    }

    /// Thaws a paused container (the caller holds its lock).
    fn thaw(&self, record: &mut ContainerRecord) -> EngineResult<()> {
        Self::cgroup_of(record)?.thaw()?;
        set_status(&mut record.state, Status::Running);
        self.save_container(record)?;
        self.emit(record, "unpause", &[]);
        Ok(())
    }

    // ---- remove, rename ----

    /// `docker rm` (`force` kills a running one; `volumes` removes anonymous
    /// volumes once volumes exist). Leaves no mount, cgroup, shim or state.
    pub fn remove(&self, id_or_name: &str, force: bool, volumes: bool) -> EngineResult<()> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        // The exit to wait for and the shim to see gone, when `-f` kills it.
        let killed = {
            let _g = self.live.lock(&id);
            let mut record = self.must_load(&id)?;
            if record.state.is_active() {
                if !force {
                    return Err(EngineError::Conflict(format!(
                        "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
                    )));
                }
                record.manually_stopped = true;
                match (record.state.status, self.live.shim(&id)) {
                    (Status::Running | Status::Paused, Some(shim)) => {
                        let rx = self.next_exit(&id);
                        let shim_pid = berth_runtime::shim::shim_pid(&self.state_dir(&id));
                        self.save_container(&record)?;
                        if let Err(e) = shim.kill(libc::SIGKILL) {
                            tracing::debug!(container = %id, error = %e, "killing the container for rm -f");
                        }
                        self.emit(&record, "kill", &[("signal", libc::SIGKILL.to_string())]);
                        if record.state.status == Status::Paused {
                            let _ = Self::cgroup_of(&record).and_then(|cg| cg.thaw().map_err(Into::into));
                        }
                        Some((rx, shim_pid))
                    }
                    _ => {
                        // Restarting, or no shim: nothing runs.
                        set_status(&mut record.state, Status::Exited);
                        self.save_container(&record)?;
                        None
                    }
                }
            } else {
                None
            }
        };
        if let Some((rx, shim_pid)) = killed {
            if rx.recv_timeout(KILL_WAIT).is_err() {
                return Err(EngineError::Internal(format!(
                    "could not kill container {id}: it did not exit within {}s of SIGKILL",
                    KILL_WAIT.as_secs()
                )));
            }
            // `rm -f` leaves nothing running: the shim reports the exit before
            // it unmounts and removes the cgroup, so it may still be at it.
            if let Some(pid) = shim_pid {
                if !berth_runtime::shim::wait_gone(pid, KILL_WAIT) {
                    tracing::warn!(container = %id, shim = pid, "the shim is still running after the container's exit");
                }
            }
        }
        let _g = self.live.lock(&id);
        let Some(record) = self.catalog.load(&id)? else { return Ok(()) };
        if record.state.is_active() {
            return Err(EngineError::Conflict(format!(
                "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
            )));
        }
        self.remove_locked(&record, None, volumes)
    }

    /// Deletes the record, then the files: state dirs, cgroup, writable
    /// layer. The caller holds the lock and the container has no process.
    /// `volumes`: anonymous volumes go too (`rm -v`, `--rm`).
    pub(crate) fn remove_locked(&self, record: &ContainerRecord, exit_code: Option<i64>, volumes: bool) -> EngineResult<()> {
        let id = record.id.to_string();
        let tx = self.store.write()?;
        tx.delete_container(&id)?;
        tx.commit()?;
        // The record is gone first: a crash now leaves files the next start removes.
        self.live.pending_attach.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.live.execs.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, x| x.container_id != id);
        self.live.prev_stats.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.live.shims.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.clean_state_dir(&self.run_trash, &self.state_dir(&id));
        let mut gone = record.clone();
        self.clean_after_exit(&mut gone);
        if let Err(e) = self.volumes.release_container_volumes(&gone, volumes) {
            tracing::warn!(container = %id, error = %e, "releasing the container's volumes");
        }
        let layer = self
            .storage
            .remove(&record.rw_layer)
            .map_err(|e| crate::error::driver_error(&format!("removing the writable layer of container {id}"), e));
        self.root_trash.put_or_warn(&self.catalog.dir(&id), "removing the container's directory; the next start removes it");
        self.emit(record, "destroy", &[]);
        let result = WaitResult { status_code: exit_code.unwrap_or(record.state.exit_code), error: None };
        self.notify_waiters(
            &id,
            &result,
            &[WaitCondition::Removed, WaitCondition::NotRunning, WaitCondition::NextExit],
        );
        layer
    }

    /// `docker rename`.
    pub fn rename(&self, id_or_name: &str, new_name: &str) -> EngineResult<()> {
        let new_name = super::names::validate(new_name)?;
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let tx = self.store.write()?;
        let mut record = tx.container(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        if record.name == new_name {
            return Err(EngineError::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = tx.containers()?.into_iter().find(|c| c.name == new_name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let old = std::mem::replace(&mut record.name, new_name);
        tx.put_container(&record)?;
        tx.commit()?;
        self.emit(&record, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    // ---- wait ----

    /// Registers a waiter now (before returning), so a `wait` posted before
    /// `start` sees the next exit.
    pub fn wait(&self, id_or_name: &str, condition: WaitCondition) -> EngineResult<Waiter> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let (tx, rx) = channel();
        // Under the waiters' lock, so an exit recorded now is either seen
        // here or delivered to the registration.
        let mut waiters = self.live.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.must_load(&id)?;
        if condition == WaitCondition::NotRunning && !record.state.is_active() {
            let _ = tx.send(WaitResult { status_code: record.state.exit_code, error: None });
        } else {
            waiters.entry(id).or_default().push((condition, tx));
        }
        Ok(Waiter { rx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::container::{ContainerConfig, HostConfig, RestartPolicy};

    fn record(policy: &str, max: i64, count: i64, manual: bool) -> ContainerRecord {
        ContainerRecord {
            id: "a".repeat(64).parse().unwrap(),
            name: "x".into(),
            created: String::new(),
            image: berth_model::Digest::of(b"i"),
            path: "sh".into(),
            args: vec![],
            config: ContainerConfig::default(),
            host_config: HostConfig {
                restart_policy: RestartPolicy { name: policy.into(), maximum_retry_count: max },
                ..Default::default()
            },
            state: ContainerState::default(),
            restart_count: count,
            rw_layer: String::new(),
            manually_stopped: manual,
            networks: Default::default(),
            ports: Default::default(),
            sandbox_key: String::new(),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn restart_policies_decide_like_docker() {
        assert!(!should_restart(&record("no", 0, 0, false), 1));
        assert!(should_restart(&record("always", 0, 5, false), 0));
        assert!(!should_restart(&record("always", 0, 0, true), 0), "manual stop wins");
        assert!(should_restart(&record("unless-stopped", 0, 0, false), 0));
        assert!(!should_restart(&record("on-failure", 2, 0, false), 0), "success is not a failure");
        assert!(should_restart(&record("on-failure", 2, 0, false), 1));
        assert!(should_restart(&record("on-failure", 2, 1, false), 1));
        assert!(!should_restart(&record("on-failure", 2, 2, false), 1), "exactly N restarts");
        assert!(should_restart(&record("on-failure", 0, 100, false), 3), "no maximum");
    }

    #[test]
    fn boot_restarts() {
        assert!(restart_at_boot(&record("always", 0, 0, true)));
        assert!(!restart_at_boot(&record("unless-stopped", 0, 0, true)));
        assert!(restart_at_boot(&record("unless-stopped", 0, 0, false)));
        assert!(!restart_at_boot(&record("no", 0, 0, false)));
    }

    #[test]
    fn backoff_doubles_from_100ms_and_is_capped() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(1), Duration::from_millis(200));
        assert_eq!(restart_delay(50), Duration::from_millis(3200));
    }

    #[test]
    fn start_errors_map_to_dockers_codes() {
        use berth_runtime::shim::ShimError;
        let not_found = EngineError::from(ShimError::Command { message: "exec: \"nosuch\": executable file not found in $PATH".into(), exit_code: 127 });
        assert_eq!(start_exit_code(not_found.command_exit_code()), 127);
        assert_eq!(not_found.kind(), crate::error::ErrorKind::InvalidArgument);
        let not_executable = EngineError::from(berth_runtime::RuntimeError::Command { message: "exec /bin/x: permission denied".into(), exit_code: 126 });
        assert_eq!(start_exit_code(not_executable.command_exit_code()), 126);
        assert_eq!(not_executable.kind(), crate::error::ErrorKind::InvalidArgument);
        // Any other failure is the engine's, whatever its words say.
        let setup = EngineError::from(ShimError::Start("mounting /proc: no such file or directory".into()));
        assert_eq!(start_exit_code(setup.command_exit_code()), 128);
        assert_eq!(setup.kind(), crate::error::ErrorKind::Internal);
    }

    #[test]
    fn status_flags_follow_status() {
        let mut s = ContainerState::default();
        set_status(&mut s, Status::Paused);
        assert!(s.running && s.paused && !s.restarting);
        set_status(&mut s, Status::Exited);
        assert!(!s.running && !s.paused);
    }
}
