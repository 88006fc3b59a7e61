package gpsd

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// ppsTestTimebase is a disciplined clock that is ahead of the system clock
// by ahead.
type ppsTestTimebase struct{ ahead time.Duration }

func (tb ppsTestTimebase) Now() time.Time                   { return time.Now().Add(tb.ahead) }
func (tb ppsTestTimebase) FromSystem(t time.Time) time.Time { return t.Add(tb.ahead) }

// ppsTestReporter records what a source reports.
type ppsTestReporter struct {
	mu       sync.Mutex
	polled   int
	measured []sources.Measurement
	faults   []string
}

func (r *ppsTestReporter) Polled() { r.mu.Lock(); r.polled++; r.mu.Unlock() }
func (r *ppsTestReporter) Measured(m sources.Measurement) {
	r.mu.Lock()
	r.measured = append(r.measured, m)
	r.mu.Unlock()
}
func (r *ppsTestReporter) Fault(reason string) {
	r.mu.Lock()
	r.faults = append(r.faults, reason)
	r.mu.Unlock()
}
func (r *ppsTestReporter) PollInterval() time.Duration { return time.Second }

// ppsTestEvent is what one Fetch of the fake device returns.
type ppsTestEvent struct {
	edge time.Time
	seq  uint32
	err  error
}

// ppsTestDevice returns its events in order, then cancels the test's
// context and times out.
type ppsTestDevice struct {
	events []ppsTestEvent
	done   func()
	closed bool
}

func (d *ppsTestDevice) Fetch(timeout time.Duration) (time.Time, uint32, error) {
	if timeout != ppsFetchTimeout {
		return time.Time{}, 0, errors.New("unexpected timeout")
	}
	if len(d.events) == 0 {
		d.done()
		return time.Time{}, 0, errPPSTimeout
	}
	e := d.events[0]
	d.events = d.events[1:]
	return e.edge, e.seq, e.err
}

func (d *ppsTestDevice) Close() error { d.closed = true; return nil }

// base is a whole second of system time.
var ppsBase = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestPPSNumber(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		edge     time.Duration // pulse's system time after ppsBase
		ahead    time.Duration // disciplined clock ahead of the system clock
		coarse   *time.Duration
		coarseOK bool
		offset   time.Duration
		want     time.Duration // measurement offset
		wantDrop string
	}{
		{name: "on time", edge: 0, want: 0},
		{name: "local clock 3 ms fast", edge: 3 * ms, want: -3 * ms},
		{name: "local clock 399 ms slow", edge: -399 * ms, want: 399 * ms},
		{name: "local clock 401 ms slow: ambiguous", edge: -401 * ms, wantDrop: ppsDropAmbiguous},
		{name: "exactly 400 ms is still numbered", edge: 600 * ms, want: 400 * ms},
		{name: "half a second: ambiguous", edge: 500 * ms, wantDrop: ppsDropAmbiguous},
		{name: "disciplined clock ahead counts, not the system clock", edge: 0, ahead: 20 * ms, want: -20 * ms},
		// The lock source says the clock is 2.6 s slow: the pulse at
		// local x.0 is reference second x+3 (local x.0 + 2.6 s = x+2.6,
		// nearest second x+3), so the offset is +3 s.
		{name: "coarse numbers the second", edge: 0, coarse: ptrDuration(2600 * ms), coarseOK: true, want: 3 * time.Second},
		{name: "coarse exact", edge: 5 * ms, coarse: ptrDuration(-2 * time.Second), coarseOK: true, want: -2*time.Second - 5*ms},
		{name: "coarse puts the pulse between seconds", edge: 0, coarse: ptrDuration(450 * ms), coarseOK: true, wantDrop: ppsDropAmbiguous},
		{name: "coarse not ready", edge: 0, coarse: ptrDuration(0), coarseOK: false, wantDrop: ppsDropNoCoarse},
		// Offset 300 ms: the pulse marks x.3 of reference time.
		{name: "offset moves the reference", edge: 300 * ms, offset: 300 * ms, want: 0},
		{name: "offset and a slow clock", edge: 290 * ms, offset: 300 * ms, want: 10 * ms},
		{name: "offset past the fraction limit still numbers", edge: 700 * ms, offset: 700 * ms, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := PPSConfig{Device: "/dev/pps0", Offset: tt.offset, Delay: 2 * time.Microsecond}
			if tt.coarse != nil {
				off, ok := *tt.coarse, tt.coarseOK
				cfg.Coarse = func() (time.Duration, bool) { return off, ok }
			}
			p, err := NewPPS(cfg, ppsTestTimebase{tt.ahead}, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			edge := ppsBase.Add(tt.edge)
			m, drop := p.number(edge, 7)
			if drop != tt.wantDrop {
				t.Fatalf("drop = %q, want %q", drop, tt.wantDrop)
			}
			if drop != "" {
				return
			}
			if m.Offset != tt.want {
				t.Errorf("offset = %v, want %v", m.Offset, tt.want)
			}
			if !m.Local.Equal(edge.Add(tt.ahead)) {
				t.Errorf("local = %v, want %v", m.Local, edge.Add(tt.ahead))
			}
			ref := m.Local.Add(m.Offset).Add(-tt.offset)
			if ref.Nanosecond() != 0 {
				t.Errorf("reference time %v minus offset is not a whole second", ref)
			}
			if m.Delay != 0 || m.RootDispersion != 2*time.Microsecond || m.Precision != ppsDevicePrecision ||
				m.Stratum != 0 || m.RefID != 0x50505300 || m.Stamping != sources.StampKernel {
				t.Errorf("measurement fields %+v", m)
			}
		})
	}
}

