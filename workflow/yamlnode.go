package workflow

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// field is one key: value entry of a YAML mapping.
type field struct {
	key    string
	keyPos Position
	val    *yaml.Node // nil when the value is an explicit null
	valPos Position
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// pos is where a node starts; a mapping starts at its first key.
func (l *loader) pos(n *yaml.Node) Position {
	if n == nil {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	if n.Kind == yaml.MappingNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Line == 0 {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	return Position{File: l.file, Line: n.Line, Col: n.Column}
}

func (l *loader) errorAt(p Position, path, hint, format string, args ...any) {
	l.errs = append(l.errs, &ValidationError{Pos: p, Path: path, Message: fmt.Sprintf(format, args...), Hint: hint})
}

// Limits against hostile YAML: recursive aliases and alias bombs.
const (
	maxAliasExpansions = 10000
	maxDepth           = 64
)

// enter guards the recursion of value and template; leave must follow.
func (l *loader) enter(n *yaml.Node, path string) bool {
	l.depth++
	if l.depth > maxDepth {
		if !l.tooDeep {
			l.tooDeep = true
			l.errorAt(l.pos(n), path, "a recursive alias?", "value nested more than %d levels deep", maxDepth)
		}
		return false
	}
	return true
}

func (l *loader) leave() { l.depth-- }

// Scalar tags (yaml.Node.ShortTag).
const (
	tagStr       = "!!str"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagBool      = "!!bool"
	tagNull      = "!!null"
	tagTimestamp = "!!timestamp"
	tagMerge     = "!!merge"
)

// deref follows aliases (counting them against alias bombs) and documents.
// Nulls come back as nil.
func (l *loader) deref(n *yaml.Node) *yaml.Node {
	for depth := 0; depth < 64 && n != nil; depth++ {
		switch n.Kind {
		case yaml.AliasNode:
			l.aliases++
			if l.aliases > maxAliasExpansions {
				if l.aliases == maxAliasExpansions+1 {
					l.errorAt(l.pos(n), "", "write the values out or use fewer aliases", "more than %d alias expansions", maxAliasExpansions)
				}
				return nil
			}
			if n.Alias == nil {
				l.errorAt(l.pos(n), "", "define the anchor before using it", "unknown alias *%s", n.Value)
				return nil
			}
			n = n.Alias
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.ScalarNode:
			if n.ShortTag() == tagNull {
				return nil
			}
			return n
		default:
			return n
		}
	}
	return n
}

// isString reports whether n is a string scalar (quoted, plain, block, or
// a plain date, which is text to a workflow).
func isString(n *yaml.Node) bool {
	if n == nil || n.Kind != yaml.ScalarNode {
		return false
	}
	switch n.ShortTag() {
	case tagStr, tagTimestamp:
		return true
	case tagInt, tagFloat, tagBool, tagNull, tagMerge, "!!binary":
		return false
	}
	return true // a custom tag: its text
}

func nodeKind(n *yaml.Node) string {
	if n == nil {
		return "null"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case tagInt:
		return "an integer"
	case tagFloat:
		return "a number"
	case tagBool:
		return "a boolean"
	case tagNull:
		return "null"
	}
	return "a string"
}

// mapping reads a mapping node and checks its keys against allowed.
// what names the mapping in messages ("step", "retry", ...).
func (l *loader) mapping(n *yaml.Node, path, what string, allowed []string) (map[string]*field, []*field, bool) {
	n = l.deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		l.errorAt(l.pos(n), path, "", "%s must be a mapping, not %s", what, nodeKind(n))
		return nil, nil, false
	}
	out := make(map[string]*field, len(n.Content)/2)
	order := make([]*field, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := l.pos(k)
		if k.Kind == yaml.ScalarNode && k.ShortTag() == tagMerge {
			l.errorAt(kp, path, "write the keys out; merge keys are not supported", "merge key << is not allowed in %s", what)
			continue
		}
		kd := l.deref(k)
		if kd == nil || kd.Kind != yaml.ScalarNode {
			l.errorAt(kp, path, "", "keys of %s must be plain names", what)
			continue
		}
		key := kd.Value
		if prev, dup := out[key]; dup {
			l.errorAt(kp, join(path, key), "remove one of them", "duplicate key %q in %s (first at line %d)", key, what, prev.keyPos.Line)
			continue
		}
		if allowed != nil && !contains(allowed, key) {
			hint := ""
			if s := suggest(key, allowed); s != "" {
				hint = "did you mean " + s + "?"
			} else {
				hint = "allowed keys: " + strings.Join(allowed, ", ")
			}
			l.errorAt(kp, join(path, key), hint, "unknown key %q in %s", key, what)
			continue
		}
		f := &field{key: key, keyPos: kp, val: l.deref(v)}
		f.valPos = kp
		if f.val != nil {
			f.valPos = l.pos(f.val)
		}
		out[key] = f
		order = append(order, f)
	}
	return out, order, true
}

func (l *loader) seq(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	n = l.deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		l.errorAt(l.pos(n), path, "", "%s must be a list, not %s", what, nodeKind(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, v := range n.Content {
		out[i] = l.deref(v)
	}
	return out, true
}

// scalarText is the text of a scalar (any type), ok false for other nodes.
func scalarText(n *yaml.Node) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", false
	}
	return n.Value, true
}

func (l *loader) str(f *field, path, what string) (string, bool) {
	if isString(f.val) {
		return f.val.Value, true
	}
	l.errorAt(f.valPos, path, "", "%s must be a string, not %s", what, nodeKind(f.val))
	return "", false
}

func (l *loader) integer(f *field, path, what string) (int, bool) {
	if f.val != nil && f.val.Kind == yaml.ScalarNode && f.val.ShortTag() == tagInt {
		var v int64
		if err := f.val.Decode(&v); err == nil && v >= math.MinInt32 && v <= math.MaxInt32 {
			return int(v), true
		}
		l.errorAt(f.valPos, path, "", "%s is out of range", what)
		return 0, false
	}
	l.errorAt(f.valPos, path, "", "%s must be an integer, not %s", what, nodeKind(f.val))
	return 0, false
}

func (l *loader) number(f *field, path, what string) (float64, bool) {
	if f.val != nil && f.val.Kind == yaml.ScalarNode {
		if t := f.val.ShortTag(); t == tagInt || t == tagFloat {
			var v float64
			if err := f.val.Decode(&v); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
				return v, true
			}
		}
	}
	l.errorAt(f.valPos, path, "", "%s must be a number, not %s", what, nodeKind(f.val))
	return 0, false
}

const durationHint = "write a duration such as 500ms, 30s, 5m, 48h or 1h30m"

func (l *loader) duration(f *field, path, what string) (time.Duration, bool) {
	s, ok := scalarText(f.val)
	if !isString(f.val) || !ok {
		l.errorAt(f.valPos, path, durationHint, "%s must be a duration, not %s", what, nodeKind(f.val))
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		l.errorAt(f.valPos, path, durationHint, "%s: invalid duration %q", what, s)
		return 0, false
	}
	if d <= 0 {
		l.errorAt(f.valPos, path, "use a positive duration", "%s must be positive, not %q", what, s)
		return 0, false
	}
	return d, true
}

// parseDuration accepts Go durations plus a whole number of days ("2d").
func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
}

