package worker

import "testing"

func TestDigits(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1763841234567890123", 1763841234567890123, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"12a", 0, false},
		{"-1", 0, false},
	}
	for _, tt := range tests {
		got, ok := digits([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("digits(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