func ptrDuration(d time.Duration) *time.Duration { return &d }

func TestPPSRepeatedSequence(t *testing.T) {
	p, err := NewPPS(PPSConfig{Device: "/dev/pps0"}, ppsTestTimebase{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, drop := p.number(ppsBase, 1); drop != "" {
		t.Fatalf("first pulse dropped: %s", drop)
	}
	if _, drop := p.number(ppsBase, 1); drop != ppsDropRepeated {
		t.Fatalf("same sequence again: drop %q, want %q", drop, ppsDropRepeated)
	}
	if _, drop := p.number(ppsBase.Add(time.Second), 2); drop != "" {
		t.Fatalf("next pulse dropped: %s", drop)
	}
}

func TestNewPPSConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     PPSConfig
		wantErr string
		check   func(p *PPS) bool
	}{
		{"defaults", PPSConfig{Device: "/dev/pps1"}, "", func(p *PPS) bool {
			o := p.Options()
			return p.Name() == "pps:/dev/pps1" && p.refID == 0x50505300 && p.cfg.Precision == ppsDevicePrecision &&
				o.Kind == "pps" && o.Address == "/dev/pps1" && o.MinPoll == 0 && o.MaxPoll == 0
		}},
		{"named with options", PPSConfig{Device: "/dev/pps0", Name: "gnss-pps", RefID: "GPSa", Poll: 4, Prefer: true, Require: true}, "", func(p *PPS) bool {
			o := p.Options()
			return p.Name() == "gnss-pps" && p.refID == 0x47505361 && o.MinPoll == 4 && o.MaxPoll == 4 && o.Prefer && o.Require && !o.Trust && !o.NoSelect
		}},
		{"no device", PPSConfig{}, "no device given", nil},
		{"NUL in device", PPSConfig{Device: "/dev/pps\x00"}, "NUL", nil},
		{"refid too long", PPSConfig{Device: "/dev/pps0", RefID: "GNSSX"}, "longer than 4 characters", nil},
		{"refid not printable", PPSConfig{Device: "/dev/pps0", RefID: "P 1"}, "not printable ASCII", nil},
		{"negative delay", PPSConfig{Device: "/dev/pps0", Delay: -1}, "must not be negative", nil},
		{"offset a second", PPSConfig{Device: "/dev/pps0", Offset: time.Second}, "less than a second", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPPS(tt.cfg, ppsTestTimebase{}, zap.NewNop())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "pps: ") {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("unexpected source %+v options %+v", p.cfg, p.Options())
			}
			if s := p.Status(); s.Kind != "pps" || s.Device != tt.cfg.Device || s.Connected {
				t.Errorf("initial status %+v", s)
			}
		})
	}
	if _, err := NewPPS(PPSConfig{Device: "/dev/pps0"}, nil, nil); err == nil {
		t.Error("NewPPS without a timebase succeeded")
	}
}

