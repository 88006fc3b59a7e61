package ntpload

import (
	"encoding/binary"
)

// The NTP header (RFC 5905, section 7.3): its length, the client and
// server modes, and the offsets of the fields used here.
const (
	headerLen  = 48
	modeClient = 3
	modeServer = 4

	offStratum  = 1
	offRefID    = 12
	offOrigin   = 24
	offTransmit = 40
)

// request writes an NTPv4 client request (mode 3, everything zero but the
// transmit timestamp, which carries cookie) into b[:headerLen].
func request(b []byte, cookie uint64) {
	_ = b[headerLen-1]
	clear(b[:headerLen])
	b[0] = 4<<3 | modeClient
	binary.BigEndian.PutUint64(b[offTransmit:], cookie)
}

// kind is what a received datagram turned out to be.
type kind uint8

const (
	kindResponse  kind = iota // a server response: origin holds the cookie
	kindKiss                  // a kiss-of-death (stratum 0): code holds its code
	kindMalformed             // not an NTP server response
)

// parseResponse classifies datagram b. A response is at least a full
// header, NTP version 1 to 4 and mode 4 (server); longer datagrams
// (extension fields, a MAC) are accepted. It never reads past len(b).
func parseResponse(b []byte) (k kind, origin uint64, code [4]byte) {
	if len(b) < headerLen {
		return kindMalformed, 0, code
	}
	vn, mode := b[0]>>3&7, b[0]&7
	if vn < 1 || vn > 4 || mode != modeServer {
		return kindMalformed, 0, code
	}
	origin = binary.BigEndian.Uint64(b[offOrigin:])
	if b[offStratum] == 0 {
		copy(code[:], b[offRefID:offRefID+4])
		return kindKiss, origin, code
	}
	return kindResponse, origin, code
}

// kissName is a kiss code as text: its ASCII letters, or its hex value when
// it is not printable.
func kissName(code [4]byte) string {
	for _, c := range code {
		if c < 0x20 || c > 0x7e {
			const hex = "0123456789abcdef"
			out := []byte("0x00000000")
			for i, c := range code {
				out[2+2*i], out[3+2*i] = hex[c>>4], hex[c&15]
			}
			return string(out)
		}
	}
	return string(code[:])
}
