package sim

import "testing"

// The bound is positive and falls as samples accumulate.
func TestLinearBound(t *testing.T) {
	for _, sc := range Scenarios() {
		switch sc.Name {
		case "3", "4":
			b := LinearBound(sc, 20)
			t.Logf("scenario %s: optimal linear filter bound %.4g s", sc.Name, b)
			if b <= 0 {
				t.Fatalf("bound %g", b)
			}
		}
	}
	sc := Scenarios()[0]
	short := *sc
	short.Duration = 2000
	long := *sc
	long.Duration = 20000
	if LinearBound(&long, 20) >= LinearBound(&short, 20) {
		t.Errorf("more samples did not lower the bound")
	}
}
