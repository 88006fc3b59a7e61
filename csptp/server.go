package csptp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// DefaultPort is the PTP event port requests go to.
const DefaultPort = 319

// generalPort is the PTP general port, where an SPTP Announce goes to a
// client that requests from portNumber 10 or below.
const generalPort = 320

// Quality is what a server announces about its clock.
type Quality struct {
	// Quality is the clock class, accuracy, variance, traceability and
	// time source (ptp.QualityOf derives it from the engine's status).
	ptp.Quality
	// UTCOffset is currentUtcOffset, TAI − UTC in seconds; the server
	// sends its timestamps in the PTP timescale, its UTC time plus this.
	UTCOffset int16
	// UTCOffsetValid, Leap61 and Leap59 are the timePropertiesDS flags.
	UTCOffsetValid, Leap61, Leap59 bool
	// StepsRemoved is the Announce's stepsRemoved.
	StepsRemoved uint16
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen is the address and port to answer on; the zero port means
	// DefaultPort. Tests use an ephemeral port by setting Ephemeral.
	Listen netip.AddrPort
	// Ephemeral binds an ephemeral port instead of DefaultPort when the
	// Listen port is zero.
	Ephemeral bool
	// ClockIdentity is the server's clock identity (sourcePortIdentity and
	// grandmasterIdentity).
	ClockIdentity protocol.ClockIdentity
	// Quality returns the clock's current quality; it is called for every
	// answer and must be cheap and safe for concurrent use. Nil announces
	// a free-running clock (class 248) with a UTC offset of 37 s.
	Quality func() Quality
	// RefuseAmplification answers only requests at least as long as the
	// answer (padded with a PAD TLV). Clients that do not pad, such as
	// facebook/time's sptp and ntpd-rs, then get no answer.
	RefuseAmplification bool
	// Workers is the number of sockets, each with a goroutine, that answer
	// (SO_REUSEPORT spreads the requests over them); 0 means GOMAXPROCS.
	// Without SO_REUSEPORT there is one.
	Workers int
}

// Reasons a server drops a request, the keys of ServerCounters.Dropped.
const (
	DropMalformed  = "malformed"
	DropUnexpected = "not a request"
	DropTooShort   = "shorter than its answer"
	DropSendFailed = "send failed"
)

// dropReasons indexes the drop counters.
var dropReasons = [...]string{DropMalformed, DropUnexpected, DropTooShort, DropSendFailed}

// receiveBuffer is the receive buffer each worker's socket asks for.
// Requests beyond it are dropped by the kernel, at no cost to the server.
// A server that falls behind (a flood; an SPTP answer, two sends and a
// transmit timestamp, costs about 20 µs) otherwise answers every request
// a full buffer late: with the NTP server's 4 MiB, 100 ms and more, after
// most clients stopped waiting. This holds about 700 requests: 20 ms of
// SPTP answers at their rate here, 5 ms of CSPTP ones.
const receiveBuffer = 256 << 10

// ServerCounters are a server's counters.
type ServerCounters struct {
	// Answered counts requests answered, by protocol.
	Answered map[Protocol]uint64
	// Dropped counts requests not answered, by reason.
	Dropped map[string]uint64
}

// Server answers SPTP and CSPTP requests from the disciplined clock. It
// keeps no state per client.
//
// Requests come in on Workers sockets sharing the address, each read and
// answered a batch at a time (recvmmsg, sendmmsg) by a goroutine of its
// own: a CSPTP answer is one-step and goes out in its worker's batch. An
// SPTP answer needs the transmit timestamp of its Sync for the Announce
// that follows, so it goes out at once from a sending socket of the
// server's (see NewServer).
type Server struct {
	cfg   ServerConfig
	tb    sources.Timebase
	log   *zap.Logger
	conns []*netstamp.BatchConn
	sptp  *netstamp.Conn
	self  protocol.PortIdentity

	// answered counts by Protocol (SPTP, CSPTP), dropped by dropReasons.
	answered [CSPTP + 1]atomic.Uint64
	dropped  [len(dropReasons)]atomic.Uint64
	warned   atomic.Int64 // unix nanoseconds of the last loud log of a drop
}

