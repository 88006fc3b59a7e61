package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/ntpload"
)

// ntsLeg is a leg whose NTS-KE run with P-256 clients does keP256
// exchanges a second, at the CPU of the run with Go's clients.
func ntsLeg(server string, round int, plainPerCPU, ntsPerCPU float64, ke, keP256 int, keCPU float64) NTSLeg {
	return NTSLeg{Server: server, Round: round,
		Plain:  &ntpload.Result{PerCPUSecond: plainPerCPU},
		NTS:    &ntpload.Result{PerCPUSecond: ntsPerCPU, ResponseRate: ntsPerCPU, RequestLen: 228},
		KE:     KERun{Exchanges: ke, Seconds: 1, ServerCPU: keCPU},
		KEP256: KERun{Exchanges: keP256, Seconds: 1, ServerCPU: keCPU}}
}

func TestNTSGoals(t *testing.T) {
	tests := []struct {
		name        string
		legs        []NTSLeg
		ntsRatio    float64 // timed / chronyd, NTS per CPU-second
		plainShare  float64 // timed's NTS / plain
		keRatio     float64 // Go's clients
		keP256Ratio float64
		goalsMet    bool
		failedLines int
	}{
		{"all goals met", []NTSLeg{
			ntsLeg(Chronyd, 1, 200e3, 100e3, 1000, 1300, 0.5), ntsLeg(Timed, 1, 260e3, 160e3, 1100, 1400, 0.4),
			ntsLeg(Chronyd, 2, 200e3, 100e3, 1000, 1300, 0.5), ntsLeg(Timed, 2, 260e3, 150e3, 1200, 1500, 0.4),
			ntsLeg(Chronyd, 3, 200e3, 120e3, 1000, 1300, 0.5), ntsLeg(Timed, 3, 260e3, 200e3, 1000, 1300, 0.4),
		}, 1.6, 160.0 / 260, 1.1, 1400.0 / 1300, true, 0},
		{"NTS rate and NTS-KE behind", []NTSLeg{
			ntsLeg(Chronyd, 1, 200e3, 130e3, 2000, 2400, 0.6), ntsLeg(Timed, 1, 210e3, 140e3, 1800, 2300, 0.7),
		}, 140.0 / 130, 140.0 / 210, 0.9, 2300.0 / 2400, false, 3},
		{"NTS-KE behind with Go's clients only", []NTSLeg{
			ntsLeg(Chronyd, 1, 200e3, 100e3, 2000, 2400, 0.6), ntsLeg(Timed, 1, 260e3, 160e3, 1800, 2500, 0.7),
		}, 1.6, 160.0 / 260, 0.9, 2500.0 / 2400, false, 1},
		{"a failed leg is left out", []NTSLeg{
			ntsLeg(Chronyd, 1, 200e3, 100e3, 1000, 1000, 0.5), {Server: Timed, Round: 1},
			ntsLeg(Chronyd, 2, 200e3, 100e3, 1000, 1000, 0.5), ntsLeg(Timed, 2, 300e3, 200e3, 1000, 1100, 0.5),
		}, 2, 200.0 / 300, 1, 1.1, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rounds := 3
			if got := ntsRatio(tt.legs, rounds, ntsFigures[1], Timed, Chronyd); math.Abs(got-tt.ntsRatio) > 1e-9 {
				t.Errorf("NTS per CPU-second ratio %g, want %g", got, tt.ntsRatio)
			}
			if got := ntsMedian(tt.legs, rounds, ntsFigures[3], Timed); math.Abs(got-tt.plainShare) > 1e-9 {
				t.Errorf("timed's NTS / plain %g, want %g", got, tt.plainShare)
			}
			if got := ntsRatio(tt.legs, rounds, ntsFigures[5], Timed, Chronyd); math.Abs(got-tt.keRatio) > 1e-9 {
				t.Errorf("NTS-KE ratio %g, want %g", got, tt.keRatio)
			}
			if got := ntsRatio(tt.legs, rounds, ntsFigures[7], Timed, Chronyd); math.Abs(got-tt.keP256Ratio) > 1e-9 {
				t.Errorf("NTS-KE ratio with P-256 %g, want %g", got, tt.keP256Ratio)
			}
			lines, ok := NTSGoals(tt.legs, rounds)
			if ok != tt.goalsMet {
				t.Errorf("goals met %v, want %v: %v", ok, tt.goalsMet, lines)
			}
			failed := 0
			for _, l := range lines {
				if strings.HasSuffix(l, "FAIL") {
					failed++
				}
			}
			if len(lines) != 4 || failed != tt.failedLines {
				t.Errorf("%d goal lines, %d failed; want 4 and %d: %v", len(lines), failed, tt.failedLines, lines)
			}
			table := NTSSummaryTable(tt.legs, rounds) + NTSRoundsTable(tt.legs)
			if strings.Contains(table, "NaN") {
				t.Errorf("NaN in the tables:\n%s", table)
			}
		})
	}
}

func TestKERun(t *testing.T) {
	k := KERun{Exchanges: 3000, Seconds: 2, ServerCPU: 1.5}
	if k.PerSecond() != 1500 || k.PerCPUSecond() != 2000 {
		t.Errorf("per second %g, per CPU-second %g; want 1500 and 2000", k.PerSecond(), k.PerCPUSecond())
	}
}
