package csptp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"sync"
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
	// Workers is the number of goroutines that answer; 0 means GOMAXPROCS.
	Workers int
}

// Reasons a server drops a request, the keys of ServerCounters.Dropped.
const (
	DropMalformed  = "malformed"
	DropUnexpected = "not a request"
	DropTooShort   = "shorter than its answer"
	DropNoStamp    = "no receive timestamp"
	DropSendFailed = "send failed"
)

// ServerCounters are a server's counters.
type ServerCounters struct {
	// Answered counts requests answered, by protocol.
	Answered map[Protocol]uint64
	// Dropped counts requests not answered, by reason.
	Dropped map[string]uint64
}

// Server answers SPTP and CSPTP requests from the disciplined clock. It
// keeps no state per client.
type Server struct {
	cfg  ServerConfig
	tb   sources.Timebase
	log  *zap.Logger
	conn *netstamp.Conn
	self protocol.PortIdentity

	mu       sync.Mutex
	answered map[Protocol]uint64
	dropped  map[string]uint64
	warned   atomic.Int64 // unix nanoseconds of the last loud log of a drop
}

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
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	laddr := cfg.Listen
	if laddr.Port() == 0 && !cfg.Ephemeral {
		laddr = netip.AddrPortFrom(laddr.Addr(), DefaultPort)
	}
	network := "udp"
	if laddr.Addr().IsValid() {
		network = netstamp.NetworkFor(laddr.Addr())
	}
	conn, err := netstamp.Listen(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("csptp: server: listening on %s: %w", laddr, err)
	}
	// An SPTP Sync needs its transmit timestamp. Sent from the listening
	// socket, a flood of requests made the kernel drop those timestamps
	// and every answer wait for one (about 10 answers a second); SPTP and
	// CSPTP clients take answers from any port of the server's address.
	if err := conn.SendStampedFromOwnSocket(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("csptp: server: %w", err)
	}
	return &Server{cfg: cfg, tb: tb, log: log, conn: conn,
		self:     protocol.PortIdentity{ClockIdentity: cfg.ClockIdentity, PortNumber: 1},
		answered: map[Protocol]uint64{}, dropped: map[string]uint64{}}, nil
}

// Addr is the address the server answers on.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr() }

// Counters returns a copy of the server's counters.
func (s *Server) Counters() ServerCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ServerCounters{Answered: maps.Clone(s.answered), Dropped: maps.Clone(s.dropped)}
}

// Close closes the socket of a server that will not Serve.
func (s *Server) Close() error { return s.conn.Close() }

// Serve answers requests until ctx is done, then closes the socket and
// returns nil; it returns an error if the socket fails.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("CSPTP server started", zap.Stringer("listen", s.Addr()), zap.Int("workers", s.cfg.Workers))
	errs := make(chan error, s.cfg.Workers)
	for range s.cfg.Workers {
		go func() { errs <- s.worker(ctx) }()
	}
	var first error
	for i := range s.cfg.Workers {
		err := <-errs
		if i == 0 {
			_ = s.conn.Close() // stops the other workers
		}
		if first == nil && err != nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// worker reads and answers requests until ctx is done or the socket fails.
func (s *Server) worker(ctx context.Context) error {
	buf := make([]byte, maxMessage+1)
	out := make([]byte, 0, maxMessage)
	for {
		n, from, rx, st, err := s.conn.ReadFromContext(ctx, buf)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, netstamp.ErrTruncated) {
			s.drop(DropMalformed, from, err)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("csptp: server: reading: %w", err)
		}
		if rx.IsZero() {
			s.drop(DropNoStamp, from, nil)
			continue
		}
		_ = st
		s.answer(buf[:n], from, rx, out)
	}
}

// answer answers the request b that came from from at system time rx.
func (s *Server) answer(b []byte, from netip.AddrPort, rx time.Time, out []byte) {
	req, err := ParseRequest(b)
	switch {
	case errors.Is(err, ErrUnexpected):
		s.drop(DropUnexpected, from, err)
		return
	case err != nil:
		s.drop(DropMalformed, from, err)
		return
	}
	if s.cfg.RefuseAmplification && req.Length < AnswerLen(req.Protocol) {
		s.drop(DropTooShort, from, nil)
		return
	}
	q := s.cfg.Quality()
	utc := time.Duration(q.UTCOffset) * time.Second
	t2 := protocol.NewTimestamp(s.tb.FromSystem(rx).Add(utc))
	switch req.Protocol {
	case SPTP:
		out, err = appendSPTPSync(out[:0], &req, s.self, t2)
		if err != nil {
			s.drop(DropSendFailed, from, err)
			return
		}
		tx, _, err := s.conn.WriteTo(out, from)
		if err != nil {
			s.drop(DropSendFailed, from, err)
			return
		}
		t3 := protocol.NewTimestamp(s.tb.FromSystem(tx).Add(utc))
		to := from
		if req.Source.PortNumber <= 10 {
			to = netip.AddrPortFrom(from.Addr(), generalPort)
		}
		out, err = appendSPTPAnnounce(out[:0], &req, s.self, t3, q)
		if err == nil {
			err = s.conn.WriteToUnstamped(out, to)
		}
		if err != nil {
			s.drop(DropSendFailed, to, err)
			return
		}
	case CSPTP:
		t3 := protocol.NewTimestamp(s.tb.Now().Add(utc))
		out, err = appendCSPTPResponse(out[:0], &req, s.self, t2, t3, q)
		if err == nil {
			// One-step: t3 is in the message, no timestamp to wait for.
			err = s.conn.WriteToUnstamped(out, from)
		}
		if err != nil {
			s.drop(DropSendFailed, from, err)
			return
		}
	}
	s.mu.Lock()
	s.answered[req.Protocol]++
	s.mu.Unlock()
}

// drop counts a request not answered; it logs at most one warning a second
// and the rest at debug level.
func (s *Server) drop(reason string, from netip.AddrPort, err error) {
	s.mu.Lock()
	s.dropped[reason]++
	s.mu.Unlock()
	now := time.Now().UnixNano()
	last := s.warned.Load()
	if now-last > int64(time.Second) && s.warned.CompareAndSwap(last, now) {
		s.log.Warn("CSPTP request dropped", zap.String("reason", reason), zap.Stringer("from", from), zap.Error(err))
		return
	}
	s.log.Debug("CSPTP request dropped", zap.String("reason", reason), zap.Stringer("from", from), zap.Error(err))
}
