package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// unit picks the unit for a value in seconds of magnitude mag.
func unit(mag float64) (scale float64, name string) {
	switch mag = math.Abs(mag); {
	case mag == 0 || mag >= 1:
		return 1, "s"
	case mag >= 1e-3:
		return 1e3, "ms"
	case mag >= 1e-6:
		return 1e6, "µs"
	default:
		return 1e9, "ns"
	}
}

// fmtSeconds prints seconds in ns, µs, ms or s by magnitude, signed when
// sign is set.
func fmtSeconds(v float64, sign bool) string {
	scale, name := unit(v)
	f := "%.3f %s"
	if sign {
		f = "%+.3f %s"
	}
	return fmt.Sprintf(f, v*scale, name)
}

// fmtOffset prints an offset and its uncertainty in one unit, chosen by
// the larger of the two: "+12.345 ± 3.000 µs".
func fmtOffset(off, unc float64) string {
	scale, name := unit(math.Max(math.Abs(off), unc))
	return fmt.Sprintf("%+.3f ± %.3f %s", off*scale, unc*scale, name)
}

// fmtDelay prints a round-trip delay, or "-" for none (a reference
// clock measures no delay).
func fmtDelay(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmtSeconds(v, false)
}

// fmtAgo prints a time in the past given in seconds.
func fmtAgo(s float64) string {
	if s < 0 || math.IsNaN(s) {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// fmtPoll prints a poll interval of 2^n seconds.
func fmtPoll(n int) string {
	v := math.Ldexp(1, n)
	if v >= 1 {
		return time.Duration(v * float64(time.Second)).String()
	}
	return strconv.FormatFloat(v*1e3, 'f', -1, 64) + "ms"
}

// fmtRefID prints a reference identifier: four ASCII letters for a
// stratum 0 or 1 source (GPS, PPS), else an IPv4 address (or the hash of an
// IPv6 one).
func fmtRefID(id uint32, stratum uint8) string {
	b := []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	if stratum <= 1 {
		s := strings.TrimRight(string(b), "\x00")
		printable := s != ""
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e {
				printable = false
			}
		}
		if printable {
			return s
		}
	}
	return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
)

func paint(s, code string, on bool) string {
	if !on || code == "" {
		return s
	}
	return code + s + ansiReset
}

// renderStatus prints the tracking view of `timectl status`.
func renderStatus(w io.Writer, r control.StatusReply, colour bool) {
	st := r.Engine
	row := func(k, v string) { fmt.Fprintf(w, "%-17s%s\n", k+":", v) }
	sync := paint("no", ansiRed, colour)
	if st.Synchronized {
		sync = paint("yes", ansiGreen, colour)
	}
	if st.Holdover {
		sync += " (holdover: every source is lost; running on the last frequency)"
	}
	row("Synchronized", sync)
	if st.Reference != "" {
		row("Reference", fmt.Sprintf("%s (stratum %d, refid %s)", st.Reference, st.Stratum, fmtRefID(st.RefID, st.Stratum)))
	} else {
		row("Reference", "none")
	}
	off := fmtOffset(st.Offset, st.Uncertainty)
	switch {
	case st.Offset > 0:
		off += " (the local clock is behind)"
	case st.Offset < 0:
		off += " (the local clock is ahead)"
	}
	row("Offset", off)
	row("Frequency", fmt.Sprintf("%+.3f ± %.3f ppm", st.Frequency, st.FrequencyUncertainty))
	row("Root delay", fmtSeconds(st.RootDelay, false))
	row("Root dispersion", fmtSeconds(st.RootDispersion, false))
	row("Leap", st.Leap.String())
	last := "never"
	if st.Updates > 0 {
		last = fmtAgo(st.LastUpdateAgo) + " ago"
	}
	row("Last update", fmt.Sprintf("%s (%s, %s)", last, plural(st.Updates, "update", "updates"), plural(st.Steps, "step", "steps")))
	if st.Message != "" {
		row("Engine", st.Message)
	}
	clk := r.Clock.Driver
	if clk == "" {
		clk = "unknown"
	}
	if r.Clock.Driver == "virtual" {
		o := r.Clock.OffsetFromSystem
		rel := "ahead of"
		if o < 0 {
			rel = "behind"
		}
		clk += fmt.Sprintf(", %s %s the system clock", fmtSeconds(math.Abs(o), false), rel)
	}
	if r.Clock.Device != "" {
		clk += " " + r.Clock.Device
	}
	clk += fmt.Sprintf(", frequency correction %+.3f ppm", r.Clock.Frequency)
	row("Clock", clk)
	if t := r.Clock.Tie; t != nil {
		row("Tied clock", tieLine(*t))
	}
}

// tieLine describes the tie of the system clock to the PTP hardware clock.
func tieLine(t control.TieInfo) string {
	name := t.Clock
	if name == "" {
		name = "system"
	}
	if t.Waiting {
		return name + ", waiting for the PHC's first synchronization"
	}
	rel := "ahead of"
	if t.Offset < 0 {
		rel = "behind"
	}
	return fmt.Sprintf("%s, %s %s the PHC, frequency correction %+.3f ppm (%s, %d dropped, %s)",
		name, fmtSeconds(math.Abs(t.Offset), false), rel, t.Frequency,
		plural(t.Updates, "update", "updates"), t.Dropped, plural(t.Steps, "step", "steps"))
}

// stateInfo describes each state for the legend, with its colour.
var stateInfo = []struct {
	state  sources.SourceState
	colour string
	means  string
}{
	{sources.StateSelected, ansiGreen, "the clock follows this source"},
	{sources.StateCombined, ansiGreen, "agrees with the selected source and is averaged in"},
	{sources.StateCandidate, ansiCyan, "agrees, but is not averaged in (further away or not preferred)"},
	{sources.StateFalseticker, ansiRed, "disagrees with the other sources; not used"},
	{sources.StateTooFar, ansiYellow, "its distance or uncertainty is too large to be useful"},
	{sources.StateUnreachable, ansiYellow, "did not answer recent polls"},
	{sources.StateInitial, ansiDim, "still collecting its first samples"},
	{sources.StateNoSelect, ansiDim, "configured never to be used (noselect); only measured"},
	{sources.StateUnauthenticated, ansiYellow, "not authenticated (no NTS) while engine.require_authenticated is set; only measured"},
	{sources.StateOutOfBound, ansiRed, "configured bounded_by: authenticated, and outside what the authenticated (NTS) sources allow; not used"},
	{sources.StateFault, ansiRed, "cannot be used now, as the source itself reports (see why below)"},
}

func stateMeaning(s sources.SourceState) string {
	for _, i := range stateInfo {
		if i.state == s {
			return i.means
		}
	}
	return "no reason given"
}

func stateColour(s sources.SourceState) string {
	for _, i := range stateInfo {
		if i.state == s {
			return i.colour
		}
	}
	return ""
}

// renderSources prints the table of `timectl sources`, a legend of the
// states shown and why each source not in use is not selected.
// and, for reference clocks, the state of their input.
func renderSources(w io.Writer, srcs []sources.SourceStatus, refclocks []control.RefclockInfo, colour bool) {
	if len(srcs) == 0 && len(refclocks) == 0 {
		fmt.Fprintln(w, "No sources.")
		return
	}
	header := []string{"NAME", "KIND", "STATE", "REACH", "POLL", "LAST", "OFFSET", "DELAY"}
	rows := [][]string{header}
	for _, s := range srcs {
		last, off, delay := "-", "-", "-"
		if s.Samples > 0 {
			last = fmtAgo(s.LastSampleAgo)
			off = fmtOffset(s.Offset, s.Uncertainty)
			delay = fmtDelay(s.Delay)
		}
		rows = append(rows, []string{s.Name + runtimeMark(s.Runtime), s.Kind, string(s.State), fmt.Sprintf("%o", s.Reach),
			fmtPoll(s.Poll), last, off, delay})
	}
	writeTable(w, rows, func(row, col int) string {
		if col == 2 && row > 0 {
			return stateColour(srcs[row-1].State)
		}
		return ""
	}, colour)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "States:")
	for _, i := range stateInfo {
		for _, s := range srcs {
			if s.State == i.state {
				fmt.Fprintf(w, "  %-12s %s\n", i.state, i.means)
				break
			}
		}
	}
	if slices.ContainsFunc(srcs, func(s sources.SourceStatus) bool { return s.Runtime }) {
		fmt.Fprintln(w, runtimeLegend)
	}
	var why []string
	for _, s := range srcs {
		if s.State == sources.StateSelected || s.State == sources.StateCombined {
			continue
		}
		reason := s.Reason
		if reason == "" {
			reason = stateMeaning(s.State)
		}
		why = append(why, fmt.Sprintf("  %s: %s: %s", s.Name, s.State, reason))
	}
	if len(why) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Not selected:")
		for _, l := range why {
			fmt.Fprintln(w, l)
		}
	}
	if len(refclocks) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Reference clocks:")
		rows := [][]string{{"  NAME", "KIND", "DEVICE", "INPUT"}}
		for _, r := range refclocks {
			rows = append(rows, []string{"  " + r.Name, r.Kind, r.Device, refclockQuality(r)})
		}
		writeTable(w, rows, func(row, col int) string {
			if col == 3 && row > 0 && !refclocks[row-1].Connected {
				return ansiRed
			}
			return ""
		}, colour)
	}
}

