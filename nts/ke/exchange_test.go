package ke

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCookies makes numbered cookies and remembers the keys it was given.
type fakeCookies struct {
	mu       sync.Mutex
	c2s, s2c [][]byte
	fail     error
}

func (f *fakeCookies) MakeCookies(aead uint16, c2s, s2c []byte, n int) ([][]byte, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	if aead != AEADAESSIVCMAC256 {
		return nil, fmt.Errorf("AEAD %d", aead)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c2s, f.s2c = append(f.c2s, c2s), append(f.s2c, s2c)
	cookies := make([][]byte, n)
	for i := range cookies {
		cookies[i] = bytes.Repeat([]byte{byte(i + 1)}, 100)
	}
	return cookies, nil
}

// startServer runs a Server on a loopback port until the test ends.
func startServer(t testing.TB, cfg ServerConfig) (*Server, string) {
	t.Helper()
	if cfg.Cookies == nil {
		cfg.Cookies = &fakeCookies{}
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// fakeServer accepts TLS connections on loopback and hands each to handle.
func fakeServer(t *testing.T, conf *tls.Config, handle func(*tls.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c.(*tls.Conn))
			}()
		}
	}()
	return ln.Addr().String()
}

// replyWith is a fake server handler that reads the request and writes b.
func replyWith(b []byte) func(*tls.Conn) {
	return func(c *tls.Conn) {
		if _, err := ReadRecords(c); err != nil {
			return
		}
		_, _ = c.Write(b)
	}
}

func TestExchange(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.pem)
	tests := []struct {
		name       string
		ntpServer  string
		ntpPort    uint16
		client     Config
		wantServer string
		wantPort   uint16
	}{
		{"defaults", "", 0, Config{TLS: &tls.Config{RootCAs: ca.pool()}}, "127.0.0.1", 123},
		{"server and port announced", "ntp.example.net", 10123, Config{TLS: &tls.Config{RootCAs: ca.pool()}}, "ntp.example.net", 10123},
		{"port announced", "", 4123, Config{CAFile: caFile}, "127.0.0.1", 4123},
		{"IPv6 literal announced", "::1", 0, Config{CAFile: caFile, AEADs: []uint16{AEADAESSIVCMAC256}}, "::1", 123},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookies := &fakeCookies{}
			srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls, Cookies: cookies, NTPServer: tt.ntpServer, NTPPort: tt.ntpPort})
			cfg := tt.client
			cfg.Server = addr
			res, err := Exchange(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.NTPServer != tt.wantServer || res.NTPPort != tt.wantPort {
				t.Errorf("NTP server %s port %d, want %s port %d", res.NTPServer, res.NTPPort, tt.wantServer, tt.wantPort)
			}
			if res.AEAD != AEADAESSIVCMAC256 || len(res.Cookies) != CookiesPerResponse {
				t.Errorf("AEAD %d and %d cookies, want 15 and %d", res.AEAD, len(res.Cookies), CookiesPerResponse)
			}
			if len(res.C2S) != 32 || len(res.S2C) != 32 || bytes.Equal(res.C2S, res.S2C) {
				t.Errorf("keys C2S %x S2C %x: want two different 32-byte keys", res.C2S, res.S2C)
			}
			if len(cookies.c2s) != 1 || !bytes.Equal(cookies.c2s[0], res.C2S) || !bytes.Equal(cookies.s2c[0], res.S2C) {
				t.Errorf("client and server exported different keys")
			}
			// The server counts the exchange once its response is written,
			// which may be just after the client has read it.
			st := srv.Stats()
			for deadline := time.Now().Add(2 * time.Second); st.Exchanges == 0 && time.Now().Before(deadline); st = srv.Stats() {
				time.Sleep(time.Millisecond)
			}
			if st.Handshakes != 1 || st.Exchanges != 1 {
				t.Errorf("stats %+v, want 1 handshake and 1 exchange", st)
			}
		})
	}
}

