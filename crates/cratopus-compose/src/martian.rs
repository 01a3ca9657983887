//! KrakenD's static modifiers of a backend's request and answer (`modifier/martian`), in
//! KrakenD's own DSL so that a KrakenD user's block carries over as it is: one modifier, filter
//! or group keyed by its `package.Type` name, each with a `scope` (`request`, `response` or
//! both).
//!
//! ```yaml
//! martian:
//!   fifo.Group:
//!     scope: [request, response]
//!     modifiers:
//!       - header.Modifier: {scope: [request], name: X-Api-Key, value: s3cret}
//!       - header.RegexFilter:
//!           scope: [request]
//!           header: X-App-Version
//!           regex: ".*-(alpha|beta|preview)$"
//!           modifier: {querystring.Modifier: {scope: [request], name: testing, value: "1"}}
//! ```
//!
//! The set is the one KrakenD documents for static changes: `header.Modifier` (set),
//! `header.Append`, `header.Blacklist` (remove), `querystring.Modifier`, `body.Modifier`,
//! `cookie.Modifier`, the filters `header.Filter`, `header.RegexFilter` and
//! `querystring.Filter` (each with an optional `else`), and `fifo.Group`. Values are static
//! text: a `{` is a brace, not a variable (as in KrakenD). Anything else (`url.Modifier`,
//! `port.Modifier`, `stash.Modifier`, `priority.Group`, …) is refused by name when the config
//! is read. The runtime is `cratopus-policies`' `martian`, which reuses the route modifiers'
//! header and query engine.

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a modifier acts: on the request to the backend, on the backend's answer, or both.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Request,
    Response,
}

