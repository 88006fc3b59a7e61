//go:build linux

package ntpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/csptp"
)

const (
	// batchMsgs is the number of sends per sendmmsg and of datagrams per
	// recvmmsg.
	batchMsgs = 64
	// recvBufLen is what is read of each datagram: enough for a header
	// and extension fields; what lies beyond is not needed.
	recvBufLen = 256
	// plainMsgs is the number of datagrams per sendmmsg without GSO.
	plainMsgs = 256
	// paceChunk is how much sending time a paced worker gathers into one
	// sendmmsg: it waits until that many requests are due.
	paceChunk = 50 * time.Microsecond
	// socketBuffer is the receive (and send) buffer asked for.
	socketBuffer = 64 << 20
)

// slot remembers one request in flight: its cookie (the bitwise negation
// once answered) and when it was sent (nanoseconds since the run began).
// Each worker's goroutine alone reads and writes its ring.
type slot struct {
	cookie uint64
	sent   int64
}

// Run loads the server as o says and returns what it measured. It returns
// early, with what was measured so far, when ctx ends.
func Run(ctx context.Context, o Options) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	workers := make([]*worker, o.Workers)
	defer func() {
		for _, w := range workers {
			if w != nil {
				unix.Close(w.fd)
			}
		}
	}()
	for i := range workers {
		if workers[i], err = newWorker(o, i); err != nil {
			return nil, err
		}
	}
	res := &Result{
		Server: o.Server.String(), Sources: o.Sources, Workers: o.Workers, Burst: o.Burst, GSO: !o.NoGSO,
		NTS: len(o.NTS) > 0, Protocol: o.Protocol, RequestLen: requestLen(o),
		Offered: o.Rate, ServerPID: o.ServerPID, Kisses: map[string]uint64{},
	}
	var cpu0 time.Duration
	if o.ServerPID != 0 {
		if cpu0, err = ProcessCPU(o.ServerPID); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	var wg sync.WaitGroup
	var sendEnd atomic.Int64 // the last worker to stop sending sets it
	var sending atomic.Int32
	sending.Store(int32(o.Workers))
	for _, w := range workers {
		w.base = start
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, o.Duration, o.Rate/float64(o.Workers), o.Wait, func() {
				if sending.Add(-1) == 0 {
					sendEnd.Store(int64(time.Since(start)))
				}
			})
		}()
	}
	wg.Wait()
	res.Seconds = time.Duration(sendEnd.Load()).Seconds()
	if o.ServerPID != 0 {
		cpu1, err := ProcessCPU(o.ServerPID)
		if err != nil {
			return nil, err
		}
		res.ServerCPU = (cpu1 - cpu0).Seconds()
	}

	var hist histogram
	var errs []error
	for i, w := range workers {
		res.Sent += w.sent
		res.Answered += w.answered
		res.Kissed += w.kissed
		res.Unmatched += w.unmatched
		res.Duplicates += w.duplicates
		res.Malformed += w.malformed
		res.RecvDropped += uint64(w.dropped)
		res.responseBytes += w.responseBytes
		for code, n := range w.kisses {
			res.Kisses[kissName(code)] += n
		}
		hist.merge(&w.hist)
		if w.err != nil {
			errs = append(errs, fmt.Errorf("ntpload: worker %d: %w", i, w.err))
		}
	}
	res.finish(&hist)
	return res, errors.Join(errs...)
}

