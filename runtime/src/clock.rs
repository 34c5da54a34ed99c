//! Timestamps as Docker writes them: RFC 3339 in UTC with nanoseconds
//! (`2024-05-01T10:00:00.123456789Z`), in state, events and log lines alike.

use chrono::{DateTime, Utc};

/// `t` in Docker's form.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Now, in Docker's form.
pub fn now_rfc3339() -> String {
    rfc3339(&Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_always_show_nine_digits() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.5Z").expect("parse").with_timezone(&Utc);
        assert_eq!(rfc3339(&t), "2024-05-01T10:00:00.500000000Z");
        assert_eq!(rfc3339(&t), t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    }
}
