//! `-v/--volume`, `--mount`, `--volumes-from` and `--volume-driver` of
//! `create`/`run`, parsed as the docker CLI parses them and sent as it sends
//! them: `-v` with a source goes to `HostConfig.Binds` (a relative `./dir`
//! made absolute), a bare `-v /path` to `Config.Volumes`, `--mount` to
//! `HostConfig.Mounts` as Docker's `Mount` objects. The daemon validates
//! what only it can (names, paths, drivers); the CLI refuses only what the
//! docker CLI refuses.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use berth_model::container::{ContainerConfig, HostConfig, MountRequest};

use super::units::parse_memory;
use crate::apitypes::containers::{BindOptions, TmpfsOptions, VolumeOptions};

/// What the compose loader's `ParseVolume` makes of a `-v` value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Host path or volume name; empty for an anonymous volume.
    pub source: String,
    pub target: String,
    /// `bind` (source is a path: starts with `/`, `.` or `~`) or `volume`.
    pub kind: &'static str,
}

/// Docker's `-v` syntax check (`loader.ParseVolume`): `[SOURCE:]TARGET[:OPTIONS]`.
pub fn parse_volume_spec(spec: &str) -> Result<VolumeSpec> {
    let mut v = VolumeSpec::default();
    match spec.len() {
        0 => bail!("invalid empty volume spec"),
        1 | 2 => {
            v.target = spec.to_string();
            v.kind = "volume";
            return Ok(v);
        }
        _ => {}
    }
    let parts: Vec<&str> = spec.split(':').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if part.is_empty() {
            bail!("invalid spec: {spec}: empty section between colons");
        }
        if v.source.is_empty() && last {
            v.target = part.to_string();
        } else if v.source.is_empty() {
            v.source = part.to_string();
        } else if v.target.is_empty() {
            v.target = part.to_string();
        } else if !last {
            bail!("invalid spec: {spec}: too many colons");
        }
        // The options part (`ro`, `rw`, `nocopy`, propagation) is the daemon's to read.
    }
    let is_path = v.source == "." || v.source == ".." || v.source.starts_with(['.', '/', '~']);
    v.kind = if !v.source.is_empty() && is_path { "bind" } else { "volume" };
    Ok(v)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One line of CSV as Go's `encoding/csv` reads it: commas separate fields,
/// a field may be double-quoted (with `""` for a quote inside).
fn csv_fields(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let mut column = 0usize;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            column += 1;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        column += 2;
                        field.push('"');
                    }
                    Some('"') => {
                        column += 1;
                        break;
                    }
                    Some(c) => {
                        column += 1;
                        field.push(c);
                    }
                    None => {
                        bail!("parse error on line 1, column {}: extraneous or missing \" in quoted-field", column + 1)
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    column += 1;
                    fields.push(field);
                    continue;
                }
                Some(_) => {
                    bail!("parse error on line 1, column {}: extraneous or missing \" in quoted-field", column + 1)
                }
            }
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    column += 1;
                    break;
                }
                Some('"') => bail!("parse error on line 1, column {}: bare \" in non-quoted-field", column + 1),
                Some(c) => {
                    column += 1;
                    field.push(c);
                }
            }
        }
        fields.push(field);
    }
}

