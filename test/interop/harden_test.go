package interop

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// notifyListener is the socket systemd would give timed in $NOTIFY_SOCKET:
// the test reads the messages in order.
type notifyListener struct {
	addr string
	msgs chan string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l := &notifyListener{addr: addr, msgs: make(chan string, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			l.msgs <- string(buf[:n])
		}
	}()
	return l
}

// next is the next message, failing the test after wait.
func (l *notifyListener) next(t *testing.T, wait time.Duration, after string) string {
	t.Helper()
	select {
	case m := <-l.msgs:
		return m
	case <-time.After(wait):
		t.Fatalf("no sd_notify message within %v after %s", wait, after)
		return ""
	}
}

// procStatus reads the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// checkLockedDown asserts that the running timed has the seccomp filter on
// (Seccomp: 2, no_new_privs) and exactly the capability set want in its
// effective, permitted and bounding sets, and that its log says so.
func checkLockedDown(t *testing.T, tp *timedProc, want uint64) {
	t.Helper()
	// timed locks itself down right after it says "timed running", which
	// is what startTimed waits for: wait for the filter's log line.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tp.Output(), "seccomp filter installed: ") && time.Now().Before(deadline) && !tp.Exited() {
		time.Sleep(20 * time.Millisecond)
	}
	st := procStatus(t, tp.Pid())
	if st["Seccomp"] != "2" || st["NoNewPrivs"] != "1" {
		t.Errorf("Seccomp: %q NoNewPrivs: %q, want 2 and 1", st["Seccomp"], st["NoNewPrivs"])
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		got, err := strconv.ParseUint(st[set], 16, 64)
		w := want
		if set == "CapAmb" {
			w = 0
		}
		if err != nil || got != w {
			t.Errorf("%s: %s, want %016x", set, st[set], w)
		}
	}
	out := tp.Output()
	for _, msg := range []string{"seccomp filter installed: ", "capabilities limited to what timed still needs"} {
		if !strings.Contains(out, msg) {
			t.Errorf("the log does not say %q", msg)
		}
	}
	// A system call the filter missed would show as EPERM in the log.
	if strings.Contains(out, "operation not permitted") {
		t.Errorf("timed met EPERM under the seccomp filter:\n%s", tp.Tail(40))
	}
}

// timed started with $NOTIFY_SOCKET says it waits while its server is
// silent, and READY=1 only once the clock was first updated from the
// chronyd server started then (with the status line),
// brackets a SIGHUP reload with RELOADING=1 and READY=1, and says
// STOPPING=1 on SIGTERM. Meanwhile it runs under its own seccomp filter
// with no capability left (the virtual clock needs none), and still
// answers after the reload.
func TestHardenNotifyAndSeccomp(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	loopback := netip.MustParseAddr("127.0.0.1")
	port := peers.FreeUDPPort(t, loopback)
	l := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", l.addr)
	cfg := simulatedStart
	cfg.Port = port
	tp := startTimed(t, cfg, "")

	// No server answers yet: timed says it waits, and is not ready.
	if m := l.next(t, 10*time.Second, "start"); m != "STATUS=waiting for the first clock update" {
		t.Fatalf("first message %q, want the waiting status", m)
	}
	select {
	case m := <-l.msgs:
		t.Fatalf("before any server answered: %q", m)
	case <-time.After(3 * time.Second):
	}
	srv := peers.StartChronyServer(t, peers.ChronyOptions{Addr: loopback, Port: port})
	served := time.Now()
	ready := l.next(t, 30*time.Second, "the server started")
	if !strings.HasPrefix(ready, "READY=1\nSTATUS=synchronized, estimated error ") {
		t.Fatalf("message %q, want READY=1 with the synchronized status", ready)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := tp.status(ctx)
	if err != nil || !st.Engine.Synchronized || st.Engine.Updates < 1 {
		t.Fatalf("after READY=1: status %+v, %v; want synchronized after at least one update", st.Engine, err)
	}
	t.Logf("READY=1 %v after chronyd started: %q", time.Since(served).Round(time.Millisecond), ready)
	checkLockedDown(t, tp, 0)

	// The reload adds a server by name: a new socket and a name lookup
	// after the filter is on.
	path := filepath.Join(filepath.Dir(tp.socket), "timed.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	more := fmt.Sprintf("    - {address: localhost, port: %d, iburst: true, minpoll: -2, maxpoll: -2}\ncontrol:", srv.Addr.Port())
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "control:", more, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(tp.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := l.next(t, 5*time.Second, "SIGHUP"); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("after SIGHUP: %q, want RELOADING=1", m)
	}
	if m := l.next(t, 5*time.Second, "RELOADING=1"); !strings.HasPrefix(m, "READY=1\nSTATUS=synchronized") {
		t.Errorf("after the reload: %q, want READY=1 and the status", m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := tp.status(ctx)
		if err == nil && len(st.Engine.Sources) == 2 && st.Engine.Synchronized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload: %+v, %v; want two sources, synchronized", st.Engine, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkLockedDown(t, tp, 0)

	tp.Stop()
	if m := l.next(t, 5*time.Second, "SIGTERM"); m != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("after SIGTERM: %q, want STOPPING=1", m)
	}
	if err := tp.Err(); err != nil {
		t.Errorf("timed exited with %v after SIGTERM, want 0\n%s", err, tp.Tail(20))
	}
}

// A PTP port on Ethernet keeps CAP_NET_RAW (its AF_PACKET socket reopens
// with the interface) and nothing else; on UDP it keeps
// CAP_NET_BIND_SERVICE (ports 319 and 320) and nothing else.
func TestHardenCapabilitiesPTP(t *testing.T) {
	testenv.RequireRoot(t)
	tests := []struct {
		transport string
		want      uint64
	}{
		{"l2", 1 << 13},   // cap_net_raw
		{"udp4", 1 << 10}, // cap_net_bind_service
	}
	for _, tc := range tests {
		t.Run(tc.transport, func(t *testing.T) {
			_, b := peers.NewVethPair(t)
			cfg := simulatedStart
			cfg.NoSources = true
			cfg.Name = "ptp-" + tc.transport
			cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: " + tc.transport + "}\n"
			tp := startTimed(t, cfg, b.Netns)
			checkLockedDown(t, tp, tc.want)
		})
	}
}
