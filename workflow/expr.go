package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	exprast "github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Expression delimiters.
const (
	exprOpen  = "${{"
	exprClose = "}}"
)

// Names of the expression environment.
const (
	envInput   = "input"
	envSteps   = "steps"
	envProcess = "process"
	envItem    = "item"
	envIndex   = "index"
)

// stepFields are the fields of steps.<id> usable in expressions.
var stepFields = []string{"output", "status"}

// processFields are the fields of process usable in expressions.
var processFields = []string{"id", "name", "version"}

type tmplKind uint8

const (
	tmplConst  tmplKind = iota // a value with no expression
	tmplExpr                   // a string that is exactly one expression
	tmplInterp                 // a string mixing text and expressions
	tmplMap
	tmplList
)

// Template is a value from a definition that may contain expressions. It is
// compiled once at load and evaluated many times.
type Template struct {
	kind     tmplKind
	constant any
	prog     *vm.Program
	src      string
	parts    []tmplPart
	keys     []string
	vals     []*Template
	Pos      Position
	hasExprs bool
	// outputs are the indexes of the steps whose output the template reads
	outputs []int
}

// collectOutputs records which step outputs a template reads, so that the
// decider decodes only those.
func (t *Template) collectOutputs(index map[string]int, refsOf func(src string) []ref) {
	if t == nil || !t.hasExprs {
		return
	}
	seen := map[int]bool{}
	var walk func(x *Template)
	add := func(src string) {
		for _, r := range refsOf(src) {
			if k, ok := index[r.step]; ok && r.field != "status" && !seen[k] {
				seen[k] = true
				t.outputs = append(t.outputs, k)
			}
		}
	}
	walk = func(x *Template) {
		if x == nil {
			return
		}
		if x.src != "" {
			add(x.src)
		}
		for _, p := range x.parts {
			if p.src != "" {
				add(p.src)
			}
		}
		for _, v := range x.vals {
			walk(v)
		}
	}
	walk(t)
	sortInts(t.outputs)
}

type tmplPart struct {
	text string
	prog *vm.Program
	src  string
}

// ref is a reference from an expression to steps.<step>[.<field>].
type ref struct {
	step  string
	field string
	pos   Position
}

// exprScope is what an expression may refer to where it stands.
type exprScope struct {
	item bool // inside a for_each step
	// env, when set, replaces the workflow environment: the expressions
	// of triggers and schedules see other names (CompileTemplate).
	env map[string]any
}

// Env is the environment an expression is evaluated in.
type Env struct {
	Input   any            `expr:"input"`
	Steps   map[string]any `expr:"steps"`
	Process map[string]any `expr:"process"`
}

// ItemEnv is the environment inside a for_each step.
type ItemEnv struct {
	Input   any            `expr:"input"`
	Steps   map[string]any `expr:"steps"`
	Process map[string]any `expr:"process"`
	Item    any            `expr:"item"`
	Index   int            `expr:"index"`
}

func compileExpr(src string, scope exprScope) (*vm.Program, error) {
	prog, _, _, err := new(exprCompiler).compile(src, scope)
	return prog, err
}

// exprOptions are the options every expression is compiled with.
func exprOptions(scope exprScope) []expr.Option {
	var env any = Env{}
	if scope.item {
		env = ItemEnv{}
	}
	if scope.env != nil {
		env = scope.env
	}
	return []expr.Option{
		expr.Env(env),
		expr.DisableBuiltin("now"), // time is an input: no clock in expressions
		expr.Timezone("UTC"),
		expr.MaxNodes(10000),
	}
}

// exprCompiler compiles the expressions of one definition. It does what
// expr.Compile does, step for step, but with one configuration per scope
// for the whole definition: expr.Compile builds a new configuration, with a
// table of every builtin, for each expression (about 35 KB each, most of
// the cost of loading a large definition). Not safe for concurrent use.
type exprCompiler struct {
	cfg [2]*conf.Config // by scope.item
	// done holds what each expression compiled to, by scope and source: a
	// definition repeats expressions (steps.payment.output.id in every
	// step), and a program is immutable, so one serves every use.
	done [2]map[string]compiled
}

type compiled struct {
	prog     *vm.Program
	refs     []ref
	problems []string
}

func (c *exprCompiler) config(scope exprScope) *conf.Config {
	i := 0
	if scope.item {
		i = 1
	}
	if scope.env != nil || c.cfg[i] == nil {
		cfg := conf.CreateNew()
		for _, op := range exprOptions(scope) {
			op(cfg)
		}
		for name := range cfg.Disabled {
			delete(cfg.Builtins, name)
		}
		cfg.Check()
		if scope.env != nil {
			return cfg // an environment of its own: not shared
		}
		c.cfg[i] = cfg
	}
	return c.cfg[i]
}

// compile compiles an expression and lists its steps.<id>.<field>
// references (and the uses it cannot check, as exprRefs does).
func (c *exprCompiler) compile(src string, scope exprScope) (*vm.Program, []ref, []string, error) {
	if scope.env != nil {
		return c.compileNew(src, scope)
	}
	i := 0
	if scope.item {
		i = 1
	}
	if x, ok := c.done[i][src]; ok {
		return x.prog, x.refs, x.problems, nil
	}
	prog, refs, problems, err := c.compileNew(src, scope)
	if err == nil {
		if c.done[i] == nil {
			c.done[i] = map[string]compiled{}
		}
		c.done[i][src] = compiled{prog, refs, problems}
	}
	return prog, refs, problems, err
}

