package sources

import "time"

// Config is the engine's configuration (the `engine:` section of timed.yaml).
type Config struct {
	// MinAgreeingSources is how many sources must agree before the clock is
	// steered. The default of 1 never stalls a setup with one or two
	// sources; with three or more, a majority must still agree.
	MinAgreeingSources int
	// StepThreshold: an offset larger than this is stepped instead of
	// slewed, but only within the first StepLimit clock updates (a negative
	// StepLimit allows steps at any time). Zero never steps.
	StepThreshold time.Duration
	StepLimit     int
	// PanicThreshold: an offset larger than this is never corrected
	// automatically (zero disables the check). The first update at start
	// may exceed it when StepFirstPanic is true (a host with no RTC).
	PanicThreshold time.Duration
	// MaxSlewRate bounds the frequency used to correct a phase error, in
	// ppm on top of the oscillator's own correction.
	MaxSlewRate float64
	// MaxFrequency bounds the absolute frequency correction, in ppm.
	MaxFrequency float64
	// InitialFrequency is the oscillator's frequency error from the drift
	// file (ppm), with its uncertainty (ppm, one sigma). A zero
	// uncertainty means "unknown".
	InitialFrequency            float64
	InitialFrequencyUncertainty float64
	// Observe: the clock cannot be steered (the `none` clock); the engine
	// tracks and reports but assumes its corrections have no effect.
	Observe bool
	// RequireAuthenticated keeps sources whose last measurement was not
	// authenticated (NTS) from steering the clock; they are still measured
	// and shown.
	RequireAuthenticated bool
}

// DefaultConfig returns the engine's defaults.
func DefaultConfig() Config {
	return Config{
		MinAgreeingSources: 1,
		StepThreshold:      time.Second,
		StepLimit:          3,
		PanicThreshold:     1000 * time.Second,
		MaxSlewRate:        83333.333,
		MaxFrequency:       500,
	}
}

// Correction is what the engine wants the clock to do now.
type Correction struct {
	// Step, when non-zero, is added to the clock at once (before the new
	// frequency applies).
	Step time.Duration
	// Frequency is the absolute frequency correction to set, in ppm
	// (positive makes the clock run faster).
	Frequency float64
	// Status is what the clock driver passes to the kernel: synchronized,
	// leap, estimated and maximum error.
	Sync ClockSync
}

// ClockSync is the synchronization status a clock driver hands to the OS.
type ClockSync struct {
	Synchronized bool
	Leap         Leap
	// EstError is the estimated error (one sigma); MaxError bounds it.
	EstError time.Duration
	MaxError time.Duration
}

// SourceState is where a source stands in selection.
type SourceState string

const (
	StateSelected    SourceState = "selected"    // the clock follows it (with the other combined ones)
	StateCombined    SourceState = "combined"    // agrees and is averaged in
	StateCandidate   SourceState = "candidate"   // agrees, but was not combined (too far or not preferred)
	StateFalseticker SourceState = "falseticker" // disagrees with the majority
	StateTooFar      SourceState = "too-far"     // its root distance or uncertainty is too large
	StateUnreachable SourceState = "unreachable" // no answer to recent polls
	StateInitial     SourceState = "initial"     // still collecting its first samples
	StateNoSelect    SourceState = "noselect"    // configured never to be selected
	// StateOutOfBound: configured bounded_by: authenticated, and outside the
	// authenticated sources' interval (or none is there to check it).
	StateOutOfBound SourceState = "out-of-bound"
	// StateUnauthenticated: not authenticated while require_authenticated
	// is set.
	StateUnauthenticated SourceState = "unauthenticated"
	StateFault           SourceState = "fault" // the source reported a fault (kiss code, error)
)

