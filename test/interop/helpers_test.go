//go:build linux

package interop

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests of the harness itself; they need no peers.

func TestStatistics(t *testing.T) {
	tests := []struct {
		xs            []float64
		rms, max, med float64
	}{
		{[]float64{3, -4}, math.Sqrt(12.5), 4, -0.5},
		{[]float64{1, 1, 1}, 1, 1, 1},
		{[]float64{-2, 5, 1}, math.Sqrt(10), 5, 1},
	}
	for _, tc := range tests {
		if got := rms(tc.xs); math.Abs(got-tc.rms) > 1e-12 {
			t.Errorf("rms(%v) = %v, want %v", tc.xs, got, tc.rms)
		}
		if got := maxAbs(tc.xs); got != tc.max {
			t.Errorf("maxAbs(%v) = %v, want %v", tc.xs, got, tc.max)
		}
		if got := median(tc.xs); got != tc.med {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.med)
		}
	}
	if !math.IsNaN(rms(nil)) || !math.IsNaN(median(nil)) || !math.IsNaN(maxAbs(nil)) {
		t.Error("statistics of no samples must be NaN")
	}
}

func mkSample(at time.Duration, ofs float64, synced bool, lastOffset, ago float64) sample {
	var s sample
	s.At = at
	s.Status.Clock.OffsetFromSystem = ofs
	s.Status.Engine.Synchronized = synced
	s.Status.Engine.Sources = append(s.Status.Engine.Sources, sourceStatus{Name: "s", Samples: 1, LastOffset: lastOffset, LastSampleAgo: ago})
	return s
}

func TestAnalyse(t *testing.T) {
	var samples []sample
	for i := 0; i <= 100; i++ {
		ofs := 0.2 * math.Exp(-float64(i)/2) // converges from 200 ms
		if i >= 30 {
			ofs = 10e-6 * float64(1-2*(i%2)) // ±10 µs
		}
		samples = append(samples, mkSample(time.Duration(i)*time.Second, ofs, i >= 20, 0, 0))
	}
	r := analyse(samples, 30*time.Second, 90*time.Second)
	if r.FirstSync != 11*time.Second { // 0.2*exp(-11/2) = 0.82 ms
		t.Errorf("FirstSync = %v, want 11s", r.FirstSync)
	}
	if r.FirstSynchronized != 20*time.Second {
		t.Errorf("FirstSynchronized = %v, want 20s", r.FirstSynchronized)
	}
	if r.N != 61 || math.Abs(r.RMS-10e-6) > 1e-12 || r.Max != 10e-6 {
		t.Errorf("window: N %d RMS %v max %v, want 61, 10 µs, 10 µs", r.N, r.RMS, r.Max)
	}
}

// TestReferredOffsets checks the sign convention: the server is 30 µs
// ahead of the system clock; the virtual clock runs 1 ms ahead of the
// system clock and gains 50 µs/s; a source offset was measured 0.5 s
// before each reading.
func TestReferredOffsets(t *testing.T) {
	const server = 30e-6
	var samples []sample
	for i := 0; i < 10; i++ {
		at := float64(i)
		vNow := 1e-3 + 50e-6*at
		vThen := 1e-3 + 50e-6*(at-0.5)
		// last offset = server - virtual clock at the measurement
		samples = append(samples, mkSample(time.Duration(i)*time.Second, vNow, true, server-vThen, 0.5))
	}
	got := referredOffsets(samples, 0, time.Hour)
	if len(got) != 9 {
		t.Fatalf("%d offsets, want 9", len(got))
	}
	for _, g := range got {
		if math.Abs(g-server) > 1e-12 {
			t.Errorf("referred offset %v, want %v", g, server)
		}
	}
}

func TestParseChronydQ(t *testing.T) {
	out := "2026-11-22T02:40:31Z Disabled control of system clock\n2026-11-22T02:40:35Z System clock wrong by -0.000048 seconds (ignored)\n"
	got, err := parseChronydQ(out)
	if err != nil || got != -0.000048 {
		t.Errorf("parseChronydQ = %v, %v; want -0.000048", got, err)
	}
	if _, err := parseChronydQ("No suitable source for synchronisation"); err == nil {
		t.Error("parseChronydQ accepted output without an offset")
	}
}

func TestStatCPU(t *testing.T) {
	stat := "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200 18446744073709551615\n"
	got, err := statCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("statCPU = %v, %v; want 3s", got, err)
	}
	if _, err := statCPU("garbage"); err == nil {
		t.Error("statCPU accepted garbage")
	}
	fp, err := readFootprint(os.Getpid())
	if err != nil || fp.RSSKiB <= 0 || fp.HWMKiB < fp.RSSKiB || fp.CPU < 0 || fp.TaskCPU <= 0 {
		t.Errorf("readFootprint(self) = %+v, %v", fp, err)
	}
}

func TestWriteFootprintSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "PERFORMANCE.md")
	if err := writeFootprintSection(path, "table one"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), footprintBegin+"\ntable one\n"+footprintEnd) {
		t.Fatalf("new file:\n%s", b)
	}
	if err := os.WriteFile(path, []byte("# Perf\n\nbefore\n"+footprintBegin+"\nold\n"+footprintEnd+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFootprintSection(path, "table two\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	want := "# Perf\n\nbefore\n" + footprintBegin + "\ntable two\n" + footprintEnd + "\nafter\n"
	if string(b) != want {
		t.Errorf("replaced section:\n%s\nwant:\n%s", b, want)
	}
}

func TestLogLines(t *testing.T) {
	out := "not json\n{\"level\":\"warn\",\"msg\":\"x\"}\n{broken\n{\"level\":\"info\",\"msg\":\"y\",\"n\":1}\n"
	lines := logLines(out)
	if len(lines) != 2 || lines[0]["msg"] != "x" || lines[1]["msg"] != "y" {
		t.Errorf("logLines = %v", lines)
	}
}
