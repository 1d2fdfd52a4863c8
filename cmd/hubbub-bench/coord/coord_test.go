package coord

import "testing"

func TestSplit(t *testing.T) {
	tests := []struct {
		first, count, n int
		want            [][2]int
	}{
		{0, 10, 2, [][2]int{{0, 5}, {5, 5}}},
		{100, 7, 3, [][2]int{{100, 3}, {103, 2}, {105, 2}}},
		{0, 1, 3, [][2]int{{0, 1}, {1, 0}, {1, 0}}},
	}
	for _, tt := range tests {
		got := Split(tt.first, tt.count, tt.n)
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("Split(%d,%d,%d) = %v, want %v", tt.first, tt.count, tt.n, got, tt.want)
			}
		}
	}
}
