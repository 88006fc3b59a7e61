//go:build linux && bench

package bench

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/ntpload"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testcert"
	"github.com/timed-project/timed/nts/ke"
)

var (
	flagNTSRounds = flag.Int("nts-rounds", 3, "rounds of the NTS benchmark; in each, chronyd and timed take turns")
	flagKELeg     = flag.Duration("ke-leg", 3*time.Second, "how long each NTS-KE run lasts")
	flagKEClients = flag.Int("ke-clients", 4, "NTS-KE clients running at once")
)

// TestNTSBench measures chronyd's and timed's NTS servers side by side:
// NTS-protected NTP responses per server CPU-second at a saturating rate
// (and plain ones from the same process, for the ratio the issue asks),
// and NTS-KE handshakes per second and per server CPU-second.
func TestNTSBench(t *testing.T) {
	e := setup(t)
	cert := testcert.New(t, e.dir)
	var legs []NTSLeg
	for r := 1; r <= *flagNTSRounds; r++ {
		for _, s := range []string{Chronyd, Timed} {
			leg := NTSLeg{Server: s, Round: r}
			t.Run(fmt.Sprintf("round%d/%s", r, s), func(t *testing.T) { e.measureNTS(t, &leg, cert) })
			legs = append(legs, leg)
		}
	}
	body := e.ntsReport(legs)
	t.Logf("\n%s", body)
	if os.Getenv("TIMED_WRITE_PERF") != "1" {
		return
	}
	doc := filepath.Join(peers.RepoRoot(t), "docs", "PERFORMANCE.md")
	if err := WriteSection(doc, NTSSection, body); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the NTS section of %s", doc)
}

// startNTS starts server s serving NTP on e.addr and NTS-KE on kePort with
// cert, pinned like the NTP benchmark's servers, and returns its process.
func (e *env) startNTS(t *testing.T, s string, kePort int, cert *testcert.Cert) int {
	t.Helper()
	if e.pinned {
		pinSelf(t, e.serverCPU)
		defer pinSelf(t, e.loadCPUs)
	}
	dir := t.TempDir()
	switch s {
	case Chronyd:
		dump := filepath.Join(dir, "ntsdump")
		if err := os.Mkdir(dump, 0o700); err != nil {
			t.Fatal(err)
		}
		extra := append([]string{
			"ntsport " + strconv.Itoa(kePort),
			"ntsservercert " + cert.CertFile,
			"ntsserverkey " + cert.KeyFile,
			"ntsdumpdir " + dump,
		}, chronyExtra...)
		c := peers.StartChronyServer(t, peers.ChronyOptions{Addr: e.addr.Addr(), Port: int(e.addr.Port()), RunAsRoot: true, Extra: extra})
		return c.Pid()
	case Timed:
		conf := filepath.Join(dir, "timed.yaml")
		text := fmt.Sprintf(timedConfig, filepath.Join(dir, "timed.sock"), e.addr) +
			fmt.Sprintf("  nts: {listen: [\"127.0.0.1:%d\"], certificate: %s, key: %s, key_file: %s}\n",
				kePort, cert.CertFile, cert.KeyFile, filepath.Join(dir, "nts-keys"))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p := peers.Start(t, peers.ProcOptions{Name: "timed", Dir: dir}, e.timed, "-c", conf)
		peers.WaitNTP(t, e.addr, p)
		return p.Pid()
	}
	t.Fatalf("unknown server %q (want chronyd or timed)", s)
	return 0
}

