//! `docker events`: a bounded ring of past events and live subscribers.
//!
//! Publishing never blocks: a subscriber is an unbounded channel, dropped
//! when its receiver goes away or its `until` has passed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;

/// One event of `docker events`: what happened to which object, and when.
/// The API turns it into Docker's `EventMessage` (`apitypes`).
#[derive(Clone, Debug)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, ...
    pub kind: String,
    pub action: String,
    pub actor: EventActor,
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
    /// Docker's legacy members, which the docker CLI still prints from.
    pub status: String,
    pub id: String,
    pub from: String,
}

/// The object of an event and its attributes.
#[derive(Clone, Debug)]
pub struct EventActor {
    pub id: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// How many past events `events --since` can replay.
const RING: usize = 1024;

/// Filter keys `events` accepts.
const KEYS: &[&str] = &["type", "event", "container", "image", "label", "scope"];

struct Subscriber {
    id: u64,
    filters: Filters,
    until_nano: Option<i64>,
    tx: Sender<Event>,
}

#[derive(Default)]
struct Inner {
    past: VecDeque<Event>,
    subscribers: Vec<Subscriber>,
    next_id: u64,
}

/// Past events and live subscribers.
#[derive(Default)]
pub struct EventBus {
    inner: Mutex<Inner>,
}

/// Checks `filters` for keys `events` does not know.
pub fn check_filters(filters: &Filters) -> EngineResult<()> {
    for k in filters.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(EngineError::InvalidArgument(format!("invalid filter '{k}'")));
        }
    }
    Ok(())
}

/// Whether `event` passes `filters` (each key: any of its values; all keys).
pub fn matches(event: &Event, filters: &Filters) -> bool {
    filters.iter().all(|(key, values)| {
        values.is_empty()
            || values.iter().any(|v| match key.as_str() {
                "type" => event.kind == *v,
                // `exec_start: sh -c x` matches `exec_start`.
                "event" => event.action == *v || event.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    event.kind == "container"
                        && (event.actor.id.starts_with(v.as_str())
                            || event.actor.attributes.get("name").is_some_and(|n| n == v.trim_start_matches('/')))
                }
                "image" => {
                    event.from == *v
                        || event.actor.attributes.get("image").is_some_and(|i| i == v)
                        || (event.kind == "image" && event.actor.id == *v)
                }
                "label" => match v.split_once('=') {
                    Some((k, val)) => event.actor.attributes.get(k).is_some_and(|x| x == val),
                    None => event.actor.attributes.contains_key(v.as_str()),
                },
                "scope" => event.scope == *v,
                _ => false,
            })
    })
}

impl EventBus {
    /// Records `event` and hands it to every live subscriber it matches.
    pub fn publish(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.subscribers.retain(|s| {
            if s.until_nano.is_some_and(|u| event.time_nano > u) {
                return false;
            }
            !matches(&event, &s.filters) || s.tx.send(event.clone()).is_ok()
        });
        if inner.past.len() == RING {
            inner.past.pop_front();
        }
        inner.past.push_back(event);
    }

