package fanout

// Observer receives fan-out events for metrics. Methods must not block.
type Observer interface {
	// Delivered counts n frames of type typ handed to sinks.
	Delivered(typ string, n int)
	// GapFilled counts messages recovered from history after a live gap.
	GapFilled(n int)
	// Dropped counts NATS messages the hub could not process (reason).
	Dropped(reason string)
}

type nopObserver struct{}

func (nopObserver) Delivered(string, int) {}
func (nopObserver) GapFilled(int)         {}
func (nopObserver) Dropped(string)        {}
