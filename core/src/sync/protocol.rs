//! The sync protocol's messages, shared by devices and the server (see `docs/protocol.md`).
//!
//! One HTTP round trip: `POST /v1/sync` with a gzip-compressed JSON [`SyncRequest`] carrying the
//! changes of every record the device changed since the server last acknowledged it, and the
//! pull cursor; the reply, a gzip-compressed JSON [`SyncResponse`], says per record whether the
//! push was accepted (or refused, with a code and reason), and carries the changes of records in
//! the device's scope that it lacks, in pages under a size limit.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// Version of the protocol; a server refuses a request of another version with `protocol`.
pub const PROTOCOL: u32 = 1;
/// Largest compressed request body the server reads (413 beyond).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest decompressed body either side accepts (a zip bomb stops here).
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;
/// Default size of one page of pulled changes.
pub const DEFAULT_PULL_BYTES: u64 = 1024 * 1024;

/// Byte strings travel as base64 inside the JSON.
pub mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// What a device sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub protocol: u32,
    /// Unique per attempt; a replay with the same id and body changes nothing.
    pub request_id: String,
    /// The last change sequence number of the server the device has pulled up to.
    pub cursor: u64,
    /// The scope version the device last received; when the server's differs, it pulls from 0.
    #[serde(default)]
    pub scope: Option<String>,
    /// The reference-data version the device holds; the server sends reference data when it differs.
    #[serde(default)]
    pub reference: Option<String>,
    pub push: Vec<Push>,
    /// Size limit of the pulled changes in this response (server caps it).
    #[serde(default)]
    pub max_pull_bytes: Option<u64>,
    /// Content hashes of form definitions the device's reference data lists but the device
    /// lacks; the server answers with their definitions in [`SyncResponse::forms`]. Empty (and
    /// left out) once the device holds every form of its programme.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub want_forms: Vec<String>,
    /// Changes the device set aside after a refusal by the rules, reported once so that
    /// reviewers see them beside the record (left out when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAsideReport>,
    /// The app and its version (`shidao-android/1.4.0`), shown to admins beside the device; at
    /// most [`MAX_APP_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// The longest app name and version a sync request may carry.
pub const MAX_APP_CHARS: usize = 100;

/// One entry a device set aside (`Store::set_asides`), as the relay keeps it for reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAsideReport {
    pub record: String,
    /// When the device set it aside (its clock, seconds).
    pub at: i64,
    /// The relay's refusal code and reason.
    pub code: String,
    pub reason: String,
    /// The answers the refused changes touched, the review steps they took, and the answers
    /// written again as new changes.
    pub fields: Vec<String>,
    pub acts: Vec<String>,
    pub reapplied: Vec<String>,
    /// The refused Automerge changes (empty when they were too large to report).
    #[serde(with = "b64")]
    pub changes: Vec<u8>,
}

/// The changes of one record the server has not acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub record: String,
    /// Automerge change chunks (as `save_after`), or the whole document.
    #[serde(with = "b64")]
    pub changes: Vec<u8>,
    /// The device's heads once these changes are applied (hex).
    pub heads: Vec<String>,
}

/// What happened to a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored; the server has every change up to the pushed heads.
    Accepted,
    /// Nothing of it was stored; `code` and `reason` say why.
    Refused,
    /// The server lacks earlier changes these depend on: send the whole record next time.
    ResendAll,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResult {
    pub record: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Changes of one record the device lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pull {
    pub record: String,
    #[serde(with = "b64")]
    pub changes: Vec<u8>,
}

/// A school as devices see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolInfo {
    pub id: String,
    pub programme: String,
    pub name: String,
    /// 示范 / 优质 / 潜质.
    pub category: String,
    pub key_project: String,
}

/// A programme or school task with a numeric target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: String,
    pub programme: String,
    #[serde(default)]
    pub school: Option<String>,
    pub title: String,
    pub target: f64,
    pub unit: String,
    pub start_date: String,
    pub due_date: String,
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub device: String,
}

