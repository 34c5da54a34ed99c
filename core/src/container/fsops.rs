//! A container's filesystem as layers: `diff`, `commit`; and `events`.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use berth_model::container::{ContainerConfig, Status};
use berth_model::{Digest, ImageRef};
use berth_model::drivers::{Change, ChangeKind};
use serde_json::{Map, Value};

use crate::error::{EngineError, EngineResult};
use crate::events::{self, Event};
use crate::filters::Filters;
use super::ContainerService;

/// The keys of a container config an image config keeps.
const IMAGE_CONFIG_KEYS: &[&str] =
    &["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal"];

/// The image config's `config` for a commit: the container's config, with
/// the non-empty fields of `overrides` replacing it.
pub fn commit_config(container: &ContainerConfig, overrides: Option<&ContainerConfig>) -> Map<String, Value> {
    let to_map = |c: &ContainerConfig| match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let base = to_map(container);
    let over = overrides.map(to_map).unwrap_or_default();
    let mut out = Map::new();
    for key in IMAGE_CONFIG_KEYS {
        fn pick<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
            m.get(key).filter(|v| match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            })
        }
        if let Some(v) = pick(&over, key).or_else(|| pick(&base, key)) {
            out.insert(key.to_string(), v.clone());
        }
    }
    out
}

/// Mount points the runtime creates in the writable layer when the image
/// lacks them; Docker keeps them in an init layer, so `diff` never shows them.
const MOUNT_POINTS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
    "/sys/fs/cgroup",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
];

/// `changes` without the runtime's mount points, and without the parent
/// directories that show up only because a mount point was created in them.
pub fn hide_mount_points(changes: Vec<Change>) -> Vec<Change> {
    let (hidden, kept): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| c.kind == ChangeKind::Added && MOUNT_POINTS.contains(&c.path.as_str()));
    let under =
        |dir: &str, path: &str| path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/';
    let only_for_mount_points =
        |c: &Change| hidden.iter().any(|h| under(&c.path, &h.path)) && !kept.iter().any(|k| under(&c.path, &k.path));
    kept.iter().filter(|c| !only_for_mount_points(c)).cloned().collect()
}

impl ContainerService {
    /// `docker diff`.
    pub fn changes(&self, id_or_name: &str) -> EngineResult<Vec<Change>> {
        let record = self.catalog.lookup(id_or_name)?;
        let changes = self
            .storage
            .changes(&record.rw_layer)
            .map_err(|e| crate::error::driver_error(&format!("listing the changes of container {}", record.id), e))?;
        Ok(hide_mount_points(changes))
    }

    /// `docker commit`: the writable layer becomes a new image layer on top of
    /// the container's image, with `changes` applied; returns the image ID.
    pub fn commit(
        &self,
        id_or_name: &str,
        reference: Option<&ImageRef>,
        comment: &str,
        author: &str,
        changes: &[String],
        config: Option<ContainerConfig>,
    ) -> EngineResult<Digest> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        let tag = match reference {
            Some(r) if r.digest.is_some() => {
                return Err(EngineError::InvalidArgument(format!(
                    "refusing to create a tag with a digest reference: {r}"
                )))
            }
            Some(r) => r.clone().with_default_tag().tagged(),
            None => None,
        };
        let mut image_config = commit_config(&record.config, config.as_ref());
        crate::image::apply_changes(&mut image_config, changes)?;
        let now = berth_runtime::clock::now_rfc3339();
        let mut history = serde_json::json!({
            "created": now,
            "created_by": std::iter::once(record.path.clone()).chain(record.args.iter().cloned()).collect::<Vec<_>>().join(" "),
        });
        if !comment.is_empty() {
            history["comment"] = Value::String(comment.to_string());
        }
        if !author.is_empty() {
            history["author"] = Value::String(author.to_string());
        }
        // A running container is frozen while its layer is read, as `docker commit` does by default.
        let _g = self.live.lock(&id);
        let current =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let freeze = current.state.status == Status::Running;
        let cgroup = Self::cgroup_of(&current)?;
        if freeze {
            cgroup.freeze()?;
        }
        let storage = Arc::clone(&self.storage);
        let rw = current.rw_layer.clone();
        let mut write_diff = |w: &mut dyn Write| -> EngineResult<()> {
            storage.export_diff(&rw, w).map_err(|e| crate::error::driver_error(&format!("exporting the changes of {id}"), e))
        };
        let result = self.images.commit_layer(&current.image, &mut write_diff, image_config, history, author, tag);
        if freeze {
            if let Err(e) = cgroup.thaw() {
                tracing::error!(container = %id, error = %e, "thawing the container after commit");
            }
        }
        let image = result?;
        self.emit(&current, "commit", &[("comment", comment.to_string())]);
        Ok(image)
    }

    /// `docker events`: past events since `since` (unix seconds), then live
    /// ones until `until` (if given); filters like the CLI's `-f`.
    pub fn events(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filters: &Filters,
    ) -> EngineResult<Receiver<Event>> {
        events::check_filters(filters)?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let (rx, live) = self.live.events.subscribe(since, until, filters, now);
        if let (Some(sub), Some(u)) = (live, until) {
            // End the stream at `until` even if no event comes.
            let wait = std::time::Duration::from_nanos(((u * 1e9) as i64 - now).max(0) as u64);
            let weak = self.arc().map(|a| Arc::downgrade(&a));
            let spawned = std::thread::Builder::new().name("events-until".into()).spawn(move || {
                std::thread::sleep(wait);
                if let Some(e) = weak.and_then(|w| w.upgrade()) {
                    e.live.events.unsubscribe(sub);
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the events timer; the stream ends at the next event after until");
            }
        }
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_hides_the_runtimes_mount_points() {
        let c = |p: &str, k: ChangeKind| Change { path: p.into(), kind: k };
        let changes = vec![
            c("/etc", ChangeKind::Modified),
            c("/etc/hostname", ChangeKind::Added),
            c("/etc/hosts", ChangeKind::Added),
            c("/new", ChangeKind::Added),
            c("/tmp", ChangeKind::Modified),
            c("/tmp/x", ChangeKind::Added),
        ];
        assert_eq!(
            hide_mount_points(changes),
            vec![c("/new", ChangeKind::Added), c("/tmp", ChangeKind::Modified), c("/tmp/x", ChangeKind::Added)]
        );
        // A real change under /etc keeps /etc.
        let changes = vec![
            c("/etc", ChangeKind::Modified),
            c("/etc/hosts", ChangeKind::Added),
            c("/etc/passwd", ChangeKind::Modified),
        ];
        assert_eq!(
            hide_mount_points(changes),
            vec![c("/etc", ChangeKind::Modified), c("/etc/passwd", ChangeKind::Modified)]
        );
    }

    #[test]
    fn commit_config_keeps_image_keys_and_overrides() {
        let c = ContainerConfig {
            hostname: "abc".into(),
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            working_dir: "/app".into(),
            ..Default::default()
        };
        let o = ContainerConfig { cmd: Some(vec!["true".into()]), ..Default::default() };
        let m = commit_config(&c, Some(&o));
        assert_eq!(m["Cmd"], serde_json::json!(["true"]));
        assert_eq!(m["Env"], serde_json::json!(["PATH=/bin"]));
        assert_eq!(m["WorkingDir"], serde_json::json!("/app"));
        assert!(!m.contains_key("Hostname") && !m.contains_key("User"));
    }
}
