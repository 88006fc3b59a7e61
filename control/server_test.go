package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/sources"
)

type fakeBackend struct {
	status    StatusReply
	reloads   atomic.Int32
	steps     atomic.Int32
	reloadErr error
	panicky   bool
	block     chan struct{} // when set, Status waits for it to close

	mu      sync.Mutex // guards the record of source changes below
	added   []AddArgs
	removed []string
	bursts  []string
}

func (b *fakeBackend) Status() StatusReply {
	if b.panicky {
		panic("backend bug")
	}
	if b.block != nil {
		<-b.block
	}
	return b.status
}

func (b *fakeBackend) Reload() error {
	b.reloads.Add(1)
	return b.reloadErr
}

func (b *fakeBackend) MakeStep() error {
	b.steps.Add(1)
	return nil
}

func (b *fakeBackend) ServerStats() ServerStatsReply {
	return ServerStatsReply{Enabled: true, Received: 10, Answered: 9, Dropped: map[string]uint64{"rate limited": 1}}
}

func (b *fakeBackend) Clients(limit int) ClientsReply {
	out := ClientsReply{Enabled: true}
	for i := range min(limit, 50) {
		out.Clients = append(out.Clients, ClientInfo{Address: fmt.Sprintf("192.0.2.%d", i), Requests: uint64(100 - i)})
	}
	return out
}

func (b *fakeBackend) PTP() PTPReply {
	return PTPReply{Ports: []PTPPortStatus{{Interface: "eth0", State: "SLAVE", Grandmaster: "0a1b2c.fffe.3d4e5f-1", MeanPathDelay: 2e-6}}}
}

func sampleStatus() StatusReply {
	return StatusReply{
		Engine: sources.Status{
			Synchronized: true,
			Reference:    "127.0.0.1:11123",
			Stratum:      2,
			Offset:       -1.5e-6,
			Uncertainty:  2e-6,
			Frequency:    -12.25,
			Updates:      7,
			Message:      "synchronized",
			Sources: []sources.SourceStatus{
				{Name: "127.0.0.1:11123", Kind: "ntp", State: sources.StateSelected, Reach: 0xff, Poll: 6},
				{Name: "127.0.0.2:123", Kind: "ntp", State: sources.StateFalseticker, Reason: "disagrees"},
			},
		},
		Clock: ClockInfo{Driver: "virtual", OffsetFromSystem: 0.2, Frequency: -12.25},
	}
}

type testServer struct {
	path   string
	cancel context.CancelFunc
	done   chan error
}

// startServer serves b on a socket in a temporary directory.
func startServer(t *testing.T, b Backend, changeGID int, tweak func(*Server)) *testServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, nil, changeGID)
	if tweak != nil {
		tweak(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{path: path, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ts
}

// rawConn is a connection that speaks lines by hand.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// exchange sends one line and decodes the response line.
func (c *rawConn) exchange(t *testing.T, line string) (Response, string) {
	t.Helper()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	return c.read(t)
}

func (c *rawConn) read(t *testing.T) (Response, string) {
	t.Helper()
	text, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the response: %v (got %q)", err, text)
	}
	var resp Response
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		t.Fatalf("response %q: %v", text, err)
	}
	return resp, text
}

func TestStatusRoundTrip(t *testing.T) {
	b := &fakeBackend{status: sampleStatus()}
	ts := startServer(t, b, -1, nil)

	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 { // several requests on one connection
		got, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := sampleStatus()
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("status\n got %s\nwant %s", gj, wj)
		}
	}

	// The wire format is the documented one.
	rc := dialRaw(t, ts.path)
	_, text := rc.exchange(t, `{"version":1,"command":"status"}`)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"version": "1", "ok": "true", "error": `""`} {
		if string(raw[k]) != want {
			t.Errorf("%s = %s, want %s", k, raw[k], want)
		}
	}
	var st map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw["status"], &st); err != nil {
		t.Fatal(err)
	}
	if string(st["clock"]["driver"]) != `"virtual"` || string(st["clock"]["offset_from_system_s"]) != "0.2" {
		t.Errorf("clock = %v", st["clock"])
	}
	if string(st["engine"]["reference"]) != `"127.0.0.1:11123"` {
		t.Errorf("engine.reference = %s", st["engine"]["reference"])
	}
	// Args are ignored by version-1 commands; unknown members too.
	if resp, _ := rc.exchange(t, `{"version":1,"command":"status","args":{"x":1},"later":true}`); !resp.OK {
		t.Errorf("status with args: %+v", resp)
	}
}

