package bench

import (
	"fmt"
	"math"
	"strings"
)

// The legs of the CSPTP benchmark: a server and the requests it gets.
const (
	TimedNTP   = "timed NTP"
	TimedCSPTP = "timed CSPTP"
	TimedSPTP  = "timed SPTP"
	Ptp4uSPTP  = "ptp4u SPTP"
)

// CSPTPLegs are the CSPTP benchmark's legs, in turn order.
var CSPTPLegs = []string{TimedNTP, TimedCSPTP, TimedSPTP, Ptp4uSPTP}

// csptpRatios are the pairs the CSPTP benchmark compares.
var csptpRatios = [][2]string{{TimedCSPTP, TimedNTP}, {TimedSPTP, Ptp4uSPTP}}

// csptpFigures are the NTP benchmark's figures and the bytes of a request
// and of its answer.
var csptpFigures = append(append([]figure(nil), figures...),
	figure{"bytes per request", "%.0f", func(l *Leg) float64 { return float64(l.Max.RequestLen) }, false},
	figure{"bytes per answer", "%.0f", func(l *Leg) float64 { return l.Half.ResponseLen }, false},
)

// CSPTPSummaryTable is the median of every figure per leg and the median
// of the per-round ratios CSPTP / NTP and timed SPTP / ptp4u, as Markdown.
func CSPTPSummaryTable(legs []Leg, rounds int) string {
	groups := byServer(legs)
	var b strings.Builder
	b.WriteString("| median of the rounds | " + strings.Join(CSPTPLegs, " | ") + " | timed CSPTP / timed NTP | timed SPTP / ptp4u SPTP |\n")
	b.WriteString("|---" + strings.Repeat("|---:", len(CSPTPLegs)+len(csptpRatios)) + "|\n")
	for _, f := range csptpFigures {
		fmt.Fprintf(&b, "| %s", f.name)
		for _, s := range CSPTPLegs {
			var xs []float64
			for _, l := range groups[s] {
				xs = append(xs, f.get(l))
			}
			fmt.Fprintf(&b, " | %s", cell(f.format, median(xs)))
		}
		for _, p := range csptpRatios {
			r := math.NaN()
			if f.ratio {
				r = medianRatio(legs, rounds, f, p[0], p[1])
			}
			fmt.Fprintf(&b, " | %s", cell("%.2f", r))
		}
		b.WriteString(" |\n")
	}
	return b.String()
}

// CSPTPRatiosTable is, round by round, the ratios of responses per server
// CPU-second and per second.
func CSPTPRatiosTable(legs []Leg, rounds int) string {
	perCPU, perSecond := figures[1], figures[0]
	var b strings.Builder
	b.WriteString("| round | CSPTP / NTP per CPU-second | CSPTP / NTP per second | timed SPTP / ptp4u per CPU-second | timed SPTP / ptp4u per second |\n|---:|---:|---:|---:|---:|\n")
	for r := 1; r <= rounds; r++ {
		fmt.Fprintf(&b, "| %d", r)
		for _, p := range csptpRatios {
			for _, f := range []figure{perCPU, perSecond} {
				fmt.Fprintf(&b, " | %s", cell("%.2f", roundRatio(legs, r, f, p[0], p[1])))
			}
		}
		b.WriteString(" |\n")
	}
	return b.String()
}
