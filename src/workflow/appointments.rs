//! The booking tasks: ScheduleAppointment (`careline:schedule-appointment`, the brief's
//! follow-up `days_ahead`) and TelemedicineConsultation (`careline:telemedicine-consultation`,
//! a video visit with the provider named). Each writes a FHIR Appointment into the patient's
//! record at the first free slot inside the clinic's hours (`[workflows.appointments]`), on or
//! after the day asked for, clear of the patient's other appointments. The appointment is
//! `proposed`: Careline keeps no clinician's calendar, so the clinic's scheduler confirms it
//! (it shows on the patient's summary and screen-pop meanwhile). Its id comes from the
//! invocation's idempotency key, so an invocation delivered again finds the same
//! appointment instead of booking another.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};
use sha2::Digest;

use crate::config::AppointmentsConfig;

pub const SCHEDULE_APPOINTMENT: &str = "careline:schedule-appointment";
pub const TELEMEDICINE_CONSULTATION: &str = "careline:telemedicine-consultation";

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The clinic's bookable hours.
#[derive(Debug, Clone)]
pub struct Clinic {
    tz: TimeZone,
    /// Minutes since midnight, [open, close).
    open: u16,
    close: u16,
    /// Weekdays open, Monday first.
    days: [bool; 7],
    slot_minutes: i64,
}

fn weekday_index(w: jiff::civil::Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

impl Clinic {
    pub fn from_config(c: &AppointmentsConfig) -> Result<Clinic, String> {
        let (open, close) = crate::flow::hours::daily_window(&c.hours)
            .ok_or_else(|| format!("hours `{}` is not HH:MM-HH:MM within one day", c.hours))?;
        let tz =
            TimeZone::get(&c.time_zone).map_err(|e| format!("time_zone `{}`: {e}", c.time_zone))?;
        let mut days = [false; 7];
        for d in &c.days {
            let i = DAYS
                .iter()
                .position(|x| x.eq_ignore_ascii_case(d))
                .ok_or_else(|| format!("days: `{d}` is not one of {}", DAYS.join(", ")))?;
            days[i] = true;
        }
        if !days.contains(&true) {
            return Err("days must name at least one weekday".into());
        }
        if !(5..=240).contains(&c.slot_minutes) {
            return Err("slot_minutes must be 5 to 240".into());
        }
        Ok(Clinic {
            tz,
            open,
            close,
            days,
            slot_minutes: i64::from(c.slot_minutes),
        })
    }

    /// The first slot of `length` minutes starting at or after `after`, on a slot boundary
    /// inside opening hours, overlapping none of `busy` (start, end). A year ahead at most.
    pub fn first_slot(
        &self,
        after: Timestamp,
        length: i64,
        busy: &[(Timestamp, Timestamp)],
    ) -> Option<(Timestamp, Timestamp)> {
        let length = length.max(1);
        let start_date = after.to_zoned(self.tz.clone()).date();
        for offset in 0..366 {
            let date = start_date
                .checked_add(jiff::Span::new().days(offset))
                .ok()?;
            if !self.days[weekday_index(date.weekday())] {
                continue;
            }
            let mut m = i64::from(self.open);
            while m + length <= i64::from(self.close) {
                let time = jiff::civil::Time::new((m / 60) as i8, (m % 60) as i8, 0, 0).ok()?;
                let start = date
                    .to_datetime(time)
                    .to_zoned(self.tz.clone())
                    .ok()?
                    .timestamp();
                let end = start
                    .checked_add(jiff::SignedDuration::from_mins(length))
                    .ok()?;
                let clear = busy.iter().all(|(b, e)| end <= *b || start >= *e);
                if start >= after && clear {
                    return Some((start, end));
                }
                m += self.slot_minutes;
            }
        }
        None
    }
}

/// The times a patient's other appointments take (cancelled and no-show ones free).
pub fn busy(appointments: &[Value]) -> Vec<(Timestamp, Timestamp)> {
    appointments
        .iter()
        .filter(|a| {
            !matches!(
                a.get("status").and_then(Value::as_str),
                Some("cancelled" | "noshow" | "entered-in-error")
            )
        })
        .filter_map(|a| {
            let t = |k: &str| a.get(k)?.as_str()?.parse::<Timestamp>().ok();
            Some((t("start")?, t("end")?))
        })
        .collect()
}

/// The appointment's id for invocation `key`: the same on every delivery.
pub fn appointment_id(key: &str) -> String {
    format!(
        "wf-{}",
        hex::encode(&sha2::Sha256::digest(key.as_bytes())[..12])
    )
}

/// What a booking task asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub patient_id: String,
    /// `follow_up`, `telehealth`, ...
    pub kind: String,
    /// The provider (Practitioner id), when one is named.
    pub provider: Option<String>,
    pub minutes: i64,
    /// Not before this.
    pub after: Timestamp,
    pub telehealth: bool,
}

