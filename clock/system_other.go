//go:build !linux

package clock

import (
	"errors"

	"go.uber.org/zap"
)

// NewSystem is only available on Linux.
func NewSystem(log *zap.Logger) (Clock, error) {
	return nil, errors.New("clock: the system clock driver is only available on Linux; use driver: virtual")
}
