//! Retry timing shared by both adapters and the bridge: the `Retry-After` header (seconds or an
//! HTTP date) and exponential backoff with a little jitter, so that many devices refused at
//! once do not come back at the same instant.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait a response asks for in `Retry-After`, if it carries a readable one. A date in the
/// past means "now" (zero).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The delay before retry number `attempt` (1 for the first retry): `base` doubled for each
/// earlier retry plus up to a quarter of jitter, at least the service's `after`, at most `max`.
pub fn delay(attempt: u32, base: Duration, max: Duration, after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let jitter_range = exp.as_millis() as u64 / 4;
    let jitter = if jitter_range == 0 {
        0
    } else {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        nanos % jitter_range
    };
    let backoff = exp.saturating_add(Duration::from_millis(jitter));
    backoff.max(after.unwrap_or(Duration::ZERO)).min(max)
}

/// Whether an HTTP status is worth retrying: 429 and every 5xx.
pub fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// The first 300 characters of a response body, for logs.
pub fn excerpt(body: &str) -> String {
    let mut chars = body.char_indices();
    match chars.nth(300) {
        None => body.to_string(),
        Some((cut, _)) => format!("{}…", &body[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(90) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        let d1 = delay(1, base, max, None);
        let d3 = delay(3, base, max, None);
        assert!(d1 >= base && d1 < base * 2, "{d1:?}");
        assert!(d3 >= base * 4 && d3 < base * 6, "{d3:?}");
        assert_eq!(delay(40, base, max, None), max);
        assert_eq!(
            delay(1, base, max, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(delay(1, base, max, Some(Duration::from_secs(99))), max);
        assert!(retryable(429) && retryable(503) && !retryable(400) && !retryable(410));
    }
}
