//! A user loads, lists, saves and reloads images with `berth`.

mod common;

use common::images::{self, human_size, Compression, TestImage};
use common::Sandbox;

fn diff_ids_of(inspect: &serde_json::Value) -> Vec<String> {
    inspect["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("inspect has no RootFS.Layers: {inspect}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn repo_tags_of(inspect: &serde_json::Value) -> Vec<String> {
    inspect["RepoTags"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The `images` row for `repo` `tag`, split into columns on runs of 2+ spaces.
fn images_row(listing: &str, repo: &str, tag: &str) -> Vec<String> {
    listing
        .lines()
        .skip(1)
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(repo) && cols.get(1).map(String::as_str) == Some(tag))
        .unwrap_or_else(|| panic!("no row for {repo}:{tag} in:\n{listing}"))
}

#[test]
fn load_busybox_then_images_lists_it_with_the_config_digest_and_size() {
    let sb = Sandbox::start();
    let img = images::busybox();
    let archive = sb.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing busybox.tar");

    let out = sb.load(&archive);
    assert!(out.contains("Loaded image: busybox:latest"), "load printed:\n{out}");

    let listing = sb.berth_ok(&["images"]);
    let header: Vec<&str> =
        listing.lines().next().unwrap_or_default().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], "images header:\n{listing}");
    let row = images_row(&listing, "busybox", "latest");
    assert_eq!(row.get(2), Some(&img.short_id()), "IMAGE ID column is the config digest:\n{listing}");
    assert!(row.get(3).is_some_and(|c| c.ends_with("ago")), "CREATED column:\n{listing}");

    let inspect = sb.inspect("busybox:latest");
    assert_eq!(inspect["Id"], img.id(), "Id is sha256 of the config");
    assert_eq!(diff_ids_of(&inspect), img.diff_ids());
    assert_eq!(repo_tags_of(&inspect), ["busybox:latest"]);
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["sh"]));
    let size = inspect["Size"].as_u64().unwrap_or_else(|| panic!("inspect has no numeric Size: {inspect}"));
    let busybox_len = std::fs::metadata(images::busybox_path()).expect("stat busybox").len();
    assert!(
        size >= busybox_len && size <= img.layers_tar_size(),
        "Size {size} should be the unpacked size: at least busybox ({busybox_len}), at most the layer tar ({})",
        img.layers_tar_size()
    );
    assert_eq!(row.get(4), Some(&human_size(size)), "SIZE column is Docker's human size of {size}:\n{listing}");

    assert_eq!(sb.image_ids(), [img.id()], "images -q --no-trunc");
    let quiet = sb.berth_ok(&["images", "-q"]);
    assert_eq!(quiet.trim(), img.short_id(), "images -q prints the short ID");
}

#[test]
fn save_then_load_into_a_fresh_root_keeps_the_id_and_layer_digests() {
    let first = Sandbox::start();
    let img = images::multilayer();
    let archive = first.file("multilayer.tar");
    img.save_docker_archive(&["multilayer:latest"], &archive).expect("writing multilayer.tar");
    first.load(&archive);

    let saved = first.file("saved.tar");
    first.berth_ok(&["save", "-o", saved.to_str().expect("utf-8"), "multilayer:latest"]);
    // The archive is a docker-archive: its manifest names the tag and the config.
    let manifest = read_member(&saved, "manifest.json").expect("saved archive has manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest.json is JSON");
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["multilayer:latest"]), "manifest: {manifest}");
    assert_eq!(manifest[0]["Layers"].as_array().map(Vec::len), Some(3), "manifest: {manifest}");

    let second = Sandbox::start();
    let out = second.load(&saved);
    assert!(out.contains("Loaded image: multilayer:latest"), "load printed:\n{out}");
    let a = first.inspect("multilayer:latest");
    let b = second.inspect("multilayer:latest");
    assert_eq!(b["Id"], img.id());
    assert_eq!(a["Id"], b["Id"]);
    assert_eq!(diff_ids_of(&a), diff_ids_of(&b));
    assert_eq!(diff_ids_of(&b), img.diff_ids());
}

