// Package nts is Network Time Security for NTP (RFC 8915) on the NTP side:
// the server's cookie-sealing keys (KeyRing, persisted to a key file), the
// cookies themselves, and the NTS extension fields of NTP requests and
// responses for both the client (ClientSession) and the server
// (ReadRequest, Request.AppendResponse). The TLS key exchange is in nts/ke.
package nts

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/timed-project/timed/nts/internal/siv"

	"github.com/timed-project/timed/internal/atomicfile"
)

// KeySize is the length of a cookie-sealing key (AES-SIV-CMAC-256).
const KeySize = siv.KeySize

// maxKeys bounds the keys a ring keeps and a key file may hold.
const maxKeys = 1000

// maxKeyFileLen bounds what LoadKeyRing reads.
const maxKeyFileLen = 1 << 20

// keyFileMagic is the first line of a key file; the version is in it.
const keyFileMagic = "timed-nts-keys 1"

// cookieKey is one server key: an id carried in every cookie sealed with
// it, the time it was made, and the secret.
type cookieKey struct {
	id      uint32
	created time.Time
	secret  [KeySize]byte
	aead    *siv.AESSIV
}

func newCookieKey(id uint32, created time.Time, secret []byte) (*cookieKey, error) {
	k := &cookieKey{id: id, created: created}
	copy(k.secret[:], secret)
	aead, err := siv.New(k.secret[:])
	if err != nil {
		return nil, fmt.Errorf("nts: key %08x: %w", id, err)
	}
	k.aead = aead
	return k, nil
}

// KeyRing holds the server's cookie-sealing keys: the newest seals, all
// open. Rotate adds a key every period and retires keys older than keep
// periods; key ids count up by one, so that a cookie of a retired key is
// told from one of a key never held. Keys are random and stored in the key
// file (never derived from a long-lived secret), so a leaked old file
// exposes only the keys it held.
//
// Hosts that load the same file seal and open each other's cookies (NTS-KE
// on one machine, NTP on others): one of them rotates and saves, the others
// Load the file when it changes, and do not Rotate themselves. It is safe
// for concurrent use.
type KeyRing struct {
	period time.Duration
	keep   int

	mu   sync.RWMutex
	keys []*cookieKey // oldest first; the last one is current

	sessions sessions // ciphers of recent clients' keys (server side)
}

// NewKeyRing returns an empty ring that rotates every period and keeps keys
// for keep periods (at least 2, so that a cookie sealed just before a
// rotation stays valid for at least one period). Call Rotate (or Load)
// before sealing.
func NewKeyRing(period time.Duration, keep int) (*KeyRing, error) {
	if period <= 0 {
		return nil, fmt.Errorf("nts: key rotation period %v must be positive", period)
	}
	if keep < 2 || keep > maxKeys {
		return nil, fmt.Errorf("nts: keys kept for %d periods, want 2..%d", keep, maxKeys)
	}
	return &KeyRing{period: period, keep: keep}, nil
}

// Rotate adds a key when the ring is empty or the current key was made a
// period or more before now, and drops keys made more than keep periods
// before now (never the current one). It reports whether the ring changed,
// in which case the caller saves it.
func (r *KeyRing) Rotate(now time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	if n := len(r.keys); n == 0 || now.Sub(r.keys[n-1].created) >= r.period {
		var id uint32
		var b [4 + KeySize]byte
		if _, err := rand.Read(b[:]); err != nil {
			return false, fmt.Errorf("nts: new cookie key: %w", err)
		}
		if n == 0 {
			id = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		} else {
			id = r.keys[n-1].id + 1
		}
		k, err := newCookieKey(id, now, b[4:])
		clear(b[:])
		if err != nil {
			return false, err
		}
		r.keys = append(r.keys, k)
		changed = true
	}
	limit := time.Duration(r.keep) * r.period
	drop := 0
	for drop < len(r.keys)-1 && (now.Sub(r.keys[drop].created) > limit || len(r.keys)-drop > maxKeys) {
		drop++
	}
	if drop > 0 {
		for _, k := range r.keys[:drop] {
			clear(k.secret[:])
		}
		r.keys = append(r.keys[:0], r.keys[drop:]...)
		changed = true
	}
	return changed, nil
}

// Current returns the id of the key that seals new cookies and when it was
// made; ok is false while the ring is empty.
func (r *KeyRing) Current() (id uint32, created time.Time, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k := r.current()
	if k == nil {
		return 0, time.Time{}, false
	}
	return k.id, k.created, true
}

// current returns the key that seals, or nil; r.mu must be held.
func (r *KeyRing) current() *cookieKey {
	if len(r.keys) == 0 {
		return nil
	}
	return r.keys[len(r.keys)-1]
}

// lookup finds the key with this id, telling a retired key (older than the
// oldest kept) from one never made here; r.mu must be held.
func (r *KeyRing) lookup(id uint32) (*cookieKey, error) {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i].id == id {
			return r.keys[i], nil
		}
	}
	// Ids count up from the first key's; one a little below the oldest
	// kept is one this ring (or the file's writer) retired.
	if n := len(r.keys); n > 0 && int32(id-r.keys[0].id) < 0 {
		if back := r.keys[n-1].id - id; back < retiredWindow {
			return nil, fmt.Errorf("cookie key %08x: %w", id, ErrRetiredKey)
		}
	}
	return nil, fmt.Errorf("cookie key %08x: %w", id, ErrUnknownKey)
}

