//! `ShidaoStore`: the device's store as an app holds it (one per app, opened on a file path).
//!
//! The core `Store` owns one SQLite connection, which is not `Sync`: it sits in a mutex shared
//! with every `FormRecord` opened from it. Lock order is always record, then store, so two
//! threads can never wait on each other. A panic while the store is locked leaves a poisoned
//! mutex; the store is still sound (an interrupted SQLite transaction rolls back when dropped), so
//! the poison is cleared and later calls go on.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use shidao_core::store::{Store, StoreKey, StoreOptions};
use shidao_core::{RecordId, SchoolId};

use crate::error::{guard, Result, ShidaoError};
use crate::record::FormRecord;
use crate::sync::{ChangeListener, FormsListener};
use crate::types::{
    record_view, template_info, Durability, Editor, RecordFilter, RecordSummary, RecordView, SalvageReport, SetAsideEntry,
    StoredFile, TemplateInfo,
};

/// What a store and the records opened from it share.
pub(crate) struct Shared {
    store: Mutex<Store>,
    listener: Mutex<Option<Arc<dyn ChangeListener>>>,
    forms_listener: Mutex<Option<Arc<dyn FormsListener>>>,
    /// A sync of this store is running (one at a time; see `sync.rs`).
    pub(crate) syncing: AtomicBool,
}

impl Shared {
    /// The store, locked; a poisoned lock is recovered (see the module comment).
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| {
            self.store.clear_poison();
            poisoned.into_inner()
        })
    }

    /// Tells the listener, if any, that a record changed. Called with no lock held, so the
    /// listener may read the record at once; a listener that fails is ignored (it must not undo
    /// an edit that is already on disk).
    pub(crate) fn notify(&self, record_id: &str) {
        let listener = self.listener.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
        if let Some(l) = listener {
            let id = record_id.to_string();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.on_record_changed(id)));
        }
    }

    /// Tells the forms listener, if any, that the list of forms changed (as `notify`).
    pub(crate) fn notify_forms(&self) {
        let listener = self.forms_listener.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
        if let Some(l) = listener {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.on_forms_changed()));
        }
    }
}

/// The device's store of records and attached files: one SQLite file the app keeps in its private
/// storage. Open it once and share it; every method may be called from any thread.
#[derive(uniffi::Object)]
pub struct ShidaoStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ShidaoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShidaoStore").finish_non_exhaustive()
    }
}

/// The key an app passed, checked for length; the app's bytes are wiped either way.
fn store_key(bytes: Vec<u8>) -> Result<StoreKey> {
    let len = bytes.len();
    StoreKey::from_vec(bytes).ok_or_else(|| ShidaoError::WrongKey {
        reason: format!("a store key is {} bytes, this one has {len}", StoreKey::LEN),
    })
}

impl ShidaoStore {
    fn wrap(store: Store) -> Arc<Self> {
        Arc::new(ShidaoStore {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                listener: Mutex::new(None),
                forms_listener: Mutex::new(None),
                syncing: AtomicBool::new(false),
            }),
        })
    }
}

