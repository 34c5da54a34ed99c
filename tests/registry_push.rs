//! A user pushes images to a registry — Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1 inside the sandbox — with the docker CLI
//! and `berth push`, and gets them back with berth, the docker CLI and
//! `skopeo` (the independent second client) as they were: same image ID,
//! same manifest digest.

mod common;

use common::images::{self, sha256_digest};
use common::registry::{manifest_digest, push as skopeo_push, skopeo, Registry, PORT};
use common::Sandbox;

fn repo_digests(sb: &Sandbox, name: &str) -> Vec<String> {
    sb.inspect(name)["RepoDigests"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The `<tag>: digest: sha256:… size: N` line's digest.
fn pushed_digest(out: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"));
    line[prefix.len()..].split_whitespace().next().unwrap_or_default().to_string()
}

/// The registry's manifest of `name` (`repo:tag` on the sandbox's registry) as JSON.
fn registry_manifest(sb: &Sandbox, name: &str) -> serde_json::Value {
    let raw = skopeo(sb, &format!("inspect --raw --tls-verify=false docker://localhost:{PORT}/{name}"));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("the registry's manifest of {name} is not JSON ({e}): {raw}"))
}

/// Each diff ID's short form, as a push names layers.
fn short_ids(img: &images::TestImage) -> Vec<String> {
    img.diff_ids().iter().map(|d| d[7..19].to_string()).collect()
}

#[test]
fn docker_cli_pushes_through_berth_and_the_image_comes_back_the_same() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let img = images::busybox();
    // Loaded from an uncompressed docker-archive: the push has to gzip the layer.
    sb.load_image(&img, "busybox:latest");
    let name = format!("localhost:{PORT}/app:1");
    sb.docker_ok(&["tag", "busybox", &name]);

    let out = sb.docker_ok(&["push", &name]);
    let layer = &short_ids(&img)[0];
    for line in [format!("The push refers to repository [localhost:{PORT}/app]"), format!("{layer}: Pushed")] {
        assert!(out.contains(&line), "docker push printed no {line:?}:\n{out}");
    }
    let digest = pushed_digest(&out, "1");
    assert_eq!(digest, manifest_digest(&sb, "app:1"), "the digest docker push printed is the registry's");
    let manifest = registry_manifest(&sb, "app:1");
    assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{manifest}");
    assert_eq!(manifest["config"]["digest"], img.id(), "the config goes out as it is: the image ID stays");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip", "{manifest}");
    assert!(
        manifest["layers"][0]["size"].as_u64().unwrap_or(u64::MAX) < img.layers[0].len() as u64,
        "the layer was sent compressed: {manifest}"
    );
    assert_eq!(repo_digests(&sb, &name), vec![format!("localhost:{PORT}/app@{digest}")]);

    // skopeo reads it whole (every blob checked against its digest) and sees the same config.
    let copied = sb.file("copied");
    skopeo(&sb, &format!("copy --src-tls-verify=false docker://{name} dir:{}", copied.display()));
    let config = std::fs::read(copied.join(&img.id()[7..])).expect("skopeo wrote the config blob");
    assert_eq!(sha256_digest(&config), img.id());

    sb.docker_ok(&["rmi", &name, "busybox"]);
    assert!(sb.image_ids().is_empty(), "nothing is left before the pull back");
    let out = sb.docker_ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "the image pulled back has the pushed image's ID");
    let ran = sb.docker_ok(&["run", "--rm", &name, "sh", "-c", "echo pushed-pulled-ran"]);
    assert_eq!(ran.trim(), "pushed-pulled-ran");

    let out = sb.docker(&["push", &format!("localhost:{PORT}/nothing:1")]);
    assert!(
        !out.success() && out.stderr.contains(&format!("An image does not exist locally with the tag: localhost:{PORT}/nothing")),
        "{}",
        out.describe()
    );
}

