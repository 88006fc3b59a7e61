// Package bench is the NTP server benchmark: timed's server side by side
// with chronyd and with a minimal C responder (the ceiling), loaded by
// internal/ntpload on loopback.
//
// The benchmark itself is TestServerBench, which runs only when asked:
//
//	make bench-server
//	go test -tags bench -count=1 -timeout 30m -v -run '^TestServerBench$' ./internal/ntpload/bench -args -rounds 5
//
// With TIMED_WRITE_PERF=1 it rewrites the part of docs/PERFORMANCE.md between
// the markers "<!-- server:begin -->" and "<!-- server:end -->". This file
// holds what the benchmark computes and prints; the test file drives the
// servers.
package bench

import (
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/timed-project/timed/internal/ntpload"
)

// The servers, in the order they take turns.
const (
	Chronyd   = "chronyd"
	Timed     = "timed"
	Reference = "reference"
)

// Servers is every server the benchmark knows, in turn order.
var Servers = []string{Chronyd, Timed, Reference}

// Leg is one server's figures in one round: the saturating load and the
// load at half of what the server answered under it.
type Leg struct {
	Server string
	Round  int
	// Max is the run at a maximal offered rate.
	Max *ntpload.Result
	// Half is the run at 50% of Max.ResponseRate.
	Half *ntpload.Result
	// Others is the CPU (in cores) that processes other than the server
	// and the load generator used during the two runs: noise when it is
	// not near zero.
	Others float64
}

// ThreadShare is one thread's part of a server's CPU time in a run.
type ThreadShare struct {
	Name  string
	CPU   float64 // seconds
	Cores float64 // CPU over the run's duration
}

// Spread is how a server used the cores when nothing was pinned.
type Spread struct {
	Server  string
	Workers string // how its sockets were configured
	Result  *ntpload.Result
	Threads []ThreadShare // busiest first
	// PerCPU is the server's CPU time on each processor, in cores over
	// the run (sampled from the threads' last processor).
	PerCPU []float64
}

// metric is one row of a summary: how to read it from a leg of type L.
type metric[L any] struct {
	name   string
	format string
	get    func(l *L) float64
	// ratio says whether ratios between servers mean something for it.
	ratio bool
}

// figure is a row of the NTP benchmark's summary.
type figure = metric[Leg]

var figures = []figure{
	{"responses/s at a saturating rate", "%.0f", func(l *Leg) float64 { return l.Max.ResponseRate }, true},
	{"responses per server CPU-second", "%.0f", func(l *Leg) float64 { return l.Max.PerCPUSecond }, true},
	{"server cores busy at saturation", "%.2f", func(l *Leg) float64 { return l.Max.ServerCores }, false},
	{"offered rate at 50% (req/s)", "%.0f", func(l *Leg) float64 { return l.Half.Offered }, false},
	{"loss at 50% (%)", "%.3f", func(l *Leg) float64 { return 100 * l.Half.Loss }, false},
	{"latency p50 at 50% (µs)", "%.0f", func(l *Leg) float64 { return l.Half.Latency.P50 }, true},
	{"latency p99 at 50% (µs)", "%.0f", func(l *Leg) float64 { return l.Half.Latency.P99 }, true},
	{"latency p99.9 at 50% (µs)", "%.0f", func(l *Leg) float64 { return l.Half.Latency.P999 }, true},
}

// ratios are the pairs compared, as numerator and denominator.
var ratios = [][2]string{{Timed, Chronyd}, {Reference, Chronyd}, {Timed, Reference}}

// median is the median of xs (NaN when empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// byServer groups the complete legs (both runs present) by server.
func byServer(legs []Leg) map[string][]*Leg {
	m := map[string][]*Leg{}
	for i := range legs {
		if legs[i].Max != nil && legs[i].Half != nil {
			m[legs[i].Server] = append(m[legs[i].Server], &legs[i])
		}
	}
	return m
}

// roundRatio is a/b of a figure within one round, NaN when either server
// lacks the round.
func roundRatio(legs []Leg, round int, f figure, a, b string) float64 {
	var va, vb float64 = math.NaN(), math.NaN()
	for i := range legs {
		l := &legs[i]
		if l.Round != round || l.Max == nil || l.Half == nil {
			continue
		}
		switch l.Server {
		case a:
			va = f.get(l)
		case b:
			vb = f.get(l)
		}
	}
	return va / vb
}

// medianRatio is the median over rounds of the per-round ratio a/b.
func medianRatio(legs []Leg, rounds int, f figure, a, b string) float64 {
	var rs []float64
	for r := 1; r <= rounds; r++ {
		if x := roundRatio(legs, r, f, a, b); !math.IsNaN(x) && !math.IsInf(x, 0) {
			rs = append(rs, x)
		}
	}
	return median(rs)
}

