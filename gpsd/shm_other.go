//go:build !linux

package gpsd

import (
	"errors"
	"os"
)

// shmAttach fails: timed reads NTP shared memory on Linux only (System V
// shared memory through golang.org/x/sys/unix, which has it for Linux).
func shmAttach(key, size int, perm os.FileMode) (shmSegment, bool, error) {
	return nil, false, errors.New("NTP shared memory is supported on Linux only")
}
