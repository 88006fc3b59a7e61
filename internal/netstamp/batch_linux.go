//go:build linux

package netstamp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BatchConn is a UDP socket for servers: it reads and writes many datagrams
// per system call (recvmmsg, sendmmsg), with the kernel's receive timestamp
// and destination address of every datagram, and transmit timestamps on
// request. It allocates nothing per datagram. One goroutine uses it at a
// time; Close may be called from any goroutine.
type BatchConn struct {
	closed atomic.Bool
	f      *os.File
	rc     syscall.RawConn
	fam    int
	local  netip.AddrPort
	tsOpt  int
	txHook func(uint32, time.Time)
	nextID uint32 // OPT_ID of the next stamped send
	// unstamped counts stamped sends whose timestamp has not been read:
	// the error queue is read only while it is above 0.
	unstamped int
	wildcard  bool // bound to the unspecified address

	rhdr  []mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6
	roob  []byte

	whdr  []mmsghdr
	wiov  []unix.Iovec
	wname []unix.RawSockaddrInet6
	woob  []byte

	ehdr  []mmsghdr
	eiov  []unix.Iovec
	eoob  []byte
	edata []byte

	// The system-call closures are made once, so that a batch allocates
	// nothing; they work on these fields. The calls never block (the
	// socket is non-blocking and MSG_DONTWAIT is set; Go's poller does the
	// waiting), so they are made as raw system calls: the runtime's
	// bookkeeping around a system call that may block (handing the
	// processor to another thread when it takes long) costs more than a
	// batch of datagrams.
	readFn, writeFn func(fd uintptr) bool
	drainFn         func(fd uintptr)
	n, got          int
	errno           unix.Errno
}

// ReusePort reports whether several BatchConns can share an address and
// port (BatchOptions.ReusePort).
const ReusePort = true

// mmsghdr is struct mmsghdr; Go pads it to the same size as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Control buffer sizes: a read carries the destination (IP_PKTINFO, 12 or
// IPV6_PKTINFO, 20 bytes) and the timestamps (48 bytes); a write the source
// address and the request for a transmit timestamp; an error-queue message
// the timestamps and the extended error.
var (
	readOOB  = unix.CmsgSpace(20) + unix.CmsgSpace(48) + 16
	writeOOB = unix.CmsgSpace(20) + unix.CmsgSpace(4)
	errOOB   = unix.CmsgSpace(48) + unix.CmsgSpace(16+28) + 16
)

const errBatch = 16

// ListenBatch opens a UDP socket bound to laddr (an IPv6 one is IPv6-only)
// with room for batches of up to batch datagrams.
func ListenBatch(laddr netip.AddrPort, batch int, opts BatchOptions) (*BatchConn, error) {
	keepOnce.Do(keepStampingOn)
	if batch < 1 {
		return nil, fmt.Errorf("netstamp: batch size %d, want at least 1", batch)
	}
	a := laddr.Addr().Unmap()
	fam, domain := 4, unix.AF_INET
	if a.Is6() {
		fam, domain = 6, unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("netstamp: socket: %w", err)
	}
	c := &BatchConn{fam: fam, txHook: opts.TxStamp}
	if err := c.setup(fd, netip.AddrPortFrom(a, laddr.Port()), opts); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c.f = os.NewFile(uintptr(fd), "netstamp-batch")
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, fmt.Errorf("netstamp: %w", err)
	}
	c.alloc(batch)
	return c, nil
}

func (c *BatchConn) setup(fd int, laddr netip.AddrPort, opts BatchOptions) error {
	set := func(level, opt, v int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("netstamp: %s: %w", name, err)
		}
		return nil
	}
	if opts.ReusePort {
		if err := set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"); err != nil {
			return err
		}
	}
	if c.fam == 6 {
		if err := set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, "IPV6_V6ONLY"); err != nil {
			return err
		}
	}
	// The destination address of each datagram is needed only on a
	// wildcard socket, to answer from the address asked; elsewhere it is
	// the bound one, and asking would cost a control message per datagram.
	c.wildcard = laddr.Addr().IsUnspecified()
	if c.wildcard {
		if c.fam == 6 {
			if err := set(unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO"); err != nil {
				return err
			}
		} else if err := set(unix.IPPROTO_IP, unix.IP_PKTINFO, 1, "IP_PKTINFO"); err != nil {
			return err
		}
	}
	// The kernel caps the receive buffer at net.core.rmem_max, which is
	// fine.
	rcvbuf := opts.ReceiveBuffer
	if rcvbuf <= 0 {
		rcvbuf = 4 << 20
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	c.tsOpt = unix.SO_TIMESTAMPING_NEW
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, rxFlags); err != nil {
		c.tsOpt = unix.SO_TIMESTAMPING_OLD
		if err := set(unix.SOL_SOCKET, unix.SO_TIMESTAMPING_OLD, rxFlags, "SO_TIMESTAMPING"); err != nil {
			return err
		}
	}
	var sa unix.Sockaddr
	if c.fam == 4 {
		sa = &unix.SockaddrInet4{Port: int(laddr.Port()), Addr: laddr.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(laddr.Port()), Addr: laddr.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("netstamp: bind %s: %w", laddr, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("netstamp: getsockname: %w", err)
	}
	c.local = addrPortOf(got)
	return nil
}

func (c *BatchConn) alloc(batch int) {
	c.rhdr, c.riov, c.rname = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	c.roob = make([]byte, batch*readOOB)
	c.whdr, c.wiov, c.wname = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	c.woob = make([]byte, batch*writeOOB)
	c.ehdr, c.eiov = make([]mmsghdr, errBatch), make([]unix.Iovec, errBatch)
	c.eoob, c.edata = make([]byte, errBatch*errOOB), make([]byte, errBatch*64)
	for i := range c.ehdr {
		c.eiov[i].Base = &c.edata[i*64]
		c.eiov[i].SetLen(64)
		h := &c.ehdr[i].hdr
		h.Iov = &c.eiov[i]
		h.SetIovlen(1)
		h.Control = &c.eoob[i*errOOB]
	}
	c.readFn = func(fd uintptr) bool {
		c.drainTxStamps(fd)
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdr[0])), uintptr(c.n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		c.got, c.errno = int(r), e
		return true
	}
	c.writeFn = func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdr[0])), uintptr(c.n), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		c.got, c.errno = int(r), e
		return true
	}
	c.drainFn = c.drainTxStamps
}

