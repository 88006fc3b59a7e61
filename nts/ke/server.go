package ke

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/accept"
)

// CookieMaker makes the cookies an NTS-KE server hands out: each one
// carries the AEAD and the keys, sealed so that only the NTP server can
// open it (package nts implements it).
type CookieMaker interface {
	MakeCookies(aead uint16, c2s, s2c []byte, n int) ([][]byte, error)
}

// CookiesPerResponse is how many cookies a response carries (RFC 8915
// section 4 recommends 8).
const CookiesPerResponse = 8

// Defaults of ServerConfig.
const (
	DefaultMaxConns      = 100
	DefaultServerTimeout = 5 * time.Second
)

// ServerConfig configures an NTS-KE server.
type ServerConfig struct {
	// Certificate is the server's certificate chain and key.
	Certificate *tls.Certificate
	// GetCertificate, when set, is asked for the certificate at every
	// handshake instead (to reload it without a restart).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Cookies makes the cookies. Required.
	Cookies CookieMaker
	// NTPServer, when set, is announced as the NTP server (a host name or
	// an address literal); otherwise clients use the NTS-KE server's.
	NTPServer string
	// NTPPort, when not 0, is announced as the NTP port; otherwise
	// clients use 123.
	NTPPort uint16
	// MaxConns bounds the connections served at once; a connection
	// beyond it is closed at once. 0 means DefaultMaxConns.
	MaxConns int
	// Timeout bounds one connection, handshake to last byte; 0 means
	// DefaultServerTimeout.
	Timeout time.Duration
	// Logger gets a debug line for each connection that fails through the
	// client's doing and a warning for each that fails through ours (key
	// export, cookies); nil logs nothing.
	Logger *zap.Logger
}

// Stats are a server's counters since it was made.
type Stats struct {
	// Accepted counts connections accepted, Refused those of them closed
	// at once because MaxConns were being served.
	Accepted, Refused uint64
	// Handshakes counts TLS handshakes completed with ALPN ntske/1.
	Handshakes uint64
	// Exchanges counts responses with keys exported and cookies sent.
	Exchanges uint64
	// Errors by kind: TLS handshakes that failed (bad client hello, no
	// common ALPN or version, ...); connections that ran out of time;
	// requests that broke RFC 8915 (answered with Error 0 or 1); requests
	// for a protocol or AEADs not supported here (answered with empty
	// negotiation records); failures here (key export, cookies: answered
	// with Error 2); failures to write the response.
	TLSErrors, Timeouts, BadRequests, Unsupported, InternalErrors, WriteErrors uint64
	// Active is the number of connections being served now.
	Active int64
}

// Server is an NTS-KE server. Its methods may be called concurrently.
type Server struct {
	cfg  ServerConfig
	tls  *tls.Config
	log  *zap.Logger
	sem  chan struct{}
	wg   sync.WaitGroup
	stat struct {
		accepted, refused, handshakes, exchanges      atomic.Uint64
		tlsErrors, timeouts, badRequests, unsupported atomic.Uint64
		internalErrors, writeErrors                   atomic.Uint64
		active                                        atomic.Int64
	}
}

// NewServer checks cfg and makes a server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Cookies == nil {
		return nil, errors.New("nts-ke: server: no cookie maker")
	}
	if cfg.Certificate == nil && cfg.GetCertificate == nil {
		return nil, errors.New("nts-ke: server: no certificate")
	}
	if cfg.NTPServer != "" {
		if _, err := AppendRecords(nil, []Record{{Type: RecordServer, Body: []byte(cfg.NTPServer)}}); err != nil {
			return nil, fmt.Errorf("nts-ke: server: NTP server name to announce: %w", err)
		}
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultServerTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	t := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		GetCertificate:         cfg.GetCertificate,
		SessionTicketsDisabled: true,
		CurvePreferences:       keyExchangeGroups,
	}
	if cfg.GetCertificate == nil {
		t.Certificates = []tls.Certificate{*cfg.Certificate}
	}
	p256 := t.Clone()
	p256.CurvePreferences = []tls.CurveID{tls.CurveP256}
	t.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if prefersP256(hello.SupportedCurves) {
			return p256, nil
		}
		return nil, nil
	}
	return &Server{cfg: cfg, tls: t, log: log, sem: make(chan struct{}, cfg.MaxConns)}, nil
}