// TestPPSRun runs the source against a fake device: pulses are measured,
// bad ones dropped and counted, a failing device is reopened.
func TestPPSRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := time.Millisecond
	second := func(i int, frac time.Duration) time.Time { return ppsBase.Add(time.Duration(i)*time.Second + frac) }
	first := &ppsTestDevice{events: []ppsTestEvent{
		{edge: second(0, 2*ms), seq: 1},
		{edge: second(1, 2*ms), seq: 2},
		{edge: second(1, 2*ms), seq: 2}, // repeated
		{err: errPPSTimeout},
		{err: errPPSTimeout},                                           // two in a row: a fault
		{edge: second(4, 550*ms), seq: 3},                              // between seconds
		{err: errPPSBadFetch},                                          // invalid result
		{edge: second(5, -1*ms), seq: 4},                               // clears the fault
		{err: errors.New("pps: /dev/pps0: PPS_FETCH: no such device")}, // device lost
	}}
	second2 := &ppsTestDevice{events: []ppsTestEvent{{edge: second(9, 0), seq: 9}}, done: cancel}
	first.done = cancel
	opens := 0
	p, err := NewPPS(PPSConfig{Device: "/dev/pps0"}, ppsTestTimebase{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	p.open = func(path string, clearEdge bool) (ppsDevice, error) {
		if path != "/dev/pps0" || clearEdge {
			t.Errorf("open(%q, %v)", path, clearEdge)
		}
		opens++
		switch opens {
		case 1:
			return nil, errors.New("pps: /dev/pps0: permission denied")
		case 2:
			return first, nil
		default:
			return second2, nil
		}
	}
	r := &ppsTestReporter{}
	start := time.Now()
	if err := p.Run(ctx, r); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("Run ended by %v, not by the device's script", ctx.Err())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v; the retries should take about 2 s", d)
	}
	if opens != 3 || !first.closed || !second2.closed {
		t.Errorf("opens %d, closed %v %v", opens, first.closed, second2.closed)
	}
	wantOffsets := []time.Duration{-2 * ms, -2 * ms, 1 * ms, 0}
	if len(r.measured) != len(wantOffsets) {
		t.Fatalf("%d measurements, want %d: %+v", len(r.measured), len(wantOffsets), r.measured)
	}
	for i, m := range r.measured {
		if m.Offset != wantOffsets[i] {
			t.Errorf("measurement %d offset %v, want %v", i, m.Offset, wantOffsets[i])
		}
		// Without a configured delay the uncertainty is the precision.
		if m.RootDispersion != ppsDevicePrecision {
			t.Errorf("measurement %d root dispersion %v, want %v", i, m.RootDispersion, ppsDevicePrecision)
		}
	}
	// Polled: 4 pulses measured, 1 dropped between seconds, 2 timeouts in
	// the first device and 1 in the second when its script ends.
	if r.polled != 8 {
		t.Errorf("polled %d times, want 8", r.polled)
	}
	wantFaults := []string{
		"pps: /dev/pps0: permission denied", "", "no pulse from /dev/pps0 for 3s", "",
		"pps: /dev/pps0: PPS_FETCH: no such device", "",
	}
	if strings.Join(r.faults, "|") != strings.Join(wantFaults, "|") {
		t.Errorf("faults\n%q\nwant\n%q", r.faults, wantFaults)
	}
	s := p.Status()
	wantDropped := map[string]uint64{ppsDropRepeated: 1, ppsDropAmbiguous: 1, ppsDropBadFetch: 1}
	if s.Samples != 4 || s.Connected || s.Reason != "stopped" || !s.LastSample.Equal(second(9, 0)) || len(s.Dropped) != len(wantDropped) {
		t.Errorf("status %+v", s)
	}
	for k, v := range wantDropped {
		if s.Dropped[k] != v {
			t.Errorf("dropped[%s] = %d, want %d", k, s.Dropped[k], v)
		}
	}
	// The snapshot is a copy.
	s.Dropped[ppsDropRepeated] = 100
	if p.Status().Dropped[ppsDropRepeated] != 1 {
		t.Error("Status shares its Dropped map")
	}
}

