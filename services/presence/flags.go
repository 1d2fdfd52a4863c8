package presence

import "github.com/hubbub-chat/hubbub/shared/config"

// RegisterFlags defines presence's own settings on f. The typing and lease
// TTLs and the replica count are shared with the other services: FromCommon
// copies them from config.Common.
func (c *Config) RegisterFlags(f *config.Flags) {
	f.Duration(&c.Grace, "grace", "HUBBUB_PRESENCE_GRACE", DefaultGrace, "how long a user stays online after their last connection left")
	f.Duration(&c.SweepInterval, "sweep-interval", "HUBBUB_PRESENCE_SWEEP_INTERVAL", DefaultSweepInterval, "how often grace periods are checked")
	f.Int(&c.MaxRoomsPerUser, "max-rooms-per-user", "HUBBUB_PRESENCE_MAX_ROOMS_PER_USER", DefaultMaxRoomsPerUser, "how many rooms one user may create")
}

// FromCommon takes the bucket settings every service must agree on.
func (c *Config) FromCommon(cm config.Common) {
	c.TypingTTL, c.LeaseTTL, c.Replicas, c.BucketMaxBytes = cm.TypingTTL, cm.LeaseTTL, cm.Replicas, cm.BucketMaxBytes
}
