package daemon

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The capability numbers written out in caps.go are Linux's.
func TestCapabilityNumbers(t *testing.T) {
	tests := []struct {
		c    capability
		want int
	}{
		{capNetBindService, unix.CAP_NET_BIND_SERVICE},
		{capNetAdmin, unix.CAP_NET_ADMIN},
		{capNetRaw, unix.CAP_NET_RAW},
		{capSysTime, unix.CAP_SYS_TIME},
	}
	for _, tt := range tests {
		if int(tt.c.nr) != tt.want {
			t.Errorf("%s is %d, want %d", tt.c.name, tt.c.nr, tt.want)
		}
	}
}
