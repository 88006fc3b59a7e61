//go:build linux

package interop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// timectlRun is one run of timectl: its exit status and output.
type timectlRun struct {
	code           int
	stdout, stderr string
}

// runTimectlAs runs timectl -s SOCKET ARGS (prefix, when set, is the
// command that runs it, such as setpriv) and returns its exit status and
// output without failing the test.
func runTimectlAs(t *testing.T, prefix []string, timectl, socket string, args ...string) timectlRun {
	t.Helper()
	argv := append(append(append([]string(nil), prefix...), timectl, "-s", socket), args...)
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := timectlRun{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return r
}

// queryNTP sends n client requests to an NTP server and waits for each
// answer.
func queryNTP(t *testing.T, addr string, n int) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range n {
		req := make([]byte, 48)
		req[0] = 0x23                 // LI 0, version 4, mode 3 (client)
		req[47] = byte(i + 1)         // a transmit timestamp of our own
		req[40], req[41] = 0xec, 0x00 // (its seconds, so that it is not zero)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(req); err != nil {
			t.Fatalf("NTP request to %s: %v", addr, err)
		}
		resp := make([]byte, 128)
		if _, err := conn.Read(resp); err != nil {
			t.Fatalf("NTP request to %s: no answer: %v", addr, err)
		}
	}
}

