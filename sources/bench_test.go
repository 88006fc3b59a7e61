package sources

import (
	"testing"
	"time"
)

// BenchmarkMeasured is the cost of one measurement with a full window
// (re-estimation included) followed by an Update: what a PTP source at 128
// samples a second pays 128 times a second.
func BenchmarkMeasured(b *testing.B) {
	e := NewEngine(DefaultConfig(), nil)
	if err := e.AddSource("a", SourceOptions{MinPoll: -6, MaxPoll: -6}); err != nil {
		b.Fatal(err)
	}
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := time.Second / 128
	var seq uint64
	measure := func(i int) {
		seq = seq*6364136223846793005 + 1442695040888963407
		jitter := time.Duration(seq>>54) * time.Nanosecond
		now := epoch.Add(time.Duration(i) * step)
		e.Polled("a", now)
		e.Measured("a", Measurement{Local: now, Offset: jitter / 2, Delay: 20*time.Microsecond + jitter})
		e.Update(now)
	}
	for i := 0; i < windowSize; i++ {
		measure(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		measure(windowSize + i)
	}
}
