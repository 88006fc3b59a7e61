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
	local   float64 // local time at which this segment starts
	corr    float64 // correction (local − raw) at that instant
	freq    float64 // frequency correction (ratio) from then on
	stepped bool    // the clock was stepped at its start
}

const timelineLen = 256

func newTimeline(local, freq float64) *timeline {
	return &timeline{segs: []segment{{local: local, freq: freq}}}
}

// at is the segment that contains local time l.
func (t *timeline) at(l float64) segment {
	i := len(t.segs) - 1
	for i > 0 && t.segs[i].local > l {
		i--
	}
	return t.segs[i]
}

// correction at local time l, looked up in the segment that contains it.
func (t *timeline) correction(l float64) float64 {
	s := t.at(l)
	return s.corr + (l-s.local)*s.freq/(1+s.freq)
}

func (t *timeline) raw(l float64) float64 { return l - t.correction(l) }

// rawSpan turns d, a span of local time around local time l (a round
// trip's delay), into raw time. While the engine slews the clock fast (up
// to a twelfth) the local clock runs that much off the oscillator: a
// delay read off it is short or long by as much, and so would be the
// bound it puts on the sample's error.
func (t *timeline) rawSpan(l, d float64) float64 { return d / (1 + t.at(l).freq) }

func (t *timeline) frequency() float64 { return t.segs[len(t.segs)-1].freq }

// change records that at local time l the clock was stepped by step and its
// frequency set to freq. Local times after l are in the stepped timescale.
// It reports whether the clock changed.
func (t *timeline) change(l, step, freq float64) bool {
	c := t.correction(l) + step
	last := &t.segs[len(t.segs)-1]
	if step == 0 && last.local == l {
		changed := last.freq != freq
		last.freq = freq
		return changed
	}
	if step == 0 && last.freq == freq {
		return false
	}
	t.add(segment{local: l + step, corr: c, freq: freq, stepped: step != 0})
	return true
}

// add appends a segment, forgetting the oldest when the timeline is full.
func (t *timeline) add(s segment) {
	if len(t.segs) == timelineLen {
		copy(t.segs, t.segs[1:])
		t.segs = t.segs[:timelineLen-1]
	}
	t.segs = append(t.segs, s)
}

// appliedAt records that the frequency of the last segment took effect
// only at local time l (in the timescale after its step), not when it was
// recorded: until then the clock ran at the frequency before it. It does
// nothing for an l before the segment's start or with no earlier segment.
func (t *timeline) appliedAt(l float64) {
	n := len(t.segs)
	if n < 2 || l <= t.segs[n-1].local {
		return
	}
	last := &t.segs[n-1]
	prev := t.segs[n-2].freq
	if !last.stepped {
		// The change starts later.
		last.corr += (l - last.local) * prev / (1 + prev)
		last.local = l
		return
	}
	// The step stays where it was (local times from it on are in the
	// stepped timescale); the new frequency starts later.
	freq := last.freq
	last.freq = prev
	t.add(segment{local: l, corr: t.correction(l), freq: freq})
}
