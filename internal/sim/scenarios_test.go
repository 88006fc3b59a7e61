package sim

import (
	"math"
	"sync"
	"testing"
)

// The scenarios of issue 2 against the real engine (sources.Engine), each
// over 20 seeds (5 with -short) and judged on the median.

var (
	suiteOnce sync.Once
	suite     *Suite
)

func scenarioSuite(t *testing.T) *Suite {
	suiteOnce.Do(func() {
		seeds := 20
		if testing.Short() {
			seeds = 5
		}
		suite = NewSuite(seeds)
	})
	return suite
}

func TestScenarios(t *testing.T) {
	s := scenarioSuite(t)
	for _, name := range s.Names() {
		t.Run(name, func(t *testing.T) {
			o := s.Run(name)
			if o.Err != nil {
				t.Fatalf("scenario %s (%s): %v", name, o.Scenario.Title, firstLine(o.Err.Error()))
			}
			t.Logf("scenario %s: %s — %d seeds in %s", name, o.Scenario.Title, len(o.Results), o.Elapsed)
			for _, r := range o.Rows {
				t.Log(r)
			}
			// What the probes found wrong, in the run nearest the median
			// RMS offset.
			if r := nearMedian(o.Results); r != nil {
				for _, f := range r.Failures {
					t.Logf("seed %d: %s", r.Seed, f)
				}
				t.Logf("seed %d status at the end: synchronized=%v holdover=%v reference=%q steps=%d message=%q",
					r.Seed, r.Status.Synchronized, r.Status.Holdover, r.Status.Reference, len(r.Steps), r.Status.Message)
			}
			for _, r := range o.Rows {
				if r.Judged && !r.Pass {
					t.Errorf("%v", r)
				}
			}
		})
	}
}

func nearMedian(rs []*Result) *Result {
	if len(rs) == 0 {
		return nil
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.RMSOffset
	}
	m := Median(v)
	best := rs[0]
	for _, r := range rs {
		if math.Abs(r.RMSOffset-m) < math.Abs(best.RMSOffset-m) {
			best = r
		}
	}
	return best
}
