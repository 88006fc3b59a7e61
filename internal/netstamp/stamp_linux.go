//go:build linux

package netstamp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

const (
	rxFlags = unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE |
		unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
	oobSize = 512
)

// stampSocket is the timestamping core of Conn, MulticastConn and
// PacketConn: a socket with SO_TIMESTAMPING (software or hardware),
// per-send requests for a transmit timestamp, and the error-queue reader
// that matches each transmit timestamp to its send by its OPT_ID counter.
type stampSocket struct {
	s      *socket.Conn
	raw    syscall.RawConn
	tsOpt  int // SO_TIMESTAMPING_NEW or SO_TIMESTAMPING_OLD
	hw     bool
	txWait time.Duration
	closed atomic.Bool

	wmu    sync.Mutex // serializes sends and the error queue
	nextID uint32     // OPT_ID of the next stamped send
	wOOB   []byte     // per-send control message asking for a TX stamp
	eBuf   []byte     // error-queue control buffer
	eData  []byte

	rmu  sync.Mutex
	rOOB []byte

	// txFD, when not -1, is a second socket that stamped sends go out on:
	// a plain blocking one, outside the Go runtime's poller. When the
	// kernel queues the transmit timestamp of a send on a socket some
	// thread sleeps on (the poller's epoll_wait), it wakes that thread
	// before the frame goes on: on a veth that delayed frames about 2.6 µs
	// after their timestamp, which a PTP master's slaves took for offset.
	// Nobody sleeps on txFD while it sends.
	txFD int

	warm txWarmer // software stamps only
}

// newStampSocket turns timestamping on for s: the kernel's software stamps,
// or the interface's hardware stamps with opts.HardwareStamps (which the
// caller has enabled on the interface). Each send asks for its own transmit
// timestamp with a control message, so that sends that do not need one
// leave nothing on the error queue.
func newStampSocket(s *socket.Conn, opts LinkOptions) (*stampSocket, error) {
	raw, err := s.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netstamp: %w", err)
	}
	k := &stampSocket{s: s, raw: raw, hw: opts.HardwareStamps, txWait: opts.TxStampWait,
		rOOB: make([]byte, oobSize), eBuf: make([]byte, oobSize), eData: make([]byte, 64), txFD: -1,
		warm: txWarmer{fd: -1}}
	flags := uint32(rxFlags)
	txFlag := uint32(unix.SOF_TIMESTAMPING_TX_SOFTWARE)
	if k.hw {
		flags = unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE |
			unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
		txFlag = unix.SOF_TIMESTAMPING_TX_HARDWARE
	}
	if k.txWait <= 0 {
		k.txWait = TxStampWait
		if k.hw {
			k.txWait = HardwareTxStampWait
		}
	}
	// Prefer the 64-bit timespec layout (y2038-safe on 32-bit systems);
	// kernels before 5.1 only know the old option.
	k.tsOpt = unix.SO_TIMESTAMPING_NEW
	if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, int(flags)); err != nil {
		k.tsOpt = unix.SO_TIMESTAMPING_OLD
		if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_TIMESTAMPING_OLD, int(flags)); err != nil {
			return nil, fmt.Errorf("netstamp: SO_TIMESTAMPING: %w", err)
		}
	}
	k.wOOB = appendCmsgUint32(nil, unix.SOL_SOCKET, k.tsOpt, txFlag)
	if !k.hw {
		k.warm = newTxWarmer(k.tsOpt)
	}
	return k, nil
}

// stamping is the quality of the timestamps this socket reads.
func (k *stampSocket) stamping() Stamping {
	if k.hw {
		return StampHardware
	}
	return StampKernel
}

func (k *stampSocket) close() error {
	k.closed.Store(true)
	k.wmu.Lock()
	if k.txFD >= 0 {
		_ = unix.Close(k.txFD)
		k.txFD = -1
	}
	k.warm.close()
	k.wmu.Unlock()
	return k.s.Close()
}

// warmTransmitPath warms the stamped transmit path when it is cold (see
// txWarmer); it does nothing with hardware stamps.
func (k *stampSocket) warmTransmitPath() {
	if k.hw {
		return
	}
	k.wmu.Lock()
	k.warm.warmIfCold(time.Now())
	k.wmu.Unlock()
}

// takeTxSocket is useTxSocket with k.wmu taken.
func (k *stampSocket) takeTxSocket(fd int) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	return k.useTxSocket(fd)
}

// dropAllInput attaches a socket filter to fd that drops every datagram
// that arrives: a transmit socket takes nothing in.
func dropAllInput(fd int) error {
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]})
}

// useTxSocket makes stamped sends go out on fd (see stampSocket.txFD),
// with the timestamping options of k; k owns fd from then on.
func (k *stampSocket) useTxSocket(fd int) error {
	flags := uint32(unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY)
	if k.hw {
		flags = unix.SOF_TIMESTAMPING_RAW_HARDWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, k.tsOpt, int(flags)); err != nil {
		unix.Close(fd)
		return fmt.Errorf("netstamp: SO_TIMESTAMPING on the transmit socket: %w", err)
	}
	k.txFD = fd
	k.nextID = 0 // fd counts its own sends (SOF_TIMESTAMPING_OPT_ID)
	return nil
}

