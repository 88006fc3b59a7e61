//go:build linux

package gpsd

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shmSysV is a System V shared-memory segment attached to this process.
type shmSysV struct {
	mem      []byte
	readOnly bool
}

// shmAttach attaches the segment with the given key, creating it with size
// bytes and mode perm when it does not exist. It attaches read-write when
// allowed (to clear valid after each sample) and read-only otherwise.
func shmAttach(key, size int, perm os.FileMode) (shmSegment, bool, error) {
	created := false
	id, err := unix.SysvShmGet(key, 0, 0)
	if errors.Is(err, unix.ENOENT) {
		id, err = unix.SysvShmGet(key, size, unix.IPC_CREAT|unix.IPC_EXCL|int(perm&0o777))
		created = err == nil
		if errors.Is(err, unix.EEXIST) {
			// Another process created it in between.
			id, err = unix.SysvShmGet(key, 0, 0)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("shmget key %#x: %w", key, err)
	}
	mem, err := unix.SysvShmAttach(id, 0, 0)
	readOnly := false
	if errors.Is(err, unix.EACCES) {
		mem, err = unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
		readOnly = true
	}
	if err != nil {
		return nil, false, fmt.Errorf("shmat key %#x: %w", key, err)
	}
	return &shmSysV{mem: mem, readOnly: readOnly}, created, nil
}

func (s *shmSysV) Bytes(b []byte) { copy(b, s.mem) }

func (s *shmSysV) word(off int) *int32 {
	return (*int32)(unsafe.Pointer(&s.mem[off]))
}

func (s *shmSysV) Count(off int) int32 { return atomic.LoadInt32(s.word(off)) }

func (s *shmSysV) ClearValid(off int) error {
	if s.readOnly {
		return errors.New("segment attached read-only")
	}
	atomic.StoreInt32(s.word(off), 0)
	return nil
}

func (s *shmSysV) Size() int { return len(s.mem) }

func (s *shmSysV) Detach() error { return unix.SysvShmDetach(s.mem) }