// worker is one socket and the goroutine, locked to its thread, that sends
// and receives on it.
type worker struct {
	fd      int
	server  unix.RawSockaddrInet4
	sources [][4]byte
	burst   int
	gso     bool
	ring    []slot
	mask    uint64
	base    time.Time
	err     error

	// Sending.
	seq uint64
	// With PTP, ptp is the wire form, ptpTemplates[i] the request from
	// sources[i] and ptpParts the parts of a complete answer.
	ptp          csptp.Protocol
	ptpTemplates [][]byte
	ptpParts     uint64
	// With NTS, clients[i] is the NTS client of sources[i].
	clients []*NTSClient
	reqLen  int // bytes per request
	next    int // index into sources of the current burst's source
	left    int // requests left in the current burst
	smsgs   []unix.Mmsghdr
	siov    []unix.Iovec
	sbuf    []byte
	soob    []byte
	sn      int // messages filled
	sent    uint64

	// Receiving.
	rmsgs      [batchMsgs]unix.Mmsghdr
	riov       [batchMsgs]unix.Iovec
	rname      [batchMsgs]unix.RawSockaddrInet4
	rbuf       []byte
	roob       []byte
	pfd        [1]unix.PollFd
	timeout    unix.Timespec
	matched    uint64 // answered + kissed
	answered   uint64
	kissed     uint64
	unmatched  uint64
	duplicates uint64
	malformed  uint64
	dropped    uint32
	// responseBytes counts the bytes of the datagrams matched.
	responseBytes uint64
	kisses        map[[4]byte]uint64
	hist          histogram
}

// Sizes of the control messages: IP_PKTINFO and UDP_SEGMENT on sends,
// SO_RXQ_OVFL and (for PTP) IP_PKTINFO on receives.
var (
	pktinfoSpace = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	segmentSpace = unix.CmsgSpace(2)
	sendOOBLen   = pktinfoSpace + segmentSpace
	recvOOBLen   = unix.CmsgSpace(4) + pktinfoSpace
)

func newWorker(o Options, index int) (*worker, error) {
	w := &worker{burst: o.Burst, gso: !o.NoGSO, kisses: map[[4]byte]uint64{}, reqLen: requestLen(o)}
	w.server.Family = unix.AF_INET
	w.server.Addr = o.Server.Addr().As4()
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&w.server.Port))[:], o.Server.Port())

	// Deal out the source addresses.
	if o.Sources < o.Workers {
		a, _ := sourceAddr(o.FirstSource, index%o.Sources)
		w.sources = [][4]byte{a}
	} else {
		w.sources = make([][4]byte, 0, (o.Sources+o.Workers-1)/o.Workers)
		for i := index; i < o.Sources; i += o.Workers {
			a, err := sourceAddr(o.FirstSource, i)
			if err != nil {
				return nil, err
			}
			w.sources = append(w.sources, a)
		}
	}
	w.next = -1 // the first burst takes sources[0]
	if len(o.NTS) > 0 {
		for i := range w.sources {
			w.clients = append(w.clients, &o.NTS[(index+i*o.Workers)%len(o.NTS)])
		}
	}
	var err error
	if w.ptp, err = ptpProtocol(o.Protocol); err != nil {
		return nil, err
	}
	if w.ptp != 0 {
		w.ptpParts = ptpParts(w.ptp)
		for _, a := range w.sources {
			b, err := ptpTemplate(w.ptp, a, ptpPad(o, w.ptp))
			if err != nil {
				return nil, err
			}
			w.ptpTemplates = append(w.ptpTemplates, b)
		}
	}

	// The ring of requests in flight must hold what is sent while a
	// response may still come: at a maximal rate about a second's worth.
	ringLen := 1 << 21
	if o.Rate > 0 {
		need := o.Rate / float64(o.Workers) * (o.Wait + time.Second).Seconds()
		ringLen = 1 << 12
		for float64(ringLen) < need && ringLen < 1<<22 {
			ringLen <<= 1
		}
	}
	if w.ptp != 0 {
		// A PTP answer carries 16 bits of sequence id, which index the
		// ring.
		ringLen = min(ringLen, 1<<16)
	}
	w.ring = make([]slot, ringLen)
	w.mask = uint64(ringLen - 1)

	if err := w.open(o); err != nil {
		return nil, err
	}
	w.prepare()
	return w, nil
}

// open makes the worker's socket: UDP, non-blocking, bound to the wildcard
// address and an ephemeral port (and to the loopback device when the
// server is on loopback), with large buffers and the receive-queue drop
// counter on.
func (w *worker) open(o Options) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("ntpload: socket: %w", err)
	}
	if o.Server.Addr().IsLoopback() {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"); err != nil {
			o.Logger.Warn("cannot bind the load socket to the loopback device; datagrams from elsewhere count as unmatched", zap.Error(err))
		}
	}
	for _, b := range []struct{ force, plain int }{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.force, socketBuffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.plain, socketBuffer) // capped by net.core.[rw]mem_max
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("ntpload: SO_RXQ_OVFL: %w", err)
	}
	if w.ptp != 0 {
		// The address each answer came to names the request's source.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("ntpload: IP_PKTINFO: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("ntpload: bind: %w", err)
	}
	w.fd = fd
	w.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	return nil
}

