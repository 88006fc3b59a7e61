package daemon

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/sources"
)

// listenNotify makes the datagram socket systemd would listen on and
// returns its address for $NOTIFY_SOCKET and a function that reads the
// next message (or "" after a short wait).
func listenNotify(t *testing.T, abstract bool) (addr string, next func(wait time.Duration) string) {
	t.Helper()
	addr = filepath.Join(t.TempDir(), "notify.sock")
	if abstract {
		addr = "@timed-notify-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return addr, func(wait time.Duration) string {
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

func TestNotifierMessages(t *testing.T) {
	synced := sources.ClockSync{Synchronized: true, EstError: 1500 * time.Microsecond}
	tests := []struct {
		name     string
		abstract bool
		timeout  time.Duration
		before   func(n *notifier) // before start
		steps    []func(n *notifier)
		want     []string // messages in order, each as sent
	}{
		{
			name:    "ready at the first synchronization, then status changes only",
			timeout: time.Hour,
			steps: []func(n *notifier){
				func(n *notifier) { n.syncChanged(synced) },
				func(n *notifier) { n.syncChanged(synced) }, // same line: nothing sent
				func(n *notifier) { n.syncChanged(sources.ClockSync{}) },
				func(n *notifier) { n.syncChanged(synced) }, // not READY again
				func(n *notifier) { n.stopping() },
			},
			want: []string{
				"STATUS=waiting for the first clock update",
				"READY=1\nSTATUS=synchronized, estimated error 1.5ms",
				"STATUS=not synchronized",
				"STATUS=synchronized, estimated error 1.5ms",
				"STOPPING=1\nSTATUS=stopping",
			},
		},
		{
			name:     "abstract socket; reload before ready does not claim readiness",
			abstract: true,
			timeout:  time.Hour,
			steps: []func(n *notifier){
				func(n *notifier) { n.reloading() },
				func(n *notifier) { n.reloaded() },
				func(n *notifier) { n.syncChanged(synced) },
				func(n *notifier) { n.reloading() },
				func(n *notifier) { n.reloaded() },
			},
			want: []string{
				"STATUS=waiting for the first clock update",
				"RELOADING=1\nMONOTONIC_USEC=*\nSTATUS=reloading the configuration",
				"STATUS=waiting for the first clock update",
				"READY=1\nSTATUS=synchronized, estimated error 1.5ms",
				"RELOADING=1\nMONOTONIC_USEC=*\nSTATUS=reloading the configuration",
				"READY=1\nSTATUS=synchronized, estimated error 1.5ms",
			},
		},
		{
			name:    "synchronized before start: no waiting status",
			timeout: 50 * time.Millisecond,
			before:  func(n *notifier) { n.syncChanged(synced) },
			want:    []string{"READY=1\nSTATUS=synchronized, estimated error 1.5ms"},
		},
		{
			name:    "ready after the time-out without a clock update",
			timeout: 50 * time.Millisecond,
			want: []string{
				"STATUS=waiting for the first clock update",
				"READY=1\nSTATUS=no clock update yet after 50ms",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.abstract && runtime.GOOS != "linux" {
				testenv.Missing(t, "abstract Unix sockets (Linux only)")
			}
			addr, next := listenNotify(t, tt.abstract)
			n := newNotifier(addr, tt.timeout, zap.NewNop())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.before != nil {
				tt.before(n)
			}
			n.start(ctx)
			for _, step := range tt.steps {
				step(n)
			}
			for i, w := range tt.want {
				got := next(2 * time.Second)
				if !matchNotify(got, w) {
					t.Fatalf("message %d = %q, want %q", i, got, w)
				}
			}
			if extra := next(100 * time.Millisecond); extra != "" {
				t.Errorf("unexpected message %q", extra)
			}
		})
	}
}

// matchNotify compares a message with a pattern in which the value "*"
// stands for any positive number.
func matchNotify(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range w {
		if k, ok := strings.CutSuffix(w[i], "=*"); ok {
			v, found := strings.CutPrefix(g[i], k+"=")
			if !found || v == "" || strings.Trim(v, "0123456789") != "" || strings.Trim(v, "0") == "" {
				return false
			}
			continue
		}
		if g[i] != w[i] {
			return false
		}
	}
	return true
}

// Without $NOTIFY_SOCKET there is no notifier, and its methods do nothing.
func TestNotifierNil(t *testing.T) {
	n := newNotifier("", time.Millisecond, zap.NewNop())
	if n != nil {
		t.Fatalf("newNotifier(\"\") = %v, want nil", n)
	}
	n.start(context.Background())
	n.syncChanged(sources.ClockSync{Synchronized: true})
	n.reloading()
	n.reloaded()
	n.stopping()
}