// writeTable prints rows as columns two spaces apart, each cell painted in
// the colour cellColour gives it ("" for none).
func writeTable(w io.Writer, rows [][]string, cellColour func(row, col int) string, colour bool) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell += strings.Repeat(" ", width[i]-len([]rune(c))+2)
			}
			if code := cellColour(ri, i); code != "" {
				cell = paint(cell, code, colour)
			}
			b.WriteString(cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// refclockQuality says in words how a reference clock's input is: open or
// not and why, the GNSS fix, the samples and the inputs dropped.
func refclockQuality(r control.RefclockInfo) string {
	var parts []string
	if r.Connected {
		parts = append(parts, "connected")
	} else {
		parts = append(parts, "not connected")
	}
	if r.Reason != "" {
		parts[0] += ": " + r.Reason
	}
	switch {
	case r.Mode >= 2:
		fix := fmt.Sprintf("%dD fix", r.Mode)
		if r.Satellites > 0 {
			fix += fmt.Sprintf(", %s", plural(r.Satellites, "satellite", "satellites"))
		}
		parts = append(parts, fix)
	case r.Mode == 1:
		parts = append(parts, "no fix")
	}
	smp := plural(int(r.Samples), "sample", "samples")
	if r.Samples > 0 {
		smp += " (last " + fmtAgo(r.LastSampleAgo) + " ago)"
	}
	parts = append(parts, smp)
	if len(r.Dropped) > 0 {
		var d []string
		for _, k := range slices.Sorted(maps.Keys(r.Dropped)) {
			if r.Dropped[k] > 0 {
				d = append(d, fmt.Sprintf("%s %d", k, r.Dropped[k]))
			}
		}
		if len(d) > 0 {
			parts = append(parts, "dropped: "+strings.Join(d, ", "))
		}
	}
	return strings.Join(parts, "; ")
}
