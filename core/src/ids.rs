//! Identifiers as newtypes, so a school id is never passed where a user id belongs.
//!
//! Ids are short printable strings (`[A-Za-z0-9_.:-]`, 1–64 characters): UUIDs for records and
//! devices, codes from the district for schools and users. The `/` that joins a user and a device
//! in a change's author can therefore never appear inside an id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An id that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what} id (1–64 characters of A–Z a–z 0–9 _ . : -)")]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
}

fn valid(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                if valid(&s) { Ok(Self(s)) } else { Err(InvalidId { what: $what, value: s }) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        /// Stored as its text.
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0.as_str()))
            }
        }

        /// Read from its text; a stored value that is not a valid id is an error, not an id.
        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = String::column_result(v)?;
                Self::new(text).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

id_type!(
    /// A filled form.
    RecordId, "record"
);
id_type!(
    /// A person with an account.
    UserId, "user"
);
id_type!(
    /// One tablet (one installation of the app).
    DeviceId, "device"
);
id_type!(
    /// A school taking part in a programme.
    SchoolId, "school"
);
id_type!(
    /// A row of a repeat group; stable across reorders and merges.
    RowId, "row"
);

impl RecordId {
    /// A fresh random record id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl RowId {
    /// A fresh random row id (short: rows are many and ids are stored in the document).
    pub fn random() -> Self {
        let u = uuid::Uuid::new_v4();
        Self(u.simple().to_string()[..12].to_string())
    }
}

impl DeviceId {
    /// A fresh random device id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(UserId::new("insp-01").is_ok());
        assert!(SchoolId::new("ouhai:033").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a/b").is_err());
        assert!(UserId::new("x".repeat(65)).is_err());
        let e = SchoolId::new("一中").unwrap_err();
        assert!(e.to_string().contains("school"), "{e}");
        assert_ne!(RowId::random(), RowId::random());
        let json = serde_json::to_string(&RecordId::new("r1").expect("valid")).expect("json");
        assert_eq!(json, "\"r1\"");
        assert!(serde_json::from_str::<RecordId>("\"bad id\"").is_err());
    }
}
