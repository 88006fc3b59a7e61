package ke

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// freeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// needRoot calls testenv.Missing unless the test runs as root: chronyd
// runs as root here (-u root), reading files in the test's directories.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (chronyd -u root needs it)")
	}
}

// waitTCP waits up to 10 s until addr accepts TCP connections.
func waitTCP(t *testing.T, addr string, p *peers.Proc) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if p.Exited() {
			t.Fatalf("%s exited: %v\n%s", p.Name(), p.Err(), p.Tail(20))
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s does not accept connections on %s\n%s", p.Name(), addr, p.Tail(20))
}

// TestChronyServer runs Exchange against chronyd's NTS-KE server.
func TestChronyServer(t *testing.T) {
	needRoot(t)
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	dir := t.TempDir()
	certFile := writeFile(t, dir, "server.crt", leaf.certPEM)
	keyFile := writeFile(t, dir, "server.key", leaf.keyPEM)
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	dumpDir := filepath.Join(dir, "nts")
	if err := os.Mkdir(dumpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	ntpPort := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	ntsPort := freeTCPPort(t)
	conf := filepath.Join(dir, "server.conf")
	lines := []string{
		"port " + strconv.Itoa(ntpPort),
		"bindaddress 127.0.0.1",
		"bindaddress ::1", // else NTS-KE listens on [::]
		"allow 127.0.0.1",
		"local stratum 1",
		"cmdport 0",
		"bindcmdaddress /",
		"pidfile " + filepath.Join(dir, "server.pid"),
		"ntsport " + strconv.Itoa(ntsPort),
		"ntsservercert " + certFile,
		"ntsserverkey " + keyFile,
		"ntsdumpdir " + dumpDir,
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// -u root: as its own user chronyd could not read the key in this
	// root-owned directory (peers.StartChronyServer has no such option).
	p := peers.Start(t, peers.ProcOptions{Name: "chronyd-nts-server", Dir: dir}, chronyd, "-x", "-d", "-u", "root", "-f", conf)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ntsPort))
	waitTCP(t, addr, p)

	start := time.Now()
	res, err := Exchange(context.Background(), Config{Server: addr, CAFile: caFile, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Tail(20))
	}
	t.Logf("NTS-KE with chronyd in %v: NTP %s, AEAD %d, %d cookies of %d bytes", time.Since(start), res.NTPAddr(), res.AEAD, len(res.Cookies), len(res.Cookies[0]))
	if len(res.Cookies) != 8 {
		t.Errorf("%d cookies, want 8", len(res.Cookies))
	}
	if len(res.C2S) != 32 || len(res.S2C) != 32 || bytes.Equal(res.C2S, res.S2C) {
		t.Errorf("keys C2S %x S2C %x: want two different 32-byte keys", res.C2S, res.S2C)
	}
	if res.AEAD != AEADAESSIVCMAC256 {
		t.Errorf("AEAD %d, want 15", res.AEAD)
	}
	if res.NTPServer != "127.0.0.1" || int(res.NTPPort) != ntpPort {
		t.Errorf("NTP server %s, want 127.0.0.1:%d", res.NTPAddr(), ntpPort)
	}

	// The keys and a cookie work with chronyd's NTS NTP server: it accepts
	// a request sealed with C2S, and its answer opens with S2C.
	ntp, err := net.Dial("udp", res.NTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer ntp.Close()
	req, uid := ntsRequest(res.Cookies[0], res.C2S)
	if _, err := ntp.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = ntp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := ntp.Read(buf)
	if err != nil {
		t.Fatalf("no answer from chronyd to an NTS request: %v\n%s", err, p.Tail(20))
	}
	plain, enc, err := openNTS(buf[:n], res.S2C)
	if err != nil {
		t.Fatalf("chronyd's NTS response does not open with S2C: %v", err)
	}
	if !bytes.Equal(plain[efUniqueID], uid) || !bytes.Equal(buf[24:32], req[40:48]) || buf[0]&7 != 4 {
		t.Errorf("chronyd's response does not answer the request: %x", buf[:n])
	}
	if _, _, err := openNTS(buf[:n], res.C2S); err == nil {
		t.Error("chronyd's NTS response opens with C2S too")
	}
	if len(enc[efCookie]) == 0 {
		t.Errorf("chronyd's response carries no new cookie: %v", enc)
	}
	t.Logf("chronyd answered an NTS request made with the exported keys: %d bytes, stratum %d", n, buf[1])

	// Sequential exchanges per second with the same client, chronyd and
	// Server side by side (a figure for the log, not a criterion: both
	// ends share the 2 cores).
	_, ours := startServer(t, ServerConfig{Certificate: &leaf.tls})
	rate := func(addr string) float64 {
		const n = 100
		start := time.Now()
		for range n {
			if _, err := Exchange(context.Background(), Config{Server: addr, CAFile: caFile}); err != nil {
				t.Fatal(err)
			}
		}
		return n / time.Since(start).Seconds()
	}
	chronyRate, ourRate := rate(addr), rate(ours)
	t.Logf("sequential NTS-KE exchanges per second: chronyd %.0f, ours %.0f (%.2fx)", chronyRate, ourRate, ourRate/chronyRate)
}

// TestChronyClient runs chronyd -Q as an NTS client against Server. The NTS
// NTP part cannot succeed (no NTS NTP server exists yet), so the test
// listens on the NTP port it announces and checks that chronyd's first NTS
// request carries one of the cookies the server gave it.
func TestChronyClient(t *testing.T) {
	needRoot(t)
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	ca := newTestCA(t, "test CA")
	leaf := ca.validLeaf(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	ntpPort := udp.LocalAddr().(*net.UDPAddr).Port
	cookies := &fakeCookies{}
	srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls, Cookies: cookies, NTPPort: uint16(ntpPort)})
	_, ntsPort, _ := net.SplitHostPort(addr)

	cmd := peers.Command(t, chronyd, "-Q", "-t", "10", "-u", "root",
		"server 127.0.0.1 nts ntsport "+ntsPort+" iburst",
		"ntstrustedcerts "+caFile)
	logFile, err := os.Create(filepath.Join(dir, "chronyd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	output := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		t.Logf("chronyd -Q output:\n%s", output())
	}()

	_ = udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := udp.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no NTP request from chronyd after NTS-KE: %v (server stats %+v)", err, srv.Stats())
	}
	t.Logf("chronyd's NTS request from %v: %d bytes", from, n)

	st := srv.Stats()
	if st.Handshakes != 1 || st.Exchanges != 1 || st.TLSErrors+st.BadRequests+st.Unsupported+st.InternalErrors != 0 {
		t.Errorf("server stats %+v, want 1 handshake, 1 exchange, no error", st)
	}
	cookies.mu.Lock()
	if len(cookies.c2s) != 1 || len(cookies.c2s[0]) != 32 || len(cookies.s2c[0]) != 32 {
		t.Errorf("cookie maker saw keys %x / %x, want one pair of 32 bytes", cookies.c2s, cookies.s2c)
	}
	cookies.mu.Unlock()

	fields, err := extensionFields(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	cookie, ok := fields[efCookie]
	if !ok {
		t.Fatalf("chronyd's request has no NTS Cookie extension field: fields %v", fields)
	}
	if len(cookie) != 100 || cookie[0] < 1 || cookie[0] > CookiesPerResponse || !bytes.Equal(cookie, bytes.Repeat(cookie[:1], 100)) {
		t.Errorf("chronyd sent cookie %x, not one the server made", cookie)
	}
	// chronyd sealed its request with the C2S key the server exported.
	cookies.mu.Lock()
	c2s := cookies.c2s[0]
	cookies.mu.Unlock()
	if _, _, err := openNTS(buf[:n], c2s); err != nil {
		t.Errorf("chronyd's NTS request does not open with the exported C2S key: %v", err)
	}
	// chronyd logs the port negotiated in NTS-KE when it takes it up.
	waitFor(t, func() bool { return strings.Contains(output(), "changed port to "+strconv.Itoa(ntpPort)) },
		"chronyd to log the negotiated port")
	if strings.Contains(output(), "NTS-KE") {
		t.Errorf("chronyd reported an NTS-KE problem:\n%s", output())
	}
}

// NTS extension field types (RFC 8915 section 5.7).
const (
	efUniqueID      = 0x0104
	efCookie        = 0x0204
	efAuthenticator = 0x0404
)

// ef encodes an NTP extension field, its body padded to 4 bytes.
func ef(typ uint16, body []byte) []byte {
	padded := (len(body) + 3) &^ 3
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(4+padded))
	return append(append(b, body...), make([]byte, padded-len(body))...)
}