// prefersP256 reports whether a client lists P-256 before X25519 among
// the groups it supports, as chrony's client (GnuTLS) does, sending a key
// share for each. Go's server would take X25519 whatever the order, and
// its X25519 is slow where its P-256 is not: making the server's key
// share takes 64 us with X25519 and 17 us with P-256 on the benchmark
// machine (the shared secret about 67 us with either), a tenth of the
// server's CPU per exchange. A client that lists P-256 first but sent no
// share for it gets a HelloRetryRequest: slower, still correct.
func prefersP256(groups []tls.CurveID) bool {
	for _, g := range groups {
		switch g {
		case tls.CurveP256:
			return true
		case tls.X25519:
			return false
		}
	}
	return false
}

// keyExchangeGroups are the TLS key exchanges the server accepts: the
// classical ones, not the hybrid post-quantum X25519MLKEM768 that Go would
// pick first. NTS-KE's secrets matter only while they are in use (the keys
// authenticate time now; the cookies die with the server key that sealed
// them), so an attacker who records an exchange today and breaks its key
// exchange years later gains nothing, while ML-KEM costs about a fifth of
// the server's handshake. (Go ignores the order of this list, so leaving
// the hybrid in, last, would still select it.)
var keyExchangeGroups = []tls.CurveID{tls.X25519, tls.CurveP256}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted:       s.stat.accepted.Load(),
		Refused:        s.stat.refused.Load(),
		Handshakes:     s.stat.handshakes.Load(),
		Exchanges:      s.stat.exchanges.Load(),
		TLSErrors:      s.stat.tlsErrors.Load(),
		Timeouts:       s.stat.timeouts.Load(),
		BadRequests:    s.stat.badRequests.Load(),
		Unsupported:    s.stat.unsupported.Load(),
		InternalErrors: s.stat.internalErrors.Load(),
		WriteErrors:    s.stat.writeErrors.Load(),
		Active:         s.stat.active.Load(),
	}
}

// Serve accepts NTS-KE connections on ln (plain TCP: Serve does the TLS)
// until ctx ends, then closes ln, ends the connections being served and
// returns nil once they are gone. It returns early with an error if ln
// fails for good.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer s.wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var backoff accept.Backoff
	for {
		c, err := backoff.Next(ctx, ln, s.log, "nts-ke: server")
		if err != nil {
			return fmt.Errorf("nts-ke: server: accept: %w", err)
		}
		if c == nil {
			return nil
		}
		s.stat.accepted.Add(1)
		select {
		case s.sem <- struct{}{}:
		default:
			s.stat.refused.Add(1)
			_ = c.Close()
			continue
		}
		s.stat.active.Add(1)
		s.wg.Add(1)
		go func() {
			defer func() {
				s.stat.active.Add(-1)
				<-s.sem
				s.wg.Done()
			}()
			s.serveConn(ctx, c)
		}()
	}
}

// isTemporary reports whether an accept error may go away by itself.
// serveConn runs one exchange on c and closes it.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tail := &lastFlightConn{Conn: c, deadline: deadline}
	conn := tls.Server(tail, s.tls)
	defer conn.Close()
	log := s.log.With(zap.Stringer("client", c.RemoteAddr()))

	failed := func(counter *atomic.Uint64, what string, err error) {
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			counter = &s.stat.timeouts
		}
		counter.Add(1)
		if counter == &s.stat.internalErrors {
			log.Warn("nts-ke: server: "+what, zap.Error(err))
			return
		}
		log.Debug("nts-ke: server: "+what, zap.Error(err))
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		failed(&s.stat.tlsErrors, "TLS handshake failed", err)
		return
	}
	cs := conn.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		// A client that sent no ALPN at all.
		failed(&s.stat.tlsErrors, "TLS handshake without ALPN "+ALPN, nil)
		return
	}
	s.stat.handshakes.Add(1)

	req, err := ReadRecords(conn)
	if err != nil {
		var bad *BadRecordError
		if !errors.As(err, &bad) {
			failed(&s.stat.badRequests, "reading the request", err)
			return
		}
		code := ErrorBadRequest
		if bad.UnknownCritical {
			code = ErrorUnrecognizedCritical
		}
		failed(&s.stat.badRequests, "bad request", err)
		s.respond(conn, log, []Record{U16Record(RecordError, true, code)})
		return
	}
	resp, counter, err := s.answer(req, &cs)
	if err != nil {
		failed(counter, "request not served", err)
	}
	// The response is the last thing sent before the TLS close_notify:
	// both go out in one write when the connection closes.
	tail.hold()
	if !s.respond(conn, log, resp) {
		return
	}
	if cerr := conn.Close(); cerr != nil {
		s.stat.writeErrors.Add(1)
		log.Debug("nts-ke: server: writing the response", zap.Error(cerr))
		return
	}
	if err == nil {
		s.stat.exchanges.Add(1)
	}
}

