//! The registrar (RFC 3261 §10.3), sans-IO: which contacts each user's phones registered, until
//! when. Time is an input; the shell keeps one in memory (phones register again well within
//! the granted time, so a restart is healed by their next refresh).
//!
//! The address-of-record is a Careline user name, and only that user (authenticated by
//! digest) may change its bindings.
//!
//! ```
//! use careline::sip::registrar::{Registrar, Request, Outcome};
//! let mut r = Registrar::new(60, 3600);
//! let req = Request::parse(&["<sip:nina@192.0.2.7:5062>;expires=600".into()], None, "call-1", 1)
//!     .unwrap();
//! let Outcome::Bindings(now) = r.register("nina", req, 1_000) else { panic!() };
//! assert_eq!(now[0].contact, "<sip:nina@192.0.2.7:5062>");
//! assert_eq!(now[0].expires_in, 600);
//! assert_eq!(r.contacts("nina", 1_599).len(), 1);
//! assert!(r.contacts("nina", 1_600).is_empty());
//! ```

use std::collections::HashMap;

/// Registration requested for one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSpec {
    /// The contact as written, `<uri>` form (without its header parameters).
    pub contact: String,
    /// The contact's own `expires` parameter, if any.
    pub expires: Option<u32>,
}

/// A REGISTER's content, as the registrar needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Contact: *` (remove every binding; only with `Expires: 0`).
    pub wildcard: bool,
    pub contacts: Vec<ContactSpec>,
    /// The `Expires` header.
    pub expires: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
}

/// Why a REGISTER cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed Contact")]
    Contact,
    #[error("Contact: * must stand alone, with Expires: 0")]
    Wildcard,
}

impl Request {
    /// From the request's `Contact` header values (each may list several, comma-separated),
    /// its `Expires` header, Call-ID and CSeq number.
    pub fn parse(
        contact_values: &[String],
        expires: Option<u32>,
        call_id: &str,
        cseq: u32,
    ) -> Result<Request, RequestError> {
        let mut contacts = Vec::new();
        let mut wildcard = false;
        for value in contact_values {
            for item in split_list(value).map_err(|()| RequestError::Contact)? {
                if item == "*" {
                    wildcard = true;
                    continue;
                }
                contacts.push(contact_spec(&item)?);
            }
        }
        if wildcard && (!contacts.is_empty() || expires != Some(0)) {
            return Err(RequestError::Wildcard);
        }
        Ok(Request {
            wildcard,
            contacts,
            expires,
            call_id: call_id.to_string(),
            cseq,
        })
    }
}

/// Splits a header value at top-level commas (not inside `<>` or quotes).
fn split_list(value: &str) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let (mut angle, mut quoted, mut escaped) = (false, false, false);
    let mut current = String::new();
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                '"' => quoted = true,
                '<' if !angle => angle = true,
                '>' if angle => angle = false,
                ',' if !angle => {
                    out.push(std::mem::take(&mut current).trim().to_string());
                    continue;
                }
                _ => {}
            }
        }
        current.push(c);
    }
    if angle || quoted {
        return Err(());
    }
    out.push(current.trim().to_string());
    if out.iter().any(String::is_empty) {
        return Err(());
    }
    Ok(out)
}

/// `["name"] <uri>;params` or a bare `uri;params` (whose parameters are the header's,
/// RFC 3261 §20.10).
fn contact_spec(item: &str) -> Result<ContactSpec, RequestError> {
    let (uri, params) = match (item.find('<'), item.rfind('>')) {
        (Some(open), Some(close)) if open < close => (&item[open + 1..close], &item[close + 1..]),
        (None, None) => match item.find(';') {
            Some(at) => (&item[..at], &item[at..]),
            None => (item, ""),
        },
        _ => return Err(RequestError::Contact),
    };
    let uri = uri.trim();
    let scheme = uri
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(scheme.as_str(), "sip" | "sips") || uri.len() <= scheme.len() + 1 {
        return Err(RequestError::Contact);
    }
    let mut expires = None;
    for param in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("expires") {
            expires = Some(value.trim().parse().map_err(|_| RequestError::Contact)?);
        }
    }
    Ok(ContactSpec {
        contact: format!("<{uri}>"),
        expires,
    })
}

/// One contact bound to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub contact: String,
    pub expires_at: u64,
    call_id: String,
    cseq: u32,
}

/// A binding as a 200 to REGISTER lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub contact: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200: the user's bindings now.
    Bindings(Vec<Granted>),
    /// 423 Interval Too Brief, with `Min-Expires`.
    TooBrief { min_expires: u32 },
    /// 500 with `Retry-After` would suit an out-of-order request; RFC 3261 §10.3 step 7 says
    /// to drop the update and answer with the bindings: this is that answer.
    OutOfOrder(Vec<Granted>),
}