// ntsRequest is an NTS-protected NTPv4 client request with a new unique
// identifier and the cookie, sealed with the C2S key.
func ntsRequest(cookie, c2s []byte) (pkt, uid []byte) {
	pkt = make([]byte, 48)
	pkt[0] = 4<<3 | 3 // NTPv4, client
	_, _ = rand.Read(pkt[40:48])
	uid = make([]byte, 32)
	_, _ = rand.Read(uid)
	pkt = append(pkt, ef(efUniqueID, uid)...)
	pkt = append(pkt, ef(efCookie, cookie)...)
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	sealed := sivSeal(c2s, nonce, pkt, nil)
	auth := binary.BigEndian.AppendUint16(nil, uint16(len(nonce)))
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(sealed)))
	auth = append(append(auth, nonce...), sealed...)
	return append(pkt, ef(efAuthenticator, auth)...), uid
}

// openNTS checks the authenticator of an NTS-protected packet with key and
// returns the plain extension fields and the decrypted ones.
func openNTS(pkt, key []byte) (plain, encrypted map[uint16][]byte, err error) {
	plain, err = extensionFields(pkt)
	if err != nil {
		return nil, nil, err
	}
	auth, ok := plain[efAuthenticator]
	if !ok || len(auth) < 4 {
		return nil, nil, errors.New("no NTS authenticator")
	}
	// The associated data is everything before the authenticator, which
	// NTS puts last.
	ad := pkt[:len(pkt)-4-len(auth)]
	nl, cl := int(binary.BigEndian.Uint16(auth)), int(binary.BigEndian.Uint16(auth[2:]))
	nonceEnd := 4 + (nl+3)&^3
	if nonceEnd+cl > len(auth) {
		return nil, nil, errors.New("authenticator lengths overrun it")
	}
	p, err := sivOpen(key, auth[4:4+nl], ad, auth[nonceEnd:nonceEnd+cl])
	if err != nil {
		return nil, nil, err
	}
	encrypted, err = extensionFields(append(make([]byte, 48), p...))
	return plain, encrypted, err
}

// extensionFields splits the NTPv4 extension fields after the 48-byte
// header by type (the first of each type).
func extensionFields(pkt []byte) (map[uint16][]byte, error) {
	fields := map[uint16][]byte{}
	if len(pkt) < 48 {
		return nil, errShort
	}
	for b := pkt[48:]; len(b) > 0; {
		if len(b) < 4 {
			return nil, errShort
		}
		typ, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return nil, errShort
		}
		if _, dup := fields[typ]; !dup {
			fields[typ] = b[4:l]
		}
		b = b[l:]
	}
	return fields, nil
}

var errShort = errors.New("malformed NTP extension field")
