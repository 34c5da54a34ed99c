//! A user pulls images from a registry — Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 inside the sandbox, filled by `skopeo`,
//! the independent second client — with `berth pull`, `berth run` of a
//! missing image, and the docker CLI.

mod common;

use common::images;
use common::registry::{for_arch, manifest_digest, oci_index_dir, push, skopeo, Registry, PORT};
use common::Sandbox;

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
    // A registry that is not loopback nor declared insecure is reached over HTTPS (no DNS in the sandbox).
    assert!(out.stderr.contains("Get \"https://registry.example/v2/test/box/manifests/1\""), "{}", out.describe());
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
