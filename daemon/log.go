package daemon

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/timed-project/timed/config"
)

// NewLogger builds timed's logger from the `log:` section, writing to
// standard error. Format "auto" is the human-readable console encoding when
// standard error is a terminal and JSON otherwise (a journal, a file, a
// pipe). The level is one of debug, info, warn and error. Lines at info
// and above are rate-limited per kind (see logBurst).
func NewLogger(cfg config.LogConfig) (*zap.Logger, error) {
	return newLogger(cfg, zapcore.Lock(os.Stderr), isTerminal(os.Stderr))
}

func newLogger(cfg config.LogConfig, w zapcore.WriteSyncer, terminal bool) (*zap.Logger, error) {
	var level zapcore.Level
	switch cfg.Level {
	case "", "info":
		level = zapcore.InfoLevel
	case "debug":
		level = zapcore.DebugLevel
	case "warn":
		level = zapcore.WarnLevel
	case "error":
		level = zapcore.ErrorLevel
	default:
		return nil, fmt.Errorf("daemon: log level %q: want debug, info, warn or error", cfg.Level)
	}
	var console bool
	switch cfg.Format {
	case "", "auto":
		console = terminal
	case "console":
		console = true
	case "json":
		console = false
	default:
		return nil, fmt.Errorf("daemon: log format %q: want auto, console or json", cfg.Format)
	}
	var enc zapcore.Encoder
	if console {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00")
		ec.EncodeCaller = nil
		ec.CallerKey = ""
		ec.StacktraceKey = ""
		if terminal {
			ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		} else {
			ec.EncodeLevel = zapcore.CapitalLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		ec.TimeKey = "time"
		ec.StacktraceKey = ""
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(newRateLimitedCore(zapcore.NewCore(enc, w, level)), zap.ErrorOutput(w)), nil
}
