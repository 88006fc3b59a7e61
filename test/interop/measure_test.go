//go:build linux

package interop

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// rms is the root mean square of xs (NaN for none).
func rms(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range xs {
		s += x * x
	}
	return math.Sqrt(s / float64(len(xs)))
}

// maxAbs is the largest |x| (NaN for none).
func maxAbs(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	m := 0.0
	for _, x := range xs {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// median of xs (NaN for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// syncResult is what a run of timed against one server showed.
type syncResult struct {
	// FirstSync is when |offset from the system clock| first fell below
	// 1 ms (negative: never); FirstSynchronized when the engine first said
	// it was synchronized.
	FirstSync, FirstSynchronized time.Duration
	// RMS and Max of the offset from the system clock over the window, and
	// how many samples it had.
	RMS, Max float64
	N        int
	Errors   int
}

// analyse judges samples: time to sync, and the offset from the system
// clock over [from, to] after timed started.
func analyse(samples []sample, from, to time.Duration) syncResult {
	r := syncResult{FirstSync: -1, FirstSynchronized: -1}
	var window []float64
	for _, s := range samples {
		if s.Err != nil {
			r.Errors++
			continue
		}
		off := s.Status.Clock.OffsetFromSystem
		if r.FirstSync < 0 && math.Abs(off) < 1e-3 {
			r.FirstSync = s.At
		}
		if r.FirstSynchronized < 0 && s.Status.Engine.Synchronized {
			r.FirstSynchronized = s.At
		}
		if s.At >= from && s.At <= to {
			window = append(window, off)
		}
	}
	r.RMS, r.Max, r.N = rms(window), maxAbs(window), len(window)
	return r
}

// referredOffsets are the offsets of the server from the system clock as
// timed measured them: each sample's raw source offset (server minus
// virtual clock, at the time of the measurement) plus the virtual clock's
// offset from the system clock at that time. The second is read now, so it
// is carried back to the measurement with the rate at which it changed
// between this status reading and the one before.
func referredOffsets(samples []sample, from, to time.Duration) []float64 {
	var out []float64
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		if cur.Err != nil || prev.Err != nil || cur.At < from || cur.At > to {
			continue
		}
		srcs := cur.Status.Engine.Sources
		if len(srcs) == 0 || srcs[0].Samples == 0 {
			continue
		}
		dt := (cur.At - prev.At).Seconds()
		if dt <= 0 {
			continue
		}
		rate := (cur.Status.Clock.OffsetFromSystem - prev.Status.Clock.OffsetFromSystem) / dt
		ofs := cur.Status.Clock.OffsetFromSystem - rate*srcs[0].LastSampleAgo
		out = append(out, srcs[0].LastOffset+ofs)
	}
	return out
}

var chronyWrongBy = regexp.MustCompile(`System clock wrong by ([-+0-9.eE]+) seconds`)

// parseChronydQ reads the offset from `chronyd -Q` output. chronyd prints
// how far the system clock is behind the server ("wrong by +1.0" when the
// server is 1 s ahead), the same sign as timed's source offsets.
func parseChronydQ(out string) (float64, error) {
	m := chronyWrongBy.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no \"System clock wrong by\" line in chronyd -Q output: %q", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// footprint is a process's memory and CPU use.
type footprint struct {
	RSSKiB, HWMKiB int64         // VmRSS and VmHWM
	CPU            time.Duration // user + system time so far, all threads
	TaskCPU        time.Duration // the same summed over living threads, finer
}

// readFootprint reads /proc/PID/status (memory), /proc/PID/stat (CPU time
// of every thread of the process, living or ended, in clock ticks) and the
// threads' schedstat (finer; /proc/PID/schedstat alone covers the main
// thread only).
func readFootprint(pid int) (footprint, error) {
	var f footprint
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return f, err
	}
	f.RSSKiB, f.HWMKiB = statusKiB(string(status), "VmRSS"), statusKiB(string(status), "VmHWM")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return f, err
	}
	if f.CPU, err = statCPU(string(stat)); err != nil {
		return f, err
	}
	f.TaskCPU, err = taskCPU(pid)
	return f, err
}

// taskCPU sums the CPU time (nanoseconds, first field of schedstat) of the
// process's living threads. Fine-grained, so good for differences over a
// short time, but it forgets threads that ended.
func taskCPU(pid int) (time.Duration, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(dirs) == 0 {
		return 0, fmt.Errorf("no threads of pid %d: %v", pid, err)
	}
	var sum time.Duration
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			return 0, fmt.Errorf("empty %s", path)
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// statusKiB reads a "Key:   123 kB" line of /proc/PID/status.
func statusKiB(status, key string) int64 {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// statCPU is utime+stime from /proc/PID/stat. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after its last ')'.
func statCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat: %.80q", stat)
	}
	fields := strings.Fields(stat[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc stat: %.80q", stat)
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime in /proc stat: %.80q", stat)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

const (
	footprintBegin = "<!-- footprint:begin -->"
	footprintEnd   = "<!-- footprint:end -->"
	// footprintHeading goes before the markers when they are added.
	footprintHeading = "## Footprint next to chronyd\n\n"
)

// writeFootprintSection replaces the text between the footprint markers of
// the file at path with body, adding the markers at the end (and the file)
// when they are missing.
func writeFootprintSection(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := footprintBegin + "\n" + strings.TrimRight(body, "\n") + "\n" + footprintEnd
	text := string(old)
	b, e := strings.Index(text, footprintBegin), strings.Index(text, footprintEnd)
	switch {
	case b >= 0 && e > b:
		text = text[:b] + section + text[e+len(footprintEnd):]
	case text == "":
		text = "# Performance\n\n" + footprintHeading + section + "\n"
	default:
		text = strings.TrimRight(text, "\n") + "\n\n" + footprintHeading + section + "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// meanSD is the mean and the standard deviation of xs (NaN for none).
func meanSD(xs []float64) (mean, sd float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	return mean, rmsAround(xs, mean)
}