#[test]
fn berth_push_skips_what_the_registry_has_mounts_across_repositories_and_pushes_all_tags() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let img = images::multilayer();
    let base = format!("localhost:{PORT}/team/base:1");
    sb.load_image(&img, &base);
    let layers = short_ids(&img);

    let out = sb.berth_ok(&["push", &base]);
    assert!(out.starts_with(&format!("The push refers to repository [localhost:{PORT}/team/base]\n")), "{out}");
    for id in &layers {
        for step in ["Preparing", "Pushed"] {
            assert!(out.contains(&format!("{id}: {step}")), "no {id}: {step} in:\n{out}");
        }
    }
    assert!(!out.contains("Pushing"), "progress lines are not printed without a terminal:\n{out}");
    let first = pushed_digest(&out, "1");
    assert_eq!(out.lines().last().map(|l| l.starts_with("1: digest: ")), Some(true), "{out}");

    // Again: the registry has every blob, and the manifest is the same one.
    let again = sb.berth_ok(&["push", &base]);
    for id in &layers {
        assert!(again.contains(&format!("{id}: Layer already exists")), "no {id}: Layer already exists in:\n{again}");
    }
    assert!(!again.contains("Pushed"), "{again}");
    assert_eq!(pushed_digest(&again, "1"), first, "a second push makes the same manifest");

    // Another repository of the same registry: blobs are mounted, not sent.
    let other = format!("localhost:{PORT}/other/app:2");
    sb.berth_ok(&["tag", &base, &other]);
    let out = sb.berth_ok(&["push", &other]);
    for id in &layers {
        assert!(out.contains(&format!("{id}: Mounted from team/base")), "no {id}: Mounted from team/base in:\n{out}");
    }
    assert_eq!(pushed_digest(&out, "2"), first);

    // -a: every tag of the repository; -q: only the name.
    sb.berth_ok(&["tag", &base, &format!("localhost:{PORT}/team/base:3")]);
    let out = sb.berth_ok(&["push", "-a", &format!("localhost:{PORT}/team/base")]);
    assert!(!out.contains("Using default tag"), "{out}");
    assert_eq!(pushed_digest(&out, "1"), first);
    assert_eq!(pushed_digest(&out, "3"), first);
    assert_eq!(manifest_digest(&sb, "team/base:3"), first);
    let quiet = sb.berth_ok(&["push", "-q", &other]);
    assert_eq!(quiet, format!("{other}\n"));

    // An image pulled from one repository keeps its manifest (and digest) when pushed to another.
    // (Its layer is one berth does not have yet, so the pull brings the registry's blob.)
    let pulled = images::TestImage::new(vec![images::layer(&[images::Entry::file("pulled", 0o644, "pulled\n")])], "pulled");
    let src_digest = skopeo_push(&sb, &pulled, "test/src:1");
    let src = format!("localhost:{PORT}/test/src:1");
    sb.berth_ok(&["pull", &src]);
    let dst = format!("localhost:{PORT}/test/dst:1");
    sb.berth_ok(&["tag", &src, &dst]);
    let out = sb.berth_ok(&["push", &dst]);
    assert!(out.contains(&format!("{}: Mounted from test/src", short_ids(&pulled)[0])), "{out}");
    assert_eq!(pushed_digest(&out, "1"), src_digest, "the pulled manifest is pushed as it came");
    let mut digests = repo_digests(&sb, &dst);
    digests.sort();
    assert_eq!(digests, vec![format!("localhost:{PORT}/test/dst@{src_digest}"), format!("localhost:{PORT}/test/src@{src_digest}")]);
}

#[test]
fn a_push_of_a_missing_image_or_to_an_unreachable_registry_fails_clearly_and_changes_nothing() {
    let sb = Sandbox::start();
    let _registry = Registry::start(&sb);
    let out = sb.berth_fails(&["push", &format!("localhost:{PORT}/nothing:1")]);
    assert!(
        out.stderr.contains(&format!("An image does not exist locally with the tag: localhost:{PORT}/nothing")),
        "{}",
        out.describe()
    );
    let img = images::busybox();
    let name = format!("localhost:{PORT}/app:1");
    sb.load_image(&img, &name);
    let out = sb.berth_fails(&["push", &format!("localhost:{PORT}/app:2")]);
    assert!(out.stderr.contains(&format!("tag does not exist: localhost:{PORT}/app:2")), "{}", out.describe());

    let away = "localhost:5999/app:1";
    sb.berth_ok(&["tag", &name, away]);
    let before = sb.inspect(away);
    let out = sb.berth_fails(&["push", away]);
    assert!(
        out.stderr.contains("localhost:5999") && out.stderr.to_lowercase().contains("connection refused"),
        "{}",
        out.describe()
    );
    assert_eq!(sb.inspect(away), before, "a failed push leaves the image as it was");
    // And it still pushes where the registry is.
    let out = sb.berth_ok(&["push", &name]);
    assert!(out.contains("Pushed"), "{out}");
    sb.berth_ok(&["rmi", &name, away]);
    let out = sb.berth_ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(sb.inspect(&name)["Id"], img.id(), "an uncompressed load pushed compressed pulls back with the same ID");
}