func TestExchangeErrors(t *testing.T) {
	ca := newTestCA(t, "test CA")
	other := newTestCA(t, "other CA")
	leaf := ca.validLeaf(t)
	expired := ca.leaf(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	good := func(nextProtos ...string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{leaf.tls}, MinVersion: tls.VersionTLS13, NextProtos: nextProtos}
	}
	okResp, err := AppendRecords(nil, []Record{U16Record(RecordNextProtocol, true, 0), U16Record(RecordAEAD, true, 15), {Type: RecordNewCookie, Body: []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	resp := func(recs ...Record) []byte {
		b, err := AppendRecords(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ntp, aead15 := U16Record(RecordNextProtocol, true, 0), U16Record(RecordAEAD, true, 15)
	cookie := Record{Type: RecordNewCookie, Body: []byte{1}}
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		client  Config
		wantErr string
	}{
		{"wrong CA", func(t *testing.T) string { _, a := startServer(t, ServerConfig{Certificate: &leaf.tls}); return a },
			Config{TLS: &tls.Config{RootCAs: other.pool()}}, "certificate not signed by a trusted CA (wrong CA?)"},
		{"expired certificate", func(t *testing.T) string { _, a := startServer(t, ServerConfig{Certificate: &expired.tls}); return a },
			Config{}, "certificate expired or not yet valid"},
		{"wrong name", func(t *testing.T) string { _, a := startServer(t, ServerConfig{Certificate: &leaf.tls}); return a },
			Config{TLS: &tls.Config{ServerName: "ntp.example.net"}}, "certificate not valid for this server name"},
		{"wrong ALPN", func(t *testing.T) string { return fakeServer(t, good("h2"), replyWith(okResp)) },
			Config{}, `server does not speak ALPN "ntske/1"`},
		{"no ALPN", func(t *testing.T) string { return fakeServer(t, good(), replyWith(okResp)) },
			Config{}, `server did not agree to ALPN "ntske/1"`},
		{"TLS 1.2", func(t *testing.T) string {
			c := good(ALPN)
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return fakeServer(t, c, replyWith(okResp))
		}, Config{}, "server does not offer TLS 1.3"},
		{"truncated record", func(t *testing.T) string { return fakeServer(t, good(ALPN), replyWith(okResp[:len(okResp)-5])) },
			Config{}, "record 3 (New Cookie): reading body of 1 bytes: unexpected EOF"},
		{"no end of message", func(t *testing.T) string { return fakeServer(t, good(ALPN), replyWith(okResp[:len(okResp)-4])) },
			Config{}, "record 4: reading header: unexpected EOF"},
		{"closed at once", func(t *testing.T) string { return fakeServer(t, good(ALPN), replyWith(nil)) },
			Config{}, "connection closed before any record"},
		{"bad record", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15, 0), eom)))
		}, Config{}, "record 2 (AEAD algorithm): body of 3 bytes, want an even number"},
		{"unknown critical record", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(cat(raw(RecordNextProtocol, true, 0, 0), raw(0x3333, true), eom)))
		}, Config{}, "record 2 (unknown type 13107): critical but not understood"},
		{"error record", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(U16Record(RecordError, true, ErrorBadRequest))))
		}, Config{}, "server sent Error 1 (bad request)"},
		{"warning record", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(ntp, aead15, cookie, U16Record(RecordWarning, true, 9))))
		}, Config{}, "server sent Warning 9, which is not understood"},
		{"no protocol", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(U16Record(RecordNextProtocol, true))))
		}, Config{}, "server supports no protocol offered (NTPv4)"},
		{"other protocol", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(U16Record(RecordNextProtocol, true, 5), aead15, cookie)))
		}, Config{}, "server chose next protocols [5]"},
		{"no AEAD", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(ntp, U16Record(RecordAEAD, true), cookie)))
		}, Config{}, "server supports none of the AEAD algorithms offered [15]"},
		{"AEAD not offered", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(ntp, U16Record(RecordAEAD, true, 30), cookie)))
		}, Config{}, "server chose AEAD algorithms [30], want one of [15]"},
		{"no cookie", func(t *testing.T) string { return fakeServer(t, good(ALPN), replyWith(resp(ntp, aead15))) },
			Config{}, "server sent no cookie"},
		{"port 0", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), replyWith(resp(ntp, aead15, cookie, U16Record(RecordPort, false, 0))))
		}, Config{}, "server named NTP port 0"},
		{"cookie maker fails", func(t *testing.T) string {
			_, a := startServer(t, ServerConfig{Certificate: &leaf.tls, Cookies: &fakeCookies{fail: errors.New("no key")}})
			return a
		}, Config{}, "server sent Error 2 (internal server error)"},
		{"silent server", func(t *testing.T) string {
			return fakeServer(t, good(ALPN), func(c *tls.Conn) { _, _ = ReadRecords(c); time.Sleep(400 * time.Millisecond) })
		}, Config{Timeout: 200 * time.Millisecond}, "timed out reading the response"},
		{"AEAD not implemented", func(t *testing.T) string { return "127.0.0.1:1" },
			Config{AEADs: []uint16{AEADAES128GCMSIV}}, "AEAD 30 not implemented"},
		{"missing CA file", func(t *testing.T) string { return "127.0.0.1:1" },
			Config{CAFile: "/nonexistent/ca.pem"}, "nts-ke: reading CA file"},
		{"nobody listening", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln.Close()
			return ln.Addr().String()
		}, Config{}, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.client
			cfg.Server = tt.addr(t)
			if cfg.TLS == nil && cfg.CAFile == "" {
				cfg.TLS = &tls.Config{RootCAs: ca.pool()}
			} else if cfg.TLS != nil && cfg.TLS.RootCAs == nil {
				cfg.TLS.RootCAs = ca.pool()
			}
			res, err := Exchange(context.Background(), cfg)
			if err == nil {
				t.Fatalf("no error, result %+v", res)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "nts-ke: ") {
				t.Fatalf("error %q, want one starting with nts-ke: and containing %q", err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

func TestSplitServer(t *testing.T) {
	tests := []struct{ in, host, addr, wantErr string }{
		{"ntp.example:4461", "ntp.example", "ntp.example:4461", ""},
		{"ntp.example", "ntp.example", "ntp.example:4460", ""},
		{"[::1]:4461", "::1", "[::1]:4461", ""},
		{"[::1]", "::1", "[::1]:4460", ""},
		{"::1", "::1", "[::1]:4460", ""},
		{"", "", "", "no server given"},
		{":4460", "", "", "no host"},
		{"a:b:c", "", "", "too many colons"},
	}
	for _, tt := range tests {
		host, addr, err := splitServer(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || host != tt.host || addr != tt.addr {
			t.Errorf("%q: %q %q %v, want %q %q", tt.in, host, addr, err, tt.host, tt.addr)
		}
	}
}

// rawExchange sends req to a server over TLS with the given ALPN and
// returns the records of the response.
func rawExchange(t *testing.T, addr string, ca *testCA, alpn []string, req []byte) ([]Record, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: alpn})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	return ReadRecords(c)
}

func TestServerAnswers(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls})
	errRec := func(code uint16) []Record { return []Record{U16Record(RecordError, true, code)} }
	ntp, aead15 := raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15)
	tests := []struct {
		name  string
		req   []byte
		want  []Record // nil: a full answer with 8 cookies
		stats func(Stats) uint64
	}{
		{"full", cat(raw(RecordNextProtocol, true, 0, 0, 0, 8), raw(RecordAEAD, true, 0, 30, 0, 15), raw(RecordPort, false, 0, 1), eom), nil,
			func(s Stats) uint64 { return s.Exchanges }},
		{"unknown non-critical record", cat(raw(0x2222, false, 1), ntp, aead15, eom), nil, func(s Stats) uint64 { return s.Exchanges }},
		{"unknown critical record", cat(ntp, raw(0x2222, true, 1), aead15, eom), errRec(ErrorUnrecognizedCritical),
			func(s Stats) uint64 { return s.BadRequests }},
		{"malformed record", cat(ntp, raw(RecordAEAD, true, 0, 15, 0), eom), errRec(ErrorBadRequest), func(s Stats) uint64 { return s.BadRequests }},
		{"no next protocol", cat(aead15, eom), errRec(ErrorBadRequest), func(s Stats) uint64 { return s.BadRequests }},
		{"cookie in request", cat(ntp, aead15, raw(RecordNewCookie, false, 1), eom), errRec(ErrorBadRequest),
			func(s Stats) uint64 { return s.BadRequests }},
		{"not NTPv4", cat(raw(RecordNextProtocol, true, 0, 9), aead15, eom), []Record{U16Record(RecordNextProtocol, true)},
			func(s Stats) uint64 { return s.Unsupported }},
		{"no common AEAD", cat(ntp, raw(RecordAEAD, true, 0, 17), eom),
			[]Record{U16Record(RecordNextProtocol, true, 0), U16Record(RecordAEAD, true)}, func(s Stats) uint64 { return s.Unsupported }},
		{"no AEAD record", cat(ntp, eom), []Record{U16Record(RecordNextProtocol, true, 0), U16Record(RecordAEAD, true)},
			func(s Stats) uint64 { return s.Unsupported }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.stats(srv.Stats())
			got, err := rawExchange(t, addr, ca, []string{ALPN}, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(got) != 2+CookiesPerResponse || !bytes.Equal(got[0].Body, []byte{0, 0}) || !bytes.Equal(got[1].Body, []byte{0, 15}) {
					t.Fatalf("response %v, want NTPv4, AEAD 15 and 8 cookies", got)
				}
			} else if !equalRecords(got, tt.want) {
				t.Fatalf("response %v, want %v", got, tt.want)
			}
			waitFor(t, func() bool { return tt.stats(srv.Stats()) == before+1 }, "the counter to rise")
		})
	}
}

func equalRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Critical != b[i].Critical || !bytes.Equal(a[i].Body, b[i].Body) {
			return false
		}
	}
	return true
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestServerRefusesBadClients(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	req := cat(raw(RecordNextProtocol, true, 0, 0), raw(RecordAEAD, true, 0, 15), eom)
	tests := []struct {
		name  string
		run   func(t *testing.T, addr string)
		stats func(Stats) uint64
	}{
		{"wrong ALPN", func(t *testing.T, addr string) {
			if _, err := rawExchange(t, addr, ca, []string{"h2"}, req); err == nil {
				t.Error("a client with ALPN h2 was served")
			}
		}, func(s Stats) uint64 { return s.TLSErrors }},
		{"no ALPN", func(t *testing.T, addr string) {
			if _, err := rawExchange(t, addr, ca, nil, req); err == nil {
				t.Error("a client without ALPN was served")
			}
		}, func(s Stats) uint64 { return s.TLSErrors }},
		{"TLS 1.2", func(t *testing.T, addr string) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), NextProtos: []string{ALPN}, MaxVersion: tls.VersionTLS12})
			if err == nil {
				c.Close()
				t.Error("a TLS 1.2 client was served")
			}
		}, func(s Stats) uint64 { return s.TLSErrors }},
		{"silent client", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("the server sent something to a client that said nothing")
			}
		}, func(s Stats) uint64 { return s.Timeouts }},
		{"request never ends", func(t *testing.T, addr string) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: []string{ALPN}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(req[:6])
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("the server answered half a request")
			}
		}, func(s Stats) uint64 { return s.Timeouts }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls, Timeout: 300 * time.Millisecond})
			tt.run(t, addr)
			waitFor(t, func() bool { return tt.stats(srv.Stats()) == 1 }, "the counter to rise")
			if st := srv.Stats(); st.Exchanges != 0 {
				t.Errorf("stats %+v: an exchange succeeded", st)
			}
		})
	}
}

