//! The SSML subset Careline speaks: `speak`, `break`, `say-as` (digits, telephone,
//! characters, date), `prosody rate`, `lang`, `sub`; other tags (`p`, `s`, `emphasis`,
//! `amazon:*`, ...) keep their text and lose their effect.
//!
//! SSML becomes a list of [`Piece`]s: text runs with their language and rate, and pauses.
//! Engines only ever see plain text.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Text {
        text: String,
        /// `<lang xml:lang>` in force, if any.
        lang: Option<String>,
        /// Speaking rate relative to normal (1.0).
        rate: f32,
    },
    Pause(Duration),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SsmlError {
    #[error("tag `<{0}>` is never closed")]
    Unclosed(String),
    #[error("`</{0}>` closes a tag that is not open")]
    StrayClose(String),
    #[error("a `<` starts a tag that never ends")]
    UnterminatedTag,
}

#[derive(Debug, Clone)]
struct Frame {
    tag: String,
    lang: Option<String>,
    rate: f32,
    say_as: Option<(String, Option<String>)>,
    sub: Option<String>,
}

fn attr(tag_body: &str, name: &str) -> Option<String> {
    // name="v" or name='v'
    let mut rest = tag_body;
    while let Some(pos) = rest.find(name) {
        let after = &rest[pos + name.len()..];
        let before_ok = pos == 0 || rest.as_bytes()[pos - 1].is_ascii_whitespace();
        let after = after.trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let v = &v[1..];
                let end = v.find(q)?;
                return Some(v[..end].to_string());
            }
        }
        rest = &rest[pos + name.len()..];
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `500ms`, `2s`, `1.5s`; strengths as Polly times them.
fn break_time(body: &str) -> Duration {
    if let Some(t) = attr(body, "time") {
        let t = t.trim();
        if let Some(ms) = t.strip_suffix("ms") {
            return Duration::from_millis(ms.trim().parse::<f64>().unwrap_or(0.0).max(0.0) as u64)
                .min(Duration::from_secs(10));
        }
        if let Some(s) = t.strip_suffix('s') {
            return Duration::from_secs_f64(
                s.trim().parse::<f64>().unwrap_or(0.0).clamp(0.0, 10.0),
            );
        }
    }
    let ms = match attr(body, "strength").as_deref() {
        Some("none") => 0,
        Some("x-weak") => 100,
        Some("weak") => 250,
        Some("medium") | None => 500,
        Some("strong") => 750,
        Some("x-strong") => 1000,
        Some(_) => 500,
    };
    Duration::from_millis(ms)
}

fn rate_of(body: &str, current: f32) -> f32 {
    let Some(r) = attr(body, "rate") else {
        return current;
    };
    match r.trim() {
        "x-slow" => 0.6,
        "slow" => 0.8,
        "medium" => 1.0,
        "fast" => 1.25,
        "x-fast" => 1.5,
        p => p
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f32>().ok())
            .map(|n| (n / 100.0).clamp(0.2, 4.0))
            .unwrap_or(current),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `say-as date`: numeric dates in the given field order, read as words.
fn say_date(text: &str, format: Option<&str>, japanese: bool) -> String {
    let parts: Vec<&str> = text
        .split(['/', '-', '.', ' '])
        .filter(|p| !p.is_empty())
        .collect();
    let format = format.unwrap_or(if parts.first().is_some_and(|p| p.len() == 4) {
        "ymd"
    } else {
        "mdy"
    });
    if parts.len() != format.len() || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        return text.to_string();
    }
    let mut y = None;
    let mut m = None;
    let mut d = None;
    for (c, p) in format.chars().zip(&parts) {
        let n: u32 = p.parse().unwrap_or(0);
        match c {
            'y' => y = Some(n),
            'm' => m = Some(n),
            'd' => d = Some(n),
            _ => return text.to_string(),
        }
    }
    if japanese {
        let mut s = String::new();
        if let Some(y) = y {
            s.push_str(&format!("{y}年"));
        }
        if let Some(m) = m {
            s.push_str(&format!("{m}月"));
        }
        if let Some(d) = d {
            s.push_str(&format!("{d}日"));
        }
        return s;
    }
    let month = m.and_then(|m| MONTHS.get((m as usize).wrapping_sub(1)).copied());
    match (month, d, y) {
        (Some(mo), Some(d), Some(y)) => format!("{mo} {d}, {y}"),
        (Some(mo), Some(d), None) => format!("{mo} {d}"),
        (Some(mo), None, Some(y)) => format!("{mo} {y}"),
        _ => text.to_string(),
    }
}

