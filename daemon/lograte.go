package daemon

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Log rate limit: each kind of line at info level and above (its logger
// name, message and "source" field) is written at most logBurst times per
// logWindow; the first line of a kind written after some were held back
// says how many with a "suppressed" field. A flapping source or a flood of
// bad packets then cannot fill the journal, and one source's trouble does
// not hide another's. Debug lines are not limited: they are asked for.
const (
	logBurst  = 10
	logWindow = time.Minute
	// logKinds bounds the limiter's memory: when this many kinds are
	// tracked, the oldest windows are forgotten.
	logKinds = 4096
)

// rateLimitedCore wraps a zapcore.Core with the log rate limit.
type rateLimitedCore struct {
	zapcore.Core
	lim *logLimiter
	// source is the "source" field given to With, part of the kind.
	source string
}

func newRateLimitedCore(c zapcore.Core) zapcore.Core {
	return &rateLimitedCore{Core: c, lim: &logLimiter{kinds: map[string]*logKind{}}}
}

func (c *rateLimitedCore) With(fields []zapcore.Field) zapcore.Core {
	src := c.source
	if s, ok := sourceField(fields); ok {
		src = s
	}
	return &rateLimitedCore{Core: c.Core.With(fields), lim: c.lim, source: src}
}

func (c *rateLimitedCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *rateLimitedCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if ent.Level < zapcore.InfoLevel {
		return c.Core.Write(ent, fields)
	}
	src := c.source
	if s, ok := sourceField(fields); ok {
		src = s
	}
	held, ok := c.lim.allow(ent.Level.String()+"\x00"+ent.LoggerName+"\x00"+ent.Message+"\x00"+src, ent.Time)
	if !ok {
		return nil
	}
	if held > 0 {
		fields = append(fields[:len(fields):len(fields)], zap.Uint64("suppressed", held))
	}
	return c.Core.Write(ent, fields)
}

func sourceField(fields []zapcore.Field) (string, bool) {
	for _, f := range fields {
		if f.Key == "source" && f.Type == zapcore.StringType {
			return f.String, true
		}
	}
	return "", false
}

// logLimiter counts the lines of each kind in its current window.
type logLimiter struct {
	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	start   time.Time // of the current window
	written int       // lines written in it
	held    uint64    // lines held back since the last one written
}

// allow reports whether a line of kind k at time t may be written, and how
// many of its kind were held back before it.
func (l *logLimiter) allow(k string, t time.Time) (held uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lk := l.kinds[k]
	if lk == nil {
		if len(l.kinds) >= logKinds {
			l.forget(t)
		}
		lk = &logKind{start: t}
		l.kinds[k] = lk
	}
	if t.Sub(lk.start) >= logWindow || t.Before(lk.start) {
		lk.start, lk.written = t, 0
	}
	if lk.written >= logBurst {
		lk.held++
		return 0, false
	}
	lk.written++
	held, lk.held = lk.held, 0
	return held, true
}

// forget drops the kinds whose window has ended, or all of them when none
// has: their lines may then be written again at once.
func (l *logLimiter) forget(t time.Time) {
	for k, lk := range l.kinds {
		if t.Sub(lk.start) >= logWindow {
			delete(l.kinds, k)
		}
	}
	if len(l.kinds) >= logKinds {
		clear(l.kinds)
	}
}
