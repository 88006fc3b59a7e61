//go:build !linux

package main

import "os"

// isTerminal reports whether f is a character device and colours are
// wanted (NO_COLOR unset, TERM not "dumb").
func isTerminal(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