func (k *stampSocket) wrapClosed(err error) error {
	if k.closed.Load() || errors.Is(err, unix.EBADF) {
		return net.ErrClosed
	}
	return err
}

// control runs f on the socket's file descriptor.
func (k *stampSocket) control(f func(fd int) error) error {
	var ferr error
	if err := k.raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// recv reads one datagram or frame with its receive timestamp; without a
// kernel timestamp rx is the time read just after the read (StampUser).
func (k *stampSocket) recv(ctx context.Context, b []byte) (n, flags int, sa unix.Sockaddr, rx time.Time, st Stamping, err error) {
	k.rmu.Lock()
	defer k.rmu.Unlock()
	n, oobn, flags, sa, err := k.s.Recvmsg(ctx, b, k.rOOB, 0)
	now := time.Now()
	if err != nil {
		return 0, 0, nil, time.Time{}, StampUser, fmt.Errorf("netstamp: recvmsg: %w", k.wrapClosed(err))
	}
	rx, st = now, StampUser
	if t, ok := k.stampFromCmsgs(k.rOOB[:oobn]); ok {
		rx, st = t, k.stamping()
	}
	return n, flags, sa, rx, st, nil
}

// send sends b to sa. With stamped it asks for a transmit timestamp and
// waits for it up to k.txWait; with software stamps a missing timestamp
// falls back to the time read before the send (StampUser), with hardware
// stamps it is an error wrapping ErrNoTxStamp. The caller adds the
// destination to the error.
func (k *stampSocket) send(b []byte, sa unix.Sockaddr, stamped bool) (tx time.Time, st Stamping, err error) {
	var oob []byte
	if stamped {
		oob = k.wOOB
	}
	k.wmu.Lock()
	defer k.wmu.Unlock()
	before := time.Now()
	if stamped {
		k.warm.sent(before)
	}
	if stamped && k.txFD >= 0 {
		return k.sendUnpolled(b, sa, before)
	}
	if _, err := k.s.Sendmsg(context.Background(), b, oob, sa, 0); err != nil {
		return before, StampUser, fmt.Errorf("sendmsg: %w", k.wrapClosed(err))
	}
	if !stamped {
		return before, StampUser, nil
	}
	id := k.nextID
	k.nextID++
	if t, ok := k.waitTxStamp(id, k.withFD); ok {
		return t, k.stamping(), nil
	}
	if k.hw {
		return before, StampUser, fmt.Errorf("%w within %v (send %d)", ErrNoTxStamp, k.txWait, id)
	}
	return before, StampUser, nil
}

// sendUnpolled sends b on the transmit socket and waits for its
// timestamp, as send does; k.wmu is held.
func (k *stampSocket) sendUnpolled(b []byte, sa unix.Sockaddr, before time.Time) (time.Time, Stamping, error) {
	for {
		err := unix.Sendmsg(k.txFD, b, k.wOOB, sa, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return before, StampUser, fmt.Errorf("sendmsg: %w", k.wrapClosed(err))
		}
		break
	}
	id := k.nextID
	k.nextID++
	fd := k.txFD
	if t, ok := k.waitTxStamp(id, func(f func(fd uintptr)) error { f(uintptr(fd)); return nil }); ok {
		return t, k.stamping(), nil
	}
	if k.hw {
		return before, StampUser, fmt.Errorf("%w within %v (send %d)", ErrNoTxStamp, k.txWait, id)
	}
	return before, StampUser, nil
}

// withFD runs f on the socket's file descriptor.
func (k *stampSocket) withFD(f func(fd uintptr)) error { return k.raw.Control(f) }

// sendTo sends b to the destination to, converted to a socket address by
// sockaddr, as send does; its errors name the destination and the
// interface ifname ("" for none).
func sendTo[A any](k *stampSocket, b []byte, to A, sockaddr func(A) (unix.Sockaddr, error), ifname string, stamped bool) (time.Time, Stamping, error) {
	sa, err := sockaddr(to)
	if err != nil {
		return time.Time{}, StampUser, err
	}
	tx, st, err := k.send(b, sa, stamped)
	switch {
	case err == nil:
		return tx, st, nil
	case ifname == "":
		return tx, st, fmt.Errorf("netstamp: send to %v: %w", to, err)
	default:
		return tx, st, fmt.Errorf("netstamp: send to %v on %s: %w", to, ifname, err)
	}
}

// waitTxStamp reads the error queue until the transmit timestamp of send id
// arrives or k.txWait has passed. Stamps of earlier sends are dropped.
func (k *stampSocket) waitTxStamp(id uint32, withFD func(func(fd uintptr)) error) (time.Time, bool) {
	deadline := time.Now().Add(k.txWait)
	for {
		t, gotID, ok, empty := k.readErrQueue(withFD)
		if ok && gotID == id {
			return t, true
		}
		if ok && int32(gotID-id) > 0 {
			// The kernel counts ahead of us (a send we thought failed was
			// stamped): resynchronize.
			k.nextID = gotID + 1
			return time.Time{}, false
		}
		if !empty {
			continue // a stale stamp or another error: read on
		}
		left := time.Until(deadline)
		if left <= 0 {
			return time.Time{}, false
		}
		k.pollErr(left, withFD)
	}
}

// pollErr waits until the error queue is readable or d has passed.
func (k *stampSocket) pollErr(d time.Duration, withFD func(func(fd uintptr)) error) {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	_ = withFD(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: 0}} // POLLERR is always reported
		_, _ = unix.Poll(fds, ms)
	})
}

