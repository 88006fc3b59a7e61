package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFallbackSocket(t *testing.T) {
	dir := t.TempDir()
	if got, want := FallbackSocket(dir), filepath.Join(dir, "timed", "timed.sock"); got != want {
		t.Errorf("FallbackSocket(%q) = %q, want %q", dir, got, want)
	}
	if got := FallbackSocket(""); !strings.HasPrefix(got, os.TempDir()) || !strings.HasSuffix(got, "timed.sock") {
		t.Errorf("FallbackSocket(\"\") = %q", got)
	}
	if got := FallbackSocket(filepath.Join(dir, "missing")); !strings.HasPrefix(got, os.TempDir()) {
		t.Errorf("FallbackSocket(missing dir) = %q", got)
	}
}
