package bench

import (
	"fmt"
	"math"
	"strings"

	"github.com/timed-project/timed/internal/ntpload"
)

// NTSLeg is one server's figures in one round of the NTS benchmark.
type NTSLeg struct {
	Server string
	Round  int
	// Plain and NTS are runs at a maximal rate with plain and with
	// NTS-protected requests, against the same process.
	Plain, NTS *ntpload.Result
	// KE is the NTS-KE run with Go's client, which offers X25519; KEP256
	// the run with clients that list P-256 first, as chrony's does.
	KE, KEP256 KERun
	// Others is the CPU (cores) other processes used during the NTS run.
	Others float64
}

// KERun is what a run of back-to-back NTS-KE exchanges measured.
type KERun struct {
	Exchanges, Failed int
	Seconds           float64
	ServerCPU         float64 // seconds, the server and its children
}

// PerSecond is the exchanges completed per second.
func (k KERun) PerSecond() float64 { return float64(k.Exchanges) / k.Seconds }

// PerCPUSecond is the exchanges completed per second of the server's CPU.
func (k KERun) PerCPUSecond() float64 { return float64(k.Exchanges) / k.ServerCPU }

type ntsFigure = metric[NTSLeg]

var ntsFigures = []ntsFigure{
	{"NTS responses/s at a saturating rate", "%.0f", func(l *NTSLeg) float64 { return l.NTS.ResponseRate }, true},
	{"NTS responses per server CPU-second", "%.0f", func(l *NTSLeg) float64 { return l.NTS.PerCPUSecond }, true},
	{"plain responses per server CPU-second (same process)", "%.0f", func(l *NTSLeg) float64 { return l.Plain.PerCPUSecond }, true},
	{"NTS / plain, per server CPU-second", "%.2f", func(l *NTSLeg) float64 { return l.NTS.PerCPUSecond / l.Plain.PerCPUSecond }, false},
	{"NTS request / response bytes", "%.0f", func(l *NTSLeg) float64 { return float64(l.NTS.RequestLen) }, false},
	{"NTS-KE exchanges/s", "%.0f", func(l *NTSLeg) float64 { return l.KE.PerSecond() }, true},
	{"NTS-KE exchanges per server CPU-second", "%.0f", func(l *NTSLeg) float64 { return l.KE.PerCPUSecond() }, true},
	{"NTS-KE exchanges/s, clients that prefer P-256 (as chrony's)", "%.0f", func(l *NTSLeg) float64 { return l.KEP256.PerSecond() }, true},
	{"the same, per server CPU-second", "%.0f", func(l *NTSLeg) float64 { return l.KEP256.PerCPUSecond() }, true},
	{"NTS-KE exchanges failed", "%.0f", func(l *NTSLeg) float64 { return float64(l.KE.Failed + l.KEP256.Failed) }, false},
}

// ntsValue is figure f of server's leg in round (NaN when missing).
func ntsValue(legs []NTSLeg, f ntsFigure, server string, round int) float64 {
	for i := range legs {
		l := &legs[i]
		if l.Server == server && l.Round == round && l.Plain != nil && l.NTS != nil {
			return f.get(l)
		}
	}
	return math.NaN()
}

// ntsMedian is the median of figure f over server's rounds.
func ntsMedian(legs []NTSLeg, rounds int, f ntsFigure, server string) float64 {
	var xs []float64
	for r := 1; r <= rounds; r++ {
		if v := ntsValue(legs, f, server, r); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	return median(xs)
}

// ntsRatio is the median over rounds of a/b of figure f within a round.
func ntsRatio(legs []NTSLeg, rounds int, f ntsFigure, a, b string) float64 {
	var rs []float64
	for r := 1; r <= rounds; r++ {
		if x := ntsValue(legs, f, a, r) / ntsValue(legs, f, b, r); !math.IsNaN(x) && !math.IsInf(x, 0) {
			rs = append(rs, x)
		}
	}
	return median(rs)
}

// NTSSummaryTable is the median of every figure for chronyd and timed and
// the median of the per-round ratios, as Markdown.
func NTSSummaryTable(legs []NTSLeg, rounds int) string {
	var b strings.Builder
	b.WriteString("| median of the rounds | chronyd | timed | timed / chronyd |\n|---|---:|---:|---:|\n")
	for _, f := range ntsFigures {
		ratio := math.NaN()
		if f.ratio {
			ratio = ntsRatio(legs, rounds, f, Timed, Chronyd)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.name, cell(f.format, ntsMedian(legs, rounds, f, Chronyd)),
			cell(f.format, ntsMedian(legs, rounds, f, Timed)), cell("%.2f", ratio))
	}
	return b.String()
}

// NTSGoals checks issue 4's goals on the medians: timed's NTS responses per
// server CPU-second at least 1.5 times chronyd's, at least half timed's
// plain rate, and NTS-KE exchanges per second at least chronyd's (with
// either kind of client).
func NTSGoals(legs []NTSLeg, rounds int) (lines []string, ok bool) {
	ok = true
	check := func(what string, v, goal float64) {
		pass := v >= goal
		ok = ok && pass
		lines = append(lines, fmt.Sprintf("%s: %s (goal ≥ %g): %s", what, cell("%.2f", v), goal, verdict(pass)))
	}
	check("NTS responses per server CPU-second, timed / chronyd", ntsRatio(legs, rounds, ntsFigures[1], Timed, Chronyd), 1.5)
	check("timed's NTS responses per server CPU-second / its plain ones", ntsMedian(legs, rounds, ntsFigures[3], Timed), 0.5)
	check("NTS-KE exchanges per second, Go's clients, timed / chronyd", ntsRatio(legs, rounds, ntsFigures[5], Timed, Chronyd), 1)
	check("NTS-KE exchanges per second, clients that prefer P-256, timed / chronyd", ntsRatio(legs, rounds, ntsFigures[7], Timed, Chronyd), 1)
	return lines, ok
}

// NTSRoundsTable lists every leg.
func NTSRoundsTable(legs []NTSLeg) string {
	var b strings.Builder
	b.WriteString("| round | server | NTS responses/s | NTS per CPU-second | plain per CPU-second | NTS-KE/s | NTS-KE per CPU-second | NTS-KE/s, P-256 | NTS-KE per CPU-second, P-256 | others' CPU (cores) |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range legs {
		if l.Plain == nil || l.NTS == nil {
			fmt.Fprintf(&b, "| %d | %s | failed | | | | | | | |\n", l.Round, l.Server)
			continue
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", l.Round, l.Server, l.NTS.ResponseRate,
			l.NTS.PerCPUSecond, l.Plain.PerCPUSecond, l.KE.PerSecond(), l.KE.PerCPUSecond(), l.KEP256.PerSecond(), l.KEP256.PerCPUSecond(), l.Others)
	}
	return b.String()
}
