// Package ntp is timed's NTP: the packet codec, the client source for
// unicast servers and pools, and (later) the server.
package ntp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/sources"
)

// Poll limits, as log2 seconds.
const (
	MinPollLimit = -6 // 1/64 s, for LANs and tests
	MaxPollLimit = 17 // 36 h
)

// DefaultPort is the NTP port.
const DefaultPort = 123

// UnreachableAfter is the number of requests in a row without a valid
// response after which a client counts as unreachable.
const UnreachableAfter = 8

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ClientConfig configures one NTP client association.
type ClientConfig struct {
	// Address is a host name or an IP address.
	Address string
	// Port is the server's UDP port; 0 means 123.
	Port int
	// IBurst sends four requests two seconds apart at start.
	IBurst bool
	// MinPoll and MaxPoll are the poll limits (log2 s) the daemon passes to
	// the engine in SourceOptions; the client only checks them. Zero for
	// both means the defaults 6 and 10.
	MinPoll, MaxPoll int
	// Resolver resolves Address when it is a name; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// LocalAddr is the address to send from; the zero value means any.
	LocalAddr netip.Addr
}

// Client is an NTP client association with one server. It implements
// sources.Source.
type Client struct {
	cfg  ClientConfig
	name string
	tb   sources.Timebase
	log  *zap.Logger

	unreachable atomic.Bool
	demobilized atomic.Bool

	// Dropped counts received packets that were dropped, by reason.
	mu         sync.Mutex
	dropped    map[string]uint64
	dropWarned map[string]time.Time // when each kind of drop was last logged loudly
}

// NewClient checks cfg and returns a client; nothing is sent until Run.
func NewClient(cfg ClientConfig, tb sources.Timebase, log *zap.Logger) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("ntp: client: no server address")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("ntp: client %s: port %d out of range 1..65535", cfg.Address, cfg.Port)
	}
	if cfg.MinPoll == 0 && cfg.MaxPoll == 0 {
		cfg.MinPoll, cfg.MaxPoll = 6, 10
	}
	if cfg.MinPoll < MinPollLimit || cfg.MaxPoll > MaxPollLimit || cfg.MinPoll > cfg.MaxPoll {
		return nil, fmt.Errorf("ntp: client %s: poll limits %d..%d must lie within %d..%d with minpoll ≤ maxpoll",
			cfg.Address, cfg.MinPoll, cfg.MaxPoll, MinPollLimit, MaxPollLimit)
	}
	if tb == nil {
		return nil, errors.New("ntp: client: no timebase")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	name := net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port))
	return &Client{cfg: cfg, name: name, tb: tb, log: log.With(zap.String("source", name)), dropped: map[string]uint64{}, dropWarned: map[string]time.Time{}}, nil
}

// Name returns "host:port" (or "ip:port", "[ipv6]:port").
func (c *Client) Name() string { return c.name }

// Options returns the SourceOptions for the engine: kind "ntp", the address
// and the poll limits.
func (c *Client) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "ntp", Address: c.name, MinPoll: c.cfg.MinPoll, MaxPoll: c.cfg.MaxPoll}
}

// Unreachable reports whether the last UnreachableAfter requests got no
// valid response (or the name does not resolve).
func (c *Client) Unreachable() bool { return c.unreachable.Load() }

// Demobilized reports whether the server refused service (kiss-of-death
// DENY or RSTR) and Run gave up.
func (c *Client) Demobilized() bool { return c.demobilized.Load() }

// Dropped returns how many received packets were dropped, by reason.
func (c *Client) Dropped() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.dropped))
	for k, v := range c.dropped {
		out[k] = v
	}
	return out
}

// Drop reasons, the keys of Dropped.
const (
	DropWrongSource = "wrong source address"
	DropMalformed   = "malformed"
	DropNotServer   = "not a server response"
	DropNeverSent   = "reply to a request never sent"
	DropDuplicate   = "duplicate"
	DropLate        = "late reply"
	DropInvalid     = "invalid"
)

func (c *Client) drop(reason string, fields ...zap.Field) {
	now := time.Now()
	c.mu.Lock()
	c.dropped[reason]++
	total := c.dropped[reason]
	last, warned := c.dropWarned[reason]
	loud := !warned || now.Sub(last) >= dropLogInterval
	if loud {
		c.dropWarned[reason] = now
	}
	c.mu.Unlock()
	msg := "dropped packet: " + reason
	if !loud {
		c.log.Debug(msg, fields...)
		return
	}
	// The first drop of each kind, then at most one a minute, is logged
	// where an operator sees it: spoofed or broken replies are worth
	// knowing about, but must not flood the log.
	fields = append(fields, zap.Uint64("dropped_total", total))
	switch reason {
	case DropLate, DropDuplicate:
		c.log.Info(msg, fields...)
	default:
		c.log.Warn(msg, fields...)
	}
}

