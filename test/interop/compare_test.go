//go:build linux

package interop

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// compareJSON is the part of `timectl compare -o json` the test reads.
type compareJSON struct {
	Timed   statusReply `json:"timed"`
	Chronyd struct {
		Tracking struct {
			Stratum uint16 `json:"stratum"`
		} `json:"tracking"`
		Sources []struct {
			Address string  `json:"address"`
			State   string  `json:"state"`
			Offset  float64 `json:"offset_s"`
			Samples uint32  `json:"samples"`
			Delay   float64 `json:"delay_s"`
		} `json:"sources"`
	} `json:"chronyd"`
}

// TestCompare runs a chronyd server, a chronyd client of it and timed as a
// client of it; `timectl waitsync` returns once timed is synchronized, and
// `timectl compare` reads the chronyd client over its command socket and
// shows the one server in both columns, the two offsets within 1 ms.
func TestCompare(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	binaries(t)
	srv := peers.StartChronyServer(t, peers.ChronyOptions{})
	port := int(srv.Addr.Port())
	client := peers.StartChronyClient(t, fmt.Sprintf("server 127.0.0.1 port %d iburst minpoll -2 maxpoll -2", port))
	tp := startTimed(t, timedConfig{SimOffset: "0s", MinPoll: -2, MaxPoll: -2, Port: port}, "")

	timectl := func(ctx context.Context, args ...string) (string, int, error) {
		out, err := exec.CommandContext(ctx, tp.timectl, append([]string{"-s", tp.socket}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode(), nil
		}
		return string(out), 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	t.Run("waitsync", func(t *testing.T) {
		start := time.Now()
		out, code, err := timectl(ctx, "waitsync", "--max-error", "50ms", "--timeout", "20s", "--interval", "200ms")
		if err != nil || code != 0 || !strings.HasPrefix(out, "synchronized to 127.0.0.1:") {
			t.Fatalf("waitsync: exit %d, %v:\n%s\n%s", code, err, out, tp.Tail(20))
		}
		t.Logf("waitsync after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		out, code, err = timectl(ctx, "waitsync", "--max-error", "1ns", "--timeout", "1s", "--interval", "200ms")
		if err != nil || code != 1 || !strings.Contains(out, "timed out after") {
			t.Errorf("waitsync within 1 ns: exit %d, %v, want 1 and a time-out:\n%s", code, err, out)
		}
	})

	var r compareJSON
	for {
		out, code, err := timectl(ctx, "compare", "--chrony", client.Socket, "-o", "json")
		if err != nil || code != 0 {
			t.Fatalf("compare: exit %d, %v:\n%s", code, err, out)
		}
		if err := decodeJSON([]byte(out), &r); err != nil {
			t.Fatalf("compare -o json does not parse: %v\n%s", err, out)
		}
		if len(r.Chronyd.Sources) == 1 && r.Chronyd.Sources[0].Samples >= 4 && r.Chronyd.Sources[0].State == "sync" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("chronyd's source not in sync with 4 samples: %+v", r.Chronyd.Sources)
		}
		time.Sleep(500 * time.Millisecond)
	}
	wantAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cs := r.Chronyd.Sources[0]
	if len(r.Timed.Engine.Sources) != 1 || r.Timed.Engine.Sources[0].Address != wantAddr || cs.Address != wantAddr {
		t.Fatalf("sources: timed %+v, chronyd %+v; want %s on both", r.Timed.Engine.Sources, r.Chronyd.Sources, wantAddr)
	}
	ts := r.Timed.Engine.Sources[0]
	t.Logf("offset of %s: timed %+.1f µs (delay %.1f µs), chronyd %+.1f µs (delay %.1f µs)", wantAddr, ts.Offset*1e6, ts.Delay*1e6, cs.Offset*1e6, cs.Delay*1e6)
	if d := math.Abs(ts.Offset - cs.Offset); !(d < 1e-3) {
		t.Errorf("offsets differ by %.1f µs, want < 1 ms", d*1e6)
	}
	if cs.Delay <= 0 || r.Chronyd.Tracking.Stratum != 2 {
		t.Errorf("chronyd: delay %g s, stratum %d; want a delay over the Unix socket and stratum 2", cs.Delay, r.Chronyd.Tracking.Stratum)
	}

	out, code, err := timectl(ctx, "compare", "--chrony", client.Socket)
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, wantAddr) {
			row = l
		}
	}
	if err != nil || code != 0 || !strings.Contains(row, string(ts.State)) || !strings.Contains(row, "sync") {
		t.Errorf("compare: exit %d, %v; want the source's row with both states:\n%s", code, err, out)
	}
	t.Logf("timectl compare:\n%s", out)
}
