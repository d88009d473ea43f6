//! Enrolment by QR code: what the relay puts in an enrolment QR code (its public address, a
//! one-time code, the fingerprint of the district's own certificate authority), and the code
//! drawn as SVG.
//!
//! The payload format is the core's ([`shidao_core::sync::enrol_payload`]); this module only
//! knows the relay's settings: `--public-url` (`SHIDAO_PUBLIC_URL`), the address devices reach
//! the relay at, which the relay cannot know by itself behind a proxy; and `--enrol-ca`
//! (`SHIDAO_ENROL_CA`), the district CA certificate (PEM) whose SHA-256 goes into the code and
//! which the relay hands out at `GET /v1/ca.pem` for a device to check against it.

use std::path::Path;

use rusqlite::Connection;
use shidao_core::sync::enrol_payload::{pem_fingerprint, EnrolPayload};

use crate::accounts;
use crate::error::{AppError, AppResult};

/// The district CA a payload names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolCa {
    /// The certificate as given (PEM), served at `/v1/ca.pem`.
    pub pem: String,
    /// SHA-256 of its DER, lowercase hex.
    pub fingerprint: String,
}

/// The relay's enrolment settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrolSettings {
    pub public_url: Option<String>,
    pub ca: Option<EnrolCa>,
}

impl EnrolSettings {
    /// The settings from the command line: the public address checked as a payload would
    /// check it, the CA read and fingerprinted.
    pub fn load(public_url: Option<&str>, ca: Option<&Path>) -> Result<EnrolSettings, String> {
        let public_url = match public_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => Some(
                EnrolPayload::new(u, "CHECK", None).map_err(|e| format!("--public-url {u}: {e}"))?.server,
            ),
        };
        let ca = match ca {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| format!("--enrol-ca {}: {e}", path.display()))?;
                let fingerprint = pem_fingerprint(&pem).ok_or_else(|| format!("--enrol-ca {}: the file holds no PEM certificate", path.display()))?;
                Some(EnrolCa { pem, fingerprint })
            }
        };
        Ok(EnrolSettings { public_url, ca })
    }

    /// The payload for a code; a relay with no public address makes none.
    pub fn payload(&self, code: &str) -> AppResult<EnrolPayload> {
        let server = self.public_url.as_deref().ok_or_else(|| {
            AppError::BadRequest(
                "the relay has no public address: start it with --public-url (SHIDAO_PUBLIC_URL) to make enrolment QR codes".into(),
            )
        })?;
        EnrolPayload::new(server, code, self.ca.as_ref().map(|c| c.fingerprint.as_str())).map_err(|e| AppError::BadRequest(e.to_string()))
    }
}

/// A code issued for enrolment by QR: the code, its payload (when the relay has a public
/// address) and when it expires.
#[derive(Debug, Clone)]
pub struct Issued {
    pub code: String,
    pub payload: Option<EnrolPayload>,
    pub expires_at: i64,
}

/// Issues a one-time code for `user` with its payload.
pub fn issue(conn: &Connection, settings: &EnrolSettings, user: &str, now: i64, by: (&str, Option<&str>)) -> AppResult<Issued> {
    let entry = crate::audit::Entry {
        actor: by.0,
        actor_role: by.1,
        action: "enrol.code",
        target: Some(user),
        detail: Some(if settings.public_url.is_some() { "QR" } else { "code" }),
        ..Default::default()
    };
    // The code and its audit row are kept together, or neither; the log never holds the code.
    let code = crate::audit::recorded(conn, now, entry, |_| Ok(None), |c| accounts::new_enrol_code(c, user, now))?;
    let expires_at = now + accounts::CODE_LIFETIME_SECS;
    let payload = settings.public_url.as_ref().map(|_| settings.payload(&code).map(|p| p.expiring(expires_at))).transpose()?;
    Ok(Issued { code, payload, expires_at })
}

/// The QR code of `text` as an SVG element (medium error correction, dark on white, quiet
/// zone kept), to put inline in a page.
pub fn qr_svg(text: &str) -> AppResult<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| AppError::Internal(format!("QR code of {} bytes: {e}", text.len())))?;
    let svg = code.render::<svg::Color>().min_dimensions(220, 220).dark_color(svg::Color("#000")).light_color(svg::Color("#fff")).build();
    // The XML declaration has no place inside HTML.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_needs_a_public_url() {
        let none = EnrolSettings::default();
        assert!(matches!(none.payload("ABCDE-FGHJK"), Err(AppError::BadRequest(m)) if m.contains("--public-url")));
        let s = EnrolSettings::load(Some("https://relay.example.cn/"), None).expect("settings");
        assert_eq!(s.payload("ABCDE-FGHJK").expect("payload").to_string(), "shidao://enrol?v=1&server=https%3A%2F%2Frelay.example.cn&code=ABCDE-FGHJK");
        assert!(EnrolSettings::load(Some("relay.example.cn"), None).expect_err("no scheme").contains("--public-url"));
    }

    #[test]
    fn svg_is_inline() {
        let svg = qr_svg("shidao://enrol?v=1&server=https%3A%2F%2Fa.cn&code=ABCDE-FGHJK").expect("svg");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{}", &svg[..40]);
    }
}
