//! The metadata store on redb. One writer: the daemon.
//!
//! Tables map string keys to JSON records. Every change that touches more
//! than one record (an image with its layers and tags) is made in one write
//! transaction, so a crash at any point leaves the old or the new state; redb
//! commits are durable (fsync'd) before `commit` returns. Reads see a
//! consistent snapshot. The store never touches blobs or layer directories:
//! the engine orders its disk work around the transactions.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use berth_model::container::ContainerRecord;
use berth_model::{Digest, ImageRecord, LayerRecord};

/// Version of the layout of the tables below; bumped when it changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const IMAGES: TableDefinition<&str, &str> = TableDefinition::new("images");
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const LAYERS: TableDefinition<&str, &str> = TableDefinition::new("layers");
const CONTAINERS: TableDefinition<&str, &str> = TableDefinition::new("containers");
const VOLUMES: TableDefinition<&str, &str> = TableDefinition::new("volumes");
const NETWORKS: TableDefinition<&str, &str> = TableDefinition::new("networks");
const COMPRESSED_LAYERS: TableDefinition<&str, &str> = TableDefinition::new("compressed_layers");
const BLOB_REPOSITORIES: TableDefinition<&str, &str> = TableDefinition::new("blob_repositories");

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {0}")]
    Database(String),
    #[error(
        "metadata store {path}: is in use by another process (is another berth daemon running with the same --root?)"
    )]
    Locked { path: String },
    #[error("metadata store: record {key:?} in table {table} is corrupt: {message}")]
    Corrupt { table: &'static str, key: String, message: String },
    #[error("metadata store {path}: schema version {found} is newer than this berth understands ({SCHEMA_VERSION}); upgrade berth")]
    TooNew { path: String, found: u32 },
}

fn db_err(context: &str) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{context}: {e}"))
}

/// Maps any of redb's error types through `redb::Error`.
trait Ctx<T> {
    fn ctx(self, context: &str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> Ctx<T> for Result<T, E> {
    fn ctx(self, context: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_err(context)(e.into()))
    }
}

/// Tables of definitions other subsystems keep by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefinitionTable {
    Containers,
    Volumes,
    Networks,
    /// The images service's: a layer's diff ID → the compressed blob a push made of it.
    CompressedLayers,
    /// The images service's: a blob's digest → the registry repositories known to have it.
    BlobRepositories,
}

impl DefinitionTable {
    fn def(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            DefinitionTable::Containers => CONTAINERS,
            DefinitionTable::Volumes => VOLUMES,
            DefinitionTable::Networks => NETWORKS,
            DefinitionTable::CompressedLayers => COMPRESSED_LAYERS,
            DefinitionTable::BlobRepositories => BLOB_REPOSITORIES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DefinitionTable::Containers => "containers",
            DefinitionTable::Volumes => "volumes",
            DefinitionTable::Networks => "networks",
            DefinitionTable::CompressedLayers => "compressed_layers",
            DefinitionTable::BlobRepositories => "blob_repositories",
        }
    }
}

/// The metadata store.
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, creating its tables.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = match redb::Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked { path: path.display().to_string() })
            }
            Err(e) => return Err(StoreError::Database(format!("opening {}: {e}", path.display()))),
        };
        let store = Store { db };
        let tx = store.db.begin_write().ctx("starting a write")?;
        {
            for def in [IMAGES, TAGS, LAYERS, CONTAINERS, VOLUMES, NETWORKS, COMPRESSED_LAYERS, BLOB_REPOSITORIES] {
                tx.open_table(def).ctx("creating tables")?;
            }
            let mut meta = tx.open_table(META).ctx("creating tables")?;
            let found = match meta.get("schema_version").ctx("reading the schema version")? {
                Some(v) => Some(v.value().parse::<u32>().map_err(|e| StoreError::Corrupt {
                    table: "meta",
                    key: "schema_version".into(),
                    message: e.to_string(),
                })?),
                None => None,
            };
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::TooNew { path: path.display().to_string(), found: v })
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())
                        .ctx("writing the schema version")?;
                }
            }
        }
        tx.commit().ctx("committing")?;
        Ok(store)
    }

    /// A consistent read-only snapshot.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        Ok(ReadTxn { tx: self.db.begin_read().ctx("starting a read")? })
    }

    /// A write transaction; nothing it does is visible until `commit`, and
    /// dropping it uncommitted discards it. Write transactions are serialized.
    pub fn write(&self) -> Result<WriteTxn, StoreError> {
        Ok(WriteTxn { tx: self.db.begin_write().ctx("starting a write")? })
    }
}

