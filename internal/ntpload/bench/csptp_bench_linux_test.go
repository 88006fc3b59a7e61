//go:build linux && bench

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/ntpload"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// The CSPTP benchmark runs in a network namespace of its own, on a veth
// address: ptp4u binds the fixed ports 319 and 320, and only to an address
// of an interface with a MAC address (its clock identity). The load still
// comes from 127.0.0.0/8 and never leaves the namespace's loopback.
var (
	csptpServerAddr = netip.MustParseAddr("10.99.0.1")
	csptpNTPAddr    = netip.AddrPortFrom(csptpServerAddr, 123)
	csptpPTPAddr    = netip.AddrPortFrom(csptpServerAddr, 319)
)

// TestCSPTPServerBench measures timed's CSPTP server against timed's NTP
// server (the "at the throughput of the NTP server") and against
// facebook/time's ptp4u with SPTP requests: responses per server
// CPU-second and per second at a saturating rate, latency at 50%.
func TestCSPTPServerBench(t *testing.T) {
	testenv.RequireRoot(t)
	e := setup(t)
	ptp4u := buildPtp4u(t, e.dir)
	e.netns = peers.NewNetns(t)
	for _, args := range [][]string{
		{"link", "add", "ptp0", "type", "veth", "peer", "name", "ptp1"},
		{"addr", "add", csptpServerAddr.String() + "/24", "dev", "ptp0"},
		{"link", "set", "ptp0", "up"},
		{"link", "set", "ptp1", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", e.netns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	var legs []Leg
	for r := 1; r <= *flagRounds; r++ {
		for _, s := range CSPTPLegs {
			leg := Leg{Server: s, Round: r}
			t.Run(fmt.Sprintf("round%d/%s", r, strings.ReplaceAll(s, " ", "-")), func(t *testing.T) { e.measureCSPTP(t, &leg, ptp4u) })
			legs = append(legs, leg)
		}
	}
	body := e.csptpReport(legs)
	t.Logf("\n%s", body)
	if os.Getenv("TIMED_WRITE_PERF") != "1" {
		return
	}
	doc := filepath.Join(peers.RepoRoot(t), "docs", "PERFORMANCE.md")
	if err := WriteSection(doc, CSPTPSection, body); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the CSPTP section of %s", doc)
}

// buildPtp4u builds facebook/time's ptp4u from the module (go.mod lists
// it as a tool) into dir.
func buildPtp4u(t *testing.T, dir string) string {
	t.Helper()
	goCmd := "go"
	if _, err := exec.LookPath(goCmd); err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goCmd, "build", "-o", dir+string(os.PathSeparator), "github.com/facebook/time/cmd/ptp4u")
	cmd.Dir = peers.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build facebook/time's ptp4u: %v\n%s", err, out)
	}
	return filepath.Join(dir, "ptp4u")
}

// csptpTimedConfig is the NTP benchmark's timed configuration with the
// CSPTP server on as well (refuse_amplification off, its default).
func csptpTimedConfig(sock string) string {
	return fmt.Sprintf(timedConfig, sock, csptpNTPAddr) + fmt.Sprintf("csptp:\n  listen: [\"%s\"]\n", csptpPTPAddr)
}

// startCSPTP starts the server of leg s in the namespace, pinned to the
// server's CPU, and returns its pid, address and the requests' protocol
// once it answers them.
func (e *env) startCSPTP(t *testing.T, s, ptp4u string) (int, netip.AddrPort, string) {
	t.Helper()
	if e.pinned {
		pinSelf(t, e.serverCPU)
		defer pinSelf(t, e.loadCPUs)
	}
	dir := t.TempDir()
	addr, proto := csptpPTPAddr, map[string]string{TimedNTP: ntpload.ProtocolNTP, TimedCSPTP: ntpload.ProtocolCSPTP,
		TimedSPTP: ntpload.ProtocolSPTP, Ptp4uSPTP: ntpload.ProtocolSPTP}[s]
	var p *peers.Proc
	switch s {
	case TimedNTP, TimedCSPTP, TimedSPTP:
		conf := filepath.Join(dir, "timed.yaml")
		if err := os.WriteFile(conf, []byte(csptpTimedConfig(filepath.Join(dir, "timed.sock"))), 0o644); err != nil {
			t.Fatal(err)
		}
		p = peers.Start(t, peers.ProcOptions{Name: "timed", Dir: dir, Netns: e.netns}, e.timed, "-c", conf)
		if s == TimedNTP {
			addr = csptpNTPAddr
		}
	case Ptp4uSPTP:
		p = peers.Start(t, peers.ProcOptions{Name: "ptp4u", Dir: dir, Netns: e.netns}, ptp4u,
			"-iface", "ptp0", "-ip", csptpServerAddr.String(), "-timestamptype", "software", "-loglevel", "error",
			"-pidfile", filepath.Join(dir, "ptp4u.pid"), "-drainfile", filepath.Join(dir, "drain"),
			"-undrainfile", filepath.Join(dir, "undrain"), "-monitoringport", "0")
	default:
		t.Fatalf("unknown leg %q", s)
	}
	e.waitAnswers(t, p, addr, proto)
	return p.Pid(), addr, proto
}

