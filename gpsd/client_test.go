package gpsd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/sources"
)

// clientTestTimebase is a disciplined clock 5 ms ahead of the system clock.
type clientTestTimebase struct{}

const clientTestAhead = 5 * time.Millisecond

func (clientTestTimebase) Now() time.Time                   { return time.Now().Add(clientTestAhead) }
func (clientTestTimebase) FromSystem(t time.Time) time.Time { return t.Add(clientTestAhead) }

// clientTestReporter records what a source reports.
type clientTestReporter struct {
	mu       sync.Mutex
	polled   int
	measured []sources.Measurement
	faults   []string
	changed  chan struct{}
}

func newClientTestReporter() *clientTestReporter {
	return &clientTestReporter{changed: make(chan struct{}, 1000)}
}

func (r *clientTestReporter) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *clientTestReporter) Polled() { r.mu.Lock(); r.polled++; r.mu.Unlock(); r.note() }
func (r *clientTestReporter) Measured(m sources.Measurement) {
	r.mu.Lock()
	r.measured = append(r.measured, m)
	r.mu.Unlock()
	r.note()
}
func (r *clientTestReporter) Fault(s string) {
	r.mu.Lock()
	r.faults = append(r.faults, s)
	r.mu.Unlock()
	r.note()
}
func (r *clientTestReporter) PollInterval() time.Duration { return time.Second }

func (r *clientTestReporter) snapshot() (int, []sources.Measurement, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.polled, append([]sources.Measurement(nil), r.measured...), append([]string(nil), r.faults...)
}

// waitFor waits until cond holds for what r recorded.
func (r *clientTestReporter) waitFor(t *testing.T, what string, cond func(polled int, ms []sources.Measurement, faults []string) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		p, ms, fs := r.snapshot()
		if cond(p, ms, fs) {
			return
		}
		// The condition may also look at the client's status (its drop
		// counts), which changes without a report: look again now and then.
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s: polled %d, measured %d, faults %q", what, p, len(ms), fs)
		}
	}
}

// clientTestGpsd is a scripted gpsd: it accepts one connection, records
// the command, writes the lines and then keeps the connection open until
// the test ends.
func clientTestGpsd(t *testing.T, network string, lines ...string) (addr string, watch <-chan string) {
	t.Helper()
	var ln net.Listener
	var err error
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "gpsd.sock")
		ln, err = net.Listen("unix", addr)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cmds := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { conn.Close() })
		cmd, _ := bufio.NewReader(conn).ReadString('\n')
		cmds <- cmd
		for _, l := range lines {
			if _, err := conn.Write([]byte(l + "\n")); err != nil {
				return
			}
		}
	}()
	return addr, cmds
}

const (
	clientTestVersion = `{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}`
	clientTestDevices = `{"class":"DEVICES","devices":[{"class":"DEVICE","path":"/dev/pts/1","driver":"NMEA0183"}]}`
	clientTestTPV3    = `{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2026-11-22T10:55:48.000Z"}`
	clientTestTPV2    = `{"class":"TPV","device":"/dev/pts/1","mode":2,"time":"2026-11-22T10:55:49.000Z"}`
	// real 1795344948.000000000, clock 1795344947.974265942: the system
	// clock is 25.734058 ms behind.
	clientTestTOFF  = `{"class":"TOFF","device":"/dev/pts/1","real_sec":1795344948, "real_nsec":0,"clock_sec":1795344947,"clock_nsec":974265942}`
	clientTestPPS   = `{"class":"PPS","device":"/dev/pts/1","real_sec":1795344948, "real_nsec":0,"clock_sec":1795344948,"clock_nsec":300,"precision":-20}`
	clientTestToffD = 25734058 * time.Nanosecond
)

