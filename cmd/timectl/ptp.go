package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
)

func ptpCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ptp",
		Short: "Show the PTP ports",
		Long: `Show each PTP port: its state (SLAVE, MASTER, LISTENING, ...) and why, the
master it follows and that master's grandmaster (clock class, accuracy, steps
removed), the UTC offset in use, the last offset from the master, the mean
path delay, the kind of timestamps, and the messages the port did not use.` + "\n" + jsonNote + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetch(ctx, g, cmd, "ptp", (*control.Client).PTP, renderPTP)
		},
	}
}

const noPTP = "timed runs no PTP port (ptp.ports in timed.yaml)."

func renderPTP(w io.Writer, r control.PTPReply) {
	if len(r.Ports) == 0 {
		fmt.Fprintln(w, noPTP)
		return
	}
	for i, p := range r.Ports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		row := func(k, v string) { fmt.Fprintf(w, "%-18s%s\n", k+":", v) }
		row("Port", fmt.Sprintf("%s (%s, role %s), identity %s", p.Interface, p.Transport, p.Role, orDash(p.Identity)))
		row("State", fmt.Sprintf("%s for %s: %s", p.State, fmtAgo(p.SinceAgo), p.Reason))
		if p.Grandmaster != "" {
			acc := "unknown"
			if p.GrandmasterAccuracy > 0 {
				acc = "within " + fmtSeconds(p.GrandmasterAccuracy, false)
			}
			row("Parent", p.Parent)
			row("Grandmaster", fmt.Sprintf("%s, clock class %d, accuracy %s, %d steps removed", p.Grandmaster, p.GrandmasterClass, acc, p.StepsRemoved))
		}
		scale := "arbitrary timescale (no UTC offset applied)"
		if p.PTPTimescale {
			valid := "marked valid"
			if !p.UTCOffsetValid {
				valid = "not marked valid"
			}
			scale = fmt.Sprintf("PTP (TAI), UTC offset %.0f s, %s", p.UTCOffset, valid)
		}
		row("Timescale", scale)
		if p.Measurements > 0 {
			row("Offset", fmtSeconds(p.Offset, true)+" (local − master, last measurement "+fmtAgo(p.LastMeasurementAgo)+" ago)")
			row("Mean path delay", fmtSeconds(p.MeanPathDelay, false))
			row("Timestamps", p.Timestamps)
			row("Measurements", fmt.Sprintf("%d", p.Measurements))
		}
		if len(p.Dropped) > 0 {
			reasons := make([]string, 0, len(p.Dropped))
			for k := range p.Dropped {
				reasons = append(reasons, k)
			}
			slices.Sort(reasons)
			row("Not used", "")
			for _, k := range reasons {
				fmt.Fprintf(w, "  %-16s%d\n", k+":", p.Dropped[k])
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
