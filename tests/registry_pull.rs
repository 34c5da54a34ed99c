//! A user pulls images from a registry — Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 inside the sandbox, filled by `skopeo`,
//! the independent second client — with `berth pull`, `berth run` of a
//! missing image, and the docker CLI.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::images::{self, sha256_digest, Compression, TestImage};
use common::net::{sandbox_sh_ok, tcp_listening};
use common::{poll_until, Sandbox};

/// The registry's port inside the sandbox's network namespace (its own, so any port is free).
const PORT: u16 = 5000;

/// `docker-registry` serving a temp dir, in the sandbox's namespaces; killed by its PID when dropped.
struct Registry {
    child: Child,
}

impl Registry {
    fn start(sb: &Sandbox) -> Registry {
        let storage = sb.file("registry-storage");
        fs::create_dir_all(&storage).expect("creating the registry's storage dir");
        let config = sb.file("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{PORT}\n",
                storage.display()
            ),
        )
        .expect("writing the registry's config");
        let log = fs::File::create(sb.file("registry.log")).expect("creating the registry's log");
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
        poll_until(Duration::from_secs(20), "the registry to listen", || tcp_listening(sb, PORT));
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
fn skopeo(sb: &Sandbox, args: &str) -> String {
    sandbox_sh_ok(sb, &format!("skopeo --insecure-policy {args}"))
}

/// Pushes `img` to the registry as `localhost:PORT/<name>`; returns the manifest digest.
fn push(sb: &Sandbox, img: &TestImage, name: &str) -> String {
    let archive = sb.file(&format!("{}.tar", name.replace(['/', ':'], "_")));
    img.save_docker_archive(&[name], &archive).expect("writing a test image archive");
    skopeo(sb, &format!("copy --dest-tls-verify=false docker-archive:{} docker://localhost:{PORT}/{name}", archive.display()));
    manifest_digest(sb, name)
}

fn manifest_digest(sb: &Sandbox, name: &str) -> String {
    let raw = skopeo(sb, &format!("inspect --raw --tls-verify=false docker://localhost:{PORT}/{name}"));
    sha256_digest(raw.as_bytes())
}

/// `busybox()` as an image for another architecture (its config says so; the bytes are the same).
fn for_arch(img: TestImage, arch: &str) -> TestImage {
    let mut config: serde_json::Value = serde_json::from_slice(&img.config).expect("a test image's config is JSON");
    config["architecture"] = serde_json::json!(arch);
    TestImage { config: serde_json::to_vec(&config).expect("serialising a JSON value"), layers: img.layers }
}

/// An OCI layout directory whose index lists one manifest per (image, architecture).
fn oci_index_dir(dir: &std::path::Path, entries: &[(&TestImage, &str)]) {
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

fn repo_digests(sb: &Sandbox, name: &str) -> Vec<String> {
    sb.inspect(name)["RepoDigests"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn berth_pulls_runs_and_pulls_by_digest_and_bad_references_fail_clearly() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let img = images::busybox();
    let digest = push(&sb, &img, "test/box:1");
    let name = format!("localhost:{PORT}/test/box:1");

    let out = sb.berth_ok(&["pull", &name]);
    for line in [
        "1: Pulling from test/box".to_string(),
        "Pull complete".to_string(),
        format!("Digest: {digest}"),
        format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(out.contains(&line), "berth pull printed no {line:?}:\n{out}");
    }
    assert_eq!(out.lines().last(), Some(name.as_str()), "the full name comes last:\n{out}");
    assert!(!out.contains("Downloading"), "progress lines are not printed without a terminal:\n{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "the pulled image has the pushed image's ID");
    assert_eq!(repo_digests(&sb, &name), vec![format!("localhost:{PORT}/test/box@{digest}")]);
    let listing = sb.berth_ok(&["images"]);
    assert!(listing.contains(&format!("localhost:{PORT}/test/box")) && listing.contains(&img.short_id()[7..]), "{listing}");
    let ran = sb.berth_ok(&["run", "--rm", &name, "sh", "-c", "echo pulled-and-ran"]);
    assert_eq!(ran.trim(), "pulled-and-ran");

    let again = sb.berth_ok(&["pull", &name]);
    assert!(again.contains(&format!("Status: Image is up to date for {name}")) && again.contains("Already exists"), "{again}");

    // By digest, after the image is gone: no tag, the digest reference names it.
    sb.berth_ok(&["rmi", &name]);
    let by_digest = format!("localhost:{PORT}/test/box@{digest}");
    let out = sb.berth_ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {by_digest}")), "{out}");
    assert_eq!(sb.inspect(&by_digest)["Id"], img.id());

    // `run` of an image that is not here pulls it first, on stderr.
    sb.berth_ok(&["rmi", &by_digest]);
    let out = sb.berth(&["run", "--rm", &name, "sh", "-c", "echo auto-pulled"]);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "auto-pulled");
    assert!(out.stderr.contains(&format!("Unable to find image '{name}' locally")) && out.stderr.contains("Pull complete"), "{}", out.stderr);

    let before = sb.image_ids();
    let out = sb.berth_fails(&["pull", &format!("localhost:{PORT}/test/box:nope")]);
    assert!(
        out.stderr.contains(&format!("manifest for localhost:{PORT}/test/box:nope not found: manifest unknown: manifest unknown")),
        "{}",
        out.describe()
    );
    let out = sb.berth_fails(&["pull", "localhost:5999/test/box:1"]);
    assert!(out.stderr.contains("localhost:5999") && out.stderr.to_lowercase().contains("connection refused"), "{}", out.describe());
    let out = sb.berth_fails(&["pull", "registry.example/test/box:1"]);
    assert!(out.stderr.contains("registry.example") && out.stderr.contains("HTTPS"), "{}", out.describe());
    assert_eq!(sb.image_ids(), before, "a failed pull changes no image");
    sb.berth_ok(&["version"]);
}

#[test]
fn docker_cli_pulls_through_berth_and_a_platform_picks_its_manifest_from_an_index() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let amd64 = images::busybox();
    let arm64 = for_arch(images::busybox(), "arm64");
    let layout = sb.file("multi-layout");
    oci_index_dir(&layout, &[(&amd64, "amd64"), (&arm64, "arm64")]);
    skopeo(&sb, &format!("copy --all --dest-tls-verify=false oci:{}:1 docker://localhost:{PORT}/test/multi:1", layout.display()));
    let index_digest = manifest_digest(&sb, "test/multi:1");
    let name = format!("localhost:{PORT}/test/multi:1");

    let out = sb.docker_ok(&["pull", &name]);
    for line in [format!("Digest: {index_digest}"), format!("Status: Downloaded newer image for {name}"), name.clone()] {
        assert!(out.contains(&line), "docker pull printed no {line:?}:\n{out}");
    }
    assert_eq!(sb.inspect(&name)["Id"], amd64.id(), "the host's platform (amd64) is picked from the index");
    assert_eq!(sb.inspect(&name)["Architecture"], "amd64");
    assert_eq!(repo_digests(&sb, &name), vec![format!("localhost:{PORT}/test/multi@{index_digest}")]);

    sb.berth_ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(sb.inspect(&name)["Architecture"], "arm64");
    assert_eq!(sb.inspect(&name)["Id"], arm64.id());

    let out = sb.docker_ok(&["pull", &format!("localhost:{PORT}/test/multi@{index_digest}")]);
    assert!(out.contains("Status: "), "{out}");

    let out = sb.berth_fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        out.stderr.contains("linux/s390x") && out.stderr.contains("linux/amd64, linux/arm64"),
        "the error names the platforms there are: {}",
        out.describe()
    );
    let out = sb.docker(&["pull", &format!("localhost:{PORT}/test/multi:nope")]);
    assert!(!out.success() && out.stderr.contains("manifest unknown"), "{}", out.describe());
}