// waitAnswers waits, up to 10 s, until the server at addr answers a few
// requests of protocol proto.
func (e *env) waitAnswers(t *testing.T, p *peers.Proc, addr netip.AddrPort, proto string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if p.Exited() {
			t.Fatalf("%s exited: %v\n%s", addr, p.Err(), p.Tail(20))
		}
		var stdout bytes.Buffer
		cmd := e.ntploadCommand("-o", "json", "-protocol", proto, "-rate", "100", "-d", "50ms", "-wait", "200ms", addr.String())
		cmd.Stdout = &stdout
		if cmd.Run() != nil {
			continue
		}
		var res ntpload.Result
		if json.Unmarshal(stdout.Bytes(), &res) == nil && res.Answered > 0 {
			return
		}
	}
	t.Fatalf("%s answers no %s request after 10 s\n%s", addr, proto, p.Tail(20))
}

// measureCSPTP is one leg: the server started pinned, a saturating run,
// then a run at half of what the server answered, as in the NTP benchmark.
func (e *env) measureCSPTP(t *testing.T, leg *Leg, ptp4u string) {
	pid, addr, proto := e.startCSPTP(t, leg.Server, ptp4u)
	le := *e
	le.addr = addr
	maxRes, o1, threads := le.load(t, pid, "-protocol", proto, "-burst", "16")
	// A server that collapses under the load still gets its half-rate
	// run, at 1 request a second at least (0 would mean maximal).
	half := strconv.FormatFloat(max(math.Round(maxRes.ResponseRate/2), 1), 'f', 0, 64)
	halfRes, o2, _ := le.load(t, pid, "-protocol", proto, "-burst", "1", "-rate", half)
	leg.Max, leg.Half, leg.Others = maxRes, halfRes, max(o1, o2)
	t.Logf("%s: %.0f responses/s at saturation, %.0f per CPU-second (%.2f cores; threads %s); at %s req/s loss %.3f%%, latency p50 %.0f µs, p99 %.0f µs; %d / %.0f bytes per request / answer; others used %.2f cores",
		leg.Server, maxRes.ResponseRate, maxRes.PerCPUSecond, maxRes.ServerCores, threadList(threads),
		half, 100*halfRes.Loss, halfRes.Latency.P50, halfRes.Latency.P99, maxRes.RequestLen, halfRes.ResponseLen, leg.Others)
}

func (e *env) csptpReport(legs []Leg) string {
	var b strings.Builder
	b.WriteString(writtenBy("bench-csptp", "TestCSPTPServerBench"))
	pin := "Nothing was pinned (fewer than 2 CPUs)."
	if e.pinned {
		pin = fmt.Sprintf("Each server is pinned to CPU %s (GOMAXPROCS 1: one socket and one worker for timed's servers), the load generator to CPU %s.",
			cpuList(e.serverCPU), cpuList(e.loadCPUs))
	}
	fmt.Fprintf(&b, "Method: in each of %d rounds four legs take turns, each with a freshly started server: timed's NTP server (NTP requests), "+
		"timed's CSPTP server with CSPTP requests (a Sync with the request TLV, answered by one Sync with the response TLV), the same with SPTP requests "+
		"(a Delay_Req, answered by a Sync and an Announce), and facebook/time's ptp4u (software timestamps, its default workers) with SPTP requests. "+
		"timed runs as in the NTP benchmark above (virtual clock, rate limits out of reach) with `csptp: {listen: [...]}` added, `refuse_amplification` off. "+
		"All run in a network namespace of the benchmark's own, on the address of a veth interface there (ptp4u binds the fixed ports 319 and 320, and only to an interface's address); "+
		"the load comes over that namespace's loopback from %d client addresses in 127.0.0.0/8, each with a clock identity of its own. "+
		"cmd/ntpload (`-protocol ntp|csptp|sptp`) first sends for %s at a maximal rate (bursts of 16 per address, UDP GSO), then for %s at half the responses/s the server managed, one request per address in turn. "+
		"A response is a complete answer matched to its request by sequence id and the address it came back to: for SPTP its Sync and its Announce. "+
		"Responses per server CPU-second are over the server's user + system time from /proc/PID/stat; latency runs from the load generator's send to the receive that completes the answer. "+
		"Medians over the rounds; a ratio is taken within each round, then the median. %s "+
		"Before each run the benchmark waits for a quiet machine and repeats (up to three times in all) a run during which other processes used more than %.2f cores.\n\n",
		*flagRounds, *flagSources, *flagLeg, *flagLeg, pin, maxOthers)
	b.WriteString(CSPTPSummaryTable(legs, *flagRounds))
	b.WriteString("\nRound by round:\n\n")
	b.WriteString(CSPTPRatiosTable(legs, *flagRounds))
	b.WriteString("\nEvery leg:\n\n")
	b.WriteString(RoundsTable(legs))
	return b.String()
}
