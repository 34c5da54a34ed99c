//! The engine's volume operations and the container hooks.
//!
//! Records live in the store (`DefinitionTable::Volumes`); the data lives
//! with the volume's driver. A volume is "in use" while any container
//! record (running or not) mounts it, or a create that references it is in
//! flight; that is what `volume rm` and `prune` check. Separately, the live
//! `VolumeState` counts which containers have each volume mounted *now*, so
//! the host mount a driver's plan needs (tmpfs, nfs, a bind onto `_data`)
//! exists exactly while some container runs with it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use berth_model::container::ContainerRecord;
use berth_model::drivers::{DriverError, VolumeDriver};
use berth_model::MountSpec;
use berth_model::volume::{MountPoint, VolumeCreateRequest, VolumeInfo, VolumeRecord};

use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use crate::store::DefinitionTable;
use super::{copyup, VolumeCreate, VolumeDetails, VolumeListing, VolumeService};
use super::parse::{self, ParsedMount};

/// The driver of volumes that name none.
pub const DEFAULT_DRIVER: &str = "local";
/// The label Docker puts on anonymous volumes (`-v /path`, image `VOLUME`s).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Live volume state: per-volume mount counts (which containers have it
/// mounted now) and the lock that orders create/remove/mount.
#[derive(Default)]
pub struct VolumeState {
    inner: Mutex<Inner>,
    /// Signalled when a name leaves `Inner::busy`.
    settled: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Volume name -> containers that have it mounted now.
    users: HashMap<String, BTreeSet<String>>,
    /// Volume name -> where the host mounted the driver's plan (volumes
    /// whose plan is not a plain bind of their own directory).
    host_mounts: HashMap<String, PathBuf>,
    /// Container ID of a create in flight -> the volumes it references and
    /// the ones it made (removed again if the create fails).
    pending: HashMap<String, Pending>,
    /// Names whose driver `create` or `remove` runs now, without the lock
    /// (a plugin may take up to its deadline): other requests for the same
    /// name wait or are refused; requests for other volumes go on.
    busy: HashSet<String>,
}

#[derive(Default)]
struct Pending {
    refs: BTreeSet<String>,
    created: Vec<String>,
}

impl VolumeState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, once no driver call on `name` is in flight.
    fn lock_settled(&self, name: &str) -> MutexGuard<'_, Inner> {
        let inner = self.lock();
        self.settled.wait_while(inner, |i| i.busy.contains(name)).unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `call` (a driver call on volume `name`) without the lock, with
    /// `name` marked busy meanwhile; returns the lock again with its result.
    fn unlocked_for<'a, T>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        name: &str,
        call: impl FnOnce() -> T,
    ) -> (MutexGuard<'a, Inner>, T) {
        inner.busy.insert(name.to_string());
        drop(inner);
        let result = call();
        let mut inner = self.lock();
        inner.busy.remove(name);
        self.settled.notify_all();
        (inner, result)
    }
}

/// Checks a volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`, Docker's messages).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.len() == 1 {
        return Err(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    Ok(())
}

/// A driver error as the volume service reports it: `OP NAME: message`,
/// with the driver's status class.
fn op_err(op: &str, name: &str, e: DriverError) -> EngineError {
    let msg = format!("{op} {name}: {e}");
    match e {
        DriverError::NotFound(_) => EngineError::NotFound(msg),
        DriverError::Conflict(_) => EngineError::Conflict(msg),
        DriverError::InvalidArgument(_) => EngineError::InvalidArgument(msg),
        _ => EngineError::Internal(msg),
    }
}

fn no_such_volume(name: &str) -> EngineError {
    EngineError::NotFound(format!("get {name}: no such volume"))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `label=key` / `label=key=value` against a volume's labels.
fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

fn check_filter_keys(filters: &Filters, allowed: &[&str]) -> EngineResult<()> {
    for key in filters.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid filter '{key}'"
            )));
        }
    }
    Ok(())
}

fn bool_filter(filters: &Filters, key: &str) -> EngineResult<Option<bool>> {
    let mut out = None;
    for v in filters.get(key).into_iter().flatten() {
        out = Some(match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{key}={v}'"
                )))
            }
        });
    }
    Ok(out)
}

/// A read-only view of a container's root filesystem for copy-up, mounted
/// only when some volume needs it and unmounted when dropped.
struct RootfsView {
    path: PathBuf,
    mounted: bool,
}

impl Drop for RootfsView {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = berth_runtime::mount::unmount(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "unmounting the copy-up view of a container");
                return;
            }
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// How long `volume ls` waits for a driver's `List` before leaving it out.
const LIST_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// The drivers' `List` answers (driver -> volume name -> info) and warnings
/// for those that failed or did not answer in time.
#[derive(Default)]
struct DriverListing {
    answered: BTreeMap<String, BTreeMap<String, berth_model::volume::VolumeInfo>>,
    warnings: Vec<String>,
}

/// A driver's answer to `mount`, fetched before the volume lock is taken.
struct PreparedMount {
    driver: Arc<dyn VolumeDriver>,
    plan: berth_model::MountPlan,
    /// The driver's `Path` for the volume.
    own: Option<PathBuf>,
}

/// Tells the drivers of plans that were fetched but never used (a start
/// that failed part way) that the container does not use their volumes.
fn release_unused_plans(prepared: &mut HashMap<String, PreparedMount>, record: &ContainerRecord) {
    for (dest, p) in prepared.drain() {
        let name = record.mounts.iter().find(|m| m.destination == dest).map_or("", |m| m.name.as_str());
        if let Err(e) = p.driver.unmount(name, record.id.as_str()) {
            tracing::warn!(volume = %name, error = %e, "releasing a volume mount that was not used");
        }
    }
}

