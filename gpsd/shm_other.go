//go:build !linux

package gpsd

import (
	"errors"
	"os"
)

// shmAttach is not implemented outside Linux.
func shmAttach(key, size int, perm os.FileMode) (shmSegment, bool, error) {
	return nil, false, errors.New("NTP shared memory is supported on Linux only")
}
