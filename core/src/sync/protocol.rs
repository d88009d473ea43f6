//! The sync protocol's messages, shared by devices and the server (see `docs/protocol.md`).
//!
//! One HTTP round trip: `POST /v1/sync` with a [`SyncRequest`] carrying the changes of every
//! record the device changed since the server last acknowledged it, and the pull cursor; the
//! reply, a [`SyncResponse`], says per record whether the push was accepted (or refused, with a
//! code and reason), and carries the changes of records in the device's scope that it lacks, in
//! pages under a size limit.
//!
//! Bodies travel in one of two [`Envelope`]s, named by the request's `Content-Type`: CBOR
//! compressed with deflate (byte strings as they are), or the first apps' gzip-compressed JSON
//! (byte strings in base64). The relay reads both and answers in the envelope it was asked in.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize, Serializer};

/// Version of the protocol; a server refuses a request of another version with `protocol`.
pub const PROTOCOL: u32 = 1;
/// Largest compressed request body the server reads (413 beyond).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest decompressed body either side accepts (a zip bomb stops here).
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;
/// Default size of one page of pulled changes.
pub const DEFAULT_PULL_BYTES: u64 = 1024 * 1024;

/// Byte strings: base64 text in JSON, CBOR byte strings in the binary envelope (a format that is
/// not human-readable takes the bytes as they are).
pub mod b64 {
    use base64::Engine;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    /// Bytes to serialize as [`serialize`] does, for a hand-written `Serialize`.
    pub struct Raw<'a>(pub &'a [u8]);

    impl Serialize for Raw<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(de::Error::custom);
        }
        struct Bytes;
        impl<'de> de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub record: String,
    /// Automerge change chunks (as `save_after`), or the whole document.
    #[serde(with = "b64")]
    pub changes: Vec<u8>,
    /// The device's heads once these changes are applied (hex). The relay does not need them
    /// (it checks that every change applied, and the device keeps what it pushed), so the binary
    /// envelope leaves them out; gzip JSON carries them for relays that still require them.
    #[serde(default)]
    pub heads: Vec<String>,
}

impl Serialize for Push {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let with_heads = s.is_human_readable();
        let mut out = s.serialize_struct("Push", if with_heads { 3 } else { 2 })?;
        out.serialize_field("record", &self.record)?;
        out.serialize_field("changes", &b64::Raw(&self.changes))?;
        if with_heads {
            out.serialize_field("heads", &self.heads)?;
        }
        out.end()
    }
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
    #[error("body is not valid deflate (zlib) data: {0}")]
    Deflate(std::io::Error),
    #[error("body is larger than {MAX_DECOMPRESSED_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("body is not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is not a valid message: {0}")]
    Cbor(String),
    /// The `Content-Type` and `Content-Encoding` name no envelope this side reads.
    #[error("content type `{content_type}` with encoding `{encoding}` is not a sync envelope; send `{BINARY_CONTENT_TYPE}` with `deflate`, or `application/json` (plain or gzip)")]
    Envelope { content_type: String, encoding: String },
}

/// The `Content-Type` of the binary envelope.
pub const BINARY_CONTENT_TYPE: &str = "application/vnd.shidao.sync+cbor";

/// How a sync body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// CBOR, compressed with deflate (zlib): byte strings as they are. What the apps send.
    Binary,
    /// JSON with byte strings in base64, gzip-compressed or plain: what the first apps send.
    Json { gzip: bool },
}

impl Envelope {
    /// The envelope a body's `Content-Type` and `Content-Encoding` name. A missing type is JSON
    /// (the first apps did not always say).
    pub fn from_headers(content_type: Option<&str>, encoding: Option<&str>) -> Result<Envelope, WireError> {
        let kind = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
        match (kind.as_deref(), encoding.as_deref()) {
            (Some(BINARY_CONTENT_TYPE), Some("deflate")) => Ok(Envelope::Binary),
            (None | Some("application/json"), Some("gzip")) => Ok(Envelope::Json { gzip: true }),
            (None | Some("application/json"), None | Some("identity")) => Ok(Envelope::Json { gzip: false }),
            _ => Err(WireError::Envelope {
                content_type: kind.unwrap_or_default(),
                encoding: encoding.unwrap_or_else(|| "identity".into()),
            }),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Envelope::Binary => BINARY_CONTENT_TYPE,
            Envelope::Json { .. } => "application/json",
        }
    }

    /// The `Content-Encoding` of a body in this envelope, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Envelope::Binary => Some("deflate"),
            Envelope::Json { gzip: true } => Some("gzip"),
            Envelope::Json { gzip: false } => None,
        }
    }

    /// Encodes a message in this envelope.
    pub fn encode<T: Serialize>(self, msg: &T) -> Result<Vec<u8>, WireError> {
        match self {
            Envelope::Binary => {
                let mut cbor = Vec::new();
                ciborium::into_writer(msg, &mut cbor).map_err(|e| WireError::Cbor(e.to_string()))?;
                let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(cbor.len() / 2), flate2::Compression::default());
                z.write_all(&cbor).map_err(WireError::Deflate)?;
                z.finish().map_err(WireError::Deflate)
            }
            Envelope::Json { gzip: true } => encode(msg),
            Envelope::Json { gzip: false } => Ok(serde_json::to_vec(msg)?),
        }
    }

    /// Decodes a body in this envelope, refusing one that decompresses beyond
    /// [`MAX_DECOMPRESSED_BYTES`].
    pub fn decode<T: for<'de> Deserialize<'de>>(self, body: &[u8]) -> Result<T, WireError> {
        match self {
            Envelope::Binary => {
                let plain = inflate(flate2::read::ZlibDecoder::new(body)).map_err(|e| match e {
                    WireError::Gzip(e) => WireError::Deflate(e),
                    other => other,
                })?;
                ciborium::from_reader(plain.as_slice()).map_err(|e| WireError::Cbor(e.to_string()))
            }
            Envelope::Json { gzip } => decode(body, gzip),
        }
    }
}