/// The FHIR Appointment for `booking` at `slot`.
pub fn appointment(
    id: &str,
    booking: &Booking,
    slot: (Timestamp, Timestamp),
    created: Timestamp,
) -> Value {
    let mut participants = vec![
        json!({"actor": {"reference": format!("Patient/{}", booking.patient_id)},
        "required": "required", "status": "needs-action"}),
    ];
    if let Some(p) = &booking.provider {
        participants.push(json!({"actor": {"reference": format!("Practitioner/{p}")},
            "required": "required", "status": "needs-action"}));
    }
    let (code, display) = match booking.kind.as_str() {
        "follow_up" | "followup" | "FOLLOWUP" => {
            ("FOLLOWUP", "A follow up visit from a previous appointment")
        }
        "routine" | "ROUTINE" => ("ROUTINE", "Routine appointment"),
        "checkup" | "CHECKUP" => ("CHECKUP", "A routine check-up, such as an annual physical"),
        _ => ("FOLLOWUP", "A follow up visit from a previous appointment"),
    };
    let mut a = json!({
        "resourceType": "Appointment",
        "id": id,
        "status": "proposed",
        "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276",
            "code": code, "display": display}], "text": booking.kind},
        "description": if booking.telehealth { "Telehealth consultation (care-coordination workflow)" }
            else { "Follow-up appointment (care-coordination workflow)" },
        "start": slot.0.to_string(),
        "end": slot.1.to_string(),
        "minutesDuration": booking.minutes,
        "created": created.to_string().get(..10).unwrap_or_default(),
        "participant": participants,
    });
    if booking.telehealth {
        a["serviceType"] = json!([{"coding": [{"system": "http://snomed.info/sct", "code": "1287742003",
            "display": "Telehealth consultation"}], "text": "Telehealth consultation"}]);
    }
    a
}

/// The task's answer: its input with `appointment` added.
pub fn answer(input: &Value, appointment: &Value) -> Value {
    let summary = json!({
        "id": appointment["id"],
        "status": appointment["status"],
        "start": appointment["start"],
        "end": appointment["end"],
        "type": appointment["appointmentType"]["text"],
    });
    super::input_with(input, [("appointment", summary)])
}