// readErrQueue reads one message from the error queue without blocking.
// empty is true when the queue had nothing. It knows the
// transmit-timestamp messages of IPv4, IPv6 and packet sockets.
func (k *stampSocket) readErrQueue(withFD func(func(fd uintptr)) error) (t time.Time, id uint32, ok, empty bool) {
	var (
		oobn int
		rerr error
	)
	cerr := withFD(func(fd uintptr) {
		for {
			_, oobn, _, _, rerr = unix.Recvmsg(int(fd), k.eData, k.eBuf, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if rerr != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil || rerr != nil {
		return time.Time{}, 0, false, true
	}
	msgs, err := unix.ParseSocketControlMessage(k.eBuf[:oobn])
	if err != nil {
		return time.Time{}, 0, false, false
	}
	var haveTS, haveID bool
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && isTimestamping(m.Header.Type):
			t, haveTS = k.parseStamp(m.Data)
		case (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) ||
			(m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_TX_TIMESTAMP):
			ee, good := parseExtendedErr(m.Data)
			if good && ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING && ee.Info == unix.SCM_TSTAMP_SND {
				id, haveID = ee.Data, true
			}
		}
	}
	return t, id, haveTS && haveID, false
}

func isTimestamping(typ int32) bool {
	return int(typ) == unix.SO_TIMESTAMPING_OLD || int(typ) == unix.SO_TIMESTAMPING_NEW
}

// stampFromCmsgs finds the receive timestamp in received control messages.
func (k *stampSocket) stampFromCmsgs(oob []byte) (time.Time, bool) {
	if len(oob) == 0 {
		return time.Time{}, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && isTimestamping(m.Header.Type) {
			return k.parseStamp(m.Data)
		}
	}
	return time.Time{}, false
}

// parseStamp reads the software (first) or raw hardware (third) timespec of
// SCM_TIMESTAMPING.
func (k *stampSocket) parseStamp(b []byte) (time.Time, bool) {
	if !k.hw {
		return parseTimestamping(b)
	}
	return timespecAt(b, 2)
}

// parseTimestamping reads the software timestamp (the first of the three
// timespecs of SCM_TIMESTAMPING).
func parseTimestamping(b []byte) (time.Time, bool) { return timespecAt(b, 0) }

// timespecAt reads timespec i (0, 1 or 2) of SCM_TIMESTAMPING. The
// timespecs are 16 bytes each (64-bit systems, or SO_TIMESTAMPING_NEW) or 8
// bytes each (the old option on 32-bit systems). A zero timespec means no
// timestamp.
func timespecAt(b []byte, i int) (time.Time, bool) {
	var sec, nsec int64
	switch {
	case len(b) >= 48:
		sec = int64(binary.NativeEndian.Uint64(b[16*i:]))
		nsec = int64(binary.NativeEndian.Uint64(b[16*i+8:]))
	case len(b) >= 24:
		sec = int64(int32(binary.NativeEndian.Uint32(b[8*i:])))
		nsec = int64(int32(binary.NativeEndian.Uint32(b[8*i+4:])))
	default:
		return time.Time{}, false
	}
	if (sec == 0 && nsec == 0) || nsec < 0 || nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(sec, nsec), true
}

func parseExtendedErr(b []byte) (unix.SockExtendedErr, bool) {
	if len(b) < 16 {
		return unix.SockExtendedErr{}, false
	}
	return unix.SockExtendedErr{
		Errno:  binary.NativeEndian.Uint32(b[0:]),
		Origin: b[4],
		Type:   b[5],
		Code:   b[6],
		Pad:    b[7],
		Info:   binary.NativeEndian.Uint32(b[8:]),
		Data:   binary.NativeEndian.Uint32(b[12:]),
	}, true
}

// appendCmsgUint32 appends one control message carrying a 32-bit value.
func appendCmsgUint32(b []byte, level, typ int, v uint32) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(4))...)
	h := b[start:]
	hdrLen := unix.CmsgLen(4)
	// struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; }
	lenSize := unix.SizeofCmsghdr - 8
	switch lenSize {
	case 8:
		binary.NativeEndian.PutUint64(h, uint64(hdrLen))
	default:
		binary.NativeEndian.PutUint32(h, uint32(hdrLen))
	}
	binary.NativeEndian.PutUint32(h[lenSize:], uint32(level))
	binary.NativeEndian.PutUint32(h[lenSize+4:], uint32(typ))
	binary.NativeEndian.PutUint32(h[unix.CmsgLen(0):], v)
	return b
}
