package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
)

func serverStatsCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serverstats",
		Short: "Show the NTP server's counters",
		Long: `Show what timed's NTP server has done since it started: requests received,
time responses sent (and how many in interleaved mode), kiss-of-death replies,
requests dropped and why, and how full the client table is.` + "\n" + jsonNote + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetch(ctx, g, cmd, "serverstats", (*control.Client).ServerStats, func(w io.Writer, r control.ServerStatsReply) {
				renderServerStats(w, r)
			})
		},
	}
}

func clientsCommand(ctx context.Context, g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "List the NTP server's busiest clients",
		Long: `List the clients of timed's NTP server, busiest first: requests, how many were
answered with time, with a kiss-of-death or not at all (rate limits, access
lists), the request rate, the time since the last request, and whether the
client uses interleaved mode.` + "\n" + jsonNote + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > control.MaxClientsLimit {
				return usageError{fmt.Errorf("clients: --limit %d out of range 1..%d", limit, control.MaxClientsLimit)}
			}
			get := func(c *control.Client, ctx context.Context) (control.ClientsReply, error) {
				return c.Clients(ctx, limit)
			}
			return fetch(ctx, g, cmd, "clients", get, renderClients)
		},
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", control.DefaultClientsLimit, "show at most `N` clients")
	return cmd
}

const noServer = "timed serves no time: no NTP server is configured (server.listen in timed.yaml)."

func renderServerStats(w io.Writer, r control.ServerStatsReply) {
	row := func(k, v string) { fmt.Fprintf(w, "%-21s%s\n", k+":", v) }
	defer func() {
		if c := r.CSPTP; c != nil {
			if r.Enabled {
				fmt.Fprintln(w)
			}
			renderCSPTPStats(row, w, c)
		}
	}()
	if !r.Enabled {
		if r.CSPTP == nil {
			fmt.Fprintln(w, noServer)
		}
		return
	}
	up := time.Duration(r.Uptime * float64(time.Second)).Round(time.Second)
	row("Listening on", fmt.Sprintf("%s (%s each)", strings.Join(r.Listen, ", "), plural(r.Workers/max(len(r.Listen), 1), "socket", "sockets")))
	row("Running for", up.String())
	serving := fmt.Sprintf("stratum %d, reference %s", r.Stratum, fmtRefID(r.RefID, r.Stratum))
	if r.Stratum >= 16 {
		serving = "unsynchronized (stratum 16): clients will not use this time"
	}
	row("Serving", serving)
	row("Requests received", fmt.Sprintf("%d (%s)", r.Received, perSecond(r.Received, r.Uptime)))
	row("Answered with time", fmt.Sprintf("%d (%s in interleaved mode)", r.Answered, plural(int(r.Interleaved), "response", "responses")))
	row("Kiss-of-death sent", fmt.Sprintf("%d RATE (slow down), %d DENY (refused)", r.KissRate, r.KissDeny))
	var dropped uint64
	reasons := make([]string, 0, len(r.Dropped))
	for k, v := range r.Dropped {
		dropped += v
		if v > 0 {
			reasons = append(reasons, k)
		}
	}
	// Most first; equal counts by name, so that the order does not depend
	// on the map's.
	slices.SortFunc(reasons, func(a, b string) int {
		return cmp.Or(cmp.Compare(r.Dropped[b], r.Dropped[a]), strings.Compare(a, b))
	})
	row("Not answered", fmt.Sprintf("%d", dropped))
	for _, k := range reasons {
		fmt.Fprintf(w, "  %-19s%d\n", k+":", r.Dropped[k])
	}
	row("Client table", fmt.Sprintf("%d of %d clients remembered", r.Clients, r.ClientTableSize))
	stamps := "every receive time from the kernel"
	if r.UserRxStamps > 0 {
		stamps = fmt.Sprintf("%d receive times read in user space (the kernel gave none)", r.UserRxStamps)
	}
	row("Timestamps", fmt.Sprintf("%s; %d kernel send times kept for interleaved clients", stamps, r.TxStamps))
	if n := r.NTS; n != nil {
		row("NTS responses", fmt.Sprintf("%d authenticated, %d NTS NAKs (cookie unusable or authentication failed)", n.Answered, n.NAKs))
		row("NTS-KE", fmt.Sprintf("on %s: %d connections (%d refused, %d active), %d handshakes, %d key exchanges",
			strings.Join(n.Listen, ", "), n.Accepted, n.Refused, n.Active, n.Handshakes, n.Exchanges))
		row("NTS-KE failures", fmt.Sprintf("%d TLS, %d timed out, %d bad requests, %d unsupported, %d internal, %d writes",
			n.TLSErrors, n.Timeouts, n.BadRequests, n.Unsupported, n.InternalErrors, n.WriteErrors))
	}
}

// renderCSPTPStats prints the CSPTP/SPTP responder's counters.
func renderCSPTPStats(row func(k, v string), w io.Writer, c *control.CSPTPServerStats) {
	row("CSPTP server on", strings.Join(c.Listen, ", "))
	var answered []string
	for _, p := range slices.Sorted(maps.Keys(c.Answered)) {
		answered = append(answered, fmt.Sprintf("%d %s", c.Answered[p], p))
	}
	if len(answered) == 0 {
		answered = []string{"none yet"}
	}
	row("CSPTP answered", strings.Join(answered, ", "))
	var dropped uint64
	for _, n := range c.Dropped {
		dropped += n
	}
	row("CSPTP not answered", fmt.Sprintf("%d", dropped))
	for _, k := range slices.Sorted(maps.Keys(c.Dropped)) {
		if c.Dropped[k] > 0 {
			fmt.Fprintf(w, "  %-19s%d\n", k+":", c.Dropped[k])
		}
	}
}

func perSecond(n uint64, seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f/s on average", float64(n)/seconds)
}

func renderClients(w io.Writer, r control.ClientsReply) {
	if !r.Enabled {
		fmt.Fprintln(w, noServer)
		return
	}
	if len(r.Clients) == 0 {
		fmt.Fprintln(w, "No clients yet.")
		return
	}
	width := len("Address")
	for _, c := range r.Clients {
		width = max(width, len(c.Address))
	}
	fmt.Fprintf(w, "%-*s %10s %10s %8s %8s %12s %10s %s\n", width, "Address", "Requests", "Answered", "Kissed", "Dropped", "Rate", "Last", "Mode")
	for _, c := range r.Clients {
		mode := "basic"
		if c.Interleaved {
			mode = "interleaved"
		}
		fmt.Fprintf(w, "%-*s %10d %10d %8d %8d %12s %10s %s\n", width, c.Address, c.Requests, c.Served, c.Kissed, c.Dropped,
			fmtRate(c.Rate), fmtAgo(c.LastSeenAgo), mode)
	}
	fmt.Fprintln(w, "Rate is the client's recent request rate; Last the time since its last request.")
}

// fmtRate prints a request rate per second, or per minute when slow.
func fmtRate(r float64) string {
	switch {
	case r <= 0:
		return "-"
	case r < 1:
		return fmt.Sprintf("%.2f/min", r*60)
	default:
		return fmt.Sprintf("%.1f/s", r)
	}
}
