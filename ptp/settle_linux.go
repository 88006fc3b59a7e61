//go:build linux

package ptp

import (
	"time"
	"unsafe"

	"github.com/facebook/time/ptp/protocol"
	"golang.org/x/sys/unix"
)

// settleTime is how long an event message with a software transmit
// timestamp waits before it is sent. Such messages are mostly sent when a
// timer fires (Sync, Delay_Req, Pdelay_Req), and at that instant other
// threads of the process wake too (the Go runtime's sysmon sleeps until
// the next timer). Their timer interrupts then land on the sending CPU
// between the transmit timestamp and the frame's delivery: traced on a
// veth (perf, net_dev_start_xmit to netif_rx), 1–3% of timed's Syncs took
// 25–32 µs there instead of ~7 µs, each with a local timer interrupt
// inside, and ptp4l's slaves took the delay for offset (p99 +12.7 µs
// against +2.5 µs from a ptp4l master). Waiting 100 µs after the wake
// removed it on a quiet machine (p99 +1.5 to +2.1 µs in 3 runs; under
// load late Syncs remain). Hardware timestamps are taken on the wire and
// do not need it. Only Ethernet ports settle. Over UDPv4 event messages
// also leave from a socket outside the Go poller (netstamp's
// SendStampedFromOwnSocket), but settling there changed nothing measured
// (TestPTPClientPtp4l, udp4, three runs each: 0.61–1.23 µs RMS with it,
// 0.59–1.14 µs without).
const settleTime = 100 * time.Microsecond

// settle waits settleTime on the calling thread with a raw nanosleep, so
// that the Go scheduler wakes nothing else meanwhile.
func settle() {
	ts := unix.NsecToTimespec(int64(settleTime))
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// warmable is a socket that can warm its stamped transmit path.
type warmable interface{ WarmTransmitPath() }

// warm prepares the stamped send of the event message msg: every event
// message but Pdelay_Req leaves with the kernel's transmit path warm
// (netstamp's WarmTransmitPath; nothing with hardware stamps). Measured on
// a veth with software stamps, a frame sent more than a few milliseconds
// after the previous one took 2.3–2.6 µs from its transmit timestamp to
// the peer's receive timestamp, with a tail to 5–25 µs at the 99th
// percentile; warmed, 1.3–1.5 µs and 1.9 µs. A Sync, a Delay_Req and a
// Pdelay_Resp then carry a timestamp that much nearer the wire, and an E2E
// slave's shortest round trips (what the engine trusts) pair a fast Sync
// with a fast Delay_Req.
//
// Pdelay_Req is the exception. The link delay it measures, half the sum
// of a request's leg and a response's leg, corrects Syncs, which a master
// sends on a timer: cold from ptp4l (2.4 µs mean on the veth above), warm
// from timed. Responses are sent right after a receive, warm either way.
// A cold request puts the link delay halfway between the two kinds of
// Sync, so its error is half the cold–warm difference with either master;
// a warm one gives none with a warm master but the whole difference with
// a cold one (measured next to a ptp4l gPTP grandmaster: timed's
// estimates 1.5 µs mean off with warm requests).
func warm(c warmable, msg []byte) {
	if len(msg) > 0 && protocol.MessageType(msg[0]&0x0f) == protocol.MessagePDelayReq {
		return
	}
	c.WarmTransmitPath()
}
