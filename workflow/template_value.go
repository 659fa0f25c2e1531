package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/expr-lang/expr"
)

// CompileTemplate compiles a JSON-like value — maps, lists, strings with
// ${{ … }} expressions, numbers, booleans, null — whose expressions see only
// the given top-level names, each bound at evaluation to a value of any
// shape (EvalWith). Schedules (schedule.*) and triggers (message.*) use it
// for the inputs they build outside any process; the rules are those of
// workflow expressions (docs/language.md#expressions): a string that is
// exactly one expression takes the value's type, other strings interpolate.
func CompileTemplate(v any, names ...string) (*Template, error) {
	scope := exprScope{env: map[string]any{}}
	for _, n := range names {
		scope.env[n] = map[string]any{}
	}
	var errs []error
	t := templateOf(v, "", scope, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// CompileJSONTemplate is CompileTemplate of a JSON document (empty: null).
func CompileJSONTemplate(raw json.RawMessage, names ...string) (*Template, error) {
	var v any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
	}
	return CompileTemplate(v, names...)
}

// HasExpressions reports whether the template contains any expression.
func (t *Template) HasExpressions() bool { return t != nil && t.hasExprs }

// EvalWith evaluates a template compiled by CompileTemplate with the value
// of each name, and returns the result as JSON.
func (t *Template) EvalWith(vars map[string]any) (json.RawMessage, error) {
	v, err := t.Eval(vars)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func templateOf(v any, path string, scope exprScope, errs *[]error) *Template {
	at := func(err error) {
		if path != "" {
			err = fmt.Errorf("%s: %w", path, err)
		}
		*errs = append(*errs, err)
	}
	t := &Template{kind: tmplConst, constant: v}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.kind = tmplMap
		for _, k := range keys {
			sub := templateOf(x[k], join(path, k), scope, errs)
			t.keys = append(t.keys, k)
			t.vals = append(t.vals, sub)
			t.hasExprs = t.hasExprs || sub.hasExprs
		}
	case []any:
		t.kind = tmplList
		for i, it := range x {
			sub := templateOf(it, fmt.Sprintf("%s[%d]", path, i), scope, errs)
			t.vals = append(t.vals, sub)
			t.hasExprs = t.hasExprs || sub.hasExprs
		}
	case string:
		if !strings.Contains(x, exprOpen) {
			return t
		}
		parts, exact, err := splitTemplate(x)
		if err != nil {
			at(err)
			return t
		}
		for i := range parts {
			if parts[i].src == "" {
				continue
			}
			prog, err := compileExpr(parts[i].src, scope)
			if err != nil {
				at(fmt.Errorf("invalid expression %q: %s", parts[i].src, firstLine(err.Error())))
				return t
			}
			parts[i].prog = prog
		}
		t.hasExprs = true
		t.constant = nil
		if exact {
			t.kind, t.prog, t.src = tmplExpr, parts[0].prog, parts[0].src
		} else {
			t.kind, t.parts = tmplInterp, parts
		}
	}
	return t
}

// EvalString evaluates a string template strictly: every expression must
// yield a value (null fails), and the result must be a string. It is for
// identifiers built from data, where "order-" from a missing field would
// silently merge unrelated things.
func (t *Template) EvalString(env any) (string, error) {
	if t == nil {
		return "", fmt.Errorf("no template")
	}
	switch t.kind {
	case tmplInterp:
		for _, p := range t.parts {
			if p.prog == nil {
				continue
			}
			v, err := expr.Run(p.prog, env)
			if err != nil {
				return "", fmt.Errorf("%s: expression %q: %w", t.Pos, p.src, err)
			}
			if v == nil {
				return "", fmt.Errorf("expression %q yields null", p.src)
			}
		}
	case tmplExpr:
	case tmplConst:
		if s, ok := t.constant.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("not a string")
	default:
		return "", fmt.Errorf("must be a string, not a map or a list")
	}
	v, err := t.Eval(env)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		if v == nil {
			return "", fmt.Errorf("expression %q yields null", t.src)
		}
		if _, isNum := v.(float64); isNum {
			return stringify(v), nil
		}
		if _, isInt := v.(int); isInt {
			return stringify(v), nil
		}
		return "", fmt.Errorf("must yield a string, got %T", v)
	}
	return s, nil
}
