//go:build linux

package interop

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testcert"
	"github.com/timed-project/timed/internal/testenv"
)

// writeNTSCert writes a self-signed certificate for localhost, 127.0.0.1
// and ::1 and its key into dir, and returns their paths (the certificate is
// also the CA a client trusts).
func writeNTSCert(t *testing.T, dir string) (certFile, keyFile string) {
	c := testcert.New(t, dir)
	return c.CertFile, c.KeyFile
}

// TestNTSClientChrony: timed (virtual clock, 200 ms and +50 ppm off) with
// NTS against a real chronyd NTS server on loopback: the key exchange with
// chronyd's NTS-KE, authenticated NTP, sync within 30 s, the source shown
// authenticated, and chronyd counting NTS-KE connections and authenticated
// packets.
func TestNTSClientChrony(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	chronyc := testenv.LookPath(t, "chronyc", "/usr/bin/chronyc")
	binaries(t)
	dir := t.TempDir()
	certFile, keyFile := writeNTSCert(t, dir)
	dump := filepath.Join(dir, "ntsdump")
	sockDir := filepath.Join(dir, "run")
	for _, d := range []string{dump, sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(sockDir, "chronyd.sock")
	kePort := peers.FreeTCPPort(t)
	srv := peers.StartChronyServer(t, peers.ChronyOptions{RunAsRoot: true, Extra: []string{
		fmt.Sprintf("ntsport %d", kePort),
		"ntsservercert " + certFile,
		"ntsserverkey " + keyFile,
		"ntsdumpdir " + dump,
		"bindaddress ::1", // else NTS-KE listens on [::]
		"bindcmdaddress " + sock,
	}})

	cfg := simulatedStart
	// The entry's port is not chronyd's: the NTP port must come from
	// chronyd's NTS-KE (its Port record).
	cfg.Port = 9
	cfg.NTS = fmt.Sprintf("{port: %d, ca: %s}", kePort, certFile)
	tp := startTimed(t, cfg, "")
	start := time.Now()
	var synced time.Duration = -1
	var st statusReply
	for time.Since(start) < syncWithin {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := tp.status(ctx)
		cancel()
		if err == nil {
			st = s
			if s.Engine.Synchronized && math.Abs(s.Clock.OffsetFromSystem) < syncedOffset {
				synced = time.Since(tp.Started())
				break
			}
		}
		if tp.Exited() {
			t.Fatalf("timed exited: %v\n%s", tp.Err(), tp.Tail(30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("time to |offset from system clock| < 1 ms with NTS: %s; clock %+.1f µs, message %q",
		fmtAt(synced), st.Clock.OffsetFromSystem*1e6, st.Engine.Message)
	if synced < 0 {
		t.Fatalf("not synchronized within %v:\n%s", syncWithin, tp.Tail(30))
	}
	// It stays synchronized: 10 s more at 1 Hz.
	smp := tp.sample(time.Second)
	time.Sleep(10 * time.Second)
	var offs []float64
	for _, s := range smp.Stop() {
		if s.Err == nil {
			offs = append(offs, s.Status.Clock.OffsetFromSystem)
		}
	}
	t.Logf("then over 10 s: RMS %.1f µs, max %.1f µs (%d samples)", rms(offs)*1e6, maxAbs(offs)*1e6, len(offs))
	if len(offs) < 8 || maxAbs(offs) >= syncedOffset {
		t.Errorf("did not stay within 1 ms of the system clock: %d samples, max %.1f µs", len(offs), maxAbs(offs)*1e6)
	}
	if strings.Contains(tp.Output(), "dropped packet") {
		t.Errorf("timed dropped packets from chronyd:\n%s", tp.Tail(30))
	}
	if !strings.Contains(tp.Output(), "NTS key exchange done") {
		t.Errorf("no key exchange logged:\n%s", tp.Tail(30))
	}

	var src struct {
		Engine struct {
			Sources []struct {
				Name          string `json:"name"`
				State         string `json:"state"`
				Authenticated bool   `json:"authenticated"`
			} `json:"sources"`
		} `json:"engine"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := tp.query(ctx, &src, "sources")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Engine.Sources) != 1 || !src.Engine.Sources[0].Authenticated {
		t.Errorf("timectl sources -o json: %+v; want one authenticated source", src.Engine.Sources)
	} else if want := srv.Addr.String(); !strings.Contains(tp.Output(), `"ntp_server":"`+want+`"`) {
		t.Errorf("the key exchange did not name chronyd's NTP server %s:\n%s", want, tp.Tail(30))
	} else {
		t.Logf("source %s %s, authenticated", src.Engine.Sources[0].Name, src.Engine.Sources[0].State)
	}

	out, err := exec.Command(chronyc, "-h", sock, "-n", "serverstats").CombinedOutput()
	if err != nil {
		t.Fatalf("chronyc serverstats: %v\n%s", err, out)
	}
	t.Logf("chronyc serverstats:\n%s", out)
	stats := chronycFields(string(out))
	for _, k := range []string{"NTS-KE connections accepted", "Authenticated NTP packets"} {
		var n int
		if _, err := fmt.Sscan(stats[k], &n); err != nil || n < 1 {
			t.Errorf("chronyc serverstats %s: %q, want at least 1", k, stats[k])
		}
	}
}

// TestNTSClientNtpsec: timed with nts: against ntpsec's ntpd serving NTS
// (NTS-KE on 4460, NTP on 123) inside a network namespace.
func TestNTSClientNtpsec(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	peers.NtpsecPaths(t)
	binaries(t)
	dir := t.TempDir()
	cert, key := writeNTSCert(t, dir)
	ns := peers.NewNetns(t)
	peers.StartNtpsecServer(t, ns, "nts enable", "nts cert "+cert, "nts key "+key, "nts cookie "+filepath.Join(dir, "ntpsec-cookies"))
	cfg := simulatedStart
	cfg.Port = 123
	cfg.NTS = fmt.Sprintf("{ca: %s}", cert)
	tp := startTimed(t, cfg, ns)
	deadline := time.Now().Add(syncWithin)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := tp.status(ctx)
		cancel()
		if err == nil && st.Engine.Synchronized && math.Abs(st.Clock.OffsetFromSystem) < syncedOffset {
			if len(st.Engine.Sources) != 1 || !st.Engine.Sources[0].Authenticated {
				t.Errorf("sources %+v, want one authenticated", st.Engine.Sources)
			}
			t.Logf("synchronized to ntpsec over NTS %s after start; clock %+.1f µs from the system clock",
				time.Since(tp.Started()).Round(100*time.Millisecond), st.Clock.OffsetFromSystem*1e6)
			return
		}
		if time.Now().After(deadline) || tp.Exited() {
			t.Fatalf("not synchronized to ntpsec over NTS within %v: %+v %v\n%s", syncWithin, st.Engine, err, tp.Tail(30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
