//go:build linux

package interop

import (
	"fmt"
	"math"
	"testing"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// TestPeers checks the harness on its own, without timed: chronyd serves on
// loopback without CAP_SYS_TIME, `chronyd -Q` measures it, and ntpsec's ntpd
// answers inside a namespace made for it. When this fails, the other tests'
// failures say nothing about timed. (The harness's own unit tests, such as
// the capability check, are in internal/peers.)
func TestPeers(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("chronyd", func(t *testing.T) {
		chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
		srv := peers.StartChronyServer(t, peers.ChronyOptions{})
		port := int(srv.Addr.Port())
		out, err := peers.Command(t, chronyd, "-Q", "-t", "10", fmt.Sprintf("server 127.0.0.1 port %d iburst", port)).CombinedOutput()
		if err != nil {
			t.Fatalf("chronyd -Q: %v\n%s", err, out)
		}
		off, err := parseChronydQ(string(out))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("chronyd -Q against chronyd on loopback: %+.1f µs", off*1e6)
		// Both ends read the same system clock.
		if math.Abs(off) > 1e-3 {
			t.Errorf("chronyd -Q measured %+.6f s against a server on the same clock", off)
		}
	})
	t.Run("ntpsec", func(t *testing.T) {
		peers.NtpsecPaths(t)
		ns := peers.NewNetns(t)
		peers.StartNtpsecServer(t, ns)
	})
}
