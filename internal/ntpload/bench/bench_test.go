package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/ntpload"
)

// leg makes a complete leg with the figures the tables read.
func leg(server string, round int, rate, perCPU, halfLoss, p50 float64) Leg {
	return Leg{
		Server: server, Round: round,
		Max:  &ntpload.Result{ResponseRate: rate, PerCPUSecond: perCPU, ServerCores: 1},
		Half: &ntpload.Result{Offered: rate / 2, Loss: halfLoss, Latency: ntpload.Latency{P50: p50, P99: 2 * p50, P999: 3 * p50}},
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %g, want %g", tt.xs, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestRatiosAndGoals(t *testing.T) {
	tests := []struct {
		name     string
		legs     []Leg
		perCPU   float64 // timed / chronyd
		goalsMet bool
	}{
		{"timed ahead", []Leg{
			leg(Chronyd, 1, 200e3, 200e3, 0.01, 60), leg(Timed, 1, 260e3, 260e3, 0.005, 50), leg(Reference, 1, 280e3, 280e3, 0, 40),
			leg(Chronyd, 2, 210e3, 210e3, 0.01, 60), leg(Timed, 2, 250e3, 252e3, 0.01, 50), leg(Reference, 2, 290e3, 290e3, 0, 40),
			leg(Chronyd, 3, 190e3, 100e3, 0.01, 60), leg(Timed, 3, 250e3, 130e3, 0.002, 50), leg(Reference, 3, 290e3, 150e3, 0, 40),
		}, 1.3, true},
		{"timed behind", []Leg{
			leg(Chronyd, 1, 200e3, 200e3, 0.01, 60), leg(Timed, 1, 190e3, 190e3, 0.02, 50),
		}, 0.95, false},
		{"a failed leg is left out", []Leg{
			leg(Chronyd, 1, 200e3, 200e3, 0.01, 60), {Server: Timed, Round: 1},
			leg(Chronyd, 2, 200e3, 200e3, 0.01, 60), leg(Timed, 2, 300e3, 300e3, 0, 50),
		}, 1.5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rounds := 0
			for _, l := range tt.legs {
				rounds = max(rounds, l.Round)
			}
			got := medianRatio(tt.legs, rounds, figures[1], Timed, Chronyd)
			if math.Abs(got-tt.perCPU) > 1e-9 {
				t.Errorf("median ratio %g, want %g", got, tt.perCPU)
			}
			lines, ok := Goals(tt.legs, rounds)
			if ok != tt.goalsMet || len(lines) != 2 {
				t.Errorf("goals met %v, want %v:\n%s", ok, tt.goalsMet, strings.Join(lines, "\n"))
			}
			summary := SummaryTable(tt.legs, rounds)
			if n := strings.Count(summary, "\n"); n != len(figures)+2 {
				t.Errorf("summary has %d lines, want %d:\n%s", n, len(figures)+2, summary)
			}
			if !strings.Contains(summary, "| responses per server CPU-second |") {
				t.Errorf("summary lacks its rows:\n%s", summary)
			}
			rows := RoundsTable(tt.legs)
			if n := strings.Count(rows, "\n"); n != len(tt.legs)+2 {
				t.Errorf("rounds table has %d lines, want %d:\n%s", n, len(tt.legs)+2, rows)
			}
			if r := RatiosTable(tt.legs, rounds); strings.Count(r, "\n") != rounds+2 {
				t.Errorf("ratios table:\n%s", r)
			}
		})
	}
}

func TestSummaryCells(t *testing.T) {
	legs := []Leg{leg(Chronyd, 1, 200e3, 200e3, 0.01, 60), leg(Timed, 1, 300e3, 250e3, 0, 50)}
	s := SummaryTable(legs, 1)
	for _, want := range []string{
		"| responses per server CPU-second | 200000 | 250000 | — | 1.25 | — | — |",
		"| loss at 50% (%) | 1.000 | 0.000 | — | — | — | — |",
		"| latency p50 at 50% (µs) | 60 | 50 | — | 0.83 | — | — |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if r := RoundsTable([]Leg{{Server: Timed, Round: 2}}); !strings.Contains(r, "| 2 | timed | failed |") {
		t.Errorf("a failed leg is not shown as failed:\n%s", r)
	}
}

func TestSpreadTable(t *testing.T) {
	s := SpreadTable([]Spread{
		{Server: Timed, Workers: "2", Result: &ntpload.Result{ResponseRate: 1000, PerCPUSecond: 900, ServerCores: 1.1},
			PerCPU:  []float64{0.5, 0.6},
			Threads: []ThreadShare{{Name: "a", Cores: 0.6}, {Name: "b", Cores: 0.5}, {Name: "idle", Cores: 0.001}}},
		{Server: Chronyd, Workers: "1"},
	})
	for _, want := range []string{"| timed | 2 | 1000 | 900 | 1.10 | cpu0 0.50, cpu1 0.60 | a 0.60, b 0.50 |", "| chronyd | 1 | failed |"} {
		if !strings.Contains(s, want) {
			t.Errorf("spread table lacks %q:\n%s", want, s)
		}
	}
}

func TestWriteSection(t *testing.T) {
	beginMarker, endMarker := "<!-- server:begin -->", "<!-- server:end -->"
	tests := []struct {
		name, before, want string
		err                bool
	}{
		{"replaces between the markers",
			"# P\n\nintro\n" + beginMarker + "\nold\nlines\n" + endMarker + "\nafter\n",
			"# P\n\nintro\n" + beginMarker + "\nnew table\n" + endMarker + "\nafter\n", false},
		{"empty section", beginMarker + endMarker + "\n", beginMarker + "\nnew table\n" + endMarker + "\n", false},
		{"no markers", "# P\n", "# P\n", true},
		{"markers reversed", endMarker + "\n" + beginMarker + "\n", endMarker + "\n" + beginMarker + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "PERFORMANCE.md")
			if err := os.WriteFile(path, []byte(tt.before), 0o644); err != nil {
				t.Fatal(err)
			}
			err := WriteSection(path, ServerSection, "new table\n\n")
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want one: %v", err, tt.err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("file:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
	if err := WriteSection(filepath.Join(t.TempDir(), "missing.md"), ServerSection, "x"); err == nil {
		t.Error("no error for a missing file")
	}
}
