// Package manpage writes man pages of a cobra command tree. The commands
// link it only when built with the genman tag (make man), so that the
// binaries carry no man page generator.
package manpage

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command is the hidden command "__man DIR" that writes a page in section
// 8 (timed) or 1 (timectl) for root and each of its visible subcommands.
func Command(root *cobra.Command, section string) *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return Write(root, section, args[0])
		},
	}
}

// Write writes the man pages of root's tree into dir, which it creates.
func Write(root *cobra.Command, section, dir string) error {
	if section == "" {
		return errors.New("man: no section")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Section: section, Source: "timed", Manual: "timed manual"}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man: %s: %w", dir, err)
	}
	return nil
}
