//! Test images, built locally from Debian's static busybox.
//!
//! Nothing is pulled: every image the tests load is made here as a
//! docker-archive tar (`manifest.json`, `repositories`, `<hex>.json` config,
//! `<hex>/layer.tar`) or an OCI image layout tar. Layer tars are written
//! header by header so that malicious entries (`../../escape`, absolute
//! paths, links that point out of the layer) can be made on purpose; the
//! `tar` crate's safe path setters would refuse them.
//!
//! Used by the end-to-end tests (`mod common;`) and by
//! `cargo run --example make-test-image -- VARIANT OUT.tar` for `scripts/run`.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

/// Fixed mtime for every entry, so that the same variant always has the same digests.
pub const MTIME: u64 = 1_700_000_000;
/// The `created` time written into configs and history.
const CREATED: &str = "2024-01-01T00:00:00Z";

/// Where the static busybox is (`BERTH_BUSYBOX` overrides; Debian's busybox-static installs /bin/busybox).
pub fn busybox_path() -> String {
    std::env::var("BERTH_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_string())
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One entry of a layer tar. Paths are written verbatim into the header.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    /// A regular file with an owner other than root.
    Owned {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
        data: Vec<u8>,
    },
    /// A regular file with extended attributes (PAX `SCHILY.xattr.*` records).
    WithXattrs {
        path: String,
        mode: u32,
        data: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    /// A character device node.
    CharDevice {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
    /// A named pipe, device fields written as zeros (as Go's archive/tar and `tar --format=ustar` write them).
    Fifo {
        path: String,
        mode: u32,
    },
    /// A named pipe with empty (NUL) device fields, as GNU tar's default format writes it.
    GnuFifo {
        path: String,
        mode: u32,
    },
}

impl Entry {
    /// A directory.
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::Dir { path: path.to_string(), mode }
    }
    /// A regular file.
    pub fn file(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File { path: path.to_string(), mode, data: data.into() }
    }
    /// A symbolic link `path -> target`.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink { path: path.to_string(), target: target.to_string() }
    }
    /// A hard link `path` to the earlier entry `target`.
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::Hardlink { path: path.to_string(), target: target.to_string() }
    }
}

/// Copies `value` into a fixed-size tar header field, failing if it does not fit.
fn put_field(field: &mut [u8], value: &str) -> io::Result<()> {
    let bytes = value.as_bytes();
    if bytes.len() > field.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar field too long for test entry: {value:?}"),
        ));
    }
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Writes a layer tar of `entries` to `out`, paths and link names verbatim.
pub fn write_layer<W: Write>(entries: &[Entry], out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        if let Entry::WithXattrs { xattrs, .. } = entry {
            let records: Vec<(String, &[u8])> =
                xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
            builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (path, &[])
            }
            Entry::File { path, mode, data } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (path, data)
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                put_field(&mut header.as_old_mut().linkname, target)?;
                (path, &[])
            }
            Entry::Hardlink { path, target } => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                put_field(&mut header.as_old_mut().linkname, target)?;
                (path, &[])
            }
            Entry::Owned { path, mode, uid, gid, data } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_uid(*uid);
                header.set_gid(*gid);
                (path, data)
            }
            Entry::WithXattrs { path, mode, data, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (path, data)
            }
            Entry::CharDevice { path, mode, major, minor } => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(*mode);
                header.set_device_major(*major)?;
                header.set_device_minor(*minor)?;
                (path, &[])
            }
            Entry::Fifo { path, mode } => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(*mode);
                header.set_device_major(0)?;
                header.set_device_minor(0)?;
                (path, &[])
            }
            Entry::GnuFifo { path, mode } => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(*mode);
                if let Some(ustar) = header.as_ustar_mut() {
                    ustar.dev_major.fill(0);
                    ustar.dev_minor.fill(0);
                }
                (path, &[])
            }
        };
        put_field(&mut header.as_old_mut().name, path)?;
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data)?;
    }
    builder.into_inner()
}

/// A layer tar of `entries`, in memory.
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    write_layer(entries, Vec::new()).expect("writing a test layer into memory")
}

