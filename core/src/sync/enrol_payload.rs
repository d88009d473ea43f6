//! What an enrolment QR code carries: the relay's address, a one-time code, and, for a relay
//! whose HTTPS certificate is issued by a district's own certificate authority, that
//! authority's SHA-256 fingerprint. One format, read and written here only (docs/protocol.md,
//! "Enrolment by QR code"):
//!
//! `shidao://enrol?v=1&server=<percent-encoded URL>&code=<code>[&exp=<unix seconds>][&ca=<64 hex digits>]`
//!
//! `exp` is when the code expires, so that a device told "this code is not valid" can say
//! whether it expired or was used already; the relay alone decides whether a code is valid.
//!
//! What must stay true: [`EnrolPayload::parse`] of [`EnrolPayload::to_string`] gives the same
//! payload back; a payload of another version, a missing or repeated field, an address that is
//! not `http(s)://`, or a fingerprint that is not 32 bytes of hex is refused with an error
//! naming the field. Unknown fields are refused too, so a later version that needs one is not
//! read as if it meant nothing.

use std::fmt;

/// The scheme and path every payload starts with.
pub const PREFIX: &str = "shidao://enrol?";
/// The one version this build reads and writes.
pub const VERSION: u32 = 1;

/// An enrolment QR code's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolPayload {
    /// The relay's public address, `https://…` (or `http://…` on a trusted network), no
    /// trailing slash.
    pub server: String,
    /// The one-time enrolment code, as the relay issued it (`ABCDE-FGHJK`).
    pub code: String,
    /// When the code expires (Unix seconds), as the relay issued it.
    pub expires: Option<i64>,
    /// SHA-256 of the district CA certificate (DER), 64 lowercase hex digits.
    pub ca: Option<String>,
}

/// Why a payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("not an enrolment code: it does not start with {PREFIX}")]
    NotEnrolment,
    #[error("enrolment payload version {0} is not supported (this app reads version {VERSION}); update the app")]
    Version(String),
    #[error("enrolment payload: field `{0}` is missing")]
    Missing(&'static str),
    #[error("enrolment payload: field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

fn field(field: &str, reason: impl Into<String>) -> PayloadError {
    PayloadError::Field { field: field.to_string(), reason: reason.into() }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(name: &str, s: &str) -> Result<String, PayloadError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| field(name, "a % is not followed by two hex digits"))?;
                let b = u8::from_str_radix(hex, 16).map_err(|_| field(name, format!("%{hex} is not a percent escape")))?;
                out.push(b);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| field(name, "not UTF-8"))
}

/// Checks a relay address: `http(s)://host[...]`, no spaces, no query or fragment.
fn check_server(server: &str) -> Result<String, PayloadError> {
    let s = server.trim().trim_end_matches('/');
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return Err(field("server", format!("`{s}` is not an http:// or https:// address"))) };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host.is_empty() {
        return Err(field("server", format!("`{s}` names no host")));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(field("server", format!("`{s}` has a space, query or fragment")));
    }
    Ok(s.to_string())
}

/// Checks a fingerprint: 64 hex digits, `:` between bytes allowed; gives it lowercase, bare.
pub fn check_fingerprint(ca: &str) -> Result<String, PayloadError> {
    let hex: String = ca.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(field("ca", "a SHA-256 fingerprint is 64 hex digits"));
    }
    Ok(hex)
}

/// SHA-256 (lowercase hex) of the first certificate of a PEM text, over its DER bytes: the
/// fingerprint a payload's `ca` is compared with. `None` when the text holds no certificate.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (!der.is_empty()).then(|| hex::encode(Sha256::digest(&der)))
}

fn check_code(code: &str) -> Result<String, PayloadError> {
    let c = code.trim();
    if c.is_empty() {
        return Err(PayloadError::Missing("code"));
    }
    if c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(field("code", "letters, digits and - only, at most 64"));
    }
    Ok(c.to_string())
}

impl EnrolPayload {
    /// A payload from its parts, checked as [`EnrolPayload::parse`] checks them.
    pub fn new(server: &str, code: &str, ca: Option<&str>) -> Result<EnrolPayload, PayloadError> {
        Ok(EnrolPayload { server: check_server(server)?, code: check_code(code)?, expires: None, ca: ca.map(check_fingerprint).transpose()? })
    }

    /// The same payload with the code's expiry.
    pub fn expiring(self, at: i64) -> EnrolPayload {
        EnrolPayload { expires: Some(at), ..self }
    }