// batch is how many datagrams a worker reads and writes per system call.
const batch = 64

// defaultQuality is announced when no Quality func is given.
func defaultQuality() Quality {
	return Quality{Quality: ptp.Quality{
		ClockQuality: protocol.ClockQuality{ClockClass: protocol.ClockClass(248),
			ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff},
		TimeSource: protocol.TimeSourceInternalOscillator,
	}, UTCOffset: 37}
}

// NewServer binds the server's socket; Serve answers on it.
func NewServer(cfg ServerConfig, tb sources.Timebase, log *zap.Logger) (*Server, error) {
	if tb == nil {
		return nil, errors.New("csptp: server: no timebase")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Quality == nil {
		cfg.Quality = defaultQuality
	}
	switch {
	case !netstamp.ReusePort:
		cfg.Workers = 1
	case cfg.Workers <= 0:
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	laddr := cfg.Listen
	if laddr.Port() == 0 && !cfg.Ephemeral {
		laddr = netip.AddrPortFrom(laddr.Addr(), DefaultPort)
	}
	s := &Server{cfg: cfg, tb: tb, log: log,
		self: protocol.PortIdentity{ClockIdentity: cfg.ClockIdentity, PortNumber: 1}}
	for range cfg.Workers {
		c, err := netstamp.ListenBatch(laddr, batch, netstamp.BatchOptions{ReusePort: cfg.Workers > 1, ReceiveBuffer: receiveBuffer})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("csptp: server: listening on %s: %w", laddr, err)
		}
		// Every further socket shares the port the kernel picked.
		laddr = c.LocalAddr()
		s.conns = append(s.conns, c)
	}
	// SPTP answers leave from an ephemeral port of the same address (SPTP
	// clients take answers from any port of the server's address), their
	// Syncs from a transmit socket outside the Go poller: sent from a
	// listening socket, a flood of requests made the kernel drop the
	// transmit timestamps, and every answer waited for one (about 10
	// answers a second).
	network := "udp"
	if laddr.Addr().IsValid() && !laddr.Addr().IsUnspecified() {
		network = netstamp.NetworkFor(laddr.Addr())
	}
	conn, err := netstamp.Listen(network, netip.AddrPortFrom(laddr.Addr(), 0))
	if err == nil {
		err = conn.SendStampedFromOwnSocket()
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("csptp: server: SPTP sending socket on %s: %w", laddr.Addr(), err)
	}
	s.sptp = conn
	return s, nil
}

// Addr is the address the server answers on.
func (s *Server) Addr() netip.AddrPort { return s.conns[0].LocalAddr() }

// Counters returns a copy of the server's counters.
func (s *Server) Counters() ServerCounters {
	c := ServerCounters{Answered: map[Protocol]uint64{}, Dropped: map[string]uint64{}}
	for p := SPTP; p <= CSPTP; p++ {
		if n := s.answered[p].Load(); n > 0 {
			c.Answered[p] = n
		}
	}
	for i, r := range dropReasons {
		if n := s.dropped[i].Load(); n > 0 {
			c.Dropped[r] = n
		}
	}
	return c
}

// Close closes the sockets of a server that will not Serve.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.conns {
		errs = append(errs, c.Close())
	}
	if s.sptp != nil {
		errs = append(errs, s.sptp.Close())
	}
	return errors.Join(errs...)
}

