package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// wallClock is what watch and waitsync read the time of day from: the
// time line of each watch refresh and waitsync's time waited. Tests
// replace it to make that output deterministic.
var wallClock = time.Now

// ANSI sequences that redraw a terminal in place: cursor home, then clear
// to the end of the screen.
const ansiHomeClear = "\x1b[H\x1b[J"

func watchCommand(ctx context.Context, g *globals) *cobra.Command {
	var (
		interval time.Duration
		count    int
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Show status and sources, refreshed every interval",
		Long: `Show what "timectl status" and "timectl sources" show, together, refreshed
every --interval until Ctrl-C or SIGTERM, or after --count refreshes.

On a terminal the view is redrawn in place. Elsewhere (a pipe, a file) each
refresh is printed after a line with its time ("--- 2026-01-02T15:04:05Z").
With -o json each refresh is one status reply (control.StatusReply, as
"timectl status -o json") on one line: JSON Lines.

While timed cannot be reached the view says so and keeps trying.

Exit status: 0 stopped by a signal or after --count refreshes; 1 a
refresh could not be written; 2 usage error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 || count < 0 {
				return usageError{errors.New("watch: --interval must be positive and --count not negative")}
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return g.watch(ctx, cmd, interval, count)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many refreshes (0: until interrupted)")
	return cmd
}

// watch prints a snapshot every interval until ctx ends or count
// snapshots (count > 0) were printed. g.colour, set when standard output
// is a terminal, also selects redrawing in place.
func (g *globals) watch(ctx context.Context, cmd *cobra.Command, interval time.Duration, count int) error {
	w := cmd.OutOrStdout()
	for n := 1; ; n++ {
		if err := g.snapshot(ctx, cmd, w, queryWait(interval)); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if count > 0 && n >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// queryWait is how long one status query of watch or waitsync may take:
// the refresh interval, but at least a second (a short interval must not
// make a busy timed look unreachable) and at most 10 s.
func queryWait(interval time.Duration) time.Duration {
	return min(max(interval, time.Second), 10*time.Second)
}

// snapshot writes one refresh of watch.
func (g *globals) snapshot(ctx context.Context, cmd *cobra.Command, w io.Writer, wait time.Duration) error {
	r, err := g.statusOnce(ctx, cmd, wait)
	now := wallClock().UTC().Format(time.RFC3339)
	if g.output == "json" {
		if err != nil {
			// One line per refresh even when timed is away.
			return writeJSON(w, map[string]string{"time": now, "error": err.Error()}, false)
		}
		return writeJSON(w, r, false)
	}
	if g.colour {
		fmt.Fprint(w, ansiHomeClear)
	}
	fmt.Fprintf(w, "--- %s\n", now)
	if err != nil {
		_, err = fmt.Fprintf(w, "%v\n", err)
		return err
	}
	renderStatus(w, r, g.colour)
	fmt.Fprintln(w)
	renderSources(w, r.Engine.Sources, r.Refclocks, g.colour)
	return nil
}

// writeJSON writes v as JSON followed by a newline: indented, or on one
// line (JSON Lines).
func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}
