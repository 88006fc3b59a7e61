package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
)

// jsonResult is the JSON note of a command whose -o json output is the
// result of its control command (reply, a control type).
func jsonResult(command, reply string) string {
	return `
With -o json the output is the result of the control protocol's "` + command + `"
command (control.` + reply + `), protocol version ` + strconv.Itoa(control.Version) + `. Later
versions may add fields; they do not rename or remove any without a new
protocol version.`
}

func sourceStatsCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sourcestats",
		Short: "Show what the filter of each source knows",
		Long: `Show, for every source, what its filter knows (as chronyc sourcestats): the
samples taken and held, the time the held ones span, the estimated offset
now (positive: the local clock is behind) and its standard deviation, the
typical error of one measurement, the oscillator's frequency error as this
source sees it with its uncertainty, the minimum delay the filter weighs
samples by, the poll interval, the samples left out as outliers, and the
restarts after the source's time jumped.` + "\n" + jsonResult("sourcestats", "SourceStatsReply") + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetch(ctx, g, cmd, "sourcestats", (*control.Client).SourceStats, renderSourceStats)
		},
	}
}

func renderSourceStats(w io.Writer, r control.SourceStatsReply) {
	if len(r.Sources) == 0 {
		fmt.Fprintln(w, "No sources.")
		return
	}
	rows := [][]string{{"NAME", "SAMPLES", "SPAN", "OFFSET", "STD DEV", "NOISE", "FREQUENCY", "MIN DELAY", "POLL", "OUTLIERS", "RESTARTS"}}
	runtime := false
	for _, s := range r.Sources {
		runtime = runtime || s.Runtime
		off, dev, noise, freq, delay := "-", "-", "-", "-", "-"
		if s.Valid {
			off, dev = fmtSeconds(s.Offset, true), fmtSeconds(s.StdDev, false)
			noise, delay = fmtSeconds(s.Noise, false), fmtDelay(s.MinDelay)
			freq = fmt.Sprintf("%+.3f ± %.3f ppm", s.Frequency, s.FrequencyUncertainty)
		}
		span := "-"
		if s.Window > 1 {
			span = fmtAgo(s.Span)
		}
		rows = append(rows, []string{s.Name + runtimeMark(s.Runtime), fmt.Sprintf("%d of %d", s.Window, s.Samples), span,
			off, dev, noise, freq, delay, fmtPoll(s.Poll), strconv.Itoa(s.Outliers), strconv.Itoa(s.Restarts)})
	}
	writeTable(w, rows, func(int, int) string { return "" }, false)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "SAMPLES: held by the filter of all taken; SPAN: from the oldest held to the newest;")
	fmt.Fprintln(w, "NOISE: the typical error of one measurement; FREQUENCY: the oscillator's error as the source sees it.")
	if runtime {
		fmt.Fprintln(w, runtimeLegend)
	}
}
