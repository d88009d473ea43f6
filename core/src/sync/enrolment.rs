//! Who a store is enrolled as with a relay: the server's address, the user, this device's id and
//! role, the token, and the district's own certificate authority when the relay's certificate is
//! issued by one. Kept in the store's meta table (key `enrol.identity`, one JSON value written in
//! one statement), so the app, the demo and the tests enrol, sync and fetch files through one
//! path and never handle the token themselves.
//!
//! What must stay true: the token never leaves this type except towards its own server
//! (`Debug` shows it redacted); an enrolment that cannot be read is an error, never an empty one.

use serde::{Deserialize, Serialize};

use super::protocol::EnrolResponse;
use super::SyncError;
use crate::ids::{DeviceId, UserId};
use crate::record::Editor;
use crate::store::Store;
use crate::template::Role;

const KEY: &str = "enrol.identity";

/// An enrolment with a relay.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server's address, without a trailing `/`.
    pub server_url: String,
    /// Who edits on this tablet: the user, the device id the server gave, and the role. The
    /// server accepts only changes made by this user on this device.
    pub editor: Editor,
    /// The person's name as the server knows it.
    pub name: String,
    /// The name this tablet was enrolled under (admins see it).
    pub device_name: String,
    /// A certificate (PEM) trusted besides the system's roots: the district's own authority.
    pub server_certificate: Option<String>,
    token: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("server_url", &self.server_url)
            .field("editor", &self.editor)
            .field("name", &self.name)
            .field("device_name", &self.device_name)
            .field("server_certificate", &self.server_certificate.as_ref().map(|_| "PEM"))
            .field("token", &"redacted")
            .finish()
    }
}

/// The enrolment as the store keeps it (the shape tablets enrolled by earlier versions hold).
#[derive(Serialize, Deserialize)]
struct Kept {
    server_url: String,
    token: String,
    device: String,
    user: String,
    role: String,
    name: String,
    device_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_certificate: Option<String>,
}

fn editor(user: &str, device: &str, role: &str) -> Result<Editor, SyncError> {
    let bad = |e: crate::ids::InvalidId| SyncError::Enrolment(e.to_string());
    let role = Role::parse(role).ok_or_else(|| SyncError::Enrolment(format!("unknown role `{role}`")))?;
    Ok(Editor { user: UserId::new(user).map_err(bad)?, device: DeviceId::new(device).map_err(bad)?, role })
}

impl Enrolment {
    /// The enrolment a server's answer to a one-time code gives, for the server at `server_url`.
    pub fn from_response(
        server_url: &str,
        answer: EnrolResponse,
        device_name: &str,
        server_certificate: Option<String>,
    ) -> Result<Enrolment, SyncError> {
        Ok(Enrolment {
            server_url: server_url.trim_end_matches('/').to_string(),
            editor: editor(&answer.user, &answer.device, &answer.role)?,
            name: answer.name,
            device_name: device_name.to_string(),
            server_certificate,
            token: answer.token,
        })
    }

    /// The token to send to this enrolment's server.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The store's enrolment, or `None` before the first.
    pub fn load(store: &Store) -> Result<Option<Enrolment>, SyncError> {
        let Some(json) = store.meta(KEY)? else { return Ok(None) };
        let kept: Kept = serde_json::from_str(&json).map_err(|e| SyncError::Enrolment(format!("the stored enrolment cannot be read: {e}")))?;
        Ok(Some(Enrolment {
            editor: editor(&kept.user, &kept.device, &kept.role)?,
            server_url: kept.server_url,
            name: kept.name,
            device_name: kept.device_name,
            server_certificate: kept.server_certificate,
            token: kept.token,
        }))
    }

    /// The store's enrolment; `NotEnrolled` before the first.
    pub fn required(store: &Store) -> Result<Enrolment, SyncError> {
        Enrolment::load(store)?.ok_or(SyncError::NotEnrolled)
    }

    /// Keeps this enrolment in the store, replacing an earlier one.
    pub fn save(&self, store: &Store) -> Result<(), SyncError> {
        let kept = Kept {
            server_url: self.server_url.clone(),
            token: self.token.clone(),
            device: self.editor.device.to_string(),
            user: self.editor.user.to_string(),
            role: self.editor.role.as_str().to_string(),
            name: self.name.clone(),
            device_name: self.device_name.clone(),
            server_certificate: self.server_certificate.clone(),
        };
        let json = serde_json::to_string(&kept).map_err(|e| SyncError::Encode(e.to_string()))?;
        Ok(store.set_meta(KEY, &json)?)
    }
}

#[cfg(feature = "http")]
mod driver {
    use super::Enrolment;
    use crate::sync::http::{Cancel, DriverError, HttpSync, Progress, StoreAccess, Summary};
    use crate::sync::Round;

    impl Enrolment {
        /// Enrols with the server `http` talks to, with a one-time code from the programme's
        /// admin, under `device_name`, and keeps the enrolment in `store` (replacing an earlier
        /// one). `server_certificate` is the authority `http` was made to trust, kept for later
        /// syncs.
        pub async fn enrol<S: StoreAccess>(
            http: &HttpSync,
            store: S,
            code: &str,
            device_name: &str,
            server_certificate: Option<String>,
        ) -> Result<Enrolment, DriverError> {
            let answer = http.enrol(code, device_name).await?;
            let enrolment = Enrolment::from_response(http.base(), answer, device_name, server_certificate)?;
            store.with(|s| enrolment.save(s))?;
            Ok(enrolment)
        }

        /// Syncs `store` as this enrolment over `http` (see [`HttpSync::sync_rounds`]).
        pub async fn sync<S: StoreAccess>(
            &self,
            http: &HttpSync,
            store: S,
            cancel: &Cancel,
            on_round: impl FnMut(&Progress, &Round),
        ) -> Result<Summary, DriverError> {
            http.sync_rounds(store, &self.token, &self.editor, cancel, on_round).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> EnrolResponse {
        EnrolResponse { device: "dev-1".into(), token: "secret-token".into(), user: "wang".into(), role: "inspector".into(), name: "王老师".into() }
    }

    #[test]
    fn an_enrolment_is_kept_whole_and_its_token_is_not_printed() {
        let store = Store::open_in_memory().expect("store");
        assert_eq!(Enrolment::load(&store).expect("load"), None);
        assert!(matches!(Enrolment::required(&store), Err(SyncError::NotEnrolled)));
        let e = Enrolment::from_response("https://relay.example/", answer(), "王老师的平板", Some("PEM".into())).expect("enrolment");
        assert_eq!(e.server_url, "https://relay.example");
        e.save(&store).expect("save");
        assert_eq!(Enrolment::required(&store).expect("load"), e);
        assert_eq!(e.token(), "secret-token");
        assert!(!format!("{e:?}").contains("secret-token"), "{e:?}");
    }

    #[test]
    fn an_enrolment_that_cannot_be_read_is_an_error() {
        let store = Store::open_in_memory().expect("store");
        store.set_meta(KEY, "{not json").expect("meta");
        assert!(matches!(Enrolment::load(&store), Err(SyncError::Enrolment(_))));
        let bad = EnrolResponse { role: "janitor".into(), ..answer() };
        let err = Enrolment::from_response("https://relay.example", bad, "平板", None).expect_err("unknown role");
        assert!(err.to_string().contains("janitor"), "{err}");
    }
}