/// `dir` made absolute against the working directory, as Go's `filepath.Abs`.
fn absolute(dir: &str) -> String {
    match std::path::absolute(Path::new(dir)) {
        Ok(p) => {
            // filepath.Abs also cleans the path (`./x/.` -> `/cwd/x`).
            let mut out = std::path::PathBuf::new();
            for c in p.components() {
                match c {
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            out.display().to_string()
        }
        Err(_) => dir.to_string(),
    }
}

/// Docker's `--mount` (`opts.MountOpt.Set`): CSV `key=value` fields; the
/// type defaults to `volume`.
pub fn parse_mount(value: &str) -> Result<MountRequest> {
    let fields = csv_fields(value)?;
    let mut m = MountRequest { kind: "volume".into(), ..Default::default() };
    // Each options object exists once a flag of its kind was given, as in
    // the docker CLI (`volume-opt=` alone still sends an empty `Options`).
    let mut volume: Option<VolumeOptions> = None;
    let mut bind: Option<BindOptions> = None;
    let mut tmpfs: Option<TmpfsOptions> = None;
    let key_value = |v: &str| -> (String, String) {
        let (k, x) = v.split_once('=').unwrap_or((v, ""));
        (k.to_string(), x.to_string())
    };
    for field in &fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => m.read_only = true,
                "volume-nocopy" => {
                    volume.get_or_insert_with(Default::default).no_copy = Some(true);
                }
                "bind-nonrecursive" => {
                    bind.get_or_insert_with(Default::default).non_recursive = Some(true);
                }
                _ => bail!("invalid field '{field}' must be a key=value pair"),
            }
            continue;
        };
        let bad = || anyhow!("invalid value for {key}: {val}");
        match key.as_str() {
            "type" => m.kind = val.to_lowercase(),
            "source" | "src" => {
                m.source = if val == "." || val.starts_with("./") { absolute(val) } else { val.to_string() };
            }
            "target" | "dst" | "destination" => m.target = val.to_string(),
            "readonly" | "ro" => m.read_only = parse_bool(val).ok_or_else(bad)?,
            "consistency" => m.consistency = val.to_lowercase(),
            "bind-propagation" => {
                bind.get_or_insert_with(Default::default).propagation = Some(val.to_lowercase());
            }
            "bind-nonrecursive" => {
                let b = parse_bool(val).ok_or_else(bad)?;
                let options = bind.get_or_insert_with(Default::default);
                if b {
                    options.non_recursive = Some(true);
                }
            }
            "volume-nocopy" => {
                let b = parse_bool(val).ok_or_else(|| anyhow!("invalid value for volume-nocopy: {val}"))?;
                let options = volume.get_or_insert_with(Default::default);
                if b {
                    options.no_copy = Some(true);
                }
            }
            "volume-subpath" => {
                volume.get_or_insert_with(Default::default).subpath = Some(val.to_string());
            }
            "volume-label" => {
                let (k, x) = key_value(val);
                if !k.is_empty() {
                    let options = volume.get_or_insert_with(Default::default);
                    options.labels.get_or_insert_with(BTreeMap::new).insert(k, x);
                }
            }
            "volume-driver" => {
                volume.get_or_insert_with(Default::default).driver_config.name = Some(val.to_string());
            }
            "volume-opt" => {
                let (k, x) = key_value(val);
                let driver = &mut volume.get_or_insert_with(Default::default).driver_config;
                let options = driver.options.get_or_insert_with(BTreeMap::new);
                if !k.is_empty() {
                    options.insert(k, x);
                }
            }
            "tmpfs-size" => {
                let bytes = parse_memory(val).map_err(|_| bad())?;
                tmpfs.get_or_insert_with(Default::default).size_bytes = Some(bytes);
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(val, 8).map_err(|_| bad())?;
                tmpfs.get_or_insert_with(Default::default).mode = Some(mode);
            }
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    if m.kind.is_empty() {
        bail!("type is required");
    }
    if m.target.is_empty() {
        bail!("target is required");
    }
    if volume.is_some() && m.kind != "volume" {
        bail!("cannot mix 'volume-*' options with mount type '{}'", m.kind);
    }
    if bind.is_some() && m.kind != "bind" {
        bail!("cannot mix 'bind-*' options with mount type '{}'", m.kind);
    }
    if tmpfs.is_some() && m.kind != "tmpfs" {
        bail!("cannot mix 'tmpfs-*' options with mount type '{}'", m.kind);
    }
    // The model keeps these objects as JSON values.
    m.volume_options = volume.map(serde_json::to_value).transpose()?;
    m.bind_options = bind.map(serde_json::to_value).transpose()?;
    m.tmpfs_options = tmpfs.map(serde_json::to_value).transpose()?;
    Ok(m)
}

/// The volume flags of `create` and `run`, as given.
#[derive(Clone, Copy, Debug, Default)]
pub struct MountFlags<'a> {
    /// `-v`, `--volume`.
    pub volume: &'a [String],
    /// `--mount`.
    pub mount: &'a [String],
    /// `--volumes-from`.
    pub volumes_from: &'a [String],
    /// `--volume-driver`.
    pub volume_driver: Option<&'a str>,
}