// TestTimectlAllCommands runs every timectl command, in text and with -o
// json, against a timed following a chronyd server and serving NTP on
// loopback: each exits 0, its JSON parses into the control reply type and
// its text has the expected header and rows. add, remove and reload use a
// second chronyd; makestep leaves a line in timed's log. A change command
// run as nobody is refused with "permission denied" while a query works.
func TestTimectlAllCommands(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	setpriv := testenv.LookPath(t, "setpriv", "/usr/bin/setpriv")
	_, timectl := binaries(t)
	srv := peers.StartChronyServer(t, peers.ChronyOptions{})
	second := peers.StartChronyServer(t, peers.ChronyOptions{})
	serve := fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t, netip.MustParseAddr("127.0.0.1")))
	cfg := simulatedStart
	cfg.Name = "timectl-all"
	cfg.Port = int(srv.Addr.Port())
	cfg.Extra = serverSection(serve, "rate_limit: {interval: 0}")
	tp := startTimed(t, cfg, "")
	name, name2 := srv.Addr.String(), second.Addr.String()

	run := func(args ...string) timectlRun {
		t.Helper()
		r := runTimectlAs(t, nil, tp.timectl, tp.socket, args...)
		if r.code != 0 {
			t.Fatalf("timectl %s: exit %d: %s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r
	}
	// text runs a command and checks that its output has every one of want.
	text := func(args []string, want ...string) string {
		t.Helper()
		out := run(args...).stdout
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("timectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
			}
		}
		return out
	}
	// asJSON runs a command with -o json and decodes its output into v.
	asJSON := func(v any, args ...string) {
		t.Helper()
		out := run(append([]string{"-o", "json"}, args...)...).stdout
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("timectl -o json %s: %v:\n%s", strings.Join(args, " "), err, out)
		}
	}

	start := time.Now()
	text([]string{"waitsync", "--max-error", "100ms", "--timeout", "20s", "--interval", "200ms"}, "synchronized to "+name)
	t.Logf("waitsync: synchronized after %v", time.Since(start).Round(time.Millisecond))
	var st control.StatusReply
	asJSON(&st, "waitsync", "--max-error", "100ms", "--timeout", "5s")
	if !st.Engine.Synchronized || st.Engine.Reference != name {
		t.Errorf("waitsync -o json: synchronized %v to %q, want %s", st.Engine.Synchronized, st.Engine.Reference, name)
	}
	queryNTP(t, serve, 3)

	text([]string{"status"}, "Synchronized:    yes", "Reference:       "+name, "Clock:           virtual")
	asJSON(&st, "status")
	if st.Clock.Driver != "virtual" || len(st.Engine.Sources) != 1 {
		t.Errorf("status -o json: clock %q, %d sources; want virtual, 1", st.Clock.Driver, len(st.Engine.Sources))
	}
	text([]string{"sources"}, "NAME", "STATE", "OFFSET", name, "selected")
	asJSON(&st, "sources")
	if len(st.Engine.Sources) != 1 || st.Engine.Sources[0].Name != name || st.Engine.Sources[0].State != "selected" {
		t.Errorf("sources -o json: %+v, want %s selected", st.Engine.Sources, name)
	}

	text([]string{"sourcestats"}, "NAME", "SAMPLES", "MIN DELAY", name)
	var ss control.SourceStatsReply
	asJSON(&ss, "sourcestats")
	if len(ss.Sources) != 1 || ss.Sources[0].Name != name || ss.Sources[0].Samples < 1 {
		t.Errorf("sourcestats -o json: %+v", ss.Sources)
	}

	text([]string{"serverstats"}, "Listening on:        "+serve, "Requests received:", "Answered with time:")
	var sst control.ServerStatsReply
	asJSON(&sst, "serverstats")
	if !sst.Enabled || sst.Received < 3 || sst.Answered < 3 {
		t.Errorf("serverstats -o json: enabled %v, %d received, %d answered; want 3 of each", sst.Enabled, sst.Received, sst.Answered)
	}
	text([]string{"clients"}, "Address", "Requests", "127.0.0.1")
	var cl control.ClientsReply
	asJSON(&cl, "clients")
	if !cl.Enabled || len(cl.Clients) != 1 || cl.Clients[0].Address != "127.0.0.1" || cl.Clients[0].Requests < 3 {
		t.Errorf("clients -o json: %+v", cl)
	}

	text([]string{"ptp"}, "timed runs no PTP port")
	var pr control.PTPReply
	asJSON(&pr, "ptp")
	if len(pr.Ports) != 0 {
		t.Errorf("ptp -o json: %d ports, want none", len(pr.Ports))
	}
	text([]string{"nts"}, "No NTS sources", "timed serves no NTS")
	var nr control.NTSReply
	asJSON(&nr, "nts")
	if len(nr.Clients) != 0 || nr.Server != nil {
		t.Errorf("nts -o json: %+v, want no clients and no server", nr)
	}

	text([]string{"burst"}, "burst started on 1 source: "+name)
	var br control.BurstReply
	asJSON(&br, "burst", name)
	if len(br.Sources) != 1 || br.Sources[0] != name {
		t.Errorf("burst -o json: %+v, want [%s]", br, name)
	}

	// add and remove the second chronyd, in text and in JSON.
	text([]string{"add", "server", name2}, "added server "+name2)
	text([]string{"sources"}, name2+" +")
	var ok struct {
		OK bool `json:"ok"`
	}
	asJSON(&ok, "remove", name2)
	if !ok.OK {
		t.Errorf("remove -o json: not ok")
	}
	var ar control.AddReply
	asJSON(&ar, "add", "server", name2)
	if ar.Name != name2 {
		t.Errorf("add -o json: %+v, want %s", ar, name2)
	}
	text([]string{"remove", name2}, "removed "+name2)
	if out := text([]string{"sources"}); strings.Contains(out, name2) {
		t.Errorf("sources after remove still lists %s:\n%s", name2, out)
	}

	// reload after the file gained the second chronyd: it appears.
	cfg.MorePorts = []int{int(second.Addr.Port())}
	dir := filepath.Dir(tp.socket)
	if err := os.WriteFile(filepath.Join(dir, "timed.yaml"), []byte(cfg.yaml(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	text([]string{"validate", filepath.Join(dir, "timed.yaml")}, "timed.yaml: ok")
	text([]string{"reload"}, "configuration reloaded")
	asJSON(&st, "sources")
	if len(st.Engine.Sources) != 2 || st.Engine.Sources[1].Name != name2 || st.Engine.Sources[1].Runtime {
		t.Errorf("sources after reload: %+v, want %s from the file", st.Engine.Sources, name2)
	}
	asJSON(&ok, "reload")

	text([]string{"makestep"}, "clock stepped to the current estimate")
	ok.OK = false
	asJSON(&ok, "makestep")
	if !ok.OK {
		t.Errorf("makestep -o json: not ok")
	}
	if !strings.Contains(tp.Output(), "makestep: the next correction may step the clock") {
		t.Errorf("no makestep line in timed's log:\n%s", tp.Tail(20))
	}

	out := text([]string{"watch", "--count", "2", "--interval", "200ms"}, "Synchronized:", "NAME")
	if n := strings.Count("\n"+out, "\n--- "); n != 2 {
		t.Errorf("watch --count 2: %d snapshots:\n%s", n, out)
	}
	out = run("-o", "json", "watch", "--count", "2", "--interval", "200ms").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var r control.StatusReply
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Clock.Driver != "virtual" {
			t.Errorf("watch -o json: line %q: %v", l, err)
		}
	}
	if len(lines) != 2 {
		t.Errorf("watch -o json --count 2: %d lines, want 2", len(lines))
	}
	text([]string{"completion", "bash"}, "bash completion", "timectl")

	// As nobody: queries work, changes are refused. The socket is 0666;
	// its directories and timectl must be reachable.
	bin := filepath.Join(t.TempDir(), "timectl")
	data, err := os.ReadFile(timectl)
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err == nil {
		err = errors.Join(openToOthers(filepath.Dir(bin)), openToOthers(dir))
	}
	if err != nil {
		t.Fatal(err)
	}
	nobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	if r := runTimectlAs(t, nobody, bin, tp.socket, "status"); r.code != 0 || !strings.Contains(r.stdout, "Synchronized:    yes") {
		t.Errorf("status as nobody: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"makestep"}, {"burst"}, {"reload"}, {"remove", name}} {
		if r := runTimectlAs(t, nobody, bin, tp.socket, args...); r.code != 1 || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("%s as nobody: exit %d: %s%s; want 1 and permission denied", args[0], r.code, r.stdout, r.stderr)
		}
	}
	t.Logf("every command ran in %v", time.Since(start).Round(time.Millisecond))
}

// openToOthers lets every user pass through dir and its parents up to the
// temporary directory (mode 0711): the test's own directories only.
func openToOthers(dir string) error {
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for d := filepath.Clean(dir); strings.HasPrefix(d, tmp); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}
