package ntp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
)

// NTSConfig turns on Network Time Security (RFC 8915) for a client: a key
// exchange (NTS-KE over TLS 1.3) gives the keys, the NTP server and port, and
// cookies; every request then carries NTS fields and every response must
// authenticate.
type NTSConfig struct {
	// Server is the NTS-KE server's host; empty means the client's Address.
	Server string
	// Port is the NTS-KE port; 0 means 4460.
	Port int
	// ServerName is the name the NTS-KE server's certificate must carry;
	// empty means Server's host. A pool sets it to the pool's name while
	// each member's exchange goes to the member's address (as chrony does).
	ServerName string
	// CAFile is a PEM file of CA certificates to trust instead of the
	// system's roots; empty means the system's roots.
	CAFile string
	// IgnoreDates, when set and true at a key exchange, skips the
	// certificates' validity dates (the clock is not synchronized yet and
	// may be far wrong); the chain and the name are still checked.
	IgnoreDates func() bool
}

// Drop reasons of NTS, keys of Dropped next to the others.
const (
	DropNTSAuth            = "NTS authentication failed"
	DropNTSReplay          = "NTS unique identifier mismatch (replayed or never sent)"
	DropNTSUnauthenticated = "no valid NTS fields (unauthenticated response)"
	DropNTSNAK             = "NTS NAK"
)

// ntsCookies is how many cookies the client keeps (RFC 8915 section 4
// recommends 8).
const ntsCookies = 8

// ntsRetryMin and ntsRetryMax bound the wait before another key exchange
// after a failed one; it doubles with each failure in a row.
var (
	ntsRetryMin = 4 * time.Second
	ntsRetryMax = time.Hour
)

// errNewKE ends a poll to start a new key exchange (after an NTS NAK).
var errNewKE = errors.New("new NTS key exchange needed")

// ntsState is what one key exchange gave: the keys, the NTP server and the
// cookies left.
type ntsState struct {
	sess    *nts.ClientSession
	host    string
	port    int
	cookies [][]byte
}

