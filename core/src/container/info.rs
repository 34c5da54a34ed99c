//! `top`, `stats` and `update`: a running container's processes and
//! resources, read from and written to its cgroup.

use std::collections::HashSet;
use std::fs;

use berth_model::container::{HostConfig, Status, ZERO_TIME};

use crate::error::{EngineError, EngineResult};
use super::{ContainerService, CpuSample, MemorySample, PidsSample, StatsSample};
use super::create::{online_cpus, validate_resources, validate_restart_policy};

/// Clock ticks per second (`USER_HZ`).
fn clk_tck() -> u64 {
    // SAFETY: sysconf reads a value and has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// Fields of `/proc/<pid>/stat` after the command name, with the name.
fn proc_stat(pid: i32) -> Option<(String, Vec<String>)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    Some((comm, s[close + 1..].split_whitespace().map(str::to_string).collect()))
}

/// A user name for `uid` from the host's passwd (as `ps` on the host shows it).
fn user_name(uid: u32, passwd: &str) -> String {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// `ps`'s TTY column from a `tty_nr`.
pub fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".into();
    }
    let major = ((tty_nr >> 8) & 0xfff) as u32;
    let minor = ((tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00)) as u32;
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => format!("{major}:{minor}"),
    }
}

/// `ps`'s TIME column: `[DD-]HH:MM:SS`.
pub fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Seconds since the epoch at boot (`btime` of /proc/stat).
fn boot_time() -> u64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// All CPU time of the host in nanoseconds (Docker's `system_cpu_usage`).
fn system_cpu_ns() -> u64 {
    let Ok(s) = fs::read_to_string("/proc/stat") else { return 0 };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let ticks: u64 = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse::<u64>().ok()).sum();
    ticks * (1_000_000_000 / clk_tck())
}

/// The host's memory in bytes (the limit `stats` shows when there is none).
fn host_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Splits `ps` output into titles and rows of the processes in `pids`.
pub fn filter_ps_output(output: &str, pids: &HashSet<i32>) -> EngineResult<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::InvalidArgument("Couldn't find PID field in ps output".into()))?;
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else { continue };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) keeps its spaces.
        let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
        row.push(fields[titles.len() - 1..].join(" "));
        rows.push(row);
    }
    Ok((titles, rows))
}

impl ContainerService {
    /// `docker top`: `ps` columns and rows for the container's processes.
    pub fn top(
        &self,
        id_or_name: &str,
        ps_args: Option<&str>,
    ) -> EngineResult<(Vec<String>, Vec<Vec<String>>)> {
        let record = self.catalog.lookup(id_or_name)?;
        if !matches!(record.state.status, Status::Running | Status::Paused) {
            return Err(EngineError::Conflict(format!("Container {} is not running", record.id)));
        }
        let mut pids = Self::cgroup_of(&record)?.pids()?;
        pids.sort_unstable();
        let args = ps_args.map(str::trim).filter(|a| !a.is_empty() && *a != "-ef");
        if let Some(args) = args {
            // Other `ps` options: the host's `ps`, rows filtered to the container's PIDs (as Docker does).
            let out = std::process::Command::new("ps")
                .args(args.split_whitespace())
                .output()
                .map_err(|e| EngineError::io("running ps", e))?;
            if !out.status.success() {
                return Err(EngineError::InvalidArgument(format!(
                    "ps {args}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return filter_ps_output(&String::from_utf8_lossy(&out.stdout), &pids.into_iter().collect());
        }
        let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"].map(str::to_string).to_vec();
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let hz = clk_tck();
        let btime = boot_time();
        let now = chrono::Local::now();
        let uptime: f64 = fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let mut rows = Vec::new();
        for pid in pids {
            // Gone since the cgroup was read: skip it.
            let Some((comm, f)) = proc_stat(pid) else { continue };
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // After the name: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) ... utime(11) stime(12) ... starttime(19).
            let ppid = num(1);
            let cpu_ticks = num(11) + num(12);
            let start_ticks = num(19);
            let uid = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("Uid:").and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                    })
                })
                .unwrap_or(0);
            let elapsed = (uptime - start_ticks as f64 / hz as f64).max(0.0);
            let c = if elapsed > 0.0 { ((cpu_ticks as f64 / hz as f64) / elapsed * 100.0) as u64 } else { 0 };
            let started = chrono::DateTime::from_timestamp((btime + start_ticks / hz) as i64, 0)
                .map(|t| t.with_timezone(&chrono::Local));
            let stime = match started {
                Some(t) if t.date_naive() == now.date_naive() => t.format("%H:%M").to_string(),
                Some(t) => t.format("%b%d").to_string(),
                None => "?".into(),
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = if cmdline.is_empty() {
                format!("[{comm}]")
            } else {
                cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            rows.push(vec![
                user_name(uid, &passwd),
                pid.to_string(),
                ppid.to_string(),
                c.to_string(),
                stime,
                tty_name(num(4)),
                cpu_time(cpu_ticks / hz),
                cmd,
            ]);
        }
        Ok((titles, rows))
    }

    /// `docker stats`: one sample of the container's usage, with the CPU
    /// counters of the previous one.
    pub fn stats(&self, id_or_name: &str) -> EngineResult<StatsSample> {
        let record = self.catalog.lookup(id_or_name)?;
        let id = record.id.to_string();
        let running = matches!(record.state.status, Status::Running | Status::Paused);
        if !running {
            // Docker answers a stopped container with zeros.
            return Ok(StatsSample {
                read: ZERO_TIME.into(),
                preread: ZERO_TIME.into(),
                name: record.name.clone(),
                id,
                ..Default::default()
            });
        }
        let s = Self::cgroup_of(&record)?.stats()?;
        let host_mem = host_memory();
        let limit =
            if s.memory_limit == 0 || (host_mem > 0 && s.memory_limit > host_mem) { host_mem } else { s.memory_limit };
        let read = berth_runtime::clock::now_rfc3339();
        let cpu = CpuSample {
            total_ns: s.cpu_usage_ns,
            kernel_ns: s.cpu_system_ns,
            user_ns: s.cpu_user_ns,
            host_ns: system_cpu_ns(),
            online_cpus: u32::try_from(online_cpus()).unwrap_or(u32::MAX),
        };
        let previous =
            self.live.prev_stats.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), (read.clone(), cpu));
        let (preread, precpu) = previous.unwrap_or_else(|| (ZERO_TIME.into(), CpuSample::default()));
        Ok(StatsSample {
            read,
            preread,
            cpu,
            precpu,
            memory: Some(MemorySample { usage: s.memory_usage, limit, cache: s.memory_cache }),
            pids: Some(PidsSample { current: s.pids_current, limit: s.pids_limit }),
            name: record.name.clone(),
            id,
        })
    }

