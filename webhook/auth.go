package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxSkew is how far a signature's timestamp may be from the receiver's clock, either way: the
// window Buildkite's documentation suggests against replayed deliveries.
const MaxSkew = 5 * time.Minute

// maxSignatureHeader bounds the X-Buildkite-Signature value parsed: "timestamp=" and ten digits,
// ",signature=" and 64 hex digits is 86 bytes.
const maxSignatureHeader = 256

var (
	errNoCredentials = errors.New("neither X-Buildkite-Token nor X-Buildkite-Signature")
	errBadToken      = errors.New("X-Buildkite-Token does not match the webhook token")
	errBadSignature  = errors.New("X-Buildkite-Signature does not match the body and the webhook token")
	errMalformedSig  = errors.New(`X-Buildkite-Signature is not "timestamp=<unix seconds>,signature=<hex HMAC-SHA256>"`)
)

// replayError is an authentic signature that must not be accepted again: outside the window, or
// seen before.
type replayError struct{ reason string }

func (e replayError) Error() string { return e.reason }

// Sign returns the X-Buildkite-Signature value Buildkite sends for body dispatched at ts:
// "timestamp=<unix>,signature=<hex HMAC-SHA256 of "<unix>.<body>">" keyed with token. Tests and
// the fake API sign with it.
func Sign(token []byte, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	return "timestamp=" + unix + ",signature=" + hex.EncodeToString(mac(token, unix, body))
}

func mac(token []byte, unix string, body []byte) []byte {
	m := hmac.New(sha256.New, token)
	m.Write([]byte(unix))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// parseSignature reads "timestamp=<unix>,signature=<hex>"; the pairs may come in either order,
// and unknown pairs are ignored (a future scheme may add some).
func parseSignature(v string) (unix string, sig []byte, err error) {
	if len(v) > maxSignatureHeader {
		return "", nil, errMalformedSig
	}
	for part := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", nil, errMalformedSig
		}
		switch k {
		case "timestamp":
			unix = val
		case "signature":
			if sig, err = hex.DecodeString(val); err != nil {
				return "", nil, errMalformedSig
			}
		}
	}
	if unix == "" || len(sig) != sha256.Size {
		return "", nil, errMalformedSig
	}
	if _, err := strconv.ParseInt(unix, 10, 64); err != nil {
		return "", nil, errMalformedSig
	}
	return unix, sig, nil
}

// verifier checks credentials against one token.
type verifier struct {
	token     []byte
	tokenHash [sha256.Size]byte
	now       func() time.Time
	seen      *seenSignatures
}

func newVerifier(token []byte, now func() time.Time) *verifier {
	return &verifier{token: token, tokenHash: sha256.Sum256(token), now: now, seen: newSeenSignatures(maxSeenSignatures)}
}

// checkToken compares a clear token in constant time: both sides are hashed first, so that
// not even the length of the token leaks through the time a compare takes.
func (v *verifier) checkToken(got string) error {
	h := sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(h[:], v.tokenHash[:]) != 1 {
		return errBadToken
	}
	return nil
}

// checkSignature verifies the HMAC first, so that a forged header is an authentication failure
// whatever its timestamp says, and only an authentic one can be a replay.
func (v *verifier) checkSignature(header string, body []byte) error {
	unix, sig, err := parseSignature(header)
	if err != nil {
		return err
	}
	if !hmac.Equal(sig, mac(v.token, unix, body)) {
		return errBadSignature
	}
	sec, _ := strconv.ParseInt(unix, 10, 64) // parseSignature checked it
	now := v.now()
	ts := time.Unix(sec, 0)
	switch d := now.Sub(ts); {
	case d > MaxSkew:
		return replayError{"the signature's timestamp is " + d.Round(time.Second).String() + " old, more than " + MaxSkew.String() + ": a replayed delivery, or the receiver's clock is wrong"}
	case d < -MaxSkew:
		return replayError{"the signature's timestamp is " + (-d).Round(time.Second).String() + " in the future, more than " + MaxSkew.String() + ": a forged delivery, or the receiver's clock is wrong"}
	}
	if !v.seen.add(hex.EncodeToString(sig), ts, now) {
		return replayError{"this signature was accepted before: a replayed delivery"}
	}
	return nil
}

// maxSeenSignatures bounds the signatures remembered against replays within the window: at the
// bound the oldest are forgotten first (a replay of those is a duplicate the deduplication of
// records makes harmless anyway).
const maxSeenSignatures = 20000

// seenSignatures remembers the signatures accepted within the window.
type seenSignatures struct {
	mu    sync.Mutex
	max   int
	at    map[string]time.Time // signature → its timestamp
	order []string             // insertion order, for pruning
}

func newSeenSignatures(n int) *seenSignatures {
	return &seenSignatures{max: n, at: map[string]time.Time{}}
}

// add records sig; false when it was recorded already.
func (s *seenSignatures) add(sig string, ts, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.at[sig]; dup {
		return false
	}
	// Forget what the window rejects anyway, and the oldest beyond the bound.
	drop := 0
	for drop < len(s.order) && (len(s.order)-drop >= s.max || now.Sub(s.at[s.order[drop]]) > MaxSkew) {
		delete(s.at, s.order[drop])
		drop++
	}
	if drop > 0 {
		s.order = append(s.order[:0], s.order[drop:]...)
	}
	s.at[sig] = ts
	s.order = append(s.order, sig)
	return true
}