#[test]
fn save_as_oci_layout_then_load_into_a_fresh_root_keeps_the_id() {
    let first = Sandbox::start();
    let img = images::busybox();
    let archive = first.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing busybox.tar");
    first.load(&archive);
    let saved = first.file("oci.tar");
    first.berth_ok(&["save", "--format", "oci", "-o", saved.to_str().expect("utf-8"), "busybox:latest"]);
    assert!(read_member(&saved, "oci-layout").is_some(), "--format oci writes an oci-layout file");
    assert!(read_member(&saved, "index.json").is_some(), "--format oci writes index.json");

    let second = Sandbox::start();
    second.load(&saved);
    assert_eq!(second.image_ids(), [img.id()]);
    assert_eq!(diff_ids_of(&second.inspect(&img.id())), img.diff_ids());
}

#[test]
fn load_an_oci_layout_archive_with_gzip_layers_from_stdin() {
    let sb = Sandbox::start();
    let img = images::busybox();
    let archive = sb.file("busybox-oci.tar");
    img.save_oci_layout("busybox:oci", Compression::Gzip, false, &archive).expect("writing busybox-oci.tar");
    let out = sb.berth_stdin(&["load"], &archive);
    let stdout = sb.expect_ok(out);
    assert!(stdout.contains("Loaded image"), "load printed:\n{stdout}");
    let inspect = sb.inspect(&img.id());
    assert_eq!(inspect["Id"], img.id());
    assert_eq!(diff_ids_of(&inspect), img.diff_ids(), "diff IDs are the uncompressed layers' digests");
    assert!(repo_tags_of(&inspect).contains(&"busybox:oci".to_string()), "named from the index annotation: {inspect}");
}

#[test]
fn loading_the_same_image_twice_keeps_one_image() {
    let sb = Sandbox::start();
    let img: TestImage = images::busybox();
    let archive = sb.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing busybox.tar");
    sb.load(&archive);
    sb.load(&archive);
    assert_eq!(sb.image_ids(), [img.id()]);
}

#[test]
fn import_a_gzipped_rootfs_with_changes() {
    let sb = Sandbox::start();
    let rootfs = images::busybox_rootfs_tar();
    let plain = sb.file("rootfs.tar");
    common::write_file(&plain, &rootfs);
    let gz = sb.file("rootfs.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &rootfs).expect("gzip in memory");
    common::write_file(&gz, &enc.finish().expect("gzip in memory"));

    let out = sb.berth_ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
        "--change",
        "ENV GREETING=hello",
        "--change",
        "WORKDIR /tmp",
        gz.to_str().expect("utf-8"),
        "imported:gz",
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "import prints the new image ID, got {out:?}");
    let inspect = sb.inspect("imported:gz");
    assert_eq!(inspect["Id"], id);
    assert_eq!(diff_ids_of(&inspect), [images::sha256_digest(&rootfs)], "diff ID is the uncompressed tar's digest");
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(inspect["Config"]["WorkingDir"], "/tmp");
    let env = inspect["Config"]["Env"].as_array().cloned().unwrap_or_default();
    assert!(env.contains(&serde_json::json!("GREETING=hello")), "Env: {env:?}");

    // From stdin, uncompressed: the same layer.
    let out = sb.berth_stdin(&["import", "-", "imported:stdin"], &plain);
    sb.expect_ok(out);
    assert_eq!(diff_ids_of(&sb.inspect("imported:stdin")), [images::sha256_digest(&rootfs)]);
}

/// The bytes of `name` in the tar at `path`, if present.
fn read_member(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut ar = tar::Archive::new(file);
    for entry in ar.entries().ok()? {
        let mut entry = entry.ok()?;
        let p = entry.path().ok()?.to_string_lossy().trim_start_matches("./").to_string();
        if p == name {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut v).ok()?;
            return Some(v);
        }
    }
    None
}

