//go:build !linux

package daemon

import "os"

// isTerminal reports whether f is a character device, which on a terminal
// it is (so is /dev/null: a console-encoded log there harms nobody).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
