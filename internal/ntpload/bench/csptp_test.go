package bench

import (
	"fmt"
	"strings"
	"testing"
)

func TestCSPTPTables(t *testing.T) {
	// Per round: NTP, CSPTP, timed SPTP and ptp4u responses per CPU-second.
	perCPU := [][4]float64{{300e3, 240e3, 150e3, 50e3}, {310e3, 280e3, 160e3, 40e3}, {290e3, 200e3, 140e3, 70e3}}
	var legs []Leg
	for r, row := range perCPU {
		for i, s := range CSPTPLegs {
			l := leg(s, r+1, row[i]/2, row[i], 0, 50)
			l.Max.RequestLen, l.Half.ResponseLen = 44, 108
			legs = append(legs, l)
		}
	}
	// The median of the per-round ratios, computed here from the inputs.
	ratio := func(a, b int) float64 {
		var xs []float64
		for _, row := range perCPU {
			xs = append(xs, row[a]/row[b])
		}
		return median(xs)
	}
	summary := CSPTPSummaryTable(legs, len(perCPU))
	want := fmt.Sprintf("| responses per server CPU-second | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |",
		median([]float64{300e3, 310e3, 290e3}), median([]float64{240e3, 280e3, 200e3}),
		median([]float64{150e3, 160e3, 140e3}), median([]float64{50e3, 40e3, 70e3}), ratio(1, 0), ratio(2, 3))
	if !strings.Contains(summary, want) {
		t.Errorf("summary lacks %q:\n%s", want, summary)
	}
	if !strings.Contains(summary, "| bytes per answer | 108 | 108 | 108 | 108 | — | — |") {
		t.Errorf("summary lacks the bytes per answer:\n%s", summary)
	}
	if n := strings.Count(summary, "\n"); n != len(csptpFigures)+2 {
		t.Errorf("summary has %d lines, want %d", n, len(csptpFigures)+2)
	}
	rounds := CSPTPRatiosTable(legs, len(perCPU))
	for r, row := range perCPU {
		// Responses per second are half of those per CPU-second in every leg.
		line := fmt.Sprintf("| %d | %.2f | %.2f | %.2f | %.2f |", r+1, row[1]/row[0], row[1]/row[0], row[2]/row[3], row[2]/row[3])
		if !strings.Contains(rounds, line) {
			t.Errorf("ratios table lacks %q:\n%s", line, rounds)
		}
	}
	if r := CSPTPRatiosTable(legs[:4], 2); !strings.Contains(r, "| 2 | — | — | — | — |") {
		t.Errorf("a round without legs does not show as missing:\n%s", r)
	}
}
