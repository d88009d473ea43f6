//! Shared pieces of the end-to-end tests and benchmarks: people, schools and stores as the
//! scenarios name them.

use shidao_core::{DeviceId, Editor, Role, SchoolId, UserId};

/// A person on their own tablet.
pub fn person(user: &str, role: Role) -> Editor {
    Editor {
        user: UserId::new(user).expect("valid user id"),
        device: DeviceId::new(format!("tablet-{user}")).expect("valid device id"),
        role,
    }
}

pub fn school(id: &str) -> SchoolId {
    SchoolId::new(id).expect("valid school id")
}
