// Package secret loads credentials from a file or an environment variable and keeps them out of
// logs, errors and fmt output: a Secret prints as "<secret>" whatever verb formats it.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Secret is a credential. Its String, GoString and MarshalText hide the value; Reveal returns it
// and is the only way to read it, so every use is easy to find.
type Secret string

const redacted = "<secret>"

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return redacted }

// MarshalText keeps the value out of JSON, YAML and logfmt encoders.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the credential itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// ErrMissing is returned when neither the file nor the environment variable provides a value.
var ErrMissing = errors.New("no credential configured")

// Load reads a credential from file when file is set, else from the environment variable envVar.
// Surrounding white space (a trailing newline from `echo > file`) is trimmed. Errors name the file
// or the variable, never the content.
func Load(file, envVar string) (Secret, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading credential file %q: %w", file, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("credential file %q is empty", file)
		}
		if strings.ContainsAny(v, "\r\n") {
			return "", fmt.Errorf("credential file %q holds more than one line; it must hold the token alone", file)
		}
		return Secret(v), nil
	}
	if v := strings.TrimSpace(os.Getenv(envVar)); v != "" {
		return Secret(v), nil
	}
	return "", fmt.Errorf("%w: set the file flag or the environment variable %s", ErrMissing, envVar)
}
