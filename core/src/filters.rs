//! The filters of list and prune requests, as the API hands them over.

/// `ps` filters (`-f status=exited`, `name=`, `id=`, `label=`, `ancestor=`,
/// `exited=`), each key with its accepted values (any of them matches).
pub type Filters = std::collections::BTreeMap<String, Vec<String>>;
