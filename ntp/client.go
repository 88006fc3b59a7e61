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
	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/nts"
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
	// XLeave asks the server for interleaved mode (RFC 9769): its
	// responses then carry the true transmit time of its previous
	// response, read after that response left. A server that does not
	// support it answers in basic mode, which is used as always.
	XLeave bool
	// NTS, when set, protects the association with Network Time Security
	// (RFC 8915): Run first makes a key exchange, then polls the NTP
	// server and port it names, and uses only authenticated responses.
	// Interleaved mode is not used with NTS (XLeave is ignored).
	NTS *NTSConfig
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
	remote      atomic.Pointer[netip.AddrPort] // the server's address once resolved

	// Dropped counts received packets that were dropped, by reason.
	mu         sync.Mutex
	dropped    map[string]uint64
	dropWarned map[string]time.Time // when each kind of drop was last logged loudly
	modes      ModeCounts

	keCount     atomic.Uint64 // NTS key exchanges made
	cookiesLeft atomic.Int32  // NTS cookies held
	ke          keStatus      // the last key exchange; guarded by mu

	burst chan struct{} // Burst's request to the running session
}

// ModeCounts counts the measurements a client reported, by the mode of the
// exchange they came from.
type ModeCounts struct {
	// Basic counts measurements whose server transmit time was written
	// into the response before it was sent (RFC 5905's basic mode);
	// Interleaved those that used the server's true transmit time from its
	// next, interleaved response (RFC 9769).
	Basic, Interleaved uint64
	// LastInterleaved says whether the most recent measurement was
	// interleaved.
	LastInterleaved bool
}

// Modes returns how many measurements were made in basic and in
// interleaved mode, and the mode of the last one.
func (c *Client) Modes() ModeCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.modes
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
	if cfg.NTS != nil {
		n := *cfg.NTS
		if n.Port < 0 || n.Port > 65535 {
			return nil, fmt.Errorf("ntp: client %s: NTS-KE port %d out of range 1..65535", cfg.Address, n.Port)
		}
		cfg.NTS = &n
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	name := net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port))
	if cfg.NTS != nil && cfg.XLeave {
		log.Info("xleave is not used with NTS yet: basic mode", zap.String("source", name))
		cfg.XLeave = false
	}
	return &Client{cfg: cfg, name: name, tb: tb, log: log.With(zap.String("source", name)), dropped: map[string]uint64{}, dropWarned: map[string]time.Time{},
		burst: make(chan struct{}, 1)}, nil
}

// Name returns "host:port" (or "ip:port", "[ipv6]:port").
func (c *Client) Name() string { return c.name }

// Options returns the SourceOptions for the engine: kind "ntp", the address
// and the poll limits.
func (c *Client) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "ntp", Address: c.name, MinPoll: c.cfg.MinPoll, MaxPoll: c.cfg.MaxPoll}
}

// RemoteAddr is the server's address and port as last resolved (the zero
// AddrPort before the first resolution).
func (c *Client) RemoteAddr() netip.AddrPort {
	if ap := c.remote.Load(); ap != nil {
		return *ap
	}
	return netip.AddrPort{}
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
	origin Timestamp // the random transmit timestamp we sent
	// xorigin is the random receive timestamp of an interleaved request
	// (zero in basic mode): an interleaved response echoes it as its
	// origin. ref is the exchange that request continues.
	xorigin  Timestamp
	ref      *exchange
	ntsID    nts.UniqueID // the NTS unique identifier the response must echo
	t1       time.Time    // local send time (Timebase)
	stamp    netstamp.Stamping
	answered bool
	expired  bool
}

// exchange is a request and its valid response, kept so that the next
// request can continue it in interleaved mode: the server's next response
// then brings the true transmit time of this exchange's response, and the
// four timestamps of this exchange make one measurement.
type exchange struct {
	t1, t2, t4 time.Time // our send, the server's receive, our receive
	serverRx   Timestamp // t2 as the server wrote it, echoed as our origin
	stamp      sources.Stamping
	// held is the exchange's basic measurement, kept back while an
	// interleaved one (with the true transmit time) may replace it;
	// reported says a measurement of this exchange was reported.
	held     *sources.Measurement
	reported bool
	// mono and tb are a reading of the monotonic clock and the timebase
	// at the same instant, for noticing a step of the timebase before the
	// exchange is continued.
	mono, tb time.Time
}

// xleaveGiveUp is how many interleaved requests in a row answered in basic
// mode show that a server does not interleave.
const xleaveGiveUp = 4