// keServer is the NTS-KE server as host:port.
func (c *Client) keServer() string {
	n := c.cfg.NTS
	host := n.Server
	if host == "" {
		host = c.cfg.Address
	}
	port := n.Port
	if port == 0 {
		port = ke.DefaultPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// keyExchange runs NTS-KE until it succeeds or ctx ends, backing off after
// failures, which are source faults. It reports whether it succeeded.
func (s *session) keyExchange(ctx context.Context) bool {
	c := s.c
	server := c.keServer()
	for {
		cfg := ke.Config{Server: server, CAFile: c.cfg.NTS.CAFile}
		if c.cfg.NTS.ServerName != "" {
			cfg.TLS = &tls.Config{ServerName: c.cfg.NTS.ServerName}
		}
		if c.cfg.NTS.IgnoreDates != nil && c.cfg.NTS.IgnoreDates() {
			cfg.SkipTimeChecks = true
			c.log.Warn("NTS key exchange without checking the certificate's dates: the clock is not synchronized yet (certificate_dates: ignore_until_synchronized, as chrony's nocerttimecheck)")
		}
		start := time.Now()
		res, err := ke.Exchange(ctx, cfg)
		if err == nil {
			var sess *nts.ClientSession
			sess, err = nts.NewClientSession(res.AEAD, res.C2S, res.S2C)
			if err == nil {
				s.nts = &ntsState{sess: sess, host: res.NTPServer, port: int(res.NTPPort), cookies: res.Cookies}
				s.keRetry = 0
				s.reresolve = true
				c.keCount.Add(1)
				c.cookiesLeft.Store(int32(len(res.Cookies)))
				c.setKEStatus(keStatus{at: time.Now(), aead: res.AEAD, ntpServer: res.NTPAddr()})
				c.log.Info("NTS key exchange done", zap.String("ke_server", server),
					zap.String("ntp_server", res.NTPAddr()), zap.Int("cookies", len(res.Cookies)),
					zap.Duration("took", time.Since(start)))
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		c.unreachable.Store(true)
		s.setFault(fmt.Sprintf("NTS key exchange with %s failed: %v", server, err))
		s.r.Polled() // an attempt that got nothing: reach shifts
		if s.keRetry == 0 {
			s.keRetry = ntsRetryMin
		} else {
			s.keRetry = min(2*s.keRetry, ntsRetryMax)
		}
		retry := max(s.keRetry, s.interval())
		c.mu.Lock()
		c.ke.err, c.ke.retryAt = err.Error(), time.Now().Add(retry)
		c.mu.Unlock()
		if !wait.For(ctx, retry) {
			return false
		}
	}
}

// needKE reports whether a key exchange must come before the next request:
// NTS is on and no cookie is left (or none was ever had).
func (s *session) needKE() bool {
	return s.c.cfg.NTS != nil && (s.nts == nil || len(s.nts.cookies) == 0)
}

// appendNTS adds the NTS fields to the request pkt with the oldest cookie
// and as many placeholders as it takes to get back to ntsCookies.
func (s *session) appendNTS(pkt []byte) ([]byte, nts.UniqueID, error) {
	st := s.nts
	cookie := st.cookies[0]
	st.cookies = st.cookies[1:]
	placeholders := min(max(ntsCookies-1-len(st.cookies), 0), nts.MaxPlaceholders)
	pkt, id, err := st.sess.AppendRequest(pkt, cookie, placeholders)
	if err != nil {
		return nil, id, fmt.Errorf("ntp: client: NTS request: %w", err)
	}
	return pkt, id, nil
}

// verifyNTS checks the NTS fields of a response to req. It reports whether
// the response may be used; a NAK ends the session's keys and returns
// errNewKE.
func (s *session) verifyNTS(req *request, data []byte) (bool, error) {
	c := s.c
	cookies, err := s.nts.sess.VerifyResponse(data, req.ntsID)
	switch {
	case err == nil:
	case errors.Is(err, nts.ErrNAK):
		c.drop(DropNTSNAK, zap.String("reason", "the server cannot use our cookie: new key exchange"))
		s.nts = nil
		c.cookiesLeft.Store(0)
		return false, errNewKE
	case errors.Is(err, nts.ErrUniqueIDMismatch):
		c.drop(DropNTSReplay, zap.Error(err))
		return false, nil
	case errors.Is(err, nts.ErrAuth):
		c.drop(DropNTSAuth, zap.Error(err))
		return false, nil
	default:
		c.drop(DropNTSUnauthenticated, zap.Error(err))
		return false, nil
	}
	st := s.nts
	for _, ck := range cookies {
		if len(st.cookies) < ntsCookies {
			st.cookies = append(st.cookies, ck)
		}
	}
	return true, nil
}

// NTSCookies returns how many NTS cookies the client holds, and how many key
// exchanges it made.
func (c *Client) NTSCookies() (cookies int, exchanges uint64) {
	return int(c.cookiesLeft.Load()), c.keCount.Load()
}

// keStatus is what the client knows of its last key exchanges.
type keStatus struct {
	at        time.Time // the last successful one; zero before
	aead      uint16
	ntpServer string
	err       string    // why the last one failed; "" after a success
	retryAt   time.Time // when the next is tried after a failure
}

func (c *Client) setKEStatus(k keStatus) {
	c.mu.Lock()
	c.ke = k
	c.mu.Unlock()
}

// NTSStatus is the NTS state of a client, for `timectl nts`.
type NTSStatus struct {
	// KEServer is the NTS-KE server as host:port.
	KEServer string
	// LastKE is the time of the last successful key exchange (zero before
	// the first), with the AEAD and the NTP server (host:port) it gave.
	LastKE    time.Time
	AEAD      uint16
	NTPServer string
	// KEError says why the last key exchange failed ("" if it did not);
	// RetryAt is when the next is tried then.
	KEError string
	RetryAt time.Time
	// KEs counts successful key exchanges; Cookies the cookies held, of
	// MaxCookies.
	KEs                 uint64
	Cookies, MaxCookies int
	// NAKs counts NTS NAKs received, AuthFailures responses that did not
	// authenticate.
	NAKs, AuthFailures uint64
}

// NTSStatus returns the client's NTS state; ok is false when the client
// does not use NTS.
func (c *Client) NTSStatus() (st NTSStatus, ok bool) {
	if c.cfg.NTS == nil {
		return NTSStatus{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return NTSStatus{
		KEServer: c.keServer(), LastKE: c.ke.at, AEAD: c.ke.aead, NTPServer: c.ke.ntpServer,
		KEError: c.ke.err, RetryAt: c.ke.retryAt,
		KEs: c.keCount.Load(), Cookies: int(c.cookiesLeft.Load()), MaxCookies: ntsCookies,
		NAKs:         c.dropped[DropNTSNAK],
		AuthFailures: c.dropped[DropNTSAuth] + c.dropped[DropNTSReplay] + c.dropped[DropNTSUnauthenticated],
	}, true
}
