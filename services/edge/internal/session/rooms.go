package session

// roomSet is the rooms a connection joined. A connection joins few rooms
// (at most MaxRooms): a slice costs a fraction of a map's memory, which
// matters for tens of thousands of idle connections.
type roomSet []*membership

func (rs roomSet) get(room string) (*membership, bool) {
	for _, ms := range rs {
		if ms.room == room {
			return ms, true
		}
	}
	return nil, false
}

// put adds ms; its room must not be in the set.
func (rs *roomSet) put(ms *membership) { *rs = append(*rs, ms) }

func (rs *roomSet) del(room string) {
	s := *rs
	for i, ms := range s {
		if ms.room == room {
			last := len(s) - 1
			s[i] = s[last]
			s[last] = nil
			*rs = s[:last]
			return
		}
	}
}
