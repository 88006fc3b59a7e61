//go:build linux

package gpsd

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/sources"
)

// shmTestKey is a key of the tests' own ("timd"), far from NTP's
// 0x4e545030-37.
const shmTestKey = 0x74696d64

// shmRemove removes the segment with key if it exists.
func shmRemove(t *testing.T, key int) {
	id, err := unix.SysvShmGet(key, 0, 0)
	if errors.Is(err, unix.ENOENT) {
		return
	}
	if err != nil {
		t.Errorf("shmget %#x: %v", key, err)
		return
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		t.Errorf("removing segment %#x: %v", key, err)
	}
}

func TestSHMRunSysV(t *testing.T) {
	shmRemove(t, shmTestKey)
	t.Cleanup(func() { shmRemove(t, shmTestKey) })

	cfg := SHMConfig{Unit: 0, Interval: 20 * time.Millisecond, FaultAfter: 3, key: shmTestKey}
	s, err := NewSHM(cfg, sockTestTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := newSockTestReporter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, r) }()
	defer func() { cancel(); <-done }()

	// The reader creates the segment, mode 0600 for unit 0; while it is
	// empty the source faults.
	r.waitFor(t, "a fault on the empty segment", func(_ []sources.Measurement, f []string) bool { return len(f) > 0 })
	id, err := unix.SysvShmGet(shmTestKey, 0, 0)
	if err != nil {
		t.Fatalf("segment not created: %v", err)
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Perm.Mode&0o777 != 0o600 || int(ds.Segsz) != shmNative.size {
		t.Errorf("segment mode %o size %d, want 0600 and %d", ds.Perm.Mode&0o777, ds.Segsz, shmNative.size)
	}

	// A writer in this process, as gpsd would be.
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.SysvShmDetach(mem)
	smp := shmGood
	smp.encode(mem, shmNative)
	r.waitFor(t, "a measurement", func(m []sources.Measurement, _ []string) bool { return len(m) == 1 })
	m, faults := r.snapshot()
	if m[0].Offset != 1_500_500*time.Nanosecond-sockTestShift || !m[0].Local.Equal(time.Unix(1_800_000_000, 999_500_000).Add(sockTestShift)) {
		t.Errorf("measurement %+v", m[0])
	}
	if faults[len(faults)-1] != "" {
		t.Errorf("fault not cleared: %q", faults)
	}
	// The reader cleared valid; nothing more is taken until the next sample.
	time.Sleep(100 * time.Millisecond)
	if got, _ := r.snapshot(); len(got) != 1 {
		t.Errorf("%d measurements from one sample", len(got))
	}
	if st := s.Status(); !st.Connected || st.Samples != 1 || st.Kind != "shm" {
		t.Errorf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	done <- nil // for the deferred receive
}
