package proc

import (
	"os"
	"testing"
	"time"
)

func TestSelfFigures(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := PidCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if c.Total() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CPU time recorded in /proc/self/stat")
		}
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
	}
	c, maxRSS, err := Self()
	if err != nil || c.Total() <= 0 || maxRSS <= 0 {
		t.Fatalf("Self = %v %d %v", c, maxRSS, err)
	}
	if _, err := LoadAvg(); err != nil {
		t.Fatal(err)
	}
	if _, err := RSS(-1); err == nil {
		t.Fatal("RSS of a bogus pid succeeded")
	}
}