// prepare points the message headers at their buffers and writes the
// control messages' headers, once. With GSO a message carries up to
// MaxBurst requests; without, one.
func (w *worker) prepare() {
	msgs, per := batchMsgs, MaxBurst
	if !w.gso {
		msgs, per = plainMsgs, 1
	}
	w.smsgs = make([]unix.Mmsghdr, msgs)
	w.siov = make([]unix.Iovec, msgs)
	w.sbuf = make([]byte, msgs*per*w.reqLen)
	w.soob = make([]byte, msgs*sendOOBLen)
	for i := range w.smsgs {
		h := &w.smsgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&w.server))
		h.Namelen = unix.SizeofSockaddrInet4
		w.siov[i].Base = &w.sbuf[i*per*w.reqLen]
		w.siov[i].SetLen(w.reqLen)
		h.Iov = &w.siov[i]
		h.SetIovlen(1)
		oob := w.soob[i*sendOOBLen : (i+1)*sendOOBLen]
		putCmsgHeader(oob, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
		putCmsgHeader(oob[pktinfoSpace:], unix.IPPROTO_UDP, unix.UDP_SEGMENT, 2)
		binary.NativeEndian.PutUint16(oob[pktinfoSpace+unix.CmsgLen(0):], uint16(w.reqLen))
		h.Control = &oob[0]
		if w.gso {
			h.SetControllen(sendOOBLen)
		} else {
			h.SetControllen(pktinfoSpace)
		}
	}
	w.rbuf = make([]byte, batchMsgs*recvBufLen)
	w.roob = make([]byte, batchMsgs*recvOOBLen)
	for i := range w.rmsgs {
		h := &w.rmsgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&w.rname[i]))
		w.riov[i].Base = &w.rbuf[i*recvBufLen]
		w.riov[i].SetLen(recvBufLen)
		h.Iov = &w.riov[i]
		h.SetIovlen(1)
		h.Control = &w.roob[i*recvOOBLen]
	}
}

// putCmsgHeader writes a control message header for n bytes of data at the
// start of b.
func putCmsgHeader(b []byte, level, typ, n int) {
	_ = b[unix.CmsgLen(0)-1]
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = int32(level)
	h.Type = int32(typ)
	h.SetLen(unix.CmsgLen(n))
}

// now is the time since the run began, in nanoseconds.
func (w *worker) now() int64 { return int64(time.Since(w.base)) }

// run sends requests for d at rate requests per second (0: as fast as it
// can), or until ctx ends or a send fails, reading responses all along;
// then it calls sent and reads responses for up to wait more, until every
// request is answered. It runs on a thread of its own, which waits in
// ppoll with a 1 µs timer slack, so that it paces finely. When it falls
// more than four steps of paceChunk (and 64 requests) behind, because its
// thread was not scheduled, it skips the requests overdue instead of
// sending them in one burst, so the rate sent can fall short of the rate
// asked for.
func (w *worker) run(ctx context.Context, d time.Duration, rate float64, wait time.Duration, sent func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	done := ctx.Done()
	capacity := int64(len(w.smsgs))
	if w.gso {
		capacity *= int64(w.burst)
	}
	chunk, maxLag, skipped := capacity, capacity, int64(0)
	if rate > 0 {
		chunk = min(max(int64(rate*paceChunk.Seconds()), 1), capacity)
		maxLag = min(max(4*chunk, 64), capacity)
	}
	end, sending := int64(d), true
	for {
		select {
		case <-done:
			if sending {
				sent()
			}
			return
		default:
		}
		t := w.now()
		if sending && t >= end {
			sending = false
			sent()
			end = t + int64(wait)
		}
		if !sending && (t >= end || w.matched >= w.sent) {
			return
		}
		var sleep int64 = int64(10 * time.Millisecond)
		if sending {
			want := capacity
			if rate > 0 {
				due := int64(float64(t)*rate/1e9) + 1 - int64(w.sent) - skipped
				if due > maxLag {
					// Behind (this thread did not run): skip what is
					// overdue rather than send it as one burst.
					skipped += due - maxLag
					due = maxLag
				}
				if due < chunk {
					want = 0
					sleep = int64(float64(chunk-due) / rate * 1e9)
				} else {
					want = min(due, capacity)
				}
			}
			if want > 0 {
				w.fill(int(want))
				if w.err != nil || !w.sendmmsg() {
					return
				}
				sleep = 0
			}
		}
		if !w.receive(min(sleep, end-t)) {
			return
		}
	}
}