// dropLogInterval limits how often dropped packets of one kind are logged
// above debug level.
const dropLogInterval = time.Minute

// received is one datagram from the reader goroutine.
type received struct {
	data  []byte
	from  netip.AddrPort
	rx    time.Time // system clock
	stamp netstamp.Stamping
}

// request is a request we sent.
type request struct {
	origin   Timestamp // the random transmit timestamp we sent
	t1       time.Time // local send time (Timebase)
	stamp    netstamp.Stamping
	answered bool
	expired  bool
}

// session is the state of one Run.
type session struct {
	c      *Client
	r      sources.Reporter
	server netip.AddrPort
	conn   *netstamp.Conn
	rx     chan received
	done   chan struct{}

	cur        *request
	prev       [4]Timestamp // origins of earlier requests, for telling late from forged
	prevAns    [4]bool
	prevIdx    int
	missed     int           // requests in a row without a valid response
	rateFloor  time.Duration // interval floor after a RATE kiss
	fault      string
	burstLeft  int
	lastLookup time.Time
}

var errDemobilize = errors.New("demobilize")

// Run polls the server until ctx is done. It returns nil then, or an error
// when the server refuses service (kiss-of-death DENY or RSTR).
func (c *Client) Run(ctx context.Context, r sources.Reporter) error {
	s := &session{c: c, r: r}
	defer s.closeConn()
	if c.cfg.IBurst {
		s.burstLeft = 4
	}
	for {
		if !s.server.IsValid() || (s.missed >= UnreachableAfter && s.missed%UnreachableAfter == 0 && !isLiteral(c.cfg.Address)) {
			if err := s.resolve(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.setFault(fmt.Sprintf("cannot resolve %s: %v", c.cfg.Address, err))
				c.unreachable.Store(true)
				r.Polled() // an attempt that got nothing: reach shifts
				s.missed++
				if !sleepCtx(ctx, s.interval()) {
					return nil
				}
				continue
			}
		}
		interval := s.interval()
		if err := s.poll(ctx, interval); err != nil {
			if errors.Is(err, errDemobilize) {
				c.demobilized.Store(true)
				return fmt.Errorf("ntp: %s: %s", c.name, s.fault)
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ntp: %s: %w", c.name, err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func isLiteral(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// resolve finds the server's address and (re)opens the socket when it
// changed.
func (s *session) resolve(ctx context.Context) error {
	c := s.c
	var addr netip.Addr
	if a, err := netip.ParseAddr(c.cfg.Address); err == nil {
		addr = a.Unmap()
	} else {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := c.cfg.Resolver.LookupNetIP(lctx, "ip", c.cfg.Address)
		cancel()
		if err != nil {
			return err
		}
		if len(addrs) == 0 {
			return errors.New("no addresses")
		}
		addr = addrs[0].Unmap()
		for _, a := range addrs {
			if a.Unmap() == s.server.Addr() {
				addr = a.Unmap() // keep the current one while it is listed
			}
		}
	}
	server := netip.AddrPortFrom(addr, uint16(c.cfg.Port))
	if server == s.server && s.conn != nil {
		return nil
	}
	s.closeConn()
	var local netip.AddrPort
	if c.cfg.LocalAddr.IsValid() {
		local = netip.AddrPortFrom(c.cfg.LocalAddr, 0)
	}
	conn, err := netstamp.Listen(netstamp.NetworkFor(addr), local)
	if err != nil {
		return err
	}
	if s.server.IsValid() {
		c.log.Info("server address changed", zap.Stringer("old", s.server), zap.Stringer("new", server))
	}
	s.server, s.conn = server, conn
	s.rx = make(chan received, 16)
	s.done = make(chan struct{})
	go s.read(conn, s.rx, s.done)
	return nil
}

func (s *session) closeConn() {
	if s.conn != nil {
		s.conn.Close()
		close(s.done)
		s.conn = nil
	}
}

// read forwards datagrams until the socket is closed.
func (s *session) read(conn *netstamp.Conn, out chan<- received, done <-chan struct{}) {
	for {
		buf := make([]byte, MaxPacketLen+1)
		n, from, rx, st, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, netstamp.ErrTruncated) {
				s.c.drop(DropMalformed, zap.Stringer("from", from), zap.String("reason", "oversized datagram"))
				continue
			}
			s.c.log.Debug("read failed", zap.Error(err))
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		select {
		case out <- received{data: buf[:n], from: from, rx: rx, stamp: st}:
		case <-done:
			return
		}
	}
}

// interval is the time to the next request.
func (s *session) interval() time.Duration {
	d := s.r.PollInterval()
	if d < time.Second>>-MinPollLimit {
		d = time.Second >> -MinPollLimit
	}
	if d > time.Second<<MaxPollLimit {
		d = time.Second << MaxPollLimit
	}
	if s.rateFloor > d {
		d = s.rateFloor
	}
	if s.burstLeft > 0 && d > 2*time.Second && s.rateFloor == 0 {
		d = 2 * time.Second
	}
	return d
}

// timeout is how long a response is awaited: the interval, at most 4 s
// (a response after that has been queued or delayed so much it is useless).
func timeout(interval time.Duration) time.Duration {
	return min(interval, 4*time.Second)
}

// poll sends one request and handles packets until the next one is due.
func (s *session) poll(ctx context.Context, interval time.Duration) error {
	c := s.c
	if s.burstLeft > 0 {
		s.burstLeft--
	}
	jitter := time.Duration(mrand.Int64N(int64(interval)/16 + 1))
	sent := time.Now()
	next := sent.Add(interval + jitter)
	if err := s.send(interval); err != nil {
		c.log.Warn("sending request failed", zap.Error(err))
	}
	s.r.Polled()
	expire := time.NewTimer(timeout(interval))
	defer expire.Stop()
	wait := time.NewTimer(time.Until(next))
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-expire.C:
			s.expireCurrent()
			// The engine may want a lost request retried sooner (at
			// start, before the clock's frequency is known).
			if d := s.interval(); sent.Add(d).Before(next) {
				next = sent.Add(d)
				wait.Reset(time.Until(next))
			}
		case <-wait.C:
			s.expireCurrent()
			return nil
		case p := <-s.rx:
			if err := s.handle(p); err != nil {
				return err
			}
			if s.rateFloor > interval {
				// A RATE kiss: the next request waits for the new floor.
				interval = s.rateFloor
				next = sent.Add(interval + jitter)
				wait.Reset(time.Until(next))
			}
		}
	}
}

// send builds and sends a client request with a random transmit timestamp.
func (s *session) send(interval time.Duration) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	origin := Timestamp(binary.BigEndian.Uint64(rnd[:]))
	if origin == 0 {
		origin = 1
	}
	h := Header{Leap: sources.LeapNone, Version: 4, Mode: ModeClient, Poll: log2(interval), Transmit: origin}
	var buf [HeaderLen]byte
	pkt, _ := h.AppendBinary(buf[:0])
	s.remember()
	before := s.c.tb.Now()
	tx, st, err := s.conn.WriteTo(pkt, s.server)
	req := &request{origin: origin, t1: before, stamp: st}
	if st == netstamp.StampKernel {
		req.t1 = s.c.tb.FromSystem(tx)
	}
	s.cur = req
	return err
}

