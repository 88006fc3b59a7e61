package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/timed-project/timed/config"
)

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	chrony := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(chrony, []byte("server 192.0.2.1 iburst\nrtcsync\nfrobnicate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ptp := filepath.Join(dir, "ptp4l.conf")
	if err := os.WriteFile(ptp, []byte("[global]\nslaveOnly 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.yaml")
	if err := os.WriteFile(existing, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    string // a YAML that must parse and contain this, or "" for none
		stderr    string
		wroteFile string
	}{
		{"to stdout, warnings to stderr", []string{"migrate", "--from", "chrony", chrony}, 0, "address: 192.0.2.1", "warning: " + chrony + ":3: frobnicate: unknown directive", ""},
		{"ptp4l with interfaces", []string{"migrate", "--from", "ptp4l", "-i", "eth0", "--interface", "eth1", ptp}, 0, "interface: eth1", "", ""},
		{"to a new file", []string{"migrate", "--from", "chrony", "-w", filepath.Join(dir, "new.yaml"), chrony}, 0, "", "", filepath.Join(dir, "new.yaml")},
		{"refuses to overwrite", []string{"migrate", "--from", "chrony", "-w", existing, chrony}, 1, "", "exists; add --force", ""},
		{"overwrites with --force", []string{"migrate", "--from", "chrony", "-w", existing, "--force", chrony}, 0, "", "", existing},
		{"no --from", []string{"migrate", chrony}, 2, "", `--from "": want one of chrony, ntpsec, ntpd-rs, ptp4l`, ""},
		{"unknown format", []string{"migrate", "--from", "openntpd", chrony}, 2, "", "want one of", ""},
		{"--interface for chrony", []string{"migrate", "--from", "chrony", "-i", "eth0", chrony}, 2, "", "--interface is for --from ptp4l only", ""},
		{"no file", []string{"migrate", "--from", "chrony"}, 2, "", "want 1 argument", ""},
		{"missing file", []string{"migrate", "--from", "chrony", filepath.Join(dir, "nope")}, 1, "", "no such file", ""},
		{"not that format", []string{"migrate", "--from", "ptp4l", chrony}, 1, "", chrony + ":1: this is not a ptp4l configuration", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, o, e := runArgs(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr: %s", code, tc.code, e)
			}
			if tc.stdout != "" {
				if _, err := config.Parse("stdout", []byte(o)); err != nil {
					t.Errorf("stdout is not a valid timed.yaml: %v\n%s", err, o)
				}
				if !strings.Contains(o, tc.stdout) {
					t.Errorf("stdout lacks %q:\n%s", tc.stdout, o)
				}
			}
			if !strings.Contains(e, tc.stderr) {
				t.Errorf("stderr lacks %q: %s", tc.stderr, e)
			}
			if tc.wroteFile != "" {
				c, err := config.Load(tc.wroteFile)
				if err != nil {
					t.Fatalf("the file written: %v", err)
				}
				if len(c.NTP.Servers) != 1 || c.NTP.Servers[0].Address != "192.0.2.1" {
					t.Errorf("the file written has servers %+v", c.NTP.Servers)
				}
			}
		})
	}
}