/// Contacts per user beyond which the oldest is replaced (a phone that changes address keeps
/// adding contacts until the old ones expire).
const MAX_CONTACTS: usize = 10;

pub struct Registrar {
    min_expires: u32,
    max_expires: u32,
    users: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    pub fn new(min_expires: u32, max_expires: u32) -> Registrar {
        Registrar {
            min_expires: min_expires.max(1),
            max_expires: max_expires.max(min_expires.max(1)),
            users: HashMap::new(),
        }
    }

    /// Applies a REGISTER from `user` (already authenticated) at `now_secs`.
    pub fn register(&mut self, user: &str, req: Request, now_secs: u64) -> Outcome {
        self.expire_user(user, now_secs);
        if req.wildcard {
            // Step 6: remove all, unless one was updated by a later request of the same call.
            let bindings = self.users.entry(user.to_string()).or_default();
            if bindings
                .iter()
                .any(|b| b.call_id == req.call_id && b.cseq >= req.cseq)
            {
                return Outcome::OutOfOrder(granted(bindings, now_secs));
            }
            self.users.remove(user);
            return Outcome::Bindings(Vec::new());
        }
        let default = req.expires.unwrap_or(3600);
        let wanted: Vec<(String, u32)> = req
            .contacts
            .iter()
            .map(|c| (c.contact.clone(), c.expires.unwrap_or(default)))
            .collect();
        if wanted.iter().any(|(_, e)| *e != 0 && *e < self.min_expires) {
            return Outcome::TooBrief {
                min_expires: self.min_expires,
            };
        }
        let bindings = self.users.entry(user.to_string()).or_default();
        for (contact, expires) in wanted {
            let existing = bindings.iter().position(|b| same_uri(&b.contact, &contact));
            if let Some(i) = existing {
                let b = &bindings[i];
                if b.call_id == req.call_id && b.cseq >= req.cseq {
                    return Outcome::OutOfOrder(granted(bindings, now_secs));
                }
                if expires == 0 {
                    bindings.remove(i);
                    continue;
                }
            } else if expires == 0 {
                continue;
            }
            let binding = Binding {
                contact,
                expires_at: now_secs + u64::from(expires.min(self.max_expires)),
                call_id: req.call_id.clone(),
                cseq: req.cseq,
            };
            match existing {
                Some(i) => bindings[i] = binding,
                None => {
                    if bindings.len() >= MAX_CONTACTS
                        && let Some(oldest) = bindings
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, b)| b.expires_at)
                            .map(|(i, _)| i)
                    {
                        bindings.remove(oldest);
                    }
                    bindings.push(binding);
                }
            }
        }
        let now = granted(bindings, now_secs);
        if bindings.is_empty() {
            self.users.remove(user);
        }
        Outcome::Bindings(now)
    }

    /// The user's live contacts at `now_secs`, newest registration last.
    pub fn contacts(&self, user: &str, now_secs: u64) -> Vec<Binding> {
        self.users
            .get(user)
            .map(|b| {
                b.iter()
                    .filter(|b| b.expires_at > now_secs)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every expired binding (the shell calls it now and then).
    pub fn expire(&mut self, now_secs: u64) {
        self.users.retain(|_, b| {
            b.retain(|b| b.expires_at > now_secs);
            !b.is_empty()
        });
    }

    /// Users with at least one binding (expired ones may linger until [`Registrar::expire`]).
    pub fn registered_users(&self) -> usize {
        self.users.len()
    }

    fn expire_user(&mut self, user: &str, now_secs: u64) {
        if let Some(b) = self.users.get_mut(user) {
            b.retain(|b| b.expires_at > now_secs);
        }
    }
}

fn granted(bindings: &[Binding], now_secs: u64) -> Vec<Granted> {
    bindings
        .iter()
        .map(|b| Granted {
            contact: b.contact.clone(),
            expires_in: b.expires_at.saturating_sub(now_secs),
        })
        .collect()
}

/// URIs compare with a case-insensitive scheme and host part (RFC 3261 §19.1.4, simplified:
/// the user part stays case-sensitive, parameters as written).
fn same_uri(a: &str, b: &str) -> bool {
    fn key(s: &str) -> String {
        let s = s.trim_start_matches('<').trim_end_matches('>');
        let (scheme, rest) = s.split_once(':').unwrap_or(("", s));
        let scheme = scheme.to_ascii_lowercase();
        match rest.split_once('@') {
            Some((user, host)) => format!("{scheme}:{user}@{}", host.to_ascii_lowercase()),
            None => format!("{scheme}:{}", rest.to_ascii_lowercase()),
        }
    }
    key(a) == key(b)
}

#[cfg(test)]
mod tests;