/// A form version the programme has published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: String,
    pub version: u32,
    /// The content hash of its definition (SHA-256 of the JSON), with which a device asks for
    /// it; absent from servers that only knew their built-in forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Retired: no new records of this version; its records stay readable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

/// A form definition a device asked for: the JSON of `docs/templates.md`, whose SHA-256 must be
/// `hash` (the device checks, and stores nothing of a round with a mismatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormDef {
    pub hash: String,
    pub definition: String,
}

/// The reference data a device needs to fill forms: who it is, its schools, tasks, templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub version: String,
    pub user: UserInfo,
    pub schools: Vec<SchoolInfo>,
    pub tasks: Vec<TaskInfo>,
    pub templates: Vec<TemplateRef>,
    /// The programme's indicator bank: what an evaluation's indicator rows name (left out when
    /// the programme keeps none, and by older servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<IndicatorInfo>,
}

/// An indicator of the programme's bank, as a tablet offers it in an evaluation's indicator row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub name_en: String,
    /// The report chapter it belongs to (a chapter id of the programme's report structure).
    pub chapter: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub target: Option<f64>,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub protocol: u32,
    /// Pull from here next time.
    pub cursor: u64,
    /// More changes are waiting: sync again.
    pub more: bool,
    pub scope: String,
    pub results: Vec<PushResult>,
    pub pull: Vec<Pull>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// The definitions the request asked for in `want_forms` (those of the device's programme).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forms: Vec<FormDef>,
    /// Seconds since 1970 by the server's clock (devices show a warning when far off).
    pub server_time: i64,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable: `unauthorized`, `revoked`, `forbidden`, `too_large`, `bad_request`, …
    pub code: String,
    /// For a person.
    pub reason: String,
}

/// Enrolment of a device with a one-time code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub code: String,
    pub device_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    pub device: String,
    pub token: String,
    pub user: String,
    pub role: String,
    pub name: String,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("body is larger than {MAX_DECOMPRESSED_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("body is not a valid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a message as gzip-compressed JSON.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let json = serde_json::to_vec(msg)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 3), flate2::Compression::fast());
    gz.write_all(&json).map_err(WireError::Gzip)?;
    gz.finish().map_err(WireError::Gzip)
}

/// Decodes gzip-compressed (or, when `gzip` is false, plain) JSON, refusing bodies that
/// decompress beyond [`MAX_DECOMPRESSED_BYTES`].
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8], gzip: bool) -> Result<T, WireError> {
    if !gzip {
        if body.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(WireError::TooLarge);
        }
        return Ok(serde_json::from_slice(body)?);
    }
    let mut out = Vec::new();
    let mut limited = flate2::read::GzDecoder::new(body).take(MAX_DECOMPRESSED_BYTES + 1);
    limited.read_to_end(&mut out).map_err(WireError::Gzip)?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(WireError::TooLarge);
    }
    Ok(serde_json::from_slice(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_compressed() {
        let req = SyncRequest {
            protocol: PROTOCOL,
            request_id: "r1".into(),
            cursor: 7,
            scope: None,
            reference: Some("v1".into()),
            push: vec![Push { record: "x".into(), changes: vec![0, 1, 2, 255], heads: vec!["ab".into()] }],
            max_pull_bytes: None,
            want_forms: Vec::new(),
            set_aside: Vec::new(),
            app: None,
        };
        let bytes = encode(&req).expect("encode");
        assert_eq!(decode::<SyncRequest>(&bytes, true).expect("decodes"), req);
        assert!(decode::<SyncRequest>(b"not gzip", true).is_err());
        assert!(decode::<SyncRequest>(br#"{"protocol": 1}"#, false).is_err());
    }

    #[test]
    fn a_zip_bomb_is_refused() {
        let zeros = vec![b' '; (MAX_DECOMPRESSED_BYTES + 10) as usize];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).expect("write");
        let bomb = gz.finish().expect("finish");
        assert!(bomb.len() < 1024 * 1024);
        assert!(matches!(decode::<SyncRequest>(&bomb, true), Err(WireError::TooLarge)));
    }
}