func TestClient(t *testing.T) {
	gps := uint32('G')<<24 | uint32('P')<<16 | uint32('S')<<8
	pps := uint32('P')<<24 | uint32('P')<<16 | uint32('S')<<8
	tests := []struct {
		name      string
		network   string
		cfg       ClientConfig
		lines     []string
		wantWatch string
		// wantFault is a fault that must be reported (after the lines).
		wantFault string
		// wantM are the measurements expected, in order.
		wantM []sources.Measurement
		// wantDropped counts dropped reports by reason.
		wantDropped map[string]uint64
		wantMode    int
		wantSats    int
	}{
		{
			name:      "toff with 3D fix",
			lines:     []string{clientTestVersion, clientTestDevices, clientTestTPV3, `{"class":"SKY","device":"/dev/pts/1","satellites":[{"used":true},{"used":true},{"used":false}]}`, clientTestTOFF, clientTestPPS},
			wantWatch: `?WATCH={"enable":true,"json":true,"pps":true}` + "\n",
			wantM: []sources.Measurement{{
				Local:  time.Unix(1795344947, 974265942).Add(clientTestAhead),
				Offset: clientTestToffD - clientTestAhead, RootDispersion: DefaultTOFFUncertainty,
				Precision: DefaultTOFFPrecision, RefID: gps}},
			wantMode: 3, wantSats: 2,
		},
		{
			name:      "pps over a unix socket with a device",
			network:   "unix",
			cfg:       ClientConfig{PPS: true, Device: "/dev/pts/1"},
			lines:     []string{clientTestVersion, clientTestDevices, clientTestTPV3, clientTestTOFF, clientTestPPS},
			wantWatch: `?WATCH={"enable":true,"json":true,"pps":true,"device":"/dev/pts/1"}` + "\n",
			wantM: []sources.Measurement{{
				Local:  time.Unix(1795344948, 300).Add(clientTestAhead),
				Offset: -300 - clientTestAhead, RootDispersion: 953, Precision: 953, RefID: pps}},
			wantMode: 3,
		},
		{
			name:  "config offset, delay, precision and refid",
			cfg:   ClientConfig{Offset: -100 * time.Millisecond, Delay: 50 * time.Millisecond, Precision: 2 * time.Millisecond, RefID: "NMEA"},
			lines: []string{clientTestVersion, clientTestTPV3, clientTestTOFF},
			wantM: []sources.Measurement{{
				Local:  time.Unix(1795344947, 974265942).Add(clientTestAhead),
				Offset: clientTestToffD - clientTestAhead - 100*time.Millisecond, RootDispersion: 50 * time.Millisecond,
				Precision: 2 * time.Millisecond, RefID: uint32('N')<<24 | uint32('M')<<16 | uint32('E')<<8 | uint32('A')}},
			wantMode: 3,
		},
		{
			name:        "2D fix is not enough",
			lines:       []string{clientTestVersion, clientTestTPV2, clientTestTOFF},
			wantFault:   "no 3D fix: mode 2",
			wantDropped: map[string]uint64{"no fix": 1},
			wantMode:    2,
		},
		{
			name:  "2D fix is enough with min mode 2",
			cfg:   ClientConfig{MinMode: 2},
			lines: []string{clientTestVersion, clientTestTPV2, clientTestTOFF},
			wantM: []sources.Measurement{{
				Local:  time.Unix(1795344947, 974265942).Add(clientTestAhead),
				Offset: clientTestToffD - clientTestAhead, RootDispersion: DefaultTOFFUncertainty,
				Precision: DefaultTOFFPrecision, RefID: gps}},
			wantMode: 2,
		},
		{
			name:  "fix lost and back",
			lines: []string{clientTestVersion, clientTestTPV3, clientTestTPV2, clientTestTOFF, clientTestTPV3, clientTestTOFF},
			wantM: []sources.Measurement{{
				Local:  time.Unix(1795344947, 974265942).Add(clientTestAhead),
				Offset: clientTestToffD - clientTestAhead, RootDispersion: DefaultTOFFUncertainty,
				Precision: DefaultTOFFPrecision, RefID: gps}},
			wantFault:   "no 3D fix: mode 2",
			wantDropped: map[string]uint64{"no fix": 1},
			wantMode:    3,
		},
		{
			name:        "no TPV yet",
			lines:       []string{clientTestVersion, clientTestTOFF},
			wantFault:   "no fix yet",
			wantDropped: map[string]uint64{"no fix yet": 1},
		},
		{
			name:      "configured device absent",
			cfg:       ClientConfig{Device: "/dev/ttyACM0"},
			lines:     []string{clientTestVersion, clientTestDevices, clientTestTPV3, clientTestTOFF},
			wantFault: "device /dev/ttyACM0 not among gpsd's devices [/dev/pts/1]",
			// The TPV and TOFF of /dev/pts/1 are not the configured device's.
			wantDropped: map[string]uint64{"other device": 1},
		},
		{
			name:        "bad reports are dropped",
			lines:       []string{clientTestVersion, `{"class":"TOFF","real_sec":-5}`, `not json`, clientTestTPV3, clientTestTOFF},
			wantM:       []sources.Measurement{{Local: time.Unix(1795344947, 974265942).Add(clientTestAhead), Offset: clientTestToffD - clientTestAhead, RootDispersion: DefaultTOFFUncertainty, Precision: DefaultTOFFPrecision, RefID: gps}},
			wantDropped: map[string]uint64{"bad report": 2},
			wantMode:    3,
		},
		{
			name:      "gpsd error",
			lines:     []string{clientTestVersion, `{"class":"ERROR","message":"Can't open /dev/ttyACM0."}`},
			wantFault: "gpsd: Can't open /dev/ttyACM0.",
		},
		{
			name:      "wrong protocol",
			lines:     []string{`{"class":"VERSION","release":"2.0","proto_major":2,"proto_minor":1}`},
			wantFault: "protocol 2.1, need 3.x, retrying in 1s",
		},
		{
			name:      "line too long",
			lines:     []string{clientTestVersion, "{" + strings.Repeat(" ", jsonMaxLine+10) + "}"},
			wantFault: fmt.Sprintf("line longer than %d bytes, retrying in 1s", jsonMaxLine),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			network := tt.network
			if network == "" {
				network = "tcp"
			}
			addr, watch := clientTestGpsd(t, network, tt.lines...)
			cfg := tt.cfg
			cfg.Address = addr
			c, err := NewClient(cfg, clientTestTimebase{}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			r := newClientTestReporter()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx, r) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				if st := c.Status(); st.Connected {
					t.Errorf("connected after Run returned: %+v", st)
				}
			}()
			if tt.wantWatch != "" {
				select {
				case got := <-watch:
					if got != tt.wantWatch {
						t.Errorf("command %q, want %q", got, tt.wantWatch)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no command")
				}
			}
			r.waitFor(t, "measurements and fault", func(_ int, ms []sources.Measurement, fs []string) bool {
				hasFault := tt.wantFault == ""
				for _, f := range fs {
					hasFault = hasFault || strings.Contains(f, tt.wantFault)
				}
				var dropped uint64
				for _, n := range c.Status().Dropped {
					dropped += n
				}
				var want uint64
				for _, n := range tt.wantDropped {
					want += n
				}
				return hasFault && len(ms) >= len(tt.wantM) && dropped >= want
			})
			// Let anything wrongly reported after the expected arrive.
			time.Sleep(50 * time.Millisecond)
			polled, ms, faults := r.snapshot()
			if len(ms) != len(tt.wantM) {
				t.Fatalf("%d measurements, want %d: %+v", len(ms), len(tt.wantM), ms)
			}
			for i := range ms {
				if ms[i] != tt.wantM[i] {
					t.Errorf("measurement %d:\n got %+v\nwant %+v", i, ms[i], tt.wantM[i])
				}
			}
			st := c.Status()
			if st.Kind != "gpsd" || st.Samples != uint64(len(tt.wantM)) || st.Mode != tt.wantMode || st.Satellites != tt.wantSats {
				t.Errorf("status %+v, want %d samples, mode %d, %d satellites", st, len(tt.wantM), tt.wantMode, tt.wantSats)
			}
			for k, v := range tt.wantDropped {
				if st.Dropped[k] != v {
					t.Errorf("dropped %q = %d, want %d (%v)", k, st.Dropped[k], v, st.Dropped)
				}
			}
			if len(tt.wantM) > 0 {
				if !st.LastSample.Equal(tt.wantM[len(tt.wantM)-1].Local) {
					t.Errorf("last sample %v, want %v", st.LastSample, tt.wantM[len(tt.wantM)-1].Local)
				}
				if polled < len(tt.wantM) {
					t.Errorf("polled %d times for %d measurements", polled, len(tt.wantM))
				}
				if faults[len(faults)-1] != "" {
					t.Errorf("fault not cleared: %q", faults)
				}
			}
		})
	}
}

