package peers

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

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

// InNetns runs f on an OS thread that has entered the network namespace
// netns (one NewNetns made) and returns when f has. Sockets that f opens
// stay in that namespace whichever thread uses them later. f runs on
// another goroutine, so it must not call t.Fatal or t.FailNow: it hands its
// results and errors back through variables it sets. The thread goes back
// to its own namespace afterwards and returns to the scheduler; it must not
// end, since a peer started from it (with a parent-death signal, as Start
// does) would be killed with it. Only if it cannot go back is it ended.
func InNetns(t testing.TB, netns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(own)
		fd, err := unix.Open("/run/netns/"+netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", netns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", netns, err)
			return
		}
		f()
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine, still locked
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
