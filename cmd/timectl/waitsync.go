package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// errTimedOut is what waitsync returns when timed was not synchronized
// within --max-error before --timeout (exit status 1).
var errTimedOut = errors.New("timed out")

func waitsyncCommand(ctx context.Context, g *globals) *cobra.Command {
	var (
		maxError time.Duration
		timeout  time.Duration
		interval time.Duration
		verbose  bool
	)
	cmd := &cobra.Command{
		Use:   "waitsync",
		Short: "Wait until the clock is synchronized within a bound (for boot ordering and scripts)",
		Long: `Wait until timed reports the clock synchronized with an estimated maximum
error within --max-error, then exit 0: what chrony-wait does for chrony.

The estimated maximum error is the engine's own bound on the clock's error
from true time, the root distance an NTP server on this host would announce:
root delay / 2 + root dispersion, where timed's root dispersion already holds
the estimated offset (|offset|), its uncertainty and the reference's own root
dispersion. It is the figure chronyc waitsync checks and the kernel's maximum
error; |offset| + uncertainty alone would ignore how far the reference itself
may be from true time. A clock in holdover (every source lost) never counts.

timed is asked every --interval. While it cannot be reached (at boot it may
not be up yet) waitsync keeps trying. With -v it prints one line per check;
it always prints the final result. With -o json the final output is the last
status reply (control.StatusReply, as "timectl status -o json").

Exit status: 0 synchronized within the bound; 1 --timeout passed first (0,
the default, waits forever); 2 usage error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxError <= 0 || interval <= 0 || timeout < 0 {
				return usageError{errors.New("waitsync: --max-error and --interval must be positive, --timeout not negative")}
			}
			return g.waitsync(ctx, cmd, maxError, timeout, interval, verbose)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&maxError, "max-error", 100*time.Millisecond, "largest estimated error that counts as synchronized")
	f.DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait forever)")
	f.DurationVar(&interval, "interval", time.Second, "time between status queries")
	f.BoolVarP(&verbose, "verbose", "v", false, "print one line per check")
	return cmd
}

// maxError is the engine's bound on the clock's error from true time, in
// seconds, and whether the status counts as synchronized at all.
func maxError(st sources.Status) (bound float64, synced bool) {
	if !st.Synchronized || st.Holdover || st.Reference == "" {
		return math.Inf(1), false
	}
	return st.RootDelay/2 + st.RootDispersion, true
}

// waitsync polls timed until it is synchronized within limit.
func (g *globals) waitsync(ctx context.Context, cmd *cobra.Command, limit, timeout, interval time.Duration, verbose bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	w := cmd.OutOrStdout()
	start := wallClock()
	last := "timed not reached yet"
	for try := 1; ; try++ {
		r, err := g.statusOnce(ctx, cmd, queryWait(interval))
		done := false
		switch {
		case err != nil:
			last = err.Error()
		default:
			bound, synced := maxError(r.Engine)
			switch {
			case !synced:
				last = "not synchronized: " + r.Engine.Message
			case bound > limit.Seconds():
				last = fmt.Sprintf("synchronized to %s, estimated error %s > %s", r.Engine.Reference, fmtSeconds(bound, false), limit)
			default:
				last = fmt.Sprintf("synchronized to %s, estimated error %s ≤ %s", r.Engine.Reference, fmtSeconds(bound, false), limit)
				done = true
			}
		}
		if verbose {
			fmt.Fprintf(cmd.ErrOrStderr(), "try %d: %s\n", try, last)
		}
		if done {
			if g.output == "json" {
				return writeJSON(w, r, true)
			}
			fmt.Fprintf(w, "%s after %s\n", last, wallClock().Sub(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waitsync: %w after %s: %s", errTimedOut, wallClock().Sub(start).Round(time.Millisecond), last)
		case <-time.After(interval):
		}
	}
}

// statusOnce dials timed and asks for its status, giving up after wait.
func (g *globals) statusOnce(ctx context.Context, cmd *cobra.Command, wait time.Duration) (control.StatusReply, error) {
	c, err := g.dial(cmd)
	if err != nil {
		return control.StatusReply{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	r, err := c.Status(ctx)
	if err != nil {
		return control.StatusReply{}, fmt.Errorf("status: %w", err)
	}
	return r, nil
}