// TestClientReconnects: gpsd is not there at first (connection refused,
// retried after 1 s, then 2 s), then comes up and the client measures.
func TestClientReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewClient(ClientConfig{Address: addr}, clientTestTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := newClientTestReporter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	defer func() { cancel(); <-done }()

	for _, want := range []string{"retrying in 1s", "retrying in 2s"} {
		full := fmt.Sprintf("gpsd at %s: connection refused, %s", addr, want)
		r.waitFor(t, full, func(_ int, _ []sources.Measurement, fs []string) bool {
			return len(fs) > 0 && fs[len(fs)-1] == full
		})
		if st := c.Status(); st.Connected || st.Reason != full {
			t.Errorf("status %+v, want disconnected with %q", st, full)
		}
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s\n%s\n%s\n", clientTestVersion, clientTestTPV3, clientTestTOFF)
		<-ctx.Done()
	}()
	r.waitFor(t, "a measurement after reconnecting", func(_ int, ms []sources.Measurement, _ []string) bool { return len(ms) == 1 })
	if st := c.Status(); !st.Connected || st.Reason != "" {
		t.Errorf("status %+v, want connected without reason", st)
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		name     string
		cfg      ClientConfig
		wantErr  string
		wantName string
	}{
		{name: "defaults", wantName: "gpsd 127.0.0.1:2947"},
		{name: "device and pps", cfg: ClientConfig{Address: "/run/gpsd.sock", Device: "/dev/ttyACM0", PPS: true}, wantName: "gpsd /run/gpsd.sock /dev/ttyACM0 pps"},
		{name: "named", cfg: ClientConfig{Name: "gnss"}, wantName: "gnss"},
		{name: "bad address", cfg: ClientConfig{Address: "localhost"}, wantErr: "address"},
		{name: "bad mode", cfg: ClientConfig{MinMode: 1}, wantErr: "min mode 1"},
		{name: "negative delay", cfg: ClientConfig{Delay: -1}, wantErr: "must not be negative"},
		{name: "long refid", cfg: ClientConfig{RefID: "GNSS1"}, wantErr: "refid"},
		{name: "bad refid", cfg: ClientConfig{RefID: "G S"}, wantErr: "printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.cfg, clientTestTimebase{}, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Name() != tt.wantName {
				t.Errorf("name %q, want %q", c.Name(), tt.wantName)
			}
			if o := c.Options(); o.Kind != "gpsd" || o.Address != c.deviceLabel() {
				t.Errorf("options %+v", o)
			}
		})
	}
}
