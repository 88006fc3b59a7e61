// Command timed is the time daemon: it keeps the clock synchronized to the
// time sources its configuration names.
//
// Usage:
//
//	timed [-c FILE]
//
// Without -c, timed reads /etc/timed/timed.yaml, or runs on the embedded
// default configuration when that file does not exist. SIGHUP re-reads the
// configuration; SIGINT and SIGTERM stop timed cleanly (the drift file is
// saved). Exit status: 0 after a clean stop, 1 on an error, 2 on a usage
// error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/daemon"
)

// version is set at link time (-ldflags "-X main.version=..."); otherwise
// it comes from the build information.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// usageError marks a mistake on the command line (exit status 2).
type usageError struct{ error }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs timed with args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand(ctx)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.Execute()
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "timed: %v\n", err)
		fmt.Fprintln(stderr, "Run 'timed --help' for usage.")
		return 2
	default:
		fmt.Fprintf(stderr, "timed: %v\n", err)
		return 1
	}
}

func newCommand(ctx context.Context) *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "timed [-c FILE]",
		Short: "timed keeps the clock synchronized to NTP (and more) sources",
		Long: `timed keeps the clock synchronized to the time sources its configuration names.

Without -c it reads ` + config.DefaultPath + `, or runs on the embedded default
configuration when that file does not exist. SIGHUP (or 'timectl reload')
re-reads the configuration; SIGINT and SIGTERM stop timed cleanly.

Exit status: 0 after a clean stop, 1 on an error, 2 on a usage error.`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(ctx, cfgFile, cmd.Flags().Changed("config"))
		},
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.Flags().StringVarP(&cfgFile, "config", "c", config.DefaultPath, "configuration `FILE`")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	addManCommand(cmd)
	return cmd
}

// loadConfig reads the configuration. It returns the path to reload from,
// "" for the embedded default, and whether the default was used because
// config.DefaultPath does not exist.
func loadConfig(path string, explicit bool) (cfg *config.Config, from string, embedded bool, err error) {
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return config.Default(), "", true, nil
		}
	}
	cfg, err = config.Load(path)
	if err != nil {
		return nil, "", false, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // SIGHUP re-reads the same file whatever the working directory
	}
	return cfg, path, false, nil
}

func serve(ctx context.Context, path string, explicit bool) error {
	cfg, from, embedded, err := loadConfig(path, explicit)
	if err != nil {
		return err
	}
	log, err := daemon.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer log.Sync()
	log.Info("timed starting", zap.String("version", versionString()), zap.Int("pid", os.Getpid()))
	if embedded {
		log.Info("no " + config.DefaultPath + "; running on the embedded default configuration")
	} else {
		log.Info("configuration loaded", zap.String("file", from))
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(cfg, from, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration")
				_ = d.Reload() // logged by Reload
			}
		}
	}()
	return d.Run(ctx)
}