#[uniffi::export]
impl ShidaoStore {
    /// Opens (or creates) the store at `path`; every acknowledged edit survives a power cut.
    /// A file that is not a readable store is moved aside (never deleted) and the error
    /// (`Storage`) says where; opening again starts an empty store, and `salvage` copies the
    /// records out of the damaged file.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>> {
        guard(|| Ok(Self::wrap(Store::open(path)?)))
    }

    /// Opens (or creates) the store at `path` with the given durability.
    #[uniffi::constructor]
    pub fn open_with(path: String, durability: Durability) -> Result<Arc<Self>> {
        guard(|| Ok(Self::wrap(Store::open_with(path, StoreOptions { durability, ..Default::default() })?)))
    }

    /// Opens (or creates) the store at `path` encrypted at rest with `key`: 32 bytes the app
    /// keeps in the platform's keystore (Android Keystore, iOS Keychain; see bindings/README.md),
    /// never on disk beside the store. A plain store at `path` is encrypted on this first open
    /// (a crash in the middle leaves it whole, plain or encrypted). A key that does not open the
    /// file, or is not 32 bytes, is `WrongKey`, and the file is left as it is.
    #[uniffi::constructor]
    pub fn open_encrypted(path: String, key: Vec<u8>) -> Result<Arc<Self>> {
        guard(|| {
            let key = store_key(key)?;
            Ok(Self::wrap(Store::open_encrypted(path, &key)?))
        })
    }

    /// `open_encrypted` with the given durability.
    #[uniffi::constructor]
    pub fn open_encrypted_with(path: String, key: Vec<u8>, durability: Durability) -> Result<Arc<Self>> {
        guard(|| {
            let key = store_key(key)?;
            Ok(Self::wrap(Store::open_encrypted_with(path, &key, StoreOptions { durability, ..Default::default() })?))
        })
    }

    /// A store in memory, gone when dropped: for previews and tests.
    #[uniffi::constructor]
    pub fn open_in_memory() -> Result<Arc<Self>> {
        guard(|| Ok(Self::wrap(Store::open_in_memory()?)))
    }

    /// Encrypts the store with a new 32-byte key (a plain store becomes encrypted). The file is
    /// written anew beside the old one and replaces it: a crash leaves every record under the old
    /// key or under the new one. Store the new key in the keystore before calling, and keep the
    /// old one until this returns. Needs the only open store on the file (else `Storage`,
    /// nothing changed).
    pub fn rekey(&self, new_key: Vec<u8>) -> Result<()> {
        guard(|| {
            let key = store_key(new_key)?;
            Ok(self.shared.store().rekey(&key)?)
        })
    }

    /// Whether the store is encrypted at rest.
    pub fn is_encrypted(&self) -> Result<bool> {
        guard(|| Ok(self.shared.store().is_encrypted()))
    }

    /// Every template this store can fill, with labels in `lang` (`"zh"` or `"en"`; anything
    /// else gives Chinese).
    pub fn templates(&self, lang: String) -> Result<Vec<TemplateInfo>> {
        guard(|| Ok(self.shared.store().templates().iter().map(|t| template_info(t, &lang)).collect()))
    }

    /// The newest version of one template.
    pub fn template(&self, template_id: String, lang: String) -> Result<TemplateInfo> {
        guard(|| {
            let t = self.shared.store().template(&template_id, None);
            t.map(|t| template_info(&t, &lang)).ok_or(ShidaoError::NotFound { what: format!("template {template_id}") })
        })
    }

    /// Adds a template from its JSON (a district's own form); it is checked first, and a broken
    /// one is refused with the file, field and problem (`Other`).
    pub fn add_template(&self, file_name: String, json: String, lang: String) -> Result<TemplateInfo> {
        guard(|| Ok(template_info(&*self.shared.store().add_template(&file_name, &json)?, &lang)))
    }

    /// Lists records without loading them, newest first.
    pub fn list_records(&self, filter: RecordFilter) -> Result<Vec<RecordSummary>> {
        guard(|| Ok(self.shared.store().list(&filter)?))
    }

    /// Number of records in the store.
    pub fn count_records(&self) -> Result<u64> {
        guard(|| Ok(self.shared.store().count()?))
    }

    /// Creates a record of the newest version of a template for a school, stored at once; the
    /// editor must be in one of the template's `filled_by` roles.
    pub fn create_record(&self, template_id: String, school_id: String, editor: Editor) -> Result<Arc<FormRecord>> {
        guard(|| {
            let school = SchoolId::new(school_id)?;
            let record = self.shared.store().create(&template_id, &school, &editor)?;
            let id = record.id().to_string();
            self.shared.notify(&id);
            Ok(FormRecord::wrap(self.shared.clone(), record))
        })
    }

    /// Opens a stored record for `editor` to read or edit.
    pub fn open_record(&self, record_id: String, editor: Editor) -> Result<Arc<FormRecord>> {
        guard(|| {
            let id = RecordId::new(record_id)?;
            let record = self.shared.store().load(&id, &editor)?;
            Ok(FormRecord::wrap(self.shared.clone(), record))
        })
    }

    /// Stores a file (at most 20 MiB) and returns its content hash; the same bytes are kept once.
    /// `FormRecord.attach_file` does this and sets the answer in one call.
    pub fn put_attachment(&self, bytes: Vec<u8>, mime: String) -> Result<String> {
        guard(|| Ok(self.shared.store().put_attachment(&bytes, &mime)?))
    }

    /// The bytes and type of a stored file.
    pub fn attachment(&self, hash: String) -> Result<StoredFile> {
        guard(|| {
            let (bytes, mime) = self.shared.store().attachment(&hash)?;
            Ok(StoredFile { bytes, mime })
        })
    }

    /// Every byte of a record as stored: what a backup or a hand-over to another tablet copies.
    pub fn record_bytes(&self, record_id: String) -> Result<Vec<u8>> {
        guard(|| Ok(self.shared.store().record_bytes(&RecordId::new(record_id)?)?))
    }

    /// Merges a copy of a record from elsewhere (another tablet's `record_bytes`, a backup) into
    /// this store, creating it if new; returns its id. Nobody's edit is lost: where two people
    /// set the same field, reading shows both values with their authors. The change listener
    /// is told.
    pub fn merge_record(&self, bytes: Vec<u8>, editor: Editor) -> Result<String> {
        guard(|| {
            let id = self.shared.store().merge_remote(&bytes, &editor)?.to_string();
            self.shared.notify(&id);
            Ok(id)
        })
    }

    /// Copies every readable record out of a damaged store file (the one an `open` moved aside)
    /// into this store. The damaged file is left as it is.
    pub fn salvage(&self, damaged_path: String, editor: Editor) -> Result<SalvageReport> {
        guard(|| Ok(self.shared.store().salvage(std::path::Path::new(&damaged_path), &editor)?.into()))
    }

    /// Changes the server refused by its rules and this tablet set aside, newest first: of one
    /// record, or of every record when `record_id` is `None`. Show them with the record ("not
    /// part of the record: …") so nobody believes a refused note is in it.
    #[uniffi::method(default(record_id = None))]
    pub fn set_aside(&self, record_id: Option<String>) -> Result<Vec<SetAsideEntry>> {
        guard(|| {
            let id = record_id.map(RecordId::new).transpose()?;
            Ok(self.shared.store().set_asides(id.as_ref())?.into_iter().map(SetAsideEntry::from).collect())
        })
    }

    /// The refused copy of a set-aside entry as a record (read only): the server's state at the
    /// time with the refused changes, to show or export what was set aside.
    pub fn set_aside_record(&self, entry_id: i64, editor: Editor, lang: String) -> Result<RecordView> {
        guard(|| {
            let store = self.shared.store();
            let view = store.set_aside_view(entry_id, &editor)?;
            let template = store
                .template(&view.template, Some(view.version))
                .ok_or_else(|| ShidaoError::NotFound { what: format!("template {} v{}", view.template, view.version) })?;
            Ok(record_view(view, &template, &lang))
        })
    }

    /// Sets (or, with `None`, removes) the listener told about every change to a record of this
    /// store: edits through any `FormRecord` of it, records created or merged, and every record
    /// a sync pulled from the server (someone else's edit).
    pub fn set_change_listener(&self, listener: Option<Arc<dyn ChangeListener>>) -> Result<()> {
        guard(|| {
            *self.shared.listener.lock().unwrap_or_else(|p| p.into_inner()) = listener;
            Ok(())
        })
    }

    /// Sets (or, with `None`, removes) the listener told when the list of forms changed: a sync
    /// brought form definitions (a new form or version the programme published) or the
    /// programme changed which versions new records use. Call `templates` again then.
    pub fn set_forms_listener(&self, listener: Option<Arc<dyn FormsListener>>) -> Result<()> {
        guard(|| {
            *self.shared.forms_listener.lock().unwrap_or_else(|p| p.into_inner()) = listener;
            Ok(())
        })
    }

    /// For tests of the error path only: panics inside the call while the store is locked. The
    /// call fails with `Other` ("internal error: …") and the store goes on working.
    pub fn debug_panic(&self, message: String) -> Result<()> {
        guard(|| {
            let _store = self.shared.store();
            panic!("{message}")
        })
    }
}