// answer makes the response to a well-formed request. When the request
// cannot be served the response says why, and the counter and error say
// it too.
func (s *Server) answer(req []Record, cs *tls.ConnectionState) ([]Record, *atomic.Uint64, error) {
	var protos, aeads []uint16
	sawProto := false
	for _, r := range req {
		switch r.Type {
		case RecordNextProtocol:
			protos, sawProto = r.U16s(), true
		case RecordAEAD:
			aeads = r.U16s()
		case RecordError, RecordWarning, RecordNewCookie:
			return []Record{U16Record(RecordError, true, ErrorBadRequest)}, &s.stat.badRequests,
				fmt.Errorf("request has a %s record, which only servers send", r.Type)
		}
	}
	if !sawProto {
		return []Record{U16Record(RecordError, true, ErrorBadRequest)}, &s.stat.badRequests,
			errors.New("request has no next protocol record")
	}
	if !slices.Contains(protos, ProtocolNTPv4) {
		return []Record{U16Record(RecordNextProtocol, true)}, &s.stat.unsupported,
			fmt.Errorf("request offers next protocols %v, not NTPv4", protos)
	}
	if !slices.Contains(aeads, AEADAESSIVCMAC256) {
		return []Record{U16Record(RecordNextProtocol, true, ProtocolNTPv4), U16Record(RecordAEAD, true)}, &s.stat.unsupported,
			fmt.Errorf("request offers AEAD algorithms %v, not AES-SIV-CMAC-256 (15)", aeads)
	}
	internal := []Record{U16Record(RecordError, true, ErrorInternalServer)}
	c2s, s2c, err := exportKeys(cs, AEADAESSIVCMAC256)
	if err != nil {
		return internal, &s.stat.internalErrors, err
	}
	cookies, err := s.cfg.Cookies.MakeCookies(AEADAESSIVCMAC256, c2s, s2c, CookiesPerResponse)
	if err == nil && len(cookies) == 0 {
		err = errors.New("no cookie made")
	}
	if err != nil {
		return internal, &s.stat.internalErrors, fmt.Errorf("making cookies: %w", err)
	}
	resp := make([]Record, 0, 4+len(cookies))
	resp = append(resp, U16Record(RecordNextProtocol, true, ProtocolNTPv4), U16Record(RecordAEAD, true, AEADAESSIVCMAC256))
	if s.cfg.NTPServer != "" {
		resp = append(resp, Record{Type: RecordServer, Body: []byte(s.cfg.NTPServer)})
	}
	if s.cfg.NTPPort != 0 {
		resp = append(resp, U16Record(RecordPort, false, s.cfg.NTPPort))
	}
	for _, c := range cookies {
		resp = append(resp, Record{Type: RecordNewCookie, Body: c})
	}
	return resp, nil, nil
}

// respond writes a response and reports whether it went out.
func (s *Server) respond(conn *tls.Conn, log *zap.Logger, recs []Record) bool {
	b, err := AppendRecords(nil, recs)
	if err == nil {
		_, err = conn.Write(b)
	}
	if err != nil {
		s.stat.writeErrors.Add(1)
		log.Debug("nts-ke: server: writing the response", zap.Error(err))
		return false
	}
	return true
}

// lastFlightConn is a connection whose writes, once hold is called, are
// kept until Close, which sends them in one write before closing: the
// server's response and the TLS close_notify alert after it then cost
// one system call and one TCP segment instead of two. The write deadlines
// crypto/tls sets around the alert are left to the connection's own
// deadline while writes are held.
type lastFlightConn struct {
	net.Conn
	deadline time.Time
	held     bool
	pending  []byte
}

func (c *lastFlightConn) hold() { c.held = true }

func (c *lastFlightConn) Write(b []byte) (int, error) {
	if !c.held {
		return c.Conn.Write(b)
	}
	c.pending = append(c.pending, b...)
	return len(b), nil
}

func (c *lastFlightConn) SetWriteDeadline(t time.Time) error {
	if c.held {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *lastFlightConn) Close() error {
	var err error
	if len(c.pending) > 0 {
		_ = c.Conn.SetWriteDeadline(c.deadline)
		_, err = c.Conn.Write(c.pending)
		c.pending = nil
	}
	return errors.Join(err, c.Conn.Close())
}
