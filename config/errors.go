package config

import (
	"fmt"
	"strings"
)

// Error is one mistake in a configuration file.
type Error struct {
	// File is the file name as given to Parse or Load.
	File string
	// Line and Column are 1-based; zero when unknown.
	Line, Column int
	// Path is the key path, such as "engine.step_threshold" or
	// "ntp.servers[2].port"; empty for mistakes of the file as a whole.
	Path string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// Error formats the mistake as FILE:LINE:COLUMN: PATH: MSG, leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
