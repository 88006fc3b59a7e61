package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/internal/testcert"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
)

// testCert writes a new self-signed certificate for 127.0.0.1 and returns
// the certificate and key files and a pool that trusts it.
func testCert(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	c := testcert.New(t, dir, "127.0.0.1")
	return c.CertFile, c.KeyFile, c.Pool
}

// TestNTSService: NTS-KE answers with cookies the ring opens and announces
// the NTP port; the key file is made, rotated and saved, and read again
// when another host changed it; SIGHUP reads the certificate again and a
// broken one leaves the old in use.
func TestNTSService(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := testCert(t, dir)
	cfg := config.ServerConfig{
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:11123")},
		NTS: config.NTSServerConfig{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Certificate: certFile, Key: keyFile, KeyFile: filepath.Join(dir, "keys"),
			KeyRotation: time.Hour, KeysKept: 3, MaxConnections: 4, Timeout: 2 * time.Second},
	}
	s, err := startNTS(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	exchange := func() *ke.Result {
		t.Helper()
		r, err := ke.Exchange(t.Context(), ke.Config{Server: s.lns[0].Addr().String(), TLS: &tls.Config{RootCAs: roots}})
		if err != nil {
			t.Fatalf("NTS-KE: %v", err)
		}
		return r
	}
	r := exchange()
	if r.NTPPort != 11123 || len(r.Cookies) != ke.CookiesPerResponse {
		t.Errorf("NTS-KE: port %d, %d cookies; want 11123 and %d", r.NTPPort, len(r.Cookies), ke.CookiesPerResponse)
	}
	if _, err := s.ring.OpenCookie(r.Cookies[0]); err != nil {
		t.Errorf("the ring does not open the cookie: %v", err)
	}
	if fi, err := os.Stat(cfg.NTS.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}

	// A restart reads the same keys: the cookie still opens.
	again, err := nts.LoadKeyRing(cfg.NTS.KeyFile, time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.OpenCookie(r.Cookies[0]); err != nil {
		t.Errorf("the saved ring does not open the cookie: %v", err)
	}

	// Rotation on schedule is saved.
	before, _ := os.ReadFile(cfg.NTS.KeyFile)
	if err := s.rotate(time.Now().Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(cfg.NTS.KeyFile); string(after) == string(before) {
		t.Error("the rotated ring was not saved")
	}
	s.checkKeyFile() // its own write is no change
	if _, err := s.ring.OpenCookie(r.Cookies[0]); err != nil {
		t.Errorf("after a rotation the older key opens no more: %v", err)
	}

	// Another host writes the shared file: it is read again.
	other, _ := nts.NewKeyRing(time.Hour, 3)
	other.Rotate(time.Now())
	if err := other.Save(cfg.NTS.KeyFile); err != nil {
		t.Fatal(err)
	}
	c2s := make([]byte, nts.KeySize)
	cookies, _ := other.MakeCookies(nts.AEADAESSIVCMAC256, c2s, c2s, 1)
	if _, err := s.ring.OpenCookie(cookies[0]); err == nil {
		t.Fatal("a cookie of the other host opens before its key file is read")
	}
	s.checkKeyFile()
	if _, err := s.ring.OpenCookie(cookies[0]); err != nil {
		t.Errorf("the other host's cookie does not open after its key file was read: %v", err)
	}

	// SIGHUP: a new certificate is used; a broken one leaves it.
	old := s.cert.Load()
	_, _, roots = testCert(t, dir)
	s.reloadCertificate()
	if s.cert.Load() == old {
		t.Error("the certificate was not read again")
	}
	exchange()
	os.WriteFile(certFile, []byte("broken"), 0o644)
	cur := s.cert.Load()
	s.reloadCertificate()
	if s.cert.Load() != cur {
		t.Error("a broken certificate replaced the good one")
	}
	exchange()
	// The server counts an exchange once its response is written, which
	// the client may read first.
	eventually(t, "three exchanges counted", func() bool { return s.stats(0, 0).Exchanges == 3 })
	if st := s.stats(0, 0); st.Exchanges != 3 || st.Handshakes != 3 {
		t.Errorf("stats: %+v", st)
	}
}

func TestNTSServiceErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testCert(t, dir)
	good := config.NTSServerConfig{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Certificate: certFile, Key: keyFile, KeyFile: filepath.Join(dir, "keys"), KeyRotation: time.Hour, KeysKept: 3}
	os.WriteFile(filepath.Join(dir, "bad-keys"), []byte("not a key file"), 0o600)
	tests := []struct {
		name string
		edit func(*config.NTSServerConfig)
	}{
		{"missing certificate", func(c *config.NTSServerConfig) { c.Certificate = filepath.Join(dir, "none.crt") }},
		{"key of no certificate", func(c *config.NTSServerConfig) { c.Key = certFile }},
		{"corrupt key file", func(c *config.NTSServerConfig) { c.KeyFile = filepath.Join(dir, "bad-keys") }},
		{"key file in no directory", func(c *config.NTSServerConfig) { c.KeyFile = filepath.Join(dir, "none", "keys") }},
		{"address in use", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			if tt.edit != nil {
				tt.edit(&c)
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				c.Listen = []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}
			}
			s, err := startNTS(config.ServerConfig{NTS: c}, zap.NewNop())
			if err == nil {
				s.close()
				t.Fatal("started")
			}
			t.Log(err)
		})
	}
}