// remember moves the current request to the history of earlier ones.
func (s *session) remember() {
	if s.cur == nil {
		return
	}
	s.prev[s.prevIdx] = s.cur.origin
	s.prevAns[s.prevIdx] = s.cur.answered
	s.prevIdx = (s.prevIdx + 1) % len(s.prev)
	s.cur = nil
}

// expireCurrent ends the wait for the current request.
func (s *session) expireCurrent() {
	if s.cur == nil || s.cur.expired {
		return
	}
	s.cur.expired = true
	if s.cur.answered {
		return
	}
	s.missed++
	if s.missed == UnreachableAfter {
		// Reported once: the count goes on in the engine's reach register.
		s.c.unreachable.Store(true)
		s.setFault(fmt.Sprintf("no response to the last %d requests", s.missed))
	}
}

func log2(d time.Duration) int8 {
	if d <= 0 {
		return MinPollLimit
	}
	sec := d.Seconds()
	if sec < 1 {
		// negative powers: count halvings
		p := int8(0)
		for sec < 1 && p > MinPollLimit {
			sec *= 2
			p--
		}
		return p
	}
	return int8(bits.Len64(uint64(sec)) - 1)
}

func (s *session) setFault(reason string) {
	if reason == s.fault {
		return
	}
	s.fault = reason
	s.r.Fault(reason)
	if reason != "" {
		s.c.log.Warn("source fault", zap.String("reason", reason))
	} else {
		s.c.log.Info("source fault cleared")
	}
}

