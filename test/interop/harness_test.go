//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
)

// TestMain removes the binaries built for the run when it ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds cmd/timed and cmd/timectl once per test run and returns
// their paths.
func binaries(t *testing.T) (timed, timectl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "timed-interop-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command(goCommand(), "build", "-o", binDir+string(os.PathSeparator), "./cmd/timed", "./cmd/timectl")
		cmd.Dir = peers.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/timed ./cmd/timectl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "timed"), filepath.Join(binDir, "timectl")
}

// goCommand is the go command: on the PATH, or the one that built the test.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// timedConfig is the part of timed.yaml the tests vary.
type timedConfig struct {
	SimOffset  string // e.g. "200ms"
	SimFreqPPM float64
	Port       int
	MinPoll    int
	MaxPoll    int
	LogLevel   string
	// XLeave asks the server for interleaved mode.
	XLeave bool
	// NoSources leaves the ntp section empty; Extra is appended to the
	// file as it is (a server section, for example).
	NoSources bool
	Extra     string
	// Name tells several timeds of one test apart ("timed-NAME").
	Name string
	// NTS, when set, is the server entry's nts: value (e.g. "true" or
	// "{port: 4460, ca: /path}").
	NTS string
	// MorePorts adds plain servers on 127.0.0.1 at these ports.
	MorePorts []int
	// DriftFile, when set, is the drift file (and so where state kept
	// across restarts goes); otherwise there is none.
	DriftFile string
	// Wrap is a command line timed runs under (a socket activator, a
	// change of user): timed and its arguments are appended to it.
	Wrap []string
	// Owner, when not 0, is the user and group ID that owns timed's
	// directory (its configuration, control socket and log), made in
	// /tmp so that this user can reach it.
	Owner int
}

// yaml renders a complete timed.yaml: virtual clock, no drift file unless
// DriftFile, one NTP server on 127.0.0.1, the control socket in dir, JSON
// logs.
func (c timedConfig) yaml(dir string) string {
	level := c.LogLevel
	if level == "" {
		level = "info"
	}
	ntp := fmt.Sprintf(`ntp:
  servers:
    - address: 127.0.0.1
      port: %d
      iburst: true
      xleave: %t
      minpoll: %d
      maxpoll: %d
`, c.Port, c.XLeave, c.MinPoll, c.MaxPoll)
	if c.NTS != "" {
		ntp += "      nts: " + c.NTS + "\n"
	}
	for _, p := range c.MorePorts {
		ntp += fmt.Sprintf("    - {address: 127.0.0.1, port: %d, iburst: true, minpoll: %d, maxpoll: %d}\n", p, c.MinPoll, c.MaxPoll)
	}
	if c.NoSources {
		ntp = "ntp: {servers: []}\n"
	}
	return fmt.Sprintf(`clock:
  driver: virtual
  simulate:
    offset: %s
    frequency_ppm: %g
drift_file: %q
%scontrol:
  socket: %s
log:
  level: %s
  format: json
%s`, c.SimOffset, c.SimFreqPPM, c.DriftFile, ntp, filepath.Join(dir, "timed.sock"), level, c.Extra)
}

// timedProc is a running timed and the timectl that talks to it.
type timedProc struct {
	*peers.Proc
	timectl string
	socket  string
}

// startTimed writes cfg and runs timed on it (in netns when set), without
// CAP_SYS_TIME (peers.Start), and waits until its control socket answers.
func startTimed(t *testing.T, cfg timedConfig, netns string) *timedProc {
	t.Helper()
	timed, timectl := binaries(t)
	var dir string
	if cfg.Owner == 0 {
		dir = t.TempDir()
	} else {
		d, err := os.MkdirTemp("", "timed-")
		if err == nil {
			err = os.Chown(d, cfg.Owner, cfg.Owner)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	path := filepath.Join(dir, "timed.yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "timed"
	if cfg.Name != "" {
		name += "-" + cfg.Name
	}
	argv := append(append([]string{}, cfg.Wrap...), timed, "-c", path)
	p := peers.Start(t, peers.ProcOptions{Name: name, Dir: dir, Netns: netns, Exec: timed}, argv...)
	tp := &timedProc{Proc: p, timectl: timectl, socket: filepath.Join(dir, "timed.sock")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("timed exited: %v\n%s", p.Err(), p.Tail(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := tp.status(ctx)
		cancel()
		if err == nil {
			return tp
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed's control socket does not answer: %v\n%s", err, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusReply is the part of `timectl status -o json` the tests read (the
// control package's StatusReply).
type statusReply struct {
	Engine struct {
		Synchronized bool           `json:"synchronized"`
		Offset       float64        `json:"offset_s"`
		Frequency    float64        `json:"frequency_ppm"`
		Updates      int            `json:"updates"`
		Steps        int            `json:"steps"`
		Message      string         `json:"message"`
		Sources      []sourceStatus `json:"sources"`
	} `json:"engine"`
	Clock struct {
		Driver           string  `json:"driver"`
		OffsetFromSystem float64 `json:"offset_from_system_s"`
		Frequency        float64 `json:"frequency_ppm"`
	} `json:"clock"`
	Refclocks []refclockInfo `json:"refclocks"`
}

// refclockInfo is one reference clock in statusReply.
type refclockInfo struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Device     string `json:"device"`
	Connected  bool   `json:"connected"`
	Reason     string `json:"reason"`
	Samples    uint64 `json:"samples"`
	Mode       int    `json:"fix_mode"`
	Satellites int    `json:"satellites"`
}

// sourceStatus is one source in statusReply.
type sourceStatus struct {
	Name          string  `json:"name"`
	Kind          string  `json:"kind"`
	Address       string  `json:"address"`
	State         string  `json:"state"`
	Authenticated bool    `json:"authenticated"`
	Reason        string  `json:"reason"`
	Reach         uint8   `json:"reach"`
	Samples       int     `json:"samples"`
	LastSampleAgo float64 `json:"last_sample_ago_s"`
	Offset        float64 `json:"offset_s"`
	LastOffset    float64 `json:"last_offset_s"`
	Delay         float64 `json:"delay_s"`
	MinDelay      float64 `json:"min_delay_s"`
	Asymmetry     float64 `json:"asymmetry"`
}

// status runs `timectl -s SOCKET status -o json`. The control socket is a
// path in the file system, so it is reachable from outside timed's network
// namespace.
func (tp *timedProc) status(ctx context.Context) (statusReply, error) {
	var r statusReply
	err := tp.query(ctx, &r, "status")
	return r, err
}

// query runs `timectl -s SOCKET -o json ARGS...` and decodes its output
// into v.
func (tp *timedProc) query(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, tp.timectl, append([]string{"-s", tp.socket, "-o", "json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("timectl %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := decodeJSON(out, v); err != nil {
		return fmt.Errorf("timectl %s -o json: %w: %.200s", strings.Join(args, " "), err, out)
	}
	return nil
}

// sample is one reading of timed's status.
type sample struct {
	At     time.Duration // since timed started
	Err    error
	Status statusReply
}

// sampler reads timed's status every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func (tp *timedProc) sample(interval time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			st, err := tp.status(ctx)
			cancel()
			s.mu.Lock()
			s.samples = append(s.samples, sample{At: time.Since(tp.Started()), Err: err, Status: st})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns every sample taken.
func (s *sampler) Stop() []sample {
	close(s.stop)
	<-s.done
	return s.snapshot()
}

func (s *sampler) snapshot() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// logLines reads JSON log lines (one object per line) from output, skipping
// anything that is not JSON.
func logLines(output string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if decodeJSON(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}