func cell(format string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

// SummaryTable is the median of every figure per server, and the median of
// the per-round ratios, as Markdown.
func SummaryTable(legs []Leg, rounds int) string {
	groups := byServer(legs)
	var b strings.Builder
	b.WriteString("| median of the rounds | chronyd | timed | reference | timed / chronyd | reference / chronyd | timed / reference |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, f := range figures {
		fmt.Fprintf(&b, "| %s", f.name)
		for _, s := range Servers {
			var xs []float64
			for _, l := range groups[s] {
				xs = append(xs, f.get(l))
			}
			fmt.Fprintf(&b, " | %s", cell(f.format, median(xs)))
		}
		writeRatios(&b, func(num, den string) float64 {
			if !f.ratio {
				return math.NaN()
			}
			return medianRatio(legs, rounds, f, num, den)
		})
	}
	return b.String()
}

// writeRatios ends a table row with a cell for each pair of servers
// compared.
func writeRatios(b *strings.Builder, ratio func(num, den string) float64) {
	for _, p := range ratios {
		fmt.Fprintf(b, " | %s", cell("%.2f", ratio(p[0], p[1])))
	}
	b.WriteString(" |\n")
}

// RoundsTable lists every leg's figures, round by round, with the ratios
// of responses per CPU-second within the round.
func RoundsTable(legs []Leg) string {
	var b strings.Builder
	b.WriteString("| round | server | responses/s (max) | per CPU-second | cores | 50% rate | loss at 50% | p50 / p99 / p99.9 at 50% (µs) | others' CPU (cores) |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---|---:|\n")
	for _, l := range legs {
		if l.Max == nil || l.Half == nil {
			fmt.Fprintf(&b, "| %d | %s | failed | | | | | | |\n", l.Round, l.Server)
			continue
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.2f | %.0f | %.3f%% | %.0f / %.0f / %.0f | %.2f |\n",
			l.Round, l.Server, l.Max.ResponseRate, l.Max.PerCPUSecond, l.Max.ServerCores,
			l.Half.Offered, 100*l.Half.Loss, l.Half.Latency.P50, l.Half.Latency.P99, l.Half.Latency.P999, l.Others)
	}
	return b.String()
}

// RatiosTable is, round by round, the ratios of responses per server
// CPU-second.
func RatiosTable(legs []Leg, rounds int) string {
	f := figures[1]
	var b strings.Builder
	b.WriteString("| round | timed / chronyd | reference / chronyd | timed / reference |\n|---:|---:|---:|---:|\n")
	for r := 1; r <= rounds; r++ {
		fmt.Fprintf(&b, "| %d", r)
		writeRatios(&b, func(num, den string) float64 { return roundRatio(legs, r, f, num, den) })
	}
	return b.String()
}

// SpreadTable shows how each server used the cores without pinning.
func SpreadTable(spreads []Spread) string {
	var b strings.Builder
	b.WriteString("| server | sockets | responses/s | per CPU-second | cores busy | per processor (cores) | busiest threads (cores) |\n")
	b.WriteString("|---|---|---:|---:|---:|---|---|\n")
	for _, s := range spreads {
		if s.Result == nil {
			fmt.Fprintf(&b, "| %s | %s | failed | | | | |\n", s.Server, s.Workers)
			continue
		}
		var cpus, threads []string
		for i, c := range s.PerCPU {
			cpus = append(cpus, fmt.Sprintf("cpu%d %.2f", i, c))
		}
		for i, th := range s.Threads {
			if i == 4 || th.Cores < 0.01 {
				break
			}
			threads = append(threads, fmt.Sprintf("%s %.2f", th.Name, th.Cores))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.2f | %s | %s |\n", s.Server, s.Workers, s.Result.ResponseRate,
			s.Result.PerCPUSecond, s.Result.ServerCores, strings.Join(cpus, ", "), strings.Join(threads, ", "))
	}
	return b.String()
}

// Goals checks the goals on the medians: timed's responses per
// server CPU-second at least 1.2 times chronyd's, and timed's loss at 50%
// of its maximum no higher than chronyd's at 50% of chronyd's.
func Goals(legs []Leg, rounds int) (lines []string, ok bool) {
	ok = true
	perCPU := medianRatio(legs, rounds, figures[1], Timed, Chronyd)
	pass := perCPU >= 1.2
	ok = ok && pass
	lines = append(lines, fmt.Sprintf("responses per server CPU-second, timed / chronyd: %s (goal ≥ 1.2): %s", cell("%.2f", perCPU), verdict(pass)))
	groups := byServer(legs)
	var lt, lc []float64
	for _, l := range groups[Timed] {
		lt = append(lt, l.Half.Loss)
	}
	for _, l := range groups[Chronyd] {
		lc = append(lc, l.Half.Loss)
	}
	mt, mc := median(lt), median(lc)
	pass = mt <= mc
	ok = ok && pass
	lines = append(lines, fmt.Sprintf("loss at 50%% of the own maximum, timed %s%% vs chronyd %s%% (goal: not higher): %s",
		cell("%.3f", 100*mt), cell("%.3f", 100*mc), verdict(pass)))
	return lines, ok
}

// goalLines appends "- line" for each of lines to b.
func goalLines(b *strings.Builder, lines []string) {
	for _, l := range lines {
		b.WriteString("- " + l + "\n")
	}
}

func verdict(pass bool) string {
	if pass {
		return "pass"
	}
	return "FAIL"
}

// Sections of docs/PERFORMANCE.md that the benchmarks write.
const (
	ServerSection = "server"
	NTSSection    = "nts"
	CSPTPSection  = "csptp"
)

// WriteSection replaces the text between the markers "<!-- NAME:begin -->"
// and "<!-- NAME:end -->" of the file at path with body; the markers must
// be there, in order.
func WriteSection(path, name, body string) error {
	beginMarker, endMarker := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	text := string(old)
	b, e := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if b < 0 || e < b {
		return fmt.Errorf("bench: %s: markers %s and %s not found in order", path, beginMarker, endMarker)
	}
	text = text[:b+len(beginMarker)] + "\n" + strings.TrimRight(body, "\n") + "\n" + text[e:]
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