// LocalAddr is the address and port the socket is bound to.
func (c *BatchConn) LocalAddr() netip.AddrPort { return c.local }

// Close closes the socket; a blocked ReadBatch returns net.ErrClosed.
func (c *BatchConn) Close() error {
	c.closed.Store(true)
	return c.f.Close()
}

// ReadBatch waits for datagrams and reads up to len(msgs) of them (at most
// the batch size given to ListenBatch), filling Buf, N, Addr, Local,
// IfIndex, RxTime and Truncated. It returns how many it read.
func (c *BatchConn) ReadBatch(msgs []Message) (int, error) {
	n := min(len(msgs), len(c.rhdr))
	if n == 0 {
		return 0, nil
	}
	for i := range n {
		b := msgs[i].Buf
		if len(b) == 0 {
			return 0, errors.New("netstamp: ReadBatch: empty buffer")
		}
		c.riov[i].Base = &b[0]
		c.riov[i].SetLen(len(b))
		h := &c.rhdr[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&c.rname[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &c.riov[i]
		h.SetIovlen(1)
		h.Control = &c.roob[i*readOOB]
		h.SetControllen(readOOB)
		h.Flags = 0
	}
	c.n, c.got, c.errno = n, 0, 0
	err := c.rc.Read(c.readFn)
	got := c.got
	if err != nil {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, fmt.Errorf("netstamp: recvmmsg: %w", err)
	}
	if c.errno != 0 {
		return 0, fmt.Errorf("netstamp: recvmmsg: %w", c.errno)
	}
	for i := range got {
		m := &msgs[i]
		h := &c.rhdr[i]
		m.N = int(h.n)
		m.Truncated = h.hdr.Flags&unix.MSG_TRUNC != 0
		if m.N > len(m.Buf) {
			m.N = len(m.Buf)
		}
		m.Addr = rawAddrPort(&c.rname[i], c.fam)
		m.Local, m.IfIndex, m.RxTime = netip.Addr{}, 0, time.Time{}
		if !c.wildcard {
			m.Local = c.local.Addr()
		}
		c.parseReadOOB(m, c.roob[i*readOOB:i*readOOB+int(h.hdr.Controllen)])
	}
	return got, nil
}

// rawAddrPort converts a received socket address without allocating (IPv6
// zones are left out: a link-local peer is answered through IfIndex).
func rawAddrPort(sa *unix.RawSockaddrInet6, fam int) netip.AddrPort {
	if fam == 4 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
}

// cmsgs walks control messages without allocating: f gets each one's
// level, type and data.
func cmsgs(b []byte, f func(level, typ int32, data []byte)) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		f(h.Level, h.Type, b[unix.CmsgLen(0):l])
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}

func (c *BatchConn) parseReadOOB(m *Message, oob []byte) {
	cmsgs(oob, func(level, typ int32, data []byte) {
		switch {
		case level == unix.SOL_SOCKET && (typ == unix.SO_TIMESTAMPING_NEW || typ == unix.SO_TIMESTAMPING_OLD):
			if t, ok := parseTimestamping(data); ok {
				m.RxTime = t
			}
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			m.IfIndex = int(pi.Ifindex)
			m.Local = netip.AddrFrom4(pi.Addr)
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			m.IfIndex = int(pi.Ifindex)
			m.Local = netip.AddrFrom16(pi.Addr)
		}
	})
}

// WriteBatch sends msgs (Buf, Addr, Local, IfIndex, StampTx) and sets TxID
// on the stamped ones; their timestamps reach the TxStamp callback from a
// later ReadBatch or DrainTxStamps. It returns how many were sent; a datagram the kernel
// refuses is skipped and counted in failed.
func (c *BatchConn) WriteBatch(msgs []Message) (sent, failed int, err error) {
	for len(msgs) > 0 {
		n := min(len(msgs), len(c.whdr))
		for i := range n {
			c.fillWrite(i, &msgs[i])
		}
		c.n, c.got, c.errno = n, 0, 0
		werr := c.rc.Write(c.writeFn)
		r, serr := c.got, c.errno
		if werr != nil {
			if c.closed.Load() {
				return sent, failed, net.ErrClosed
			}
			return sent, failed, fmt.Errorf("netstamp: sendmmsg: %w", werr)
		}
		if serr != 0 {
			// The first datagram failed (an unreachable or refused
			// destination): skip it and go on with the rest.
			failed++
			err = fmt.Errorf("netstamp: sendmmsg to %s: %w", msgs[0].Addr, serr)
			msgs = msgs[1:]
			continue
		}
		for i := range r {
			if msgs[i].StampTx {
				msgs[i].TxID = c.nextID
				c.nextID++
				c.unstamped++
			}
		}
		sent += r
		msgs = msgs[r:]
	}
	return sent, failed, err
}

// DrainTxStamps hands the transmit timestamps that have arrived to the
// TxStamp callback without waiting. ReadBatch does this too, each time it
// is called and whenever it wakes up.
func (c *BatchConn) DrainTxStamps() {
	if c.txHook != nil {
		_ = c.rc.Control(c.drainFn)
	}
}

func (c *BatchConn) fillWrite(i int, m *Message) {
	c.wiov[i].Base = &m.Buf[0]
	c.wiov[i].SetLen(len(m.Buf))
	h := &c.whdr[i].hdr
	*h = unix.Msghdr{}
	c.wname[i] = unix.RawSockaddrInet6{}
	a := m.Addr.Addr()
	if c.fam == 4 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.wname[i]))
		sa4.Family = unix.AF_INET
		sa4.Addr = a.Unmap().As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], m.Addr.Port())
		h.Namelen = unix.SizeofSockaddrInet4
	} else {
		sa := &c.wname[i]
		sa.Family = unix.AF_INET6
		sa.Addr = a.As16()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], m.Addr.Port())
		h.Namelen = unix.SizeofSockaddrInet6
	}
	h.Name = (*byte)(unsafe.Pointer(&c.wname[i]))
	h.Iov = &c.wiov[i]
	h.SetIovlen(1)
	oob := c.woob[i*writeOOB : (i+1)*writeOOB]
	used := 0
	if c.wildcard && m.Local.IsValid() && !m.Local.IsUnspecified() {
		if c.fam == 4 {
			used += putCmsg(oob[used:], unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo, func(d []byte) {
				pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&d[0]))
				pi.Spec_dst = m.Local.Unmap().As4()
			})
		} else {
			used += putCmsg(oob[used:], unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo, func(d []byte) {
				pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&d[0]))
				pi.Addr = m.Local.As16()
				pi.Ifindex = uint32(m.IfIndex)
			})
		}
	}
	if m.StampTx {
		used += putCmsg(oob[used:], unix.SOL_SOCKET, int32(c.tsOpt), 4, func(d []byte) {
			binary.NativeEndian.PutUint32(d, unix.SOF_TIMESTAMPING_TX_SOFTWARE)
		})
	}
	if used > 0 {
		h.Control = &oob[0]
		h.SetControllen(used)
	}
}

