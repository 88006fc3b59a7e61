//go:build !genman

package main

import "github.com/spf13/cobra"

// addManCommand adds nothing: only a genman build writes man pages.
func addManCommand(*cobra.Command) {}
