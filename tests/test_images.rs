//! The test-image builder makes what the other tests assume: archives whose
//! digests, layers and entries are right, so a failure elsewhere is berth's.

mod common;

use std::io::Read;

use common::images::{self, human_size, Compression, Entry};

/// name -> bytes of every regular member of an archive.
fn members(archive: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(archive);
    for entry in ar.entries().expect("archive entries") {
        let mut entry = entry.expect("archive entry");
        if entry.header().entry_type().is_file() {
            let name = entry.path().expect("entry path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("entry data");
            out.insert(name, data);
        }
    }
    out
}

/// (path, type, mode, link name) of every entry of a layer tar, as written.
fn layer_entries(layer: &[u8]) -> Vec<(String, char, u32, String)> {
    let mut ar = tar::Archive::new(layer);
    ar.entries()
        .expect("layer entries")
        .map(|e| {
            let e = e.expect("layer entry");
            let h = e.header();
            let name = String::from_utf8_lossy(&h.as_old().name).trim_end_matches('\0').to_string();
            let link = String::from_utf8_lossy(&h.as_old().linkname).trim_end_matches('\0').to_string();
            (name, h.entry_type().as_byte() as char, h.mode().expect("mode"), link)
        })
        .collect()
}

#[test]
fn docker_archive_has_manifest_config_and_layers_with_matching_digests() {
    let img = images::multilayer();
    let archive = img.write_docker_archive(&["multi:latest"], Vec::new()).expect("archive");
    let m = members(&archive);
    let manifest: serde_json::Value = serde_json::from_slice(&m["manifest.json"]).expect("manifest JSON");
    let config_name = manifest[0]["Config"].as_str().expect("Config");
    assert_eq!(images::sha256_digest(&m[config_name]), img.id());
    assert_eq!(format!("sha256:{config_name}").trim_end_matches(".json"), img.id());
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| images::sha256_digest(&m[l.as_str().expect("layer path")]))
        .collect();
    assert_eq!(layers, img.diff_ids());
    let config: serde_json::Value = serde_json::from_slice(&img.config).expect("config JSON");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(img.diff_ids()));
    assert_eq!(config["history"].as_array().map(Vec::len), Some(3));
    let repos: serde_json::Value = serde_json::from_slice(&m["repositories"]).expect("repositories JSON");
    assert!(repos["multi"]["latest"].is_string(), "{repos}");
}

#[test]
fn oci_layout_blobs_match_their_names_unless_corrupted() {
    let img = images::busybox();
    let good = members(&img.write_oci_layout("busybox:oci", Compression::Gzip, false, Vec::new()).expect("archive"));
    for (name, data) in &good {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(images::sha256_digest(data), format!("sha256:{hex}"), "{name}");
        }
    }
    assert!(good.contains_key("index.json") && good.contains_key("oci-layout"));
    let bad = members(&img.write_oci_layout("bad:1", Compression::None, true, Vec::new()).expect("archive"));
    let mismatched = bad
        .iter()
        .filter(|(n, d)| {
            n.strip_prefix("blobs/sha256/").is_some_and(|h| images::sha256_digest(d) != format!("sha256:{h}"))
        })
        .count();
    assert_eq!(mismatched, 1, "exactly the layer blob is corrupted");
}

#[test]
fn busybox_layer_holds_the_static_binary_and_its_applet_links() {
    let layer = &images::busybox().layers[0];
    let entries = layer_entries(layer);
    assert!(entries.iter().any(|(p, t, m, _)| p == "bin/busybox" && *t == '0' && *m == 0o755));
    assert!(entries.iter().any(|(p, t, _, l)| p == "bin/sh" && *t == '2' && l == "/bin/busybox"));
    assert!(entries.iter().filter(|(_, t, _, _)| *t == '2').count() > 100, "busybox has hundreds of applets");
    assert!(entries.iter().any(|(p, _, m, _)| p == "tmp/" && *m == 0o1777));
}

#[test]
fn hostile_layers_carry_their_entries_verbatim() {
    let e = layer_entries(&images::escape("m").layers[0]);
    assert_eq!(e[1].0, "../../escape-m");
    let a = layer_entries(&images::absolute("m").layers[0]);
    assert_eq!(a[0].0, "/abs-file-m");
    let s = layer_entries(&images::symlink_through("m").layers[0]);
    assert_eq!((s[1].0.as_str(), s[1].1, s[1].3.as_str()), ("hosttmp", '2', "/tmp"));
    assert_eq!(s[2].0, "hosttmp/written-through-m");
    let h = layer_entries(&images::hardlink_out("/x/sentinel").layers[0]);
    assert_eq!(h[0].1, '1');
    assert!(h[0].3.starts_with("../../") && h[0].3.ends_with("x/sentinel"), "{}", h[0].3);
    let m = layer_entries(&images::multilayer().layers[2]);
    assert!(m.iter().any(|(p, ..)| p == "data/.wh.a") && m.iter().any(|(p, ..)| p == "opq/.wh..wh..opq"));
}

#[test]
fn truncated_archive_is_cut_inside_a_layer() {
    let full = images::busybox().write_docker_archive(&["b:1"], Vec::new()).expect("archive");
    let cut = images::truncated(&full);
    assert!(cut.len() < full.len());
    let mut ar = tar::Archive::new(cut.as_slice());
    let complete = ar.entries().expect("entries").try_for_each(|e| {
        let mut e = e?;
        std::io::copy(&mut e, &mut std::io::sink()).map(|_| ())
    });
    assert!(complete.is_err(), "a reader must hit the cut");
}

