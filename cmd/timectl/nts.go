package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
)

func ntsCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "nts",
		Short: "Show the state of Network Time Security, as client and as server",
		Long: `Show every NTS source: its NTS-KE server, whether the last key exchange
succeeded (or why it failed and when it is tried again), the AEAD algorithm,
the cookies held (of 8), the NTP server the key exchange named, when the last
key exchange was, and the NTS NAKs and authentication failures received.
When timed serves NTS (server.nts), the server side follows: NTS-KE
connections and handshakes, failures by kind, the cookie key in use and when
the next is made, and the cookies issued, accepted and rejected.` + "\n" + jsonResult("nts", "NTSReply") + "\n" + exitCodes,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetch(ctx, g, cmd, "nts", (*control.Client).NTS, renderNTS)
		},
	}
}

func renderNTS(w io.Writer, r control.NTSReply) {
	if len(r.Clients) == 0 {
		fmt.Fprintln(w, "No NTS sources (nts: true on an ntp server or pool).")
	} else {
		rows := [][]string{{"NAME", "KE SERVER", "KEY EXCHANGE", "COOKIES", "AEAD", "NTP SERVER", "LAST KE", "NAKS", "AUTH FAILURES"}}
		var failed []string
		for _, c := range r.Clients {
			last, aead, ntp := "never", "-", "-"
			if c.LastKEAgo > 0 || c.KEs > 0 {
				last = fmtAgo(c.LastKEAgo) + " ago"
				aead, ntp = c.AEAD, c.NTPServer
			}
			rows = append(rows, []string{c.Name, c.KEServer, c.KEState, fmt.Sprintf("%d of %d", c.Cookies, c.MaxCookies),
				aead, ntp, last, strconv.FormatUint(c.NAKs, 10), strconv.FormatUint(c.AuthFailures, 10)})
			if c.KEState == "failed" {
				failed = append(failed, fmt.Sprintf("  %s: %s; next try in %s", c.Name, c.KEError,
					time.Duration(c.RetryIn*float64(time.Second)).Round(time.Second)))
			}
		}
		writeTable(w, rows, func(int, int) string { return "" }, false)
		if len(failed) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "Failed key exchanges:")
			fmt.Fprintln(w, strings.Join(failed, "\n"))
		}
	}
	fmt.Fprintln(w)
	s := r.Server
	if s == nil {
		fmt.Fprintln(w, "timed serves no NTS (server.nts in timed.yaml).")
		return
	}
	row := func(k, v string) { fmt.Fprintf(w, "%-17s%s\n", k+":", v) }
	row("NTS-KE server", fmt.Sprintf("on %s: %d connections (%d refused, %d active)", strings.Join(s.Listen, ", "), s.Accepted, s.Refused, s.Active))
	row("Handshakes", fmt.Sprintf("%d TLS, %d key exchanges answered", s.Handshakes, s.Exchanges))
	row("Failures", fmt.Sprintf("%d TLS, %d timed out, %d bad requests, %d unsupported, %d internal, %d writes",
		s.TLSErrors, s.Timeouts, s.BadRequests, s.Unsupported, s.InternalErrors, s.WriteErrors))
	key := "none yet"
	if s.KeyID != "" {
		key = fmt.Sprintf("id %s, next one in %s", s.KeyID, time.Duration(s.KeyRotatesIn*float64(time.Second)).Round(time.Second))
	}
	row("Cookie key", key)
	row("Cookies", fmt.Sprintf("%d issued by NTS-KE, %d accepted, %d rejected", s.CookiesIssued, s.CookiesAccepted, s.CookiesRejected))
	row("NTS responses", fmt.Sprintf("%d authenticated, %d NTS NAKs", s.Answered, s.NAKs))
}