/// The applets busybox links (`busybox --list-full`), e.g. `bin/sh`, `usr/bin/awk`.
fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let bb = busybox_path();
        let out = std::process::Command::new(&bb)
            .arg("--list-full")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bb} --list-full (install busybox-static): {e}"));
        assert!(out.status.success(), "{bb} --list-full failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains('/') && *l != "bin/busybox")
            .map(str::to_string)
            .collect()
    })
}

/// The entries of a minimal busybox root filesystem.
pub fn busybox_entries() -> Vec<Entry> {
    let bb = busybox_path();
    let binary = std::fs::read(&bb).unwrap_or_else(|e| panic!("cannot read {bb} (install busybox-static): {e}"));
    let mut entries = vec![
        Entry::dir("bin/", 0o755),
        Entry::dir("dev/", 0o755),
        Entry::dir("etc/", 0o755),
        Entry::file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        Entry::file("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"),
        Entry::dir("proc/", 0o555),
        Entry::dir("root/", 0o700),
        Entry::dir("sbin/", 0o755),
        Entry::dir("sys/", 0o555),
        Entry::dir("tmp/", 0o1777),
        Entry::dir("usr/", 0o755),
        Entry::dir("usr/bin/", 0o755),
        Entry::dir("usr/sbin/", 0o755),
        Entry::file("bin/busybox", 0o755, binary),
    ];
    for applet in busybox_applets() {
        entries.push(Entry::symlink(applet, "/bin/busybox"));
    }
    entries
}

/// How layer blobs are compressed inside an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// `data` compressed this way.
    pub fn apply(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()
            }
            Compression::Zstd => zstd::encode_all(data, 3),
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// An image as the tests know it: its config bytes and its uncompressed layer tars.
#[derive(Clone, Debug)]
pub struct TestImage {
    /// The config JSON, byte for byte as archived (its digest is the image ID).
    pub config: Vec<u8>,
    /// Uncompressed layer tars, base first (their digests are the diff IDs).
    pub layers: Vec<Vec<u8>>,
}

