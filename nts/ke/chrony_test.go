package ke

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"github.com/timed-project/timed/nts"
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
	sess, err := nts.NewClientSession(res.AEAD, res.C2S, res.S2C)
	if err != nil {
		t.Fatal(err)
	}
	header := make([]byte, 48)
	header[0] = 4<<3 | 3 // NTPv4, client
	_, _ = rand.Read(header[40:48])
	req, uid, err := sess.AppendRequest(header, res.Cookies[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ntp.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = ntp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := ntp.Read(buf)
	if err != nil {
		t.Fatalf("no answer from chronyd to an NTS request: %v\n%s", err, p.Tail(20))
	}
	fresh, err := sess.VerifyResponse(buf[:n], uid)
	if err != nil {
		t.Fatalf("chronyd's NTS response does not verify with S2C: %v", err)
	}
	if !bytes.Equal(buf[24:32], req[40:48]) || buf[0]&7 != 4 {
		t.Errorf("chronyd's response does not answer the request: %x", buf[:n])
	}
	if len(fresh) != 2 {
		t.Errorf("chronyd's response carries %d new cookies, want 2 (one for the cookie, one for the placeholder)", len(fresh))
	}
	swapped, _ := nts.NewClientSession(res.AEAD, res.S2C, res.C2S)
	if _, err := swapped.VerifyResponse(buf[:n], uid); err == nil {
		t.Error("chronyd's NTS response verifies with C2S too")
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
	ring, err := nts.NewKeyRing(time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	srv, addr := startServer(t, ServerConfig{Certificate: &leaf.tls, Cookies: ring, NTPPort: uint16(ntpPort)})
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

	// The server counts the exchange once its response is written, which
	// chronyd may act on first.
	waitFor(t, func() bool { return srv.Stats().Exchanges == 1 }, "the exchange to be counted")
	st := srv.Stats()
	if st.Handshakes != 1 || st.Exchanges != 1 || st.TLSErrors+st.BadRequests+st.Unsupported+st.InternalErrors != 0 {
		t.Errorf("server stats %+v, want 1 handshake, 1 exchange, no error", st)
	}
	// chronyd's request carries one of the server's cookies and is sealed
	// with the C2S key the server exported into it.
	if _, err := nts.ReadRequest(buf[:n], ring); err != nil {
		t.Errorf("chronyd's NTS request does not verify with the server's cookie: %v", err)
	}
	// chronyd logs the port negotiated in NTS-KE when it takes it up.
	waitFor(t, func() bool { return strings.Contains(output(), "changed port to "+strconv.Itoa(ntpPort)) },
		"chronyd to log the negotiated port")
	if strings.Contains(output(), "NTS-KE") {
		t.Errorf("chronyd reported an NTS-KE problem:\n%s", output())
	}
}
