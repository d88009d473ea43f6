-- user_version 3 → 4: proof of possession for attachments. A stored file's hash is a name, not
-- a key: the server answers about a file only to those who proved they hold its bytes (holders)
-- or who may read it, and each user uploads into a part file of their own.

-- attachment_holders: who proved they hold a stored file by uploading its bytes whole (the
-- bytes hashed to the name). since: when that upload completed (for files stored before version
-- 4, when their upload began).
CREATE TABLE attachment_holders (
    hash TEXT NOT NULL REFERENCES attachments (hash),
    user_id TEXT NOT NULL REFERENCES users (id),
    since INTEGER NOT NULL,
    PRIMARY KEY (hash, user_id)
);

-- attachment_uploads: uploads in progress, one per file and user, each in a part file of its own
-- (`part`, a name in the attachments folder).
CREATE TABLE attachment_uploads (
    hash TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    mime TEXT NOT NULL,
    part TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (hash, user_id)
);

-- Version 3 kept one shared upload per file, in `{hash}.part`, started by `uploaded_by`: it
-- becomes that user's upload and resumes where it stopped.
INSERT INTO attachment_uploads (hash, user_id, size, received, mime, part, created_at)
SELECT hash, uploaded_by, size, received, mime, hash || '.part', created_at
FROM attachments WHERE complete = 0 AND uploaded_by IN (SELECT id FROM users);
DELETE FROM attachments WHERE complete = 0;

-- The holders of the files stored so far: only who uploaded them, the one proof version 3
-- recorded. Those who merely pushed a record naming a file are not holders: naming a hash is
-- what the hole let anyone do.
INSERT INTO attachment_holders (hash, user_id, since)
SELECT hash, uploaded_by, created_at FROM attachments WHERE uploaded_by IN (SELECT id FROM users);

-- attachments now holds stored files only.
ALTER TABLE attachments DROP COLUMN received;
ALTER TABLE attachments DROP COLUMN complete;
