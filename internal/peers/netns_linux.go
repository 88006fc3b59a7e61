package peers

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

var netnsCounter atomic.Int32

// NewNetns creates a network namespace with its loopback up, for peers
// that must use fixed ports (ntpdig only talks to port 123), and removes it
// when the test ends. It needs root. Call it before starting the processes
// that run in it, so that their cleanup (stopping them) comes first.
func NewNetns(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	name := fmt.Sprintf("timed-it-%d-%d", os.Getpid(), netnsCounter.Add(1))
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	// Registered before the processes in it, so it runs after they stop.
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command(ip, "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	return name
}
