//! Docker's mount specifications, parsed as Docker's daemon parses them
//! (moby's `volume/mounts` Linux parser), with its error messages:
//! `HostConfig.Binds` (`-v`), `HostConfig.Mounts` (`--mount`),
//! `HostConfig.Tmpfs` (`--tmpfs`) and `HostConfig.VolumesFrom`.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use berth_model::container::MountRequest;
use berth_model::volume::MountPoint;

/// Docker's default propagation of a bind mount.
pub const DEFAULT_PROPAGATION: &str = "rprivate";

const RW_MODES: &[&str] = &["rw", "ro"];
const LABEL_MODES: &[&str] = &["z", "Z"];
const CONSISTENCY_MODES: &[&str] = &["consistent", "cached", "delegated"];
const PROPAGATION_MODES: &[&str] = &[
    "private", "rprivate", "slave", "rslave", "shared", "rshared",
];
const COPY_MODES: &[&str] = &["nocopy"];

/// One parsed `-v` or `--mount`: the mount point as inspect shows it, plus
/// what creating its volume needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMount {
    /// `name` empty for a volume: an anonymous one.
    pub point: MountPoint,
    /// Volume driver asked for (`--volume-driver`, `volume-driver=`); empty: the default.
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `--mount type=bind,bind-create-src`: a missing source is made.
    pub create_source: bool,
}

/// `path.Clean` for absolute container and host paths.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if p.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// moby's `ValidMountMode`: known words, at most one of each kind.
pub fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let kind = if RW_MODES.contains(&o) {
            0
        } else if LABEL_MODES.contains(&o) {
            1
        } else if PROPAGATION_MODES.contains(&o) {
            2
        } else if COPY_MODES.contains(&o) {
            3
        } else if CONSISTENCY_MODES.contains(&o) {
            4
        } else {
            return false;
        };
        counts[kind] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

fn read_write(mode: &str) -> bool {
    valid_mode(mode) && !mode.split(',').any(|o| o == "ro")
}

fn propagation_of(mode: &str) -> Option<&str> {
    mode.split(',').find(|o| PROPAGATION_MODES.contains(o))
}

fn config_error(kind: &str, message: impl std::fmt::Display) -> String {
    format!("invalid mount config for type {kind:?}: {message}")
}

fn check_absolute(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "invalid mount path: '{p}' mount path must be absolute"
        ))
    }
}

fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if clean(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    check_absolute(target)
}

/// The options of a `Mount` object this module reads.
#[derive(Default)]
struct MountObject {
    propagation: String,
    create_source: bool,
    no_copy: bool,
    labels: BTreeMap<String, String>,
    driver: String,
    driver_opts: BTreeMap<String, String>,
    subpath: String,
    tmpfs_size: i64,
    tmpfs_mode: u32,
    tmpfs_options: Vec<String>,
}

fn string_map(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn mount_object(m: &MountRequest) -> Result<MountObject, String> {
    let mut o = MountObject::default();
    let present = |v: &Option<serde_json::Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if present(&m.bind_options) {
        if m.kind != "bind" {
            return Err(config_error(
                &m.kind,
                "field BindOptions must not be specified",
            ));
        }
        let b = m
            .bind_options
            .as_ref()
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        o.propagation = b
            .get("Propagation")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        o.create_source = b
            .get("CreateMountpoint")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if b.get("NonRecursive")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
        {
            return Err(config_error(
                &m.kind,
                "non-recursive bind mounts are not supported by berth",
            ));
        }
    }
    if present(&m.volume_options) {
        if m.kind != "volume" {
            return Err(config_error(
                &m.kind,
                "field VolumeOptions must not be specified",
            ));
        }
        let v = m
            .volume_options
            .as_ref()
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        o.no_copy = v.get("NoCopy").and_then(|v| v.as_bool()).unwrap_or(false);
        o.labels = string_map(v.get("Labels"));
        o.subpath = v
            .get("Subpath")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(d) = v.get("DriverConfig").and_then(|v| v.as_object()) {
            o.driver = d
                .get("Name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            o.driver_opts = string_map(d.get("Options"));
        }
    }
    if present(&m.tmpfs_options) {
        if m.kind != "tmpfs" {
            return Err(config_error(
                &m.kind,
                "field TmpfsOptions must not be specified",
            ));
        }
        let t = m
            .tmpfs_options
            .as_ref()
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        o.tmpfs_size = t.get("SizeBytes").and_then(|v| v.as_i64()).unwrap_or(0);
        if o.tmpfs_size < 0 {
            return Err(config_error(
                &m.kind,
                format!("invalid tmpfs size {}: must not be negative", o.tmpfs_size),
            ));
        }
        o.tmpfs_mode = t.get("Mode").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        // API 1.46+: [["noexec"], ["uid", "1000"]].
        for opt in t
            .get("Options")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let words: Vec<&str> = opt
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .collect();
            match words.as_slice() {
                [flag] => o.tmpfs_options.push(flag.to_string()),
                [k, v] => o.tmpfs_options.push(format!("{k}={v}")),
                _ => return Err(config_error(&m.kind, format!("invalid tmpfs option {opt}"))),
            }
        }
    }
    Ok(o)
}

/// moby's `ConvertTmpfsOptions`: `ro`, `mode=` (octal) and `size=` with the
/// largest unit that divides it.
pub fn tmpfs_data(size: i64, mode: u32, read_only: bool, extra: &[String]) -> String {
    let mut out = Vec::new();
    if read_only {
        out.push("ro".to_string());
    }
    if mode != 0 {
        out.push(format!("mode={mode:o}"));
    }
    if size != 0 {
        let (mut n, mut suffix) = (size, "");
        for (s, div) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
            if size % div == 0 {
                n = size / div;
                suffix = s;
                break;
            }
        }
        out.push(format!("size={n}{suffix}"));
    }
    out.extend(extra.iter().cloned());
    out.join(",")
}