/// Fills the volume parts of a create request from the flags.
pub fn apply(flags: MountFlags<'_>, c: &mut ContainerConfig, h: &mut HostConfig) -> Result<()> {
    let mut binds = Vec::new();
    let mut anonymous = BTreeMap::new();
    for spec in flags.volume {
        let parsed = parse_volume_spec(spec)?;
        if parsed.source.is_empty() {
            // As the docker CLI: the whole value is the key of Config.Volumes.
            anonymous.insert(spec.clone(), BTreeMap::new());
            continue;
        }
        let mut bind = spec.clone();
        if parsed.kind == "bind" {
            if let Some((host, rest)) = spec.split_once(':') {
                if host.starts_with('.') {
                    bind = format!("{}:{rest}", absolute(host));
                }
            }
        }
        if !binds.contains(&bind) {
            binds.push(bind);
        }
    }
    if !binds.is_empty() {
        h.binds = Some(binds);
    }
    if !anonymous.is_empty() {
        c.volumes.get_or_insert_with(BTreeMap::new).extend(anonymous);
    }
    if !flags.mount.is_empty() {
        let mounts = flags
            .mount
            .iter()
            .map(|v| parse_mount(v).map_err(|e| anyhow!("invalid argument \"{v}\" for \"--mount\" flag: {e}")))
            .collect::<Result<Vec<_>>>()?;
        h.mounts = Some(mounts);
    }
    if !flags.volumes_from.is_empty() {
        h.volumes_from = Some(flags.volumes_from.to_vec());
    }
    h.volume_driver = flags.volume_driver.unwrap_or_default().to_string();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(s: &str) -> (String, String, &'static str) {
        let v = parse_volume_spec(s).unwrap();
        (v.source, v.target, v.kind)
    }

    #[test]
    fn volume_specs_parse_like_the_compose_loader() {
        assert_eq!(spec("/data"), ("".into(), "/data".into(), "volume"));
        assert_eq!(spec("db:/var/lib/db"), ("db".into(), "/var/lib/db".into(), "volume"));
        assert_eq!(spec("/srv:/srv:ro"), ("/srv".into(), "/srv".into(), "bind"));
        assert_eq!(spec("./x:/x:rw,z"), ("./x".into(), "/x".into(), "bind"));
        assert_eq!(spec("~/x:/x"), ("~/x".into(), "/x".into(), "bind"));
        assert_eq!(spec("/a"), ("".into(), "/a".into(), "volume"));
        let err = |s: &str| parse_volume_spec(s).unwrap_err().to_string();
        assert_eq!(err(""), "invalid empty volume spec");
        assert_eq!(err("a::/b"), "invalid spec: a::/b: empty section between colons");
        assert_eq!(err("a:/b:ro:x"), "invalid spec: a:/b:ro:x: too many colons");
    }

    #[test]
    fn mounts_become_dockers_mount_objects() {
        let m = parse_mount("type=bind,source=/srv,target=/data,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(m.kind, "bind");
        assert_eq!((m.source.as_str(), m.target.as_str(), m.read_only), ("/srv", "/data", true));
        assert_eq!(m.bind_options, Some(json!({"Propagation": "rshared"})));
        assert_eq!(m.volume_options, None);

        let m =
            parse_mount("src=db,dst=/db,volume-nocopy,volume-driver=local,volume-opt=type=tmpfs,volume-opt=o=size=1m")
                .unwrap();
        assert_eq!(m.kind, "volume");
        assert_eq!(
            m.volume_options,
            Some(
                json!({"NoCopy": true, "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "o": "size=1m"}}})
            )
        );

        let m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.tmpfs_options, Some(json!({"SizeBytes": 64 << 20, "Mode": 0o1770})));
        assert_eq!(parse_mount("type=volume,target=/x,ro=false").unwrap().read_only, false);
        // A quoted field may hold commas.
        let m = parse_mount("type=volume,\"volume-opt=o=size=1m,uid=1000\",target=/x").unwrap();
        assert_eq!(m.volume_options.unwrap()["DriverConfig"]["Options"]["o"], "size=1m,uid=1000");
    }

    #[test]
    fn bad_mounts_have_dockers_errors() {
        let err = |s: &str| parse_mount(s).unwrap_err().to_string();
        assert_eq!(err("type=bind,source=/x"), "target is required");
        assert_eq!(err("type=bind,target=/x,volume-nocopy"), "cannot mix 'volume-*' options with mount type 'bind'");
        assert_eq!(
            err("type=volume,target=/x,bind-propagation=shared"),
            "cannot mix 'bind-*' options with mount type 'volume'"
        );
        assert_eq!(err("type=bind,target=/x,tmpfs-size=1m"), "cannot mix 'tmpfs-*' options with mount type 'bind'");
        assert_eq!(err("target=/x,bogus=1"), "unexpected key 'bogus' in 'bogus=1'");
        assert_eq!(err("target=/x,nokey"), "invalid field 'nokey' must be a key=value pair");
        assert_eq!(err("type=tmpfs,target=/x,tmpfs-mode=9"), "invalid value for tmpfs-mode: 9");
        assert_eq!(err("type=tmpfs,target=/x,tmpfs-size=lots"), "invalid value for tmpfs-size: lots");
        assert_eq!(err("type=bind,target=/x,readonly=maybe"), "invalid value for readonly: maybe");
        assert_eq!(err("type=,target=/x"), "type is required");
    }

    #[test]
    fn flags_fill_binds_volumes_and_mounts() {
        let volume: Vec<String> = vec!["/anon".into(), "db:/db".into(), "/h:/c:ro".into(), "./rel:/rel".into()];
        let mount: Vec<String> = vec!["type=tmpfs,target=/t".into()];
        let volumes_from: Vec<String> = vec!["store:ro".into()];
        let flags = MountFlags { volume: &volume, mount: &mount, volumes_from: &volumes_from, volume_driver: Some("local") };
        let (mut c, mut h) = (ContainerConfig::default(), HostConfig::default());
        apply(flags, &mut c, &mut h).unwrap();
        let binds = h.binds.unwrap();
        assert_eq!(&binds[..2], ["db:/db", "/h:/c:ro"]);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(binds[2], format!("{}/rel:/rel", cwd.display()));
        assert_eq!(c.volumes.unwrap().keys().collect::<Vec<_>>(), ["/anon"]);
        assert_eq!(h.mounts.unwrap()[0].kind, "tmpfs");
        assert_eq!(h.volumes_from, Some(vec!["store:ro".to_string()]));
        assert_eq!(h.volume_driver, "local");

        let bad_mount = vec!["type=bind".to_string()];
        let bad = MountFlags { mount: &bad_mount, ..Default::default() };
        let e = apply(bad, &mut ContainerConfig::default(), &mut HostConfig::default()).unwrap_err();
        assert_eq!(e.to_string(), "invalid argument \"type=bind\" for \"--mount\" flag: target is required");
    }
}