func TestServerMaxConns(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls, MaxConns: 1, Timeout: 2 * time.Second})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return srv.Stats().Active == 1 }, "the idle connection to be served")
	_, err = Exchange(context.Background(), Config{Server: addr, TLS: &tls.Config{RootCAs: ca.pool()}})
	if err == nil {
		t.Fatal("served beyond MaxConns")
	}
	if st := srv.Stats(); st.Refused != 1 {
		t.Errorf("stats %+v, want 1 refused", st)
	}
	idle.Close()
	waitFor(t, func() bool { return srv.Stats().Active == 0 }, "the idle connection to end")
	if _, err := Exchange(context.Background(), Config{Server: addr, TLS: &tls.Config{RootCAs: ca.pool()}}); err != nil {
		t.Fatalf("after the idle connection ended: %v", err)
	}
}

func TestServerReloadsCertificate(t *testing.T) {
	oldCA, newCA := newTestCA(t, "old CA"), newTestCA(t, "new CA")
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(&oldCA.validLeaf(t).tls)
	_, addr := startServer(t, ServerConfig{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.Load(), nil }})
	cfg := Config{Server: addr, TLS: &tls.Config{RootCAs: newCA.pool()}}
	if _, err := Exchange(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "wrong CA") {
		t.Fatalf("with the old certificate: %v, want a wrong-CA error", err)
	}
	cert.Store(&newCA.validLeaf(t).tls)
	if _, err := Exchange(context.Background(), cfg); err != nil {
		t.Fatalf("with the new certificate: %v", err)
	}
}