// fill writes n requests into the send buffers, burst by burst, each burst
// from the next source address, and remembers them in the ring.
func (w *worker) fill(n int) {
	t := w.now()
	m := 0
	for n > 0 && m < len(w.smsgs) {
		if w.left == 0 {
			if w.next++; w.next == len(w.sources) {
				w.next = 0
			}
			w.left = w.burst
		}
		k := 1
		if w.gso {
			k = min(w.left, n)
		}
		src := w.sources[w.next]
		copy(w.soob[m*sendOOBLen+unix.CmsgLen(0)+4:], src[:]) // in_pktinfo.ipi_spec_dst
		buf := w.sbuf[m*len(w.sbuf)/len(w.smsgs):]
		for j := range k {
			w.seq++
			if w.ptp != 0 {
				seq := uint16(w.seq)
				ptpRequest(buf[j*w.reqLen:(j+1)*w.reqLen], w.ptpTemplates[w.next], seq)
				s := &w.ring[uint64(seq)&w.mask]
				s.sent, s.cookie = t, ptpKey(src, seq)|w.ptpParts
				continue
			}
			hi := rand.Uint32() | 1 // never a zero cookie
			cookie := uint64(hi)<<32 | w.seq&0xffffffff
			b := buf[j*w.reqLen : (j+1)*w.reqLen]
			request(b, cookie)
			if w.clients != nil {
				c := w.clients[w.next]
				// In place: b has room for the NTS fields.
				if _, _, err := c.Session.AppendRequest(b[:headerLen], c.Cookie, 0); err != nil && w.err == nil {
					w.err = err
				}
			}
			s := &w.ring[cookie&w.mask]
			s.sent, s.cookie = t, cookie
		}
		w.siov[m].SetLen(k * w.reqLen)
		w.left -= k
		m++
		n -= k
	}
	w.sn = m
}

// sendmmsg sends the messages filled; false when a send failed for
// another reason than a full buffer or the kernel's lack of memory.
func (w *worker) sendmmsg() bool {
	for off := 0; off < w.sn; {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(w.fd), uintptr(unsafe.Pointer(&w.smsgs[off])), uintptr(w.sn-off), 0, 0, 0)
		switch errno {
		case 0:
			for i := off; i < off+int(n); i++ {
				w.sent += uint64(w.siov[i].Len) / uint64(w.reqLen)
			}
			off += int(n)
		case unix.EINTR:
		case unix.EAGAIN, unix.ENOBUFS:
			off++ // the socket's buffer is full: this send is lost
		default:
			w.err = fmt.Errorf("sendmmsg: %w", errno)
			if w.gso && (errno == unix.EIO || errno == unix.EINVAL) {
				w.err = fmt.Errorf("sendmmsg: %w (without UDP GSO support, use plain sends)", errno)
			}
			return false
		}
	}
	return true
}

// receive reads and counts every response waiting, waiting up to timeout
// nanoseconds for the first when there is none; false after an error.
func (w *worker) receive(timeout int64) bool {
	for {
		for i := range w.rmsgs {
			h := &w.rmsgs[i].Hdr
			h.Namelen = unix.SizeofSockaddrInet4
			h.SetControllen(recvOOBLen)
			h.Flags = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(w.fd), uintptr(unsafe.Pointer(&w.rmsgs[0])), batchMsgs, 0, 0, 0)
		switch errno {
		case 0:
			w.count(int(n), w.now())
			timeout = 0
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
		default:
			w.err = fmt.Errorf("recvmmsg: %w", errno)
			return false
		}
		if timeout <= 0 {
			return true
		}
		w.timeout = unix.NsecToTimespec(timeout)
		if _, err := unix.Ppoll(w.pfd[:], &w.timeout, nil); err != nil && err != unix.EINTR {
			w.err = fmt.Errorf("ppoll: %w", err)
			return false
		}
		timeout = 0
	}
}

