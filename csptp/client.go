package csptp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/sources"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Server is the server's address; its zero port means DefaultPort.
	Server netip.AddrPort
	// Protocol is the wire form to speak; zero means SPTP.
	Protocol Protocol
	// LocalAddr is the address to send from; the zero value means any
	// address and an ephemeral port.
	LocalAddr netip.AddrPort
	// MinPoll and MaxPoll bound the poll interval as log2 seconds; both
	// zero means 0..4 (1 s to 16 s).
	MinPoll, MaxPoll int
	// Timeout is how long to wait for an answer; zero means 1 s or the
	// poll interval, whichever is shorter.
	Timeout time.Duration
	// UTCOffset is TAI − UTC, used for CSPTP answers, which carry none,
	// and for an Announce with a zero currentUtcOffset; zero means 37 s.
	UTCOffset time.Duration
	// ClockIdentity is the client's clock identity in its requests.
	ClockIdentity protocol.ClockIdentity
	// Domain is the PTP domainNumber of requests.
	Domain uint8
	// Pad makes every request as long as its answer with a PAD TLV, for
	// servers that refuse to amplify. facebook/time's ptp4u rejects
	// requests with TLVs it does not know, PAD among them.
	Pad bool
}

// Reasons a client drops a received datagram, the keys of
// ClientStatus.Dropped.
const (
	DropWrongSource = "wrong source address"
	DropWrongServer = "server identity changed within an exchange"
	DropMismatched  = "sequence id mismatch"
	DropLate        = "late"
	DropBadTime     = "implausible timestamps"
)

// ClientStatus is a client's state for timectl.
type ClientStatus struct {
	// State is "starting" before the first answer, "ok" while answers
	// come, and "unreachable" after four requests in a row got none.
	State string
	// LastOffset and LastDelay are from the last measurement (server minus
	// local, and round trip), taken at LastLocal on the local clock.
	LastOffset, LastDelay time.Duration
	LastLocal             time.Time
	// Grandmaster and ClockClass are from the last Announce (SPTP).
	Grandmaster protocol.ClockIdentity
	ClockClass  protocol.ClockClass
	// Requests and Measurements count requests sent and measurements
	// reported; Timeouts the requests that got no complete answer.
	Requests, Measurements, Timeouts uint64
	// Dropped counts received datagrams that were dropped, by reason.
	Dropped map[string]uint64
}

// unreachableAfter is the number of unanswered requests in a row after which
// a client is unreachable.
const unreachableAfter = 4

// Client polls one SPTP or CSPTP server. It implements sources.Source.
type Client struct {
	cfg  ClientConfig
	name string
	tb   sources.Timebase
	log  *zap.Logger

	mu     sync.Mutex
	status ClientStatus
	missed int
}

// NewClient checks cfg and returns a client; nothing is sent until Run.
func NewClient(cfg ClientConfig, tb sources.Timebase, log *zap.Logger) (*Client, error) {
	if !cfg.Server.Addr().IsValid() {
		return nil, errors.New("csptp: client: no server address")
	}
	if tb == nil {
		return nil, errors.New("csptp: client: no timebase")
	}
	if cfg.Server.Port() == 0 {
		cfg.Server = netip.AddrPortFrom(cfg.Server.Addr(), DefaultPort)
	}
	cfg.Server = netip.AddrPortFrom(cfg.Server.Addr().Unmap(), cfg.Server.Port())
	if cfg.Protocol == 0 {
		cfg.Protocol = SPTP
	}
	if cfg.Protocol != SPTP && cfg.Protocol != CSPTP {
		return nil, fmt.Errorf("csptp: client %s: unknown protocol %d", cfg.Server, cfg.Protocol)
	}
	if cfg.MinPoll == 0 && cfg.MaxPoll == 0 {
		cfg.MinPoll, cfg.MaxPoll = 0, 4
	}
	if cfg.MinPoll < -6 || cfg.MaxPoll > 17 || cfg.MinPoll > cfg.MaxPoll {
		return nil, fmt.Errorf("csptp: client %s: poll limits %d..%d must lie within -6..17 with minpoll ≤ maxpoll", cfg.Server, cfg.MinPoll, cfg.MaxPoll)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("csptp: client %s: negative timeout %s", cfg.Server, cfg.Timeout)
	}
	if cfg.UTCOffset == 0 {
		cfg.UTCOffset = 37 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	name := cfg.Protocol.String() + " " + cfg.Server.String()
	return &Client{cfg: cfg, name: name, tb: tb, log: log.With(zap.String("source", name)),
		status: ClientStatus{State: "starting", Dropped: map[string]uint64{}}}, nil
}

// Name returns the protocol and the server's address, such as
// "sptp 192.0.2.1:319".
func (c *Client) Name() string { return c.name }

// Options returns the SourceOptions for the engine: kind "csptp", the
// address and the poll limits.
func (c *Client) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "csptp", Address: c.cfg.Server.String(), MinPoll: c.cfg.MinPoll, MaxPoll: c.cfg.MaxPoll}
}

