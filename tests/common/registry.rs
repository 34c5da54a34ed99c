//! A real registry for tests: Debian's `docker-registry` (distribution 2.8)
//! on 127.0.0.1 inside a sandbox's network namespace, with a temp storage
//! dir, and `skopeo` (the independent second client) to fill and read it.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::images::{sha256_digest, Compression, TestImage};
use super::net::{sandbox_sh_ok, tcp_listening};
use super::{poll_until, Sandbox};

/// The registry's port inside the sandbox's network namespace (its own, so any port is free).
pub const PORT: u16 = 5000;

/// `docker-registry` serving a temp dir, in the sandbox's namespaces; killed by its PID when dropped.
pub struct Registry {
    child: Child,
}

impl Registry {
    /// A registry without auth or TLS on `127.0.0.1:PORT`.
    pub fn start(sb: &Sandbox) -> Registry {
        Self::start_with(sb, "")
    }

    /// A registry whose config has `extra` appended right after `http:` /
    /// `  addr: ...`: lines indented by two continue `http:` (`  tls:`),
    /// unindented ones are sections of their own (`auth:`).
    pub fn start_with(sb: &Sandbox, extra: &str) -> Registry {
        Self::start_at(sb, "127.0.0.1", PORT, extra)
    }

    /// A registry listening on `ip:port` (`0.0.0.0` for every address of the
    /// sandbox's namespace), its config extended by `extra` as `start_with` says.
    pub fn start_at(sb: &Sandbox, ip: &str, port: u16, extra: &str) -> Registry {
        let storage = sb.file(&format!("registry-{port}-storage"));
        fs::create_dir_all(&storage).expect("creating the registry's storage dir");
        let config = sb.file(&format!("registry-{port}.yml"));
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n{extra}",
                storage.display()
            ),
        )
        .expect("writing the registry's config");
        let log = fs::File::create(sb.file(&format!("registry-{port}.log"))).expect("creating the registry's log");
        // nsenter execs the registry (no --fork): the child's PID is the registry's.
        let child = Command::new("nsenter")
            .args(["-t", &sb.holder_pid().to_string(), "-n", "-m", "--", "docker-registry", "serve"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (install it with scripts/ensure-deps)");
        let registry = Registry { child };
        poll_until(Duration::from_secs(20), "the registry to listen", || tcp_listening(sb, port));
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo in the sandbox (where the registry is), without a signature policy.
pub fn skopeo(sb: &Sandbox, args: &str) -> String {
    sandbox_sh_ok(sb, &format!("skopeo --insecure-policy {args}"))
}

/// Pushes `img` to the registry as `localhost:PORT/<name>`; returns the manifest digest.
pub fn push(sb: &Sandbox, img: &TestImage, name: &str) -> String {
    push_to(sb, img, &format!("localhost:{PORT}"), name);
    manifest_digest(sb, name)
}

/// Pushes `img` as `<registry>/<name>` (any TLS certificate accepted).
pub fn push_to(sb: &Sandbox, img: &TestImage, registry: &str, name: &str) {
    let archive = sb.file(&format!("{}-{}.tar", registry.replace(['.', ':'], "_"), name.replace(['/', ':'], "_")));
    img.save_docker_archive(&[name], &archive).expect("writing a test image archive");
    skopeo(sb, &format!("copy --dest-tls-verify=false docker-archive:{} docker://{registry}/{name}", archive.display()));
}

pub fn manifest_digest(sb: &Sandbox, name: &str) -> String {
    let raw = skopeo(sb, &format!("inspect --raw --tls-verify=false docker://localhost:{PORT}/{name}"));
    sha256_digest(raw.as_bytes())
}

/// `busybox()` as an image for another architecture (its config says so; the bytes are the same).
pub fn for_arch(img: TestImage, arch: &str) -> TestImage {
    let mut config: serde_json::Value = serde_json::from_slice(&img.config).expect("a test image's config is JSON");
    config["architecture"] = serde_json::json!(arch);
    TestImage { config: serde_json::to_vec(&config).expect("serialising a JSON value"), layers: img.layers }
}

/// An OCI layout directory whose index lists one manifest per (image, architecture).
pub fn oci_index_dir(dir: &std::path::Path, entries: &[(&TestImage, &str)]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("creating the layout");
    let put = |bytes: &[u8]| {
        let digest = sha256_digest(bytes);
        fs::write(blobs.join(&digest[7..]), bytes).expect("writing a blob");
        digest
    };
    let mut manifests = Vec::new();
    for (img, arch) in entries {
        let layers: Vec<serde_json::Value> = img
            .layers
            .iter()
            .map(|l| {
                let blob = Compression::Gzip.apply(l).expect("compressing a layer");
                let digest = put(&blob);
                serde_json::json!({"mediaType": Compression::Gzip.oci_media_type(), "digest": digest, "size": blob.len()})
            })
            .collect();
        let config = put(&img.config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": img.config.len()},
            "layers": layers,
        }))
        .expect("serialising a manifest");
        let digest = put(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    // The layout's index.json names the two-platform index as `1` (skopeo wants one image per reference).
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("serialising the index");
    let digest = put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).expect("serialising index.json")).expect("writing index.json");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("writing oci-layout");
}

