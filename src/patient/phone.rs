//! Phone numbers to E.164 (ITU-T E.164: `+`, country code, national number; at most 15
//! digits), the one form blind indexes are computed over, so `555-262-7029`,
//! `(555) 262-7029` and `+1 555 262 7029` find the same patient.

/// Normalizes a dialled or stored number. `default_cc` is the country code assumed for
/// national numbers (e.g. `1` for the NANP). `None` when there are too few or too many digits.
pub(crate) fn to_e164(raw: &str, default_cc: &str) -> Option<String> {
    let raw = raw.trim();
    // SIP URIs: sip:+15552627029@host;user=phone, tel:+1-555-262-7029
    let raw = raw
        .strip_prefix("sip:")
        .or_else(|| raw.strip_prefix("sips:"))
        .or_else(|| raw.strip_prefix("tel:"))
        .unwrap_or(raw);
    let raw = raw.split(['@', ';']).next().unwrap_or(raw);
    let international = raw.starts_with('+');
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    let e164 = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if default_cc == "1" {
        // NANP: 10-digit national numbers, or 11 digits with the leading 1.
        match digits.len() {
            10 => format!("1{digits}"),
            11 if digits.starts_with('1') => digits,
            _ => return None,
        }
    } else {
        // Elsewhere a national number carries a trunk prefix 0 that E.164 drops.
        format!(
            "{default_cc}{}",
            digits.strip_prefix('0').unwrap_or(&digits)
        )
    };
    (8..=15).contains(&e164.len()).then(|| format!("+{e164}"))
}

#[cfg(test)]
mod tests {
    use super::to_e164;

    #[test]
    fn the_same_number_written_many_ways_is_one_number() {
        for raw in [
            "555-262-7029",
            "(555) 262-7029",
            "+1 555 262 7029",
            "15552627029",
            "sip:+15552627029@10.0.0.1;user=phone",
            "tel:+1-555-262-7029",
            "0015552627029",
        ] {
            assert_eq!(to_e164(raw, "1").as_deref(), Some("+15552627029"), "{raw}");
        }
        assert_eq!(
            to_e164("03-1234-5678", "81").as_deref(),
            Some("+81312345678")
        );
        assert_eq!(to_e164("12345", "1"), None);
        assert_eq!(to_e164("", "1"), None);
    }
}
