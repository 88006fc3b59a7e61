package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
)

// runtimeLegend explains runtimeMark.
const runtimeLegend = "+ added with timectl add: kept across reloads, forgotten at a restart"

// runtimeMark marks the name of a source added at runtime.
func runtimeMark(runtime bool) string {
	if runtime {
		return " +"
	}
	return ""
}

const runtimeNote = `
Sources added at runtime are kept when timed reloads its configuration
(timectl reload, SIGHUP) until they are removed, also when the file does not
list them; a restart of timed forgets them: add them to timed.yaml to keep
them. Removing a source of the file stops it until the next reload.`

func burstCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "burst [SOURCE]",
		Short: "Make NTP sources send a quick burst of requests now",
		Long: `Make every NTP source, or the one named (host:port as timectl sources shows
it; a pool by its name makes all its servers burst), send four requests now,
two seconds apart, as chronyc burst does: a quick way to get fresh samples
after a network change.` + "\n" + jsonResult("burst", "BurstReply") + "\n" + exitCodes,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("%s: want at most one source, got %d", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			source := ""
			if len(args) == 1 {
				source = args[0]
			}
			burst := func(c *control.Client, ctx context.Context) (control.BurstReply, error) { return c.Burst(ctx, source) }
			return fetch(ctx, g, cmd, "burst", burst, func(w io.Writer, r control.BurstReply) {
				fmt.Fprintf(w, "burst started on %s: %s\n", plural(len(r.Sources), "source", "sources"), strings.Join(r.Sources, ", "))
			})
		},
	}
}

func addCommand(ctx context.Context, g *globals) *cobra.Command {
	var a control.AddArgs
	var minPoll, maxPoll int
	cmd := &cobra.Command{
		Use:   "add server|pool HOST[:PORT]",
		Short: "Start an NTP server or pool now, without editing the file",
		Long: `Start an NTP server or pool now, as an entry of ntp.servers or ntp.pools in
timed.yaml would, with the same defaults and checks. HOST is a name or an IP
address; an IPv6 address with a port is written [2001:db8::1]:123.` + "\n" + runtimeNote + "\n" + jsonResult("add", "AddReply") + "\n" + exitCodes,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || args[0] != control.AddServer && args[0] != control.AddPool {
				return usageError{fmt.Errorf("%s: want server or pool and HOST[:PORT]", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			a.Type = args[0]
			if a.Address, a.Port, err = splitHostPort(args[1]); err != nil {
				return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			if cmd.Flags().Changed("minpoll") {
				a.MinPoll = &minPoll
			}
			if cmd.Flags().Changed("maxpoll") {
				a.MaxPoll = &maxPoll
			}
			add := func(c *control.Client, ctx context.Context) (control.AddReply, error) { return c.AddSource(ctx, a) }
			return fetch(ctx, g, cmd, "add", add, func(w io.Writer, r control.AddReply) {
				fmt.Fprintf(w, "added %s %s (kept across reloads, forgotten at a restart)\n", a.Type, r.Name)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&a.IBurst, "iburst", false, "send a quick burst of requests at start")
	f.BoolVar(&a.NTS, "nts", false, "use Network Time Security (NTS-KE on port 4460 of HOST)")
	f.BoolVar(&a.Prefer, "prefer", false, "prefer this server in selection (servers only)")
	f.IntVar(&minPoll, "minpoll", 0, "shortest poll interval, log2 seconds `N` (default as in timed.yaml)")
	f.IntVar(&maxPoll, "maxpoll", 0, "longest poll interval, log2 seconds `N` (default as in timed.yaml)")
	return cmd
}

// splitHostPort splits HOST[:PORT]; the port is 0 when absent.
func splitHostPort(s string) (string, int, error) {
	if !strings.HasPrefix(s, "[") && strings.Count(s, ":") != 1 {
		return s, 0, nil // a name, an IPv4 address, or an IPv6 address without a port
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", s, err)
	}
	if port == "" {
		return host, 0, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port %q: want 1..65535", s, port)
	}
	return host, p, nil
}

func removeCommand(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove SOURCE",
		Short: "Stop an NTP server or pool now, without editing the file",
		Long: `Stop an NTP server or pool, named as timectl sources shows it (host:port) or
by its address alone; a pool's servers go with it.` + "\n" + runtimeNote + `

With -o json the output is {"ok": true}.` + "\n" + exitCodes,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.change(ctx, cmd, "removed "+args[0], func(c *control.Client, ctx context.Context) error {
				return c.RemoveSource(ctx, args[0])
			})
		},
	}
}