func TestServerConcurrentClients(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		wg.Go(func() {
			_, err := Exchange(context.Background(), Config{Server: addr, TLS: &tls.Config{RootCAs: ca.pool()}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d exchanges at once in %v", n, time.Since(start))
	// The server counts an exchange once its connection is done, which
	// may be just after the client has its answer.
	waitFor(t, func() bool { return srv.Stats().Active == 0 }, "the connections to end")
	if st := srv.Stats(); st.Exchanges != n || st.Handshakes != n {
		t.Errorf("stats %+v, want %d exchanges", st, n)
	}
}

func TestNewServerChecks(t *testing.T) {
	leaf := newTestCA(t, "CA").validLeaf(t)
	tests := []struct {
		name    string
		cfg     ServerConfig
		wantErr string
	}{
		{"no cookies", ServerConfig{Certificate: &leaf.tls}, "no cookie maker"},
		{"no certificate", ServerConfig{Cookies: &fakeCookies{}}, "no certificate"},
		{"bad NTP server", ServerConfig{Certificate: &leaf.tls, Cookies: &fakeCookies{}, NTPServer: "a b"}, "NTP server name to announce"},
	}
	for _, tt := range tests {
		if _, err := NewServer(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func BenchmarkExchange(b *testing.B) {
	ca := newTestCA(b, "test CA")
	leaf := ca.validLeaf(b)
	_, addr := startServer(b, ServerConfig{Certificate: &leaf.tls})
	cfg := Config{Server: addr, TLS: &tls.Config{RootCAs: ca.pool()}}
	for b.Loop() {
		if _, err := Exchange(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// With SkipTimeChecks (a clock not yet synchronized) an expired
// certificate is accepted, but the chain and the name are still checked.
func TestExchangeSkipTimeChecks(t *testing.T) {
	ca := newTestCA(t, "test CA")
	other := newTestCA(t, "other CA")
	expired := ca.leaf(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	notYet := ca.leaf(t, time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
	for _, tt := range []struct {
		name    string
		cert    *tls.Certificate
		tls     *tls.Config
		wantErr string
	}{
		{"expired", &expired.tls, &tls.Config{RootCAs: ca.pool()}, ""},
		{"not yet valid", &notYet.tls, &tls.Config{RootCAs: ca.pool()}, ""},
		{"wrong CA", &expired.tls, &tls.Config{RootCAs: other.pool()}, "certificate"},
		{"wrong name", &expired.tls, &tls.Config{RootCAs: ca.pool(), ServerName: "ntp.example.net"}, "certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, ServerConfig{Certificate: tt.cert})
			res, err := Exchange(context.Background(), Config{Server: addr, TLS: tt.tls, SkipTimeChecks: true})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Exchange: %v", err)
			case tt.wantErr == "" && len(res.Cookies) == 0:
				t.Error("no cookies")
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Exchange: %v, want an error about the %s", err, tt.wantErr)
			}
			// Without SkipTimeChecks the dates count.
			if tt.wantErr == "" {
				if _, err := Exchange(context.Background(), Config{Server: addr, TLS: tt.tls}); err == nil {
					t.Error("the dates are not checked without SkipTimeChecks")
				}
			}
		})
	}
}

// The server uses a classical key exchange even with a client that offers
// the hybrid post-quantum one first (Go's default): see keyExchangeGroups;
// P-256 for a client that lists it before X25519 (prefersP256).
func TestServerKeyExchangeGroup(t *testing.T) {
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	_, addr := startServer(t, ServerConfig{Certificate: &leaf.tls})
	for _, offered := range [][]tls.CurveID{nil, {tls.X25519MLKEM768, tls.X25519}, {tls.CurveP256}} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: []string{ALPN},
			MinVersion: tls.VersionTLS13, CurvePreferences: offered})
		if err != nil {
			t.Fatalf("offering %v: %v", offered, err)
		}
		got := conn.ConnectionState().CurveID
		conn.Close()
		// Go's client lists X25519 before P-256 whatever its order here.
		want := tls.X25519
		if slices.Equal(offered, []tls.CurveID{tls.CurveP256}) {
			want = tls.CurveP256
		}
		if got != want {
			t.Errorf("offering %v: key exchange %v, want %v", offered, got, want)
		}
	}
}

func TestPrefersP256(t *testing.T) {
	const grease = tls.CurveID(0x0a0a)
	for _, tt := range []struct {
		groups []tls.CurveID
		want   bool
	}{
		{nil, false},
		// chrony 4.3 (GnuTLS 3.7): P-256, P-384, P-521, X25519, X448, FFDHE.
		{[]tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521, tls.X25519, 0x1e, 0x100}, true},
		// ntpsec (OpenSSL 3.0): X25519, P-256, X448, P-521, P-384.
		{[]tls.CurveID{tls.X25519, tls.CurveP256, 0x1e, tls.CurveP521, tls.CurveP384}, false},
		// Go 1.26: the hybrids first.
		{[]tls.CurveID{grease, tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.X25519, tls.CurveP256}, false},
		{[]tls.CurveID{grease, tls.CurveP384, tls.CurveP256}, true},
		{[]tls.CurveID{tls.CurveP384}, false},
	} {
		if got := prefersP256(tt.groups); got != tt.want {
			t.Errorf("prefersP256(%v) = %v, want %v", tt.groups, got, tt.want)
		}
	}
}