/// One martian modifier, filter or group, keyed by KrakenD's `package.Type` name.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Martian {
    /// Sets a header to this one value (replacing the values it had).
    #[serde(rename = "header.Modifier")]
    HeaderModifier(HeaderValue),
    /// Adds one more value to a header.
    #[serde(rename = "header.Append")]
    HeaderAppend(HeaderValue),
    /// Removes the named headers.
    #[serde(rename = "header.Blacklist")]
    HeaderBlacklist(HeaderBlacklist),
    /// Sets a query parameter of the request to this one value.
    #[serde(rename = "querystring.Modifier")]
    QueryModifier(QueryValue),
    /// Replaces the body (given in base64) and, optionally, its `Content-Type`.
    #[serde(rename = "body.Modifier")]
    BodyModifier(BodyModifier),
    /// Adds a cookie: to the request's `Cookie`, or as a `Set-Cookie` of the answer.
    #[serde(rename = "cookie.Modifier")]
    CookieModifier(CookieModifier),
    /// Runs `modifier` when the header is present (with `value`, when it has that value),
    /// else `else`.
    #[serde(rename = "header.Filter")]
    HeaderFilter(HeaderFilter),
    /// Runs `modifier` when a value of the header matches the regular expression, else `else`.
    #[serde(rename = "header.RegexFilter")]
    HeaderRegexFilter(HeaderRegexFilter),
    /// Runs `modifier` when the request has the query parameter (with `value`, when it has
    /// that value), else `else`.
    #[serde(rename = "querystring.Filter")]
    QueryFilter(QueryFilter),
    /// Runs its modifiers in order.
    #[serde(rename = "fifo.Group")]
    FifoGroup(FifoGroup),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub scope: Vec<Scope>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderBlacklist {
    pub scope: Vec<Scope>,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryValue {
    /// Only `[request]`: a query string belongs to the request.
    pub scope: Vec<Scope>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyModifier {
    pub scope: Vec<Scope>,
    /// The new body, in base64 (standard alphabet, padded), as KrakenD takes it.
    pub body: String,
    /// The body's `Content-Type`; by default the one the message had.
    #[serde(default, rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CookieModifier {
    pub scope: Vec<Scope>,
    pub name: String,
    pub value: String,
    /// Answers only (`Set-Cookie` attributes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Seconds; 0: not set; below 0: delete the cookie now (`Max-Age=0`).
    #[serde(default, rename = "maxAge", skip_serializing_if = "is_zero")]
    pub max_age: i64,
    /// An absolute date in RFC 3339 (`2025-04-12T23:20:50.52Z`), written as an HTTP date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure: bool,
    #[serde(default, rename = "httpOnly", skip_serializing_if = "is_false")]
    pub http_only: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderFilter {
    pub scope: Vec<Scope>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub modifier: Box<Martian>,
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<Box<Martian>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRegexFilter {
    pub scope: Vec<Scope>,
    pub header: String,
    /// A regular expression, unanchored (write `^…$` to match a whole value), as RE2 reads it.
    pub regex: String,
    pub modifier: Box<Martian>,
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<Box<Martian>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryFilter {
    pub scope: Vec<Scope>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub modifier: Box<Martian>,
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<Box<Martian>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FifoGroup {
    pub scope: Vec<Scope>,
    pub modifiers: Vec<Martian>,
    /// Accepted for KrakenD's configs; nothing here fails at run time (every value is checked
    /// when the config is read), so there are no errors to aggregate.
    #[serde(default, rename = "aggregateErrors", skip_serializing_if = "is_false")]
    pub aggregate_errors: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Basic authentication towards a backend: `Authorization: Basic base64(user:password)` on
/// every call, replacing what the client sent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

impl BasicAuth {
    /// The `Authorization` header's value.
    pub fn header_value(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

impl Martian {
    pub fn scope(&self) -> &[Scope] {
        match self {
            Martian::HeaderModifier(m) | Martian::HeaderAppend(m) => &m.scope,
            Martian::HeaderBlacklist(m) => &m.scope,
            Martian::QueryModifier(m) => &m.scope,
            Martian::BodyModifier(m) => &m.scope,
            Martian::CookieModifier(m) => &m.scope,
            Martian::HeaderFilter(m) => &m.scope,
            Martian::HeaderRegexFilter(m) => &m.scope,
            Martian::QueryFilter(m) => &m.scope,
            Martian::FifoGroup(m) => &m.scope,
        }
    }

    /// The KrakenD name of this node (`header.Modifier`).
    pub fn kind(&self) -> &'static str {
        match self {
            Martian::HeaderModifier(_) => "header.Modifier",
            Martian::HeaderAppend(_) => "header.Append",
            Martian::HeaderBlacklist(_) => "header.Blacklist",
            Martian::QueryModifier(_) => "querystring.Modifier",
            Martian::BodyModifier(_) => "body.Modifier",
            Martian::CookieModifier(_) => "cookie.Modifier",
            Martian::HeaderFilter(_) => "header.Filter",
            Martian::HeaderRegexFilter(_) => "header.RegexFilter",
            Martian::QueryFilter(_) => "querystring.Filter",
            Martian::FifoGroup(_) => "fifo.Group",
        }
    }

    /// Whether some node of this tree acts in this scope.
    pub fn acts_on(&self, scope: Scope) -> bool {
        if !self.scope().contains(&scope) {
            return false;
        }
        match self {
            Martian::HeaderFilter(f) => {
                f.modifier.acts_on(scope) || f.otherwise.as_ref().is_some_and(|m| m.acts_on(scope))
            }
            Martian::HeaderRegexFilter(f) => {
                f.modifier.acts_on(scope) || f.otherwise.as_ref().is_some_and(|m| m.acts_on(scope))
            }
            Martian::QueryFilter(f) => {
                f.modifier.acts_on(scope) || f.otherwise.as_ref().is_some_and(|m| m.acts_on(scope))
            }
            Martian::FifoGroup(g) => g.modifiers.iter().any(|m| m.acts_on(scope)),
            _ => true,
        }
    }

    /// The decoded body of a `body.Modifier`.
    pub fn decode_body(text: &str) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("body is not base64: {e}"))
    }

    /// Every problem of this tree, each with its key path under the node (`["fifo.Group",
    /// "modifiers", "1", "header.Modifier", "name"]`) and a sentence. Header names are checked
    /// here; which headers a modifier may not touch is the config crate's check (the route
    /// modifiers' list).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        at.push(self.kind().to_string());
        let mut say = |key: &str, msg: String| {
            let mut keys = at.clone();
            if !key.is_empty() {
                keys.extend(key.split('/').map(str::to_string));
            }
            out.push((keys, msg));
        };
        if self.scope().is_empty() {
            say("scope", "scope needs `request`, `response` or both".into());
        }
        let header = |name: &str| -> Option<String> {
            (http::HeaderName::from_bytes(name.trim().as_bytes()).is_err())
                .then(|| format!("`{name}` is not a header name"))
        };
        match self {
            Martian::HeaderModifier(m) | Martian::HeaderAppend(m) => {
                if let Some(e) = header(&m.name) {
                    say("name", e);
                }
                if http::HeaderValue::from_str(&m.value).is_err() {
                    say("value", format!("`{}` cannot be a header value", m.value));
                }
            }
            Martian::HeaderBlacklist(m) => {
                for (i, n) in m.names.iter().enumerate() {
                    if let Some(e) = header(n) {
                        say(&format!("names/{i}"), e);
                    }
                }
            }
            Martian::QueryModifier(m) => {
                if m.name.is_empty() {
                    say("name", "a query parameter needs a name".into());
                }
                if m.scope.contains(&Scope::Response) {
                    say("scope", "a query string belongs to the request: scope [request]".into());
                }
            }
            Martian::BodyModifier(m) => {
                if let Err(e) = Self::decode_body(&m.body) {
                    say("body", e);
                }
                if let Some(t) = &m.content_type
                    && http::HeaderValue::from_str(t).is_err()
                {
                    say("contentType", format!("`{t}` cannot be a header value"));
                }
            }
            Martian::CookieModifier(m) => {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
                };
                if !token(&m.name) {
                    say("name", format!("`{}` is not a cookie name", m.name));
                }
                if !m.value.bytes().all(|b| b.is_ascii_graphic() && !b"\",;\\".contains(&b)) {
                    say(
                        "value",
                        format!(
                            "`{}`: a cookie value has no spaces, quotes, commas, semicolons or backslashes",
                            m.value
                        ),
                    );
                }
                if let Some(Err(e)) = m.expires.as_deref().map(http_date) {
                    say("expires", e);
                }
                for (key, v) in [("path", &m.path), ("domain", &m.domain)] {
                    if let Some(v) = v
                        && (v.contains(';') || http::HeaderValue::from_str(v).is_err())
                    {
                        say(key, format!("`{v}` cannot be a cookie attribute"));
                    }
                }
            }
            Martian::HeaderFilter(f) => {
                if let Some(e) = header(&f.name) {
                    say("name", e);
                }
                f.modifier.walk_under(at, "modifier", out);
                if let Some(o) = &f.otherwise {
                    o.walk_under(at, "else", out);
                }
            }
            Martian::HeaderRegexFilter(f) => {
                if let Some(e) = header(&f.header) {
                    say("header", e);
                }
                if let Err(e) = regex::Regex::new(&f.regex) {
                    say("regex", format!("`{}` is not a regular expression: {e}", f.regex));
                }
                f.modifier.walk_under(at, "modifier", out);
                if let Some(o) = &f.otherwise {
                    o.walk_under(at, "else", out);
                }
            }
            Martian::QueryFilter(f) => {
                if f.name.is_empty() {
                    say("name", "a query parameter needs a name".into());
                }
                f.modifier.walk_under(at, "modifier", out);
                if let Some(o) = &f.otherwise {
                    o.walk_under(at, "else", out);
                }
            }
            Martian::FifoGroup(g) => {
                if g.modifiers.is_empty() {
                    say("modifiers", "a group needs at least one modifier".into());
                }
                for (i, m) in g.modifiers.iter().enumerate() {
                    m.walk_under(at, &format!("modifiers/{i}"), out);
                }
            }
        }
        at.pop();
    }

    fn walk_under(&self, at: &mut Vec<String>, key: &str, out: &mut Vec<(Vec<String>, String)>) {
        let n = at.len();
        at.extend(key.split('/').map(str::to_string));
        self.walk(at, out);
        at.truncate(n);
    }

    /// Every header name a modifier of this tree sets, appends or removes, for the config's
    /// check of headers no modifier may touch; with the key path of the name.
    pub fn header_names(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        self.names(&mut Vec::new(), &mut out);
        out
    }

    fn names(&self, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        at.push(self.kind().to_string());
        let mut key = |k: String, name: &str| {
            let mut keys = at.clone();
            keys.extend(k.split('/').map(str::to_string));
            out.push((keys, name.to_string()));
        };
        match self {
            Martian::HeaderModifier(m) | Martian::HeaderAppend(m) => key("name".into(), &m.name),
            Martian::HeaderBlacklist(m) => {
                for (i, n) in m.names.iter().enumerate() {
                    key(format!("names/{i}"), n);
                }
            }
            Martian::HeaderFilter(HeaderFilter {
                modifier, otherwise, ..
            })
            | Martian::HeaderRegexFilter(HeaderRegexFilter {
                modifier, otherwise, ..
            })
            | Martian::QueryFilter(QueryFilter {
                modifier, otherwise, ..
            }) => {
                let n = at.len();
                at.push("modifier".into());
                modifier.names(at, out);
                at.truncate(n);
                if let Some(o) = otherwise {
                    at.push("else".into());
                    o.names(at, out);
                    at.truncate(n);
                }
            }
            Martian::FifoGroup(g) => {
                for (i, m) in g.modifiers.iter().enumerate() {
                    let n = at.len();
                    at.push("modifiers".into());
                    at.push(i.to_string());
                    m.names(at, out);
                    at.truncate(n);
                }
            }
            Martian::QueryModifier(_) | Martian::BodyModifier(_) | Martian::CookieModifier(_) => {}
        }
        at.pop();
    }
}

/// An RFC 3339 date (`2025-04-12T23:20:50.52Z`, `2025-04-12T23:20:50+02:00`) as an HTTP date
/// (`Sat, 12 Apr 2025 23:20:50 GMT`), for a cookie's `Expires`; fractions of a second are
/// dropped.
pub fn http_date(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not an RFC 3339 date such as 2025-04-12T23:20:50Z");
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let s = b.get(r).ok_or_else(bad)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(s).map_err(|_| bad())?.parse().map_err(|_| bad())
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' { m } else { -m }
        }
        _ => return Err(bad()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset * 60;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Back to a civil date (civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Ok(format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Martian {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_seeds_blocks_read_as_they_are() {
        let m = parse(json!({"fifo.Group": {
            "scope": ["request", "response"],
            "aggregateErrors": true,
            "modifiers": [
                {"body.Modifier": {"scope": ["request"], "body": "eyJtc2ciOiJ5b3Ugcm9jayEifQ=="}},
                {"header.Modifier": {"scope": ["request", "response"], "name": "X-Additional-Header", "value": "true"}}
            ]
        }}));
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        assert!(m.acts_on(Scope::Request) && m.acts_on(Scope::Response));
        let f = parse(json!({"header.RegexFilter": {
            "scope": ["request"], "header": "X-App-Version", "regex": ".*-(alpha|beta|preview)$",
            "modifier": {"querystring.Modifier": {"scope": ["request"], "name": "testing", "value": "1"}}
        }}));
        assert!(f.problems().is_empty());
        assert!(f.acts_on(Scope::Request) && !f.acts_on(Scope::Response));
        assert_eq!(
            Martian::decode_body("eyJtc2ciOiJ5b3Ugcm9jayEifQ==").unwrap(),
            br#"{"msg":"you rock!"}"#
        );
    }

    #[test]
    fn problems_are_placed_at_their_keys() {
        let m = parse(json!({"fifo.Group": {"scope": ["request"], "modifiers": [
            {"header.Modifier": {"scope": [], "name": "Bad Name", "value": "x"}},
            {"header.RegexFilter": {"scope": ["request"], "header": "X", "regex": "(",
                "modifier": {"body.Modifier": {"scope": ["request"], "body": "%%%"}}}},
            {"querystring.Modifier": {"scope": ["response"], "name": "a", "value": "b"}},
            {"cookie.Modifier": {"scope": ["request"], "name": "a b", "value": "x;y"}}
        ]}}));
        let p: Vec<String> = m
            .problems()
            .iter()
            .map(|(k, m)| format!("{}: {m}", k.join("/")))
            .collect();
        for want in [
            "fifo.Group/modifiers/0/header.Modifier/scope: scope needs",
            "fifo.Group/modifiers/0/header.Modifier/name: `Bad Name` is not a header name",
            "fifo.Group/modifiers/1/header.RegexFilter/regex: `(` is not a regular expression",
            "fifo.Group/modifiers/1/header.RegexFilter/modifier/body.Modifier/body: body is not base64",
            "fifo.Group/modifiers/2/querystring.Modifier/scope: a query string belongs to the request",
            "fifo.Group/modifiers/3/cookie.Modifier/name: `a b` is not a cookie name",
            "fifo.Group/modifiers/3/cookie.Modifier/value:",
        ] {
            assert!(p.iter().any(|x| x.starts_with(want)), "missing {want}: {p:#?}");
        }
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn unknown_modifiers_are_refused_by_name() {
        for bad in [
            json!({"url.Modifier": {"scope": ["request"], "path": "/x"}}),
            json!({"header.Modifier": {"scope": ["request"], "name": "a", "value": "b", "extra": 1}}),
            json!({"header.Modifier": {"scope": ["sideways"], "name": "a", "value": "b"}}),
        ] {
            let e = serde_json::from_value::<Martian>(bad.clone()).unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn cookie_expiry_as_an_http_date() {
        assert_eq!(
            http_date("2025-04-12T23:20:50.52Z").unwrap(),
            "Sat, 12 Apr 2025 23:20:50 GMT"
        );
        assert_eq!(
            http_date("1970-01-01T00:00:00Z").unwrap(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            http_date("2024-03-01T01:30:00+02:00").unwrap(),
            "Thu, 29 Feb 2024 23:30:00 GMT"
        );
        assert_eq!(
            http_date("2000-12-31T23:59:59-00:01").unwrap(),
            "Mon, 01 Jan 2001 00:00:59 GMT"
        );
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-04-12",
            "2025-04-12T23:20:50",
            "tomorrow",
            "2025-13-01T00:00:00Z",
        ] {
            assert!(http_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_auth_value() {
        let a = BasicAuth {
            user: "gerard".into(),
            password: "password".into(),
        };
        assert_eq!(a.header_value(), "Basic Z2VyYXJkOnBhc3N3b3Jk");
    }

    #[test]
    fn header_names_with_their_keys() {
        let m = parse(json!({"header.Filter": {"scope": ["request"], "name": "X-A",
            "modifier": {"header.Blacklist": {"scope": ["request"], "names": ["Host"]}},
            "else": {"header.Append": {"scope": ["request"], "name": "X-B", "value": "1"}}}}));
        let names: Vec<String> = m
            .header_names()
            .iter()
            .map(|(k, n)| format!("{}={n}", k.join("/")))
            .collect();
        assert_eq!(
            names,
            [
                "header.Filter/modifier/header.Blacklist/names/0=Host",
                "header.Filter/else/header.Append/name=X-B"
            ]
        );
    }
}
