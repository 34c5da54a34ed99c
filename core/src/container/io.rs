//! A container's streams: logs (json-file), attach, resize and exec.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use berth_model::container::Status;
use berth_runtime::shim::ExecRequest;
use berth_runtime::shim::jsonlog::{self, ReadConfig, Stream};

use crate::error::{EngineError, EngineResult};
use super::{Attachment, ExecConfig, ExecDetails, LogEntry, LogsOptions, StreamKind};
use super::ContainerService;
use super::live::{ExecEntry, PendingAttach};

/// Entries buffered between the log reader thread and the caller.
const LOG_BUFFER: usize = 256;

/// Unix seconds (fractional) as a UTC time.
fn time_of(secs: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    let whole = secs.floor();
    chrono::DateTime::from_timestamp(whole as i64, ((secs - whole) * 1e9) as u32)
}

/// A fresh 64-hex ID.
pub(crate) fn random_id() -> EngineResult<String> {
    Ok(hex::encode(crate::ids::random_bytes(32)?))
}

impl ContainerService {
    /// `docker logs`: entries in order; with `follow` the iterator blocks for
    /// new ones and ends when the container stops.
    pub fn logs(
        &self,
        id_or_name: &str,
        options: &LogsOptions,
    ) -> EngineResult<Box<dyn Iterator<Item = std::io::Result<LogEntry>> + Send>> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        if !options.stdout && !options.stderr {
            return Err(EngineError::InvalidArgument("You must choose at least one stream".into()));
        }
        let path = self.log_path(&id);
        let config = ReadConfig {
            since: options.since.filter(|s| *s > 0.0).and_then(time_of),
            until: options.until.filter(|s| *s > 0.0).and_then(time_of),
            tail: options.tail,
            follow: options.follow,
        };
        let (want_out, want_err) = (options.stdout, options.stderr);
        let (tx, rx) = sync_channel::<std::io::Result<LogEntry>>(LOG_BUFFER);
        let weak = self.arc().map(|a| Arc::downgrade(&a));
        std::thread::Builder::new()
            .name("logs".into())
            .spawn(move || {
                let mut running =
                    || weak.as_ref().and_then(|w| w.upgrade()).is_some_and(|e| e.live.shim(&id).is_some());
                let sink_tx = tx.clone();
                let mut sink = |entry: jsonlog::Entry| {
                    let stream = match entry.stream {
                        Stream::Stdout if want_out => StreamKind::Stdout,
                        Stream::Stderr if want_err => StreamKind::Stderr,
                        _ => return true,
                    };
                    let e = LogEntry { stream, time: jsonlog::format_time(&entry.time), bytes: entry.log.into_bytes() };
                    sink_tx.send(Ok(e)).is_ok()
                };
                if let Err(e) = jsonlog::read(&path, &config, &mut running, &mut sink) {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string())));
                }
            })
            .map_err(|e| EngineError::io("starting the log reader", e))?;
        Ok(Box::new(rx.into_iter()))
    }

    /// `docker attach` / `run -a`: a stream joined to the container's stdio.
    pub fn attach(
        &self,
        id_or_name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> EngineResult<Attachment> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let tty = record.config.tty;
        let stream = match (record.state.status, self.live.shim(&id)) {
            (Status::Running | Status::Paused, Some(shim)) => shim.attach(stdin, stdout, stderr)?,
            (Status::Removing | Status::Dead, _) => {
                return Err(EngineError::Conflict(format!("container {id} is being removed: cannot attach")))
            }
            _ => {
                // Not running: joined to the shim at the next start (`run -a`, `start -a`).
                let (ours, theirs) =
                    UnixStream::pair().map_err(|e| EngineError::io("creating an attach socket pair", e))?;
                self.live.pending_attach
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(id.clone())
                    .or_default()
                    .push(PendingAttach { stream: ours, stdin, stdout, stderr });
                theirs
            }
        };
        self.emit(&record, "attach", &[]);
        Ok(Attachment { stream, tty })
    }

    /// `POST /containers/{id}/resize`.
    pub fn resize(&self, id_or_name: &str, rows: u16, cols: u16) -> EngineResult<()> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        match self.live.shim(&id) {
            Some(shim) => Ok(shim.resize(rows, cols)?),
            None => Err(EngineError::Conflict(format!("Container {id} is not running"))),
        }
    }

    /// `POST /containers/{id}/exec`: registers an exec; returns its ID.
    pub fn create_exec(&self, id_or_name: &str, config: ExecConfig) -> EngineResult<String> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        match record.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is paused, unpause the container before exec"
                )))
            }
            _ => return Err(EngineError::Conflict(format!("container {id} is not running"))),
        }
        if config.cmd.is_empty() {
            return Err(EngineError::InvalidArgument("No exec command specified".into()));
        }
        let exec_id = random_id()?;
        let action = format!("exec_create: {}", config.cmd.join(" "));
        self.live.execs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            exec_id.clone(),
            ExecEntry {
                id: exec_id.clone(),
                container_id: id,
                config,
                running: false,
                started: false,
                exit_code: None,
                pid: 0,
            },
        );
        self.emit(&record, &action, &[("execID", exec_id.clone())]);
        Ok(exec_id)
    }

    fn exec_entry(&self, exec_id: &str) -> EngineResult<ExecEntry> {
        self.live.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(exec_id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {exec_id}")))
    }

    /// `POST /exec/{id}/start`: runs it; the stream is `None` when detached.
    pub fn start_exec(&self, exec_id: &str, detach: bool) -> EngineResult<Option<Attachment>> {
        let entry = self.exec_entry(exec_id)?;
        let cid = entry.container_id.clone();
        let record =
            self.catalog.load(&cid)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {cid}")))?;
        let shim = match (record.state.status, self.live.shim(&cid)) {
            (Status::Running, Some(s)) => s,
            (Status::Paused, _) => {
                return Err(EngineError::Conflict(format!(
                    "Container {cid} is paused, unpause the container before exec"
                )))
            }
            _ => return Err(EngineError::Conflict(format!("container {cid} is not running"))),
        };
        {
            let mut execs = self.live.execs.lock().unwrap_or_else(|e| e.into_inner());
            let e = execs
                .get_mut(exec_id)
                .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {exec_id}")))?;
            if e.started {
                return Err(EngineError::Conflict(format!("Exec command {exec_id} has already run")));
            }
            e.started = true;
        }
        let spec_path = self.catalog.dir(&cid).join("config.json");
        let spec_bytes =
            std::fs::read(&spec_path).map_err(|e| EngineError::io(format!("reading {}", spec_path.display()), e))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&spec_bytes)
            .map_err(|e| EngineError::Internal(format!("{}: invalid OCI spec: {e}", spec_path.display())))?;
        let c = &entry.config;
        let process = crate::container::spec::exec_process(
            &spec,
            &c.cmd,
            c.env.as_deref().unwrap_or_default(),
            &c.user,
            &c.working_dir,
            c.tty,
            c.privileged,
        )?;
        let request = ExecRequest { exec_id: exec_id.to_string(), process, tty: c.tty, stdin: c.attach_stdin };
        let (pid, stream) = match shim.exec(&request) {
            Ok(x) => x,
            Err(e) => {
                if let Some(x) = self.live.execs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(exec_id) {
                    x.exit_code = Some(super::lifecycle::start_exit_code(e.command_exit_code()));
                }
                return Err(e.into());
            }
        };
        if let Some(x) = self.live.execs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(exec_id) {
            x.running = true;
            x.pid = pid as i64;
        }
        self.emit(&record, &format!("exec_start: {}", c.cmd.join(" ")), &[("execID", exec_id.to_string())]);
        let weak = self.arc().map(|a| Arc::downgrade(&a));
        let eid = exec_id.to_string();
        let waiter = std::thread::Builder::new().name("exec-wait".into()).spawn(move || {
            let exit = shim.exec_wait(&eid);
            let Some(engine) = weak.and_then(|w| w.upgrade()) else { return };
            let code = match exit {
                Ok(x) => x.exit_code,
                Err(e) => {
                    tracing::warn!(exec = %eid, error = %e, "waiting for an exec");
                    -1
                }
            };
            if let Some(x) = engine.live.execs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&eid) {
                x.running = false;
                x.exit_code = Some(code);
            }
            engine.emit(&record, "exec_die", &[("execID", eid.clone()), ("exitCode", code.to_string())]);
        });
        if let Err(e) = waiter {
            tracing::error!(error = %e, "cannot start an exec wait thread");
        }
        if detach {
            // Nobody reads a detached exec's output: drain it so the process never blocks on a full pipe.
            let mut s = stream;
            let drained = std::thread::Builder::new().name("exec-drain".into()).spawn(move || {
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
            if let Err(e) = drained {
                tracing::warn!(error = %e, "cannot drain a detached exec's output");
            }
            return Ok(None);
        }
        Ok(Some(Attachment { stream, tty: c.tty }))
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, exec_id: &str) -> EngineResult<ExecDetails> {
        let e = self.exec_entry(exec_id)?;
        Ok(ExecDetails {
            id: e.id,
            container_id: e.container_id,
            config: e.config,
            running: e.running,
            exit_code: e.exit_code,
            pid: e.pid,
        })
    }

    /// `POST /exec/{id}/resize`.
    pub fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> EngineResult<()> {
        let e = self.exec_entry(exec_id)?;
        if !e.running {
            return Err(EngineError::Conflict(format!("Exec {exec_id} is not running")));
        }
        match self.live.shim(&e.container_id) {
            Some(shim) => Ok(shim.exec_resize(exec_id, rows, cols)?),
            None => Err(EngineError::Conflict(format!("container {} is not running", e.container_id))),
        }
    }
}
