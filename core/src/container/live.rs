//! What the engine knows about containers beyond their records: the shims it
//! talks to, operations in progress, waiters, attachers waiting for a start,
//! execs, and the event bus. Lost at daemon exit; rebuilt by re-adoption.

use std::collections::{HashMap, HashSet};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::sync::mpsc::Sender;

use berth_runtime::shim::ShimClient;

use crate::events::EventBus;
use super::{CpuSample, ExecConfig, WaitCondition, WaitResult};

/// An attach made while the container was not running: the engine's end of
/// the caller's socket, joined to the shim at the next start.
pub(crate) struct PendingAttach {
    pub stream: UnixStream,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// One exec: its config and what became of it.
#[derive(Clone)]
pub(crate) struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

/// Waiters of one container: the condition and where to send the result.
pub(crate) type WaiterList = Vec<(WaitCondition, Sender<WaitResult>)>;

/// The engine's live container state.
#[derive(Default)]
pub struct Live {
    /// Containers an operation is working on (see `ContainerLock`).
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
    /// Shims of running containers, by container ID.
    pub(crate) shims: Mutex<HashMap<String, Arc<ShimClient>>>,
    /// Registered waiters, by container ID.
    pub(crate) waiters: Mutex<HashMap<String, WaiterList>>,
    /// Attaches waiting for the next start, by container ID.
    pub(crate) pending_attach: Mutex<HashMap<String, Vec<PendingAttach>>>,
    /// Execs, by exec ID.
    pub(crate) execs: Mutex<HashMap<String, ExecEntry>>,
    pub(crate) events: EventBus,
    /// When each running container's last stats sample was read, and its
    /// CPU counters: the next sample's `preread` and `precpu`.
    pub(crate) prev_stats: Mutex<HashMap<String, (String, CpuSample)>>,
}

/// Exclusive use of one container until dropped: start, stop's bookkeeping,
/// exit handling and removal never interleave on the same container.
pub(crate) struct ContainerLock<'a> {
    live: &'a Live,
    id: String,
}

impl Drop for ContainerLock<'_> {
    fn drop(&mut self) {
        let mut busy = self.live.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&self.id);
        self.live.freed.notify_all();
    }
}

impl Live {
    /// Waits until no other operation holds container `id`, then holds it.
    pub(crate) fn lock(&self, id: &str) -> ContainerLock<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while busy.contains(id) {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        busy.insert(id.to_string());
        ContainerLock { live: self, id: id.to_string() }
    }

    /// The shim of running container `id`.
    pub(crate) fn shim(&self, id: &str) -> Option<Arc<ShimClient>> {
        self.shims.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}
