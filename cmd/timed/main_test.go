package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/control"
)

func runArgs(ctx context.Context, args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	if code, _, stderr := runArgs(ctx, "--bogus"); code != 2 || !strings.Contains(stderr, "unknown flag") {
		t.Errorf("--bogus: %d %q", code, stderr)
	}
	if code, _, stderr := runArgs(ctx, "extra"); code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("extra: %d %q", code, stderr)
	}
	if code, out, _ := runArgs(ctx, "--version"); code != 0 || !strings.Contains(out, "timed version") {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, out, _ := runArgs(ctx, "--help"); code != 0 || !strings.Contains(out, "Exit status") {
		t.Errorf("--help: %d %q", code, out)
	}
}

func TestBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timed.yaml")
	os.WriteFile(path, []byte("clock: {driver: sundial}\n"), 0o644)
	code, _, stderr := runArgs(context.Background(), "-c", path)
	if code != 1 || !strings.Contains(stderr, path+":1:") {
		t.Errorf("bad config: %d %q", code, stderr)
	}
	code, _, stderr = runArgs(context.Background(), "-c", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing -c file: %d %q", code, stderr)
	}
}

func TestLoadConfigFallsBackToEmbedded(t *testing.T) {
	cfg, from, embedded, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false)
	if err != nil || !embedded || from != "" || len(cfg.NTP.Servers) == 0 {
		t.Errorf("absent default file: %v %q %v %v", cfg, from, embedded, err)
	}
}

// timed runs until its context ends, answers on its control socket and
// exits 0.
func TestRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "timed.sock")
	path := filepath.Join(dir, "timed.yaml")
	os.WriteFile(path, []byte("clock: {driver: virtual}\ndrift_file: \"\"\ncontrol: {socket: "+sock+"}\nlog: {level: warn}\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, _, _ := runArgs(ctx, "-c", path)
		done <- code
	}()
	deadline := time.Now().Add(5 * time.Second)
	var c *control.Client
	for {
		var err error
		if c, err = control.Dial(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no control socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := c.Status(ctx)
	c.Close()
	if err != nil || st.Clock.Driver != "virtual" {
		t.Errorf("status: %+v %v", st, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after stop", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed did not stop")
	}
}
