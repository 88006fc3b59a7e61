//go:build linux

package netstamp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// Conn is a UDP socket with kernel send and receive timestamps. ReadFrom and
// WriteTo may be called from different goroutines at the same time; writes
// are serialized.
type Conn struct {
	s      *socket.Conn
	raw    rawControl
	fam    int // 4 or 6
	v6only bool
	local  netip.AddrPort
	tsOpt  int // SO_TIMESTAMPING_NEW or SO_TIMESTAMPING_OLD
	closed atomic.Bool

	wmu    sync.Mutex // serializes sends and the error queue
	nextID uint32     // OPT_ID of the next stamped send
	wOOB   []byte     // per-send control message asking for a TX stamp
	eBuf   []byte     // error-queue control buffer
	eData  []byte

	rmu  sync.Mutex
	rOOB []byte
}

type rawControl interface {
	Control(f func(fd uintptr)) error
}

const (
	rxFlags = unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE |
		unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
	oobSize = 512
)

// Listen opens a UDP socket bound to laddr. network is "udp4", "udp6" or
// "udp"; with "udp" and the wildcard (or an invalid, zero) address the socket
// serves IPv4 and IPv6. Port 0 picks an ephemeral port.
func Listen(network string, laddr netip.AddrPort) (*Conn, error) {
	keepOnce.Do(keepStampingOn)
	return listen(network, laddr)
}

var keepOnce sync.Once

// keepStampingOn turns the kernel's receive timestamping on for the life of
// the process. Linux enables it lazily (from a work queue) when the first
// socket asks and turns it off when the last one goes, so the first datagrams
// on a fresh socket would arrive without a timestamp. One socket that stays
// open keeps it on; its own datagrams to itself show when it is.
func keepStampingOn() {
	k, err := listen("udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return
	}
	self := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), k.local.Port())
	buf := make([]byte, 8)
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, _, err := k.WriteTo([]byte{0}, self); err != nil {
			return
		}
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
		_, _, _, st, err := k.ReadFromContext(ctx, buf)
		cancel()
		if err == nil && st == StampKernel {
			return
		}
		time.Sleep(time.Millisecond)
	}
	// k stays open on purpose: it holds the kernel's timestamping on.
}

func listen(network string, laddr netip.AddrPort) (*Conn, error) {
	fam, v6only, err := family(network, laddr)
	if err != nil {
		return nil, err
	}
	domain := unix.AF_INET
	if fam == 6 {
		domain = unix.AF_INET6
	}
	s, err := socket.Socket(domain, unix.SOCK_DGRAM, unix.IPPROTO_UDP, "netstamp-udp", nil)
	if err != nil {
		return nil, fmt.Errorf("netstamp: socket: %w", err)
	}
	c := &Conn{s: s, fam: fam, v6only: v6only, rOOB: make([]byte, oobSize), eBuf: make([]byte, oobSize), eData: make([]byte, 64)}
	if err := c.setup(laddr); err != nil {
		s.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup(laddr netip.AddrPort) error {
	raw, err := c.s.SyscallConn()
	if err != nil {
		return fmt.Errorf("netstamp: %w", err)
	}
	c.raw = raw
	if c.fam == 6 {
		v := 0
		if c.v6only {
			v = 1
		}
		if err := c.s.SetsockoptInt(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
			return fmt.Errorf("netstamp: IPV6_V6ONLY: %w", err)
		}
	}
	// Prefer the 64-bit timespec layout (y2038-safe on 32-bit systems);
	// kernels before 5.1 only know the old option.
	c.tsOpt = unix.SO_TIMESTAMPING_NEW
	if err := c.s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, rxFlags); err != nil {
		c.tsOpt = unix.SO_TIMESTAMPING_OLD
		if err := c.s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_TIMESTAMPING_OLD, rxFlags); err != nil {
			return fmt.Errorf("netstamp: SO_TIMESTAMPING: %w", err)
		}
	}
	// Each send asks for its own transmit timestamp with a control message,
	// so that sends that do not need one leave nothing on the error queue.
	c.wOOB = appendCmsgUint32(nil, unix.SOL_SOCKET, c.tsOpt, unix.SOF_TIMESTAMPING_TX_SOFTWARE)

	sa, err := c.sockaddr(laddr, true)
	if err != nil {
		return err
	}
	if err := c.s.Bind(sa); err != nil {
		return fmt.Errorf("netstamp: bind %s: %w", laddr, err)
	}
	got, err := c.s.Getsockname()
	if err != nil {
		return fmt.Errorf("netstamp: getsockname: %w", err)
	}
	c.local = addrPortOf(got)
	return nil
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

// sockaddr converts an address to the socket's family. bind allows the
// zero AddrPort (the wildcard).
func (c *Conn) sockaddr(ap netip.AddrPort, bind bool) (unix.Sockaddr, error) {
	a := ap.Addr()
	if !a.IsValid() {
		if !bind {
			return nil, fmt.Errorf("netstamp: no destination address")
		}
		if c.fam == 4 {
			return &unix.SockaddrInet4{Port: int(ap.Port())}, nil
		}
		return &unix.SockaddrInet6{Port: int(ap.Port())}, nil
	}
	if c.fam == 4 {
		if !a.Is4() && !a.Is4In6() {
			return nil, fmt.Errorf("netstamp: %s is not an IPv4 address (the socket is IPv4)", a)
		}
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	}
	if (a.Is4() || a.Is4In6()) && c.v6only {
		return nil, fmt.Errorf("netstamp: %s is an IPv4 address (the socket is IPv6-only)", a)
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, fmt.Errorf("netstamp: zone of %s: %w", a, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// LocalAddr returns the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline sets the time after which a blocked ReadFrom returns an
// error wrapping os.ErrDeadlineExceeded; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.s.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadFrom returns an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.s.Close()
}

// ReadFrom reads one datagram into b. rx is the kernel's receive timestamp
// (StampKernel) or, if the kernel gave none, the time read just after the
// read returned (StampUser). Addresses of IPv4 peers on a dual-stack socket
// are returned unmapped.
func (c *Conn) ReadFrom(b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.ReadFromContext(context.Background(), b)
}

// ReadFromContext is ReadFrom that also returns when ctx is done.
func (c *Conn) ReadFromContext(ctx context.Context, b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, oobn, flags, sa, err := c.s.Recvmsg(ctx, b, c.rOOB, 0)
	now := time.Now()
	if err != nil {
		if c.closed.Load() || errors.Is(err, unix.EBADF) {
			err = net.ErrClosed
		}
		return 0, netip.AddrPort{}, time.Time{}, StampUser, fmt.Errorf("netstamp: recvmsg: %w", err)
	}
	from = addrPortOf(sa)
	rx, st = now, StampUser
	if t, ok := c.timestampFromCmsgs(c.rOOB[:oobn]); ok {
		rx, st = t, StampKernel
	}
	if flags&unix.MSG_TRUNC != 0 {
		return n, from, rx, st, ErrTruncated
	}
	return n, from, rx, st, nil
}

// WriteTo sends b to the address to. tx is the kernel's transmit timestamp
// when it arrives within TxStampWait (StampKernel), else the time read just
// before the send (StampUser).
func (c *Conn) WriteTo(b []byte, to netip.AddrPort) (tx time.Time, st Stamping, err error) {
	sa, err := c.sockaddr(to, false)
	if err != nil {
		return time.Time{}, StampUser, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	before := time.Now()
	if _, err := c.s.Sendmsg(context.Background(), b, c.wOOB, sa, 0); err != nil {
		if c.closed.Load() || errors.Is(err, unix.EBADF) {
			err = net.ErrClosed
		}
		return before, StampUser, fmt.Errorf("netstamp: send to %s: %w", to, err)
	}
	id := c.nextID
	c.nextID++
	if t, ok := c.waitTxStamp(id); ok {
		return t, StampKernel, nil
	}
	return before, StampUser, nil
}

// waitTxStamp reads the error queue until the transmit timestamp of send id
// arrives or TxStampWait has passed. Older stamps are dropped.
func (c *Conn) waitTxStamp(id uint32) (time.Time, bool) {
	deadline := time.Now().Add(TxStampWait)
	for {
		t, gotID, ok, empty := c.readErrQueue()
		if ok && gotID == id {
			return t, true
		}
		if ok && int32(gotID-id) > 0 {
			// The kernel counts ahead of us (a send we thought failed was
			// stamped): resynchronize.
			c.nextID = gotID + 1
			return time.Time{}, false
		}
		if !empty {
			continue // a stale stamp or another error: read on
		}
		left := time.Until(deadline)
		if left <= 0 {
			return time.Time{}, false
		}
		c.pollErr(left)
	}
}

// pollErr waits until the error queue is readable or d has passed.
func (c *Conn) pollErr(d time.Duration) {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	_ = c.raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: 0}} // POLLERR is always reported
		_, _ = unix.Poll(fds, ms)
	})
}