/// One `HostConfig.Mounts` entry (`--mount`). A bind's source must exist
/// unless `bind-create-src` (checked by the caller, which knows the host).
pub fn parse_mount(m: &MountRequest) -> Result<ParsedMount, String> {
    let kind = m.kind.as_str();
    if !matches!(kind, "bind" | "volume" | "tmpfs") {
        if kind == "npipe" || kind == "cluster" || kind == "image" {
            return Err(config_error(
                kind,
                format!("mount type {kind:?} is not supported by berth"),
            ));
        }
        return Err(config_error(kind, "mount type unknown"));
    }
    check_target(&m.target).map_err(|e| config_error(kind, e))?;
    let o = mount_object(m)?;
    let mut p = ParsedMount {
        create_source: o.create_source,
        ..Default::default()
    };
    p.point.kind = kind.to_string();
    p.point.destination = clean(&m.target);
    p.point.rw = !m.read_only;
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(config_error(kind, "field Source must not be empty"));
            }
            if !o.propagation.is_empty() && !PROPAGATION_MODES.contains(&o.propagation.as_str()) {
                return Err(config_error(
                    kind,
                    format!("invalid propagation mode: {}", o.propagation),
                ));
            }
            check_absolute(&m.source).map_err(|e| config_error(kind, e))?;
            p.point.source = clean(&m.source);
            p.point.propagation = if o.propagation.is_empty() {
                DEFAULT_PROPAGATION.to_string()
            } else {
                o.propagation
            };
        }
        "volume" => {
            if !o.subpath.is_empty() {
                return Err(config_error(
                    kind,
                    "volume subpaths are not supported by berth",
                ));
            }
            if m.read_only && m.source.is_empty() {
                return Err(config_error(
                    kind,
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            p.point.name = m.source.clone();
            p.point.no_copy = o.no_copy;
            p.driver = o.driver;
            p.driver_opts = o.driver_opts;
            p.labels = o.labels;
        }
        _ => {
            if !m.source.is_empty() {
                return Err(config_error(kind, "field Source must not be specified"));
            }
            p.point.tmpfs_options =
                tmpfs_data(o.tmpfs_size, o.tmpfs_mode, m.read_only, &o.tmpfs_options);
        }
    }
    Ok(p)
}

/// One `HostConfig.Binds` entry (`-v SRC:DST[:MODE]`, or `-v DST`), as
/// moby's `ParseMountRaw`: an absolute source is a bind, anything else a
/// volume name. A missing bind source is not an error here (Docker makes it).
pub fn parse_bind(raw: &str, volume_driver: &str) -> Result<ParsedMount, String> {
    let invalid_spec = || format!("invalid volume specification: '{raw}'");
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid_spec());
    }
    let (source, target, mode) = match arr.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => {
            // `/foo:rw` is a destination with a mode; volumes cannot have one.
            if valid_mode(t) {
                return Err(invalid_spec());
            }
            (*s, *t, "")
        }
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid_spec()),
    };
    if !valid_mode(mode) {
        return Err(format!("invalid mode: {mode}"));
    }
    let kind = if source.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let with_spec = |e: String| format!("{}: {}", invalid_spec(), config_error(kind, e));
    check_target(target).map_err(with_spec)?;
    let mut p = ParsedMount::default();
    p.point.kind = kind.to_string();
    p.point.destination = clean(target);
    p.point.rw = read_write(mode);
    p.point.mode = mode.to_string();
    let propagation = propagation_of(mode);
    if kind == "bind" {
        p.point.source = clean(source);
        p.point.propagation = propagation.unwrap_or(DEFAULT_PROPAGATION).to_string();
    } else {
        if propagation.is_some() {
            return Err(with_spec("field BindOptions must not be specified".into()));
        }
        if !p.point.rw && source.is_empty() {
            return Err(with_spec(
                "must not set ReadOnly mode when using anonymous volumes".into(),
            ));
        }
        p.point.name = source.to_string();
        p.point.no_copy = mode.split(',').any(|o| o == "nocopy");
        p.driver = volume_driver.to_string();
    }
    Ok(p)
}

