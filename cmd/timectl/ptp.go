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
path delay, the kind of timestamps, the messages the port did not use and, with
unicast masters, what each was asked for and granted (or "denied", "no answer"),
and, for a master port with unicast_listen, each unicast client with the
message types granted it, their intervals and the seconds left. An 802.1AS
port (gptp.ports) also shows its profile (gptp or automotive), whether it is
asCapable, the neighbor with the mean link delay and the neighbor rate ratio,
the grandmaster's rate ratio and how long after start the first Sync came.` + "\n" + jsonNote + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetch(ctx, g, cmd, "ptp", (*control.Client).PTP, renderPTP)
		},
	}
}

const noPTP = "timed runs no PTP port (ptp.ports or gptp.ports in timed.yaml)."

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
			row("Grandmaster", fmt.Sprintf("%s, clock class %d, accuracy %s, %s removed", p.Grandmaster, p.GrandmasterClass, acc,
				plural(int(p.StepsRemoved), "step", "steps")))
		}
		scale := "arbitrary timescale (no UTC offset applied)"
		if p.PTPTimescale {
			valid := "marked valid"
			if !p.UTCOffsetValid {
				valid = "not marked valid"
			}
			scale = fmt.Sprintf("PTP (TAI), UTC offset %.0f s, %s", p.UTCOffset, valid)
		}
		if p.GPTP != nil && p.GPTP.Profile == "automotive" {
			scale = "the clock's own (the automotive profile carries no UTC offset)"
		}
		row("Timescale", scale)
		if g := p.GPTP; g != nil {
			capable := "asCapable"
			if !g.ASCapable {
				capable = "not asCapable (the neighbor does not answer peer delay requests, or its link delay exceeds neighbor_prop_delay_thresh)"
			}
			row("gPTP", fmt.Sprintf("profile %s, %s, Sync every 2^%d s", g.Profile, capable, g.LogSyncInterval))
			link := fmt.Sprintf("mean link delay %s, neighbor rate ratio %s, %d peer delay exchanges",
				fmtSeconds(p.MeanPathDelay, false), fmtRatio(g.NeighborRateRatio), g.PdelayExchanges)
			if g.RestoredLink {
				link += " (link delay and ratio restored from the state file, not measured yet)"
			}
			row("Neighbor", orDash(g.Neighbor)+": "+link)
			if g.RateRatio != 0 {
				row("GM rate ratio", fmtRatio(g.RateRatio))
			}
			if g.FirstSync > 0 {
				row("First Sync", fmt.Sprintf("%s after start", fmtSeconds(g.FirstSync, false)))
			}
		}
		if p.Measurements > 0 {
			label, from := "Offset", "local − master, last measurement"
			if p.Grandmaster == "" { // no master now: the figures are the last master's
				label, from = "Last offset", "local − the last master, measured"
			}
			row(label, fmtSeconds(p.Offset, true)+" ("+from+" "+fmtAgo(p.LastMeasurementAgo)+" ago)")
			row("Mean path delay", fmtSeconds(p.MeanPathDelay, false))
			row("Timestamps", p.Timestamps)
			row("Measurements", fmt.Sprintf("%d", p.Measurements))
		}
		renderUnicastMasters(w, p.UnicastMasters)
		renderUnicastClients(w, p.UnicastClients)
		if len(p.Dropped) > 0 {
			reasons := make([]string, 0, len(p.Dropped))
			for k := range p.Dropped {
				reasons = append(reasons, k)
			}
			slices.Sort(reasons)
			fmt.Fprintln(w, "Not used:")
			for _, k := range reasons {
				fmt.Fprintf(w, "  %-16s%d\n", k+":", p.Dropped[k])
			}
		}
	}
}

// renderUnicastMasters shows the unicast negotiation with each master: one
// line per master, one per message type asked for.
func renderUnicastMasters(w io.Writer, ms []control.PTPUnicastMaster) {
	if len(ms) == 0 {
		return
	}
	fmt.Fprintln(w, "Unicast masters:")
	for _, m := range ms {
		line := "  " + m.Address
		if m.Identity != "" {
			line += ", identity " + m.Identity
		}
		if m.Selected {
			line += " (selected)"
		}
		fmt.Fprintln(w, line)
		for _, g := range m.Grants {
			state := g.State
			if g.State == "granted" {
				state = fmt.Sprintf("granted, %s left", fmtAgo(g.Left))
			}
			fmt.Fprintf(w, "    %-12s every 2^%d s: %s\n", g.Message, g.LogInterval, state)
		}
	}
}

// renderUnicastClients shows the unicast clients a master port serves:
// one line per client, one per message type granted.
func renderUnicastClients(w io.Writer, cs []control.PTPUnicastClient) {
	if len(cs) == 0 {
		return
	}
	fmt.Fprintf(w, "%-18s%d\n", "Unicast clients:", len(cs))
	for _, c := range cs {
		line := "  " + c.Address
		if c.Identity != "" {
			line += ", identity " + c.Identity
		}
		fmt.Fprintln(w, line)
		for _, g := range c.Grants {
			fmt.Fprintf(w, "    %-12s every 2^%d s: granted, %s left\n", g.Message, g.LogInterval, fmtAgo(g.Left))
		}
	}
}

// fmtRatio shows a frequency ratio and its distance from 1 in ppm; 0 is
// not measured.
func fmtRatio(r float64) string {
	if r == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%.9f (%+.3f ppm)", r, (r-1)*1e6)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
