package natsconn

import (
	"fmt"
	"strconv"
	"strings"
)

// MinServerVersion is the oldest nats-server Hubbub runs on: the presence
// buckets rely on JetStream's limit markers (LimitMarkerTTL, per-message
// TTLs), which came with 2.11.
const MinServerVersion = "2.11.0"

// CheckServerVersion refuses a server version older than MinServerVersion
// (or one it cannot read) with an error wrapping ErrServerTooOld.
func CheckServerVersion(version string) error {
	have, ok := parseVersion(version)
	want, _ := parseVersion(MinServerVersion)
	if !ok {
		return fmt.Errorf("%w: the server reports version %q, which is not a version; nats-server %s is the minimum",
			ErrServerTooOld, version, MinServerVersion)
	}
	for i := range have {
		if have[i] != want[i] {
			if have[i] < want[i] {
				return fmt.Errorf("%w: the server runs nats-server %s; %s is the minimum: upgrade NATS",
					ErrServerTooOld, version, MinServerVersion)
			}
			break
		}
	}
	return nil
}

// parseVersion reads major.minor.patch from "2.11.4", "v2.12.0-RC.1" or
// "2.11" (patch 0); a pre-release counts as its release.
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}
