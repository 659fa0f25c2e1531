package workflow

import (
	"errors"
	"fmt"
)

// MaxProcessIDLen is the longest process id, in bytes.
const MaxProcessIDLen = 128

// ErrInvalidProcessID is wrapped by every error of CheckProcessID.
var ErrInvalidProcessID = errors.New("invalid process id")

// ProcessIDRule says in words what CheckProcessID accepts.
const ProcessIDRule = "1 to 128 characters among letters, digits, '.', '_', ':', '@' and '-', starting with a letter or a digit"

// CheckProcessID enforces the one rule for process ids, wherever they enter
// (API, CLI, start requests, start events): 1 to MaxProcessIDLen ASCII
// letters, digits, '.', '_', ':', '@' and '-', the first a letter or a
// digit. So an id is a URL path segment, a Pulsar message key, a file name
// and a shell word as it is, can be neither "." nor "..", cannot be taken
// for a command-line flag, and "<process>/<step>" ids split at the first
// '/'.
func CheckProcessID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty (want %s)", ErrInvalidProcessID, ProcessIDRule)
	case len(id) > MaxProcessIDLen:
		return fmt.Errorf("%w: %d bytes, longer than %d (want %s)", ErrInvalidProcessID, len(id), MaxProcessIDLen, ProcessIDRule)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == ':' || c == '@' || c == '-') {
			continue
		}
		what := fmt.Sprintf("%q", string(c))
		if c < 0x20 || c == 0x7f {
			what = fmt.Sprintf("control character %#02x", c)
		} else if c >= 0x80 {
			what = "a non-ASCII character"
		} else if i == 0 {
			what = fmt.Sprintf("%q at the start", string(c))
		}
		return fmt.Errorf("%w: %q has %s (want %s)", ErrInvalidProcessID, id, what, ProcessIDRule)
	}
	return nil
}