impl TestImage {
    /// Makes an image of `layers` with a config whose history names each layer `comment i`.
    pub fn new(layers: Vec<Vec<u8>>, comment: &str) -> TestImage {
        let config = serde_json::json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        });
        Self::with_config(layers, comment, config)
    }

    /// Makes an image of `layers` whose runtime config (`config` in the image
    /// JSON: Cmd, Entrypoint, Env, WorkingDir, User, ...) is `run_config`.
    pub fn with_config(layers: Vec<Vec<u8>>, comment: &str, run_config: serde_json::Value) -> TestImage {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let history: Vec<serde_json::Value> = (0..layers.len())
            .map(|i| {
                serde_json::json!({
                    "created": CREATED,
                    "created_by": format!("/bin/sh -c #(nop) {comment} layer {i}"),
                })
            })
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": run_config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        TestImage { config: serde_json::to_vec(&config).expect("serialising a JSON value"), layers }
    }

    /// The image ID: `sha256:` + the config's digest.
    pub fn id(&self) -> String {
        sha256_digest(&self.config)
    }

    /// The first 12 hex digits of the ID, as `images` prints it.
    pub fn short_id(&self) -> String {
        self.id()["sha256:".len().."sha256:".len() + 12].to_string()
    }

    /// The layers' diff IDs, base first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha256_digest(l)).collect()
    }

    /// Total bytes of the uncompressed layer tars.
    pub fn layers_tar_size(&self) -> u64 {
        self.layers.iter().map(|l| l.len() as u64).sum()
    }

    /// Writes a docker-archive (`docker save` format) tagged with `repo_tags`.
    pub fn write_docker_archive<W: Write>(&self, repo_tags: &[&str], out: W) -> io::Result<W> {
        self.write_docker_archive_compressed(repo_tags, Compression::None, out)
    }

    /// Writes a docker-archive whose `layer.tar` files are compressed (Docker detects and accepts that).
    pub fn write_docker_archive_compressed<W: Write>(
        &self,
        repo_tags: &[&str],
        compression: Compression,
        out: W,
    ) -> io::Result<W> {
        let mut tar = tar::Builder::new(out);
        let config_hex = &self.id()[7..];
        let mut layer_paths = Vec::new();
        for layer in &self.layers {
            let blob = compression.apply(layer)?;
            let hex = &sha256_digest(&blob)[7..];
            append_dir(&mut tar, &format!("{hex}/"))?;
            append_bytes(&mut tar, &format!("{hex}/VERSION"), b"1.0")?;
            append_bytes(&mut tar, &format!("{hex}/layer.tar"), &blob)?;
            layer_paths.push(format!("{hex}/layer.tar"));
        }
        append_bytes(&mut tar, &format!("{config_hex}.json"), &self.config)?;
        let manifest = serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": repo_tags,
            "Layers": layer_paths,
        }]);
        append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&manifest).map_err(io::Error::other)?)?;
        // `repositories` maps repo -> tag -> top layer, as Docker's legacy format does.
        let top = self.layers.last().map(|l| sha256_digest(l)[7..].to_string()).unwrap_or_default();
        let mut repos = serde_json::Map::new();
        for rt in repo_tags {
            if let Some((repo, tag)) = rt.rsplit_once(':') {
                let entry = repos.entry(repo.to_string()).or_insert_with(|| serde_json::json!({}));
                entry[tag] = serde_json::Value::String(top.clone());
            }
        }
        append_bytes(&mut tar, "repositories", &serde_json::to_vec(&repos).map_err(io::Error::other)?)?;
        tar.into_inner()
    }

    /// Writes an OCI image layout tar with layers compressed by `compression`.
    /// `name` (e.g. `busybox:oci`) goes into the index annotations as Docker writes them.
    /// `corrupt_layer` flips a byte of the first layer blob after its digest was taken.
    pub fn write_oci_layout<W: Write>(
        &self,
        name: &str,
        compression: Compression,
        corrupt_layer: bool,
        out: W,
    ) -> io::Result<W> {
        let mut tar = tar::Builder::new(out);
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut layer_descs = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let media_type = compression.oci_media_type();
            let mut blob = compression.apply(layer)?;
            let digest = sha256_digest(&blob);
            layer_descs.push(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": blob.len() }));
            if corrupt_layer && i == 0 {
                let mid = blob.len() / 2;
                blob[mid] ^= 0xff;
            }
            blobs.push((digest, blob));
        }
        let config_digest = self.id();
        blobs.push((config_digest.clone(), self.config.clone()));
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": self.config.len(),
            },
            "layers": layer_descs,
        }))
        .map_err(io::Error::other)?;
        let manifest_digest = sha256_digest(&manifest);
        blobs.push((manifest_digest.clone(), manifest.clone()));
        let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": format!("docker.io/library/{name}"),
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))
        .map_err(io::Error::other)?;
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        for (digest, blob) in &blobs {
            append_bytes(&mut tar, &format!("blobs/sha256/{}", &digest[7..]), blob)?;
        }
        append_bytes(&mut tar, "index.json", &index)?;
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.into_inner()
    }

    /// Writes a docker-archive to a file.
    pub fn save_docker_archive(&self, repo_tags: &[&str], path: &Path) -> io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = self.write_docker_archive(repo_tags, io::BufWriter::new(file))?;
        out.flush()
    }

    /// Writes an OCI layout archive to a file.
    pub fn save_oci_layout(
        &self,
        name: &str,
        compression: Compression,
        corrupt_layer: bool,
        path: &Path,
    ) -> io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = self.write_oci_layout(name, compression, corrupt_layer, io::BufWriter::new(file))?;
        out.flush()
    }
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_mtime(MTIME);
    h.set_size(0);
    tar.append_data(&mut h, path, io::empty())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, path, data)
}

/// The one-layer busybox image.
pub fn busybox() -> TestImage {
    TestImage::new(vec![layer(&busybox_entries())], "busybox")
}

