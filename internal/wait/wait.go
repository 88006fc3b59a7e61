// Package wait pauses a goroutine for a while unless its context ends.
package wait

import (
	"context"
	"time"
)

// For waits for d or until ctx is done; it reports whether d passed.
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
