//go:build linux

package interop

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// request is an NTP request timed sent to the test's responder.
type request struct {
	from *net.UDPAddr
	data []byte
}

// responder stands in for an NTP server: it receives timed's requests and
// answers only what the test tells it to.
type responder struct {
	conn *net.UDPConn
	reqs chan request
}

func newResponder(t *testing.T) *responder {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{conn: conn, reqs: make(chan request, 64)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				close(r.reqs)
				return
			}
			select {
			case r.reqs <- request{from: from, data: append([]byte(nil), buf[:n]...)}:
			default: // the test is not listening; drop it
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return r
}

func (r *responder) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// next drops the requests already received and waits for a new one.
func (r *responder) next(t *testing.T) request {
	t.Helper()
drain:
	for {
		select {
		case <-r.reqs:
		default:
			break drain
		}
	}
	select {
	case req, ok := <-r.reqs:
		if !ok {
			t.Fatal("responder socket closed")
		}
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("timed sent no NTP request within 10 s")
	}
	panic("unreachable")
}

// ntpTime is t as a 64-bit NTP timestamp (era 0).
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	sec := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// serverReply is a well-formed stratum-1 server reply to req whose clock
// reads 10 s ahead of the system clock, so that a reply timed wrongly
// accepted would show at once. origin overrides the origin timestamp when
// non-zero.
func serverReply(req []byte, origin uint64) []byte {
	b := make([]byte, 48)
	b[0] = 0<<6 | 4<<3 | 4 // LI 0, VN 4, mode 4 (server)
	b[1] = 1               // stratum
	b[2] = 0xfe            // poll (-2 as int8)
	b[3] = 0xe9            // precision
	copy(b[12:16], "GPS\x00")
	now := ntpTime(time.Now().Add(10 * time.Second))
	binary.BigEndian.PutUint64(b[16:], now) // reference
	if origin == 0 && len(req) >= 48 {
		copy(b[24:32], req[40:48])
	} else {
		binary.BigEndian.PutUint64(b[24:], origin)
	}
	binary.BigEndian.PutUint64(b[32:], now) // receive
	binary.BigEndian.PutUint64(b[40:], now) // transmit
	return b
}

// badCase is one kind of bad input and the words a clear log line about it
// would use.
type badCase struct {
	name  string
	words *regexp.Regexp
	send  func(t *testing.T, r *responder, other *net.UDPConn, req request)
}

func sendTo(t *testing.T, c *net.UDPConn, to *net.UDPAddr, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDP(b, to); err != nil {
		t.Fatalf("send: %v", err)
	}
}

var badCases = []badCase{
	{
		name:  "truncated",
		words: regexp.MustCompile(`(?i)short|truncat|too small|length|size|bytes`),
		send: func(t *testing.T, r *responder, _ *net.UDPConn, req request) {
			sendTo(t, r.conn, req.from, serverReply(req.data, 0)[:20])
		},
	},
	{
		name:  "oversized",
		words: regexp.MustCompile(`(?i)long|large|oversiz|size|length|bytes|extension`),
		send: func(t *testing.T, r *responder, _ *net.UDPConn, req request) {
			junk := make([]byte, 4000)
			for i := range junk {
				junk[i] = byte(rand.IntN(256))
			}
			sendTo(t, r.conn, req.from, append(serverReply(req.data, 0), junk...))
		},
	},
	{
		name:  "garbage",
		words: regexp.MustCompile(`(?i)invalid|malformed|mode|version|origin|unexpected|bogus|garbage|parse|decode|stratum|bad`),
		send: func(t *testing.T, r *responder, _ *net.UDPConn, req request) {
			junk := make([]byte, 48)
			for i := range junk {
				junk[i] = byte(rand.IntN(256))
			}
			junk[0] = junk[0]&^7 | 4 // keep it looking like a server reply
			sendTo(t, r.conn, req.from, junk)
		},
	},
	{
		name:  "wrong_address",
		words: regexp.MustCompile(`(?i)address|unexpected|unknown sender|spoof|wrong`),
		send: func(t *testing.T, _ *responder, other *net.UDPConn, req request) {
			// A reply that would be valid, from 127.0.0.2 instead of
			// 127.0.0.1.
			sendTo(t, other, req.from, serverReply(req.data, 0))
		},
	},
	{
		name:  "never_requested",
		words: regexp.MustCompile(`(?i)origin|unexpected|unsolicited|not sent|no request|never|match|spoof|stale|duplicate`),
		send: func(t *testing.T, r *responder, _ *net.UDPConn, req request) {
			// Well-formed, from the right address, but answering a
			// transmit timestamp timed never sent.
			sendTo(t, r.conn, req.from, serverReply(req.data, rand.Uint64()|1))
		},
	},
}

// lineWords is what a log line says: its message and fields, without the
// fields every line of a source carries (time, level, source, server).
func lineWords(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		switch k {
		case "time", "ts", "level", "source", "server", "logger", "caller":
			continue
		}
		fmt.Fprintf(&b, "%s=%v ", k, v)
	}
	return b.String()
}