    /// Past events in `[since, until]`, then (unless `until` has passed) live
    /// ones until `until`. Returns the receiver and, when live, the
    /// subscriber's ID for `unsubscribe`.
    pub fn subscribe(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filters: &Filters,
        now_nano: i64,
    ) -> (Receiver<Event>, Option<u64>) {
        let (tx, rx) = channel();
        let since_nano = since.map(|s| (s * 1e9) as i64);
        let until_nano = until.map(|u| (u * 1e9) as i64);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // With `since` or `until` Docker replays the buffered past first
        // (from the beginning when only `until` is given); without, only new events.
        if since_nano.is_some() || until_nano.is_some() {
            let since = since_nano.unwrap_or(0);
            for e in inner.past.iter() {
                if e.time_nano >= since && until_nano.is_none_or(|u| e.time_nano <= u) && matches(e, filters) {
                    let _ = tx.send(e.clone());
                }
            }
        }
        if until_nano.is_some_and(|u| u <= now_nano) {
            return (rx, None);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.push(Subscriber { id, filters: filters.clone(), until_nano, tx });
        (rx, Some(id))
    }

    /// Ends a live subscription (its receiver then sees the end).
    pub fn unsubscribe(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.subscribers.retain(|s| s.id != id);
    }
}

/// A container event with Docker's attributes (`name`, `image`, labels, extra).
pub fn container_event(
    action: &str,
    id: &str,
    image: &str,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
    extra: &[(&str, String)],
    time_nano: i64,
) -> Event {
    let mut attributes: BTreeMap<String, String> = labels.cloned().unwrap_or_default();
    attributes.insert("image".into(), image.to_string());
    attributes.insert("name".into(), name.to_string());
    for (k, v) in extra {
        attributes.insert(k.to_string(), v.clone());
    }
    Event {
        kind: "container".into(),
        action: action.to_string(),
        actor: EventActor { id: id.to_string(), attributes },
        scope: "local".into(),
        time: time_nano / 1_000_000_000,
        time_nano,
        status: action.to_string(),
        id: id.to_string(),
        from: image.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, id: &str, name: &str, t: i64) -> Event {
        let labels: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
        container_event(action, id, "busybox", name, Some(&labels), &[], t * 1_000_000_000)
    }

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut f = Filters::new();
        for (k, v) in pairs {
            f.entry(k.to_string()).or_default().push(v.to_string());
        }
        f
    }

    #[test]
    fn filters_by_type_event_container_image_label() {
        let e = ev("start", "abcdef", "web", 10);
        assert!(matches(&e, &filters(&[])));
        assert!(matches(&e, &filters(&[("type", "container"), ("event", "start")])));
        assert!(matches(&e, &filters(&[("event", "die"), ("event", "start")])));
        assert!(!matches(&e, &filters(&[("event", "die")])));
        assert!(matches(&e, &filters(&[("container", "abc")])));
        assert!(matches(&e, &filters(&[("container", "web")])));
        assert!(!matches(&e, &filters(&[("container", "db")])));
        assert!(matches(&e, &filters(&[("image", "busybox")])));
        assert!(matches(&e, &filters(&[("label", "tier")])));
        assert!(matches(&e, &filters(&[("label", "tier=web")])));
        assert!(!matches(&e, &filters(&[("label", "tier=db")])));
        assert!(matches(&ev("exec_start: sh -c x", "abc", "web", 1), &filters(&[("event", "exec_start")])));
        assert!(check_filters(&filters(&[("bogus", "x")])).is_err());
    }

    #[test]
    fn since_replays_the_past_and_until_ends_the_stream() {
        let bus = EventBus::default();
        bus.publish(ev("create", "a", "x", 5));
        bus.publish(ev("start", "a", "x", 7));
        let (rx, live) = bus.subscribe(Some(6.0), Some(8.0), &Filters::new(), 9_000_000_000);
        assert!(live.is_none(), "until has passed: no live subscription");
        let got: Vec<String> = rx.iter().map(|e| e.action).collect();
        assert_eq!(got, vec!["start"]);
        let (rx, _) = bus.subscribe(None, Some(6.0), &Filters::new(), 9_000_000_000);
        assert_eq!(
            rx.iter().map(|e| e.action).collect::<Vec<_>>(),
            vec!["create"],
            "until alone replays from the start"
        );

        let (rx, live) = bus.subscribe(None, None, &filters(&[("event", "die")]), 9_000_000_000);
        assert!(live.is_some());
        bus.publish(ev("stop", "a", "x", 10));
        bus.publish(ev("die", "a", "x", 11));
        assert_eq!(rx.try_recv().map(|e| e.action).ok(), Some("die".to_string()));
        assert!(rx.try_recv().is_err());
        bus.unsubscribe(live.unwrap_or_default());
        assert!(rx.recv().is_err(), "unsubscribed: the stream ends");
    }
}
