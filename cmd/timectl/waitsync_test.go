package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestWaitsyncAndWatch runs waitsync and watch against a control server
// with a fabricated status (synchronized; root delay 1.5 ms, root
// dispersion 0.4 ms: an estimated maximum error of 1.15 ms).
func TestWaitsyncAndWatch(t *testing.T) {
	// Time-outs are seconds, not milliseconds: under the load of a full
	// test run one status query can take a few hundred milliseconds.
	sock := serveControl(t, &backend{})
	gone := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args  []string
		code  int
		lines int    // lines of standard output; -1: not checked
		want  string // in standard output or error
	}{
		{[]string{"-s", sock, "waitsync", "--max-error", "2ms"}, 0, 1, "estimated error 1.150 ms ≤ 2ms"},
		{[]string{"-s", sock, "waitsync", "--max-error", "1ms", "--timeout", "3s", "--interval", "100ms"}, 1, 0, "1.150 ms > 1ms"},
		{[]string{"-s", gone, "waitsync", "--timeout", "2s", "--interval", "100ms", "-v"}, 1, 0, "try 3: cannot reach timed"},
		{[]string{"-s", sock, "waitsync", "--max-error", "-1s"}, 2, 0, "must be positive"},
		{[]string{"-s", sock, "-o", "json", "watch", "--count", "3", "--interval", "10ms"}, 0, 3, `"synchronized":true`},
		{[]string{"-s", sock, "watch", "--count", "2", "--interval", "10ms"}, 0, -1, "192.0.2.2:123     ntp   falseticker"},
		{[]string{"-s", gone, "-o", "json", "watch", "--count", "1"}, 0, 1, `"error":"cannot reach timed`},
		{[]string{"-s", sock, "watch", "--count", "-1"}, 2, 0, "not negative"},
	} {
		code, out, errOut := runArgs(t, tc.args...)
		lines := strings.Count(out, "\n")
		if code != tc.code || tc.lines >= 0 && lines != tc.lines || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%q: exit %d, %d lines, want %d, %d lines, %q:\n%s%s", tc.args, code, lines, tc.code, tc.lines, tc.want, out, errOut)
		}
		if tc.code == 0 && strings.Contains(strings.Join(tc.args, " "), "json") {
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				var v map[string]any
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Errorf("%q: a line is not JSON: %v: %s", tc.args, err, l)
				}
			}
		}
	}
	// Text snapshots, not on a terminal: one time line per refresh.
	_, out, _ := runArgs(t, "-s", sock, "watch", "--count", "2", "--interval", "10ms")
	if n := strings.Count(out, "\n--- ") + strings.Count(out[:min(4, len(out))], "--- "); n != 2 {
		t.Errorf("watch --count 2: %d snapshots:\n%s", n, out)
	}
}