impl VolumeService {
    fn volume_driver(&self, name: &str) -> EngineResult<Arc<dyn VolumeDriver>> {
        let name = if name.is_empty() {
            DEFAULT_DRIVER
        } else {
            name
        };
        self.drivers.volume.get(name).ok_or_else(|| {
            EngineError::NotFound(format!(
                "error looking up volume plugin {name}: plugin {name:?} not found"
            ))
        })
    }

    fn volume_record(&self, name: &str) -> EngineResult<Option<VolumeRecord>> {
        let json = self
            .store
            .read()?
            .definition(DefinitionTable::Volumes, name)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| {
                EngineError::Internal(format!("volume {name}: its stored record is invalid: {e}"))
            })
        })
        .transpose()
    }

    fn volume_records(&self) -> EngineResult<Vec<VolumeRecord>> {
        let mut out = Vec::new();
        for (name, json) in self.store.read()?.definitions(DefinitionTable::Volumes)? {
            match serde_json::from_str(&json) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(volume = %name, error = %e, "skipping a volume whose stored record is invalid")
                }
            }
        }
        Ok(out)
    }

    fn put_volume_record(&self, record: &VolumeRecord) -> EngineResult<()> {
        let json = serde_json::to_string(record)
            .map_err(|e| EngineError::Internal(format!("encoding volume {}: {e}", record.name)))?;
        let tx = self.store.write()?;
        tx.put_definition(DefinitionTable::Volumes, &record.name, &json)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_volume_record(&self, name: &str) -> EngineResult<()> {
        let tx = self.store.write()?;
        tx.delete_definition(DefinitionTable::Volumes, name)?;
        tx.commit()?;
        Ok(())
    }

    /// Volume name -> IDs of the containers that reference it: every stored
    /// container (any state) plus creates in flight. Drops the in-flight
    /// entries whose container is stored now (it is counted as stored).
    fn volume_usage(&self, inner: &mut Inner) -> EngineResult<HashMap<String, BTreeSet<String>>> {
        let containers = self.containers.all()?;
        let mut usage: HashMap<String, BTreeSet<String>> = HashMap::new();
        for c in &containers {
            inner.pending.remove(c.id.as_str());
            for m in c.mounts.iter().filter(|m| m.kind == "volume") {
                usage
                    .entry(m.name.clone())
                    .or_default()
                    .insert(c.id.to_string());
            }
        }
        for (id, p) in &inner.pending {
            for name in &p.refs {
                usage.entry(name.clone()).or_default().insert(id.clone());
            }
        }
        for (name, ids) in &inner.users {
            usage
                .entry(name.clone())
                .or_default()
                .extend(ids.iter().cloned());
        }
        Ok(usage)
    }

    /// The volume's data directory on the host, per its driver.
    fn volume_path(&self, record: &VolumeRecord) -> Option<PathBuf> {
        let driver = self.volume_driver(&record.driver).ok()?;
        match driver.path(&record.name) {
            Ok(Some(p)) => Some(p),
            _ => driver.get(&record.name).ok().and_then(|i| i.mountpoint),
        }
    }

    fn volume_details(
        &self,
        record: VolumeRecord,
        used_by: Option<&BTreeSet<String>>,
        size: bool,
    ) -> VolumeDetails {
        let info = self
            .volume_driver(&record.driver)
            .ok()
            .and_then(|d| d.get(&record.name).ok())
            .unwrap_or_default();
        self.volume_details_from(record, info, used_by, size)
    }

    /// `volume_details` with the driver's `Get` answer already at hand.
    fn volume_details_from(
        &self,
        record: VolumeRecord,
        info: berth_model::volume::VolumeInfo,
        used_by: Option<&BTreeSet<String>>,
        size: bool,
    ) -> VolumeDetails {
        let status = info.status;
        let mut mountpoint = info.mountpoint;
        if mountpoint.is_none() {
            if let Ok(driver) = self.volume_driver(&record.driver) {
                mountpoint = driver.path(&record.name).ok().flatten();
            }
        }
        let size = size.then(|| {
            mountpoint
                .as_deref()
                .and_then(|p| copyup::content_size(p).ok())
                .map_or(-1, |n| n.min(i64::MAX as u64) as i64)
        });
        VolumeDetails {
            mountpoint: mountpoint
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            status,
            used_by: used_by
                .map(|u| u.iter().cloned().collect())
                .unwrap_or_default(),
            size,
            record,
        }
    }

    /// Returns volume `name`, creating it with `driver` (empty: the default
    /// driver, or the existing volume's) when missing. The bool says whether
    /// it was made now. The caller holds the volume lock; `busy` is its
    /// `Inner::busy` (a name another request is creating or removing is refused).
    fn ensure_volume(
        &self,
        busy: &HashSet<String>,
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        anonymous: bool,
    ) -> EngineResult<(VolumeRecord, bool)> {
        validate_name(name)
            .map_err(|m| EngineError::InvalidArgument(format!("create {name}: {m}")))?;
        if busy.contains(name) {
            return Err(EngineError::Conflict(format!(
                "volume {name} is being created or removed by another request; try again when it is done"
            )));
        }
        if let Some(existing) = self.existing_volume(name, driver)? {
            return Ok((existing, false));
        }
        let driver_name = if driver.is_empty() { DEFAULT_DRIVER } else { driver };
        let d = self.volume_driver(driver_name)?;
        let request = VolumeCreateRequest { name: name.to_string(), options: options.clone() };
        let info = d.create(&request).map_err(|e| op_err("create", name, e))?;
        let record = self.record_created(d.as_ref(), name, driver_name, info, options, labels, anonymous)?;
        Ok((record, true))
    }

    /// The record of volume `name` if there is one, checked against the
    /// `driver` asked for (empty: any). A record whose data its driver lost
    /// (deleted by hand) gets the data made again.
    fn existing_volume(&self, name: &str, driver: &str) -> EngineResult<Option<VolumeRecord>> {
        let Some(existing) = self.volume_record(name)? else { return Ok(None) };
        if !driver.is_empty() && driver != existing.driver {
            return Err(EngineError::Conflict(format!(
                "create {name}: driver '{}' already has volume '{name}': volume name must be unique",
                existing.driver
            )));
        }
        if let Ok(d) = self.volume_driver(&existing.driver) {
            if let Err(DriverError::NotFound(_)) = d.get(name) {
                let request = VolumeCreateRequest { name: name.to_string(), options: existing.options.clone() };
                d.create(&request).map_err(|e| op_err("create", name, e))?;
            }
        }
        Ok(Some(existing))
    }

    /// Stores the record of a volume driver `d` has just made; if it cannot
    /// be stored, asks the driver to remove the volume again.
    #[allow(clippy::too_many_arguments)]
    fn record_created(
        &self,
        d: &dyn VolumeDriver,
        name: &str,
        driver_name: &str,
        info: VolumeInfo,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        anonymous: bool,
    ) -> EngineResult<VolumeRecord> {
        let mut labels = labels.clone();
        if anonymous {
            labels.entry(ANONYMOUS_LABEL.to_string()).or_default();
        }
        let record = VolumeRecord {
            name: name.to_string(),
            driver: driver_name.to_string(),
            created_at: info.created_at.filter(|c| !c.is_empty()).unwrap_or_else(now),
            labels,
            options: options.clone(),
            anonymous,
        };
        if let Err(e) = self.put_volume_record(&record) {
            if let Err(re) = d.remove(name) {
                tracing::warn!(volume = %name, error = %re, "removing a volume whose record could not be stored");
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Removes a volume this engine just made for a create that failed,
    /// unless someone else started using it meanwhile.
    fn discard_volume(&self, inner: &mut Inner, name: &str) {
        match self.volume_usage(inner) {
            Ok(usage) if usage.get(name).is_some_and(|u| !u.is_empty()) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(volume = %name, error = %e, "cannot tell whether a volume of a failed create is used; keeping it");
                return;
            }
        }
        if let Err(e) = self.delete_volume_now(name) {
            tracing::warn!(volume = %name, error = %e, "removing a volume made for a failed create");
        }
    }

    /// Driver remove, then the record. A driver that no longer has the
    /// volume is fine: the record is what is left of it.
    fn delete_volume_now(&self, name: &str) -> EngineResult<()> {
        if let Some(record) = self.volume_record(name)? {
            let driver = self.volume_driver(&record.driver)?;
            match driver.remove(name) {
                Ok(()) | Err(DriverError::NotFound(_)) => {}
                Err(e) => return Err(op_err("remove", name, e)),
            }
        }
        self.delete_volume_record(name)
    }

    /// Every driver's `List`, asked of all drivers at once; a driver that
    /// fails or does not answer within `LIST_BUDGET` is left out with a
    /// warning naming it, so one stuck plugin never stalls `volume ls`.
    fn list_driver_volumes(&self) -> DriverListing {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut asked = BTreeSet::new();
        for driver_name in self.drivers.volume.names() {
            let Some(driver) = self.drivers.volume.get(&driver_name) else {
                continue;
            };
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("volume-list".into())
                .spawn({
                    let driver_name = driver_name.clone();
                    move || {
                        let _ = tx.send((driver_name, driver.list()));
                    }
                });
            match spawned {
                Ok(_) => {
                    asked.insert(driver_name);
                }
                Err(e) => tracing::warn!(driver = %driver_name, error = %e, "cannot start a thread to list a volume driver"),
            }
        }
        drop(tx);
        let deadline = std::time::Instant::now() + LIST_BUDGET;
        let mut listing = DriverListing::default();
        while !asked.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok((driver_name, answer)) = rx.recv_timeout(left) else {
                break;
            };
            asked.remove(&driver_name);
            match answer {
                Ok(infos) => {
                    listing.answered.insert(
                        driver_name,
                        infos.into_iter().map(|i| (i.name.clone(), i)).collect(),
                    );
                }
                Err(e) => {
                    tracing::warn!(driver = %driver_name, error = %e, "listing a volume driver's volumes");
                    listing.warnings.push(format!("volume driver {driver_name} could not list its volumes: {e}"));
                }
            }
        }
        for driver_name in asked {
            tracing::warn!(driver = %driver_name, "a volume driver did not answer List in time");
            listing.warnings.push(format!(
                "volume driver {driver_name} did not answer within {}s; its volumes are not listed",
                LIST_BUDGET.as_secs_f32()
            ));
        }
        listing
    }

    /// Stores records for volumes a driver has that the store does not
    /// (made before a crash lost the record, by hand, or by a plugin on its
    /// own), as Docker lists them. The caller holds the volume lock.
    fn adopt_driver_volumes(&self, listing: &DriverListing) -> EngineResult<()> {
        let known: BTreeSet<String> = self.volume_records()?.into_iter().map(|r| r.name).collect();
        for (driver_name, infos) in &listing.answered {
            for info in infos.values() {
                if known.contains(&info.name) || validate_name(&info.name).is_err() {
                    continue;
                }
                let record = VolumeRecord {
                    name: info.name.clone(),
                    driver: driver_name.clone(),
                    created_at: info.created_at.clone().unwrap_or_else(now),
                    ..Default::default()
                };
                self.put_volume_record(&record)?;
            }
        }
        Ok(())
    }

    /// `docker volume create`: validates the name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`)
    /// and the driver; creating an existing volume with the same driver
    /// returns it (Docker's behaviour).
    pub fn create(&self, request: VolumeCreate) -> EngineResult<VolumeDetails> {
        let name = if request.name.is_empty() {
            hex::encode(crate::ids::random_bytes(32)?)
        } else {
            request.name.clone()
        };
        validate_name(&name).map_err(|m| EngineError::InvalidArgument(format!("create {name}: {m}")))?;
        let inner = self.state.lock_settled(&name);
        let (mut inner, record) = match self.existing_volume(&name, &request.driver)? {
            Some(existing) => (inner, existing),
            None => {
                // The driver makes it without the volume lock: a plugin that
                // takes its time holds up this request only.
                let driver_name = if request.driver.is_empty() { DEFAULT_DRIVER } else { request.driver.as_str() };
                let d = self.volume_driver(driver_name)?;
                let create = VolumeCreateRequest { name: name.clone(), options: request.driver_opts.clone() };
                let (inner, made) = self.state.unlocked_for(inner, &name, || d.create(&create));
                let info = made.map_err(|e| op_err("create", &name, e))?;
                let record = self.record_created(d.as_ref(), &name, driver_name, info, &request.driver_opts, &request.labels, false)?;
                (inner, record)
            }
        };
        let usage = self.volume_usage(&mut inner)?;
        drop(inner);
        Ok(self.volume_details(record, usage.get(&name), false))
    }

    /// Finds a volume by name (asking the drivers when the store does not
    /// know it); `size` fills `VolumeDetails::size`.
    pub fn find(&self, name: &str, size: bool) -> EngineResult<VolumeDetails> {
        let mut inner = self.state.lock();
        let record = match self.volume_record(name)? {
            Some(r) => r,
            None => {
                drop(inner);
                let listing = self.list_driver_volumes();
                inner = self.state.lock();
                self.adopt_driver_volumes(&listing)?;
                self.volume_record(name)?
                    .ok_or_else(|| no_such_volume(name))?
            }
        };
        let usage = self.volume_usage(&mut inner)?;
        drop(inner);
        Ok(self.volume_details(record, usage.get(name), size))
    }

    /// `docker volume ls` with Docker's filters (`dangling`, `driver`,
    /// `label`, `name`); `size` fills `VolumeDetails::size` (`system df -v`).
    /// Drivers that fail or do not answer in time are left out with a warning.
    pub fn list(&self, filters: &Filters, size: bool) -> EngineResult<VolumeListing> {
        check_filter_keys(filters, &["dangling", "driver", "label", "name"])?;
        let dangling = bool_filter(filters, "dangling")?;
        let listing = self.list_driver_volumes();
        let mut inner = self.state.lock();
        self.adopt_driver_volumes(&listing)?;
        let records = self.volume_records()?;
        let usage = self.volume_usage(&mut inner)?;
        drop(inner);
        let mut out = Vec::new();
        for r in records {
            // Docker leaves out the volumes of a driver that cannot list them.
            let Some(infos) = listing.answered.get(&r.driver) else {
                continue;
            };
            let used = usage.get(&r.name).is_some_and(|u| !u.is_empty());
            if dangling.is_some_and(|d| d == used) {
                continue;
            }
            if let Some(drivers) = filters.get("driver") {
                if !drivers.iter().any(|d| *d == r.driver) {
                    continue;
                }
            }
            if let Some(names) = filters.get("name") {
                if !names.iter().any(|n| r.name.contains(n.as_str())) {
                    continue;
                }
            }
            if !filters.get("label").into_iter().flatten().all(|l| label_matches(&r.labels, l)) {
                continue;
            }
            let details = match infos.get(&r.name) {
                // The list answer already says what `get` would.
                Some(info) => self.volume_details_from(r.clone(), info.clone(), usage.get(&r.name), size),
                None => self.volume_details(r.clone(), usage.get(&r.name), size),
            };
            out.push(details);
        }
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(VolumeListing { volumes: out, warnings: listing.warnings })
    }

    /// Names of the volumes made with driver `driver` (a plugin that
    /// `plugin disable` must not pull out from under them).
    pub fn using_driver(&self, driver: &str) -> EngineResult<Vec<String>> {
        Ok(self.volume_records()?.into_iter().filter(|r| r.driver == driver).map(|r| r.name).collect())
    }

    /// `docker volume rm [-f]`: refuses a volume in use, naming the containers;
    /// `force` only ignores a missing volume (as Docker's `-f`).
    pub fn remove(&self, name: &str, force: bool) -> EngineResult<()> {
        if self.volume_record(name)?.is_none() {
            let listing = self.list_driver_volumes();
            let _inner = self.state.lock();
            self.adopt_driver_volumes(&listing)?;
        }
        let mut inner = self.state.lock_settled(name);
        let Some(record) = self.volume_record(name)? else {
            return if force { Ok(()) } else { Err(no_such_volume(name)) };
        };
        let usage = self.volume_usage(&mut inner)?;
        if let Some(users) = usage.get(name).filter(|u| !u.is_empty()) {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        // The driver's remove runs without the volume lock, as create does;
        // no container can take the volume meanwhile (the name is busy).
        let driver = self.volume_driver(&record.driver)?;
        let (mut inner, removed) = self.state.unlocked_for(inner, name, || driver.remove(name));
        match removed {
            Ok(()) | Err(DriverError::NotFound(_)) => {}
            Err(e) => return Err(op_err("remove", name, e)),
        }
        self.delete_volume_record(name)?;
        inner.host_mounts.remove(name);
        Ok(())
    }

    /// `docker volume prune` (Docker 28): unused anonymous volumes, or every
    /// unused volume with `all` (`-a`; also the filter `all=true`). Returns
    /// the removed names and the bytes reclaimed.
    pub fn prune(
        &self,
        filters: &Filters,
        all: bool,
    ) -> EngineResult<(Vec<String>, u64)> {
        check_filter_keys(filters, &["label", "label!", "all"])?;
        let all = all || bool_filter(filters, "all")?.unwrap_or(false);
        let mut inner = self.state.lock();
        let usage = self.volume_usage(&mut inner)?;
        let mut removed = Vec::new();
        let mut reclaimed = 0u64;
        let mut records = self.volume_records()?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        for r in records {
            // A volume another request is creating or removing is that request's.
            if usage.get(&r.name).is_some_and(|u| !u.is_empty()) || !(all || r.anonymous) || inner.busy.contains(&r.name) {
                continue;
            }
            if !filters
                .get("label")
                .into_iter()
                .flatten()
                .all(|l| label_matches(&r.labels, l))
            {
                continue;
            }
            if filters
                .get("label!")
                .into_iter()
                .flatten()
                .any(|l| label_matches(&r.labels, l))
            {
                continue;
            }
            let size = self
                .volume_path(&r)
                .and_then(|p| copyup::content_size(&p).ok())
                .unwrap_or(0);
            match self.delete_volume_now(&r.name) {
                Ok(()) => {
                    reclaimed += size;
                    removed.push(r.name);
                }
                Err(e) => {
                    tracing::warn!(volume = %r.name, error = %e, "prune could not remove a volume")
                }
            }
        }
        Ok((removed, reclaimed))
    }

    /// Resolves one parsed `-v`/`--mount` into its mount point, creating the
    /// volume it names (or an anonymous one) when missing.
    fn resolve_mount(&self, busy: &HashSet<String>, p: ParsedMount, created: &mut Vec<String>) -> EngineResult<MountPoint> {
        let mut point = p.point;
        if point.kind != "volume" {
            return Ok(point);
        }
        let anonymous = point.name.is_empty();
        let name = if anonymous {
            hex::encode(crate::ids::random_bytes(32)?)
        } else {
            point.name.clone()
        };
        let (record, made) =
            self.ensure_volume(busy, &name, &p.driver, &p.driver_opts, &p.labels, anonymous)?;
        if made {
            created.push(name.clone());
        }
        point.source = self
            .volume_path(&record)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        point.name = name;
        // Docker's `setBindModeIfNull` for local volumes.
        if point.mode.is_empty() && record.driver == DEFAULT_DRIVER {
            point.mode = "z".into();
        }
        point.driver = record.driver;
        Ok(point)
    }

    fn plan_mounts_locked(
        &self,
        busy: &HashSet<String>,
        record: &ContainerRecord,
        image_volumes: &[String],
        created: &mut Vec<String>,
    ) -> EngineResult<Vec<MountPoint>> {
        let hc = &record.host_config;
        let invalid = EngineError::InvalidArgument;
        let duplicate =
            |dest: &str| EngineError::InvalidArgument(format!("Duplicate mount point: {dest}"));
        let mut tmpfs = BTreeSet::new();
        for dest in hc.tmpfs.iter().flatten().map(|(d, _)| d) {
            tmpfs.insert(parse::check_tmpfs_destination(dest).map_err(invalid)?);
        }
        let mut points: BTreeMap<String, MountPoint> = BTreeMap::new();
        for spec in hc.volumes_from.iter().flatten() {
            let (source, rw) = parse::parse_volumes_from(spec).map_err(invalid)?;
            let from = self.containers.lookup(&source)?;
            for m in &from.mounts {
                if m.kind == "volume" && self.volume_record(&m.name)?.is_none() {
                    return Err(no_such_volume(&m.name));
                }
                let cp = MountPoint {
                    rw: m.rw && rw,
                    // Docker copies the point without its mode, and never copies data into it again.
                    mode: String::new(),
                    no_copy: true,
                    ..m.clone()
                };
                points.insert(cp.destination.clone(), cp);
            }
        }
        let mut explicit = BTreeSet::new();
        for raw in hc.binds.iter().flatten() {
            let p = parse::parse_bind(raw, &hc.volume_driver).map_err(invalid)?;
            let dest = p.point.destination.clone();
            if explicit.contains(&dest) || tmpfs.contains(&dest) {
                return Err(duplicate(&dest));
            }
            let point = self.resolve_mount(busy, p, created)?;
            explicit.insert(dest.clone());
            points.insert(dest, point);
        }
        for m in hc.mounts.iter().flatten() {
            let p = parse::parse_mount(m).map_err(invalid)?;
            if p.point.kind == "bind"
                && !p.create_source
                && std::fs::symlink_metadata(&p.point.source).is_err()
            {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    p.point.source
                )));
            }
            let dest = p.point.destination.clone();
            if explicit.contains(&dest) || tmpfs.contains(&dest) {
                return Err(duplicate(&m.target));
            }
            let point = self.resolve_mount(busy, p, created)?;
            explicit.insert(dest.clone());
            points.insert(dest, point);
        }
        // `-v /path` (Config.Volumes) and the image's VOLUMEs: anonymous
        // volumes wherever nothing else is mounted.
        let mut anonymous: BTreeSet<String> = BTreeSet::new();
        for spec in record
            .config
            .volumes
            .iter()
            .flat_map(|v| v.keys())
            .chain(image_volumes.iter())
        {
            let dest = parse::clean(spec);
            if !dest.starts_with('/') || dest == "/" {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid volume specification: '{spec}': the container path must be absolute and not '/'"
                )));
            }
            anonymous.insert(dest);
        }
        for dest in anonymous {
            if points.contains_key(&dest) || tmpfs.contains(&dest) {
                continue;
            }
            let name = hex::encode(crate::ids::random_bytes(32)?);
            let (volume, made) = self.ensure_volume(
                busy,
                &name,
                &hc.volume_driver,
                &BTreeMap::new(),
                &BTreeMap::new(),
                true,
            )?;
            if made {
                created.push(name.clone());
            }
            let point = MountPoint {
                kind: "volume".into(),
                source: self
                    .volume_path(&volume)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                name,
                destination: dest.clone(),
                driver: volume.driver,
                rw: true,
                ..Default::default()
            };
            points.insert(dest, point);
        }
        Ok(points.into_values().collect())
    }

    /// At create: `HostConfig.Binds`, `Mounts`, `VolumesFrom` and the
    /// image's `VOLUME`s (and `-v /path`) become `record.mounts` (later
    /// entries for the same destination win, as in Docker; an explicit
    /// duplicate is Docker's "Duplicate mount point"); named and anonymous
    /// volumes are created; a missing `--mount` bind source is an error.
    /// `HostConfig.Tmpfs` is checked here and mounted at start, but is not
    /// a mount point (Docker's inspect does not show it). On error nothing
    /// it created is left; `undo_container_mounts` undoes a later failure.
    pub(crate) fn plan_container_mounts(
        &self,
        record: &mut ContainerRecord,
        image_volumes: &[String],
    ) -> EngineResult<()> {
        let mut inner = self.state.lock();
        let mut created = Vec::new();
        match self.plan_mounts_locked(&inner.busy, record, image_volumes, &mut created) {
            Ok(points) => {
                let refs = points
                    .iter()
                    .filter(|m| m.kind == "volume")
                    .map(|m| m.name.clone())
                    .collect();
                record.mounts = points;
                inner
                    .pending
                    .insert(record.id.to_string(), Pending { refs, created });
                Ok(())
            }
            Err(e) => {
                for name in created.iter().rev() {
                    self.discard_volume(&mut inner, name);
                }
                Err(e)
            }
        }
    }

    /// A create that failed after `plan_container_mounts`: removes the
    /// volumes it made (unless another container took them meanwhile).
    pub(crate) fn undo_container_mounts(&self, container_id: &str) {
        let mut inner = self.state.lock();
        if let Some(p) = inner.pending.remove(container_id) {
            for name in p.created.iter().rev() {
                self.discard_volume(&mut inner, name);
            }
        }
    }

    /// Asks the volume's driver for container `id`'s mount plan and where
    /// the data lives. Called without the volume lock: a slow or stuck
    /// plugin holds up only the container that uses its volume.
    fn prepare_volume_mount(&self, point: &MountPoint, id: &str) -> EngineResult<PreparedMount> {
        let name = point.name.as_str();
        let driver = self.volume_driver(&point.driver)?;
        let plan = driver.mount(name, id).map_err(|e| op_err("mount", name, e))?;
        let own = driver.path(name).ok().flatten();
        Ok(PreparedMount { driver, plan, own })
    }

    /// Mounts volume `point` for container `id` through the driver's plan
    /// (from `prepare_volume_mount`); returns the host directory with the data.
    fn mount_volume_locked(
        &self,
        inner: &mut Inner,
        point: &MountPoint,
        id: &str,
        prepared: PreparedMount,
    ) -> EngineResult<PathBuf> {
        let name = point.name.as_str();
        let PreparedMount { driver, plan, own } = prepared;
        let confined = driver.confined();
        let source = match (&plan.spec, &own) {
            (
                MountSpec::Bind {
                    source,
                    readonly: false,
                },
                Some(own),
            ) if source == own && !confined => own.clone(),
            _ => {
                // A plugin's data dir is the plugin's to change: its mount
                // goes on a dir of ours, never onto a path of its own.
                let ours = self.run.join("volumes").join(driver.name()).join(name);
                let point_dir = match own {
                    Some(own) if !confined => own,
                    _ => ours,
                };
                if let Some(done) = inner.host_mounts.get(name) {
                    done.clone()
                } else {
                    if !berth_runtime::mount::is_mount_point(&point_dir) {
                        let made = std::fs::create_dir_all(&point_dir)
                            .map_err(|e| {
                                EngineError::io(
                                    format!("mount {name}: creating {}", point_dir.display()),
                                    e,
                                )
                            })
                            .and_then(|()| {
                                let mounted = if confined {
                                    berth_runtime::mount::mount_untrusted(&plan.spec, &point_dir)
                                } else {
                                    berth_runtime::mount::mount(&plan.spec, &point_dir)
                                };
                                mounted.map_err(|e| {
                                    EngineError::Internal(format!(
                                        "mount {name}: failed to mount local volume: {e}"
                                    ))
                                })
                            });
                        if let Err(e) = made {
                            if let Err(ue) = driver.unmount(name, id) {
                                tracing::warn!(volume = %name, error = %ue, "telling the driver a failed mount is released");
                            }
                            return Err(e);
                        }
                    }
                    inner
                        .host_mounts
                        .insert(name.to_string(), point_dir.clone());
                    point_dir
                }
            }
        };
        inner
            .users
            .entry(name.to_string())
            .or_default()
            .insert(id.to_string());
        Ok(source)
    }

    /// Container `id` no longer uses volume `name`: tells the driver, and
    /// unmounts the host mount when it was the last user.
    fn release_mount_locked(&self, inner: &mut Inner, name: &str, driver: &str, id: &str) {
        let Some(users) = inner.users.get_mut(name) else {
            return;
        };
        if !users.remove(id) {
            return;
        }
        let last = users.is_empty();
        if last {
            inner.users.remove(name);
        }
        match self.volume_driver(driver) {
            Ok(d) => {
                if let Err(e) = d.unmount(name, id) {
                    tracing::warn!(volume = %name, container = %id, error = %e, "volume driver unmount");
                }
            }
            Err(e) => tracing::warn!(volume = %name, error = %e, "volume driver gone at unmount"),
        }
        if last {
            if let Some(point) = inner.host_mounts.get(name).cloned() {
                if berth_runtime::mount::is_mount_point(&point) {
                    if let Err(e) = berth_runtime::mount::unmount(&point) {
                        // Kept in host_mounts: the driver refuses to remove a mounted volume.
                        tracing::warn!(volume = %name, path = %point.display(), error = %e, "unmounting a volume nobody uses");
                        return;
                    }
                }
                inner.host_mounts.remove(name);
            }
        }
    }

    fn open_rootfs_view(&self, record: &ContainerRecord) -> EngineResult<RootfsView> {
        let plan = self
            .storage
            .mount_plan(&record.rw_layer, false)
            .map_err(|e| {
                EngineError::Internal(format!(
                    "copying image files into a volume: the container's layers: {e}"
                ))
            })?;
        if let MountSpec::Bind { source, .. } = plan.spec {
            return Ok(RootfsView {
                path: source,
                mounted: false,
            });
        }
        let dir = self.run.join("volumes").join(format!(".copyup-{}", record.id));
        if berth_runtime::mount::is_mount_point(&dir) {
            let _ = berth_runtime::mount::unmount(&dir);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        berth_runtime::mount::mount(&plan.spec, &dir).map_err(|e| {
            EngineError::Internal(format!("copying image files into a volume: {e}"))
        })?;
        Ok(RootfsView {
            path: dir,
            mounted: true,
        })
    }

    /// Docker's copy-up: an empty volume over an existing directory of the
    /// container's filesystem gets its files (and the directory's owner and mode).
    fn copy_up_if_empty(
        &self,
        record: &ContainerRecord,
        point: &MountPoint,
        volume_dir: &Path,
        view: &mut Option<RootfsView>,
    ) -> EngineResult<()> {
        let empty = copyup::is_empty_dir(volume_dir).map_err(|e| {
            EngineError::io(
                format!("reading volume {} at {}", point.name, volume_dir.display()),
                e,
            )
        })?;
        if !empty {
            return Ok(());
        }
        if view.is_none() {
            *view = Some(self.open_rootfs_view(record)?);
        }
        let Some(root) = view.as_ref() else {
            return Ok(());
        };
        // Resolved inside the container's tree: a symlink in the image
        // cannot point the copy at the host's files.
        let dir = match copyup::open_dir_in_root(&root.path, Path::new(&point.destination)) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(())
            }
            Err(e) => {
                return Err(EngineError::io(
                    format!(
                        "opening {} in the container's filesystem",
                        point.destination
                    ),
                    e,
                ))
            }
        };
        let src = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        ));
        let n = copyup::copy_up(&src, volume_dir).map_err(|e| {
            EngineError::io(
                format!(
                    "copying the image's {} into volume {}",
                    point.destination, point.name
                ),
                e,
            )
        })?;
        tracing::debug!(volume = %point.name, destination = %point.destination, entries = n, "copied image files into an empty volume");
        Ok(())
    }

    fn mount_all_locked(
        &self,
        inner: &mut Inner,
        record: &ContainerRecord,
        done: &mut Vec<MountPoint>,
        prepared: &mut HashMap<String, PreparedMount>,
    ) -> EngineResult<Vec<MountPoint>> {
        let id = record.id.as_str();
        let hc = &record.host_config;
        let mut points = record.mounts.clone();
        points.sort_by_key(|m| parse::depth(&m.destination));
        let mut view: Option<RootfsView> = None;
        let mut out = Vec::new();
        for mut mp in points {
            match mp.kind.as_str() {
                "bind" => {
                    if std::fs::symlink_metadata(&mp.source).is_err() {
                        let from_mount_flag = hc.mounts.iter().flatten().any(|m| {
                            m.kind == "bind"
                                && parse::clean(&m.target) == mp.destination
                                && !m
                                    .bind_options
                                    .as_ref()
                                    .and_then(|b| b.get("CreateMountpoint"))
                                    .and_then(|v| v.as_bool())
                                    .unwrap_or(false)
                        });
                        if from_mount_flag {
                            return Err(EngineError::InvalidArgument(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                mp.source
                            )));
                        }
                        // `-v /host:/ctr` makes a missing host directory, as Docker does.
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o755)
                            .create(&mp.source)
                            .map_err(|e| {
                                EngineError::io(
                                    format!(
                                        "error while creating mount source path '{}'",
                                        mp.source
                                    ),
                                    e,
                                )
                            })?;
                    }
                    out.push(mp);
                }
                "volume" => {
                    let Some(plan) = prepared.remove(&mp.destination) else {
                        return Err(EngineError::Internal(format!(
                            "mount {}: no plan was prepared for volume {}",
                            mp.destination, mp.name
                        )));
                    };
                    let source = self.mount_volume_locked(inner, &mp, id, plan)?;
                    done.push(mp.clone());
                    if !mp.no_copy {
                        self.copy_up_if_empty(record, &mp, &source, &mut view)?;
                    }
                    mp.source = source.display().to_string();
                    out.push(mp);
                }
                "tmpfs" => out.push(mp),
                other => {
                    return Err(EngineError::InvalidArgument(format!(
                        "mount {}: unknown mount type {other:?}",
                        mp.destination
                    )))
                }
            }
        }
        for (dest, options) in hc.tmpfs.iter().flatten() {
            out.push(MountPoint {
                kind: "tmpfs".into(),
                destination: parse::clean(dest),
                rw: true,
                tmpfs_options: options.clone(),
                ..Default::default()
            });
        }
        out.sort_by_key(|m| parse::depth(&m.destination));
        Ok(out)
    }

    /// At start: mounts every volume through its driver's plan (copy-up into
    /// an empty volume from the container's directory unless `nocopy`),
    /// makes missing `-v` host directories, and returns the mount points
    /// with host sources the runtime bind-mounts (plus `--tmpfs`), parents
    /// before children. All or nothing.
    pub(crate) fn mount_container_volumes(
        &self,
        record: &ContainerRecord,
    ) -> EngineResult<Vec<MountPoint>> {
        let id = record.id.as_str();
        // The drivers' plans first, outside the lock (see prepare_volume_mount).
        let mut prepared = HashMap::new();
        for mp in record.mounts.iter().filter(|m| m.kind == "volume") {
            match self.prepare_volume_mount(mp, id) {
                Ok(p) => {
                    prepared.insert(mp.destination.clone(), p);
                }
                Err(e) => {
                    release_unused_plans(&mut prepared, record);
                    return Err(e);
                }
            }
        }
        let mut inner = self.state.lock();
        let mut done = Vec::new();
        let result = self.mount_all_locked(&mut inner, record, &mut done, &mut prepared);
        if result.is_err() {
            for mp in done.iter().rev() {
                self.release_mount_locked(&mut inner, &mp.name, &mp.driver, id);
            }
        }
        drop(inner);
        release_unused_plans(&mut prepared, record);
        result
    }

    /// After the container's process is gone: tells each driver the
    /// container no longer uses its volume; the host unmounts what the last
    /// user released. Idempotent.
    pub(crate) fn unmount_container_volumes(&self, record: &ContainerRecord) {
        let mut inner = self.state.lock();
        for mp in record.mounts.iter().filter(|m| m.kind == "volume") {
            self.release_mount_locked(&mut inner, &mp.name, &mp.driver, record.id.as_str());
        }
    }

    /// At removal (the record is gone): anonymous volumes go with
    /// `-v`/`--rm` unless another container still uses them; named ones stay.
    pub(crate) fn release_container_volumes(
        &self,
        record: &ContainerRecord,
        remove_anonymous: bool,
    ) -> EngineResult<()> {
        let mut inner = self.state.lock();
        let id = record.id.as_str();
        inner.pending.remove(id);
        for mp in record.mounts.iter().filter(|m| m.kind == "volume") {
            self.release_mount_locked(&mut inner, &mp.name, &mp.driver, id);
        }
        if !remove_anonymous {
            return Ok(());
        }
        let usage = self.volume_usage(&mut inner)?;
        let names: BTreeSet<&str> = record
            .mounts
            .iter()
            .filter(|m| m.kind == "volume")
            .map(|m| m.name.as_str())
            .collect();
        let mut first_error = None;
        for name in names {
            let Some(volume) = self.volume_record(name)? else {
                continue;
            };
            if !volume.anonymous || usage.get(name).is_some_and(|u| !u.is_empty()) {
                continue;
            }
            if let Err(e) = self.delete_volume_now(name) {
                tracing::warn!(volume = %name, error = %e, "removing an anonymous volume of a removed container");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// At daemon start, after the containers are re-adopted, for each
    /// container (under the containers service's lock on it): a running
    /// container's volumes count as mounted again (their mounts never went
    /// away); a stopped one uses none.
    pub(crate) fn readopt_container(&self, record: &ContainerRecord) {
        let id = record.id.to_string();
        let mut inner = self.state.lock();
        if !matches!(
            record.state.status,
            berth_model::container::Status::Running | berth_model::container::Status::Paused
        ) {
            // A driver that outlived the daemon (a plugin) may still count
            // this container from before; it uses nothing now.
            for mp in record.mounts.iter().filter(|m| m.kind == "volume") {
                let counted = inner.users.get(&mp.name).is_some_and(|u| u.contains(&id));
                if let (false, Ok(d)) = (counted, self.volume_driver(&mp.driver)) {
                    if let Err(e) = d.unmount(&mp.name, &id) {
                        tracing::debug!(container = %id, volume = %mp.name, error = %e, "releasing a stopped container's volume");
                    }
                }
            }
            return;
        }
        for mp in record.mounts.iter().filter(|m| m.kind == "volume") {
            if inner.users.get(&mp.name).is_some_and(|u| u.contains(&id)) {
                continue;
            }
            let mounted = self
                .prepare_volume_mount(mp, &id)
                .and_then(|p| self.mount_volume_locked(&mut inner, mp, &id, p));
            if let Err(e) = mounted {
                tracing::warn!(container = %id, volume = %mp.name, error = %e, "re-adopting a running container's volume");
            }
        }
    }

    /// At daemon start, after `readopt_container` saw every container: host
    /// mounts nobody uses any more are taken down.
    pub(crate) fn release_unused_host_mounts(&self) -> EngineResult<()> {
        let mut inner = self.state.lock();
        for v in self.volume_records()? {
            if inner.users.contains_key(&v.name) {
                continue;
            }
            let Ok(driver) = self.volume_driver(&v.driver) else {
                continue;
            };
            let mut candidates = vec![self.run.join("volumes").join(driver.name()).join(&v.name)];
            candidates.extend(driver.path(&v.name).ok().flatten());
            for point in candidates {
                if berth_runtime::mount::is_mount_point(&point) {
                    match berth_runtime::mount::unmount(&point) {
                        Ok(()) => {
                            tracing::info!(volume = %v.name, path = %point.display(), "unmounted a volume no container uses")
                        }
                        Err(e) => {
                            tracing::warn!(volume = %v.name, error = %e, "unmounting a volume no container uses")
                        }
                    }
                }
            }
            inner.host_mounts.remove(&v.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("db-data").is_ok());
        assert!(validate_name(&"f".repeat(64)).is_ok());
        assert!(validate_name("a").expect_err("short").contains("too short"));
        assert!(validate_name("my vol")
            .expect_err("space")
            .contains("includes invalid characters"));
        assert!(validate_name("../x").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn labels_and_filters() {
        let labels: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string())].into_iter().collect();
        assert!(label_matches(&labels, "a"));
        assert!(label_matches(&labels, "a=1"));
        assert!(!label_matches(&labels, "a=2"));
        assert!(!label_matches(&labels, "b"));
        let mut f = Filters::new();
        f.insert("dangling".into(), vec!["maybe".into()]);
        assert!(bool_filter(&f, "dangling").is_err());
        f.insert("dangling".into(), vec!["1".into()]);
        assert_eq!(bool_filter(&f, "dangling").expect("ok"), Some(true));
        f.insert("bogus".into(), vec![]);
        assert_eq!(
            check_filter_keys(&f, &["dangling"])
                .expect_err("bogus")
                .to_string(),
            "invalid filter 'bogus'"
        );
    }
}
