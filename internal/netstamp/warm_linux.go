//go:build linux

package netstamp

import (
	"time"

	"golang.org/x/sys/unix"
)

// coldAfter is how long after a stamped send the kernel's transmit path is
// taken to have gone cold. Measured on a veth in a VM (C sender, software
// stamps, transmit stamp to the peer's receive stamp, 300 sends each):
// 0.8 µs median one millisecond after the previous send, 1.0 µs after 2 ms,
// 2.0 µs after 5 ms, 2.6 µs (p99 3.3–3.8 µs) from 10 ms on.
const coldAfter = time.Millisecond

// txWarmer runs the kernel's stamped transmit path once on the loopback
// interface just before a stamped send that comes after a pause (see
// link.WarmTransmitPath). The code and data of that path (the transmit
// timestamp, the error queue, the receive backlog) are then in the CPU's
// caches, and the real frame goes from its timestamp to the wire in about
// half the time, with a much shorter tail: on the veth above, a stamped datagram to the warmer's own
// loopback address just before each send took the 20 ms-apart sends from
// 2.6 µs median, p99 3.3–3.8 µs, to 1.3 µs, p99 1.8 µs. A software
// timestamp is taken before that stretch, so its length and its spread are
// error in every measurement made with it; a PTP slave whose master sends
// Syncs right after other messages (ptp4l does, with Announce) would
// otherwise see one leg of the path faster than the other. Hardware
// timestamps are taken on the wire and need no warming.
//
// The warmer's socket takes no datagram in (dropAllInput): what it sends to
// itself is dropped by its filter after the loopback delivery. It is opened
// with the socket it warms for, in that socket's network namespace. Any
// failure (no loopback interface there) turns warming off: it is an
// optimization.
type txWarmer struct {
	fd   int // -1 when warming is off
	oob  []byte
	data []byte
	eBuf []byte
	last time.Time // the last stamped send

	warmups int // warmings whose transmit timestamp came back
}

// sent notes a stamped send at now.
func (w *txWarmer) sent(now time.Time) { w.last = now }

// warmIfCold warms the transmit path when the last stamped send (or
// warming) was more than coldAfter before now.
func (w *txWarmer) warmIfCold(now time.Time) {
	cold := now.Sub(w.last) > coldAfter
	if !cold || w.fd < 0 {
		return
	}
	w.last = now
	for {
		err := unix.Sendmsg(w.fd, w.data, w.oob, nil, unix.MSG_DONTWAIT)
		if err != unix.EINTR {
			break
		}
	}
	// The loopback interface stamps inside the send: drain the stamp so
	// the queue stays empty (and the read path warm).
	for range 4 {
		_, oobn, _, _, err := unix.Recvmsg(w.fd, w.data, w.eBuf, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break
		}
		if oobn > 0 {
			w.warmups++
		}
	}
}

// newTxWarmer opens the warmer's socket: UDP on 127.0.0.1, connected to
// itself, with software transmit stamps under the option tsOpt. On failure
// the warmer is off.
func newTxWarmer(tsOpt int) txWarmer {
	w := txWarmer{fd: -1}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return w
	}
	loopback := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	flags := unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_TSONLY
	ok := dropAllInput(fd) == nil &&
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, tsOpt, flags) == nil &&
		unix.Bind(fd, loopback) == nil
	if ok {
		var self unix.Sockaddr
		self, err = unix.Getsockname(fd)
		ok = err == nil && unix.Connect(fd, self) == nil
	}
	if !ok {
		unix.Close(fd)
		return w
	}
	w.fd = fd
	w.oob = appendCmsgUint32(nil, unix.SOL_SOCKET, tsOpt, unix.SOF_TIMESTAMPING_TX_SOFTWARE)
	w.data = make([]byte, 48)
	w.eBuf = make([]byte, 128)
	return w
}

func (w *txWarmer) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
	}
	w.fd = -1
}