/// Digits and letters one by one ("1234" -> "1 2 3 4").
fn spell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Parses SSML (or plain text given as SSML) into pieces.
pub(crate) fn parse(input: &str) -> Result<Vec<Piece>, SsmlError> {
    let mut pieces = Vec::new();
    let mut stack: Vec<Frame> = vec![Frame {
        tag: String::new(),
        lang: None,
        rate: 1.0,
        say_as: None,
        sub: None,
    }];
    let mut rest = input;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        if lt > 0 {
            push_text(&mut pieces, &stack, &unescape(&rest[..lt]));
            rest = &rest[lt..];
            continue;
        }
        let gt = rest.find('>').ok_or(SsmlError::UnterminatedTag)?;
        let body = &rest[1..gt];
        rest = &rest[gt + 1..];
        if body.starts_with('?') || body.starts_with('!') {
            continue; // <?xml ...?>, comments
        }
        if let Some(name) = body.strip_prefix('/') {
            let name = name.trim().to_string();
            let top = stack.pop().filter(|f| f.tag == name);
            match top {
                Some(f) => {
                    if let Some(alias) = f.sub {
                        push_text(&mut pieces, &stack, &alias);
                    }
                }
                None => return Err(SsmlError::StrayClose(name)),
            }
            continue;
        }
        let self_closing = body.ends_with('/');
        let body = body.trim_end_matches('/');
        let name = body.split_whitespace().next().unwrap_or("").to_string();
        if name == "break" {
            pieces.push(Piece::Pause(break_time(body)));
            continue;
        }
        if self_closing {
            continue;
        }
        let parent = stack.last().cloned().unwrap_or(Frame {
            tag: String::new(),
            lang: None,
            rate: 1.0,
            say_as: None,
            sub: None,
        });
        let mut frame = Frame {
            tag: name.clone(),
            sub: None,
            ..parent
        };
        match name.as_str() {
            "lang" => frame.lang = attr(body, "xml:lang").or(frame.lang),
            "prosody" => frame.rate = rate_of(body, frame.rate),
            "say-as" => {
                frame.say_as = attr(body, "interpret-as").map(|i| (i, attr(body, "format")))
            }
            "sub" => frame.sub = attr(body, "alias"),
            _ => {}
        }
        stack.push(frame);
    }
    if stack.len() > 1 {
        return Err(SsmlError::Unclosed(
            stack.last().map(|f| f.tag.clone()).unwrap_or_default(),
        ));
    }
    Ok(pieces)
}

fn push_text(pieces: &mut Vec<Piece>, stack: &[Frame], text: &str) {
    let Some(frame) = stack.last() else { return };
    if frame.sub.is_some() {
        return; // the alias is spoken instead, at the closing tag
    }
    let japanese = frame.lang.as_deref().is_some_and(|l| l.starts_with("ja"));
    let text = match &frame.say_as {
        Some((kind, format)) => match kind.as_str() {
            "digits" | "telephone" | "characters" | "spell-out" => spell(text),
            "date" => say_date(text.trim(), format.as_deref(), japanese),
            _ => text.to_string(),
        },
        None => text.to_string(),
    };
    if text.trim().is_empty() {
        return;
    }
    // Merge with the previous run when nothing changes (fewer engine calls).
    if let Some(Piece::Text {
        text: prev,
        lang,
        rate,
    }) = pieces.last_mut()
        && *lang == frame.lang
        && *rate == frame.rate
    {
        prev.push_str(&text);
        return;
    }
    pieces.push(Piece::Text {
        text,
        lang: frame.lang.clone(),
        rate: frame.rate,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Piece {
        Piece::Text {
            text: t.into(),
            lang: None,
            rate: 1.0,
        }
    }

    #[test]
    fn speak_break_and_plain_text() {
        assert_eq!(
            parse("<speak>You are on hold <break time=\"10s\"/></speak>").unwrap(),
            vec![
                text("You are on hold "),
                Piece::Pause(Duration::from_secs(10))
            ]
        );
        assert_eq!(
            parse("Welcome to ACME corporation").unwrap(),
            vec![text("Welcome to ACME corporation")]
        );
        assert_eq!(
            parse("<speak>a<break/>b &amp; c</speak>").unwrap(),
            vec![
                text("a"),
                Piece::Pause(Duration::from_millis(500)),
                text("b & c")
            ]
        );
    }

    #[test]
    fn say_as_prosody_and_lang() {
        let p = parse(
            "<speak>Call <say-as interpret-as='telephone'>555-0100</say-as> on \
             <say-as interpret-as='date' format='mdy'>01/15/2026</say-as>.</speak>",
        )
        .unwrap();
        assert_eq!(p, vec![text("Call 5 5 5 0 1 0 0 on January 15, 2026.")]);
        let p = parse(
            "<speak>日本語は1を。<lang xml:lang=\"en-US\"><prosody rate=\"fast\">For English, press 2.</prosody></lang></speak>",
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                text("日本語は1を。"),
                Piece::Text {
                    text: "For English, press 2.".into(),
                    lang: Some("en-US".into()),
                    rate: 1.25
                }
            ]
        );
        let p = parse("<speak><lang xml:lang=\"ja-JP\"><say-as interpret-as=\"date\">2026-04-27</say-as></lang></speak>").unwrap();
        assert!(matches!(&p[0], Piece::Text { text, .. } if text == "2026年4月27日"));
        assert_eq!(
            parse("<speak><sub alias=\"Careline\">CL</sub></speak>").unwrap(),
            vec![text("Careline")]
        );
    }

    #[test]
    fn malformed_ssml_is_named() {
        assert_eq!(
            parse("<speak>hello").unwrap_err(),
            SsmlError::Unclosed("speak".into())
        );
        assert_eq!(
            parse("<speak>hi</lang></speak>").unwrap_err(),
            SsmlError::StrayClose("lang".into())
        );
        assert_eq!(parse("<speak").unwrap_err(), SsmlError::UnterminatedTag);
    }
}
