//go:build genman

package main

import (
	"github.com/spf13/cobra"

	"github.com/timed-project/timed/cmd/internal/manpage"
)

// addManCommand adds the hidden "__man DIR" (make man builds timed with
// the genman tag; the installed binary has no man page generator).
func addManCommand(root *cobra.Command) { root.AddCommand(manpage.Command(root, "8")) }