/// Reads a booking task's input. ScheduleAppointment: `appointment_type`, `days_ahead`
/// (the day counted from `now`); TelemedicineConsultation: `provider_id`, `duration_minutes`,
/// as soon as a slot is free (`lead_minutes` from `now` at the earliest).
pub fn booking(
    input: &Value,
    telehealth: bool,
    now: Timestamp,
    settings: &AppointmentsConfig,
    tz: &TimeZone,
) -> Result<Booking, String> {
    let patient_id = input
        .get("patient_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or("the task input names no patient_id")?
        .to_string();
    let number = |k: &str| input.get(k).and_then(Value::as_i64);
    let minutes = number("duration_minutes")
        .unwrap_or(i64::from(settings.slot_minutes))
        .clamp(5, 240);
    let after = if telehealth {
        now.checked_add(jiff::SignedDuration::from_mins(i64::from(
            settings.lead_minutes,
        )))
        .map_err(|e| e.to_string())?
    } else {
        let days = number("days_ahead").unwrap_or(7).clamp(0, 365);
        let date = now
            .to_zoned(tz.clone())
            .date()
            .checked_add(jiff::Span::new().days(days))
            .map_err(|e| e.to_string())?;
        let day_start = date
            .to_zoned(tz.clone())
            .map_err(|e| e.to_string())?
            .timestamp();
        day_start.max(now)
    };
    Ok(Booking {
        patient_id,
        kind: if telehealth {
            "telehealth".into()
        } else {
            input
                .get("appointment_type")
                .and_then(Value::as_str)
                .unwrap_or("follow_up")
                .to_string()
        },
        provider: input
            .get("provider_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        minutes,
        after,
        telehealth,
    })
}

impl Clinic {
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn clinic() -> (Clinic, AppointmentsConfig) {
        let c = AppointmentsConfig {
            time_zone: "Asia/Tokyo".into(),
            ..AppointmentsConfig::default()
        };
        (Clinic::from_config(&c).unwrap(), c)
    }

    #[test]
    fn a_follow_up_goes_to_the_first_free_slot_of_an_open_day() {
        let (clinic, settings) = clinic();
        // Friday 2026-12-04, 10:00 in Tokyo; seven days ahead is Friday the 11th.
        let now = at("2026-12-04T01:00:00Z");
        let input = json!({"patient_id": "p-1", "appointment_type": "follow_up", "days_ahead": 7});
        let b = booking(&input, false, now, &settings, clinic.tz()).unwrap();
        let slot = clinic.first_slot(b.after, b.minutes, &[]).unwrap();
        assert_eq!(
            slot.0,
            at("2026-12-11T00:00:00Z"),
            "09:00 Tokyo on the 11th"
        );
        assert_eq!(slot.1, at("2026-12-11T00:30:00Z"));
        // The patient already has 09:00-10:00 that day: 10:00.
        let busy = [(at("2026-12-11T00:00:00Z"), at("2026-12-11T01:00:00Z"))];
        assert_eq!(
            clinic.first_slot(b.after, 30, &busy).unwrap().0,
            at("2026-12-11T01:00:00Z")
        );
        // Six days ahead is Thursday; five is Wednesday; eight is Saturday: Monday the 14th.
        let b = booking(
            &json!({"patient_id": "p-1", "days_ahead": 8}),
            false,
            now,
            &settings,
            clinic.tz(),
        )
        .unwrap();
        assert_eq!(
            clinic.first_slot(b.after, 30, &[]).unwrap().0,
            at("2026-12-14T00:00:00Z")
        );
    }

    #[test]
    fn a_consultation_is_the_next_slot_after_the_lead_time_within_hours() {
        let (clinic, settings) = clinic();
        // 16:20 Tokyo on a Monday; an hour's lead: 17:20 is past the 17:00 close: Tuesday 09:00.
        let now = at("2026-12-07T07:20:00Z");
        let input = json!({"patient_id": "p-1", "provider_id": "DR-12345", "duration_minutes": 15});
        let b = booking(&input, true, now, &settings, clinic.tz()).unwrap();
        assert_eq!(b.minutes, 15);
        assert_eq!(b.provider.as_deref(), Some("DR-12345"));
        let slot = clinic.first_slot(b.after, b.minutes, &[]).unwrap();
        assert_eq!(slot.0, at("2026-12-08T00:00:00Z"));
        // 10:05 Tokyo: the first boundary after 11:05 is 11:30.
        let b = booking(
            &input,
            true,
            at("2026-12-08T01:05:00Z"),
            &settings,
            clinic.tz(),
        )
        .unwrap();
        assert_eq!(
            clinic.first_slot(b.after, 15, &[]).unwrap().0,
            at("2026-12-08T02:30:00Z")
        );
    }

    #[test]
    fn the_appointment_is_proposed_with_its_participants_and_the_same_id_each_delivery() {
        let b = Booking {
            patient_id: "p-1".into(),
            kind: "telehealth".into(),
            provider: Some("DR-1".into()),
            minutes: 15,
            after: at("2026-12-08T00:00:00Z"),
            telehealth: true,
        };
        let id = appointment_id("exec-1/Day3Assessment/1");
        assert_eq!(id, appointment_id("exec-1/Day3Assessment/1"));
        assert_ne!(id, appointment_id("exec-1/Day3Assessment/2"));
        let slot = (at("2026-12-08T00:00:00Z"), at("2026-12-08T00:15:00Z"));
        let a = appointment(&id, &b, slot, at("2026-12-07T00:00:00Z"));
        assert_eq!(a["status"], "proposed");
        assert_eq!(a["participant"][0]["actor"]["reference"], "Patient/p-1");
        assert_eq!(
            a["participant"][1]["actor"]["reference"],
            "Practitioner/DR-1"
        );
        assert_eq!(a["serviceType"][0]["text"], "Telehealth consultation");
        assert_eq!(
            crate::patient::bundle::compartment(&a).as_deref(),
            Some("p-1")
        );
        let out = answer(&json!({"patient_id": "p-1"}), &a);
        assert_eq!(out["appointment"]["id"], id.as_str());
        assert_eq!(out["appointment"]["start"], "2026-12-08T00:00:00Z");
        assert_eq!(busy(std::slice::from_ref(&a)).len(), 1);
        let mut cancelled = a;
        cancelled["status"] = json!("cancelled");
        assert!(busy(&[cancelled]).is_empty());
    }

    #[test]
    fn bad_clinic_hours_are_named() {
        for (hours, days, tz) in [
            ("17:00-09:00", vec!["mon"], "UTC"),
            ("09:00-17:00", vec!["monday"], "UTC"),
            ("09:00-17:00", vec![], "UTC"),
            ("09:00-17:00", vec!["mon"], "Mars/Olympus"),
        ] {
            let c = AppointmentsConfig {
                hours: hours.into(),
                days: days.into_iter().map(String::from).collect(),
                time_zone: tz.into(),
                ..AppointmentsConfig::default()
            };
            assert!(Clinic::from_config(&c).is_err(), "{hours} {tz}");
        }
    }
}
