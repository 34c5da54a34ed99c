//! Sizes and durations printed the way the docker CLI prints them (Docker's
//! go-units): `4.26MB`, `15.5GiB`, `2 hours ago`, and sizes read the way it
//! reads them (`32m`, `1.5g`).

use anyhow::{anyhow, bail, Result};

/// Go's `%.{prec}g`: shortest of fixed or exponent form, trailing zeros removed.
pub fn format_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let prec = prec.max(1);
    // Exponent after rounding to `prec` significant digits.
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn scaled(size: f64, base: f64, units: &[&str; 9], prec: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", format_g(size, prec), units[i])
}

/// Decimal size with 3 significant digits, as `docker images` prints (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &DECIMAL, 3)
}

/// Decimal size with 4 significant digits (go-units `HumanSize`), as `system df` prints.
pub fn human_size4(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &DECIMAL, 4)
}

/// Binary size with 4 significant digits (go-units `BytesSize`), as `info` prints memory.
pub fn bytes_size(bytes: u64) -> String {
    scaled(bytes as f64, 1024.0, &BINARY, 4)
}

/// go-units `HumanDuration`: "Less than a second", "About a minute", "3 days".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < 1 {
        return "Less than a second".to_string();
    }
    if s == 1 {
        return "1 second".to_string();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = ((s as f64) / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// `N units ago` for a unix time, or `N/A` when unknown (0).
pub fn time_ago(unix: i64, now: i64) -> String {
    if unix <= 0 {
        return "N/A".to_string();
    }
    format!("{} ago", human_duration(now - unix))
}

/// Docker's RFC 3339-ish local time for `CreatedAt` (`2024-01-02 15:04:05 +0000 UTC`).
pub fn go_time(unix: i64) -> String {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) => {
            let local = t.with_timezone(&chrono::Local);
            let zone = local.format("%Z").to_string();
            let zone = if zone == "+00:00" { "UTC".to_string() } else { zone };
            format!("{} {}", local.format("%Y-%m-%d %H:%M:%S %z"), zone)
        }
        None => String::new(),
    }
}

/// Docker's `RAMInBytes`: `32m`, `1.5g`, `512k`, `1024` (binary units, optional `b`).
pub fn parse_memory(s: &str) -> Result<i64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let without_b = lower.strip_suffix('b').unwrap_or(&lower);
    let without_i = without_b.strip_suffix('i').unwrap_or(without_b);
    let (num, mult) = match without_i.chars().last() {
        Some('k') => (&without_i[..without_i.len() - 1], 1i64 << 10),
        Some('m') => (&without_i[..without_i.len() - 1], 1 << 20),
        Some('g') => (&without_i[..without_i.len() - 1], 1 << 30),
        Some('t') => (&without_i[..without_i.len() - 1], 1 << 40),
        Some('p') => (&without_i[..without_i.len() - 1], 1 << 50),
        _ if without_i.len() != without_b.len() => bail!("invalid size: '{s}'"),
        _ => (without_i, 1),
    };
    let num = num.trim_end();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        bail!("invalid size: '{s}'");
    }
    let value: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    Ok((value * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_docker_images() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_257_792), "4.26MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(2_100_000_000), "2.1GB");
        // Go prints this edge as an exponent too.
        assert_eq!(human_size(999_999), "1e+03kB");
    }

    #[test]
    fn binary_sizes_match_docker_info() {
        assert_eq!(bytes_size(16_632_418_304), "15.49GiB");
        assert_eq!(bytes_size(1024), "1KiB");
        assert_eq!(human_size4(4_257_792), "4.258MB");
    }

    #[test]
    fn g_format_matches_go() {
        assert_eq!(format_g(4.257792, 3), "4.26");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(0.0001234, 3), "0.000123");
        assert_eq!(format_g(0.00001234, 3), "1.23e-05");
        assert_eq!(format_g(1234.0, 3), "1.23e+03");
    }

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(time_ago(0, 100), "N/A");
        assert_eq!(time_ago(10_000, 10_000 + 7200), "2 hours ago");
    }
}