func TestChangeCommands(t *testing.T) {
	b := &fakeBackend{status: sampleStatus()}
	ts := startServer(t, b, -1, nil)
	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if os.Geteuid() == 0 {
		if err := c.Reload(ctx); err != nil {
			t.Fatalf("reload as root: %v", err)
		}
		if err := c.MakeStep(ctx); err != nil {
			t.Fatalf("makestep as root: %v", err)
		}
		if b.reloads.Load() != 1 || b.steps.Load() != 1 {
			t.Errorf("backend saw %d reloads, %d steps; want 1, 1", b.reloads.Load(), b.steps.Load())
		}
		b.reloadErr = errors.New("timed.yaml:3: unknown key")
		err := c.Reload(ctx)
		var se *ServerError
		if !errors.As(err, &se) || se.Message != "reload: timed.yaml:3: unknown key" {
			t.Errorf("failing reload: %v", err)
		}
	} else {
		err := c.Reload(ctx)
		if err == nil || !strings.Contains(err.Error(), "permission denied: reload needs root") {
			t.Errorf("reload as uid %d: %v", os.Geteuid(), err)
		}
		if b.reloads.Load() != 0 {
			t.Error("a refused reload reached the backend")
		}
	}
	// The connection survives errors.
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestChangeAllowedForGroup(t *testing.T) {
	b := &fakeBackend{}
	ts := startServer(t, b, os.Getgid(), nil)
	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Reload(context.Background()); err != nil {
		t.Fatalf("reload from the configured group: %v", err)
	}
	if b.reloads.Load() != 1 {
		t.Error("reload did not reach the backend")
	}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name      string
		cred      *peerCred
		credErr   error
		changeGID int
		group     string
		want      string // "" = allowed
	}{
		{"root", &peerCred{UID: 0, GID: 0}, nil, -1, "", ""},
		{"root any group", &peerCred{UID: 0, GID: 1234}, nil, 50, "timed", ""},
		{"user, root only", &peerCred{UID: 1000, GID: 1000}, nil, -1, "", "permission denied: reload needs root"},
		{"user in group", &peerCred{UID: 1000, GID: 50}, nil, 50, "timed", ""},
		{"user not in group", &peerCred{UID: 1000, GID: 1000}, nil, 50, "timed", "permission denied: reload needs root or the timed group"},
		{"group without name", &peerCred{UID: 1000, GID: 1000}, nil, 50, "", "permission denied: reload needs root or the gid 50 group"},
		{"gid 0 is not root", &peerCred{UID: 1000, GID: 0}, nil, -1, "", "permission denied: reload needs root"},
		{"no credentials", nil, errors.New("not a Unix socket"), 50, "timed", "permission denied: reload: cannot tell who is asking (not a Unix socket)"},
		{"no credentials no error", nil, nil, -1, "", "permission denied: reload: cannot tell who is asking (unknown peer)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authorize("reload", tt.cred, tt.credErr, tt.changeGID, tt.group)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRefusedChangeResponse(t *testing.T) {
	// A refusal as it appears on the wire, from a server that sees a
	// fabricated non-root peer.
	s := NewServer(&fakeBackend{}, nil, 4242)
	s.groupName = "timed"
	resp := s.handle([]byte(`{"version":1,"command":"reload"}`), &peerCred{UID: 1000, GID: 1000}, nil)
	data, _ := json.Marshal(resp)
	want := `{"version":1,"ok":false,"error":"permission denied: reload needs root or the timed group"}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}
	// Read-only commands are for anyone.
	if resp := s.handle([]byte(`{"version":1,"command":"status"}`), &peerCred{UID: 1000, GID: 1000}, nil); !resp.OK {
		t.Errorf("status refused: %+v", resp)
	}
	if resp := s.handle([]byte(`{"version":1,"command":"status"}`), nil, errors.New("x")); !resp.OK {
		t.Errorf("status without credentials refused: %+v", resp)
	}
}

func TestPeerCredentials(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", ln.Addr().String())
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cred, err := peerCredentials(conn)
	if err != nil {
		t.Fatal(err)
	}
	if int(cred.UID) != os.Geteuid() || int(cred.GID) != os.Getegid() {
		t.Errorf("credentials %+v, want uid %d gid %d", cred, os.Geteuid(), os.Getegid())
	}
	if cred.PID != 0 && int(cred.PID) != os.Getpid() {
		t.Errorf("pid %d, want %d", cred.PID, os.Getpid())
	}
	if _, err := peerCredentials(&net.TCPConn{}); err == nil {
		t.Error("credentials of a non-Unix connection")
	}
}

func TestServerQueries(t *testing.T) {
	ts := startServer(t, &fakeBackend{status: sampleStatus()}, -1, nil)
	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.ServerStats(context.Background())
	if err != nil || !st.Enabled || st.Received != 10 || st.Dropped["rate limited"] != 1 {
		t.Errorf("ServerStats: %+v %v", st, err)
	}
	for _, tt := range []struct{ limit, want int }{{0, DefaultClientsLimit}, {3, 3}, {100, 50}} {
		cl, err := c.Clients(context.Background(), tt.limit)
		if err != nil || len(cl.Clients) != tt.want {
			t.Errorf("Clients(%d): %d clients, %v; want %d", tt.limit, len(cl.Clients), err, tt.want)
		}
	}
	if _, err := c.Clients(context.Background(), MaxClientsLimit+1); err == nil {
		t.Error("Clients above the limit: no error")
	}
	p, err := c.PTP(context.Background())
	if err != nil || len(p.Ports) != 1 || p.Ports[0].State != "SLAVE" || p.Ports[0].MeanPathDelay != 2e-6 {
		t.Errorf("PTP: %+v %v", p, err)
	}
}

func TestBadRequests(t *testing.T) {
	ts := startServer(t, &fakeBackend{status: sampleStatus()}, -1, nil)
	rc := dialRaw(t, ts.path)
	tests := []struct{ line, want string }{
		{`hello`, "malformed request: not a JSON object"},
		{`[1,2]`, "malformed request: not a JSON object"},
		{`{`, "malformed request"},
		{`{"version":1}`, `missing "command"`},
		{`{"command":"status"}`, `missing "version"`},
		{`{"version":2,"command":"status"}`, "unsupported protocol version 2 (this timed speaks version 1)"},
		{`{"version":-1,"command":"status"}`, "unsupported protocol version -1"},
		{`{"version":"1","command":"status"}`, `"version" must be a number`},
		{`{"version":1.5,"command":"status"}`, `"version" must be a number`},
		{`{"version":1,"command":7}`, `"command" must be a string`},
		{`{"version":1,"command":"status"} {}`, "malformed request"},
		{`{"version":1,"command":"status","args":[1]}`, `"args" must be an object`},
		{`{"version":1,"command":"frob"}`, `unknown command "frob" (known: add, burst, clients, makestep, nts, ptp, reload, remove, serverstats, sourcestats, status)`},
		{`{"version":1,"command":"clients","args":{"limit":-1}}`, "limit -1 out of range 1..10000"},
		{`{"version":1,"command":"clients","args":{"limit":"x"}}`, "clients: bad arguments"},
		{`{"version":1,"command":"STATUS"}`, `unknown command "STATUS"`},
		{"\x00\xff\xfe", "malformed request"},
	}
	for _, tt := range tests {
		resp, text := rc.exchange(t, tt.line)
		if resp.OK || !strings.Contains(resp.Error, tt.want) || resp.Version != Version {
			t.Errorf("%q: got %s, want an error containing %q", tt.line, strings.TrimSpace(text), tt.want)
		}
		if resp.Status != nil {
			t.Errorf("%q: an error response carries a status", tt.line)
		}
	}
	// Blank lines are skipped, and the connection still works.
	if resp, _ := rc.exchange(t, "\n  \n"+`{"version":1,"command":"status"}`); !resp.OK {
		t.Errorf("status after bad requests: %+v", resp)
	}
}

func TestOversizeRequest(t *testing.T) {
	ts := startServer(t, &fakeBackend{status: sampleStatus()}, -1, nil)

	// A request exactly at the limit is fine.
	req := `{"version":1,"command":"status"}`
	rc := dialRaw(t, ts.path)
	if resp, text := rc.exchange(t, req+strings.Repeat(" ", MaxRequestSize-len(req))); !resp.OK {
		t.Fatalf("request of %d bytes: %s", MaxRequestSize, text)
	}
	// One byte more is not, and the server hangs up.
	go rc.Write([]byte(req + strings.Repeat(" ", MaxRequestSize+1-len(req)) + "\n"))
	resp, _ := rc.read(t)
	if resp.OK || resp.Error != "request longer than 65536 bytes" {
		t.Errorf("oversize request: %+v", resp)
	}
	if _, err := rc.r.ReadByte(); err == nil {
		t.Error("the connection is still open after an oversize request")
	}

	// A huge line with no newline at all.
	rc2 := dialRaw(t, ts.path)
	go rc2.Write(make([]byte, 1<<20))
	if resp, _ := rc2.read(t); resp.OK || !strings.Contains(resp.Error, "longer than") {
		t.Errorf("1 MiB of zeros: %+v", resp)
	}
}

func TestBackendFailures(t *testing.T) {
	b := &fakeBackend{panicky: true}
	ts := startServer(t, b, -1, nil)
	rc := dialRaw(t, ts.path)
	resp, _ := rc.exchange(t, `{"version":1,"command":"status"}`)
	if resp.OK || !strings.Contains(resp.Error, "internal error") {
		t.Errorf("panicking backend: %+v", resp)
	}
	b.panicky = false
	b.status = sampleStatus()
	b.status.Engine.Offset = math.NaN()
	resp, _ = rc.exchange(t, `{"version":1,"command":"status"}`)
	if resp.OK || !strings.Contains(resp.Error, "cannot encode") {
		t.Errorf("NaN in status: %+v", resp)
	}
	b.status.Engine.Offset = 0
	if resp, _ := rc.exchange(t, `{"version":1,"command":"status"}`); !resp.OK {
		t.Errorf("the server did not recover: %+v", resp)
	}
}

func TestManyConcurrentClients(t *testing.T) {
	b := &fakeBackend{status: sampleStatus()}
	ts := startServer(t, b, -1, nil)
	const clients, requests = 40, 10
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			c, err := Dial(ts.path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for range requests {
				st, err := c.Status(context.Background())
				if err != nil {
					errs <- err
					return
				}
				if st.Engine.Reference != "127.0.0.1:11123" {
					errs <- fmt.Errorf("wrong status %+v", st)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConnectionLimit(t *testing.T) {
	ts := startServer(t, &fakeBackend{status: sampleStatus()}, -1, func(s *Server) { s.maxConns = 3 })
	var held []*rawConn
	for range 3 {
		rc := dialRaw(t, ts.path)
		if resp, _ := rc.exchange(t, `{"version":1,"command":"status"}`); !resp.OK {
			t.Fatalf("status: %+v", resp)
		}
		held = append(held, rc)
	}
	over := dialRaw(t, ts.path)
	resp, _ := over.read(t)
	if resp.OK || !strings.Contains(resp.Error, "too many control connections (limit 3)") {
		t.Errorf("fourth connection: %+v", resp)
	}
	held[0].Close()
	// The slot frees once the server notices the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		// While no slot is free the server answers the connection with
		// an error and closes it, perhaps before the request is written:
		// a failed write is not a failure here.
		rc := dialRaw(t, ts.path)
		_, _ = rc.Write([]byte(`{"version":1,"command":"status"}` + "\n"))
		line, _ := rc.r.ReadString('\n')
		rc.Close()
		var resp Response
		if json.Unmarshal([]byte(line), &resp) == nil && resp.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after closing a connection: %+v", resp)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdleTimeoutAndClientRetry(t *testing.T) {
	b := &fakeBackend{status: sampleStatus()}
	ts := startServer(t, b, -1, func(s *Server) { s.timeout = 100 * time.Millisecond })
	rc := dialRaw(t, ts.path)
	start := time.Now()
	if _, err := rc.r.ReadByte(); err == nil {
		t.Error("an idle connection was not closed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}

	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the server drops the connection
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status after the server's idle timeout: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	b := &fakeBackend{status: sampleStatus(), block: make(chan struct{})}
	ts := startServer(t, b, -1, nil)
	defer close(b.block) // before the server's cleanup waits for handlers
	c, err := Dial(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Status(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Status with a 100ms deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if _, err := c.Status(ctx2); !errors.Is(err, context.Canceled) {
		t.Errorf("Status cancelled: %v", err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&fakeBackend{status: sampleStatus()}, nil, -1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	rc := dialRaw(t, path)
	if resp, _ := rc.exchange(t, `{"version":1,"command":"status"}`); !resp.OK {
		t.Fatal("status failed")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := rc.r.ReadByte(); err == nil {
		t.Error("an open connection survived Serve's return")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
	if _, err := Dial(path); err == nil {
		t.Error("dialling a stopped server succeeded")
	}
}

func TestServeAcceptError(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "t.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Accept fails at once, and not because ctx is done
	err = NewServer(&fakeBackend{}, nil, -1).Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "control: accept") {
		t.Errorf("Serve on a closed listener: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()

	t.Run("creates the directory", func(t *testing.T) {
		path := filepath.Join(dir, "run", "timed", "timed.sock")
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		st, err := os.Stat(filepath.Dir(path))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("directory: %v %v", st.Mode(), err)
		}
		st, err = os.Lstat(path)
		if err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o666 {
			t.Errorf("socket: %v %v", st.Mode(), err)
		}
		// A live socket is not replaced.
		if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "already listening") {
			t.Errorf("second Listen: %v", err)
		}
	})

	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("no stale socket to test with: %v", err)
		}
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		ln.Close()
	})

	t.Run("leaves other files alone", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v", err)
		}
		if data, _ := os.ReadFile(path); string(data) != "precious" {
			t.Error("the file was changed")
		}
	})
}

func TestDialError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	_, err := Dial(path)
	if err == nil {
		t.Fatal("Dial succeeded")
	}
	want := "control: dial " + path + ": connect: no such file or directory (is timed running?)"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Error("the error does not wrap ENOENT")
	}
}

func TestClientRejectsBadResponses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	replies := []string{
		"not json\n",
		`{"version":2,"ok":true}` + "\n",
		`{"version":1,"ok":true,"error":""}` + "\n", // status without a status
		`{"version":1,"ok":false,"error":""}` + "\n",
	}
	go func() {
		for _, reply := range replies {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	wants := []string{"malformed response", "protocol version 2", "has no status", "control: status failed"}
	for i, want := range wants {
		c, err := Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Status(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("reply %q: error %v, want %q", replies[i], err, want)
		}
		c.Close()
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"command":"status"}`,
		`{"version":1,"command":"reload","args":{}}`,
		`{"version":1,"command":"x","args":null}`,
		`{"version":2}`, `[]`, `{`, `null`, `{"version":1e400}`, `  {"command":""}  `,
		`{"version":1,"command":"add","args":{"type":"server","address":"192.0.2.1","port":123,"minpoll":-2}}`,
		`{"version":1,"command":"add","args":{"type":"pool","address":"pool.example","nts":true}}`,
		`{"version":1,"command":"remove","args":{"source":"192.0.2.1:123"}}`,
		`{"version":1,"command":"burst","args":{"source":""}}`,
		`{"version":1,"command":"sourcestats"}`, `{"version":1,"command":"nts"}`,
	} {
		f.Add([]byte(s))
	}
	s := NewServer(&fakeBackend{status: sampleStatus()}, nil, -1)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRequest(data)
		if err == nil {
			if req.Version != Version || req.Command == "" {
				t.Fatalf("accepted %+v", req)
			}
			// What was accepted survives a round trip.
			enc, err := json.Marshal(req)
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", req, err)
			}
			again, err := decodeRequest(enc)
			if err != nil || again.Command != req.Command || again.Version != req.Version {
				t.Fatalf("round trip of %s: %+v %v", enc, again, err)
			}
		}
		// The whole handler answers anything without panicking, and its
		// answer encodes.
		// As root, changing commands get to check their arguments.
		for _, cred := range []*peerCred{{UID: 1000, GID: 1000}, {UID: 0}} {
			resp := s.handle(data, cred, nil)
			if resp.Version != Version || (!resp.OK && resp.Error == "") {
				t.Fatalf("response %+v", resp)
			}
			if _, err := json.Marshal(resp); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkStatusRoundTrip(b *testing.B) {
	path := filepath.Join(b.TempDir(), "b.sock")
	ln, err := Listen(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go NewServer(&fakeBackend{status: sampleStatus()}, nil, -1).Serve(ctx, ln)
	c, err := Dial(path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := c.Status(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
