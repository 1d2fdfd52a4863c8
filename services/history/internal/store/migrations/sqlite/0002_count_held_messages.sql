-- A room's message_count now counts the messages held (retention subtracts
-- what it deletes); before, it counted every message ever stored. Recount
-- from the messages table once (one scan of the (room, id) index).
UPDATE rooms SET message_count = (SELECT count(*) FROM messages m WHERE m.room = rooms.room);
