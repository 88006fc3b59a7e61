package ntpload

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteText writes r as a readable table.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	offered := "maximal"
	if r.Offered > 0 {
		offered = fmt.Sprintf("%.0f req/s", r.Offered)
	}
	mode := "GSO"
	if !r.GSO {
		mode = "plain sendmmsg"
	}
	if r.NTS {
		mode += fmt.Sprintf(", NTS, %d-byte requests", r.RequestLen)
	}
	if r.Protocol != "" && r.Protocol != ProtocolNTP {
		mode += ", " + r.Protocol
	}
	rows := [][2]string{
		{"server", r.Server},
		{"load", fmt.Sprintf("%s for %.2f s from %d source addresses, %d workers, bursts of %d (%s)", offered, r.Seconds, r.Sources, r.Workers, r.Burst, mode)},
		{"sent", fmt.Sprintf("%d (%.0f/s)", r.Sent, r.SendRate)},
		{"answered", fmt.Sprintf("%d (%.0f/s)", r.Answered, r.ResponseRate)},
		{"kissed", fmt.Sprintf("%d%s", r.Kissed, kissList(r.Kisses))},
		{"loss", fmt.Sprintf("%.4f%% (kisses are answers; %d dropped in our own receive buffer)", 100*r.Loss, r.RecvDropped)},
		{"unmatched / duplicate / malformed", fmt.Sprintf("%d / %d / %d", r.Unmatched, r.Duplicates, r.Malformed)},
		{"bytes per request / per answer", fmt.Sprintf("%d / %.1f", r.RequestLen, r.ResponseLen)},
		{"latency p50 / p90 / p99 / p99.9 / max", fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f µs", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)},
	}
	if r.ServerPID != 0 {
		rows = append(rows,
			[2]string{"server CPU", fmt.Sprintf("%.2f s (pid %d, %.2f cores)", r.ServerCPU, r.ServerPID, r.ServerCores)},
			[2]string{"responses per server CPU-second", fmt.Sprintf("%.0f", r.PerCPUSecond)})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// kissList is " (CODE n, CODE n)" in code order, or "" without kisses.
func kissList(k map[string]uint64) string {
	if len(k) == 0 {
		return ""
	}
	codes := make([]string, 0, len(k))
	for c := range k {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%s %d", c, k[c])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
