package netstamp

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestTimespecAt(t *testing.T) {
	b := make([]byte, 48)
	put := func(i int, sec, nsec uint64) {
		binary.NativeEndian.PutUint64(b[16*i:], sec)
		binary.NativeEndian.PutUint64(b[16*i+8:], nsec)
	}
	put(0, 100, 5)
	put(2, 200, 7)
	cases := []struct {
		i      int
		want   time.Time
		wantOK bool
	}{
		{0, time.Unix(100, 5), true},
		{1, time.Time{}, false}, // zero: no stamp
		{2, time.Unix(200, 7), true},
	}
	for _, tc := range cases {
		got, ok := timespecAt(b, tc.i)
		if ok != tc.wantOK || !got.Equal(tc.want) {
			t.Errorf("timespec %d: %v %v, want %v %v", tc.i, got, ok, tc.want, tc.wantOK)
		}
	}
	if _, ok := timespecAt(b[:10], 0); ok {
		t.Error("short control message accepted")
	}
}