// handle checks one datagram and, when it is the answer to the current
// request, reports the measurement.
func (s *session) handle(p received) error {
	c := s.c
	if p.from != s.server {
		c.drop(DropWrongSource, zap.Stringer("from", p.from))
		return nil
	}
	pkt, err := ParsePacket(p.data)
	if err != nil {
		c.drop(DropMalformed, zap.Error(err))
		return nil
	}
	if pkt.Mode != ModeServer {
		c.drop(DropNotServer, zap.Uint8("mode", uint8(pkt.Mode)))
		return nil
	}
	req := s.cur
	if req == nil || pkt.Origin != req.origin {
		for i, o := range s.prev {
			if o == pkt.Origin && o != 0 {
				if s.prevAns[i] {
					c.drop(DropDuplicate, zap.Stringer("origin", pkt.Origin))
				} else {
					c.drop(DropLate, zap.Stringer("origin", pkt.Origin))
				}
				return nil
			}
		}
		c.drop(DropNeverSent, zap.Stringer("origin", pkt.Origin))
		return nil
	}
	if req.answered {
		c.drop(DropDuplicate, zap.Stringer("origin", pkt.Origin))
		return nil
	}
	if req.expired {
		c.drop(DropLate, zap.Stringer("origin", pkt.Origin))
		return nil
	}
	// From here on the packet answers our request: the origin check passed.
	req.answered = true
	if err := pkt.CheckResponse(); err != nil {
		var kiss *KissError
		switch {
		case errors.As(err, &kiss):
			return s.kiss(kiss.Code)
		case errors.Is(err, ErrUnsynced):
			s.missed = 0
			s.setFault(err.Error()[len("ntp: "):])
			s.c.unreachable.Store(false)
		default:
			c.drop(DropInvalid, zap.Error(err))
		}
		return nil
	}
	t4 := c.tb.FromSystem(p.rx)
	t1 := req.t1
	t2 := pkt.Receive.Time(t1)
	t3 := pkt.Transmit.Time(t1)
	if pkt.Receive.IsZero() || t3.Before(t2) {
		c.drop(DropInvalid, zap.String("reason", "server receive time missing or after its transmit time"))
		return nil
	}
	prec := PrecisionDuration(pkt.Precision) + localPrecision()
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	delay := t4.Sub(t1) - t3.Sub(t2)
	if delay < 0 {
		delay = prec
	}
	stamp := sources.StampUser
	if req.stamp == netstamp.StampKernel && p.stamp == netstamp.StampKernel {
		stamp = sources.StampKernel
	}
	m := sources.Measurement{
		Local:          t1.Add(t4.Sub(t1) / 2),
		Offset:         offset,
		Delay:          delay,
		RootDelay:      pkt.RootDelay.Duration(),
		RootDispersion: pkt.RootDispersion.Duration(),
		Precision:      prec,
		Stratum:        pkt.Stratum,
		Leap:           pkt.Leap,
		RefID:          pkt.RefID,
		Stamping:       stamp,
	}
	s.missed = 0
	s.rateFloor = 0
	c.unreachable.Store(false)
	s.setFault("")
	c.log.Debug("measurement", zap.Duration("offset", offset), zap.Duration("delay", delay),
		zap.Uint8("stratum", pkt.Stratum), zap.Stringer("stamping", stamp))
	s.r.Measured(m)
	return nil
}

// kiss acts on a kiss-of-death whose origin matched our request.
func (s *session) kiss(code string) error {
	switch code {
	case "RATE":
		d := 2 * max(s.interval(), s.rateFloor)
		s.rateFloor = min(d, time.Second<<MaxPollLimit)
		s.burstLeft = 0
		s.c.log.Warn("server asks us to poll less often (kiss-of-death RATE)", zap.Duration("interval", s.rateFloor))
		return nil
	case "DENY", "RSTR":
		s.setFault(fmt.Sprintf("server sent kiss-of-death %s: it refuses to serve us", code))
		return errDemobilize
	default:
		s.setFault(fmt.Sprintf("server sent kiss-of-death %q", code))
		return nil
	}
}

var (
	precOnce sync.Once
	precVal  time.Duration
)

// localPrecision is the resolution of our timestamps: the smallest step
// seen between consecutive clock readings (at least 1 ns).
func localPrecision() time.Duration {
	precOnce.Do(func() {
		best := time.Duration(1<<63 - 1)
		for range 100 {
			a := time.Now()
			b := time.Now()
			for b.Equal(a) {
				b = time.Now()
			}
			if d := b.Sub(a); d < best {
				best = d
			}
		}
		precVal = max(best, time.Nanosecond)
	})
	return precVal
}
