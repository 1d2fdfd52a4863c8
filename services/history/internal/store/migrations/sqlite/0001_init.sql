-- Messages, keyed by their CHAT stream sequence.
CREATE TABLE messages (
    id      INTEGER PRIMARY KEY,
    room    TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    body    TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    ts      INTEGER NOT NULL,
    cid     TEXT    NOT NULL DEFAULT ''
);
-- Serves "newest N in room before X" and "everything in room after X".
CREATE INDEX messages_room_id ON messages (room, id);

-- One row per room, maintained in the same transaction as inserts, so the
-- lobby never scans messages.
CREATE TABLE rooms (
    room            TEXT    PRIMARY KEY,
    last_id         INTEGER NOT NULL,
    last_ts         INTEGER NOT NULL,
    message_count   INTEGER NOT NULL,
    last_user       TEXT    NOT NULL,
    last_body       TEXT    NOT NULL,
    last_kind       TEXT    NOT NULL,
    last_cid        TEXT    NOT NULL DEFAULT '',
    trimmed_through INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rooms_last_id ON rooms (last_id);

-- Identity of the stream whose sequence space the ids belong to.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