// Server support of interleaved mode, as its responses showed it.
const (
	xleaveUnknown = iota
	xleaveYes
	xleaveNo
)

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
	prevX      [4]Timestamp // and their interleaved origins
	prevAns    [4]bool
	prevIdx    int
	last       *exchange     // the current request's exchange once validly answered (XLeave only)
	xleave     int           // xleaveUnknown, xleaveYes, xleaveNo
	xleaveMiss int           // interleaved requests in a row answered in basic mode
	xleaveLog  time.Time     // when a change of xleave was last logged at info level
	missed     int           // requests in a row without a valid response
	rateFloor  time.Duration // interval floor after a RATE kiss
	fault      string
	burstLeft  int
	lastLookup time.Time

	nts       *ntsState     // the keys and cookies of the last NTS key exchange
	keRetry   time.Duration // wait before the next key exchange after failures
	reresolve bool          // a key exchange named the NTP server anew
}

var errDemobilize = errors.New("demobilize")

// burstRequests is how many requests a burst (iburst, Burst) sends, two
// seconds apart or at the poll interval when that is shorter.
const burstRequests = 4

// Burst makes the running client send a quick burst of requests now (as
// chronyc burst): the first at once, or as soon as the request in flight is
// answered or times out. A burst asked for while one is pending is one
// burst; a client not running (waiting for a key exchange or a retry) takes
// it when it polls next.
func (c *Client) Burst() {
	select {
	case c.burst <- struct{}{}:
	default:
	}
}