// retiredWindow is how many ids below the current one count as retired
// rather than unknown.
const retiredWindow = 1 << 16

// LoadKeyRing reads a key file written by Save. A missing file gives an error
// that matches fs.ErrNotExist (start with NewKeyRing then); a damaged one an
// error that matches ErrKeyFile and says where.
func LoadKeyRing(path string, period time.Duration, keep int) (*KeyRing, error) {
	r, err := NewKeyRing(period, keep)
	if err != nil {
		return nil, err
	}
	if err := r.Load(path); err != nil {
		return nil, err
	}
	return r, nil
}

// Load replaces the ring's keys with those in the key file at path: what a
// host that shares the file with the one that rotates does when the file
// changes. On error the ring is unchanged.
func (r *KeyRing) Load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nts: key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1))
	if err != nil {
		return fmt.Errorf("nts: key file %s: %w", path, err)
	}
	keys, err := parseKeyFile(data)
	if err != nil {
		return fmt.Errorf("nts: key file %s: %w", path, err)
	}
	r.mu.Lock()
	old := r.keys
	r.keys = keys
	r.mu.Unlock()
	for _, k := range old {
		clear(k.secret[:])
	}
	return nil
}

// Save writes the ring to path atomically: a temporary file in the same
// directory, mode 0600, synced, renamed over path, and the directory synced.
func (r *KeyRing) Save(path string) error {
	r.mu.RLock()
	data := formatKeyFile(r.keys)
	r.mu.RUnlock()
	defer clear(data)

	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("nts: save key file: %w", err)
	}
	return nil
}

// formatKeyFile writes the keys as text, oldest first:
//
//	timed-nts-keys 1
//	key ID CREATED SECRET
//	sha256 DIGEST
//
// with ID in hex, CREATED in Unix nanoseconds, SECRET in hex and DIGEST the
// SHA-256 of everything before its line, so that truncation and edits show.
func formatKeyFile(keys []*cookieKey) []byte {
	var b bytes.Buffer
	b.WriteString(keyFileMagic + "\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "key %08x %d %x\n", k.id, k.created.UnixNano(), k.secret[:])
	}
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "sha256 %x\n", sum[:])
	return b.Bytes()
}

func parseKeyFile(data []byte) ([]*cookieKey, error) {
	if len(data) > maxKeyFileLen {
		return nil, fmt.Errorf("longer than %d bytes: %w", maxKeyFileLen, ErrKeyFile)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("empty: %w", ErrKeyFile)
	}
	var keys []*cookieKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), 256)
	line, offset, sawSum := 0, 0, false
	for sc.Scan() {
		line++
		text := sc.Text()
		start := offset
		offset += len(text) + 1
		fields := strings.Fields(text)
		switch {
		case line == 1:
			if text != keyFileMagic {
				return nil, fmt.Errorf("line 1: not a timed NTS key file (want %q): %w", keyFileMagic, ErrKeyFile)
			}
		case sawSum:
			return nil, fmt.Errorf("line %d: text after the checksum: %w", line, ErrKeyFile)
		case len(fields) == 2 && fields[0] == "sha256":
			want, err := hex.DecodeString(fields[1])
			sum := sha256.Sum256(data[:start])
			if err != nil || !bytes.Equal(want, sum[:]) {
				return nil, fmt.Errorf("line %d: checksum mismatch (file damaged or edited): %w", line, ErrKeyFile)
			}
			sawSum = true
		case len(fields) == 4 && fields[0] == "key":
			k, err := parseKeyLine(fields)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w: %w", line, err, ErrKeyFile)
			}
			if len(keys) == maxKeys {
				return nil, fmt.Errorf("line %d: more than %d keys: %w", line, maxKeys, ErrKeyFile)
			}
			for _, o := range keys {
				if o.id == k.id {
					return nil, fmt.Errorf("line %d: key id %08x twice: %w", line, k.id, ErrKeyFile)
				}
			}
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("line %d: want \"key ID CREATED SECRET\" or \"sha256 DIGEST\": %w", line, ErrKeyFile)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w: %w", line+1, err, ErrKeyFile)
	}
	if !sawSum {
		return nil, fmt.Errorf("no checksum line (file truncated?): %w", ErrKeyFile)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys: %w", ErrKeyFile)
	}
	return keys, nil
}

func parseKeyLine(fields []string) (*cookieKey, error) {
	id, err := strconv.ParseUint(fields[1], 16, 32)
	if err != nil || len(fields[1]) != 8 {
		return nil, fmt.Errorf("key id %q is not 8 hex digits", fields[1])
	}
	ns, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("creation time %q is not Unix nanoseconds", fields[2])
	}
	secret, err := hex.DecodeString(fields[3])
	if err != nil || len(secret) != KeySize {
		return nil, fmt.Errorf("key %08x: secret is not %d hex bytes", id, KeySize)
	}
	defer clear(secret)
	return newCookieKey(uint32(id), time.Unix(0, ns), secret)
}