func (c *exprCompiler) compileNew(src string, scope exprScope) (*vm.Program, []ref, []string, error) {
	cfg := c.config(scope)
	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	v := &refVisitor{}
	exprast.Walk(&tree.Node, v)
	if _, err := new(checker.Checker).PatchAndCheck(tree, cfg); err != nil {
		return nil, nil, nil, err
	}
	if cfg.Optimize {
		if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				return nil, nil, nil, fe.Bind(tree.Source)
			}
			return nil, nil, nil, err
		}
	}
	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return prog, dedupRefs(v.refs), v.problems, nil
}

// exprRefs lists the steps.<id>.<field> references of an expression and
// reports the uses it cannot check (e.g. steps[someVariable]).
func exprRefs(src string) (refs []ref, problems []string) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, nil // the compile error is reported elsewhere
	}
	v := &refVisitor{}
	exprast.Walk(&tree.Node, v)
	return dedupRefs(v.refs), v.problems
}

type refVisitor struct {
	refs     []ref
	problems []string
}

func identName(n exprast.Node) (string, bool) {
	id, ok := n.(*exprast.IdentifierNode)
	if !ok {
		return "", false
	}
	return id.Value, true
}

func (v *refVisitor) Visit(node *exprast.Node) {
	m, ok := (*node).(*exprast.MemberNode)
	if !ok {
		return
	}
	// steps.<id>.<field>
	if inner, ok := m.Node.(*exprast.MemberNode); ok {
		if name, ok := identName(inner.Node); ok && name == envSteps {
			if step, ok := inner.Property.(*exprast.StringNode); ok {
				if field, ok := m.Property.(*exprast.StringNode); ok {
					v.refs = append(v.refs, ref{step: step.Value, field: field.Value})
				} else {
					v.problems = append(v.problems, fmt.Sprintf("the field of steps.%s must be written literally (steps.%s.output or steps.%s.status)", step.Value, step.Value, step.Value))
				}
			}
		}
	}
	name, ok := identName(m.Node)
	if !ok {
		return
	}
	switch name {
	case envSteps:
		step, ok := m.Property.(*exprast.StringNode)
		if !ok {
			v.problems = append(v.problems, "steps must be indexed by a literal step id, as in steps.payment.output")
			return
		}
		v.refs = append(v.refs, ref{step: step.Value})
	case envProcess:
		field, ok := m.Property.(*exprast.StringNode)
		if !ok || !contains(processFields, field.Value) {
			v.problems = append(v.problems, fmt.Sprintf("process has only the fields %s", strings.Join(processFields, ", ")))
		}
	}
}

// dedupRefs drops repeated references, and bare steps.<id> references of a
// step that is also referenced with a field.
func dedupRefs(refs []ref) []ref {
	withField := map[string]bool{}
	for _, r := range refs {
		if r.field != "" {
			withField[r.step] = true
		}
	}
	out := refs[:0]
	seen := map[string]bool{}
	for _, r := range refs {
		if r.field == "" && withField[r.step] {
			continue
		}
		k := r.step + "\x00" + r.field
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// splitTemplate splits a string into text and expression sources.
// exact is true when the string is exactly one expression.
func splitTemplate(s string) (parts []tmplPart, exact bool, err error) {
	rest := s
	for {
		i := strings.Index(rest, exprOpen)
		if i < 0 {
			if rest != "" {
				parts = append(parts, tmplPart{text: rest})
			}
			break
		}
		if i > 0 {
			parts = append(parts, tmplPart{text: rest[:i]})
		}
		rest = rest[i+len(exprOpen):]
		j := strings.Index(rest, exprClose)
		if j < 0 {
			return nil, false, fmt.Errorf("unterminated expression: %q has no closing }}", s)
		}
		src := strings.TrimSpace(rest[:j])
		if src == "" {
			return nil, false, fmt.Errorf("empty expression in %q", s)
		}
		parts = append(parts, tmplPart{src: src})
		rest = rest[j+len(exprClose):]
	}
	exact = len(parts) == 1 && parts[0].src != ""
	return parts, exact, nil
}

// Eval evaluates a template against an environment. The result is made of
// JSON-compatible values.
func (t *Template) Eval(env any) (any, error) {
	if t == nil {
		return nil, nil
	}
	switch t.kind {
	case tmplConst:
		return t.constant, nil
	case tmplExpr:
		v, err := expr.Run(t.prog, env)
		if err != nil {
			return nil, fmt.Errorf("%s: expression %q: %w", t.Pos, t.src, err)
		}
		return normalize(v), nil
	case tmplInterp:
		var b strings.Builder
		for _, p := range t.parts {
			if p.prog == nil {
				b.WriteString(p.text)
				continue
			}
			v, err := expr.Run(p.prog, env)
			if err != nil {
				return nil, fmt.Errorf("%s: expression %q: %w", t.Pos, p.src, err)
			}
			b.WriteString(stringify(v))
		}
		return b.String(), nil
	case tmplMap:
		if !t.hasExprs {
			return t.constant, nil
		}
		m := make(map[string]any, len(t.keys))
		for i, k := range t.keys {
			v, err := t.vals[i].Eval(env)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case tmplList:
		if !t.hasExprs {
			return t.constant, nil
		}
		l := make([]any, len(t.vals))
		for i, e := range t.vals {
			v, err := e.Eval(env)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown template kind %d", t.kind)
}

// normalize turns expression results into JSON-friendly values.
func normalize(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case int:
		return x
	}
	return v
}

func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
