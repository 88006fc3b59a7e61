package sources

import (
	"go.uber.org/zap"
)

// usable reports whether a source in state st takes part in selection, now
// or once it has measured: the states that need an operator's attention
// are the others.
func usable(st SourceState) bool {
	switch st {
	case StateSelected, StateCombined, StateCandidate, StateInitial, StateNoSelect:
		return true
	}
	return false
}

// logEvents logs, after an update, what an operator cares about: the source
// the clock follows changing (or none left), a source set aside with the
// reason in words or usable again, and a leap second announced by the
// sources and passed to the clock. Changes among the usable states
// (combined, candidate, ...) are not logged: they come and go with noise.
func (e *Engine) logEvents(clockLeap Leap) {
	for _, n := range e.order {
		s := e.srcs[n]
		if s.state == s.logged {
			continue
		}
		switch was := s.logged; {
		case !usable(s.state) && (was == "" || usable(was) || was != s.state):
			e.log.Warn("source not used", zap.String("source", s.name), zap.String("state", string(s.state)),
				zap.String("reason", s.reason))
		case usable(s.state) && was != "" && !usable(was):
			e.log.Info("source usable again", zap.String("source", s.name), zap.String("state", string(s.state)),
				zap.String("was", string(was)))
		}
		s.logged = s.state
	}

	ref := ""
	if e.synchronized {
		for _, n := range e.order {
			if s := e.srcs[n]; s.state == StateSelected {
				ref = n
			}
		}
	}
	switch {
	case ref == e.loggedRef:
	case ref != "":
		fields := []zap.Field{zap.String("source", ref)}
		if e.loggedRef != "" {
			fields = append(fields, zap.String("previous", e.loggedRef))
		}
		e.log.Info("clock follows a new source", fields...)
	default:
		e.log.Warn("no source selected", zap.String("previous", e.loggedRef), zap.String("why", e.message))
	}
	e.loggedRef = ref

	if e.leap != e.loggedVote && e.leap != LeapUnknown {
		if e.leap == LeapNone {
			e.log.Info("the sources no longer announce a leap second")
		} else {
			e.log.Info("the sources announce a leap second at the end of the month", zap.Stringer("leap", e.leap))
		}
		e.loggedVote = e.leap
	}
	if clockLeap != LeapInsert && clockLeap != LeapDelete {
		clockLeap = LeapNone // LeapUnknown: the clock is not synchronized
	}
	if clockLeap != e.loggedLeap {
		if clockLeap == LeapNone {
			e.log.Info("leap second done or withdrawn: the clock runs on without one")
		} else {
			e.log.Warn("leap second at the next UTC midnight: the clock will "+clockLeap.String()+" a second", zap.Stringer("leap", clockLeap))
		}
		e.loggedLeap = clockLeap
	}
}
