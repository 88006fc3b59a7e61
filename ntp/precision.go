package ntp

import "math"

// Precision is the precision of this host's clock readings as NTP's
// precision field states it: log2 of the smallest step between two
// consecutive readings, in seconds, rounded up. It is measured once.
func Precision() int8 {
	return int8(math.Ceil(math.Log2(localPrecision().Seconds())))
}