/// Reads a decompressing reader to its end, stopping at [`MAX_DECOMPRESSED_BYTES`].
fn inflate(reader: impl Read) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    reader.take(MAX_DECOMPRESSED_BYTES + 1).read_to_end(&mut out).map_err(WireError::Gzip)?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(WireError::TooLarge);
    }
    Ok(out)
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
    let out = inflate(flate2::read::GzDecoder::new(body))?;
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
    fn the_binary_envelope_round_trips_and_carries_bytes_as_they_are() {
        let changes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let req = SyncRequest {
            protocol: PROTOCOL,
            request_id: "r1".into(),
            cursor: 7,
            scope: None,
            reference: Some("v1".into()),
            push: vec![Push { record: "x".into(), changes: changes.clone(), heads: vec!["ab".into()] }],
            max_pull_bytes: Some(1024),
            want_forms: vec!["h".into()],
            set_aside: Vec::new(),
            app: Some("shidao-android/1.4.0".into()),
        };
        let bin = Envelope::Binary.encode(&req).expect("encode");
        // The binary envelope leaves the pushed heads out (the relay does not need them); JSON
        // keeps them for relays that still require them.
        let mut sent = req.clone();
        sent.push[0].heads.clear();
        assert_eq!(Envelope::Binary.decode::<SyncRequest>(&bin).expect("decodes"), sent);
        assert_eq!(decode::<SyncRequest>(&encode(&req).expect("json"), true).expect("json decodes"), req);
        // A binary body of a tablet that still sends heads is read as before.
        let mut value: ciborium::Value = ciborium::from_reader(&cbor_of(&sent)[..]).expect("cbor value");
        let push = value.as_map_mut().and_then(|m| m.iter_mut().find(|(k, _)| k.as_text() == Some("push"))).map(|(_, v)| v).expect("push");
        let first = push.as_array_mut().and_then(|a| a.first_mut()).and_then(|p| p.as_map_mut()).expect("first push");
        first.push((ciborium::Value::Text("heads".into()), ciborium::Value::Array(vec![ciborium::Value::Text("ab".into())])));
        let mut with_heads = Vec::new();
        ciborium::into_writer(&value, &mut with_heads).expect("cbor");
        let read: SyncRequest = ciborium::from_reader(&with_heads[..]).expect("an older tablet's body");
        assert_eq!(read, req);
        // No base64 inside: the CBOR holds the 3,000 bytes once, not 4,000 characters.
        let mut cbor = Vec::new();
        ciborium::into_writer(&req, &mut cbor).expect("cbor");
        assert!(cbor.len() < 3200, "{} bytes of CBOR", cbor.len());
        assert!(cbor.windows(changes.len()).any(|w| w == changes.as_slice()));
        // Each envelope refuses the other's bodies with a reason, never a wrong value.
        assert!(Envelope::Binary.decode::<SyncRequest>(&encode(&req).expect("json")).is_err());
        assert!(Envelope::Json { gzip: true }.decode::<SyncRequest>(&bin).is_err());
        // A truncated body and a valid deflate stream of something else are refused.
        assert!(matches!(Envelope::Binary.decode::<SyncRequest>(&bin[..bin.len() / 2]), Err(WireError::Deflate(_) | WireError::Cbor(_))));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff").expect("write");
        assert!(matches!(Envelope::Binary.decode::<SyncRequest>(&z.finish().expect("finish")), Err(WireError::Cbor(_))));
    }

    fn cbor_of(req: &SyncRequest) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(req, &mut out).expect("cbor");
        out
    }

    #[test]
    fn envelopes_are_named_by_their_headers() {
        assert_eq!(Envelope::from_headers(Some(BINARY_CONTENT_TYPE), Some("deflate")).expect("binary"), Envelope::Binary);
        assert_eq!(Envelope::from_headers(Some("application/json"), Some("gzip")).expect("json"), Envelope::Json { gzip: true });
        assert_eq!(Envelope::from_headers(Some("application/json; charset=utf-8"), None).expect("plain"), Envelope::Json { gzip: false });
        assert_eq!(Envelope::from_headers(None, Some("gzip")).expect("untyped"), Envelope::Json { gzip: true });
        for (t, e) in [(Some(BINARY_CONTENT_TYPE), None), (Some(BINARY_CONTENT_TYPE), Some("gzip")), (Some("text/plain"), None), (Some("application/json"), Some("br"))] {
            let err = Envelope::from_headers(t, e).expect_err("not an envelope");
            assert!(err.to_string().contains(BINARY_CONTENT_TYPE), "{err}");
        }
    }

    #[test]
    fn a_binary_bomb_is_refused() {
        let zeros = vec![0u8; (MAX_DECOMPRESSED_BYTES + 10) as usize];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&zeros).expect("write");
        let bomb = z.finish().expect("finish");
        assert!(bomb.len() < 1024 * 1024);
        assert!(matches!(Envelope::Binary.decode::<SyncRequest>(&bomb), Err(WireError::TooLarge)));
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
