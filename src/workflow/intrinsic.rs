//! ASL intrinsic functions: the `States.*` calls a `.$` field of Parameters or ResultSelector
//! may hold instead of a path (`"greeting.$": "States.Format('Hello {}', $.name)"`). Parsed at
//! load (a syntax error names the state and field) and evaluated against the state's input and
//! the context object. No clock and no randomness of its own: `States.MathRandom` and
//! `States.UUID` draw from the execution's random state, which the shell seeds at start and
//! stores with every step, so a resumed execution never draws the same value twice and a
//! replayed step draws the same one.
//!
//! Semantics and limits follow the Step Functions reference ("Intrinsic functions"): a failure
//! is the error `States.IntrinsicFailure`, which Retry and Catch can name.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// The error a failing intrinsic raises (Step Functions' name, so Catch can match it).
pub(crate) const FAILURE: &str = "States.IntrinsicFailure";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Literal(Value),
    Path(String),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

const FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathAdd",
    "States.StringSplit",
    "States.MathRandom",
    "States.UUID",
];

/// Parses one intrinsic call, checking that every function (nested ones too) exists and runs.
pub(crate) fn parse(text: &str) -> Result<Call, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let call = p.call()?;
    p.ws();
    if p.i != chars.len() {
        return Err(format!(
            "unexpected text after the call at character {}",
            p.i + 1
        ));
    }
    Ok(call)
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        self.ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
        {
            self.i += 1;
        }
        let name: String = self.s[start..self.i].iter().collect();
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err(format!("`{name}` is not an intrinsic function"));
        }
        self.ws();
        if self.s.get(self.i) != Some(&'(') {
            return Err(format!("`{name}` must be followed by `(`"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&')') {
            self.i += 1;
            return Ok(Call { name, args });
        }
        loop {
            args.push(self.arg()?);
            self.ws();
            match self.s.get(self.i) {
                Some(',') => self.i += 1,
                Some(')') => {
                    self.i += 1;
                    return Ok(Call { name, args });
                }
                _ => return Err(format!("`{name}(`: expected `,` or `)`")),
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        match self.s.get(self.i) {
            Some('\'') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("a string argument is not closed with `'`".into()),
                        Some('\\') => {
                            // \' \{ \} \\ keep the character (a brace escaped is no placeholder).
                            let Some(&c) = self.s.get(self.i + 1) else {
                                return Err("a string argument ends in `\\`".into());
                            };
                            if c == '{' || c == '}' {
                                out.push('\\');
                            }
                            out.push(c);
                            self.i += 2;
                        }
                        Some('\'') => {
                            self.i += 1;
                            return Ok(Arg::Literal(Value::String(out)));
                        }
                        Some(&c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
            }
            Some('$') => {
                let start = self.i;
                let mut depth = 0;
                let mut quoted = false;
                while let Some(&c) = self.s.get(self.i) {
                    match c {
                        '\'' => quoted = !quoted,
                        '[' if !quoted => depth += 1,
                        ']' if !quoted => depth -= 1,
                        ',' | ')' if !quoted && depth == 0 => break,
                        _ => {}
                    }
                    self.i += 1;
                }
                let path: String = self.s[start..self.i].iter().collect();
                let path = path.trim().to_string();
                super::path::parse(&path)?;
                Ok(Arg::Path(path))
            }
            Some('S') => Ok(Arg::Call(self.call()?)),
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace())
                {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                match word.as_str() {
                    "true" => Ok(Arg::Literal(Value::Bool(true))),
                    "false" => Ok(Arg::Literal(Value::Bool(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    w => serde_json::from_str::<Number>(w)
                        .map(|n| Arg::Literal(Value::Number(n)))
                        .map_err(|_| {
                            format!("`{w}` is not a string, number, boolean, null, path or call")
                        }),
                }
            }
        }
    }
}

/// Evaluates a call; `resolve` reads a path from the state's input or the context object,
/// `random` gives 64 random bits (the execution's random state).
pub(crate) fn eval(
    call: &Call,
    resolve: &dyn Fn(&str) -> Result<Value, String>,
    random: &mut dyn FnMut() -> u64,
) -> Result<Value, String> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => resolve(p)?,
            Arg::Call(c) => eval(c, resolve, random)?,
        });
    }
    let name = call.name.as_str();
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{name} takes {n} arguments, not {}", args.len()))
        }
    };
    let string = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name}: `{v}` is not a string"))
    };
    let array = |v: &Value| {
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("{name}: `{v}` is not an array"))
    };
    let integer = |v: &Value| {
        v.as_i64()
            .ok_or_else(|| format!("{name}: `{v}` is not an integer"))
    };
    match name {
        "States.Format" => {
            let template = string(args.first().ok_or("States.Format needs a template")?)?;
            let mut values = args[1..].iter();
            let mut out = String::new();
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = values
                            .next()
                            .ok_or("States.Format has more {} than values")?;
                        match v {
                            Value::String(s) => out.push_str(s),
                            Value::Number(_) | Value::Bool(_) | Value::Null => {
                                out.push_str(&v.to_string())
                            }
                            _ => return Err("States.Format takes only strings, numbers, booleans and null as values".into()),
                        }
                    }
                    c => out.push(c),
                }
            }
            if values.next().is_some() {
                return Err("States.Format has more values than {}".into());
            }
            Ok(Value::String(out))
        }
        "States.StringToJson" => {
            want(1)?;
            serde_json::from_str(&string(&args[0])?)
                .map_err(|e| format!("States.StringToJson: not JSON: {e}"))
        }
        "States.JsonToString" => {
            want(1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            want(2)?;
            let size = integer(&args[1])?;
            if size <= 0 {
                return Err("States.ArrayPartition: the chunk size must be positive".into());
            }
            Ok(Value::Array(
                array(&args[0])?
                    .chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            want(2)?;
            Ok(Value::Bool(array(&args[0])?.contains(&args[1])))
        }
        "States.ArrayRange" => {
            want(3)?;
            let (start, end, step) = (integer(&args[0])?, integer(&args[1])?, integer(&args[2])?);
            if step == 0 {
                return Err("States.ArrayRange: the step must not be 0".into());
            }
            let mut out = Vec::new();
            let mut x = start;
            while (step > 0 && x <= end) || (step < 0 && x >= end) {
                if out.len() == 1000 {
                    return Err("States.ArrayRange: more than 1000 items".into());
                }
                out.push(Value::from(x));
                x += step;
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            want(2)?;
            let i = integer(&args[1])?;
            let a = array(&args[0])?;
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i).cloned())
                .ok_or_else(|| format!("States.ArrayGetItem: no item at index {i}"))
        }
        "States.ArrayLength" => {
            want(1)?;
            Ok(Value::from(array(&args[0])?.len()))
        }
        "States.ArrayUnique" => {
            want(1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in array(&args[0])? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            want(1)?;
            let s = string(&args[0])?;
            if s.len() > 10_000 {
                return Err("States.Base64Encode: more than 10,000 characters".into());
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s),
            ))
        }
        "States.Base64Decode" => {
            want(1)?;
            let s = string(&args[0])?;
            if s.len() > 10_000 {
                return Err("States.Base64Decode: more than 10,000 characters".into());
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("States.Base64Decode: not base64: {e}"))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| "States.Base64Decode: the data is not UTF-8 text".into())
        }
        "States.Hash" => {
            want(2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.len() > 10_000 {
                return Err("States.Hash: more than 10,000 characters".into());
            }
            use sha2::Digest;
            let hex = match string(&args[1])?.as_str() {
                "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
                "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
                "SHA-384" => hex::encode(sha2::Sha384::digest(data.as_bytes())),
                "SHA-512" => hex::encode(sha2::Sha512::digest(data.as_bytes())),
                other => {
                    return Err(format!(
                        "States.Hash: `{other}` is not MD5, SHA-256, SHA-384 or SHA-512 (SHA-1 is not offered)"
                    ));
                }
            };
            Ok(Value::String(hex))
        }
        "States.JsonMerge" => {
            want(3)?;
            if args[2] != Value::Bool(false) {
                return Err("States.JsonMerge: only the shallow merge (false) exists".into());
            }
            let (Some(a), Some(b)) = (args[0].as_object(), args[1].as_object()) else {
                return Err("States.JsonMerge merges two objects".into());
            };
            let mut out: Map<String, Value> = a.clone();
            out.extend(b.clone());
            Ok(Value::Object(out))
        }
        "States.MathAdd" => {
            want(2)?;
            integer(&args[0])?
                .checked_add(integer(&args[1])?)
                .map(Value::from)
                .ok_or_else(|| "States.MathAdd: the sum overflows".into())
        }
        "States.MathRandom" => {
            // [start, end): with a seed, the same number for the same seed (the reference's
            // optional third argument); else from the execution's random state.
            if !(2..=3).contains(&args.len()) {
                return Err("States.MathRandom takes a start, an end and an optional seed".into());
            }
            let (start, end) = (integer(&args[0])?, integer(&args[1])?);
            if end <= start {
                return Err("States.MathRandom: the end must be above the start".into());
            }
            let bits = match args.get(2) {
                Some(seed) => splitmix(integer(seed)? as u64),
                None => random(),
            };
            let span = (end - start) as u64;
            Ok(Value::from(start + (bits % span) as i64))
        }
        "States.UUID" => {
            want(0)?;
            // RFC 9562 version 4: 122 random bits, version and variant set.
            let (hi, lo) = (random(), random());
            let hi = (hi & !0xf000) | 0x4000;
            let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
            Ok(Value::String(format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xffff,
                hi & 0xffff,
                lo >> 48,
                lo & 0xffff_ffff_ffff
            )))
        }
        "States.StringSplit" => {
            want(2)?;
            let s = string(&args[0])?;
            let delimiters: Vec<char> = string(&args[1])?.chars().collect();
            Ok(Value::Array(
                s.split(|c| delimiters.contains(&c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ))
        }
        other => Err(format!("`{other}` is not an intrinsic function")),
    }
}