    /// `docker update`: new resource limits (and restart policy).
    pub fn update(&self, id_or_name: &str, update: HostConfig) -> EngineResult<Vec<String>> {
        let id = self.catalog.lookup(id_or_name)?.id.to_string();
        let _g = self.live.lock(&id);
        let mut record =
            self.catalog.load(&id)?.ok_or_else(|| EngineError::NotFound(format!("No such container: {id}")))?;
        let hc = &mut record.host_config;
        if update.memory > 0 && update.memory_swap == 0 && hc.memory_swap > 0 && update.memory > hc.memory_swap {
            return Err(EngineError::InvalidArgument(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
                    .into(),
            ));
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if update.$f != HostConfig::default().$f { hc.$f = update.$f.clone(); } )* };
        }
        take!(
            cpu_shares,
            memory,
            cpu_period,
            cpu_quota,
            cpu_realtime_period,
            cpu_realtime_runtime,
            cpuset_cpus,
            cpuset_mems,
            memory_reservation,
            memory_swap,
            nano_cpus
        );
        if update.pids_limit.is_some() {
            hc.pids_limit = update.pids_limit;
        }
        if update.memory_swappiness.is_some() {
            hc.memory_swappiness = update.memory_swappiness;
        }
        validate_resources(hc)?;
        if !update.restart_policy.name.is_empty() {
            let policy = validate_restart_policy(&update.restart_policy)?;
            if hc.auto_remove && policy.name != "no" {
                return Err(EngineError::InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            hc.restart_policy = policy;
        }
        if record.state.is_active() && record.state.status != Status::Restarting {
            let resources = crate::container::spec::resources(&record)?;
            Self::cgroup_of(&record)?.update(&resources)?;
        }
        self.save_container(&record)?;
        self.emit(&record, "update", &[]);
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_columns() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3725), "01:02:05");
        assert_eq!(cpu_time(90061), "1-01:01:01");
        assert_eq!(user_name(0, "root:x:0:0:root:/root:/bin/sh\n"), "root");
        assert_eq!(user_name(1234, "root:x:0:0::/:/bin/sh\n"), "1234");
    }

    #[test]
    fn ps_output_is_filtered_by_pid() {
        let out = "  PID USER     COMMAND\n    1 root     init\n   42 root     sleep 100\n   43 root     other\n";
        let pids: HashSet<i32> = [42].into();
        let (titles, rows) = filter_ps_output(out, &pids).unwrap();
        assert_eq!(titles, vec!["PID", "USER", "COMMAND"]);
        assert_eq!(rows, vec![vec!["42".to_string(), "root".into(), "sleep 100".into()]]);
        assert!(filter_ps_output("USER CMD\n", &pids).is_err());
    }
}