    /// Reads a payload (surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<EnrolPayload, PayloadError> {
        let text = text.trim();
        let query = text
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &text[PREFIX.len()..])
            .ok_or(PayloadError::NotEnrolment)?;
        let (mut v, mut server, mut code, mut exp, mut ca) = (None, None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "v" => &mut v,
                "server" => &mut server,
                "code" => &mut code,
                "exp" => &mut exp,
                "ca" => &mut ca,
                other => return Err(field(other, "unknown field")),
            };
            if slot.is_some() {
                return Err(field(name, "given twice"));
            }
            *slot = Some(decode(name, value)?);
        }
        let v = v.ok_or(PayloadError::Missing("v"))?;
        if v != VERSION.to_string() {
            return Err(PayloadError::Version(v));
        }
        let server = server.ok_or(PayloadError::Missing("server"))?;
        let code = code.ok_or(PayloadError::Missing("code"))?;
        let mut p = EnrolPayload::new(&server, &code, ca.as_deref())?;
        if let Some(e) = exp {
            p.expires = Some(e.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| field("exp", format!("`{e}` is not a time (Unix seconds)")))?);
        }
        Ok(p)
    }
}

impl fmt::Display for EnrolPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}v={VERSION}&server={}&code={}", encode(&self.server), encode(&self.code))?;
        if let Some(at) = self.expires {
            write!(f, "&exp={at}")?;
        }
        if let Some(ca) = &self.ca {
            write!(f, "&ca={ca}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn round_trip() {
        let p = EnrolPayload::new("https://shidao.example.cn/relay/", "ABCDE-FGHJK", Some(&FP.to_uppercase())).expect("payload");
        assert_eq!(p.server, "https://shidao.example.cn/relay");
        assert_eq!(p.ca.as_deref(), Some(FP));
        let p = p.expiring(1_790_000_000);
        let text = p.to_string();
        assert_eq!(text, format!("shidao://enrol?v=1&server=https%3A%2F%2Fshidao.example.cn%2Frelay&code=ABCDE-FGHJK&exp=1790000000&ca={FP}"));
        assert_eq!(EnrolPayload::parse(&format!("  {text}\n")).expect("parse"), p);
        let plain = EnrolPayload::new("http://10.0.0.5:7878", "ABCDE-FGHJK", None).expect("payload");
        assert_eq!(EnrolPayload::parse(&plain.to_string()).expect("parse"), plain);
        // A colon-separated fingerprint, as certificate viewers show it, is read too.
        let colons: Vec<String> = FP.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_string()).collect();
        assert_eq!(check_fingerprint(&colons.join(":")).expect("fp"), FP);
    }

    #[test]
    fn malformed() {
        assert_eq!(EnrolPayload::parse("ABCDE-FGHJK"), Err(PayloadError::NotEnrolment));
        assert_eq!(EnrolPayload::parse("https://example.cn/enrol?v=1"), Err(PayloadError::NotEnrolment));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=AB%ZZ"), Err(PayloadError::Field { field, .. }) if field == "code"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=ftp%3A%2F%2Fa.cn&code=ABCDE"), Err(PayloadError::Field { field, .. }) if field == "server"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2F&code=ABCDE"), Err(PayloadError::Field { field, .. }) if field == "server"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&v=1&server=https%3A%2F%2Fa.cn&code=ABCDE"), Err(PayloadError::Field { field, .. }) if field == "v"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=ABCDE&user=li"), Err(PayloadError::Field { field, .. }) if field == "user"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=AB%3CC"), Err(PayloadError::Field { field, .. }) if field == "code"));
        assert!(matches!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=ABCDE&exp=soon"), Err(PayloadError::Field { field, .. }) if field == "exp"));
    }

    #[test]
    fn wrong_version() {
        assert_eq!(EnrolPayload::parse("shidao://enrol?v=2&server=https%3A%2F%2Fa.cn&code=ABCDE"), Err(PayloadError::Version("2".into())));
        assert_eq!(EnrolPayload::parse("shidao://enrol?server=https%3A%2F%2Fa.cn&code=ABCDE"), Err(PayloadError::Missing("v")));
    }

    #[test]
    fn missing_code() {
        assert_eq!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn"), Err(PayloadError::Missing("code")));
        assert_eq!(EnrolPayload::parse("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code="), Err(PayloadError::Missing("code")));
        assert_eq!(EnrolPayload::parse("shidao://enrol?v=1&code=ABCDE"), Err(PayloadError::Missing("server")));
    }

    #[test]
    fn pem_fingerprint_is_over_the_der() {
        // "test" as the DER bytes: SHA-256("test") is FP.
        let pem = "-----BEGIN CERTIFICATE-----\ndGVz\ndA==\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_fingerprint(pem).as_deref(), Some(FP));
        assert_eq!(pem_fingerprint("no certificate"), None);
        assert_eq!(pem_fingerprint("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"), None);
    }

    #[test]
    fn bad_fingerprint() {
        for ca in ["abc", &FP[..62], &format!("{}zz", &FP[..62]), &format!("{FP}00")] {
            let text = format!("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=ABCDE&ca={ca}");
            assert!(matches!(EnrolPayload::parse(&text), Err(PayloadError::Field { ref field, .. }) if field == "ca"), "{ca}");
        }
    }
}
