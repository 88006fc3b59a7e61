// Package server is timed's NTP server. It answers client requests from the
// clock timed disciplines, on every core (SO_REUSEPORT sockets, each with
// its own goroutine and batched I/O), with kernel receive timestamps,
// interleaved mode (RFC 9769), access control, and per-client and
// per-network rate limits kept in a fixed-size table (ntp/clientlog), and
// NTS (RFC 8915) with the key ring of package nts.
package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/ntp/clientlog"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/sources"
)

// Config configures a Server.
type Config struct {
	// Listen lists the addresses and ports to serve on.
	Listen []netip.AddrPort
	// Workers is the number of sockets per address; 0 means GOMAXPROCS.
	Workers int
	// Interleaved answers interleaved requests.
	Interleaved bool
	// Allow lists the networks served (empty: all); Deny, checked first,
	// the networks refused. DenyKiss answers denied requests with a DENY
	// kiss instead of nothing.
	Allow, Deny []netip.Prefix
	DenyKiss    bool
	// Clients sizes the client table and sets the rate limits.
	Clients clientlog.Config
	// LocalStratum, 1 to 15, is served while no source is selected; 0
	// serves "unsynchronized" then.
	LocalStratum int
	// NTS, when set, authenticates NTS requests (RFC 8915) with the cookie
	// keys of this ring and answers them with new cookies; nil answers
	// every request as plain NTP.
	NTS *nts.KeyRing
}

// Server is a running NTP server.
type Server struct {
	cfg   Config // as at New: Listen and Workers never change
	set   atomic.Pointer[settings]
	tb    sources.Timebase
	log   *zap.Logger
	prec  int8
	wire  atomic.Pointer[wire]
	state atomic.Pointer[State]
	start time.Time // for monotonic readings

	conns   []*netstamp.BatchConn
	workers []*worker
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// batch is how many datagrams a worker reads and writes per system call.
const batch = 64

// maxRequest is the longest request read whole; longer ones are dropped as
// oversized (NTS requests with their extension fields are well below it).
const maxRequest = 1200

// New checks cfg and binds the sockets (so that privileges needed for port
// 123 can be dropped afterwards); nothing is served until Start.
func New(cfg Config, tb sources.Timebase, log *zap.Logger) (*Server, error) {
	if len(cfg.Listen) == 0 {
		return nil, errors.New("ntp: server: no listen address")
	}
	if tb == nil {
		return nil, errors.New("ntp: server: no timebase")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.LocalStratum < 0 || cfg.LocalStratum > 15 {
		return nil, fmt.Errorf("ntp: server: local stratum %d out of range 0..15", cfg.LocalStratum)
	}
	cfg.Workers = workers(cfg.Workers)
	cl, err := clientlog.New(cfg.Clients)
	if err != nil {
		return nil, fmt.Errorf("ntp: server: %w", err)
	}
	s := &Server{cfg: cfg, tb: tb, log: log, prec: ntp.Precision(), start: time.Now()}
	s.set.Store(&settings{Config: cfg, clients: cl})
	s.SetState(State{})
	for _, ap := range cfg.Listen {
		for range cfg.Workers {
			w := &worker{s: s}
			c, err := netstamp.ListenBatch(ap, batch, netstamp.BatchOptions{ReusePort: true, TxStamp: w.txStamp})
			if err != nil {
				s.closeConns()
				return nil, fmt.Errorf("ntp: server: %w", err)
			}
			if ap.Port() == 0 {
				// Every further socket must share the port the kernel
				// picked.
				ap = c.LocalAddr()
			}
			w.conn = c
			s.conns = append(s.conns, c)
			s.workers = append(s.workers, w)
		}
	}
	return s, nil
}

// Addrs returns the addresses the server's sockets are bound to, one per
// listen address.
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for i, c := range s.conns {
		if i%s.cfg.Workers == 0 {
			out = append(out, c.LocalAddr())
		}
	}
	return out
}

// Start starts the workers.
func (s *Server) Start() {
	for _, w := range s.workers {
		w.init()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			w.run()
		}()
	}
	s.log.Info("NTP server started", zap.Stringers("listen", s.Addrs()), zap.Int("workers_per_address", s.cfg.Workers))
}

// Close stops serving and waits for the workers.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closeConns()
	s.wg.Wait()
	return nil
}

func (s *Server) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// monotonic is the time since the server started, in nanoseconds.
func (s *Server) monotonic() int64 { return int64(time.Since(s.start)) }

// workers is the number of sockets per address for a configured number: 0
// means one per CPU; without SO_REUSEPORT there is only one.
func workers(n int) int {
	switch {
	case !netstamp.ReusePort:
		return 1
	case n <= 0:
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// settings are what Update may change while the sockets stay.
type settings struct {
	Config
	clients *clientlog.Log
}

// Update applies cfg to the running server. The sockets stay (so that a
// privileged port needs no privilege again): Listen and Workers must not
// change. The client table starts afresh only when its size or limits
// change.
func (s *Server) Update(cfg Config) error {
	cfg.Workers = workers(cfg.Workers)
	if !slices.Equal(cfg.Listen, s.cfg.Listen) || cfg.Workers != s.cfg.Workers {
		return errors.New("ntp: server: new listen addresses or workers need new sockets")
	}
	if cfg.LocalStratum < 0 || cfg.LocalStratum > 15 {
		return fmt.Errorf("ntp: server: local stratum %d out of range 0..15", cfg.LocalStratum)
	}
	old := s.set.Load()
	cl := old.clients
	if cfg.Clients != old.Clients {
		var err error
		if cl, err = clientlog.New(cfg.Clients); err != nil {
			return fmt.Errorf("ntp: server: %w", err)
		}
	}
	s.set.Store(&settings{Config: cfg, clients: cl})
	s.refresh(s.tb.Now())
	return nil
}

// permitted applies the access lists.
func (set *settings) permitted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range set.Deny {
		if p.Contains(a) {
			return false
		}
	}
	if len(set.Allow) == 0 {
		return true
	}
	for _, p := range set.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isClosed tells a worker's read error from a stop.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