/// SplitMix64: a seed's bits spread (MathRandom's explicit seed).
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(text: &str, input: Value) -> Result<Value, String> {
        let call = parse(text)?;
        let mut state = 0x1234_5678_9abc_def1u64;
        eval(
            &call,
            &|p: &str| {
                super::super::path::get(p, &input, &json!({}))?
                    .cloned()
                    .ok_or_else(|| format!("{p}: nothing"))
            },
            &mut || {
                state = splitmix(state);
                state
            },
        )
    }

    #[test]
    fn random_values_are_in_range_and_uuids_are_version_4() {
        for _ in 0..3 {
            let n = run("States.MathRandom(10, 20)", json!({})).unwrap();
            assert!((10..20).contains(&n.as_i64().unwrap()), "{n}");
        }
        assert_eq!(
            run("States.MathRandom(1, 1000, 7)", json!({})),
            run("States.MathRandom(1, 1000, 7)", json!({})),
            "a seed gives the same number"
        );
        let u = run("States.UUID()", json!({})).unwrap();
        let u = u.as_str().unwrap();
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12], "{u}");
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!("89ab".contains(&u[19..20]), "RFC variant: {u}");
        assert!(run("States.MathRandom(5, 5)", json!({})).is_err());
        assert!(run("States.UUID(1)", json!({})).is_err());
    }

    #[test]
    fn the_reference_examples_give_the_reference_results() {
        let input = json!({"name": "Ada", "n": 3, "list": [1, 2, 2, 3], "obj": {"a": 1}, "text": "{\"x\":1}"});
        let cases = [
            (
                "States.Format('Hello, my name is {}.', $.name)",
                json!("Hello, my name is Ada."),
            ),
            (
                "States.Format('{} + {} \\{literal\\}', $.n, true)",
                json!("3 + true {literal}"),
            ),
            ("States.StringToJson($.text)", json!({"x": 1})),
            ("States.JsonToString($.obj)", json!("{\"a\":1}")),
            (
                "States.Array('Foo', 2020, $.n, null)",
                json!(["Foo", 2020, 3, null]),
            ),
            ("States.ArrayPartition($.list, 3)", json!([[1, 2, 2], [3]])),
            ("States.ArrayContains($.list, 3)", json!(true)),
            ("States.ArrayRange(1, 9, 2)", json!([1, 3, 5, 7, 9])),
            ("States.ArrayRange(5, 1, -2)", json!([5, 3, 1])),
            ("States.ArrayGetItem($.list, 3)", json!(3)),
            ("States.ArrayLength($.list)", json!(4)),
            ("States.ArrayUnique($.list)", json!([1, 2, 3])),
            (
                "States.Base64Encode('Data to encode')",
                json!("RGF0YSB0byBlbmNvZGU="),
            ),
            (
                "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
                json!("Data to encode"),
            ),
            (
                "States.Hash('input data', 'SHA-256')",
                json!("b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
            ),
            (
                "States.JsonMerge($.obj, States.StringToJson($.text), false)",
                json!({"a": 1, "x": 1}),
            ),
            ("States.MathAdd($.n, -1)", json!(2)),
            ("States.StringSplit('1,2;3', ',;')", json!(["1", "2", "3"])),
            ("States.ArrayLength(States.Array(1, 2))", json!(2)),
        ];
        for (text, want) in cases {
            assert_eq!(run(text, input.clone()), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_calls_are_refused_at_parse_or_fail_when_run() {
        for text in [
            "States.Nope(1)",
            "States.Format('x'",
            "States.Format('x') trailing",
            "States.Array(wat)",
            "States.Format('unclosed)",
        ] {
            assert!(parse(text).is_err(), "{text} parses");
        }
        let input = json!({"s": "x"});
        for text in [
            "States.Format('{} {}', 1)",
            "States.Format('{}', 1, 2)",
            "States.ArrayGetItem(States.Array(1), 5)",
            "States.MathAdd($.s, 1)",
            "States.StringToJson('{nope')",
            "States.ArrayRange(1, 5000, 1)",
            "States.Hash('x', 'SHA-1')",
            "States.JsonMerge($.s, $.s, false)",
        ] {
            assert!(run(text, input.clone()).is_err(), "{text} ran");
        }
    }
}
