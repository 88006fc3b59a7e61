//go:build linux

package interop

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// ntsServerStats is the `nts` part of `timectl serverstats -o json`.
type ntsServerStats struct {
	NTS *struct {
		Answered   uint64 `json:"answered"`
		NAKs       uint64 `json:"naks"`
		Handshakes uint64 `json:"ke_handshakes"`
		Exchanges  uint64 `json:"ke_exchanges"`
	} `json:"nts"`
	Dropped map[string]uint64 `json:"dropped"`
}

// TestServeNTSChronyd: timed serves NTS (its virtual clock as local
// stratum 5, NTS-KE on a free port with a certificate made here, the NTP
// port announced in NTS-KE), and a real chronyd client with nts selects it:
// `chronyc authdata` shows NTS with 8 cookies, `chronyc ntpdata` shows
// authenticated responses, timed's key file is written (mode 0600) and
// `timectl serverstats` counts the key exchange and the NTS responses.
func TestServeNTSChronyd(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	dir := t.TempDir()
	cert, key := writeNTSCert(t, dir)
	keyFile := filepath.Join(dir, "nts-keys")
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	kePort := peers.FreeTCPPort(t)
	tp := startTimed(t, timedConfig{SimOffset: "0ms", NoSources: true,
		Extra: serverSection(fmt.Sprintf("127.0.0.1:%d", port), "local: {stratum: 5}", "rate_limit: {interval: 0}",
			fmt.Sprintf("nts: {listen: [\"127.0.0.1:%d\"], certificate: %s, key: %s, key_file: %s}", kePort, cert, key, keyFile))}, "")
	dump := filepath.Join(dir, "chrony-nts")
	if err := os.Mkdir(dump, 0o700); err != nil {
		t.Fatal(err)
	}
	// The port on the server line is not the one used: chronyd takes the
	// NTP port timed announces in NTS-KE.
	client := peers.StartChronyClient(t,
		fmt.Sprintf("server 127.0.0.1 port %d nts ntsport %d iburst minpoll -2 maxpoll -2", port, kePort),
		"ntstrustedcerts "+cert, "ntsdumpdir "+dump)

	var sources, authdata, ntpdata string
	deadline := time.Now().Add(40 * time.Second)
	for {
		sources, _ = client.Chronyc(t, "sources")
		authdata, _ = client.Chronyc(t, "authdata")
		ntpdata, _ = client.Chronyc(t, "ntpdata")
		if strings.Contains(sources, "^* 127.0.0.1") && strings.Contains(ntpdata, "Authenticated   : Yes") {
			break
		}
		if time.Now().After(deadline) || tp.Exited() {
			t.Fatalf("chronyd did not select timed with NTS within 40 s:\n%s\n%s\n%s\ntimed: %s", sources, authdata, ntpdata, tp.Tail(20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("chronyc sources:\n%s\nchronyc authdata:\n%s\nchronyc ntpdata:\n%s", sources, authdata, ntpdata)
	// authdata: Name/IP address Mode KeyID Type KLen Last Atmp NAK Cook CLen
	var row []string
	for _, line := range strings.Split(authdata, "\n") {
		if f := strings.Fields(line); len(f) >= 10 && f[0] == "127.0.0.1" {
			row = f
		}
	}
	if row == nil || row[1] != "NTS" || row[3] != "15" || row[7] != "0" || row[8] != "8" {
		t.Errorf("chronyc authdata: want mode NTS, type 15 (AES-SIV-CMAC-256), no NAK and 8 cookies; got %q", row)
	}
	fields := chronycFields(ntpdata)
	for k, v := range map[string]string{"Stratum": "5", "Mode": "Server", "Authenticated": "Yes", "Remote port": fmt.Sprint(port)} {
		if fields[k] != v {
			t.Errorf("chronyc ntpdata %s: %q, want %q", k, fields[k], v)
		}
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v, want mode 0600", fi, err)
	}
	var st ntsServerStats
	if err := tp.query(t.Context(), &st, "serverstats"); err != nil {
		t.Fatal(err)
	}
	if st.NTS == nil || st.NTS.Exchanges == 0 || st.NTS.Handshakes == 0 || st.NTS.Answered == 0 || st.NTS.NAKs != 0 {
		t.Errorf("timectl serverstats: NTS %+v, dropped %v", st.NTS, st.Dropped)
	} else {
		t.Logf("timectl serverstats: %d key exchanges, %d NTS responses", st.NTS.Exchanges, st.NTS.Answered)
	}
}

// TestNTSTimedToTimed: one timed serves NTS (local stratum 3, 3 ms ahead of
// the system clock), another syncs to it over NTS with
// require_authenticated, next to a plain source that must not steer.
func TestNTSTimedToTimed(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	dir := t.TempDir()
	cert, key := writeNTSCert(t, dir)
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	kePort := peers.FreeTCPPort(t)
	srv := startTimed(t, timedConfig{Name: "server", SimOffset: "3ms", NoSources: true,
		Extra: serverSection(fmt.Sprintf("127.0.0.1:%d", port), "local: {stratum: 3}", "rate_limit: {interval: 0}",
			fmt.Sprintf("nts: {listen: [\"127.0.0.1:%d\"], certificate: %s, key: %s, key_file: %s}", kePort, cert, key, filepath.Join(dir, "keys")))}, "")
	// A plain server 50 ms off: with require_authenticated it must not win.
	plainPort := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	startTimed(t, timedConfig{Name: "plain", SimOffset: "50ms", NoSources: true,
		Extra: serverSection(fmt.Sprintf("127.0.0.1:%d", plainPort), "local: {stratum: 2}", "rate_limit: {interval: 0}")}, "")

	cfg := simulatedStart
	cfg.Name, cfg.Port = "client", port
	cfg.NTS = fmt.Sprintf("{port: %d, ca: %s}", kePort, cert)
	cfg.MorePorts = []int{plainPort}
	cfg.Extra = "engine: {require_authenticated: true}\n"
	client := startTimed(t, cfg, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := client.status(ctx)
		cancel()
		if err == nil && st.Engine.Synchronized && math.Abs(st.Clock.OffsetFromSystem-0.003) < 1e-3 {
			for _, s := range st.Engine.Sources {
				plain := strings.HasSuffix(s.Name, fmt.Sprintf(":%d", plainPort))
				if plain && (s.Authenticated || s.State != "unauthenticated") || !plain && (!s.Authenticated || s.State != "selected") {
					t.Errorf("client source %s: authenticated %v, state %s (%s)", s.Name, s.Authenticated, s.State, s.Reason)
				}
			}
			if len(st.Engine.Sources) != 2 {
				t.Errorf("client has %d sources, want 2", len(st.Engine.Sources))
			}
			t.Logf("client: %+.1f µs from the system clock (the server is +3000 µs), synchronized over NTS", st.Clock.OffsetFromSystem*1e6)
			break
		}
		if time.Now().After(deadline) || client.Exited() {
			t.Fatalf("the client did not follow the NTS server within 30 s: %+v %v\n%s", st, err, client.Tail(20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if st := srv.serverStats(t); st.Answered == 0 {
		t.Errorf("server: %+v", st)
	}
}

// TestServeNTSNtpsec: timed serves NTS in a namespace (NTP on port 1123,
// announced in NTS-KE), and ntpsec's ntpd, in the same namespace, uses it
// as an NTS server: ntpq shows the association authenticated, reachable and
// selected, with its cookies refilled.
func TestServeNTSNtpsec(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	ns := peers.NewNetns(t)
	dir := t.TempDir()
	cert, key := writeNTSCert(t, dir)
	tp := startTimed(t, timedConfig{SimOffset: "0ms", NoSources: true,
		Extra: serverSection("127.0.0.1:1123", "local: {stratum: 4}", "rate_limit: {interval: 0}",
			fmt.Sprintf("nts: {listen: [\"127.0.0.1:4460\"], certificate: %s, key: %s, key_file: %s}", cert, key, filepath.Join(dir, "nts-keys")))}, ns)
	client := peers.StartNtpsecClient(t, ns, "server 127.0.0.1 nts ca "+cert+" minpoll 3 maxpoll 3 iburst")

	var rv string
	deadline := time.Now().Add(40 * time.Second)
	for {
		rv, _ = peers.Ntpq(t, ns, "-c", "rv &1")
		if strings.Contains(rv, " auth,") && strings.Contains(rv, "sel_sys.peer") && strings.Contains(rv, "srcport=1123") {
			break
		}
		if time.Now().After(deadline) || tp.Exited() || client.Exited() {
			t.Fatalf("ntpsec did not select timed over NTS within 40 s:\n%s\nntpd: %s\ntimed: %s", rv, client.Tail(20), tp.Tail(20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("ntpq rv &1:\n%s", rv)
	for _, want := range []string{"authenb", "stratum=4", "ntscookies=8"} {
		if !strings.Contains(rv, want) {
			t.Errorf("ntpq rv &1 lacks %q:\n%s", want, rv)
		}
	}
	var st ntsServerStats
	if err := tp.query(t.Context(), &st, "serverstats"); err != nil {
		t.Fatal(err)
	}
	if st.NTS == nil || st.NTS.Exchanges == 0 || st.NTS.Answered == 0 || st.NTS.NAKs != 0 {
		t.Errorf("timectl serverstats: NTS %+v, dropped %v", st.NTS, st.Dropped)
	} else {
		t.Logf("timectl serverstats: %d key exchanges, %d NTS responses", st.NTS.Exchanges, st.NTS.Answered)
	}
}