/// One `HostConfig.Tmpfs` entry (`--tmpfs DST[:OPTS]`): checks the path as
/// Docker's `ValidateTmpfsMountDestination`.
pub fn check_tmpfs_destination(dest: &str) -> Result<String, String> {
    if clean(dest) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    check_absolute(dest)?;
    Ok(clean(dest))
}

/// `--volumes-from CONTAINER[:ro|rw]`: the container and whether its
/// mounts stay writable.
pub fn parse_volumes_from(spec: &str) -> Result<(String, bool), String> {
    if spec.is_empty() {
        return Err("volumes-from specification cannot be an empty string".into());
    }
    let (id, mode) = spec.split_once(':').unwrap_or((spec, ""));
    if mode.is_empty() {
        return Ok((id.to_string(), true));
    }
    if !valid_mode(mode) {
        return Err(format!("invalid mode: {mode}"));
    }
    if propagation_of(mode).is_some() {
        return Err(
            "cannot use propagation properties while importing volumes from data container".into(),
        );
    }
    Ok((id.to_string(), read_write(mode)))
}

/// Number of path components, for mounting parents before children
/// (Docker's `sortMounts`).
pub fn depth(dest: &str) -> usize {
    Path::new(dest)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes() {
        for ok in [
            "",
            "ro",
            "rw",
            "z",
            "Z",
            "ro,z",
            "rshared",
            "ro,rslave,nocopy",
            "cached",
            "rw,private",
        ] {
            assert!(valid_mode(ok), "{ok}");
        }
        for bad in [
            "ro,rw",
            "z,Z",
            "shared,slave",
            "bogus",
            "ro,",
            "nocopy,nocopy",
        ] {
            assert!(!valid_mode(bad), "{bad}");
        }
        assert!(read_write("z") && !read_write("ro,z") && !read_write("bogus"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn binds_like_docker() {
        let p = parse_bind("data:/var/lib/db", "").expect("named");
        assert_eq!(
            (
                p.point.kind.as_str(),
                p.point.name.as_str(),
                p.point.destination.as_str()
            ),
            ("volume", "data", "/var/lib/db")
        );
        assert!(p.point.rw && p.point.mode.is_empty() && p.point.propagation.is_empty());
        let p = parse_bind("data:/d:ro", "flocker").expect("ro");
        assert!(!p.point.rw);
        assert_eq!(
            (p.point.mode.as_str(), p.driver.as_str()),
            ("ro", "flocker")
        );
        let p = parse_bind("data:/d:nocopy", "").expect("nocopy");
        assert!(p.point.no_copy && p.point.rw);

        let p = parse_bind("/host/dir/:/ctr", "").expect("bind");
        assert_eq!(
            (p.point.kind.as_str(), p.point.source.as_str()),
            ("bind", "/host/dir")
        );
        assert_eq!(
            (
                p.point.propagation.as_str(),
                p.point.mode.as_str(),
                p.point.rw
            ),
            ("rprivate", "", true)
        );
        let p = parse_bind("/h:/c:ro,rshared,z", "drv").expect("bind opts");
        assert_eq!(
            (
                p.point.propagation.as_str(),
                p.point.mode.as_str(),
                p.point.rw
            ),
            ("rshared", "ro,rshared,z", false)
        );
        assert!(p.driver.is_empty(), "a bind has no volume driver");

        let p = parse_bind("/anon", "").expect("anonymous");
        assert_eq!(
            (
                p.point.kind.as_str(),
                p.point.name.as_str(),
                p.point.destination.as_str()
            ),
            ("volume", "", "/anon")
        );

        assert_eq!(
            parse_bind("/foo:rw", "").expect_err("dest+mode"),
            "invalid volume specification: '/foo:rw'"
        );
        assert_eq!(
            parse_bind(":/x", "").expect_err("empty"),
            "invalid volume specification: ':/x'"
        );
        assert_eq!(
            parse_bind("a:/b:ro:x", "").expect_err("4 parts"),
            "invalid volume specification: 'a:/b:ro:x'"
        );
        assert_eq!(
            parse_bind("a:/b:bogus", "").expect_err("mode"),
            "invalid mode: bogus"
        );
        assert_eq!(
            parse_bind("/x:/", "").expect_err("root"),
            "invalid volume specification: '/x:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            parse_bind("v:rel", "").expect_err("relative"),
            "invalid volume specification: 'v:rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert!(parse_bind("v:/x:rshared", "")
            .expect_err("propagation on a volume")
            .contains("BindOptions"));
    }

    fn req(v: serde_json::Value) -> MountRequest {
        serde_json::from_value(v).expect("mount request")
    }

    #[test]
    fn mounts_like_docker() {
        let p = parse_mount(&req(
            json!({"Type": "bind", "Source": "/src/", "Target": "/dst", "ReadOnly": true,
            "BindOptions": {"Propagation": "rslave"}}),
        ))
        .expect("bind");
        assert_eq!(
            (
                p.point.source.as_str(),
                p.point.propagation.as_str(),
                p.point.rw
            ),
            ("/src", "rslave", false)
        );
        let p = parse_mount(&req(json!({"Type": "volume", "Source": "v1", "Target": "/data",
            "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"}, "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}})))
        .expect("volume");
        assert!(p.point.no_copy);
        assert_eq!(p.driver, "local");
        assert_eq!(p.driver_opts.get("type").map(String::as_str), Some("tmpfs"));
        assert_eq!(p.labels.get("a").map(String::as_str), Some("b"));
        let p = parse_mount(&req(json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 67108864, "Mode": 448}})))
            .expect("tmpfs");
        assert_eq!(p.point.tmpfs_options, "mode=700,size=64m");
        assert_eq!(p.point.kind, "tmpfs");

        let err = |v| parse_mount(&req(v)).expect_err("error");
        assert_eq!(
            err(json!({"Type": "bind", "Target": "/x"})),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            err(json!({"Type": "volume", "Source": "v"})),
            "invalid mount config for type \"volume\": field Target must not be empty"
        );
        assert_eq!(
            err(json!({"Type": "bogus", "Target": "/x"})),
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        assert_eq!(
            err(
                json!({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}})
            ),
            "invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
        assert_eq!(
            err(json!({"Type": "volume", "Target": "/x", "ReadOnly": true})),
            "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"
        );
        assert_eq!(
            err(json!({"Type": "tmpfs", "Source": "x", "Target": "/x"})),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            err(json!({"Type": "bind", "Source": "rel", "Target": "/x"})),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err(
                json!({"Type": "bind", "Source": "/a", "Target": "/x", "BindOptions": {"Propagation": "weird"}})
            ),
            "invalid mount config for type \"bind\": invalid propagation mode: weird"
        );
    }

    #[test]
    fn tmpfs_options_and_sizes() {
        assert_eq!(tmpfs_data(1 << 30, 0, false, &[]), "size=1g");
        assert_eq!(tmpfs_data(3072, 0o1777, true, &[]), "ro,mode=1777,size=3k");
        assert_eq!(tmpfs_data(1536, 0, false, &[]), "size=1536");
        assert_eq!(
            tmpfs_data(1000, 0, false, &["noexec".into()]),
            "size=1000,noexec"
        );
        assert_eq!(check_tmpfs_destination("/run/").expect("ok"), "/run");
        assert!(check_tmpfs_destination("run").is_err());
        assert!(check_tmpfs_destination("/").is_err());
    }

    #[test]
    fn volumes_from() {
        assert_eq!(
            parse_volumes_from("data").expect("plain"),
            ("data".into(), true)
        );
        assert_eq!(
            parse_volumes_from("data:ro").expect("ro"),
            ("data".into(), false)
        );
        assert_eq!(
            parse_volumes_from("data:rw").expect("rw"),
            ("data".into(), true)
        );
        assert_eq!(
            parse_volumes_from("data:bogus").expect_err("mode"),
            "invalid mode: bogus"
        );
        assert!(parse_volumes_from("data:rshared")
            .expect_err("prop")
            .contains("propagation"));
        assert!(parse_volumes_from("").is_err());
    }

    #[test]
    fn depths() {
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a/b"), 2);
        assert!(depth("/data") < depth("/data/sub"));
    }
}
