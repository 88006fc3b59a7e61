package sources

// timeline remembers the corrections the engine made to the clock, so that a
// local clock reading can be turned back into raw oscillator time: raw =
// local − correction(local). Between changes the frequency correction f is
// constant and, since the clock runs at (1+f) times the oscillator's rate,
// the correction grows by Δlocal·f/(1+f).
type timeline struct {
	segs []segment // oldest first; the last one is open-ended
}

type segment struct {
	local float64 // local time at which this segment starts
	corr  float64 // correction (local − raw) at that instant
	freq  float64 // frequency correction (ratio) from then on
}

const timelineLen = 256

func newTimeline(local, freq float64) *timeline {
	return &timeline{segs: []segment{{local: local, freq: freq}}}
}

// correction at local time l, looked up in the segment that contains it.
func (t *timeline) correction(l float64) float64 {
	i := len(t.segs) - 1
	for i > 0 && t.segs[i].local > l {
		i--
	}
	s := t.segs[i]
	return s.corr + (l-s.local)*s.freq/(1+s.freq)
}

func (t *timeline) raw(l float64) float64 { return l - t.correction(l) }

func (t *timeline) frequency() float64 { return t.segs[len(t.segs)-1].freq }

// change records that at local time l the clock was stepped by step and its
// frequency set to freq. Local times after l are in the stepped timescale.
func (t *timeline) change(l, step, freq float64) {
	c := t.correction(l) + step
	last := &t.segs[len(t.segs)-1]
	if step == 0 && last.local == l {
		last.freq = freq
		return
	}
	if step == 0 && last.freq == freq {
		return
	}
	if len(t.segs) == timelineLen {
		copy(t.segs, t.segs[1:])
		t.segs = t.segs[:timelineLen-1]
	}
	t.segs = append(t.segs, segment{local: l + step, corr: c, freq: freq})
}
