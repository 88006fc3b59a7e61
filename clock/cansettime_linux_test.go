package clock

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestCanSetTimeMatchesProcStatus(t *testing.T) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var capEff uint64
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			capEff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no CapEff in /proc/self/status")
	}
	eff, err := effectiveCaps()
	if err != nil {
		t.Fatal(err)
	}
	if eff != capEff {
		t.Errorf("capget effective = %#x, /proc/self/status CapEff = %#x", eff, capEff)
	}
	const capSysTime = 25
	want := capEff&(1<<capSysTime) != 0
	if got := CanSetTime(); got != want {
		t.Errorf("CanSetTime() = %v, /proc/self/status says %v", got, want)
	}
	t.Logf("CanSetTime() = %v (CapEff %#x)", want, capEff)
}
