//go:build !linux

package daemon

// monotonicMicros is 0: only systemd reads it, and systemd is Linux's.
func monotonicMicros() int64 { return 0 }
