//! The read side of the containers table, for every service.
//!
//! Only the containers service writes container records; the other services
//! need to read them — volumes to know who uses a volume and for
//! `--volumes-from`, networks for `--link` and `container:` modes, images to
//! know which images are in use. They read through this catalog, which each
//! of them takes when it is built, so none of them imports the containers
//! service. It also says where each container's directory is.

use std::path::PathBuf;
use std::sync::Arc;

use berth_model::container::ContainerRecord;

use crate::error::{EngineError, EngineResult};
use crate::store::Store;

/// Container records as stored, and the layout of their directories.
#[derive(Clone)]
pub struct ContainerCatalog {
    store: Arc<Store>,
    /// `<root>/containers`.
    dirs: PathBuf,
}

impl ContainerCatalog {
    pub(crate) fn new(store: Arc<Store>, root: &std::path::Path) -> Self {
        ContainerCatalog { store, dirs: root.join("containers") }
    }

    /// `<root>/containers/<id>`: the bundle, the sandbox files and the log.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dirs.join(id)
    }

    /// The stored record of container `id` (a full ID).
    pub fn load(&self, id: &str) -> EngineResult<Option<ContainerRecord>> {
        Ok(self.store.read()?.container(id)?)
    }

    /// Every stored record.
    pub fn all(&self) -> EngineResult<Vec<ContainerRecord>> {
        Ok(self.store.read()?.containers()?)
    }

    /// The record of the container `id_or_name` names: full ID, name (with
    /// or without `/`), or unique ID prefix.
    pub fn lookup(&self, id_or_name: &str) -> EngineResult<ContainerRecord> {
        let not_found = || EngineError::NotFound(format!("No such container: {id_or_name}"));
        if id_or_name.is_empty() {
            return Err(not_found());
        }
        let tx = self.store.read()?;
        if id_or_name.len() == 64 {
            if let Some(r) = tx.container(id_or_name)? {
                return Ok(r);
            }
        }
        let all = tx.containers()?;
        let name = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
        if let Some(r) = all.iter().find(|c| c.name == name) {
            return Ok(r.clone());
        }
        let mut matches = all.into_iter().filter(|c| c.id.as_str().starts_with(id_or_name));
        match (matches.next(), matches.next()) {
            (Some(r), None) => Ok(r),
            (Some(_), Some(_)) => {
                Err(EngineError::InvalidArgument(format!("multiple IDs found with provided prefix: {id_or_name}")))
            }
            (None, _) => Err(not_found()),
        }
    }
}
