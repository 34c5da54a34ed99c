//! Docker's `filters` query parameter, which the list, prune and events
//! routes share: the values asked for under each filter key, as JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The values asked for under each filter key. Written as Docker's CLI
/// writes them, `{"key": {"value": true}}`; old clients write a key's values
/// as a list, `{"key": ["value"]}`, and both read the same. A value mapped
/// to anything but `true` is not asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Asks for `value` under `key`, beside the values already there.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.entry(key.into()).or_default().insert(value.into());
    }

    /// Drops `key` and its values.
    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of each key, in the shape the engine takes filters.
    pub fn into_lists(self) -> BTreeMap<String, Vec<String>> {
        self.0.into_iter().map(|(key, values)| (key, values.into_iter().collect())).collect()
    }
}

/// The JSON text, as it goes into the query string.
impl fmt::Display for Filters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Filters {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct ValueSet<'a>(&'a BTreeSet<String>);
        impl Serialize for ValueSet<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|value| (value, true)))
            }
        }
        serializer.collect_map(self.0.iter().map(|(key, values)| (key, ValueSet(values))))
    }
}

impl<'de> Deserialize<'de> for Filters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut filters = Filters::default();
        for (key, values) in BTreeMap::<String, Value>::deserialize(deserializer)? {
            let values = match values {
                Value::Object(set) => set.into_iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(v, _)| v).collect(),
                Value::Array(list) => list.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                other => return Err(D::Error::custom(format!("invalid filter '{key}': {other}"))),
            };
            filters.0.insert(key, values);
        }
        Ok(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_docker_cli_writes_them() {
        let mut f = Filters::default();
        f.add("label", "b=2");
        f.add("dangling", "true");
        f.add("label", "a=1");
        f.add("label", "a=1");
        assert_eq!(f.to_string(), r#"{"dangling":{"true":true},"label":{"a=1":true,"b=2":true}}"#);
        f.remove("label");
        assert!(f.contains("dangling") && !f.contains("label"));
        assert_eq!(Filters::default().to_string(), "{}");
    }

    #[test]
    fn both_encodings_read_the_same() {
        let current: Filters = serde_json::from_str(r#"{"reference":{"busy*":true,"off":false},"until":{}}"#).unwrap();
        let old: Filters = serde_json::from_str(r#"{"reference":["busy*"],"until":[]}"#).unwrap();
        assert_eq!(current, old);
        let lists = current.into_lists();
        assert_eq!(lists["reference"], ["busy*"]);
        assert!(lists["until"].is_empty());
        let bad = serde_json::from_str::<Filters>(r#"{"label":5}"#).unwrap_err().to_string();
        assert!(bad.starts_with("invalid filter 'label': 5"), "{bad}");
        assert!(serde_json::from_str::<Filters>(r#"["label"]"#).is_err());
    }
}