// TestPPSRunStopsWhileRetrying checks that Run returns soon after its
// context ends while it waits to open the device again.
func TestPPSRunStopsWhileRetrying(t *testing.T) {
	p, err := NewPPS(PPSConfig{Device: "/dev/pps0"}, ppsTestTimebase{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	p.open = func(string, bool) (ppsDevice, error) {
		return nil, errors.New("pps: /dev/pps0: no such file or directory")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r := &ppsTestReporter{}
	start := time.Now()
	if err := p.Run(ctx, r); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run returned %v after start, want about 200ms", d)
	}
	if len(r.faults) != 1 || !strings.Contains(r.faults[0], "no such file") || len(r.measured) != 0 {
		t.Errorf("faults %q, %d measurements", r.faults, len(r.measured))
	}
}

func TestPPSDecodeFetch(t *testing.T) {
	good := ppsKInfo{AssertSeq: 5, AssertSec: 1_800_000_000, AssertNsec: 123, ClearSeq: 4, ClearSec: 1_800_000_000, ClearNsec: 200_000_456, Mode: ppsCaptureAssert | ppsCaptureClear}
	tests := []struct {
		name    string
		mod     func(k *ppsKInfo)
		clear   bool
		want    time.Time
		wantSeq uint32
		wantErr string
	}{
		{name: "assert", want: time.Unix(1_800_000_000, 123), wantSeq: 5},
		{name: "clear", clear: true, want: time.Unix(1_800_000_000, 200_000_456), wantSeq: 4},
		{name: "assert not captured", mod: func(k *ppsKInfo) { k.Mode = ppsCaptureClear }, wantErr: "does not capture the assert edge"},
		{name: "clear not captured", clear: true, mod: func(k *ppsKInfo) { k.Mode = ppsCaptureAssert }, wantErr: "does not capture the clear edge"},
		{name: "no pulse yet", mod: func(k *ppsKInfo) { k.AssertSeq = 0 }, wantErr: "no assert pulse captured yet"},
		{name: "nanoseconds too large", mod: func(k *ppsKInfo) { k.AssertNsec = 1e9 }, wantErr: "outside 0 to 999999999"},
		{name: "negative nanoseconds", clear: true, mod: func(k *ppsKInfo) { k.ClearNsec = -1 }, wantErr: "outside 0 to 999999999"},
		{name: "zero seconds", mod: func(k *ppsKInfo) { k.AssertSec = 0 }, wantErr: "outside 1970 to 9999"},
		{name: "far future", mod: func(k *ppsKInfo) { k.AssertSec = 1 << 62 }, wantErr: "outside 1970 to 9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := good
			if tt.mod != nil {
				tt.mod(&k)
			}
			got, seq, err := ppsDecodeFetch(k, tt.clear)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errPPSBadFetch) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want errPPSBadFetch containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) || seq != tt.wantSeq {
				t.Errorf("got %v %d %v, want %v %d", got, seq, err, tt.want, tt.wantSeq)
			}
		})
	}
}

// FuzzPPSDecodeFetch checks that the fetch-result decoder never panics and
// accepts only results it can turn into a valid time.
func FuzzPPSDecodeFetch(f *testing.F) {
	f.Add(uint32(5), uint32(4), int64(1_800_000_000), int32(123), int64(1_800_000_000), int32(456), int32(3), false)
	f.Add(uint32(0), uint32(0), int64(0), int32(0), int64(0), int32(0), int32(0), true)
	f.Add(uint32(1), uint32(1), int64(-1), int32(-1), int64(1<<62), int32(1e9), int32(-1), true)
	f.Fuzz(func(t *testing.T, aseq, cseq uint32, asec int64, ansec int32, csec int64, cnsec int32, mode int32, clear bool) {
		k := ppsKInfo{AssertSeq: aseq, ClearSeq: cseq, AssertSec: asec, AssertNsec: ansec, ClearSec: csec, ClearNsec: cnsec, Mode: mode}
		got, seq, err := ppsDecodeFetch(k, clear)
		if err != nil {
			if !errors.Is(err, errPPSBadFetch) || err.Error() == "" {
				t.Fatalf("error %v does not wrap errPPSBadFetch", err)
			}
			return
		}
		wantSeq, wantSec, wantNsec := aseq, asec, ansec
		if clear {
			wantSeq, wantSec, wantNsec = cseq, csec, cnsec
		}
		if seq != wantSeq || seq == 0 || got.Unix() != wantSec || got.Nanosecond() != int(wantNsec) || got.Year() < 1970 || got.Year() > 9999 {
			t.Fatalf("accepted %+v (clear %v) as %v seq %d", k, clear, got, seq)
		}
	})
}
