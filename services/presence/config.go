package presence

import (
	"time"

	"github.com/hubbub-chat/hubbub/shared/defaults"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// Defaults of Config, also the flags' defaults (flags.go) and those
// docs/operations.md lists.
const (
	// DefaultGrace is Config.Grace's default (-grace, HUBBUB_PRESENCE_GRACE):
	// the roster store's.
	DefaultGrace = roster.DefaultGrace
	// DefaultTypingTTL is Config.TypingTTL's default: the provisioned
	// typing bucket's.
	DefaultTypingTTL = provision.DefaultTypingTTL
	// DefaultLeaseTTL is Config.LeaseTTL's default: the provisioned edges
	// bucket's.
	DefaultLeaseTTL = provision.DefaultLeaseTTL
	// DefaultSweepInterval is Config.SweepInterval's default
	// (-sweep-interval, HUBBUB_PRESENCE_SWEEP_INTERVAL).
	DefaultSweepInterval = time.Second
	// DefaultWorkers is Config.Workers' default.
	DefaultWorkers = 32
	// DefaultOpTimeout is Config.OpTimeout's default.
	DefaultOpTimeout = 5 * time.Second
	// DefaultMaxRoomsPerUser is Config.MaxRoomsPerUser's default
	// (-max-rooms-per-user, HUBBUB_PRESENCE_MAX_ROOMS_PER_USER).
	DefaultMaxRoomsPerUser = 20
)

// Config tunes the service. Zero values take the defaults above.
type Config struct {
	// Grace is how long a user whose last connection left stays online
	// (a reload within it announces nothing).
	Grace time.Duration
	// TypingTTL is the typing bucket's TTL (how long "on" lasts without
	// renewal). It must match what the bucket was provisioned with.
	TypingTTL time.Duration
	// LeaseTTL is the edges bucket's TTL. Connections of an edge that has
	// held no lease for this long are removed by the periodic check.
	LeaseTTL time.Duration
	// SweepInterval is how often the sweeper looks for expired grace
	// periods and unfinished announcements.
	SweepInterval time.Duration
	// Workers is how many join/leave requests are processed concurrently
	// (requests for one room and user are always processed in order).
	Workers int
	// OpTimeout bounds the handling of one request.
	OpTimeout time.Duration
	// Replicas is used, with TypingTTL and LeaseTTL, to re-create the typing
	// bucket if it vanishes: it is kept in memory, so a single NATS server
	// loses it on restart.
	Replicas int
	// BucketMaxBytes sizes the re-created typing bucket
	// (provision.Config.BucketMaxBytes; accounts with max_bytes_required
	// need it).
	BucketMaxBytes int64
	// MaxRoomsPerUser is how many rooms one user may create (DMs are not
	// counted).
	MaxRoomsPerUser int
}

// withDefaults fills the fields that are zero or negative.
func (c Config) withDefaults() Config {
	defaults.Positive(&c.TypingTTL, DefaultTypingTTL)
	defaults.Positive(&c.LeaseTTL, DefaultLeaseTTL)
	defaults.Positive(&c.Grace, DefaultGrace)
	defaults.Positive(&c.SweepInterval, DefaultSweepInterval)
	defaults.Positive(&c.Workers, DefaultWorkers)
	defaults.Positive(&c.OpTimeout, DefaultOpTimeout)
	defaults.Positive(&c.MaxRoomsPerUser, DefaultMaxRoomsPerUser)
	return c
}

// provision is the bucket configuration the service shares with
// provisioning (it re-creates the typing bucket with it).
func (c Config) provision() provision.Config {
	return provision.Config{Replicas: c.Replicas, TypingTTL: c.TypingTTL, LeaseTTL: c.LeaseTTL, BucketMaxBytes: c.BucketMaxBytes}
}
