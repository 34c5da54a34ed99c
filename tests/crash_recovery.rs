//! The daemon is killed (SIGKILL) in the middle of loading a large image and
//! started again: the image is fully there or absent, and berth keeps working.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::images;
use common::Sandbox;
use sha2::Digest as _;

/// Bytes the process has read and written so far (`rchar` + `wchar` of /proc/<pid>/io).
/// Socket receives may not count as reads, but the daemon's file writes do.
fn bytes_moved(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .filter_map(|l| l.strip_prefix("rchar: ").or_else(|| l.strip_prefix("wchar: ")))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// Checks the big image's file in the mounted rootfs byte for byte.
fn assert_big_file_intact(sb: &Sandbox, name: &str, expected: &[u8]) {
    let (_, seen) = sb.mount_image(name);
    let path = seen.join("big/noise.bin");
    let mut f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0usize;
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        assert!(offset + n <= expected.len(), "big/noise.bin is longer than the layer's file");
        assert!(buf[..n] == expected[offset..offset + n], "big/noise.bin differs at or after byte {offset}");
        offset += n;
    }
    assert_eq!(offset, expected.len(), "big/noise.bin is short");
}

/// Every content-addressed blob under `<root>/blobs/sha256/` has the bytes its name promises:
/// a blob cut short by the crash must not sit under its final name.
fn assert_blobs_match_their_names(sb: &Sandbox) {
    let dir = sb.root.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let mut file = std::fs::File::open(entry.path()).unwrap_or_else(|e| panic!("open blob {name}: {e}"));
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).unwrap_or_else(|e| panic!("read blob {name}: {e}"));
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        assert_eq!(hex::encode(hasher.finalize()), name, "blob {name} does not hold the bytes its name says");
    }
}

/// Starts `berth load -i archive`, SIGKILLs the daemon once it has moved `threshold`
/// bytes, and restarts it. Returns whether the load had already finished.
fn crash_during_load(sb: &mut Sandbox, archive: &std::path::Path, threshold: u64) -> bool {
    let daemon = sb.daemon_pid();
    let before = bytes_moved(daemon);
    let log = sb.file("load.log");
    let mut load = sb.berth_spawn(&["load", "-i", archive.to_str().expect("utf-8")], &log);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut finished_first = false;
    while bytes_moved(daemon).saturating_sub(before) < threshold {
        if load.try_wait().ok().flatten().is_some() {
            finished_first = true;
            break;
        }
        assert!(Instant::now() < deadline, "the daemon moved less than {threshold} bytes in 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let moved = bytes_moved(daemon).saturating_sub(before);
    sb.kill9();
    eprintln!("killed the daemon after it moved {moved} of the {threshold} bytes aimed at");
    let status = load.wait().expect("waiting for the CLI");
    if finished_first {
        eprintln!("note: the load finished before the kill ({status}); the crash hit an idle daemon");
    } else {
        assert!(!status.success(), "a load whose daemon was killed must not report success");
    }
    sb.restart();
    finished_first
}

/// After a crash: blobs are whole, and the image is either complete or absent.
fn assert_complete_or_absent(sb: &Sandbox, img: &images::TestImage, expected: &[u8]) {
    assert_blobs_match_their_names(sb);
    match sb.image_ids().as_slice() {
        [] => {
            eprintln!("after the restart the image is absent");
            let missing = sb.berth(&["image", "inspect", "big:latest"]);
            assert!(!missing.success(), "images lists nothing, but inspect finds big:latest");
        }
        [id] => {
            eprintln!("after the restart the image is present");
            assert_eq!(*id, img.id(), "the only image after the crash is the complete one");
            assert_eq!(sb.inspect("big:latest")["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
            assert_big_file_intact(sb, "big:latest", expected);
            sb.berth_ok(&["image", "unmount", "big:latest"]);
        }
        more => panic!("after the crash there are images that were never loaded: {more:?}"),
    }
}

/// Loads the archive to the end and checks the image; returns the bytes the daemon moved.
fn load_completely(sb: &Sandbox, archive: &std::path::Path, img: &images::TestImage, expected: &[u8]) -> u64 {
    let before = bytes_moved(sb.daemon_pid());
    let out = sb.load(archive);
    let moved = bytes_moved(sb.daemon_pid()).saturating_sub(before);
    assert!(out.contains("Loaded image: big:latest"), "load printed:\n{out}");
    assert_eq!(sb.image_ids(), [img.id()]);
    assert_eq!(sb.inspect("big:latest")["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
    assert_big_file_intact(sb, "big:latest", expected);
    sb.berth_ok(&["image", "unmount", "big:latest"]);
    moved
}

#[test]
fn daemon_killed_in_the_middle_of_a_large_load_leaves_a_consistent_store() {
    const MIB: usize = 200;
    let mut sb = Sandbox::start();
    let img = images::big(MIB);
    let archive = sb.file("big.tar");
    img.save_docker_archive(&["big:latest"], &archive).expect("writing big.tar");
    let expected = images::noise(0x5eed, MIB << 20);

    // Early: a quarter of the archive's bytes in, in the middle of the big layer.
    crash_during_load(&mut sb, &archive, ((MIB as u64) << 20) / 4);
    assert_complete_or_absent(&sb, &img, &expected);

    // berth load works after the crash and gives the complete image.
    let full = load_completely(&sb, &archive, &img, &expected);
    eprintln!("a complete load moved {full} bytes");

    // Late: remove it and crash again at 90% of a complete load's I/O, near the commit.
    sb.berth_ok(&["rmi", "big:latest"]);
    assert_eq!(sb.image_ids(), Vec::<String>::new());
    crash_during_load(&mut sb, &archive, full / 10 * 9);
    assert_complete_or_absent(&sb, &img, &expected);
    load_completely(&sb, &archive, &img, &expected);

    // And the store survives a clean restart too.
    sb.restart();
    assert_eq!(sb.image_ids(), [img.id()]);
}
