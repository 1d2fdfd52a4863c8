// Package defaults holds the one rule of every Config field whose zero
// value means "the default": Positive. Each default itself is a constant
// of the package that owns the setting.
package defaults

// Number is a setting's numeric type (counts, sizes, durations, rates).
type Number interface {
	~int | ~int32 | ~int64 | ~uint32 | ~uint64 | ~float64
}

// Positive sets *p to def unless *p is positive.
func Positive[T Number](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}