/// Three layers: busybox; files, a setuid file, a symlink, a hard link, an
/// owned file, a file with an xattr, a device node and a fifo;
/// then a whiteout of `/data/a`, an opaque `/opq` with a new `y`, and a rewritten `/data/b`.
pub fn multilayer() -> TestImage {
    let l1 = layer(&busybox_entries());
    let l2 = layer(&[
        Entry::dir("data/", 0o755),
        Entry::file("data/a", 0o644, "a from layer 2\n"),
        Entry::file("data/b", 0o640, "b from layer 2\n"),
        Entry::hardlink("data/hard", "data/b"),
        Entry::file("data/suid", 0o4755, "#!/bin/sh\necho setuid\n"),
        Entry::symlink("data/link", "b"),
        Entry::dir("data/sub/", 0o700),
        Entry::file("data/sub/deep", 0o600, "deep\n"),
        Entry::Owned { path: "data/owned".into(), mode: 0o640, uid: 1000, gid: 1001, data: b"owned\n".to_vec() },
        Entry::WithXattrs {
            path: "data/xattr".into(),
            mode: 0o644,
            data: b"has xattrs\n".to_vec(),
            xattrs: vec![("user.berth.test".into(), b"value-1".to_vec())],
        },
        Entry::CharDevice { path: "data/null".into(), mode: 0o666, major: 1, minor: 3 },
        Entry::Fifo { path: "data/fifo".into(), mode: 0o600 },
        Entry::dir("opq/", 0o755),
        Entry::file("opq/x", 0o644, "x from layer 2\n"),
        Entry::dir("opq/xdir/", 0o755),
        Entry::file("opq/xdir/inner", 0o644, "inner\n"),
    ]);
    let l3 = layer(&[
        Entry::dir("data/", 0o755),
        Entry::file("data/.wh.a", 0o644, ""),
        Entry::file("data/b", 0o644, "b from layer 3\n"),
        Entry::dir("opq/", 0o750),
        Entry::file("opq/.wh..wh..opq", 0o644, ""),
        Entry::file("opq/y", 0o644, "y from layer 3\n"),
    ]);
    TestImage::new(vec![l1, l2, l3], "multilayer")
}

/// 120 small layers: layer `i` adds `/layers/f<i>` and rewrites `/top`.
pub fn layers120() -> TestImage {
    let layers = (0..120)
        .map(|i| {
            layer(&[
                Entry::dir("layers/", 0o755),
                Entry::file(&format!("layers/f{i:03}"), 0o644, format!("layer {i}\n")),
                Entry::file("top", 0o644, format!("top from layer {i}\n")),
            ])
        })
        .collect();
    TestImage::new(layers, "layers120")
}

/// A layer whose second entry climbs out with `../../escape-<marker>`.
pub fn escape(marker: &str) -> TestImage {
    TestImage::new(
        vec![layer(&[
            Entry::file("inside", 0o644, "inside\n"),
            Entry::file(&format!("../../escape-{marker}"), 0o644, "escaped\n"),
        ])],
        "escape",
    )
}

/// A layer with the absolute path `/abs-file-<marker>` (taken relative to the layer root).
pub fn absolute(marker: &str) -> TestImage {
    TestImage::new(vec![layer(&[Entry::file(&format!("/abs-file-{marker}"), 0o644, "absolute\n")])], "absolute")
}

/// A layer with its own `tmp/`, a symlink `hosttmp -> /tmp`, then
/// `hosttmp/written-through-<marker>`: resolved in the layer, that is the layer's `tmp/`.
pub fn symlink_through(marker: &str) -> TestImage {
    TestImage::new(
        vec![layer(&[
            Entry::dir("tmp/", 0o1777),
            Entry::symlink("hosttmp", "/tmp"),
            Entry::file(&format!("hosttmp/written-through-{marker}"), 0o644, "through\n"),
        ])],
        "symlink-through",
    )
}

/// A layer with a hard link whose target climbs out of the layer to `outside`
/// (an absolute host path), then a regular file written over that link.
pub fn hardlink_out(outside: &str) -> TestImage {
    let climb = format!("{}{}", "../".repeat(10), outside.trim_start_matches('/'));
    TestImage::new(
        vec![layer(&[
            Entry::hardlink("stolen", &climb),
            Entry::file("stolen", 0o644, "overwritten through a hard link\n"),
        ])],
        "hardlink-out",
    )
}

