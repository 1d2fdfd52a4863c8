package subjects

import "testing"

func TestRoomSubjectsAreDistinct(t *testing.T) {
	room := "general"
	seen := map[string]bool{}
	for _, s := range []string{Room(room), Live(room), Typing(room), Presence(room),
		HistoryRecent, HistorySince, HistoryLobby, PresenceJoin, PresenceLeave,
		PresenceRoster, PresenceCounts, PresenceTyping, Access(room), PresenceAccess, PresenceRooms,
		PresenceRoomCreate, PresenceRoomDM, PresenceRoomInvite, PresenceRoomRole, PresenceRoomModerate,
		PresenceRoomTopic} {
		if seen[s] {
			t.Fatalf("subject %q used twice", s)
		}
		seen[s] = true
	}
	for _, s := range []string{Room(room), Live(room), Typing(room), Presence(room), Access(room)} {
		if got := RoomFromSubject(s); got != room {
			t.Errorf("RoomFromSubject(%q) = %q", s, got)
		}
	}
}