func (e *env) measureNTS(t *testing.T, leg *NTSLeg, cert *testcert.Cert) {
	kePort := peers.FreeTCPPort(t)
	pid := e.startNTS(t, leg.Server, kePort, cert)
	keAddr := fmt.Sprintf("127.0.0.1:%d", kePort)
	waitKE(t, keAddr, cert.CertFile)
	leg.Plain, _, _ = e.load(t, pid, "-burst", "16")
	leg.NTS, leg.Others, _ = e.load(t, pid, "-burst", "16", "-nts", keAddr, "-nts-ca", cert.CertFile)
	if leg.NTS.Kissed > 0 {
		t.Errorf("%s sent kisses to NTS requests: %v", leg.Server, leg.NTS.Kisses)
	}
	if leg.NTS.Answered == 0 {
		t.Fatalf("%s answered no NTS request", leg.Server)
	}
	leg.KE = keRate(t, pid, ke.Config{Server: keAddr, CAFile: cert.CertFile})
	// Go's client cannot list P-256 before X25519; offering P-256 alone
	// costs the server what chrony's client (P-256 first, a key share for
	// each) does.
	leg.KEP256 = keRate(t, pid, ke.Config{Server: keAddr, CAFile: cert.CertFile, TLS: &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}})
	t.Logf("%s: NTS %.0f responses/s, %.0f per CPU-second (plain %.0f per CPU-second); NTS-KE %.0f handshakes/s, %.0f per server CPU-second (%d failed); with P-256 %.0f/s, %.0f per server CPU-second (%d failed)",
		leg.Server, leg.NTS.ResponseRate, leg.NTS.PerCPUSecond, leg.Plain.PerCPUSecond, leg.KE.PerSecond(), leg.KE.PerCPUSecond(), leg.KE.Failed,
		leg.KEP256.PerSecond(), leg.KEP256.PerCPUSecond(), leg.KEP256.Failed)
}

// waitKE waits until the NTS-KE server completes an exchange.
func waitKE(t *testing.T, addr, ca string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = ke.Exchange(context.Background(), ke.Config{Server: addr, CAFile: ca}); err == nil {
			return
		}
	}
	t.Fatalf("NTS-KE server %s: %v", addr, err)
}

// keRate runs *flagKEClients NTS-KE clients at once, each exchange after
// the other, for *flagKELeg, and counts the exchanges completed and the
// CPU time of the server's process and its children (chronyd's NTS-KE
// helpers).
func keRate(t *testing.T, pid int, cfg ke.Config) KERun {
	t.Helper()
	waitQuiet(t)
	var done, failed atomic.Int64
	cpu0 := treeCPU(t, pid)
	start := time.Now()
	deadline := start.Add(*flagKELeg)
	var wg sync.WaitGroup
	for range *flagKEClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := ke.Exchange(context.Background(), cfg); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return KERun{Exchanges: int(done.Load()), Failed: int(failed.Load()),
		Seconds: time.Since(start).Seconds(), ServerCPU: (treeCPU(t, pid) - cpu0).Seconds()}
}

// treeCPU is the CPU time of process pid and its children.
func treeCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	total, err := ntpload.ProcessCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Field 4, after the command name in parentheses, is the parent.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if c, err := ntpload.ProcessCPU(child); err == nil {
			total += c
		}
	}
	return total
}

func (e *env) ntsReport(legs []NTSLeg) string {
	var b strings.Builder
	b.WriteString(writtenBy("bench-nts", "TestNTSBench"))
	fmt.Fprintf(&b, "Method: in each of %d rounds, chronyd 4.3 and timed serve NTP and NTS-KE with the same ECDSA P-256 certificate, "+
		"configured as in the NTP benchmark above (rate limits on but out of reach), pinned to one CPU, in turn. cmd/ntpload loads each from %d client addresses "+
		"for %s, first with plain requests and then with NTS requests (`-nts`: 16 NTS-KE exchanges give 16 clients' keys and cookies; every request carries a fresh "+
		"unique identifier, a cookie and an authenticator, with no placeholders, so each response carries one new cookie). "+
		"Then %d NTS-KE clients in the benchmark's process (Go's crypto/tls, on the other CPU) run exchanges back to back for %s, "+
		"twice: as Go's client is (a key share for X25519, the group Go's server takes whatever the order), and offering P-256 alone, "+
		"which costs the server what chrony's client does (it lists P-256 first, with a key share for P-256 and one for X25519; "+
		"chronyd and timed both answer it with P-256); "+
		"the server's CPU time includes its child processes (chronyd's NTS-KE helper). Medians over the rounds; ratios are taken within each round, then the median.\n\n",
		*flagNTSRounds, *flagSources, *flagLeg, *flagKEClients, *flagKELeg)
	b.WriteString(NTSSummaryTable(legs, *flagNTSRounds))
	b.WriteString("\n")
	lines, _ := NTSGoals(legs, *flagNTSRounds)
	goalLines(&b, lines)
	b.WriteString("\nEvery leg:\n\n")
	b.WriteString(NTSRoundsTable(legs))
	return b.String()
}
