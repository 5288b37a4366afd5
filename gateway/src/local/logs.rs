//! Function log lines kept per replica (the last 1000) and streamed live to followers, for
//! `/system/logs` (spec §12, §15.3).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

pub const KEEP_PER_REPLICA: usize = 1000;

#[derive(Debug, Clone)]
pub struct LogLine {
    pub instance: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub timestamp: String,
    /// Unix time in nanoseconds, for `since`.
    pub unix_nanos: i128,
    pub text: String,
}

/// The lines of one function, all its replicas.
pub struct LogStore {
    kept: Mutex<Vec<(String, VecDeque<LogLine>)>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for LogStore {
    fn default() -> Self {
        LogStore { kept: Mutex::new(Vec::new()), live: broadcast::channel(1024).0 }
    }
}

impl LogStore {
    pub fn push(&self, instance: &str, text: String) {
        let now = time::now();
        let line = LogLine { instance: instance.to_string(), timestamp: time::rfc3339_nanos(now), unix_nanos: now, text };
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let i = match kept.iter().position(|(k, _)| k == instance) {
                Some(i) => i,
                None => {
                    kept.push((instance.to_string(), VecDeque::new()));
                    kept.len() - 1
                }
            };
            let q = &mut kept[i].1;
            if q.len() == KEEP_PER_REPLICA {
                q.pop_front();
            }
            q.push_back(line.clone());
        }
        let _ = self.live.send(line);
    }

    /// Kept lines in time order, filtered, at most the last `tail` (0 = all), and a receiver for
    /// the lines that follow (taken under the same lock, so none is missed or repeated).
    pub fn snapshot(&self, instance: Option<&str>, since_nanos: Option<i128>, tail: usize) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.live.subscribe();
        let mut lines: Vec<LogLine> = kept
            .iter()
            .filter(|(k, _)| instance.is_none_or(|i| i == k))
            .flat_map(|(_, q)| q.iter())
            .filter(|l| since_nanos.is_none_or(|s| l.unix_nanos >= s))
            .cloned()
            .collect();
        lines.sort_by_key(|l| l.unix_nanos);
        if tail > 0 && lines.len() > tail {
            lines.drain(..lines.len() - tail);
        }
        (lines, rx)
    }
}

/// Time as Unix nanoseconds and RFC 3339 with nanoseconds (no date crate: one small conversion).
pub mod time {
    pub fn now() -> i128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
    }

    use watchdog::format::civil;

    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn rfc3339_nanos(unix_nanos: i128) -> String {
        format_time(unix_nanos, true)
    }

    pub fn rfc3339(unix_nanos: i128) -> String {
        format_time(unix_nanos, false)
    }

    fn format_time(unix_nanos: i128, nanos: bool) -> String {
        let secs = unix_nanos.div_euclid(1_000_000_000) as i64;
        let frac = unix_nanos.rem_euclid(1_000_000_000);
        let (y, mo, d) = civil(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        let base = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
        if nanos {
            format!("{base}.{frac:09}Z")
        } else {
            format!("{base}Z")
        }
    }

    /// Parses RFC 3339 (`2024-01-02T03:04:05[.frac](Z|±hh:mm)`) to Unix nanoseconds.
    pub fn parse_rfc3339(s: &str) -> Option<i128> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let mut rest = &s[19..];
        let mut frac: i128 = 0;
        if let Some(r) = rest.strip_prefix('.') {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let mut f = r[..digits.min(9)].to_string();
            while f.len() < 9 {
                f.push('0');
            }
            frac = f.parse().ok()?;
            rest = &r[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let oh: i64 = o[1..3].parse().ok()?;
                let om: i64 = o[4..6].parse().ok()?;
                let v = oh * 3600 + om * 60;
                if o.starts_with('-') {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
        Some(i128::from(secs) * 1_000_000_000 + frac)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip() {
            let t = 1_700_000_000_123_456_789i128;
            let s = rfc3339_nanos(t);
            assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
            assert_eq!(parse_rfc3339(&s), Some(t));
            assert_eq!(parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000_000_000));
            assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
            assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z").map(rfc3339), Some("2000-02-29T00:00:00Z".into()));
            assert!(parse_rfc3339("yesterday").is_none());
        }
    }
}
