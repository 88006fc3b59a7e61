package daemon

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/timed-project/timed/config"
)

const isLinux = runtime.GOOS == "linux"

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		cfg      config.LogConfig
		terminal bool
		wantJSON bool
		wantErr  bool
		debug    bool
	}{
		{cfg: config.LogConfig{Level: "info", Format: "auto"}, terminal: false, wantJSON: true},
		{cfg: config.LogConfig{Level: "info", Format: "auto"}, terminal: true, wantJSON: false},
		{cfg: config.LogConfig{Level: "debug", Format: "json"}, terminal: true, wantJSON: true, debug: true},
		{cfg: config.LogConfig{Level: "warn", Format: "console"}, terminal: false},
		{cfg: config.LogConfig{Level: "loud"}, wantErr: true},
		{cfg: config.LogConfig{Format: "xml"}, wantErr: true},
	} {
		var buf bytes.Buffer
		log, err := newLogger(tc.cfg, zapcore.AddSync(&buf), tc.terminal)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%+v: no error", tc.cfg)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		log.Debug("dbg")
		log.Warn("clock stepped")
		out := buf.String()
		if got := strings.Contains(out, "dbg"); got != tc.debug {
			t.Errorf("%+v: debug line logged = %v, want %v", tc.cfg, got, tc.debug)
		}
		var m map[string]any
		isJSON := json.Unmarshal([]byte(strings.TrimSpace(lastLine(out))), &m) == nil
		if isJSON != tc.wantJSON {
			t.Errorf("%+v terminal=%v: JSON = %v, want %v: %q", tc.cfg, tc.terminal, isJSON, tc.wantJSON, out)
		}
		if isJSON && (m["msg"] != "clock stepped" || m["level"] != "warn" || m["time"] == nil) {
			t.Errorf("JSON line %v", m)
		}
		if hasColour := strings.Contains(out, "\x1b["); hasColour != (tc.terminal && !tc.wantJSON) {
			t.Errorf("%+v terminal=%v: colour = %v", tc.cfg, tc.terminal, hasColour)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