// Run polls the server until ctx is done. It returns nil then, or an error
// when the server refuses service (kiss-of-death DENY or RSTR).
func (c *Client) Run(ctx context.Context, r sources.Reporter) error {
	s := &session{c: c, r: r}
	defer s.closeConn()
	if c.cfg.IBurst {
		s.burstLeft = burstRequests
	}
	for {
		if s.needKE() {
			if !s.keyExchange(ctx) {
				return nil
			}
		}
		if !s.server.IsValid() || s.reresolve || (s.missed >= UnreachableAfter && s.missed%UnreachableAfter == 0 && !isLiteral(s.host())) {
			if err := s.resolve(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Unreachable before the fault is reported: whoever sees
				// the fault sees the source unreachable.
				c.unreachable.Store(true)
				s.setFault(fmt.Sprintf("cannot resolve %s: %v", s.host(), err))
				r.Polled() // an attempt that got nothing: reach shifts
				s.missed++
				if !wait.For(ctx, s.interval()) {
					return nil
				}
				continue
			}
		}
		interval := s.interval()
		if err := s.poll(ctx, interval); err != nil {
			if errors.Is(err, errNewKE) {
				continue
			}
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

// host and port are the NTP server's: the configured ones, or those the
// NTS key exchange named.
func (s *session) host() string {
	if s.nts != nil {
		return s.nts.host
	}
	return s.c.cfg.Address
}

func (s *session) port() int {
	if s.nts != nil {
		return s.nts.port
	}
	return s.c.cfg.Port
}

// resolve finds the server's address and (re)opens the socket when it
// changed.
func (s *session) resolve(ctx context.Context) error {
	c := s.c
	s.reresolve = false
	var addr netip.Addr
	if a, err := netip.ParseAddr(s.host()); err == nil {
		addr = a.Unmap()
	} else {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := c.cfg.Resolver.LookupNetIP(lctx, "ip", s.host())
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
	server := netip.AddrPortFrom(addr, uint16(s.port()))
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
	c.remote.Store(&server)
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
		case <-c.burst:
			// A burst starts with a request now, or as soon as the
			// current one is answered or given up on.
			s.burstLeft = burstRequests
			at := time.Now()
			if s.cur != nil && !s.cur.answered && !s.cur.expired {
				at = sent.Add(timeout(interval))
			}
			next = at
			wait.Reset(time.Until(next))
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
// When the previous request got a valid response and XLeave is set, the
// request is interleaved (RFC 9769): its origin is that response's receive
// timestamp, and its receive field carries a second random cookie, which an
// interleaved response echoes as its origin.
//
// Protection against off-path spoofing: a response is accepted only from
// the server's address and port, and only when its origin equals one of the
// two cookies of the current request. Both are 63 random bits that appear
// nowhere but in that one request, so a forger who does not see the request
// has one chance in 2^63 per packet, in interleaved mode as in basic mode.
// RFC 9769 has the client put its receive time of the previous response into
// the receive field; the server only copies that field, and a clock reading
// can be guessed to within a few microseconds, so timed sends a cookie
// instead. The origin of an interleaved request (the server's receive
// timestamp) is not secret and is not relied on: the server uses it to find
// the transmit time it returns, and the client checks that this time lies
// between the server's receive times of the two requests. An on-path
// attacker can forge responses in either mode; only NTS prevents that.
func (s *session) send(interval time.Duration) error {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("ntp: client: random cookie: %w", err)
	}
	origin := Timestamp(binary.BigEndian.Uint64(rnd[:8])) | 1
	h := Header{Leap: sources.LeapNone, Version: 4, Mode: ModeClient, Poll: log2(interval), Transmit: origin}
	s.remember()
	ref := s.continued()
	var xorigin Timestamp
	if ref != nil {
		// Never zero, never equal to the transmit cookie.
		xorigin = Timestamp(binary.BigEndian.Uint64(rnd[8:])) &^ 1
		if xorigin == 0 {
			xorigin = 2
		}
		h.Origin, h.Receive = ref.serverRx, xorigin
	}
	size := HeaderLen
	if s.nts != nil {
		size = MaxPacketLen
	}
	pkt, _ := h.AppendBinary(make([]byte, 0, size))
	var ntsID nts.UniqueID
	if s.nts != nil {
		var err error
		if pkt, ntsID, err = s.appendNTS(pkt); err != nil {
			return err
		}
		s.c.cookiesLeft.Store(int32(len(s.nts.cookies)))
	}
	before := s.c.tb.Now()
	tx, st, err := s.conn.WriteTo(pkt, s.server)
	req := &request{origin: origin, xorigin: xorigin, ref: ref, ntsID: ntsID, t1: before, stamp: st}
	if st == netstamp.StampKernel {
		req.t1 = s.c.tb.FromSystem(tx)
	}
	s.cur = req
	return err
}

// continued returns the exchange the next request continues in
// interleaved mode, or nil for a basic request: after a lost or invalid
// response, or a step of the clock, there is none, so that no measurement
// mixes timestamps of two exchanges that did not follow each other.
func (s *session) continued() *exchange {
	ex := s.last
	s.last = nil
	if ex == nil {
		return nil
	}
	mono := time.Since(ex.mono)
	if d := s.c.tb.Now().Round(0).Sub(ex.tb) - mono; d.Abs() > stepTolerance+mono/1000 {
		// The timebase moved against the monotonic clock by more than any
		// frequency error explains: it was stepped, and this exchange's
		// timestamps are in the old timescale.
		s.c.log.Debug("clock stepped since the last exchange: basic request", zap.Duration("step", d))
		s.settle(ex)
		return nil
	}
	return ex
}

// stepTolerance (plus 1000 ppm of the time since the exchange) is how far
// the timebase may move against the monotonic clock before continued takes
// it for a step.
const stepTolerance = 100 * time.Microsecond

// remember moves the current request to the history of earlier ones.
func (s *session) remember() {
	if s.cur == nil {
		return
	}
	s.settle(s.cur.ref)
	s.prev[s.prevIdx] = s.cur.origin
	s.prevX[s.prevIdx] = s.cur.xorigin
	s.prevAns[s.prevIdx] = s.cur.answered
	s.prevIdx = (s.prevIdx + 1) % len(s.prev)
	s.cur = nil
}

// settle reports the measurement held back for ex, if any: no interleaved
// measurement of that exchange will come.
func (s *session) settle(ex *exchange) {
	if ex == nil || ex.held == nil {
		return
	}
	m := *ex.held
	ex.held = nil
	ex.reported = true
	s.report(m, false)
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
	s.settle(s.cur.ref)
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
	var interleaved bool
	switch {
	case req != nil && pkt.Origin == req.origin:
	case req != nil && req.xorigin != 0 && pkt.Origin == req.xorigin:
		interleaved = true
	default:
		for i, o := range s.prev {
			if pkt.Origin != 0 && (o == pkt.Origin || s.prevX[i] == pkt.Origin) {
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
	if s.nts != nil {
		// An NTS response must authenticate before it counts as the
		// answer: a forged one must not stop the true one.
		ok, err := s.verifyNTS(req, p.data)
		if err != nil {
			req.answered = true
			return err
		}
		if !ok {
			return nil
		}
		c.cookiesLeft.Store(int32(len(s.nts.cookies)))
	}
	// From here on the packet answers our request: the origin check passed.
	req.answered = true
	if err := pkt.CheckResponse(); err != nil {
		s.settle(req.ref)
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
	ex := &exchange{t1: req.t1, t2: pkt.Receive.Time(req.t1), t4: t4, serverRx: pkt.Receive, stamp: stamping(req.stamp, p.stamp)}
	ex.mono, ex.tb = time.Now(), c.tb.Now().Round(0)
	if pkt.Receive.IsZero() {
		s.settle(req.ref)
		c.drop(DropInvalid, zap.String("reason", "server receive time missing"))
		return nil
	}
	if interleaved {
		s.interleaved(req.ref, ex, &pkt)
	} else {
		s.basic(req, ex, &pkt)
	}
	return nil
}

// stamping says where the local timestamps of an exchange came from.
func stamping(tx, rx netstamp.Stamping) sources.Stamping {
	if tx == netstamp.StampKernel && rx == netstamp.StampKernel {
		return sources.StampKernel
	}
	return sources.StampUser
}

// basic handles a basic response (its origin is our transmit cookie): its
// own four timestamps make the measurement of exchange ex.
func (s *session) basic(req *request, ex *exchange, pkt *Packet) {
	t3 := pkt.Transmit.Time(ex.t1)
	if t3.Before(ex.t2) {
		s.settle(req.ref)
		s.c.drop(DropInvalid, zap.String("reason", "server receive time after its transmit time"))
		return
	}
	if req.ref != nil {
		// A server may answer the first interleaved request of a client,
		// or one after losing its state, in basic mode (chronyd and timed
		// do), and a request after a step of our clock is basic, so the
		// server's next answer is too: only xleaveGiveUp in a row show
		// that it does not interleave.
		if s.xleaveMiss++; s.xleaveMiss >= xleaveGiveUp {
			s.setXleave(xleaveNo, "the server answers interleaved requests in basic mode")
		}
	}
	s.settle(req.ref)
	s.answered()
	m := s.measure(pkt, ex.t1, ex.t2, t3, ex.t4, ex.stamp)
	if !s.c.cfg.XLeave {
		s.report(m, false)
		return
	}
	if s.xleave == xleaveNo {
		s.report(m, false)
		ex.reported = true
	} else {
		// The server may answer the next request in interleaved mode with
		// the true transmit time of this response: until then the
		// measurement waits.
		ex.held = &m
	}
	s.last = ex
}

// interleaved handles an interleaved response (its origin is our receive
// cookie): its transmit timestamp is the true send time of the response to
// the previous request, which completes the timestamps of exchange ref. Its
// receive timestamp starts the current exchange, ex.
func (s *session) interleaved(ref, ex *exchange, pkt *Packet) {
	t3 := pkt.Transmit.Time(ref.t1)
	if t3.Before(ref.t2) || ex.t2.Before(t3) {
		s.settle(ref)
		s.c.drop(DropInvalid, zap.String("reason", "interleaved transmit time not between the server's receive times"),
			zap.Time("transmit", t3), zap.Time("previous_receive", ref.t2), zap.Time("receive", ex.t2))
		return
	}
	s.xleaveMiss = 0
	s.setXleave(xleaveYes, "the server answers in interleaved mode")
	s.answered()
	s.last = ex
	if ref.reported {
		// Its basic measurement went out already (before the server was
		// seen to interleave): one exchange is measured once.
		return
	}
	ref.held, ref.reported = nil, true
	s.report(s.measure(pkt, ref.t1, ref.t2, t3, ref.t4, ref.stamp), true)
}

// answered notes a valid response: the server is reachable and serving.
func (s *session) answered() {
	s.missed = 0
	s.rateFloor = 0
	s.c.unreachable.Store(false)
	s.setFault("")
}

// setXleave records what the server's responses show about interleaved
// mode, and logs a change (at info level at most once a minute).
func (s *session) setXleave(state int, msg string) {
	if s.xleave == state {
		return
	}
	s.xleave = state
	if now := time.Now(); now.Sub(s.xleaveLog) >= dropLogInterval {
		s.xleaveLog = now
		s.c.log.Info(msg)
		return
	}
	s.c.log.Debug(msg)
}

// measure makes the measurement of the four timestamps of one exchange;
// the other fields come from pkt, the newest response.
func (s *session) measure(pkt *Packet, t1, t2, t3, t4 time.Time, stamp sources.Stamping) sources.Measurement {
	prec := PrecisionDuration(pkt.Precision) + localPrecision()
	delay := t4.Sub(t1) - t3.Sub(t2)
	if delay < 0 {
		delay = prec
	}
	return sources.Measurement{
		Local:          t1.Add(t4.Sub(t1) / 2),
		Offset:         (t2.Sub(t1) + t3.Sub(t4)) / 2,
		Delay:          delay,
		RootDelay:      pkt.RootDelay.Duration(),
		RootDispersion: pkt.RootDispersion.Duration(),
		Precision:      prec,
		Stratum:        pkt.Stratum,
		Leap:           pkt.Leap,
		RefID:          pkt.RefID,
		Stamping:       stamp,
		Authenticated:  s.nts != nil,
	}
}

// report hands a measurement to the engine and counts its mode.
func (s *session) report(m sources.Measurement, interleaved bool) {
	c := s.c
	c.mu.Lock()
	if interleaved {
		c.modes.Interleaved++
	} else {
		c.modes.Basic++
	}
	c.modes.LastInterleaved = interleaved
	c.mu.Unlock()
	c.log.Debug("measurement", zap.Duration("offset", m.Offset), zap.Duration("delay", m.Delay),
		zap.Uint8("stratum", m.Stratum), zap.Stringer("stamping", m.Stamping), zap.Bool("interleaved", interleaved))
	s.r.Measured(m)
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
