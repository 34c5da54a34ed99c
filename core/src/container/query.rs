//! Finding and listing containers: by ID, ID prefix or name; `ps` filters;
//! `container prune`.

use std::collections::BTreeMap;

use berth_model::container::{ContainerRecord, Status};
use berth_model::MountSpec;

use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use super::{ContainerDetails, ListOptions};
use super::ContainerService;

/// Filter keys `ps` accepts.
const PS_KEYS: &[&str] = &["status", "name", "id", "label", "ancestor", "exited", "before", "since", "volume", "network"];
/// Filter keys `container prune` accepts.
const PRUNE_KEYS: &[&str] = &["label", "label!", "until"];

/// The status word `ps -f status=` compares with.
fn status_word(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Restarting => "restarting",
        Status::Removing => "removing",
        Status::Exited => "exited",
        Status::Dead => "dead",
    }
}

/// Checks `filters` against the keys and status values `ps` knows.
pub fn check_ps_filters(filters: &Filters) -> EngineResult<()> {
    for (k, values) in filters {
        if !PS_KEYS.contains(&k.as_str()) {
            return Err(EngineError::InvalidArgument(format!("invalid filter '{k}'")));
        }
        if k == "status" {
            for v in values {
                if !["created", "running", "paused", "restarting", "removing", "exited", "dead"].contains(&v.as_str()) {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid filter 'status={v}': expected one of created, restarting, running, removing, paused, exited or dead"
                    )));
                }
            }
        }
        if k == "exited" {
            for v in values {
                if v.parse::<i64>().is_err() {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid filter 'exited={v}': expected an integer"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether a label filter value (`key` or `key=value`) matches `labels`.
fn label_matches(labels: Option<&BTreeMap<String, String>>, v: &str) -> bool {
    let Some(labels) = labels else { return false };
    match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(v),
    }
}

/// Whether `record` passes the `ps` filters other than `ancestor`,
/// `before` and `since` (which need lookups); `ancestors` are the image IDs
/// the `ancestor` values resolved to.
pub fn record_matches(record: &ContainerRecord, filters: &Filters, ancestors: Option<&[String]>) -> bool {
    filters.iter().all(|(key, values)| {
        values.is_empty()
            || match key.as_str() {
                "status" => values.iter().any(|v| v == status_word(record.state.status)),
                // Docker matches names as a regular expression; a substring covers the usual use.
                "name" => values.iter().any(|v| record.name.contains(v.trim_start_matches('/'))),
                "id" => values.iter().any(|v| record.id.as_str().starts_with(v.as_str())),
                "label" => values.iter().all(|v| label_matches(record.config.labels.as_ref(), v)),
                "exited" => {
                    record.state.status == Status::Exited
                        && values.iter().any(|v| v.parse::<i64>().ok() == Some(record.state.exit_code))
                }
                // Docker matches a network by name or ID (prefix).
                "network" => values.iter().any(|v| {
                    record.networks.iter().any(|(name, e)| {
                        name == v || (!e.network_id.is_empty() && e.network_id.starts_with(v.as_str()))
                    })
                }),
                // Docker matches a mount's destination, or its volume name (its source for a bind).
                "volume" => values.iter().any(|v| {
                    record.mounts.iter().any(|m| {
                        m.destination == *v || if m.name.is_empty() { m.source == *v } else { m.name == *v }
                    })
                }),
                "ancestor" => ancestors.is_some_and(|a| {
                    a.iter().any(|i| *i == record.image.to_string()) || values.contains(&record.config.image)
                }),
                _ => true,
            }
    })
}

impl ContainerService {
    /// The record with what `inspect` and `ps` add.
    pub(crate) fn details_of(&self, record: ContainerRecord, size: bool) -> ContainerDetails {
        let id = record.id.to_string();
        let (size_rw, size_root_fs) = if size {
            let rw = self.storage.usage(&record.rw_layer).unwrap_or(0);
            let image = self.images.record_of(&record.image).ok().flatten();
            (Some(rw), Some(rw + image.map(|i| i.size).unwrap_or(0)))
        } else {
            (None, None)
        };
        let mut graph = BTreeMap::new();
        if let Ok(plan) = self.storage.mount_plan(&record.rw_layer, true) {
            if let MountSpec::Overlay { lower, upper, work } = plan.spec {
                let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
                graph.insert("LowerDir".to_string(), lower.join(":"));
                if let Some(u) = upper {
                    graph.insert("UpperDir".to_string(), u.display().to_string());
                }
                if let Some(w) = work {
                    graph.insert("WorkDir".to_string(), w.display().to_string());
                }
            }
        }
        graph.insert("MergedDir".to_string(), self.state_dir(&id).join("rootfs").display().to_string());
        ContainerDetails {
            image_name: record.config.image.clone(),
            size_rw,
            size_root_fs,
            log_path: self.log_path(&id).display().to_string(),
            graph_driver_data: graph,
            record,
        }
    }

    /// Finds a container by full ID, unique ID prefix or name (with or without `/`).
    pub fn find(&self, id_or_name: &str) -> EngineResult<ContainerDetails> {
        let record = self.catalog.lookup(id_or_name)?;
        Ok(self.details_of(record, false))
    }

    /// `docker ps`, newest first.
    pub fn list(&self, options: &ListOptions) -> EngineResult<Vec<ContainerDetails>> {
        check_ps_filters(&options.filters)?;
        let mut records = self.catalog.all()?;
        records.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        let ancestors = options.filters.get("ancestor").map(|values| {
            values.iter().filter_map(|v| self.images.find(v).ok().map(|d| d.record.id.to_string())).collect::<Vec<_>>()
        });
        // `before`/`since`: created before or after the named container.
        let created_of = |key: &str| -> EngineResult<Option<String>> {
            match options.filters.get(key).and_then(|v| v.first()) {
                Some(v) => Ok(Some(self.catalog.lookup(v)?.created)),
                None => Ok(None),
            }
        };
        let before = created_of("before")?;
        let since = created_of("since")?;
        let show_all = options.all
            || options.limit.is_some()
            || options.filters.contains_key("status")
            || options.filters.contains_key("exited");
        let mut out = Vec::new();
        for r in records {
            if !show_all && !r.state.is_active() {
                continue;
            }
            if before.as_ref().is_some_and(|b| r.created >= *b) || since.as_ref().is_some_and(|s| r.created <= *s) {
                continue;
            }
            if !record_matches(&r, &options.filters, ancestors.as_deref()) {
                continue;
            }
            out.push(r);
            if options.limit.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
        Ok(out.into_iter().map(|r| self.details_of(r, options.size)).collect())
    }

    /// `docker container prune`: removes stopped containers; returns their IDs
    /// and the bytes reclaimed.
    pub fn prune(&self, filters: &Filters) -> EngineResult<(Vec<String>, u64)> {
        for k in filters.keys() {
            if !PRUNE_KEYS.contains(&k.as_str()) {
                return Err(EngineError::InvalidArgument(format!("invalid filter '{k}'")));
            }
        }
        let until = match filters.get("until").and_then(|v| v.first()) {
            Some(v) => Some(parse_until(v)?),
            None => None,
        };
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for r in self.catalog.all()? {
            if r.state.is_active() {
                continue;
            }
            if let Some(labels) = filters.get("label") {
                if !labels.iter().all(|v| label_matches(r.config.labels.as_ref(), v)) {
                    continue;
                }
            }
            if let Some(labels) = filters.get("label!") {
                if labels.iter().any(|v| label_matches(r.config.labels.as_ref(), v)) {
                    continue;
                }
            }
            if let Some(u) = until {
                let created = chrono::DateTime::parse_from_rfc3339(&r.created).map(|t| t.timestamp()).unwrap_or(0);
                if created >= u {
                    continue;
                }
            }
            let size = self.storage.usage(&r.rw_layer).unwrap_or(0);
            match self.remove(r.id.as_str(), false, false) {
                Ok(()) => {
                    removed.push(r.id.to_string());
                    reclaimed += size;
                }
                // Started or removed meanwhile: not prunable now.
                Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, reclaimed))
    }
}

/// `until` of prune: unix seconds, RFC 3339, or a Go duration before now (`24h`, `30m`).
fn parse_until(v: &str) -> EngineResult<i64> {
    if let Ok(n) = v.parse::<f64>() {
        return Ok(n as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp());
    }
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len()));
    let n: f64 = num.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid until value {v:?}")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(EngineError::InvalidArgument(format!("invalid until value {v:?}"))),
    };
    Ok(chrono::Utc::now().timestamp() - secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::container::{ContainerConfig, ContainerState, HostConfig};

    fn rec(name: &str, status: Status, code: i64) -> ContainerRecord {
        ContainerRecord {
            id: format!("{:0<64}", "abc123").parse().unwrap(),
            name: name.into(),
            created: String::new(),
            image: berth_model::Digest::of(b"img"),
            path: "sh".into(),
            args: vec![],
            config: ContainerConfig {
                image: "busybox".into(),
                labels: Some([("tier".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            host_config: HostConfig::default(),
            state: ContainerState { status, exit_code: code, ..Default::default() },
            restart_count: 0,
            rw_layer: String::new(),
            manually_stopped: false,
            networks: Default::default(),
            ports: Default::default(),
            sandbox_key: String::new(),
            mounts: Vec::new(),
        }
    }

    fn f(pairs: &[(&str, &str)]) -> Filters {
        let mut m = Filters::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn ps_filters() {
        let web = rec("web", Status::Exited, 3);
        assert!(record_matches(&web, &f(&[("status", "exited")]), None));
        assert!(!record_matches(&web, &f(&[("status", "running")]), None));
        assert!(record_matches(&web, &f(&[("status", "running"), ("status", "exited")]), None));
        assert!(record_matches(&web, &f(&[("name", "we")]), None));
        assert!(record_matches(&web, &f(&[("name", "/web")]), None));
        assert!(!record_matches(&web, &f(&[("name", "db")]), None));
        assert!(record_matches(&web, &f(&[("id", "abc1")]), None));
        assert!(record_matches(&web, &f(&[("label", "tier=web")]), None));
        assert!(!record_matches(&web, &f(&[("label", "tier"), ("label", "x")]), None), "labels: all must match");
        assert!(record_matches(&web, &f(&[("exited", "3")]), None));
        assert!(!record_matches(&rec("r", Status::Running, 0), &f(&[("exited", "0")]), None));
        let img = web.image.to_string();
        assert!(record_matches(&web, &f(&[("ancestor", "busybox")]), Some(&[img])));
        assert!(!record_matches(&web, &f(&[("ancestor", "alpine")]), Some(&[])));
    }

    #[test]
    fn bad_ps_filters_are_refused() {
        assert_eq!(check_ps_filters(&f(&[("bogus", "1")])).unwrap_err().to_string(), "invalid filter 'bogus'");
        assert!(check_ps_filters(&f(&[("status", "sleeping")])).is_err());
        assert!(check_ps_filters(&f(&[("exited", "x")])).is_err());
        assert!(check_ps_filters(&f(&[("status", "running"), ("exited", "0")])).is_ok());
    }

    #[test]
    fn until_values() {
        assert_eq!(parse_until("100").unwrap(), 100);
        assert_eq!(parse_until("2020-01-01T00:00:00Z").unwrap(), 1577836800);
        let h = parse_until("1h").unwrap();
        assert!((chrono::Utc::now().timestamp() - 3600 - h).abs() <= 2);
        assert!(parse_until("soon").is_err());
    }
}