// Status returns a copy of the client's state and counters.
func (c *Client) Status() ClientStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Dropped = maps.Clone(c.status.Dropped)
	return s
}

// Run polls the server until ctx is done. It returns an error only if the
// socket cannot be opened or fails.
func (c *Client) Run(ctx context.Context, r sources.Reporter) error {
	network := netstamp.NetworkFor(c.cfg.Server.Addr())
	conn, err := netstamp.Listen(network, c.cfg.LocalAddr)
	if err != nil {
		return fmt.Errorf("csptp: client %s: %w", c.name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	// A portNumber above 10 makes ptp4u send the Announce to the port the
	// request came from, so that one socket receives both messages.
	port := conn.LocalAddr().Port()
	if port <= 10 || port == DefaultPort {
		port = 1
	}
	self := protocol.PortIdentity{ClockIdentity: c.cfg.ClockIdentity, PortNumber: port}
	seq := uint16(time.Now().UnixNano()) //#nosec G115 -- any start will do
	buf := make([]byte, maxMessage+1)
	for {
		seq++
		interval := r.PollInterval()
		if interval <= 0 {
			interval = time.Second << max(c.cfg.MinPoll, 0)
		}
		timeout := c.cfg.Timeout
		if timeout == 0 {
			timeout = min(time.Second, interval)
		}
		start := time.Now()
		m, err := c.exchange(ctx, conn, self, seq, timeout, buf)
		r.Polled()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.status.Requests++
		if m == nil {
			c.status.Timeouts++
			c.missed++
			if c.missed >= unreachableAfter {
				c.status.State = "unreachable"
			}
		} else {
			c.missed = 0
			c.status.State = "ok"
			c.status.Measurements++
			c.status.LastOffset, c.status.LastDelay, c.status.LastLocal = m.Offset, m.Delay, m.Local
		}
		c.mu.Unlock()
		if m != nil {
			r.Measured(*m)
			r.Fault("")
		} else if c.Status().State == "unreachable" {
			r.Fault("no answer from " + c.cfg.Server.String())
		}
		if !wait.For(ctx, interval-time.Since(start)) {
			return nil
		}
	}
}

// exchange is what one exchange has collected so far.
type exchange struct {
	t1, t4        time.Time          // local send and receive (Timebase)
	t2, t3        protocol.Timestamp // server receive and send (PTP timescale)
	c1, c2        time.Duration      // corrections of answer and request
	server        protocol.PortIdentity
	haveSync      bool
	haveAnnounce  bool
	announce      protocol.AnnounceBody
	announceFlags uint16
	kernel        bool
}

// exchange sends one request and waits up to timeout for its answer; it
// returns the measurement, or nil if no complete answer came.
func (c *Client) exchange(ctx context.Context, conn *netstamp.Conn, self protocol.PortIdentity, seq uint16, timeout time.Duration, buf []byte) (*sources.Measurement, error) {
	req := Request{Protocol: c.cfg.Protocol, Domain: c.cfg.Domain, SequenceID: seq, Source: self}
	if c.cfg.Pad {
		req.Padding = AnswerLen(req.Protocol) - syncLen
		if req.Protocol == CSPTP {
			req.Padding -= csptpReqLen
		}
	}
	out, err := req.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	tx, txst, err := conn.WriteTo(out, c.cfg.Server)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		c.log.Debug("CSPTP request not sent", zap.Error(err))
		return nil, nil // an unreachable network counts as no answer
	}
	ex := exchange{t1: c.tb.FromSystem(tx), kernel: txst != netstamp.StampUser}
	deadline := time.Now().Add(timeout)
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("csptp: client %s: %w", c.name, err)
	}
	for {
		n, from, rx, st, err := conn.ReadFromContext(ctx, buf)
		switch {
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, netstamp.ErrTruncated):
			c.drop(DropMalformed, from, err)
			continue
		case errors.Is(err, net.ErrClosed):
			return nil, nil
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("csptp: client %s: reading: %w", c.name, err)
		}
		if m := c.take(&ex, buf[:n], from, rx, st, seq); m != nil {
			return m, nil
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// take adds the datagram b to the exchange ex and returns the measurement
// once the answer is complete.
func (c *Client) take(ex *exchange, b []byte, from netip.AddrPort, rx time.Time, st netstamp.Stamping, seq uint16) *sources.Measurement {
	// The address, not the port: ptp4u sends from one socket per worker,
	// each on an ephemeral port. The sequence id and, for the second
	// message, the server's port identity tie the answer to the request.
	if from.Addr().Unmap() != c.cfg.Server.Addr() {
		c.drop(DropWrongSource, from, nil)
		return nil
	}
	resp, err := ParseResponse(b)
	if err != nil {
		c.drop(DropMalformed, from, err)
		return nil
	}
	if resp.Header.SequenceID != seq {
		if seq-resp.Header.SequenceID < 64 {
			c.drop(DropLate, from, nil)
		} else {
			c.drop(DropMismatched, from, nil)
		}
		return nil
	}
	if resp.Protocol != c.cfg.Protocol {
		c.drop(DropUnexpected, from, fmt.Errorf("a %s answer to a %s request", resp.Protocol, c.cfg.Protocol))
		return nil
	}
	if (ex.haveSync || ex.haveAnnounce) && resp.Header.SourcePortIdentity != ex.server {
		c.drop(DropWrongServer, from, nil)
		return nil
	}
	ex.server = resp.Header.SourcePortIdentity
	switch {
	case resp.Header.MessageType() == protocol.MessageAnnounce:
		if ex.haveAnnounce {
			c.drop(DropLate, from, nil)
			return nil
		}
		ex.haveAnnounce = true
		ex.t3 = resp.Origin
		ex.c2 = resp.Header.CorrectionField.Duration()
		ex.announce = resp.Announce
		ex.announceFlags = resp.Header.FlagField
	default: // a Sync
		if ex.haveSync {
			c.drop(DropLate, from, nil)
			return nil
		}
		ex.haveSync = true
		ex.t4 = c.tb.FromSystem(rx)
		ex.kernel = ex.kernel && st != netstamp.StampUser
		ex.c1 = resp.Header.CorrectionField.Duration()
		if resp.Protocol == CSPTP {
			ex.t2, ex.t3 = resp.RequestReceipt, resp.Origin
			ex.c2 = resp.RequestCorrection.Duration()
			ex.haveAnnounce = true
			ex.announceFlags = resp.Header.FlagField
		} else {
			ex.t2 = resp.Origin
		}
	}
	if !ex.haveSync || !ex.haveAnnounce {
		return nil
	}
	m, err := c.measure(ex)
	if err != nil {
		c.drop(DropBadTime, from, err)
		return nil
	}
	return m
}

// measure computes the measurement of a complete exchange.
func (c *Client) measure(ex *exchange) (*sources.Measurement, error) {
	utc := c.cfg.UTCOffset
	if ex.announce.CurrentUTCOffset != 0 {
		utc = time.Duration(ex.announce.CurrentUTCOffset) * time.Second
	}
	t2 := ex.t2.Time().Add(-utc)
	t3 := ex.t3.Time().Add(-utc)
	// Client to server and server to client, corrections removed.
	up := t2.Sub(ex.t1) - ex.c2
	down := ex.t4.Sub(t3) - ex.c1
	delay := up + down
	if ex.t4.Before(ex.t1) || t3.Before(t2) || delay < 0 {
		return nil, fmt.Errorf("t1 %s t2 %s t3 %s t4 %s: negative delay %s", ex.t1, t2, t3, ex.t4, delay)
	}
	m := &sources.Measurement{
		Local:    ex.t1.Add(ex.t4.Sub(ex.t1) / 2),
		Offset:   (up - down) / 2,
		Delay:    delay,
		Stratum:  1,
		Stamping: sources.StampUser,
		Leap:     sources.LeapNone,
	}
	if ex.kernel {
		m.Stamping = sources.StampKernel
	}
	if c.cfg.Protocol == SPTP {
		q := ex.announce.GrandmasterClockQuality
		m.RootDispersion = q.ClockAccuracy.Duration()
		m.Stratum = uint8(min(int(ex.announce.StepsRemoved)+1, 15)) //#nosec G115 -- bounded
		if q.ClockClass >= 248 {
			m.Leap = sources.LeapUnknown
		}
		c.mu.Lock()
		c.status.Grandmaster, c.status.ClockClass = ex.announce.GrandmasterIdentity, q.ClockClass
		c.mu.Unlock()
	}
	switch {
	case m.Leap == sources.LeapUnknown:
	case ex.announceFlags&protocol.FlagLeap61 != 0:
		m.Leap = sources.LeapInsert
	case ex.announceFlags&protocol.FlagLeap59 != 0:
		m.Leap = sources.LeapDelete
	}
	return m, nil
}

// drop counts a received datagram that was not used.
func (c *Client) drop(reason string, from netip.AddrPort, err error) {
	c.mu.Lock()
	c.status.Dropped[reason]++
	c.mu.Unlock()
	c.log.Debug("CSPTP response dropped", zap.String("reason", reason), zap.Stringer("from", from), zap.Error(err))
}