// count matches the n datagrams just read, received at t.
func (w *worker) count(n int, t int64) {
	for i := range n {
		if w.ptp != 0 {
			w.countPTP(i, t)
			continue
		}
		if name := &w.rname[i]; name.Addr != w.server.Addr || name.Port != w.server.Port {
			w.unmatched++
			continue
		}
		l := min(int(w.rmsgs[i].Len), recvBufLen)
		k, origin, code := parseResponse(w.rbuf[i*recvBufLen : i*recvBufLen+l])
		if k == kindMalformed {
			w.malformed++
			continue
		}
		s := &w.ring[origin&w.mask]
		switch {
		case origin != 0 && s.cookie == origin:
			s.cookie = ^origin
			w.matched++
			w.responseBytes += uint64(l)
			if k == kindKiss {
				w.kissed++
				w.kisses[code]++
			} else {
				w.answered++
				w.hist.add(t - s.sent)
			}
		case origin != 0 && s.cookie == ^origin:
			w.duplicates++
		default:
			w.unmatched++
		}
	}
	if n > 0 {
		if d, ok := rxqOverflow(w.roob[(n-1)*recvOOBLen:], int(w.rmsgs[n-1].Hdr.Controllen)); ok {
			w.dropped = d
		}
	}
}

// countPTP matches datagram i, received at t, as one part of a PTP
// answer: by its sequence id and the address it came to (the request's
// source). It must come from the server's address, but any port: ptp4u
// answers from a socket of each of its send workers.
func (w *worker) countPTP(i int, t int64) {
	if w.rname[i].Addr != w.server.Addr {
		w.unmatched++
		return
	}
	l := min(int(w.rmsgs[i].Len), recvBufLen)
	part, seq, ok := parsePTPResponse(w.ptp, w.rbuf[i*recvBufLen:i*recvBufLen+l])
	if !ok {
		w.malformed++
		return
	}
	oob := w.roob[i*recvOOBLen:]
	data, ok := findCmsg(oob, int(w.rmsgs[i].Hdr.Controllen), unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
	if !ok {
		w.unmatched++
		return
	}
	var dst [4]byte
	copy(dst[:], data[8:12]) // in_pktinfo.ipi_addr: the header's destination
	s := &w.ring[uint64(seq)&w.mask]
	switch key := ptpKey(dst, seq); {
	case s.cookie&^partsMask != key:
		w.unmatched++
	case s.cookie&part == 0:
		w.duplicates++
	default:
		s.cookie &^= part
		w.responseBytes += uint64(l)
		if s.cookie&partsMask == 0 {
			w.matched++
			w.answered++
			w.hist.add(t - s.sent)
		}
	}
}

// rxqOverflow reads the SO_RXQ_OVFL counter (the socket's drops so far)
// from the control messages of one datagram, of which n bytes are valid.
func rxqOverflow(oob []byte, n int) (uint32, bool) {
	data, ok := findCmsg(oob, n, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 4)
	if !ok {
		return 0, false
	}
	return binary.NativeEndian.Uint32(data), true
}

// findCmsg returns the data of the first control message of the given
// level and type with at least size bytes, among the control messages of
// one datagram of which n bytes of oob are valid.
func findCmsg(oob []byte, n int, level, typ int32, size int) ([]byte, bool) {
	b := oob[:min(max(n, 0), len(oob))]
	for len(b) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(b) {
			return nil, false
		}
		if h.Level == level && h.Type == typ && l >= unix.CmsgLen(size) {
			return b[unix.CmsgLen(0):l], true
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(b) {
			return nil, false
		}
		b = b[next:]
	}
	return nil, false
}