// TestNTSReload: NTS starts with the daemon, goes off and on again on
// reload (on the NTP server's sockets and with new ones), stays off with a
// clear error when the new settings cannot start, and stops with the
// daemon.
func TestNTSReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := testCert(t, dir)
	freeTCP := func() netip.AddrPort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return netip.MustParseAddrPort(ln.Addr().String())
	}
	on := config.NTSServerConfig{Listen: []netip.AddrPort{freeTCP()}, Certificate: certFile, Key: keyFile,
		KeyFile: filepath.Join(dir, "keys"), KeyRotation: time.Hour, KeysKept: 3, MaxConnections: 4, Timeout: time.Second}
	cfg := virtualConfig(0)
	cfg.Server = config.Default().Server
	cfg.Server.Listen = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t))}
	cfg.Server.NTS = on
	d, _ := testDaemon(t, cfg, "", newWorld(), nil, nil)
	stop := start(t, d)
	keOK := func(ap netip.AddrPort) bool {
		_, err := ke.Exchange(t.Context(), ke.Config{Server: ap.String(), TLS: &tls.Config{RootCAs: roots}, Timeout: time.Second})
		return err == nil
	}
	check := func(step string, want bool, ap netip.AddrPort) {
		t.Helper()
		st := d.ServerStats()
		if !st.Enabled || (st.NTS != nil) != want || keOK(ap) != want {
			t.Errorf("%s: server %v, NTS %+v; want NTS on: %v", step, st.Enabled, st.NTS, want)
		}
	}
	check("start", true, on.Listen[0])
	eventually(t, "the exchange counted", func() bool { n := d.NTS().Server; return n != nil && n.Exchanges == 1 })
	// timectl nts: the key in use and its rotation, the cookies of the
	// key exchange just made.
	if n := d.NTS().Server; n == nil || len(n.KeyID) != 8 || n.KeyRotatesIn <= 3500 || n.KeyRotatesIn > 3600 ||
		n.Exchanges != 1 || n.CookiesIssued != ke.CookiesPerResponse {
		t.Errorf("NTS().Server = %+v; want a key rotating within the hour and one exchange's cookies", n)
	}

	apply := func(nc config.NTSServerConfig, listen ...netip.AddrPort) {
		t.Helper()
		next := *d.cfg
		next.Server.NTS = nc
		if listen != nil {
			next.Server.Listen = listen
		}
		if err := d.apply(&next); err != nil {
			t.Fatal(err)
		}
	}
	apply(config.NTSServerConfig{KeyFile: on.KeyFile, KeyRotation: time.Hour, KeysKept: 3})
	check("off", false, on.Listen[0])
	apply(on)
	check("on again", true, on.Listen[0])
	// New NTP sockets, same NTS settings but another port announced: a
	// new NTS-KE server on the same address.
	apply(on, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t)))
	check("new sockets", true, on.Listen[0])
	bad := on
	bad.Listen = []netip.AddrPort{freeTCP()}
	bad.Certificate = filepath.Join(dir, "none.crt")
	apply(bad)
	check("broken certificate", false, bad.Listen[0])
	apply(on)
	check("fixed", true, on.Listen[0])
	stop()
	if keOK(on.Listen[0]) {
		t.Error("NTS-KE still answers after the daemon stopped")
	}
}
