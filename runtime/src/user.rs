//! Resolves Docker's `--user name|uid[:group|gid]` and `--group-add` against
//! the container's own `/etc/passwd` and `/etc/group`, as runc does.
//!
//! Pure functions over the files' contents: the caller reads them from inside
//! the container (after pivot_root, or through RESOLVE_IN_ROOT), never from
//! the host.

/// A resolved user: what setresuid/setresgid/setgroups get, and `$HOME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default(),
        })
    })
}

/// Resolves one group name or number.
fn resolve_group(spec: &str, group: &str) -> Result<u32, String> {
    if let Some(g) = group_entries(group).find(|g| g.name == spec) {
        return Ok(g.gid);
    }
    spec.parse::<u32>().map_err(|_| format!("unable to find group {spec}: no matching entries in group file"))
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, ...) plus the
/// `--group-add` entries against the container's passwd and group files
/// (empty strings when a file is missing).
pub fn resolve(user: &str, group_add: &[String], passwd: &str, group: &str) -> Result<ExecUser, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    // A name wins over a number, as in runc: a user called "1000" is that user.
    let entry = passwd_entries(passwd)
        .find(|e| e.name == user_part)
        .or_else(|| user_part.parse::<u32>().ok().and_then(|uid| passwd_entries(passwd).find(|e| e.uid == uid)));
    let (uid, mut gid, home, name) = match (&entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => return Err(format!("unable to find user {user_part}: no matching entries in passwd file")),
    };
    let mut additional = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => gid = resolve_group(g, group)?,
        _ => {
            // No explicit group: the user's supplementary groups come from /etc/group.
            if let Some(name) = name {
                for g in group_entries(group) {
                    if g.members.contains(&name) && g.gid != gid && !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let gid = resolve_group(g, group)?;
        if !additional.contains(&gid) {
            additional.push(gid);
        }
    }
    let home = if home.is_empty() { "/".to_string() } else { home };
    Ok(ExecUser { uid, gid, additional_gids: additional, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nstaff:x:50:\nnogroup:x:65534:\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve("alice", &[], PASSWD, GROUP).expect("alice");
        assert_eq!(u, ExecUser { uid: 1000, gid: 1000, additional_gids: vec![10], home: "/home/alice".into() });
        let u = resolve("1000", &[], PASSWD, GROUP).expect("uid 1000");
        assert_eq!(u.gid, 1000);
        assert_eq!(u.additional_gids, vec![10]);
        let u = resolve("4242:4343", &[], PASSWD, GROUP).expect("unknown numeric");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 4343, "/"));
        let u = resolve("nobody:staff", &["wheel".into(), "77".into()], PASSWD, GROUP).expect("nobody:staff");
        assert_eq!((u.uid, u.gid), (65534, 50));
        assert_eq!(u.additional_gids, vec![10, 77]);
        let u = resolve("", &[], PASSWD, GROUP).expect("empty is root");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("mallory", &[], PASSWD, GROUP).expect_err("no such user");
        assert_eq!(e, "unable to find user mallory: no matching entries in passwd file");
        let e = resolve("alice:nosuch", &[], PASSWD, GROUP).expect_err("no such group");
        assert!(e.contains("unable to find group nosuch"), "{e}");
        assert!(resolve("alice", &[], "", "").is_err());
    }
}
