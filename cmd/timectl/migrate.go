package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/timed-project/timed/config"
)

// migrateCommand is `timectl migrate`: another daemon's configuration file
// to timed.yaml.
func migrateCommand() *cobra.Command {
	var (
		from, out     string
		ifaces        []string
		force, follow bool
	)
	cmd := &cobra.Command{
		Use:   "migrate --from chrony|ntpsec|ntpd-rs|ptp4l [--interface IF ...] FILE",
		Short: "Turn a chrony, ntpsec, ntpd-rs or ptp4l configuration into timed.yaml",
		Long: `Read the configuration file of chronyd (chrony.conf), ntpsec's ntpd (ntp.conf),
ntpd-rs (ntp.toml) or linuxptp's ptp4l and write the timed.yaml that does the
same, to standard output or to the file given with -w. Each setting names the
line it came from; every directive that is not carried over is a comment at
the top saying its line and why. Lines that could not be understood, or that
mean something timed does differently, are also printed to standard error as
warnings. The output always passes 'timectl validate'.

ptp4l takes its interfaces from its command line: give them with --interface
(repeated); [IFACE] sections of the file make ports too. Files named by
chrony's include, confdir and sourcedir and ntpsec's includefile are only
noted, unless --follow-includes reads them.

docs/MIGRATION.md lists what maps to what.` + "\n" + exitCodes,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(config.MigrateFormats, from) {
				return usageError{fmt.Errorf("--from %q: want one of %s", from, strings.Join(config.MigrateFormats, ", "))}
			}
			if len(ifaces) > 0 && from != "ptp4l" {
				return usageError{errors.New("--interface is for --from ptp4l only")}
			}
			src, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			r, err := config.Migrate(from, args[0], src, config.MigrateOptions{Interfaces: ifaces, FollowIncludes: follow})
			if err != nil {
				return err
			}
			for _, w := range r.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "timectl: warning: %s\n", w)
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(r.YAML)
				return err
			}
			return writeNew(out, r.YAML, force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the format of FILE: chrony, ntpsec, ntpd-rs or ptp4l")
	f.StringArrayVarP(&ifaces, "interface", "i", nil, "a network `IF`ace ptp4l ran on (repeat for more)")
	f.StringVarP(&out, "write", "w", "", "write the YAML to `OUT` instead of standard output")
	f.BoolVar(&force, "force", false, "with -w, replace OUT if it exists")
	f.BoolVar(&follow, "follow-includes", false, "read the files that include, confdir, sourcedir and includefile name")
	return cmd
}

// writeNew writes data to path, refusing to replace a file unless force.
func writeNew(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("migrate: %s exists; add --force to replace it", path)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("migrate: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("migrate: %s: %w", path, err)
	}
	return nil
}
