package ke

import (
	"crypto/tls"
	"fmt"
)

// ALPN is the TLS application protocol of NTS-KE.
const ALPN = "ntske/1"

// DefaultPort is the NTS-KE port (RFC 8915 section 6).
const DefaultPort = 4460

// exporterLabel is the TLS exporter label of RFC 8915 section 5.1.
const exporterLabel = "EXPORTER-network-time-security"

// KeyLen is the length of the C2S and S2C keys for an AEAD algorithm, or 0
// for an algorithm this package does not implement.
func KeyLen(aead uint16) int {
	if aead == AEADAESSIVCMAC256 {
		return 32 // two AES-128 keys: one for CMAC, one for CTR
	}
	return 0
}

// exportKeys derives the client-to-server and server-to-client keys of an
// NTS-KE session (RFC 8915 section 5.1): the exporter context is the next
// protocol (NTPv4), the AEAD ID and 0 for C2S or 1 for S2C.
func exportKeys(cs *tls.ConnectionState, aead uint16) (c2s, s2c []byte, err error) {
	n := KeyLen(aead)
	if n == 0 {
		return nil, nil, fmt.Errorf("nts-ke: exporting keys: AEAD %d not implemented", aead)
	}
	ctx := []byte{byte(ProtocolNTPv4 >> 8), byte(ProtocolNTPv4), byte(aead >> 8), byte(aead), 0}
	if c2s, err = cs.ExportKeyingMaterial(exporterLabel, ctx, n); err != nil {
		return nil, nil, fmt.Errorf("nts-ke: exporting the C2S key: %w", err)
	}
	ctx[4] = 1
	if s2c, err = cs.ExportKeyingMaterial(exporterLabel, ctx, n); err != nil {
		return nil, nil, fmt.Errorf("nts-ke: exporting the S2C key: %w", err)
	}
	return c2s, s2c, nil
}

// codeName names an Error or Warning code.
func codeName(t RecordType, code uint16) string {
	if t == RecordError {
		switch code {
		case ErrorUnrecognizedCritical:
			return "unrecognized critical record"
		case ErrorBadRequest:
			return "bad request"
		case ErrorInternalServer:
			return "internal server error"
		}
	}
	return "unknown code"
}
