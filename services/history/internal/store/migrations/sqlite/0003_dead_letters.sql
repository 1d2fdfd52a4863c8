-- Stream messages ingest parked instead of storing (dead letters): not a
-- room message, a body that breaks the message rule, or a row the database
-- rejected. Keyed by stream sequence, so parking again on a redelivery is a
-- no-op. The payload is kept byte for byte (a blob: U+0000 survives);
-- parked_at is in Unix milliseconds.
-- IF NOT EXISTS: a database whose migration log was rewound re-applies this.
CREATE TABLE IF NOT EXISTS dead_letters (
    seq       INTEGER PRIMARY KEY,
    room      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    reason    TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT '',
    parked_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_parked_at ON dead_letters (parked_at);