// value converts a YAML node to a JSON-compatible Go value.
func (l *loader) value(n *yaml.Node, path string) any {
	defer l.leave()
	if !l.enter(n, path) {
		return nil
	}
	n = l.deref(n)
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		_, order, ok := l.mapping(n, path, "value", nil)
		if !ok {
			return nil
		}
		m := make(map[string]any, len(order))
		for _, f := range order {
			m[f.key] = l.value(f.val, join(path, f.key))
		}
		return m
	case yaml.SequenceNode:
		items, _ := l.seq(n, path, "value")
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = l.value(it, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case tagInt:
			var i int64
			if err := n.Decode(&i); err == nil {
				return i
			}
			var u uint64
			if err := n.Decode(&u); err == nil {
				return u
			}
			var f float64
			if err := n.Decode(&f); err == nil {
				return f
			}
		case tagFloat:
			var f float64
			if err := n.Decode(&f); err != nil {
				break
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				l.errorAt(l.pos(n), path, "", "infinity and NaN cannot be represented in JSON")
				return nil
			}
			return f
		case tagBool:
			var b bool
			if err := n.Decode(&b); err == nil {
				return b
			}
		default:
			return n.Value
		}
	}
	l.errorAt(l.pos(n), path, "", "unsupported YAML value %s %q", n.ShortTag(), n.Value)
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the closest allowed word, if close enough.
func suggest(word string, options []string) string {
	best, bestD := "", 1<<30
	for _, o := range options {
		d := editDistance(strings.ToLower(word), o)
		if d < bestD {
			best, bestD = o, d
		}
	}
	limit := 1
	if len(word) >= 4 {
		limit = 2
	}
	if len(word) >= 9 {
		limit = 3
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// editDistance is the optimal-string-alignment distance (Levenshtein plus
// transpositions).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