#[test]
fn loading_a_new_image_under_a_taken_tag_leaves_the_old_one_dangling_for_prune() {
    let sb = Sandbox::start();
    let old = images::busybox();
    let new = images::multilayer();
    let a = sb.file("old.tar");
    let b = sb.file("new.tar");
    old.save_docker_archive(&["app:latest"], &a).expect("writing archive");
    new.save_docker_archive(&["app:latest"], &b).expect("writing archive");
    sb.load(&a);
    sb.load(&b);
    assert_eq!(sb.inspect("app:latest")["Id"], new.id(), "the tag moved to the new image");
    let mut both = vec![old.id(), new.id()];
    both.sort();
    assert_eq!(sb.image_ids(), both, "the old image is still there, untagged");
    let listing = sb.berth_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut lines: Vec<&str> = listing.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [format!("<none>:<none> {}", old.short_id()), format!("app:latest {}", new.short_id())],
        "{listing}"
    );

    let df = sb.berth_ok(&["system", "df"]);
    let images_row = df.lines().find(|l| l.starts_with("Images")).unwrap_or_else(|| panic!("system df:\n{df}"));
    assert_eq!(images_row.split_whitespace().nth(1), Some("2"), "system df counts both images:\n{df}");

    let out = sb.berth_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {}", old.id())), "prune deletes the dangling image:\n{out}");
    assert!(out.contains("Total reclaimed space:"), "prune prints the reclaimed space:\n{out}");
    assert_eq!(sb.image_ids(), [new.id()], "the tagged image stays");
    // The shared busybox layer is still whole: the remaining image mounts with /bin/busybox.
    let (_, seen) = sb.mount_image("app:latest");
    let len = std::fs::metadata(seen.join("bin/busybox")).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, std::fs::metadata(images::busybox_path()).expect("stat busybox").len());
}

#[test]
fn images_digests_and_format_print_what_docker_prints() {
    let sb = Sandbox::start();
    let img = images::busybox();
    let archive = sb.file("busybox.tar");
    img.save_docker_archive(&["busybox:latest"], &archive).expect("writing archive");
    sb.load(&archive);
    let listing = sb.berth_ok(&["images", "--digests"]);
    let header: Vec<&str> =
        listing.lines().next().unwrap_or_default().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"], "{listing}");
    let out = sb.berth_ok(&["images", "--no-trunc", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]);
    assert_eq!(out.trim(), format!("busybox latest {}", img.id()));
    let out = sb.berth_ok(&["images", "--format", "{{json .}}"]);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("--format json ({e}): {out}"));
    assert_eq!(v["Repository"], "busybox");
    assert_eq!(v["ID"], img.short_id());
}

#[test]
fn load_layers_compressed_with_gzip_and_zstd() {
    let sb = Sandbox::start();
    let img = images::multilayer();
    for (i, compression) in [Compression::Gzip, Compression::Zstd].into_iter().enumerate() {
        let oci = sb.file(&format!("oci-{i}.tar"));
        img.save_oci_layout(&format!("oci:{i}"), compression, false, &oci).expect("writing archive");
        sb.load(&oci);
        let docker = sb.file(&format!("docker-{i}.tar"));
        let tag = format!("docker:{i}");
        let file = std::fs::File::create(&docker).expect("create archive");
        img.write_docker_archive_compressed(&[&tag], compression, file).expect("writing archive");
        sb.load(&docker);
        for name in [format!("oci:{i}"), tag] {
            let inspect = sb.inspect(&name);
            assert_eq!(inspect["Id"], img.id(), "{name} ({compression:?})");
            assert_eq!(diff_ids_of(&inspect), img.diff_ids(), "{name}: diff IDs are the uncompressed digests");
        }
    }
    assert_eq!(sb.image_ids(), [img.id()], "one image, four names");
    let (_, seen) = sb.mount_image("oci:1");
    assert_eq!(std::fs::read(seen.join("opq/y")).expect("read /opq/y"), b"y from layer 3\n");
}
