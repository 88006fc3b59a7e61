//go:build linux

package gpsd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenPPSDeviceErrors opens things that are not PPS devices: the error
// names the path and says what is wrong. (This machine has no /dev/ppsN; the
// rest of the source is tested with a fake device.)
func TestOpenPPSDeviceErrors(t *testing.T) {
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string
	}{
		{"/dev/pps-missing-for-test", "no such file or directory"},
		{"/dev/null", "is not a PPS device"},
		{regular, "is not a PPS device"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			d, err := openPPSDevice(tt.path, false)
			if err == nil {
				d.Close()
				t.Fatalf("openPPSDevice(%s) succeeded", tt.path)
			}
			if !strings.HasPrefix(err.Error(), "pps: "+tt.path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s and containing %q", err, tt.path, tt.want)
			}
		})
	}
}
