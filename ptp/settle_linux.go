//go:build linux

package ptp

import (
	"time"
	"unsafe"

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
