//go:build linux

package ntpload

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// chronyCommandDir makes a directory for chronyd's command socket: mode
// 0700 and, when chronyd drops its privileges to _chrony, owned by that
// user, as chronyd requires, in a directory that user may pass through.
func chronyCommandDir(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "ntpload-chronyd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	dir := filepath.Join(parent, "cmd")
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if u, err := user.Lookup("_chrony"); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var serverStatLine = regexp.MustCompile(`(?m)^NTP packets (received|dropped)\s*:\s*(\d+)$`)

// chronyServerStats reads chronyd's count of NTP requests received and
// dropped by its rate limit (chronyc serverstats).
func chronyServerStats(t *testing.T, socket string) (received, dropped uint64) {
	t.Helper()
	chronyc := testenv.LookPath(t, "chronyc", "/usr/bin/chronyc")
	out, err := peers.Command(t, chronyc, "-h", socket, "serverstats").CombinedOutput()
	if err != nil {
		t.Fatalf("chronyc -h %s serverstats: %v\n%s", socket, err, out)
	}
	m := serverStatLine.FindAllStringSubmatch(string(out), -1)
	if len(m) != 2 {
		t.Fatalf("chronyc serverstats: no packet counts in %q", out)
	}
	received, _ = strconv.ParseUint(m[0][2], 10, 64)
	dropped, _ = strconv.ParseUint(m[1][2], 10, 64)
	return received, dropped
}

// TestChronyCounts loads a real chronyd and checks that what ntpload
// counts agrees with chronyd's own counters: the requests arrived, and
// every one chronyd did not drop (rate limit) was answered and matched.
func TestChronyCounts(t *testing.T) {
	tests := []struct {
		name      string
		extra     []string
		o         Options
		wantDrops bool
	}{
		{"no rate limit", nil, Options{Sources: 50, Burst: 4, Rate: 10_000, Duration: 300 * time.Millisecond}, false},
		{"rate limit, bursts of 4 over a burst of 2", []string{"ratelimit interval 0 burst 2 leak 0"},
			Options{Sources: 20, Burst: 4, Rate: 4000, Duration: 300 * time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(chronyCommandDir(t), "chronyd.sock")
			extra := append([]string{"allow 127.0.0.0/8", "bindcmdaddress " + socket}, tt.extra...)
			c := peers.StartChronyServer(t, peers.ChronyOptions{Extra: extra})
			rx0, drop0 := chronyServerStats(t, socket) // WaitNTP's requests
			o := tt.o
			o.Server, o.ServerPID, o.Wait = c.Addr, c.Pid(), 300*time.Millisecond
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			rx, drop := chronyServerStats(t, socket)
			rx, drop = rx-rx0, drop-drop0
			t.Logf("sent %d, answered %d, chronyd received %d and dropped %d; latency p50 %.0f µs; chronyd used %.2f s of CPU",
				res.Sent, res.Answered, rx, drop, res.Latency.P50, res.ServerCPU)
			// The kernel may drop a few requests when chronyd does not run
			// for a while (a busy machine); chronyd counts what it read.
			if rx > res.Sent || rx < res.Sent*9/10 {
				t.Errorf("chronyd received %d requests, ntpload sent %d", rx, res.Sent)
			}
			if res.Answered != rx-drop || res.Kissed != 0 {
				t.Errorf("answered %d and kissed %d; chronyd answered %d", res.Answered, res.Kissed, rx-drop)
			}
			if res.Unmatched != 0 || res.Duplicates != 0 || res.Malformed != 0 {
				t.Errorf("unmatched %d, duplicates %d, malformed %d", res.Unmatched, res.Duplicates, res.Malformed)
			}
			if (drop > 0) != tt.wantDrops {
				t.Errorf("chronyd dropped %d requests; want drops: %v", drop, tt.wantDrops)
			}
			if res.ServerCPU < 0 || res.Latency.P50 <= 0 {
				t.Errorf("server CPU %g s, latency p50 %g µs", res.ServerCPU, res.Latency.P50)
			}
		})
	}
}
