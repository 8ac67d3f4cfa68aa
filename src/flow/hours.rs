//! Hours of operation (CheckHoursOfOperation): weekly opening times in a time zone, and
//! holidays on which the clinic is closed all day. Pure: the caller passes the instant.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// `[hours.NAME]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// IANA zone, e.g. `Asia/Tokyo`.
    pub time_zone: String,
    /// `mon` .. `sun` -> `"09:00-12:00,13:00-17:00"`; a missing day is closed. A range whose end
    /// is before its start runs past midnight.
    #[serde(default)]
    pub weekly: BTreeMap<String, String>,
    /// Closed all day: `"2026-01-01"` or a range `"2026-12-29..2027-01-03"`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("hours `{name}`: {reason}")]
pub struct HoursError {
    pub name: String,
    pub reason: String,
}

/// Compiled hours.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    /// Minutes since midnight, [start, end), per weekday (Monday first).
    days: [Vec<(u16, u16)>; 7],
    holidays: Vec<(Date, Date)>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `HH:MM` as minutes since midnight (`24:00` allowed, as a range's end).
pub(crate) fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

/// `HH:MM-HH:MM` within one day (start before end), as minutes since midnight.
pub(crate) fn daily_window(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (minutes(a)?, minutes(b)?);
    (a < b).then_some((a, b))
}

impl Hours {
    pub fn compile(name: &str, c: &HoursConfig) -> Result<Hours, HoursError> {
        let err = |reason: String| HoursError {
            name: name.to_string(),
            reason,
        };
        let tz = TimeZone::get(&c.time_zone)
            .map_err(|e| err(format!("time_zone `{}`: {e}", c.time_zone)))?;
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        for (day, ranges) in &c.weekly {
            let i = DAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day))
                .ok_or_else(|| err(format!("`{day}` is not one of {}", DAYS.join(", "))))?;
            for r in ranges.split(',').filter(|r| !r.trim().is_empty()) {
                let (a, b) = r
                    .split_once('-')
                    .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
                    .ok_or_else(|| err(format!("`{r}` is not HH:MM-HH:MM")))?;
                if b > a {
                    days[i].push((a, b));
                } else {
                    // Past midnight: the rest of this day, then the next morning.
                    days[i].push((a, 24 * 60));
                    days[(i + 1) % 7].push((0, b));
                }
            }
        }
        let mut holidays = Vec::new();
        for h in &c.holidays {
            let (a, b) = h.split_once("..").unwrap_or((h, h));
            let parse = |s: &str| {
                s.trim()
                    .parse::<Date>()
                    .map_err(|e| err(format!("holiday `{h}`: {e}")))
            };
            holidays.push((parse(a)?, parse(b)?));
        }
        Ok(Hours { tz, days, holidays })
    }

    /// Open at `now`?
    pub fn is_open(&self, now: jiff::Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let date = local.date();
        if self.holidays.iter().any(|(a, b)| *a <= date && date <= *b) {
            return false;
        }
        let day = match local.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        let m = local.hour() as u16 * 60 + local.minute() as u16;
        self.days[day].iter().any(|(a, b)| *a <= m && m < *b)
    }
}

/// Compiles every `[hours.NAME]`.
pub(crate) fn compile_all(
    configs: &BTreeMap<String, HoursConfig>,
) -> Result<HashMap<String, Hours>, HoursError> {
    configs
        .iter()
        .map(|(n, c)| Ok((n.clone(), Hours::compile(n, c)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clinic() -> Hours {
        let mut weekly = BTreeMap::new();
        weekly.insert("mon".into(), "09:00-12:00,13:00-17:00".into());
        weekly.insert("fri".into(), "22:00-06:00".into());
        Hours::compile(
            "clinic",
            &HoursConfig {
                time_zone: "Asia/Tokyo".into(),
                weekly,
                holidays: vec!["2026-05-04".into(), "2026-12-29..2027-01-03".into()],
            },
        )
        .unwrap()
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn open_in_local_time_closed_on_lunch_nights_and_holidays() {
        let h = clinic();
        // Monday 2026-04-27 10:00 in Tokyo is 01:00 UTC.
        assert!(h.is_open(at("2026-04-27T01:00:00Z")));
        assert!(!h.is_open(at("2026-04-27T03:30:00Z")), "12:30 lunch");
        assert!(!h.is_open(at("2026-04-26T01:00:00Z")), "Sunday");
        // Friday 23:00 and Saturday 05:00 Tokyo are open (past midnight).
        assert!(h.is_open(at("2026-05-01T14:00:00Z")));
        assert!(h.is_open(at("2026-05-01T20:00:00Z")));
        assert!(!h.is_open(at("2026-05-01T22:00:00Z")), "Saturday 07:00");
        // Monday 2026-05-04 is a holiday; so is New Year's Day (a range).
        assert!(!h.is_open(at("2026-05-04T01:00:00Z")));
        assert!(!h.is_open(at("2027-01-01T01:00:00Z")));
    }

    #[test]
    fn bad_zone_day_or_range_is_named() {
        let bad = HoursConfig {
            time_zone: "Mars/Olympus".into(),
            weekly: BTreeMap::new(),
            holidays: vec![],
        };
        assert!(
            Hours::compile("x", &bad)
                .unwrap_err()
                .reason
                .contains("Mars/Olympus")
        );
        let mut weekly = BTreeMap::new();
        weekly.insert("monday".into(), "9-5".into());
        let bad = HoursConfig {
            time_zone: "UTC".into(),
            weekly,
            holidays: vec![],
        };
        assert!(
            Hours::compile("x", &bad)
                .unwrap_err()
                .reason
                .contains("monday")
        );
    }
}
