//! Connect's dynamic values: a parameter is either literal text, one JSONPath reference
//! (`$.Attributes.name`), or text with references inside it ("Going to $.Queue.Name").
//!
//! Parsed once when the flow loads, so a call renders by walking ready segments instead of
//! scanning text on every action.

use std::sync::Arc;

/// The namespace a reference starts with (Connect's "flow run data").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Attributes,
    External,
    StoredCustomerInput,
    FlowAttributes,
    CustomerEndpoint,
    SystemEndpoint,
    Queue,
    ContactId,
    InitialContactId,
    PreviousContactId,
    Channel,
    InitiationMethod,
    LanguageCode,
    AwsRegion,
    Name,
    Description,
    /// Lex results: Careline runs no Lex bot, so these are always empty.
    Lex,
    /// What the last GetMetricData read (`$.Metrics.Queue.Size`, ...).
    Metrics,
    /// The number a callback calls: what UpdateContactCallbackNumber set, else the caller's.
    CustomerCallbackNumber,
    /// Anything else: empty at run time, a warning at load.
    Unknown(String),
}

impl Root {
    fn parse(s: &str) -> Root {
        match s {
            "Attributes" => Root::Attributes,
            "External" => Root::External,
            "StoredCustomerInput" => Root::StoredCustomerInput,
            "FlowAttributes" => Root::FlowAttributes,
            "CustomerEndpoint" => Root::CustomerEndpoint,
            "SystemEndpoint" => Root::SystemEndpoint,
            "Queue" => Root::Queue,
            "ContactId" => Root::ContactId,
            "InitialContactId" => Root::InitialContactId,
            "PreviousContactId" => Root::PreviousContactId,
            "Channel" => Root::Channel,
            "InitiationMethod" => Root::InitiationMethod,
            "LanguageCode" => Root::LanguageCode,
            "AwsRegion" => Root::AwsRegion,
            "Name" => Root::Name,
            "Description" => Root::Description,
            "Lex" => Root::Lex,
            "Metrics" => Root::Metrics,
            "CustomerCallbackNumber" => Root::CustomerCallbackNumber,
            other => Root::Unknown(other.to_string()),
        }
    }
}

/// One JSONPath reference: `$.Root.key.key...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: Root,
    pub keys: Box<[Box<str>]>,
    /// As written, for messages.
    pub text: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(Box<str>),
    Ref(Path),
}

/// A parameter value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: Arc<str>,
    segments: Box<[Segment]>,
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// Reads `$.A.b['c d']` starting at `s` (which begins with `$.`); returns the path and the
/// number of bytes it spans, or None when `$.` is not followed by a name.
fn read_path(s: &str) -> Option<(Path, usize)> {
    let mut keys: Vec<String> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 1; // at the '.'
    loop {
        // Expect '.' then a name or a bracket, or a bracket directly.
        let mut j = i;
        if bytes.get(j) == Some(&b'.') {
            j += 1;
        } else if bytes.get(j) != Some(&b'[') {
            break;
        }
        if bytes.get(j) == Some(&b'[') {
            let quote = *bytes.get(j + 1)?;
            if quote != b'\'' && quote != b'"' {
                break;
            }
            let rest = &s[j + 2..];
            let end = rest.find(quote as char)?;
            if rest.as_bytes().get(end + 1) != Some(&b']') {
                break;
            }
            keys.push(rest[..end].to_string());
            i = j + 2 + end + 2;
            continue;
        }
        let name_len: usize = s[j..]
            .chars()
            .take_while(|c| ident_char(*c))
            .map(char::len_utf8)
            .sum();
        if name_len == 0 {
            break;
        }
        keys.push(s[j..j + name_len].to_string());
        i = j + name_len;
    }
    if keys.is_empty() {
        return None;
    }
    let root = Root::parse(&keys[0]);
    let path = Path {
        root,
        keys: keys[1..].iter().map(|k| k.as_str().into()).collect(),
        text: s[..i].into(),
    };
    Some((path, i))
}

impl Template {
    pub fn parse(raw: &str) -> Template {
        let mut segments = Vec::new();
        let mut lit_start = 0;
        let mut search = 0;
        while let Some(pos) = raw[search..].find("$.").map(|p| p + search) {
            match read_path(&raw[pos..]) {
                Some((path, len)) => {
                    if pos > lit_start {
                        segments.push(Segment::Lit(raw[lit_start..pos].into()));
                    }
                    segments.push(Segment::Ref(path));
                    lit_start = pos + len;
                    search = lit_start;
                }
                None => search = pos + 2,
            }
        }
        if lit_start < raw.len() || segments.is_empty() {
            segments.push(Segment::Lit(raw[lit_start..].into()));
        }
        Template {
            raw: raw.into(),
            segments: segments.into(),
        }
    }

    /// The text as written.
    pub fn raw(&self) -> &Arc<str> {
        &self.raw
    }

    /// True when the value holds no reference (known at load).
    pub fn is_static(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Lit(_)))
    }

    /// The whole value is exactly one reference (`"$.Attributes.x"`).
    pub fn single_path(&self) -> Option<&Path> {
        match &*self.segments {
            [Segment::Ref(p)] => Some(p),
            _ => None,
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Ref(p) => Some(p),
            Segment::Lit(_) => None,
        })
    }

    /// Renders with `lookup` answering each reference (None renders as empty, as in Connect).
    pub fn render<'a, F>(&'a self, mut lookup: F) -> std::borrow::Cow<'a, str>
    where
        F: FnMut(&Path) -> Option<String>,
    {
        if self.is_static() {
            return std::borrow::Cow::Borrowed(&self.raw);
        }
        let mut out = String::with_capacity(self.raw.len() + 16);
        for s in self.segments.iter() {
            match s {
                Segment::Lit(t) => out.push_str(t),
                Segment::Ref(p) => {
                    if let Some(v) = lookup(p) {
                        out.push_str(&v);
                    }
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_text_single_reference_and_interpolation() {
        let t = Template::parse("Welcome to the clinic.");
        assert!(t.is_static());
        assert_eq!(t.render(|_| None), "Welcome to the clinic.");

        let t = Template::parse("$.Attributes.patient_id");
        let p = t.single_path().unwrap();
        assert_eq!(p.root, Root::Attributes);
        assert_eq!(&*p.keys[0], "patient_id");

        let t = Template::parse("Going to $.Queue.Name. Thanks $.Attributes.['first name']!");
        let out = t.render(|p| match (&p.root, p.keys.first().map(|k| &**k)) {
            (Root::Queue, Some("Name")) => Some("Nurses".into()),
            (Root::Attributes, Some("first name")) => Some("Ann".into()),
            _ => None,
        });
        assert_eq!(out, "Going to Nurses. Thanks Ann!");
    }

    #[test]
    fn nested_external_hyphens_and_dollar_text() {
        let t = Template::parse("$.External.result.code");
        let p = t.single_path().unwrap();
        assert_eq!(p.root, Root::External);
        assert_eq!(p.keys.len(), 2);
        let t = Template::parse("$.FlowAttributes.acme-exampleFunction");
        assert_eq!(&*t.single_path().unwrap().keys[0], "acme-exampleFunction");
        let t = Template::parse("costs $5 or $. nothing");
        assert!(t.is_static(), "a lone `$.` is text");
        let t = Template::parse("arn:aws:lambda:$.AwsRegion:${ACCT_ID}:function:f");
        assert_eq!(t.paths().count(), 1);
        assert_eq!(
            t.render(|_| Some("local".into())),
            "arn:aws:lambda:local:${ACCT_ID}:function:f"
        );
    }
}
