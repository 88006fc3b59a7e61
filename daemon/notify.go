package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// readyTimeout is how long timed waits for its first clock update before it
// tells systemd it is ready anyway. It is below systemd's default start
// time-out (90 s), so a host whose sources are all unreachable still boots
// in bounded time; timed-wait.service is the way to wait longer.
const readyTimeout = 60 * time.Second

// notifier speaks systemd's notification protocol (sd_notify): one
// datagram per message to the Unix socket named by $NOTIFY_SOCKET, whose
// name starts with @ for an abstract socket. A nil *notifier (no
// $NOTIFY_SOCKET) does nothing. Its methods are safe for concurrent use.
type notifier struct {
	addr    string
	timeout time.Duration // READY=1 at the latest this long after start
	log     *zap.Logger

	mu     sync.Mutex
	ready  bool   // READY=1 was sent
	status string // the last STATUS= sent
}

// newNotifier returns a notifier for the socket addr, or nil when addr is
// empty (timed not started by systemd with Type=notify).
func newNotifier(addr string, timeout time.Duration, log *zap.Logger) *notifier {
	if addr == "" {
		return nil
	}
	return &notifier{addr: addr, timeout: timeout, log: log}
}

// send writes one message. Failures are logged, never fatal: systemd may
// have gone away, and timed keeps the time regardless.
func (n *notifier) send(msg string) {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err == nil {
		_, err = conn.Write([]byte(msg))
		conn.Close()
	}
	if err != nil {
		n.log.Warn("cannot notify systemd", zap.String("notify_socket", n.addr),
			zap.String("message", strings.ReplaceAll(msg, "\n", " ")), zap.Error(fmt.Errorf("sd_notify: %w", err)))
	}
}

// start reports that timed waits for its first clock update, and sends
// READY=1 after the time-out unless a clock update has sent it before. It
// returns at once and stops waiting when ctx is done.
func (n *notifier) start(ctx context.Context) {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.ready { // a source was quicker than the start-up
		n.mu.Unlock()
		return
	}
	n.status = "waiting for the first clock update"
	n.send("STATUS=" + n.status)
	n.mu.Unlock()
	go func() {
		t := time.NewTimer(n.timeout)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			n.markReady("no clock update yet after " + n.timeout.String())
		}
	}()
}

// markReady sends READY=1 (with a status line saying why) the first time
// it is called.
func (n *notifier) markReady(why string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready {
		return
	}
	n.ready = true
	n.status = why
	n.log.Info("notified systemd: ready", zap.String("why", why))
	n.send("READY=1\nSTATUS=" + why)
}

// syncChanged reports a change of the synchronization state: the first
// synchronization is the first clock update, which makes timed ready.
func (n *notifier) syncChanged(s sources.ClockSync) {
	if n == nil {
		return
	}
	line := syncStatusLine(s)
	if s.Synchronized {
		n.markReady(line)
	}
	n.setStatus(line)
}

// setStatus sends STATUS=line when it differs from the last one sent.
func (n *notifier) setStatus(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if line == n.status {
		return
	}
	n.status = line
	n.send("STATUS=" + line)
}

// reloading and reloaded bracket a reload. READY=1 after a reload is sent
// only once timed has been ready before.
func (n *notifier) reloading() {
	if n == nil {
		return
	}
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading the configuration", monotonicMicros()))
}

func (n *notifier) reloaded() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := "STATUS=" + n.status
	if n.ready {
		msg = "READY=1\n" + msg
	}
	n.send(msg)
}

// stopping tells systemd that timed is shutting down.
func (n *notifier) stopping() {
	if n == nil {
		return
	}
	n.send("STOPPING=1\nSTATUS=stopping")
}

// syncStatusLine is the one-line status systemd shows for s.
func syncStatusLine(s sources.ClockSync) string {
	if !s.Synchronized {
		return "not synchronized"
	}
	return fmt.Sprintf("synchronized, estimated error %v", s.EstError)
}
