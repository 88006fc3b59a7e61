//go:build linux

package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/ntpload"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// serverStats is the part of `timectl serverstats -o json` the tests read.
type serverStats struct {
	Enabled     bool              `json:"enabled"`
	Received    uint64            `json:"received"`
	Answered    uint64            `json:"answered"`
	Interleaved uint64            `json:"interleaved"`
	KissRate    uint64            `json:"kiss_rate"`
	KissDeny    uint64            `json:"kiss_deny"`
	Dropped     map[string]uint64 `json:"dropped"`
	Stratum     uint8             `json:"stratum"`
	RefID       uint32            `json:"refid"`
	UserRx      uint64            `json:"user_rx_stamps"`
}

func (tp *timedProc) serverStats(t *testing.T) serverStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st serverStats
	if err := tp.query(ctx, &st, "serverstats"); err != nil {
		t.Fatal(err)
	}
	return st
}

// serverSection is timed.yaml's server section for the tests.
func serverSection(listen string, extra ...string) string {
	s := fmt.Sprintf("server:\n  listen: [%q]\n", listen)
	for _, e := range extra {
		s += "  " + e + "\n"
	}
	return s
}

// TestServeChronyd chains chronyd → timed → chronyd: timed synchronizes
// its virtual clock to a chronyd server and serves it; a chronyd client
// with xleave selects timed, sees stratum 2 with the first server as
// reference, and measures in interleaved mode.
func TestServeChronyd(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	upstream := peers.StartChronyServer(t, peers.ChronyOptions{})
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	cfg := simulatedStart
	cfg.Port = int(upstream.Addr.Port())
	// The client polls 4 times a second: no rate limit.
	cfg.Extra = serverSection(fmt.Sprintf("127.0.0.1:%d", port), "rate_limit: {interval: 0}")
	tp := startTimed(t, cfg, "")
	client := peers.StartChronyClient(t, fmt.Sprintf("server 127.0.0.1 port %d iburst minpoll -2 maxpoll -2 xleave", port))

	var sources, ntpdata string
	deadline := time.Now().Add(40 * time.Second)
	for {
		sources, _ = client.Chronyc(t, "sources")
		ntpdata, _ = client.Chronyc(t, "ntpdata")
		disp, _ := strconv.ParseFloat(strings.Fields(chronycFields(ntpdata)["Root dispersion"] + " x")[0], 64)
		// Wait for timed to settle: right after its first measurement its
		// root dispersion is as large as its start-up uncertainty.
		if strings.Contains(sources, "^* 127.0.0.1") && strings.Contains(ntpdata, "Interleaved     : Yes") && disp > 0 && disp < 1e-3 {
			break
		}
		if time.Now().After(deadline) || tp.Exited() {
			t.Fatalf("chronyd did not select timed in interleaved mode within 40 s:\n%s\n%s\ntimed: %s", sources, ntpdata, tp.Tail(10))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("chronyc sources:\n%s\nchronyc ntpdata:\n%s", sources, ntpdata)
	fields := chronycFields(ntpdata)
	want := map[string]string{"Stratum": "2", "Mode": "Server", "Leap status": "Normal", "Reference ID": "7F000001 ()"}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("chronyc ntpdata %s: %q, want %q", k, fields[k], v)
		}
	}
	// Root delay and dispersion: those of timed's source plus its own
	// path and uncertainty, so small on loopback (the delay may round to
	// 0 in NTP's 15 µs steps) but a dispersion above 0.
	for _, k := range []string{"Root delay", "Root dispersion"} {
		v, err := strconv.ParseFloat(strings.Fields(fields[k])[0], 64)
		if err != nil || v < 0 || v > 1e-3 || (k == "Root dispersion" && v == 0) {
			t.Errorf("chronyc ntpdata %s: %q, want below 1 ms", k, fields[k])
		}
	}
	st := tp.serverStats(t)
	if st.Interleaved == 0 || st.Answered == 0 || st.Stratum != 2 || st.RefID != 0x7f000001 || st.UserRx != 0 {
		t.Errorf("timectl serverstats: %+v", st)
	}
	var cl struct {
		Clients []struct {
			Address     string `json:"address"`
			Interleaved bool   `json:"interleaved"`
		} `json:"clients"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.query(ctx, &cl, "clients"); err != nil || len(cl.Clients) != 1 || cl.Clients[0].Address != "127.0.0.1" || !cl.Clients[0].Interleaved {
		t.Errorf("timectl clients: %+v %v", cl, err)
	}
}

// chronycFields reads "Key : value" lines.
func chronycFields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestServeLocalAgreesWithChronydQ: timed's virtual clock runs 5 ms ahead
// of the system clock with no sources, served as local stratum 5; chronyd
// -Q measures it within 100 µs of what timed reports.
func TestServeLocalAgreesWithChronydQ(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	binaries(t)
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	tp := startTimed(t, timedConfig{SimOffset: "5ms", NoSources: true,
		Extra: serverSection(fmt.Sprintf("127.0.0.1:%d", port), "local: {stratum: 5}")}, "")
	out, err := peers.Command(t, chronyd, "-Q", "-t", "10", fmt.Sprintf("server 127.0.0.1 port %d iburst", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("chronyd -Q: %v\n%s", err, out)
	}
	measured, err := parseChronydQ(string(out))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := tp.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own := st.Clock.OffsetFromSystem
	t.Logf("timed's clock ahead of the system clock: %+.1f µs by its own account, %+.1f µs by chronyd -Q", own*1e6, measured*1e6)
	if d := math.Abs(measured - own); !(d < 100e-6) || math.Abs(own-0.005) > 1e-3 {
		t.Errorf("chronyd -Q measured %+.1f µs, timed reports %+.1f µs (want both about +5000 µs, within 100 µs of each other)", measured*1e6, own*1e6)
	}
}

// TestServeNtpdigAndTshark runs timed on port 123 in a namespace of its own,
// asks it with ntpsec's ntpdig, and has tshark decode the exchange.
func TestServeNtpdigAndTshark(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	_, ntpdig := peers.NtpsecPaths(t)
	tshark := testenv.LookPath(t, "tshark", "/usr/bin/tshark")
	binaries(t)
	ns := peers.NewNetns(t)
	tp := startTimed(t, timedConfig{SimOffset: "5ms", NoSources: true,
		Extra: serverSection("127.0.0.1:123", "local: {stratum: 5}")}, ns)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	capture := exec.CommandContext(ctx, "ip", "netns", "exec", ns, tshark, "-i", "lo", "-f", "udp port 123", "-c", "2", "-T", "json", "-l")
	stderr, err := capture.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var decoded strings.Builder
	capture.Stdout = &decoded
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	capturing := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Capturing on") {
				close(capturing)
			}
		}
	}()
	select {
	case <-capturing:
	case <-ctx.Done():
		t.Fatal("tshark did not start capturing")
	}

	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, ntpdig, "-t", "2", "-j", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ntpdig: %v\n%s\ntimed: %s", err, out, tp.Tail(10))
	}
	var dig struct {
		Offset  float64 `json:"offset"`
		Stratum int     `json:"stratum"`
		Leap    string  `json:"leap"`
	}
	if err := json.Unmarshal(out[strings.IndexByte(string(out), '{'):], &dig); err != nil {
		t.Fatalf("ntpdig -j: %v: %s", err, out)
	}
	t.Logf("ntpdig: %s", strings.TrimSpace(string(out)))
	if dig.Stratum != 5 || math.Abs(dig.Offset-0.005) > 1e-3 {
		t.Errorf("ntpdig: stratum %d offset %+.6f s, want 5 and about +0.005", dig.Stratum, dig.Offset)
	}
	if err := capture.Wait(); err != nil {
		t.Fatalf("tshark: %v", err)
	}
	checkTshark(t, decoded.String())

	// Port 123 was bound with CAP_NET_BIND_SERVICE, which timed then
	// dropped from every thread.
	for _, task := range tasks(t, tp.Pid()) {
		if eff := capEff(t, task); eff&(1<<10) != 0 {
			t.Errorf("timed's thread %s still has CAP_NET_BIND_SERVICE (CapEff %x)", task, eff)
		}
	}
	if !strings.Contains(tp.Output(), "dropped CAP_NET_BIND_SERVICE") {
		t.Error("timed did not log that it dropped CAP_NET_BIND_SERVICE")
	}
}

// tasks lists the threads of a process (/proc/PID/task/TID).
func tasks(t *testing.T, pid int) []string {
	t.Helper()
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	return dirs
}

// capEff reads the effective capabilities from a status file's directory.
func capEff(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in %s/status", dir)
	return 0
}

// checkTshark checks the server's reply as tshark decoded it.
func checkTshark(t *testing.T, js string) {
	t.Helper()
	var pkts []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal([]byte(js), &pkts); err != nil {
		t.Fatalf("tshark JSON: %v\n%.500s", err, js)
	}
	var reply map[string]any
	for _, p := range pkts {
		if _, bad := p.Source.Layers["_ws.malformed"]; bad {
			t.Errorf("tshark marks a packet malformed: %s", p.Source.Layers["_ws.malformed"])
		}
		var n map[string]any
		if err := json.Unmarshal(p.Source.Layers["ntp"], &n); err != nil {
			t.Fatalf("no NTP layer: %v", err)
		}
		flags, _ := n["ntp.flags_tree"].(map[string]any)
		if flags["ntp.flags.mode"] == "4" {
			reply = n
			reply["mode"], reply["vn"], reply["li"] = flags["ntp.flags.mode"], flags["ntp.flags.vn"], flags["ntp.flags.li"]
		}
	}
	if reply == nil {
		t.Fatalf("tshark saw no server reply:\n%.2000s", js)
	}
	t.Logf("tshark: %v", reply)
	want := map[string]string{"ntp.stratum": "5", "li": "0", "vn": "4", "ntp.refid": "7f:7f:01:01"}
	for k, v := range want {
		if fmt.Sprint(reply[k]) != v {
			t.Errorf("tshark %s = %v, want %s", k, reply[k], v)
		}
	}
	for _, k := range []string{"ntp.rootdelay", "ntp.rootdispersion", "ntp.precision", "ntp.reftime", "ntp.org", "ntp.rec", "ntp.xmt"} {
		if _, ok := reply[k]; !ok {
			t.Errorf("tshark shows no %s", k)
		}
	}
	// tshark shows the precision as an unsigned byte.
	if p, err := strconv.Atoi(fmt.Sprint(reply["ntp.precision"])); err != nil || int8(p) < -30 || int8(p) > -10 {
		t.Errorf("tshark precision %v", reply["ntp.precision"])
	}
}

var kissRe = regexp.MustCompile(`^[A-Z]{4}$`)

// TestServeFlood floods timed from many addresses with the load tool: the
// rate limit, the deny list and the kisses behave as configured, and
// timed's counters match what the load tool saw.
func TestServeFlood(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	tp := startTimed(t, timedConfig{SimOffset: "0s", NoSources: true,
		Extra: serverSection(server.String(), "local: {stratum: 5}", "deny: [127.1.0.0/26]", "deny_response: kiss",
			"rate_limit: {interval: 1s, burst: 4, kiss_every: 4, prefix_interval: 0}")}, "")
	const sources, perSource = 256, 16
	res, err := ntpload.Run(context.Background(), ntpload.Options{
		Server: server, Sources: sources, Rate: 20000, Duration: time.Duration(sources*perSource) * time.Second / 20000,
		Burst: 1, Wait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := tp.serverStats(t)
	t.Logf("load tool: sent %d, answered %d, kisses %v, loss %.4f; timed: %+v", res.Sent, res.Answered, res.Kisses, res.Loss, st)
	// The first 63 sources (127.1.0.1 to .63; .0 is skipped) are denied.
	if res.Sent != st.Received || res.Answered != st.Answered || res.Kisses["RATE"] != st.KissRate || res.Kisses["DENY"] != st.KissDeny {
		t.Errorf("the load tool saw sent %d answered %d RATE %d DENY %d; timed counted received %d answered %d RATE %d DENY %d",
			res.Sent, res.Answered, res.Kisses["RATE"], res.Kisses["DENY"], st.Received, st.Answered, st.KissRate, st.KissDeny)
	}
	for code := range res.Kisses {
		if !kissRe.MatchString(code) || (code != "RATE" && code != "DENY") {
			t.Errorf("unexpected kiss %q", code)
		}
	}
	denied := st.Dropped["denied"]
	limited := st.Dropped["rate limited"]
	// Nothing is lost but the requests timed chose not to answer.
	silent := limited - st.KissRate + denied - st.KissDeny
	if lost := res.Sent - res.Answered - res.Kissed; lost != silent || res.Unmatched+res.Malformed+res.Duplicates != 0 {
		t.Errorf("%d requests got no answer, timed left %d unanswered on purpose; unmatched %d, malformed %d, duplicates %d",
			lost, silent, res.Unmatched, res.Malformed, res.Duplicates)
	}
	const deniedSources uint64 = 63
	allowedSources := uint64(sources) - deniedSources
	// The load tool skips requests when it falls behind its pace (on a
	// loaded machine, a few hundred of the 4096): each skipped request may
	// be one a bound below counts on.
	skipped := uint64(sources*perSource) - min(res.Sent, uint64(sources*perSource))
	// Each allowed source sends about perSource requests within a
	// fraction of a second: its burst of 4 is served, 1 in 4 of the rest
	// gets a RATE kiss.
	if st.Answered+skipped+2 < allowedSources*4 || st.Answered > allowedSources*6 {
		t.Errorf("answered %d, want about %d (burst 4 for each of %d allowed sources)", st.Answered, allowedSources*4, allowedSources)
	}
	if limited == 0 || float64(st.KissRate) < 0.2*float64(limited) || float64(st.KissRate) > 0.3*float64(limited) {
		t.Errorf("rate limited %d, RATE kisses %d: want about one in four", limited, st.KissRate)
	}
	// DENY kisses obey the rate limit: each denied source gets its burst
	// of 4, then one in four of the rest.
	want := deniedSources * (4 + (perSource-4+3)/4)
	if denied+skipped+2 < deniedSources*perSource || st.KissDeny+skipped+2 < want || st.KissDeny > want {
		t.Errorf("denied %d, DENY kisses %d, the load tool skipped %d: want about %d denied and %d kissed",
			denied, st.KissDeny, skipped, deniedSources*perSource, want)
	}
}

// TestServeTimedXleave: one timed serves (local stratum 3), another syncs to
// it with xleave: the client measures in interleaved mode and the server
// counts interleaved responses.
func TestServeTimedXleave(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	srv := startTimed(t, timedConfig{Name: "server", SimOffset: "3ms", NoSources: true,
		Extra: serverSection(fmt.Sprintf("127.0.0.1:%d", port), "local: {stratum: 3}", "rate_limit: {interval: 0}")}, "")
	cfg := simulatedStart
	cfg.Name, cfg.Port, cfg.XLeave, cfg.LogLevel = "client", port, true, "debug"
	client := startTimed(t, cfg, "")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(client.Output(), "the server answers in interleaved mode") {
		if time.Now().After(deadline) || client.Exited() {
			t.Fatalf("the client never measured in interleaved mode:\n%s", client.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The client's clock follows the server's, 3 ms ahead of the system
	// clock.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := client.status(ctx)
		cancel()
		if err == nil && st.Engine.Synchronized && math.Abs(st.Clock.OffsetFromSystem-0.003) < 100e-6 {
			t.Logf("client: %+.1f µs from the system clock (the server is +3000 µs)", st.Clock.OffsetFromSystem*1e6)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client did not follow the server within 20 s: %+v %v", st.Clock, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := srv.serverStats(t); st.Interleaved == 0 || st.Answered < st.Interleaved {
		t.Errorf("server: %+v", st)
	}
}

// TestServeMillionClients: a million distinct client addresses, one request
// each, leave timed's memory bounded by its client table.
func TestServeMillionClients(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	port := peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1"))
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	tp := startTimed(t, timedConfig{SimOffset: "0s", NoSources: true,
		Extra: serverSection(server.String(), "local: {stratum: 5}", "client_table_size: 4096")}, "")
	rss := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tp.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		return statusKiB(string(b), "VmRSS")
	}
	// A first, small run touches the sockets' buffers and the table.
	warm := ntpload.Options{Server: server, Sources: 8192, Rate: 100000, Duration: 200 * time.Millisecond, Burst: 1}
	if _, err := ntpload.Run(context.Background(), warm); err != nil {
		t.Fatal(err)
	}
	before := rss()
	const clients = 1_000_000
	res, err := ntpload.Run(context.Background(), ntpload.Options{
		Server: server, Sources: clients, FirstSource: netip.MustParseAddr("127.2.0.1"),
		Rate: 100000, Duration: clients * time.Second / 100000, Burst: 1, NoGSO: true, Wait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	after := rss()
	st := tp.serverStats(t)
	t.Logf("%d requests from %d addresses, %d answered; RSS %d KiB before, %d KiB after", res.Sent, clients, res.Answered, before, after)
	// On a machine busy with the other tests the load tool may fall behind
	// and skip some; what matters is most addresses and most answers.
	if res.Sent < clients*7/10 || res.Answered < res.Sent*9/10 {
		t.Errorf("%d requests sent (one per address), %d answered: the load tool or timed fell behind", res.Sent, res.Answered)
	}
	if after-before > 4096 {
		t.Errorf("RSS grew by %d KiB over a million clients; the table of 4096 holds them in well under 1 MiB", after-before)
	}
	if st.Received < res.Sent {
		t.Errorf("timed received %d of %d", st.Received, res.Sent)
	}
}