/// Two layers: the first has symlinks to the host directory `outside` (absolute,
/// and climbing with `..`); the second writes `pwned-<marker>` through each.
/// Resolved inside the layers, neither write can reach `outside`.
pub fn cross_layer_symlink(outside: &str, marker: &str) -> TestImage {
    let climb = format!("{}{}", "../".repeat(10), outside.trim_start_matches('/'));
    let l1 = layer(&[Entry::symlink("abs", outside), Entry::symlink("rel", &climb)]);
    let l2 = layer(&[
        Entry::file(&format!("abs/pwned-{marker}"), 0o644, "through abs\n"),
        Entry::file(&format!("rel/pwned-{marker}"), 0o644, "through rel\n"),
    ]);
    TestImage::new(vec![l1, l2], "cross-layer-symlink")
}

/// A static binary built from `tests/fixtures/<name>.c` with `cc -static`
/// (gcc and libc6-dev; scripts/ensure-deps installs them). Built once per process.
pub fn fixture_binary(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(binary) = built.get(name) {
        return binary.clone();
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.c"));
    let dir = tempfile::Builder::new().prefix("berth-fixture-").tempdir().expect("creating a temp dir for cc");
    let out = dir.path().join(name);
    let status = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cc for {} (install gcc and libc6-dev): {e}", source.display()));
    assert!(status.success(), "cc -static {} failed ({status})", source.display());
    let binary = std::fs::read(&out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()));
    built.insert(name.to_string(), binary.clone());
    binary
}

/// `/etc/passwd` of the test images: root, a named user `app` (1000) and nobody.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app user:/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
/// `/etc/group`: `app` is also a member of `extra` (2000), a supplementary group.
pub const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n";

/// The second layer of `testbox`: users, the static test tools, a symlink to `/`
/// and a file that only exists inside the image.
fn testbox_entries() -> Vec<Entry> {
    vec![
        Entry::dir("etc/", 0o755),
        Entry::file("etc/passwd", 0o644, PASSWD),
        Entry::file("etc/group", 0o644, GROUP),
        Entry::dir("home/", 0o755),
        Entry::dir("home/app/", 0o755),
        Entry::Owned { path: "home/app/.profile".into(), mode: 0o644, uid: 1000, gid: 1000, data: b"# app\n".to_vec() },
        Entry::dir("srv/", 0o755),
        Entry::file("srv/motd", 0o644, "served from /srv\n"),
        Entry::dir("tmp/", 0o1777),
        Entry::file("tmp/inside-the-image", 0o644, "this file is in the image's /tmp\n"),
        // `/evil -> /`: a workdir of `/evil/tmp` must resolve inside the rootfs, never on the host.
        Entry::symlink("evil", "/"),
        Entry::dir("usr/local/", 0o755),
        Entry::dir("usr/local/bin/", 0o755),
        Entry::file("usr/local/bin/alloc", 0o755, fixture_binary("alloc")),
        Entry::file("usr/local/bin/procexe", 0o755, fixture_binary("procexe")),
    ]
}

/// The standard runtime config: busybox's PATH and `sh`.
fn default_run_config() -> serde_json::Value {
    serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    })
}

/// busybox plus `testbox_entries`: `alloc` (holds anonymous memory), `procexe`
/// (the /proc/<pid>/exe probe), the user `app`, `/evil -> /`, `/tmp/inside-the-image`.
pub fn testbox() -> TestImage {
    TestImage::with_config(vec![layer(&busybox_entries()), layer(&testbox_entries())], "testbox", default_run_config())
}

/// `testbox` with a runtime config that sets everything a Dockerfile can:
/// ENTRYPOINT `sh -c`, CMD a script that reports who, where and what it runs
/// with, ENV, WORKDIR /srv, USER app, a label and a stop signal.
pub fn configured() -> TestImage {
    let config = serde_json::json!({
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "GREETING=hello from the image",
        ],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo \"user=$(id -un) uid=$(id -u) groups=$(id -G) pwd=$(pwd) greeting=$GREETING\""],
        "WorkingDir": "/srv",
        "User": "app",
        "Labels": { "org.example.from-image": "yes" },
        "StopSignal": "SIGUSR1",
    });
    TestImage::with_config(vec![layer(&busybox_entries()), layer(&testbox_entries())], "configured", config)
}