// readErrQueue reads one message from the error queue without blocking.
// empty is true when the queue had nothing.
func (c *Conn) readErrQueue() (t time.Time, id uint32, ok, empty bool) {
	var (
		oobn int
		rerr error
	)
	cerr := c.raw.Control(func(fd uintptr) {
		for {
			_, oobn, _, _, rerr = unix.Recvmsg(int(fd), c.eData, c.eBuf, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if rerr != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil || rerr != nil {
		return time.Time{}, 0, false, true
	}
	msgs, err := unix.ParseSocketControlMessage(c.eBuf[:oobn])
	if err != nil {
		return time.Time{}, 0, false, false
	}
	var haveTS, haveID bool
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && (int(m.Header.Type) == unix.SO_TIMESTAMPING_OLD || int(m.Header.Type) == unix.SO_TIMESTAMPING_NEW):
			t, haveTS = parseTimestamping(m.Data)
		case (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR):
			ee, good := parseExtendedErr(m.Data)
			if good && ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING && ee.Info == unix.SCM_TSTAMP_SND {
				id, haveID = ee.Data, true
			}
		}
	}
	return t, id, haveTS && haveID, false
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

// timestampFromCmsgs finds the software timestamp in received control
// messages.
func (c *Conn) timestampFromCmsgs(oob []byte) (time.Time, bool) {
	if len(oob) == 0 {
		return time.Time{}, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && (int(m.Header.Type) == unix.SO_TIMESTAMPING_OLD || int(m.Header.Type) == unix.SO_TIMESTAMPING_NEW) {
			return parseTimestamping(m.Data)
		}
	}
	return time.Time{}, false
}

// parseTimestamping reads the software timestamp (the first of the three
// timespecs of SCM_TIMESTAMPING). The timespecs are 16 bytes each (64-bit
// systems, or SO_TIMESTAMPING_NEW) or 8 bytes each (the old option on 32-bit
// systems). A zero timespec means no timestamp.
func parseTimestamping(b []byte) (time.Time, bool) {
	var sec, nsec int64
	switch {
	case len(b) >= 48:
		sec = int64(binary.NativeEndian.Uint64(b[0:]))
		nsec = int64(binary.NativeEndian.Uint64(b[8:]))
	case len(b) >= 24:
		sec = int64(int32(binary.NativeEndian.Uint32(b[0:])))
		nsec = int64(int32(binary.NativeEndian.Uint32(b[4:])))
	default:
		return time.Time{}, false
	}
	if (sec == 0 && nsec == 0) || nsec < 0 || nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(sec, nsec), true
}
