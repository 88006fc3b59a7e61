//go:build windows || plan9 || js || wasip1

package netstamp

const msgTrunc = 0
