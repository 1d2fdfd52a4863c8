-- The conversation (DESIGN §3a). Change events (edit, delete, reaction)
-- are rows like messages, with target the id they change; the store folds
-- each into its target as it inserts it, so a message row holds its
-- current body (edited: ms of the last edit; deleted: a tombstone, body
-- ''), its mentions ("\n"-joined) and its reactions (table reactions).
-- react_on is a reaction's direction: 0 none, 1 on, 2 off.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS target   BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS emoji    TEXT    NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS react_on BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited   BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted  BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions TEXT    NOT NULL DEFAULT '';
-- Pages show messages only: "newest N messages of room before X" and the
-- unread counts skip the change events.
CREATE INDEX IF NOT EXISTS messages_room_msg ON messages (room, id) WHERE kind IN ('message', 'system');
-- A delete blanks the edits of its target.
CREATE INDEX IF NOT EXISTS messages_target ON messages (target) WHERE target <> 0;

-- The reactions of a message: one row per (emoji, user). epos orders a
-- message's emoji (the id of the event that gave the emoji first, since
-- it last had no user), upos its users (the id of the event that added
-- the user).
CREATE TABLE IF NOT EXISTS reactions (
    target  BIGINT  NOT NULL,
    emoji   TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    room    TEXT    NOT NULL,
    epos    BIGINT  NOT NULL,
    upos    BIGINT  NOT NULL,
    PRIMARY KEY (target, emoji, user_id)
);
CREATE INDEX IF NOT EXISTS reactions_room_target ON reactions (room, target);

-- The users a chat message (kind message, not deleted) mentions, other
-- than its author: counted per user and room for the unread state.
CREATE TABLE IF NOT EXISTS mentions (
    id      BIGINT  NOT NULL,
    user_id TEXT    NOT NULL,
    room    TEXT    NOT NULL,
    PRIMARY KEY (id, user_id)
);
CREATE INDEX IF NOT EXISTS mentions_user ON mentions (user_id, room, id);

-- Room activity, counts and the last message now consider chat messages
-- (kind message) only: recompute the summaries from the rows held. A room
-- without one keeps its row (its retention watermark) with last_id 0.
UPDATE rooms SET
    message_count = (SELECT count(*) FROM messages m WHERE m.room = rooms.room AND m.kind = 'message'),
    last_id = COALESCE((SELECT max(m.id) FROM messages m WHERE m.room = rooms.room AND m.kind = 'message'), 0);
UPDATE rooms SET
    last_ts   = COALESCE((SELECT m.ts      FROM messages m WHERE m.id = rooms.last_id), 0),
    last_user = COALESCE((SELECT m.user_id FROM messages m WHERE m.id = rooms.last_id), ''),
    last_body = COALESCE((SELECT m.body    FROM messages m WHERE m.id = rooms.last_id), ''),
    last_kind = COALESCE((SELECT m.kind    FROM messages m WHERE m.id = rooms.last_id), ''),
    last_cid  = COALESCE((SELECT m.cid     FROM messages m WHERE m.id = rooms.last_id), '');
