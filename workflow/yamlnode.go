package workflow

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// field is one key: value entry of a YAML mapping.
type field struct {
	key    string
	keyPos Position
	val    ast.Node // nil when the value is an explicit null
	valPos Position
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func (l *loader) pos(n ast.Node) Position {
	if n == nil {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	var t *token.Token
	switch x := n.(type) {
	case *ast.MappingNode:
		if len(x.Values) > 0 {
			return l.pos(x.Values[0])
		}
		t = x.Start
	case *ast.MappingValueNode:
		return l.pos(x.Key)
	case *ast.SequenceNode:
		t = x.Start
	default:
		t = n.GetToken()
	}
	if t == nil || t.Position == nil {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	return Position{File: l.file, Line: t.Position.Line, Col: t.Position.Column}
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
func (l *loader) enter(n ast.Node, path string) bool {
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

// deref removes anchors, aliases, tags and explicit keys around a node.
// Nulls come back as nil.
func (l *loader) deref(n ast.Node) ast.Node {
	for depth := 0; depth < 64 && n != nil; depth++ {
		switch x := n.(type) {
		case *ast.AnchorNode:
			if name := x.Name; name != nil {
				l.anchors[name.String()] = x.Value
			}
			n = x.Value
		case *ast.AliasNode:
			if x.Value == nil {
				return nil
			}
			l.aliases++
			if l.aliases > maxAliasExpansions {
				if l.aliases == maxAliasExpansions+1 {
					l.errorAt(l.pos(x), "", "write the values out or use fewer aliases", "more than %d alias expansions", maxAliasExpansions)
				}
				return nil
			}
			target, ok := l.anchors[x.Value.String()]
			if !ok {
				l.errorAt(l.pos(x), "", "define the anchor before using it", "unknown alias *%s", x.Value.String())
				return nil
			}
			n = target
		case *ast.TagNode:
			n = x.Value
		case *ast.MappingKeyNode:
			n = x.Value
		case *ast.NullNode:
			return nil
		case *ast.DocumentNode:
			n = x.Body
		default:
			return n
		}
	}
	return n
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case nil:
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return "a " + n.Type().String()
}

// mapping reads a mapping node and checks its keys against allowed.
// what names the mapping in messages ("step", "retry", ...).
func (l *loader) mapping(n ast.Node, path, what string, allowed []string) (map[string]*field, []*field, bool) {
	n = l.deref(n)
	var entries []*ast.MappingValueNode
	switch x := n.(type) {
	case *ast.MappingNode:
		entries = x.Values
	case *ast.MappingValueNode:
		entries = []*ast.MappingValueNode{x}
	default:
		l.errorAt(l.pos(n), path, "", "%s must be a mapping, not %s", what, nodeKind(n))
		return nil, nil, false
	}
	out := make(map[string]*field, len(entries))
	order := make([]*field, 0, len(entries))
	for _, e := range entries {
		kp := l.pos(e.Key)
		if _, merge := e.Key.(*ast.MergeKeyNode); merge {
			l.errorAt(kp, path, "write the keys out; merge keys are not supported", "merge key << is not allowed in %s", what)
			continue
		}
		key, ok := scalarText(l.deref(e.Key))
		if !ok {
			l.errorAt(kp, path, "", "keys of %s must be plain names", what)
			continue
		}
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
		f := &field{key: key, keyPos: kp, val: l.deref(e.Value)}
		f.valPos = kp
		if f.val != nil {
			f.valPos = l.pos(f.val)
		}
		out[key] = f
		order = append(order, f)
	}
	return out, order, true
}

func (l *loader) seq(n ast.Node, path, what string) ([]ast.Node, bool) {
	n = l.deref(n)
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		l.errorAt(l.pos(n), path, "", "%s must be a list, not %s", what, nodeKind(n))
		return nil, false
	}
	out := make([]ast.Node, len(s.Values))
	for i, v := range s.Values {
		if e, ok := v.(*ast.SequenceEntryNode); ok {
			v = e.Value
		}
		out[i] = l.deref(v)
	}
	return out, true
}

func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		if t := n.GetToken(); t != nil {
			return t.Value, true
		}
	}
	return "", false
}

func (l *loader) str(f *field, path, what string) (string, bool) {
	switch x := f.val.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	}
	l.errorAt(f.valPos, path, "", "%s must be a string, not %s", what, nodeKind(f.val))
	return "", false
}

func (l *loader) integer(f *field, path, what string) (int, bool) {
	if x, ok := f.val.(*ast.IntegerNode); ok {
		switch v := x.Value.(type) {
		case int64:
			if v >= math.MinInt32 && v <= math.MaxInt32 {
				return int(v), true
			}
		case uint64:
			if v <= math.MaxInt32 {
				return int(v), true
			}
		}
		l.errorAt(f.valPos, path, "", "%s is out of range", what)
		return 0, false
	}
	l.errorAt(f.valPos, path, "", "%s must be an integer, not %s", what, nodeKind(f.val))
	return 0, false
}

func (l *loader) number(f *field, path, what string) (float64, bool) {
	switch x := f.val.(type) {
	case *ast.IntegerNode:
		switch v := x.Value.(type) {
		case int64:
			return float64(v), true
		case uint64:
			return float64(v), true
		}
	case *ast.FloatNode:
		return x.Value, true
	}
	l.errorAt(f.valPos, path, "", "%s must be a number, not %s", what, nodeKind(f.val))
	return 0, false
}

const durationHint = "write a duration such as 500ms, 30s, 5m, 48h or 1h30m"

func (l *loader) duration(f *field, path, what string) (time.Duration, bool) {
	s, ok := scalarText(f.val)
	if _, isStr := f.val.(*ast.StringNode); !isStr || !ok {
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
func (l *loader) value(n ast.Node, path string) any {
	defer l.leave()
	if !l.enter(n, path) {
		return nil
	}
	n = l.deref(n)
	switch x := n.(type) {
	case nil:
		return nil
	case *ast.MappingNode, *ast.MappingValueNode:
		_, order, ok := l.mapping(x, path, "value", nil)
		if !ok {
			return nil
		}
		m := make(map[string]any, len(order))
		for _, f := range order {
			m[f.key] = l.value(f.val, join(path, f.key))
		}
		return m
	case *ast.SequenceNode:
		items, _ := l.seq(x, path, "value")
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = l.value(it, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	case *ast.StringNode:
		return x.Value
	case *ast.LiteralNode:
		if x.Value == nil {
			return ""
		}
		return x.Value.Value
	case *ast.IntegerNode:
		switch v := x.Value.(type) {
		case int64:
			return v
		case uint64:
			return v
		}
		return x.Value
	case *ast.FloatNode:
		return x.Value
	case *ast.BoolNode:
		return x.Value
	case *ast.InfinityNode, *ast.NanNode:
		l.errorAt(l.pos(n), path, "", "infinity and NaN cannot be represented in JSON")
		return nil
	}
	l.errorAt(l.pos(n), path, "", "unsupported YAML node %s", n.Type())
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