// Serve answers requests until ctx is done, then closes the sockets and
// returns nil; it returns an error if a socket fails.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("CSPTP server started", zap.Stringer("listen", s.Addr()), zap.Int("workers", len(s.conns)))
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	errs := make(chan error, len(s.conns))
	for _, c := range s.conns {
		go func() { errs <- s.worker(c) }()
	}
	var first error
	for i := range s.conns {
		err := <-errs
		if i == 0 {
			_ = s.Close() // stops the other workers
		}
		if first == nil && err != nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// worker reads and answers batches of requests on c until it is closed or
// fails.
func (s *Server) worker(c *netstamp.BatchConn) error {
	in := make([]netstamp.Message, batch)
	for i := range in {
		in[i].Buf = make([]byte, maxMessage)
	}
	out := make([]netstamp.Message, 0, batch)
	outBuf := make([]byte, batch*maxAnswer)
	sptpBuf := make([]byte, 0, maxAnswer)
	for {
		n, err := c.ReadBatch(in)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("csptp: server: reading: %w", err)
		}
		out = out[:0]
		for i := range in[:n] {
			m := &in[i]
			if m.Truncated {
				s.drop(DropMalformed, m.Addr, netstamp.ErrTruncated)
				continue
			}
			rx := m.RxTime
			if rx.IsZero() {
				rx = time.Now()
			}
			k := len(out)
			buf := outBuf[k*maxAnswer : k*maxAnswer : (k+1)*maxAnswer]
			if a := s.answer(m.Buf[:m.N], m.Addr, rx, buf, sptpBuf); a != nil {
				out = append(out, netstamp.Message{Buf: a, Addr: m.Addr, Local: m.Local, IfIndex: m.IfIndex})
			}
		}
		if len(out) == 0 {
			continue
		}
		sent, failed, err := c.WriteBatch(out)
		s.answered[CSPTP].Add(uint64(sent))
		for range failed {
			s.drop(DropSendFailed, netip.AddrPort{}, err)
		}
	}
}

// answer answers the request b that came from from at system time rx.
// An SPTP answer it sends at once (in sptpBuf) and returns nil; a CSPTP
// answer it appends to buf and returns, for the worker's batch.
func (s *Server) answer(b []byte, from netip.AddrPort, rx time.Time, buf, sptpBuf []byte) []byte {
	req, err := ParseRequest(b)
	switch {
	case errors.Is(err, ErrUnexpected):
		s.drop(DropUnexpected, from, err)
		return nil
	case err != nil:
		s.drop(DropMalformed, from, err)
		return nil
	}
	if s.cfg.RefuseAmplification && req.Length < AnswerLen(req.Protocol) {
		s.drop(DropTooShort, from, nil)
		return nil
	}
	q := s.cfg.Quality()
	utc := time.Duration(q.UTCOffset) * time.Second
	t2 := protocol.NewTimestamp(s.tb.FromSystem(rx).Add(utc))
	if req.Protocol == CSPTP {
		// One-step: t3 is in the message, no timestamp to wait for.
		t3 := protocol.NewTimestamp(s.tb.Now().Add(utc))
		out, err := appendCSPTPResponse(buf, &req, s.self, t2, t3, q)
		if err != nil {
			s.drop(DropSendFailed, from, err)
			return nil
		}
		return out
	}
	out, err := appendSPTPSync(sptpBuf[:0], &req, s.self, t2)
	if err != nil {
		s.drop(DropSendFailed, from, err)
		return nil
	}
	tx, _, err := s.sptp.WriteTo(out, from)
	if err != nil {
		s.drop(DropSendFailed, from, err)
		return nil
	}
	t3 := protocol.NewTimestamp(s.tb.FromSystem(tx).Add(utc))
	to := from
	if req.Source.PortNumber <= 10 {
		to = netip.AddrPortFrom(from.Addr(), generalPort)
	}
	out, err = appendSPTPAnnounce(out[:0], &req, s.self, t3, q)
	if err == nil {
		err = s.sptp.WriteToUnstamped(out, to)
	}
	if err != nil {
		s.drop(DropSendFailed, to, err)
		return nil
	}
	s.answered[SPTP].Add(1)
	return nil
}

// drop counts a request not answered; it logs at most one warning a second
// and the rest at debug level.
func (s *Server) drop(reason string, from netip.AddrPort, err error) {
	for i, r := range dropReasons {
		if r == reason {
			s.dropped[i].Add(1)
		}
	}
	now := time.Now().UnixNano()
	last := s.warned.Load()
	if now-last > int64(time.Second) && s.warned.CompareAndSwap(last, now) {
		s.log.Warn("CSPTP request dropped", zap.String("reason", reason), zap.Stringer("from", from), zap.Error(err))
		return
	}
	s.log.Debug("CSPTP request dropped", zap.String("reason", reason), zap.Stringer("from", from), zap.Error(err))
}