// putCmsg writes one control message with a datalen-byte payload filled by
// fill, and returns the space it took.
func putCmsg(b []byte, level, typ int32, datalen int, fill func([]byte)) int {
	space := unix.CmsgSpace(datalen)
	clear(b[:space])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(datalen))
	fill(b[unix.CmsgLen(0) : unix.CmsgLen(0)+datalen])
	return space
}

// drainTxStamps reads the error queue without blocking and hands every
// transmit timestamp to the callback.
func (c *BatchConn) drainTxStamps(fd uintptr) {
	if c.txHook == nil || c.unstamped <= 0 {
		return
	}
	for {
		for i := range c.ehdr {
			h := &c.ehdr[i].hdr
			h.SetControllen(errOOB)
			h.Flags = 0
		}
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.ehdr[0])), errBatch,
			unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0)
		if e != 0 || r == 0 {
			return
		}
		for i := range int(r) {
			var t time.Time
			var id uint32
			var haveTS, haveID bool
			cmsgs(c.eoob[i*errOOB:i*errOOB+int(c.ehdr[i].hdr.Controllen)], func(level, typ int32, data []byte) {
				switch {
				case level == unix.SOL_SOCKET && (typ == unix.SO_TIMESTAMPING_NEW || typ == unix.SO_TIMESTAMPING_OLD):
					t, haveTS = parseTimestamping(data)
				case (level == unix.SOL_IP && typ == unix.IP_RECVERR) || (level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR):
					if ee, ok := parseExtendedErr(data); ok && ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING && ee.Info == unix.SCM_TSTAMP_SND {
						id, haveID = ee.Data, true
					}
				}
			})
			if haveTS && haveID {
				c.unstamped--
				c.txHook(id, t)
			}
		}
		if int(r) < errBatch {
			return
		}
	}
}