/// busybox with neither CMD nor ENTRYPOINT: `run` without a command must fail.
pub fn nocmd() -> TestImage {
    let config = serde_json::json!({ "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] });
    TestImage::with_config(vec![layer(&busybox_entries())], "nocmd", config)
}

/// `testbox` whose WORKDIR is `/evil/tmp` (through the symlink to `/`).
pub fn workdir_escape() -> TestImage {
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["ls"],
        "WorkingDir": "/evil/tmp",
    });
    TestImage::with_config(vec![layer(&busybox_entries()), layer(&testbox_entries())], "workdir-escape", config)
}

/// Where Debian's `sqlite3` is (`BERTH_SQLITE3` overrides; scripts/ensure-deps installs it).
pub fn sqlite3_path() -> String {
    std::env::var("BERTH_SQLITE3").unwrap_or_else(|_| "/usr/bin/sqlite3".to_string())
}

/// The shared libraries and the loader `ldd` lists for `binary`, as absolute paths.
fn ldd_paths(binary: &str) -> Vec<String> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ldd {binary} (libc-bin): {e}"));
    assert!(out.status.success(), "ldd {binary} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // `libz.so.1 => /lib/.../libz.so.1 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`.
            let l = l.trim();
            let path = l.split_once("=>").map(|(_, r)| r.trim()).unwrap_or(l);
            path.split_whitespace().next().filter(|p| p.starts_with('/')).map(str::to_string)
        })
        .collect()
}

/// `path` and its library closure (libs, loader) as layer entries at the
/// same paths, with the directories they need; files are read through
/// symlinks (merged /usr), so the image needs no host links.
pub fn dynamic_binary_entries(path: &str, dest: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut files = vec![(dest.trim_start_matches('/').to_string(), path.to_string())];
    for lib in ldd_paths(path) {
        files.push((lib.trim_start_matches('/').to_string(), lib));
    }
    for (rel, _) in &files {
        let mut parent = std::path::Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(format!("{}/", p.display()));
            parent = p.parent();
        }
    }
    for d in dirs {
        entries.push(Entry::dir(&d, 0o755));
    }
    for (rel, src) in files {
        let data = std::fs::read(&src).unwrap_or_else(|e| panic!("cannot read {src}: {e}"));
        entries.push(Entry::file(&rel, 0o755, data));
    }
    entries
}

/// busybox plus Debian's `sqlite3` with its libraries and loader, and an
/// empty `/var/lib/db` for the database.
pub fn sqlite() -> TestImage {
    let mut extra = dynamic_binary_entries(&sqlite3_path(), "/usr/bin/sqlite3");
    extra.extend([Entry::dir("var/", 0o755), Entry::dir("var/lib/", 0o755), Entry::dir("var/lib/db/", 0o755)]);
    TestImage::with_config(vec![layer(&busybox_entries()), layer(&extra)], "sqlite", default_run_config())
}

/// busybox plus directories for the volume tests: `/seed` holds files with
/// owners and modes (copied up into an empty volume), `/declared` is an
/// image `VOLUME` with a file in it, `/empty` is an empty directory.
pub fn volumebox() -> TestImage {
    let l2 = layer(&[
        Entry::dir("etc/", 0o755),
        Entry::file("etc/passwd", 0o644, PASSWD),
        Entry::file("etc/group", 0o644, GROUP),
        Entry::dir("seed/", 0o750),
        Entry::file("seed/readme", 0o644, "seeded by the image\n"),
        Entry::Owned { path: "seed/owned".into(), mode: 0o640, uid: 1000, gid: 2000, data: b"app's\n".to_vec() },
        Entry::dir("seed/sub/", 0o700),
        Entry::file("seed/sub/deep", 0o600, "deep\n"),
        Entry::symlink("seed/link", "readme"),
        Entry::dir("declared/", 0o755),
        Entry::file("declared/from-image", 0o644, "declared volume content\n"),
        Entry::dir("empty/", 0o755),
    ]);
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "Volumes": { "/declared": {} },
    });
    TestImage::with_config(vec![layer(&busybox_entries()), l2], "volumebox", config)
}

