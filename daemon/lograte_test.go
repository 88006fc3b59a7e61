package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// stepClock is a zapcore.Clock whose time the test sets.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time                         { return c.t }
func (c *stepClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

func TestLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	clk := &stepClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(newRateLimitedCore(zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel)), zap.WithClock(clk))
	a := log.With(zap.String("source", "a:123"))
	b := log.With(zap.String("source", "b:123"))

	type line struct {
		Level      string `json:"level"`
		Msg        string `json:"msg"`
		Source     string `json:"source"`
		Suppressed uint64 `json:"suppressed"`
	}
	read := func() []line {
		var out []line
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var x line
			if err := json.Unmarshal([]byte(l), &x); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			out = append(out, x)
		}
		buf.Reset()
		return out
	}
	count := func(ls []line, msg, src string) (n int, suppressed uint64) {
		for _, l := range ls {
			if l.Msg == msg && l.Source == src {
				n++
				suppressed += l.Suppressed
			}
		}
		return n, suppressed
	}

	for i := range 25 {
		clk.t = clk.t.Add(time.Second)
		a.Warn("source not used")
		log.Warn("source not used", zap.String("source", "c:123")) // the field given per line counts too
		if i < 3 {
			b.Warn("source not used")
		}
		a.Debug("packet dropped")
		a.Info("source usable again")
	}
	ls := read()
	for _, tc := range []struct {
		msg, src string
		want     int
	}{
		{"source not used", "a:123", logBurst},
		{"source not used", "c:123", logBurst},
		{"source not used", "b:123", 3},            // another source's lines are not held back by a's
		{"source usable again", "a:123", logBurst}, // another message of the same source neither
		{"packet dropped", "a:123", 25},            // debug lines are not limited
	} {
		if n, s := count(ls, tc.msg, tc.src); n != tc.want || s != 0 {
			t.Errorf("%q from %s: %d lines (suppressed %d), want %d", tc.msg, tc.src, n, s, tc.want)
		}
	}
	// A minute after the window began, the next line is written and says
	// how many were held back.
	clk.t = clk.t.Add(time.Minute)
	a.Warn("source not used")
	if n, s := count(read(), "source not used", "a:123"); n != 1 || s != 25-logBurst {
		t.Errorf("after the window: %d lines, suppressed %d; want 1 line, suppressed %d", n, s, 25-logBurst)
	}
}

func TestLogLimiterBounded(t *testing.T) {
	l := &logLimiter{kinds: map[string]*logKind{}}
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for i := range 3 * logKinds {
		if _, ok := l.allow(strings.Repeat("k", i%50)+string(rune(i)), t0); !ok {
			t.Fatalf("first line of kind %d held back", i)
		}
		if len(l.kinds) > logKinds {
			t.Fatalf("%d kinds tracked, limit %d", len(l.kinds), logKinds)
		}
	}
}
