package phc

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOffsetChain(t *testing.T) {
	busy := errors.New("device busy")
	unsupported := fmt.Errorf("PTP_SYS_OFFSET_X: %w", ErrNotSupported)
	// Each reader answers with the errors listed for its successive calls
	// (nil: a good reading), then nil.
	tests := []struct {
		name    string
		answers [3][]error
		want    []string // the method used by each of three calls, or "error: ..."
	}{
		{"precise works", [3][]error{{nil}}, []string{"precise", "precise", "precise"}},
		{"no cross-timestamp", [3][]error{{unsupported}}, []string{"extended", "extended", "extended"}},
		{"only basic", [3][]error{{unsupported}, {unsupported}}, []string{"basic", "basic", "basic"}},
		{"a transient error does not fall back", [3][]error{{busy, nil}}, []string{"error: device busy", "precise", "precise"}},
		{"transient after falling back", [3][]error{{unsupported}, {nil, busy}}, []string{"extended", "error: device busy", "extended"}},
		{"nothing works", [3][]error{{unsupported}, {unsupported}, {unsupported, unsupported}},
			[]string{"error: not supported", "error: no method left", "error: no method left"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := [3]int{}
			reader := func(i int) offsetReader {
				return func() (Offset, error) {
					n := calls[i]
					calls[i]++
					if n < len(tt.answers[i]) && tt.answers[i][n] != nil {
						return Offset{}, tt.answers[i][n]
					}
					return Offset{Offset: time.Duration(i), Method: Method(i + 1)}, nil
				}
			}
			c := &offsetChain{name: "/dev/ptp7", readers: []offsetReader{reader(0), reader(1), reader(2)}}
			for k, want := range tt.want {
				off, err := c.offset()
				got := off.Method.String()
				if err != nil {
					got = "error: " + err.Error()
					if !strings.HasPrefix(err.Error(), "phc: /dev/ptp7: read offset: ") {
						t.Errorf("call %d: error %q does not name the device", k, err)
					}
				}
				if !strings.HasPrefix(got, want) && !(strings.HasPrefix(want, "error: ") && strings.Contains(got, strings.TrimPrefix(want, "error: "))) {
					t.Errorf("call %d: got %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestMethodString(t *testing.T) {
	tests := []struct {
		m    Method
		want string
	}{
		{MethodPrecise, "precise"},
		{MethodExtended, "extended"},
		{MethodBasic, "basic"},
		{0, "method(0)"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("Method(%d).String() = %q, want %q", uint8(tt.m), got, tt.want)
		}
	}
}
