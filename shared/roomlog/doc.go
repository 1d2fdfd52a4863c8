// Package roomlog is the room log: the one definition, shared by the
// history service and the edge, of what a room's history is. It is a
// contract like the wire types, because both tiers present rooms to
// clients and must present each room identically, whichever of them
// answers:
//
//   - reading: a room's events are read straight from the CHAT stream, in
//     sequence order, with JetStream direct gets ("next by subject",
//     batched), never with a consumer, so a read creates no server state
//     (Reader, Reader.Scan, Reader.ScanRoom);
//   - decoding: a stored stream message becomes a wire.Message by one
//     rule, and a message the rule refuses is in no tier's view of the
//     room: history parks it, the edge neither delivers nor serves it
//     (Decoder);
//   - linking: a message's prev is the id of the room message before it
//     (Link), also across a store that lags the stream: Pages joins the
//     stored part of a room (history's database, up to the consumer's ack
//     floor) with the stream above it into one chain;
//   - the catch-up merge rule: a joining member gets its history first
//     and then exactly the buffered live messages above its cursor, with
//     no gap and no duplicate between them (Unseen, Handover).
//
// The package holds no storage and no SQL: history plugs its database in
// through the Store interface, the edge uses the reader and the decoder
// for its stream fallback and live delivery.
package roomlog