/// busybox plus `/usr/local/bin/tcpbench` (tests/fixtures/tcpbench.c, a TCP
/// throughput server and client) for benches/net.sh; runs its server by default.
pub fn netbench() -> TestImage {
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["tcpbench", "server", "5001"],
        "ExposedPorts": { "5001/tcp": {} },
    });
    let tools = layer(&[
        Entry::dir("usr/local/", 0o755),
        Entry::dir("usr/local/bin/", 0o755),
        Entry::file("usr/local/bin/tcpbench", 0o755, fixture_binary("tcpbench")),
    ]);
    TestImage::with_config(vec![layer(&busybox_entries()), tools], "netbench", config)
}

/// Incompressible bytes from a fixed seed (xorshift64*), `len` of them.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// busybox plus a layer with one file of `mib` MiB of incompressible data at `/big/noise.bin`.
pub fn big(mib: usize) -> TestImage {
    let data = noise(0x5eed, mib << 20);
    let l2 = layer(&[Entry::dir("big/", 0o755), Entry::file("big/noise.bin", 0o644, data)]);
    TestImage::new(vec![layer(&busybox_entries()), l2], "big")
}

/// A rootfs tar for `import` (no image metadata): the busybox tree.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    layer(&busybox_entries())
}

/// Formats a byte count as Docker does (`units.HumanSizeWithPrecision(size, 3)`: SI, 3 significant digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // Go's %.3g: 3 significant digits, trailing zeros removed.
    let digits = if size >= 100.0 {
        0
    } else if size >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{size:.digits$}");
    if s == "1000" {
        // Go's %.3g of 999.5..1000 switches to exponent form, and Docker prints that.
        s = "1e+03".to_string();
    }
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let mut out = String::new();
    let _ = write!(out, "{s}{}", UNITS[unit]);
    out
}

/// The variants `make-test-image` knows, for `scripts/run` and by hand.
pub const VARIANTS: &[&str] = &[
    "busybox",
    "busybox-oci",
    "multilayer",
    "layers120",
    "escape",
    "absolute",
    "symlink-through",
    "bad-digest-oci",
    "truncated",
    "big",
    "testbox",
    "configured",
    "nocmd",
    "workdir-escape",
    "netbench",
    "sqlite",
    "volumebox",
];

/// Writes the named variant to `out` (the names of `VARIANTS`), tagged `<variant>:latest`.
pub fn write_variant(variant: &str, out: &Path) -> io::Result<()> {
    let tag = format!("{variant}:latest");
    match variant {
        "busybox" => busybox().save_docker_archive(&["busybox:latest"], out),
        "busybox-oci" => busybox().save_oci_layout("busybox:oci", Compression::Gzip, false, out),
        "multilayer" => multilayer().save_docker_archive(&[&tag], out),
        "layers120" => layers120().save_docker_archive(&[&tag], out),
        "escape" => escape("x").save_docker_archive(&[&tag], out),
        "absolute" => absolute("x").save_docker_archive(&[&tag], out),
        "symlink-through" => symlink_through("x").save_docker_archive(&[&tag], out),
        "bad-digest-oci" => busybox().save_oci_layout("bad-digest:latest", Compression::None, true, out),
        "truncated" => {
            let full = busybox().write_docker_archive(&["truncated:latest"], Vec::new())?;
            std::fs::write(out, truncated(&full))
        }
        "big" => big(200).save_docker_archive(&[&tag], out),
        "testbox" => testbox().save_docker_archive(&[&tag], out),
        "configured" => configured().save_docker_archive(&[&tag], out),
        "nocmd" => nocmd().save_docker_archive(&[&tag], out),
        "workdir-escape" => workdir_escape().save_docker_archive(&[&tag], out),
        "netbench" => netbench().save_docker_archive(&[&tag], out),
        "sqlite" => sqlite().save_docker_archive(&[&tag], out),
        "volumebox" => volumebox().save_docker_archive(&[&tag], out),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown test image variant {other:?}; known: {}", VARIANTS.join(", ")),
        )),
    }
}

/// The first 60% of an archive: cut in the middle of the busybox binary's layer.
pub fn truncated(full: &[u8]) -> Vec<u8> {
    full[..full.len() * 6 / 10].to_vec()
}