#[test]
fn noise_is_deterministic_and_incompressible() {
    let a = images::noise(1, 1 << 20);
    assert_eq!(a, images::noise(1, 1 << 20));
    assert_ne!(a, images::noise(2, 1 << 20));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &a).expect("gzip");
    let gz = enc.finish().expect("gzip");
    assert!(gz.len() > a.len() * 99 / 100, "gzip shrank noise to {} of {}", gz.len(), a.len());
}

#[test]
fn human_size_matches_dockers_three_significant_digits() {
    assert_eq!(human_size(0), "0B");
    assert_eq!(human_size(999), "999B");
    assert_eq!(human_size(1000), "1kB");
    assert_eq!(human_size(1_982_256), "1.98MB");
    assert_eq!(human_size(2_000_000), "2MB");
    assert_eq!(human_size(12_345_678), "12.3MB");
    assert_eq!(human_size(123_456_789), "123MB");
    assert_eq!(human_size(4_300_000_000), "4.3GB");
}

#[test]
fn long_paths_are_refused_rather_than_silently_cut() {
    let long = "d/".repeat(60) + "f";
    assert!(images::write_layer(&[Entry::file(&long, 0o644, "x")], Vec::new()).is_err());
}

#[test]
fn fifos_are_written_with_zero_or_empty_device_fields() {
    let l = images::layer(&[
        Entry::Fifo { path: "a".into(), mode: 0o600 },
        Entry::GnuFifo { path: "b".into(), mode: 0o600 },
    ]);
    let mut ar = tar::Archive::new(l.as_slice());
    let fields: Vec<Vec<u8>> = ar
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").header().as_ustar().expect("ustar header").dev_major.to_vec())
        .collect();
    assert_eq!(fields[0], b"0000000\0", "ustar-style zero field");
    assert_eq!(fields[1], [0u8; 8], "GNU-style empty field");
}

#[test]
fn compressed_layers_decompress_to_the_layer() {
    let layer = &images::busybox().layers[0];
    let gz = Compression::Gzip.apply(layer).expect("gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut plain).expect("gunzip");
    assert_eq!(&plain, layer);
    let zst = Compression::Zstd.apply(layer).expect("zstd");
    assert_eq!(&zstd::decode_all(zst.as_slice()).expect("unzstd"), layer);
    assert!(zst.len() < layer.len() && gz.len() < layer.len());
}

/// Whether an ELF64 binary asks for a dynamic loader (has a PT_INTERP program header).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes")) == 3
    })
}

#[test]
fn testbox_carries_static_tools_users_and_the_symlink_to_slash() {
    let img = images::testbox();
    assert_eq!(img.layers.len(), 2);
    let entries = layer_entries(&img.layers[1]);
    let find = |path: &str| entries.iter().find(|e| e.0 == path).unwrap_or_else(|| panic!("no {path} in {entries:?}"));
    assert_eq!(find("evil").1, '2', "evil is a symlink");
    assert_eq!(find("evil").3, "/", "evil -> /");
    let files = {
        let mut out = std::collections::BTreeMap::new();
        let mut ar = tar::Archive::new(img.layers[1].as_slice());
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("data");
            out.insert(name, data);
        }
        out
    };
    for tool in ["usr/local/bin/alloc", "usr/local/bin/procexe"] {
        let bin = &files[tool];
        assert_eq!(&bin[..4], b"\x7fELF", "{tool} is an ELF binary");
        assert_eq!(find(tool).2 & 0o111, 0o111, "{tool} is executable");
        assert!(!has_interpreter(bin), "{tool} is static (no PT_INTERP): it must run in a busybox rootfs");
    }
    let passwd = String::from_utf8_lossy(&files["etc/passwd"]).into_owned();
    assert!(passwd.lines().any(|l| l.starts_with("app:x:1000:1000:")), "{passwd}");
    let group = String::from_utf8_lossy(&files["etc/group"]).into_owned();
    assert!(group.lines().any(|l| l == "extra:x:2000:app"), "{group}");
}

#[test]
fn the_alloc_tool_really_holds_the_memory_it_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("alloc");
    std::fs::write(&bin, images::fixture_binary("alloc")).expect("write alloc");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = std::process::Command::new(&bin).arg("16").output().expect("run alloc");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "allocated 16 MiB\n");
    let out = std::process::Command::new(&bin).output().expect("run alloc");
    assert_eq!(out.status.code(), Some(2), "usage error without an argument");
}

#[test]
fn configured_and_nocmd_images_have_the_runtime_config_the_tests_assume() {
    let config: serde_json::Value = serde_json::from_slice(&images::configured().config).expect("config JSON");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/srv");
    assert!(c["Env"].as_array().expect("Env").iter().any(|e| e == "GREETING=hello from the image"));
    let config: serde_json::Value = serde_json::from_slice(&images::nocmd().config).expect("config JSON");
    assert!(config["config"]["Cmd"].is_null() && config["config"]["Entrypoint"].is_null());
    let config: serde_json::Value = serde_json::from_slice(&images::workdir_escape().config).expect("config JSON");
    assert_eq!(config["config"]["WorkingDir"], "/evil/tmp");
}
