package nts

import "errors"

// The errors of this package; match them with errors.Is. Each error
// returned wraps one of them with what and where.
var (
	// ErrKeyFile: a key file's content is damaged or not a key file (its
	// access errors are the os package's).
	ErrKeyFile = errors.New("corrupt NTS key file")
	// ErrNoKey: the ring is empty (Rotate or Load first).
	ErrNoKey = errors.New("NTS key ring has no key (Rotate or Load first)")

	// Opening a cookie, and so ReadRequest: each calls for an NTS NAK
	// (AppendNAK) in answer.
	ErrCookieMalformed = errors.New("NTS cookie malformed")
	ErrUnknownKey      = errors.New("NTS cookie sealed with a key this server does not have")
	ErrRetiredKey      = errors.New("NTS cookie sealed with a retired key")
	ErrCookieAuth      = errors.New("NTS cookie fails authentication (tampered or forged)")
	ErrUnsupportedAEAD = errors.New("unsupported AEAD algorithm")

	// Reading the NTS extension fields of a request or a response.
	ErrMalformed        = errors.New("malformed NTS extension fields")
	ErrNoUniqueID       = errors.New("no NTS unique identifier")
	ErrNoCookie         = errors.New("no NTS cookie")
	ErrNoAuthenticator  = errors.New("no NTS authenticator")
	ErrAuth             = errors.New("NTS authentication failed")
	ErrUniqueIDMismatch = errors.New("NTS unique identifier does not match the request (replayed or never sent)")
	ErrNAK              = errors.New("NTS NAK (server could not use the cookie: new key exchange needed)")
)
