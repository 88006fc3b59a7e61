package ke

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds a whole exchange (connect, handshake, request and
// response) when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config says which NTS-KE server to ask and how to trust it.
type Config struct {
	// Server is the NTS-KE server as host:port, or host for port 4460.
	Server string
	// TLS holds the roots to trust (nil RootCAs: the system's) and
	// anything else the caller wants of TLS; nil means the defaults.
	// Exchange works on a copy: it forces TLS 1.3 and ALPN ntske/1, and
	// sets ServerName to Server's host when empty.
	TLS *tls.Config
	// CAFile, when set, is a PEM file of CA certificates that replace the
	// roots in TLS (a CA per source).
	CAFile string
	// AEADs are the AEAD algorithms to offer, most preferred first; nil
	// offers AES-SIV-CMAC-256, the one implemented.
	AEADs []uint16
	// Timeout bounds the whole exchange; 0 means DefaultTimeout. The
	// context's deadline applies too.
	Timeout time.Duration
	// SkipTimeChecks verifies the server's certificate chain and name but
	// not its validity dates, for a clock that may be far wrong (at boot,
	// before the first synchronization; chrony's nocerttimecheck).
	SkipTimeChecks bool
}

// Result is what a successful NTS-KE exchange yields for NTS-protected NTP.
type Result struct {
	// NTPServer is the host name or address literal of the NTP server:
	// the one the NTS-KE server named, or else the NTS-KE server's host.
	NTPServer string
	// NTPPort is the NTP server's port: the one the NTS-KE server named,
	// or else 123.
	NTPPort uint16
	// AEAD is the algorithm the server chose.
	AEAD uint16
	// C2S and S2C are the client-to-server and server-to-client keys.
	C2S, S2C []byte
	// Cookies are the cookies the server sent, in order (8 from a
	// typical server).
	Cookies [][]byte
}

// NTPAddr is NTPServer and NTPPort as host:port, for net.Dial.
func (r *Result) NTPAddr() string {
	return net.JoinHostPort(r.NTPServer, strconv.Itoa(int(r.NTPPort)))
}

// Exchange runs one NTS-KE exchange with cfg.Server: TLS 1.3 with ALPN
// ntske/1, a request for NTPv4 with cfg.AEADs, and the server's answer,
// from which it returns the NTP server, the AEAD, the keys and the cookies.
// An Error record, a Warning record (RFC 8915 defines no warning codes, so
// any is one not understood), a response without NTPv4 or without an
// offered AEAD, or one without cookies is an error.
func Exchange(ctx context.Context, cfg Config) (*Result, error) {
	host, addr, err := splitServer(cfg.Server)
	if err != nil {
		return nil, err
	}
	aeads := cfg.AEADs
	if len(aeads) == 0 {
		aeads = []uint16{AEADAESSIVCMAC256}
	}
	for _, a := range aeads {
		if KeyLen(a) == 0 {
			return nil, fmt.Errorf("nts-ke: %s: AEAD %d not implemented", addr, a)
		}
	}
	tlsConf, err := clientTLS(cfg, host)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	d := tls.Dialer{Config: tlsConf}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, handshakeError(ctx, addr, err)
	}
	conn := nc.(*tls.Conn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	cs := conn.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		return nil, fmt.Errorf("nts-ke: %s: server did not agree to ALPN %q (it chose %q)", addr, ALPN, cs.NegotiatedProtocol)
	}

	req, err := AppendRecords(nil, []Record{
		U16Record(RecordNextProtocol, true, ProtocolNTPv4),
		U16Record(RecordAEAD, true, aeads...),
	})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, ioError(ctx, addr, "sending the request", err)
	}
	resp, err := ReadRecords(conn)
	if err != nil {
		return nil, ioError(ctx, addr, "reading the response", err)
	}
	res, err := parseResponse(resp, aeads)
	if err != nil {
		return nil, fmt.Errorf("nts-ke: %s: %w", addr, err)
	}
	if res.NTPServer == "" {
		res.NTPServer = host
	}
	if res.C2S, res.S2C, err = exportKeys(&cs, res.AEAD); err != nil {
		return nil, fmt.Errorf("nts-ke: %s: %w", addr, err)
	}
	return res, nil
}

// splitServer returns the host to verify and the address to dial.
func splitServer(server string) (host, addr string, err error) {
	if server == "" {
		return "", "", errors.New("nts-ke: no server given")
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		// A bare host (or bracketed IPv6 address) gets the default port.
		host = strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
		port = strconv.Itoa(DefaultPort)
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			return "", "", fmt.Errorf("nts-ke: server %q: %w", server, err)
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("nts-ke: server %q: no host", server)
	}
	return host, net.JoinHostPort(host, port), nil
}

