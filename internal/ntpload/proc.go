package ntpload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc (100 on every
// Linux architecture).
const clockTicks = 100

// ProcessCPU is the CPU time (user + system) that process pid has used so
// far, over all its threads, living or ended (/proc/PID/stat), at the
// 10 ms resolution /proc gives.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("ntpload: CPU time of pid %d: %w", pid, err)
	}
	st, err := parseStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("ntpload: CPU time of pid %d: %w", pid, err)
	}
	return st.cpu, nil
}

// ThreadCPU is one thread's CPU time so far.
type ThreadCPU struct {
	TID  int    `json:"tid"`
	Name string `json:"name"`
	// CPU is user + system time.
	CPU time.Duration `json:"cpu_ns"`
	// Processor is the CPU the thread last ran on.
	Processor int `json:"processor"`
}

// Threads lists the living threads of process pid with their CPU time
// (/proc/PID/task/TID/stat), by thread ID.
func Threads(pid int) ([]ThreadCPU, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("ntpload: threads of pid %d: %w", pid, err)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("ntpload: threads of pid %d: %w", pid, os.ErrNotExist)
	}
	out := make([]ThreadCPU, 0, len(dirs))
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread ended
		}
		if err != nil {
			return nil, fmt.Errorf("ntpload: threads of pid %d: %w", pid, err)
		}
		st, err := parseStat(string(b))
		if err != nil {
			return nil, fmt.Errorf("ntpload: %s: %w", path, err)
		}
		tid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		out = append(out, ThreadCPU{TID: tid, Name: st.name, CPU: st.cpu, Processor: st.processor})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out, nil
}

// stat is what we use of a /proc/PID/stat line.
type stat struct {
	name      string
	cpu       time.Duration
	processor int
}

// parseStat reads a /proc/PID/stat or /proc/PID/task/TID/stat line. The
// command name (field 2) may hold spaces and parentheses, so the fields are
// counted after its last ')'.
func parseStat(s string) (stat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("malformed stat line %.80q", s)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, processor 39.
	const utime, stime, processor = 14 - 3, 15 - 3, 39 - 3
	if len(f) <= stime {
		return stat{}, fmt.Errorf("short stat line %.80q", s)
	}
	ut, err1 := strconv.ParseUint(f[utime], 10, 63)
	st, err2 := strconv.ParseUint(f[stime], 10, 63)
	if err1 != nil || err2 != nil {
		return stat{}, fmt.Errorf("bad utime or stime in stat line %.80q", s)
	}
	out := stat{name: s[open+1 : end], cpu: time.Duration(ut+st) * time.Second / clockTicks, processor: -1}
	if len(f) > processor {
		if p, err := strconv.Atoi(f[processor]); err == nil {
			out.processor = p
		}
	}
	return out, nil
}
