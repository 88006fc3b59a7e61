// Command timectl controls and inspects a running timed over its control
// socket, and checks configuration files.
//
//	timectl [-s SOCKET] [-o text|json] status|sources
//	timectl [-s SOCKET] reload|makestep
//	timectl validate FILE
//
// Exit status: 0 success, 1 error (timed unreachable, a refused command, an
// invalid file), 2 usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
)

// usageError marks a mistake on the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// errReported is returned when the failure was already printed (exit
// status 1).
var errReported = errors.New("reported")

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stdout)))
}

// run runs timectl with args and returns the exit status. colour turns on
// state colours in text output.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, colour bool) int {
	root := newRootCommand(ctx, colour)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "timectl: %v\n", err)
		fmt.Fprintln(stderr, "Run 'timectl --help' for usage.")
		return 2
	default:
		fmt.Fprintf(stderr, "timectl: %v\n", err)
		return 1
	}
}

type globals struct {
	socket string
	output string
	colour bool
}

const exitCodes = `
Exit status: 0 success; 1 error (timed unreachable, a command refused, an
invalid configuration file); 2 usage error.`

var jsonNote = `
With -o json the output is the result of the control protocol's "status"
command (control.StatusReply: {"engine": ..., "clock": ...}), protocol
version ` + strconv.Itoa(control.Version) + `. Later versions may add fields; they do not rename or remove
any without a new protocol version.`

func newRootCommand(ctx context.Context, colour bool) *cobra.Command {
	g := &globals{colour: colour}
	root := &cobra.Command{
		Use:   "timectl",
		Short: "timectl inspects and controls timed",
		Long: `timectl inspects and controls a running timed through its control socket,
and checks configuration files.

Anyone may query (status, sources); changing commands (reload, makestep, burst, add, remove) need
root or membership of the group timed.` + "\n" + exitCodes,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Help()
			return usageError{errors.New("a command is required")}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "text" && g.output != "json" {
				return usageError{fmt.Errorf("--output %q: want text or json", g.output)}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.socket, "socket", "s", control.DefaultSocket, "timed's control `SOCKET`")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		&cobra.Command{
			Use:   "status",
			Short: "Show whether and how well the clock is synchronized",
			Long: `Show whether the clock is synchronized, to which source, how far off it is
estimated to be (with the uncertainty of that estimate, one sigma), the
frequency correction, the error bounds an NTP server on this host would
announce, and the clock timed disciplines.` + "\n" + jsonNote + "\n" + exitCodes,
			Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return g.query(ctx, cmd, func(w io.Writer, r control.StatusReply) {
					renderStatus(w, r, g.colour)
				})
			},
		},
		&cobra.Command{
			Use:   "sources",
			Short: "List the time sources and their state in selection",
			Long: `List every time source with its state in selection, its reach (the last 8
polls in octal: 377 = all answered), poll interval, age of the last sample,
offset (positive: the local clock is behind) with its uncertainty, and delay.
A legend of the states and the reason each source not in use is not selected
follow the table, then each reference clock (gpsd, SOCK, SHM, PPS) with its
device and its input: connected or why not, the GNSS fix and satellites, the
samples given to the engine and the inputs dropped, by reason.` + "\n" + jsonNote + "\n" + exitCodes,
			Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return g.query(ctx, cmd, func(w io.Writer, r control.StatusReply) {
					renderSources(w, r.Engine.Sources, r.Refclocks, g.colour)
				})
			},
		},
		serverStatsCommand(ctx, g),
		clientsCommand(ctx, g),
		ptpCommand(ctx, g),
		sourceStatsCommand(ctx, g),
		ntsCommand(ctx, g),
		burstCommand(ctx, g),
		addCommand(ctx, g),
		removeCommand(ctx, g),
		waitsyncCommand(ctx, g),
		watchCommand(ctx, g),
		compareCommand(ctx, g),
		migrateCommand(),
		&cobra.Command{
			Use:   "validate FILE",
			Short: "Check a configuration file without starting anything",
			Long: `Check a configuration file. It prints "FILE: ok", or every mistake with its
line and column, and exits 1.` + "\n" + exitCodes,
			Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return validate(cmd.OutOrStdout(), args[0])
			},
		},
		&cobra.Command{
			Use:   "reload",
			Short: "Make timed re-read its configuration (as SIGHUP does)",
			Long: `Make timed re-read its configuration file, as SIGHUP does. Sources added to
the file are started and those removed are stopped; the others keep their
state, and sources added with timectl add stay. An invalid file changes
nothing and the errors are printed.` + "\n" + exitCodes,
			Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return g.change(ctx, cmd, "configuration reloaded", (*control.Client).Reload)
			},
		},
		&cobra.Command{
			Use:   "makestep",
			Short: "Let the next correction step the clock, whatever the step limit",
			Long: `Step the clock to timed's current estimate of true time at once, whatever the
step limit of the configuration.` + "\n" + exitCodes,
			Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return g.change(ctx, cmd, "clock stepped to the current estimate", (*control.Client).MakeStep)
			},
		},
	)
	addManCommand(root)
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", cmd.CommandPath(), args[0])}
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s: want %d argument(s), got %d", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}

// socketPath is the socket to dial: the one given with -s, else the
// default if it exists, else where an unprivileged timed falls back to.
func (g *globals) socketPath(cmd *cobra.Command) string {
	if cmd.Flags().Changed("socket") {
		return g.socket
	}
	for _, p := range []string{g.socket, control.FallbackSocket(os.Getenv("XDG_RUNTIME_DIR"))} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return g.socket
}

func (g *globals) dial(cmd *cobra.Command) (*control.Client, error) {
	path := g.socketPath(cmd)
	c, err := control.Dial(path)
	if err != nil {
		hint := "is timed running?"
		if errors.Is(err, fs.ErrPermission) {
			hint = "no permission to connect"
		}
		return nil, fmt.Errorf("cannot reach timed at %s (%s; -s names another socket): %w", path, hint, err)
	}
	return c, nil
}

// query fetches the status and prints it as text or JSON.
func (g *globals) query(ctx context.Context, cmd *cobra.Command, text func(io.Writer, control.StatusReply)) error {
	return fetch(ctx, g, cmd, "status", (*control.Client).Status, text)
}

// fetch asks timed one read-only question and prints the answer as text or
// JSON.
func fetch[T any](ctx context.Context, g *globals, cmd *cobra.Command, what string, get func(*control.Client, context.Context) (T, error), text func(io.Writer, T)) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := get(c, ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w := cmd.OutOrStdout()
	if g.output == "json" {
		return writeJSON(w, r, true)
	}
	text(w, r)
	return nil
}

// change sends a changing command.
func (g *globals) change(ctx context.Context, cmd *cobra.Command, done string, f func(*control.Client, context.Context) error) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f(c, ctx); err != nil {
		return err // the control package names the command
	}
	if g.output == "json" {
		fmt.Fprintln(cmd.OutOrStdout(), `{"ok": true}`)
	} else {
		fmt.Fprintln(cmd.OutOrStdout(), done)
	}
	return nil
}

// validate checks a configuration file and prints the outcome.
func validate(w io.Writer, path string) error {
	_, err := config.Load(path)
	if err == nil {
		fmt.Fprintf(w, "%s: ok\n", path)
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	return errReported
}