// clientTLS is the caller's TLS configuration with what NTS-KE requires.
func clientTLS(cfg Config, host string) (*tls.Config, error) {
	var c *tls.Config
	if cfg.TLS != nil {
		c = cfg.TLS.Clone()
	} else {
		c = &tls.Config{}
	}
	c.MinVersion = tls.VersionTLS13
	c.MaxVersion = 0
	c.NextProtos = []string{ALPN}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("nts-ke: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nts-ke: CA file %s: no PEM certificate in it", cfg.CAFile)
		}
		c.RootCAs = pool
	}
	if cfg.SkipTimeChecks {
		roots := c.RootCAs
		if roots == nil {
			sys, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("nts-ke: system roots: %w", err)
			}
			roots = sys
		}
		c.InsecureSkipVerify = true // verified below, but for the dates
		c.VerifyConnection = verifyIgnoringDates(roots, c.ServerName)
	}
	return c, nil
}

// verifyIgnoringDates verifies the peer's certificate chain against roots
// and its name, at a moment when every certificate the peer sent is valid
// (the latest of their start dates) instead of now.
func verifyIgnoringDates(roots *x509.CertPool, name string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) == 0 {
			return errors.New("nts-ke: the server sent no certificate")
		}
		at := certs[0].NotBefore
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
			if c.NotBefore.After(at) {
				at = c.NotBefore
			}
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: at})
		return err
	}
}

// handshakeError says in words why connecting or the TLS handshake failed.
func handshakeError(ctx context.Context, addr string, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
	)
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("nts-ke: %s: TLS handshake: certificate not signed by a trusted CA (wrong CA?): %w", addr, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("nts-ke: %s: TLS handshake: certificate expired or not yet valid (or this clock is wrong): %w", addr, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("nts-ke: %s: TLS handshake: certificate not valid for this server name: %w", addr, err)
	case strings.Contains(err.Error(), "no application protocol"):
		return fmt.Errorf("nts-ke: %s: TLS handshake: server does not speak ALPN %q: %w", addr, ALPN, err)
	case strings.Contains(err.Error(), "protocol version"):
		return fmt.Errorf("nts-ke: %s: TLS handshake: server does not offer TLS 1.3: %w", addr, err)
	case ctx.Err() != nil:
		return fmt.Errorf("nts-ke: %s: connect and TLS handshake timed out: %w", addr, err)
	}
	return fmt.Errorf("nts-ke: %s: connect and TLS handshake: %w", addr, err)
}

// ioError wraps a failure after the handshake, naming a time-out as one.
func ioError(ctx context.Context, addr, doing string, err error) error {
	if ctx.Err() != nil {
		doing = "timed out " + doing
	}
	return &wrapped{prefix: "nts-ke: " + addr + ": " + doing + ": ", err: err}
}

// wrapped is an error with context in front, said once: the "nts-ke: " of
// the error inside is dropped.
type wrapped struct {
	prefix string
	err    error
}

func (w *wrapped) Error() string {
	return w.prefix + strings.TrimPrefix(w.err.Error(), "nts-ke: ")
}

func (w *wrapped) Unwrap() error { return w.err }

// parseResponse checks a server's response against the AEADs offered and
// returns it as a Result without keys.
func parseResponse(recs []Record, offered []uint16) (*Result, error) {
	res := &Result{NTPPort: 123}
	var protos, aeads []uint16
	var sawProto, sawAEAD bool
	for _, r := range recs {
		switch r.Type {
		case RecordError:
			code := r.U16s()[0]
			return nil, fmt.Errorf("server sent Error %d (%s)", code, codeName(RecordError, code))
		case RecordWarning:
			code := r.U16s()[0]
			return nil, fmt.Errorf("server sent Warning %d, which is not understood", code)
		case RecordNextProtocol:
			protos, sawProto = r.U16s(), true
		case RecordAEAD:
			aeads, sawAEAD = r.U16s(), true
		case RecordNewCookie:
			res.Cookies = append(res.Cookies, r.Body)
		case RecordServer:
			res.NTPServer = string(r.Body)
		case RecordPort:
			res.NTPPort = r.U16s()[0]
		}
	}
	switch {
	case !sawProto:
		return nil, errors.New("response has no next protocol record")
	case len(protos) == 0:
		return nil, errors.New("server supports no protocol offered (NTPv4)")
	case len(protos) != 1 || protos[0] != ProtocolNTPv4:
		return nil, fmt.Errorf("server chose next protocols %v, want exactly NTPv4 (0)", protos)
	case !sawAEAD || len(aeads) == 0:
		return nil, fmt.Errorf("server supports none of the AEAD algorithms offered %v", offered)
	case len(aeads) != 1 || !slices.Contains(offered, aeads[0]):
		return nil, fmt.Errorf("server chose AEAD algorithms %v, want one of %v", aeads, offered)
	case len(res.Cookies) == 0:
		return nil, errors.New("server sent no cookie")
	case res.NTPPort == 0:
		return nil, errors.New("server named NTP port 0")
	}
	res.AEAD = aeads[0]
	return res, nil
}