// SourceStatus is one source as `timectl sources` shows it.
type SourceStatus struct {
	Name    string      `json:"name"`
	Kind    string      `json:"kind"`
	Address string      `json:"address"`
	State   SourceState `json:"state"`
	// Reason says in words why the source is in its state.
	Reason        string  `json:"reason"`
	Stratum       uint8   `json:"stratum"`
	RefID         uint32  `json:"refid"`
	Leap          Leap    `json:"leap"`
	Authenticated bool    `json:"authenticated"`
	Reach         uint8   `json:"reach"`
	Poll          int     `json:"poll"` // log2 seconds
	Samples       int     `json:"samples"`
	LastSampleAgo float64 `json:"last_sample_ago_s"`
	// Offset is the filtered offset of the source from the local clock now
	// (positive: the local clock is behind), with its uncertainty.
	Offset      float64 `json:"offset_s"`
	Uncertainty float64 `json:"uncertainty_s"`
	// LastOffset is the raw offset of the last sample.
	LastOffset     float64 `json:"last_offset_s"`
	Delay          float64 `json:"delay_s"`
	MinDelay       float64 `json:"min_delay_s"`
	RootDelay      float64 `json:"root_delay_s"`
	RootDispersion float64 `json:"root_dispersion_s"`
	// Frequency is the source's estimate of the oscillator's frequency
	// error, in ppm, with its uncertainty.
	Frequency            float64 `json:"frequency_ppm"`
	FrequencyUncertainty float64 `json:"frequency_uncertainty_ppm"`
	// Dropped counts measurements the engine refused (they straddled a
	// clock step or a leap second, or were malformed).
	Dropped int `json:"dropped"`
	// Window is how many samples the filter holds now, Span the time from
	// the oldest of them to the newest (s), Outliers how many of them the
	// estimate leaves out, and Noise the typical error of one measurement
	// (s, one sigma: the median over the window).
	Window   int     `json:"window"`
	Span     float64 `json:"span_s"`
	Outliers int     `json:"outliers"`
	Noise    float64 `json:"noise_s"`
	// Restarts counts the times the filter started again from its newest
	// samples because the source's time jumped.
	Restarts int `json:"restarts"`
	// Runtime is true for an NTP source added with `timectl add` rather
	// than from the configuration file (set by the daemon).
	Runtime bool `json:"runtime,omitempty"`
	// Asymmetry is the fraction of each sample's excess delay taken out as
	// the path's jitter asymmetry (0 on a symmetric path, ±0.5 at most).
	Asymmetry float64 `json:"asymmetry"`
	Prefer    bool    `json:"prefer,omitempty"`
	NoSelect  bool    `json:"noselect,omitempty"`
	Trust     bool    `json:"trust,omitempty"`
	Require   bool    `json:"require,omitempty"`
}

// Status is the engine's whole state as `timectl status` shows it.
type Status struct {
	Synchronized bool `json:"synchronized"`
	// Holdover: every source is gone; the clock runs on the last good
	// frequency.
	Holdover bool `json:"holdover"`
	// Reference is the name of the selected source with the most weight.
	Reference string `json:"reference"`
	RefID     uint32 `json:"refid"`
	Stratum   uint8  `json:"stratum"`
	Leap      Leap   `json:"leap"`
	// Offset is the estimated offset of true time from the local clock
	// (positive: the local clock is behind), and its uncertainty (one
	// sigma), which grows in holdover.
	Offset      float64 `json:"offset_s"`
	Uncertainty float64 `json:"uncertainty_s"`
	// Frequency is the correction applied to the oscillator, in ppm, and
	// its uncertainty.
	Frequency            float64 `json:"frequency_ppm"`
	FrequencyUncertainty float64 `json:"frequency_uncertainty_ppm"`
	// RootDelay and RootDispersion are what an NTP server built on this
	// clock would send.
	RootDelay      float64 `json:"root_delay_s"`
	RootDispersion float64 `json:"root_dispersion_s"`
	// LastUpdateAgo is how long ago the clock was last corrected from a
	// source, in seconds.
	LastUpdateAgo float64 `json:"last_update_ago_s"`
	Updates       int     `json:"updates"`
	Steps         int     `json:"steps"`
	// Message says in words what the engine is doing (waiting for sources,
	// refusing a step beyond the panic threshold, ...).
	Message string         `json:"message"`
	Sources []SourceStatus `json:"sources"`
}