fn get_json<T, V>(table: &T, name: &'static str, key: &str) -> Result<Option<V>, StoreError>
where
    T: ReadableTable<&'static str, &'static str>,
    V: DeserializeOwned,
{
    match table.get(key).ctx(name)? {
        None => Ok(None),
        Some(v) => serde_json::from_str(v.value()).map(Some).map_err(|e| StoreError::Corrupt {
            table: name,
            key: key.to_string(),
            message: e.to_string(),
        }),
    }
}

fn all_json<T, V>(table: &T, name: &'static str) -> Result<Vec<(String, V)>, StoreError>
where
    T: ReadableTable<&'static str, &'static str>,
    V: DeserializeOwned,
{
    let mut out = Vec::new();
    for item in table.iter().ctx(name)? {
        let (k, v) = item.ctx(name)?;
        let value = serde_json::from_str(v.value()).map_err(|e| StoreError::Corrupt {
            table: name,
            key: k.value().to_string(),
            message: e.to_string(),
        })?;
        out.push((k.value().to_string(), value));
    }
    Ok(out)
}

fn all_str<T>(table: &T, name: &'static str) -> Result<Vec<(String, String)>, StoreError>
where
    T: ReadableTable<&'static str, &'static str>,
{
    let mut out = Vec::new();
    for item in table.iter().ctx(name)? {
        let (k, v) = item.ctx(name)?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(out)
}

fn parse_digest(table: &'static str, key: &str, value: &str) -> Result<Digest, StoreError> {
    value.parse().map_err(|e: berth_model::DigestError| StoreError::Corrupt {
        table,
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Generates the read accessors shared by read and write transactions.
macro_rules! readers {
    () => {
        /// The image with ID `id`.
        pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>, StoreError> {
            let t = self.tx.open_table(IMAGES).ctx("images")?;
            get_json(&t, "images", &id.to_string())
        }

        /// Every image, in ID order.
        pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
            let t = self.tx.open_table(IMAGES).ctx("images")?;
            Ok(all_json(&t, "images")?.into_iter().map(|(_, v)| v).collect())
        }

        /// The image `name:tag` points at.
        pub fn tag(&self, name_tag: &str) -> Result<Option<Digest>, StoreError> {
            let t = self.tx.open_table(TAGS).ctx("tags")?;
            let v = t.get(name_tag).ctx("tags")?;
            match v {
                Some(v) => Ok(Some(parse_digest("tags", name_tag, v.value())?)),
                None => Ok(None),
            }
        }

        /// Every tag with its image.
        pub fn tags(&self) -> Result<Vec<(String, Digest)>, StoreError> {
            let t = self.tx.open_table(TAGS).ctx("tags")?;
            all_str(&t, "tags")?.into_iter().map(|(k, v)| Ok((k.clone(), parse_digest("tags", &k, &v)?))).collect()
        }

        /// The layer with chain ID `chain_id`.
        pub fn layer(&self, chain_id: &Digest) -> Result<Option<LayerRecord>, StoreError> {
            let t = self.tx.open_table(LAYERS).ctx("layers")?;
            get_json(&t, "layers", &chain_id.to_string())
        }

        /// Every layer.
        pub fn layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
            let t = self.tx.open_table(LAYERS).ctx("layers")?;
            Ok(all_json(&t, "layers")?.into_iter().map(|(_, v)| v).collect())
        }

        /// The container with full ID `id`.
        pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
            let t = self.tx.open_table(CONTAINERS).ctx("containers")?;
            get_json(&t, "containers", id)
        }

        /// Every container, in ID order.
        pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
            let t = self.tx.open_table(CONTAINERS).ctx("containers")?;
            Ok(all_json(&t, "containers")?.into_iter().map(|(_, v)| v).collect())
        }

        /// The definition `name` in `table` (JSON as stored).
        pub fn definition(&self, table: DefinitionTable, name: &str) -> Result<Option<String>, StoreError> {
            let t = self.tx.open_table(table.def()).ctx(table.name())?;
            let v = t.get(name).ctx(table.name())?;
            Ok(v.map(|v| v.value().to_string()))
        }

        /// Every definition in `table`, by name.
        pub fn definitions(&self, table: DefinitionTable) -> Result<Vec<(String, String)>, StoreError> {
            let t = self.tx.open_table(table.def()).ctx(table.name())?;
            all_str(&t, table.name())
        }
    };
}

/// A read-only snapshot of the store.
pub struct ReadTxn {
    tx: redb::ReadTransaction,
}

impl ReadTxn {
    readers!();
}

/// A write transaction (see `Store::write`).
pub struct WriteTxn {
    tx: redb::WriteTransaction,
}

fn put_json<V: Serialize>(
    tx: &redb::WriteTransaction,
    def: TableDefinition<&str, &str>,
    name: &'static str,
    key: &str,
    value: &V,
) -> Result<(), StoreError> {
    let json =
        serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding {name} record {key}: {e}")))?;
    let mut t = tx.open_table(def).ctx(name)?;
    t.insert(key, json.as_str()).ctx(name)?;
    Ok(())
}

fn delete_key(
    tx: &redb::WriteTransaction,
    def: TableDefinition<&str, &str>,
    name: &'static str,
    key: &str,
) -> Result<bool, StoreError> {
    let mut t = tx.open_table(def).ctx(name)?;
    let old = t.remove(key).ctx(name)?;
    Ok(old.is_some())
}

impl WriteTxn {
    readers!();

    /// Adds or replaces an image record.
    pub fn put_image(&self, image: &ImageRecord) -> Result<(), StoreError> {
        put_json(&self.tx, IMAGES, "images", &image.id.to_string(), image)
    }

    /// Deletes an image record; returns whether it existed.
    pub fn delete_image(&self, id: &Digest) -> Result<bool, StoreError> {
        delete_key(&self.tx, IMAGES, "images", &id.to_string())
    }

    /// Points `name:tag` at `id` (the image records' `repo_tags` are the caller's to keep in step).
    pub fn set_tag(&self, name_tag: &str, id: &Digest) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(TAGS).ctx("tags")?;
        t.insert(name_tag, id.to_string().as_str()).ctx("tags")?;
        Ok(())
    }

    /// Removes `name:tag`; returns whether it existed.
    pub fn delete_tag(&self, name_tag: &str) -> Result<bool, StoreError> {
        delete_key(&self.tx, TAGS, "tags", name_tag)
    }

    /// Adds or replaces a layer record.
    pub fn put_layer(&self, layer: &LayerRecord) -> Result<(), StoreError> {
        put_json(&self.tx, LAYERS, "layers", &layer.chain_id.to_string(), layer)
    }

    /// Deletes a layer record; returns whether it existed.
    pub fn delete_layer(&self, chain_id: &Digest) -> Result<bool, StoreError> {
        delete_key(&self.tx, LAYERS, "layers", &chain_id.to_string())
    }

    /// Adds or replaces a container record (keyed by its full ID).
    pub fn put_container(&self, container: &ContainerRecord) -> Result<(), StoreError> {
        put_json(&self.tx, CONTAINERS, "containers", container.id.as_str(), container)
    }

    /// Deletes a container record; returns whether it existed.
    pub fn delete_container(&self, id: &str) -> Result<bool, StoreError> {
        delete_key(&self.tx, CONTAINERS, "containers", id)
    }

    /// Stores the definition `name` (JSON) in `table`.
    pub fn put_definition(&self, table: DefinitionTable, name: &str, json: &str) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(table.def()).ctx(table.name())?;
        t.insert(name, json).ctx(table.name())?;
        Ok(())
    }

    /// Deletes the definition `name` from `table`; returns whether it existed.
    pub fn delete_definition(&self, table: DefinitionTable, name: &str) -> Result<bool, StoreError> {
        delete_key(&self.tx, table.def(), table.name(), name)
    }

    /// Makes every change of this transaction durable and visible at once.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().ctx("committing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: u8, layers: Vec<Digest>) -> ImageRecord {
        ImageRecord {
            id: Digest::of(&[n]),
            repo_tags: vec![],
            repo_digests: vec![],
            layers,
            manifest: None,
            size: 0,
            added_at: "2024-01-01T00:00:00Z".into(),
        }
    }

    fn layer(n: u8) -> LayerRecord {
        let diff = Digest::of(&[n, n]);
        LayerRecord {
            chain_id: diff.clone(),
            diff_id: diff.clone(),
            parent: None,
            storage_id: diff.hex().to_string(),
            size: 1,
            tar_size: 2,
            blob: None,
        }
    }

    #[test]
    fn an_uncommitted_transaction_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let l = layer(1);
        let img = image(1, vec![l.chain_id.clone()]);
        {
            let tx = store.write().unwrap();
            tx.put_layer(&l).unwrap();
            tx.put_image(&img).unwrap();
            tx.set_tag("busybox:latest", &img.id).unwrap();
            // Visible inside the transaction, not outside it.
            assert!(tx.image(&img.id).unwrap().is_some());
            assert!(store.read().unwrap().image(&img.id).unwrap().is_none());
            // dropped: aborted
        }
        let r = store.read().unwrap();
        assert!(r.images().unwrap().is_empty() && r.layers().unwrap().is_empty() && r.tags().unwrap().is_empty());
    }

    #[test]
    fn a_committed_transaction_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let l = layer(1);
        let img = image(1, vec![l.chain_id.clone()]);
        {
            let store = Store::open(&path).unwrap();
            let tx = store.write().unwrap();
            tx.put_layer(&l).unwrap();
            tx.put_image(&img).unwrap();
            tx.set_tag("busybox:latest", &img.id).unwrap();
            tx.put_definition(DefinitionTable::Volumes, "data", "{}").unwrap();
            tx.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.image(&img.id).unwrap(), Some(img.clone()));
        assert_eq!(r.layer(&l.chain_id).unwrap(), Some(l));
        assert_eq!(r.tag("busybox:latest").unwrap(), Some(img.id.clone()));
        assert_eq!(r.definitions(DefinitionTable::Volumes).unwrap(), vec![("data".to_string(), "{}".to_string())]);
        drop(r);
        let tx = store.write().unwrap();
        assert!(tx.delete_tag("busybox:latest").unwrap());
        assert!(!tx.delete_tag("busybox:latest").unwrap());
        assert!(tx.delete_image(&img.id).unwrap());
        tx.commit().unwrap();
        assert!(store.read().unwrap().images().unwrap().is_empty());
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("must be locked");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