// lineKey identifies a kind of log line: its level and message.
func lineKey(m map[string]any) string { return fmt.Sprint(m["level"], "|", m["msg"]) }

// TestBadReplies sends timed bad replies from a UDP responder in place of
// its server. Each must give a clear log line and must not move timed's
// clock.
func TestBadReplies(t *testing.T) {
	testenv.RequireRoot(t) // timed runs under capsh
	resp := newResponder(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: resp.port()})
	if err != nil {
		t.Fatalf("listen on 127.0.0.2: %v", err)
	}
	defer other.Close()

	tp := startTimed(t, timedConfig{SimOffset: "200ms", SimFreqPPM: 0, Port: resp.port(), MinPoll: -2, MaxPoll: -2, LogLevel: "debug"}, "")
	// Routine lines: what timed logs with a server that never answers.
	resp.next(t)
	time.Sleep(2 * time.Second)
	routine := map[string]bool{}
	for _, m := range logLines(tp.Output()) {
		routine[lineKey(m)] = true
	}

	for _, c := range badCases {
		t.Run(c.name, func(t *testing.T) {
			req := resp.next(t)
			before := len(logLines(tp.Output()))
			c.send(t, resp, other, req)
			time.Sleep(time.Second)
			lines := logLines(tp.Output())[before:]
			var clear []string
			for _, m := range lines {
				b, _ := json.Marshal(m)
				if !routine[lineKey(m)] && c.words.MatchString(lineWords(m)) {
					clear = append(clear, string(b))
				}
			}
			if tp.Exited() {
				t.Fatalf("timed exited: %v\n%s", tp.Err(), tp.Tail(20))
			}
			if len(clear) == 0 {
				t.Errorf("no new log line about the %s reply (matching %s) among %d new lines", c.name, c.words, len(lines))
				for _, m := range lines {
					b, _ := json.Marshal(m)
					t.Logf("  %s", b)
				}
				return
			}
			for _, l := range clear {
				t.Logf("timed: %s", l)
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := tp.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(st.Clock.OffsetFromSystem - 0.2); d > 1e-6 {
		t.Errorf("virtual clock moved: offset from system %+.6f s, started at +0.200000 s", st.Clock.OffsetFromSystem)
	}
	if st.Clock.Frequency != 0 || st.Engine.Updates != 0 || st.Engine.Steps != 0 {
		t.Errorf("clock was corrected: frequency %+.3f ppm, %d updates, %d steps", st.Clock.Frequency, st.Engine.Updates, st.Engine.Steps)
	}
	for _, s := range st.Engine.Sources {
		if s.Samples != 0 {
			t.Errorf("source %s took %d samples from bad replies (last offset %+.6f s)", s.Name, s.Samples, s.LastOffset)
		}
		t.Logf("source %s: %s (%s), reach %o", s.Name, s.State, s.Reason, s.Reach)
	}
}

// badConfig has one mistake of each kind on a known line.
const badConfig = `clock:
  driver: atomic
  colour: blue
engine:
  step_threshold: -1s
  min_agreeing_sources: lots
ntp:
  servers:
    - address: "bad host name!"
      port: 70000
      minpoll: 8
      maxpoll: 4
log:
  level: loud
`

// badConfigLines are the lines of badConfig that must be named (the
// minpoll/maxpoll conflict may be reported on either line).
var badConfigLines = [][]int{{2}, {3}, {5}, {6}, {9}, {10}, {11, 12}, {14}}

// TestBadConfig checks that timed -c FILE and timectl validate FILE reject a
// file with many mistakes, exit 1, and name FILE:LINE:COLUMN for each.
func TestBadConfig(t *testing.T) {
	timed, timectl := binaries(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(badConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{timed, "-c", path}, {timectl, "validate", path}} {
		name := filepath.Base(argv[0])
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("%s: want exit status 1, got %v\n%s", strings.Join(argv, " "), err, out)
			}
			t.Logf("%s says:\n%s", name, out)
			for _, lines := range badConfigLines {
				found := false
				for _, l := range lines {
					if regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s:%d:", path, l)) + `\d+`).Match(out) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error naming %s:%v:COLUMN", path, lines)
				}
			}
		})
	}

	// A good file passes validation.
	good := filepath.Join(dir, "good.yaml")
	cfg := timedConfig{SimOffset: "0s", Port: 123, MinPoll: 4, MaxPoll: 6}
	if err := os.WriteFile(good, []byte(cfg.yaml(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(timectl, "validate", good).CombinedOutput(); err != nil {
		t.Errorf("timectl validate on a good file: %v\n%s", err, out)
	}
}
