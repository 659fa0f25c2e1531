package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	goccyyaml "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// Keys of each mapping of the language.
var (
	workflowKeys   = []string{"name", "version", "description", "input", "defaults", "on_failure", "timeout", "steps", "output", "triggers"}
	defaultsKeys   = []string{"retry", "timeout", keyScheduleTimeout, keyHeartbeatTimeout}
	retryKeys      = []string{"max_attempts", "initial_interval", "backoff_coefficient", "max_interval", "jitter", "non_retryable"}
	stepKeys       = []string{"id", "description", "service", "command", "input", "needs", "retry", "timeout", keyScheduleTimeout, keyHeartbeatTimeout, "deadline", "compensate", "sleep", "until", "wait", "when", "for_each", "max_parallel", "on_failure", "call"}
	compensateKeys = []string{"service", "command", "input", "retry", "timeout", keyScheduleTimeout, keyHeartbeatTimeout}
	waitKeys       = []string{"signal", "timeout"}
)

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	signalPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
)

// LoadFile reads and loads a definition file.
func LoadFile(path string) (*Definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read definition: %w", err)
	}
	return Load(path, data)
}

// Load parses and validates a definition. file names the source in error
// positions. On failure the error is a ValidationErrors holding every
// problem of the file, in file order; it wraps ErrInvalidDefinition.
func Load(file string, data []byte) (*Definition, error) {
	if len(data) > MaxDefinitionBytes {
		err := &LimitError{Limit: "max_definition_bytes", What: "the definition", Size: len(data), Max: MaxDefinitionBytes}
		return nil, ValidationErrors{{Pos: Position{File: file, Line: 1, Col: 1}, Message: err.Error(), Hint: "split it into several workflows (call one from another)"}}
	}
	l := &loader{file: file, exprRefs: map[string][]ref{}}
	def := l.load(data)
	if len(l.errs) == 0 && def != nil {
		refsOf := func(src string) []ref { return l.exprRefs[src] }
		def.Output.collectOutputs(def.index, refsOf)
		for _, st := range def.Steps {
			for _, t := range []*Template{st.Input, st.When, st.ForEach, st.Until} {
				t.collectOutputs(def.index, refsOf)
			}
			if st.Compensate != nil {
				st.Compensate.Input.collectOutputs(def.index, refsOf)
			}
			if st.Call != nil {
				st.Call.Input.collectOutputs(def.index, refsOf) // load_call.go
			}
		}
	}
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i].Pos, l.errs[j].Pos
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, l.errs
	}
	return def, nil
}

type loader struct {
	file  string
	errs  ValidationErrors
	refs  []ownedRef
	steps []*rawStep
	exprs exprCompiler
	// exprRefs are the references of each expression compiled, by source.
	exprRefs map[string][]ref
	aliases  int  // alias expansions so far
	depth    int  // nesting of value/template
	tooDeep  bool // reported once
}

// ownedRef is an expression reference with where it stands.
type ownedRef struct {
	ref
	owner    int    // index of the step, -1 for the workflow output
	where    string // "input", "when", "compensate.input", ...
	selfOK   bool   // the step may refer to itself (compensation)
	exprText string
}

type rawStep struct {
	step     *Step
	idPos    Position
	needsPos []Position
	compPos  Position
}

func (l *loader) load(data []byte) *Definition {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		doc := new(yaml.Node)
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p, msg := syntaxError(data, err)
			p.File = l.file
			l.errorAt(p, "", "check indentation, quoting and that every key is followed by ': '", "YAML syntax error: %s", msg)
			return nil
		}
		if len(doc.Content) > 0 {
			docs = append(docs, doc.Content[0])
		}
	}
	if len(docs) == 0 {
		l.errorAt(Position{File: l.file, Line: 1, Col: 1}, "", "start with name: and steps:", "the file is empty")
		return nil
	}
	if len(docs) > 1 {
		l.errorAt(l.pos(docs[1]), "", "put each workflow in its own file", "only one YAML document per file is allowed")
	}
	return l.definition(docs[0])
}

// syntaxError locates a YAML syntax error. The decoder says only the line;
// goccy/go-yaml's parser, run on the failing file alone, names the line and
// column of the offending token, and its message says more.
func syntaxError(data []byte, err error) (Position, string) {
	p := Position{Line: 1, Col: 1}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0])
	}
	if _, gerr := goccyparser.ParseBytes(data, 0); gerr != nil {
		var yerr goccyyaml.Error
		if errors.As(gerr, &yerr) {
			if t := yerr.GetToken(); t != nil && t.Position != nil {
				return Position{Line: t.Position.Line, Col: t.Position.Column}, yerr.GetMessage()
			}
		}
	}
	return p, msg
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

func (l *loader) definition(n *yaml.Node) *Definition {
	fields, _, ok := l.mapping(n, "", "the workflow", workflowKeys)
	if !ok {
		return nil
	}
	def := &Definition{File: l.file, Version: 1, OnFailure: OnFailureFail, Retry: DefaultRetry, index: map[string]int{}}
	top := l.pos(n)

	if f := fields["name"]; f == nil || f.val == nil {
		l.errorAt(top, "name", "add name: my-workflow", "the workflow has no name")
	} else if s, ok := l.str(f, "name", "name"); ok {
		if !namePattern.MatchString(s) {
			l.errorAt(f.valPos, "name", "use letters, digits, '-', '_' and '.'", "invalid workflow name %q", s)
		}
		def.Name = s
	}
	if f := fields["version"]; f != nil && f.val != nil {
		if v, ok := l.integer(f, "version", "version"); ok {
			if v < 1 {
				l.errorAt(f.valPos, "version", "versions start at 1", "version must be at least 1")
			}
			def.Version = v
		}
	}
	if f := fields["description"]; f != nil && f.val != nil {
		def.Description, _ = l.str(f, "description", "description")
	}
	if f := fields["input"]; f != nil && f.val != nil {
		l.inputSchema(def, f)
	}
	if f := fields["defaults"]; f != nil && f.val != nil {
		if dfields, _, ok := l.mapping(f.val, "defaults", "defaults", defaultsKeys); ok {
			if rf := dfields["retry"]; rf != nil && rf.val != nil {
				def.Retry = l.retry(rf.val, "defaults.retry", def.Retry)
			}
			if tf := dfields["timeout"]; tf != nil && tf.val != nil {
				def.Timeout, _ = l.duration(tf, "defaults.timeout", "defaults.timeout")
			}
			l.progressTimeouts(dfields, "defaults", def.Timeout, &def.ScheduleTimeout, &def.HeartbeatTimeout)
		}
	}
	if f := fields["on_failure"]; f != nil && f.val != nil {
		def.OnFailure = l.policy(f, "on_failure", false)
	}
	if f := fields["timeout"]; f != nil && f.val != nil {
		def.WorkflowTimeout, _ = l.duration(f, "timeout", "timeout")
	}
	if f := fields["steps"]; f == nil || f.val == nil {
		l.errorAt(top, "steps", "add a steps: list", "the workflow has no steps")
	} else if items, ok := l.seq(f.val, "steps", "steps"); ok {
		if len(items) == 0 {
			l.errorAt(f.keyPos, "steps", "add at least one step", "the workflow has no steps")
		}
		if len(items) > MaxSteps {
			err := &LimitError{Limit: "max_steps", What: "the number of steps", Size: len(items), Max: MaxSteps}
			l.errorAt(f.keyPos, "steps", "split the workflow into several (call one from another)", "%v", err)
			items = nil
		}
		for i, it := range items {
			l.step(def, it, i)
			// The step's nodes are read: let them go (a definition of
			// 10,000 steps holds tens of MB of nodes). Aliases elsewhere
			// keep what they point to.
			if f.val.Anchor == "" {
				items[i] = nil
				f.val.Content[i] = nil
			}
		}
	}
	if f := fields["output"]; f != nil && f.val != nil {
		def.Output = l.template(f.val, "output", exprScope{}, -1, "output", false)
	}
	if f := fields["triggers"]; f != nil && f.val != nil {
		l.triggers(def, f)
	}
	l.validate(def)
	return def
}

func (l *loader) inputSchema(def *Definition, f *field) {
	v := l.value(f.val, "input")
	raw, err := json.Marshal(v)
	if err != nil {
		l.errorAt(f.valPos, "input", "", "input schema cannot be turned into JSON: %v", err)
		return
	}
	doc, err := jsonschema.UnmarshalJSON(bytesReader(raw))
	if err != nil {
		l.errorAt(f.valPos, "input", "", "input schema cannot be read: %v", err)
		return
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	const url = "pulsaga:///input.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		l.errorAt(f.valPos, "input", "", "input schema: %v", err)
		return
	}
	sch, err := c.Compile(url)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		l.errorAt(f.valPos, "input", "input must be a valid JSON Schema (draft 2020-12)", "invalid input schema: %s", msg)
		return
	}
	def.InputSchema = sch
	def.InputSchemaJSON = raw
}

func (l *loader) policy(f *field, path string, step bool) FailurePolicy {
	s, ok := l.str(f, path, "on_failure")
	if !ok {
		return ""
	}
	allowed := []string{"compensate", "fail", "pause"}
	if step {
		allowed = append(allowed, "continue")
	}
	if !contains(allowed, s) {
		hint := "use one of " + strings.Join(allowed, ", ")
		if s == "continue" && !step {
			hint = "continue is only valid on a step; use " + strings.Join(allowed, ", ")
		} else if sg := suggest(s, allowed); sg != "" {
			hint = "did you mean " + sg + "?"
		}
		l.errorAt(f.valPos, path, hint, "unknown on_failure policy %q", s)
		return ""
	}
	return FailurePolicy(s)
}

func (l *loader) retry(n *yaml.Node, path string, base RetryPolicy) RetryPolicy {
	fields, _, ok := l.mapping(n, path, "retry", retryKeys)
	if !ok {
		return base
	}
	p := base
	p.NonRetryable = append([]string(nil), base.NonRetryable...)
	if f := fields["max_attempts"]; f != nil && f.val != nil {
		if v, ok := l.integer(f, join(path, f.key), "max_attempts"); ok {
			if v < 1 {
				l.errorAt(f.valPos, join(path, f.key), "1 means no retry", "max_attempts must be at least 1")
			} else {
				p.MaxAttempts = v
			}
		}
	}
	if f := fields["initial_interval"]; f != nil && f.val != nil {
		if d, ok := l.duration(f, join(path, f.key), "initial_interval"); ok {
			p.InitialInterval = d
		}
	}
	if f := fields["backoff_coefficient"]; f != nil && f.val != nil {
		if v, ok := l.number(f, join(path, f.key), "backoff_coefficient"); ok {
			if v < 1 || v > 100 {
				l.errorAt(f.valPos, join(path, f.key), "use 1 for a constant interval, 2 to double it each time", "backoff_coefficient must be between 1 and 100")
			} else {
				p.BackoffCoefficient = v
			}
		}
	}
	if f := fields["max_interval"]; f != nil && f.val != nil {
		if d, ok := l.duration(f, join(path, f.key), "max_interval"); ok {
			p.MaxInterval = d
		}
	}
	if f := fields["jitter"]; f != nil && f.val != nil {
		if v, ok := l.number(f, join(path, f.key), "jitter"); ok {
			if v < 0 || v > 1 {
				l.errorAt(f.valPos, join(path, f.key), "0.2 means ±20%", "jitter must be between 0 and 1")
			} else {
				p.Jitter = v
			}
		}
	}
	if f := fields["non_retryable"]; f != nil {
		p.NonRetryable = nil
		if f.val != nil {
			p.NonRetryable = l.stringList(f, join(path, f.key), "non_retryable")
		}
		if len(p.NonRetryable) == 0 {
			p.NonRetryable = nil
		}
	}
	if p.MaxInterval < p.InitialInterval {
		if f := fields["max_interval"]; f != nil {
			l.errorAt(f.valPos, join(path, "max_interval"), "raise max_interval or lower initial_interval", "max_interval %s is shorter than initial_interval %s", p.MaxInterval, p.InitialInterval)
		} else if f := fields["initial_interval"]; f != nil {
			l.errorAt(f.valPos, join(path, "initial_interval"), "set max_interval too", "initial_interval %s is longer than max_interval %s", p.InitialInterval, p.MaxInterval)
		}
	}
	return p
}

func (l *loader) stringList(f *field, path, what string) []string {
	if isString(f.val) {
		s, _ := l.str(f, path, what)
		return []string{s}
	}
	items, ok := l.seq(f.val, path, what)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		if !isString(it) {
			l.errorAt(l.pos(it), fmt.Sprintf("%s[%d]", path, i), "", "%s entries must be strings, not %s", what, nodeKind(it))
			continue
		}
		out = append(out, it.Value)
	}
	return out
}

func (l *loader) step(def *Definition, n *yaml.Node, i int) {
	path := fmt.Sprintf("steps[%d]", i)
	fields, _, ok := l.mapping(n, path, "a step", stepKeys)
	if !ok {
		return
	}
	st := &Step{Pos: l.pos(n), index: len(def.Steps), Retry: def.Retry, Timeout: def.Timeout, OnFailure: def.OnFailure,
		ScheduleTimeout: def.ScheduleTimeout, HeartbeatTimeout: def.HeartbeatTimeout}
	rs := &rawStep{step: st, idPos: st.Pos}

	if f := fields["id"]; f == nil || f.val == nil {
		l.errorAt(st.Pos, path, "add id: <name> to the step", "step has no id")
		st.ID = fmt.Sprintf("#%d", i+1)
	} else if s, ok := l.str(f, join(path, "id"), "id"); ok {
		rs.idPos = f.valPos
		st.ID = s
		if !idPattern.MatchString(s) {
			l.errorAt(f.valPos, join(path, "id"), "use letters, digits and _ (ids appear in expressions as steps.<id>)", "invalid step id %q", s)
		}
		if prev, dup := def.index[s]; dup {
			l.errorAt(f.valPos, join(path, "id"), "give each step its own id", "duplicate step id %q (first used at line %d)", s, l.steps[prev].idPos.Line)
			st.ID = fmt.Sprintf("%s#%d", s, i+1)
		}
	} else {
		st.ID = fmt.Sprintf("#%d", i+1)
	}
	path = "steps." + st.ID
	def.index[st.ID] = len(def.Steps)
	def.Steps = append(def.Steps, st)
	l.steps = append(l.steps, rs)

	if f := fields["description"]; f != nil && f.val != nil {
		st.Description, _ = l.str(f, join(path, "description"), "description")
	}

	// What the step does: exactly one of command, sleep, until, wait.
	var kinds []string
	for _, k := range []string{"command", "sleep", "until", "wait", "call"} {
		if fields[k] != nil {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		l.errorAt(st.Pos, path, "give it command: (with service:), sleep:, until:, wait: or call:", "step %q has nothing to do", st.ID)
	case 1:
	default:
		l.errorAt(fields[kinds[1]].keyPos, join(path, kinds[1]), "split it into two steps", "step %q has both %s and %s; a step does one thing", st.ID, kinds[0], kinds[1])
	}
	if len(kinds) > 0 {
		switch kinds[0] {
		case "command":
			st.Kind = KindTask
		case "sleep":
			st.Kind = KindSleep
		case "until":
			st.Kind = KindUntil
		case "wait":
			st.Kind = KindWait
		case "call":
			st.Kind = KindCall
		}
	}
	task := st.Kind == KindTask
	call := st.Kind == KindCall
	// Keys that only make sense on command steps.
	for _, k := range []string{"service", "input", "retry", "timeout", keyScheduleTimeout, keyHeartbeatTimeout, "deadline", "compensate", "for_each", "max_parallel"} {
		if f := fields[k]; f != nil && !task && st.Kind != "" && !(call && callAllows(k)) {
			hint := "only steps with a command can have " + k
			if call {
				hint = callHint(k)
			}
			if k == "timeout" && st.Kind == KindWait {
				hint = "write wait: {signal: ..., timeout: ...}"
			}
			l.errorAt(f.keyPos, join(path, k), hint, "%s is not allowed on a %s step", k, st.Kind)
		}
	}
	scope := exprScope{}
	if fields["for_each"] != nil && (task || call) {
		scope.item = true
	}

	if task {
		if f := fields["command"]; f.val == nil {
			l.errorAt(f.keyPos, join(path, "command"), "name the command, e.g. command: BookHotel", "command is empty")
		} else {
			st.Command, _ = l.str(f, join(path, "command"), "command")
		}
		if f := fields["service"]; f == nil || f.val == nil {
			l.errorAt(st.Pos, join(path, "service"), "add service: <job queue> next to command", "step %q has a command but no service", st.ID)
		} else if s, ok := l.str(f, join(path, "service"), "service"); ok {
			if !namePattern.MatchString(s) {
				l.errorAt(f.valPos, join(path, "service"), "use letters, digits, '-', '_' and '.'", "invalid service name %q", s)
			}
			st.Service = s
		}
		if f := fields["input"]; f != nil && f.val != nil {
			st.Input = l.template(f.val, join(path, "input"), scope, st.index, "input", false)
		}
	}
	if call {
		l.call(def, st, fields["call"], join(path, "call"), scope) // load_call.go
	}
	if task || call {
		if f := fields["retry"]; f != nil && f.val != nil {
			st.Retry = l.retry(f.val, join(path, "retry"), def.Retry)
		}
		if f := fields["timeout"]; f != nil && f.val != nil {
			st.Timeout, _ = l.duration(f, join(path, "timeout"), "timeout")
		}
		l.progressTimeouts(fields, path, st.Timeout, &st.ScheduleTimeout, &st.HeartbeatTimeout)
		if f := fields["deadline"]; f != nil && f.val != nil {
			st.Deadline, _ = l.duration(f, join(path, "deadline"), "deadline")
		}
		if f := fields["for_each"]; f != nil {
			if f.val == nil {
				l.errorAt(f.keyPos, join(path, "for_each"), "give an expression that yields a list, e.g. ${{ input.items }}", "for_each is empty")
			} else {
				st.ForEach = l.template(f.val, join(path, "for_each"), exprScope{}, st.index, "for_each", false)
				if st.ForEach != nil && st.ForEach.kind != tmplExpr && st.ForEach.kind != tmplList {
					l.errorAt(f.valPos, join(path, "for_each"), "write for_each: ${{ input.items }} or a list", "for_each must be one expression or a list")
				}
				if st.ForEach != nil && st.ForEach.kind == tmplList && len(st.ForEach.vals) > MaxForEachItems {
					err := &LimitError{Limit: "max_for_each_items", What: "the for_each list", Size: len(st.ForEach.vals), Max: MaxForEachItems}
					l.errorAt(f.valPos, join(path, "for_each"), "start a process per batch of items", "%v", err)
				}
			}
		}
		if f := fields["max_parallel"]; f != nil && f.val != nil {
			if v, ok := l.integer(f, join(path, "max_parallel"), "max_parallel"); ok {
				if v < 0 {
					l.errorAt(f.valPos, join(path, "max_parallel"), "0 means no limit", "max_parallel must not be negative")
				}
				st.MaxParallel = v
			}
			if fields["for_each"] == nil {
				l.errorAt(f.keyPos, join(path, "max_parallel"), "add for_each or remove max_parallel", "max_parallel needs for_each")
			}
		}
	}
	if task {
		if f := fields["compensate"]; f != nil {
			rs.compPos = f.keyPos
			st.Compensate = l.compensation(def, st, f, join(path, "compensate"), scope)
		}
	}
	if f := fields["sleep"]; f != nil && st.Kind == KindSleep {
		if f.val == nil {
			l.errorAt(f.keyPos, join(path, "sleep"), durationHint, "sleep is empty")
		} else {
			st.Sleep, _ = l.duration(f, join(path, "sleep"), "sleep")
		}
	}
	if f := fields["until"]; f != nil && st.Kind == KindUntil {
		if f.val == nil {
			l.errorAt(f.keyPos, join(path, "until"), "give a time: an RFC 3339 timestamp or an expression", "until is empty")
		} else {
			st.Until = l.template(f.val, join(path, "until"), exprScope{}, st.index, "until", false)
			if st.Until != nil {
				switch st.Until.kind {
				case tmplExpr:
				case tmplConst:
					s, ok := st.Until.constant.(string)
					if _, err := time.Parse(time.RFC3339, s); !ok || err != nil {
						l.errorAt(f.valPos, join(path, "until"), "write an RFC 3339 time such as 2030-01-01T00:00:00Z, or ${{ expression }}", "until is not a time")
					}
				default:
					l.errorAt(f.valPos, join(path, "until"), "write until: ${{ expression }}", "until must be one expression or an RFC 3339 time")
				}
			}
		}
	}
	if f := fields["wait"]; f != nil && st.Kind == KindWait {
		st.Wait = l.wait(f, join(path, "wait"))
	}
	if f := fields["needs"]; f != nil && f.val != nil {
		var nodes []*yaml.Node
		if isString(f.val) {
			nodes = []*yaml.Node{f.val}
		} else if items, ok := l.seq(f.val, join(path, "needs"), "needs"); ok {
			nodes = items
		}
		seen := make(map[string]bool, len(nodes))
		for j, it := range nodes {
			if !isString(it) {
				l.errorAt(l.pos(it), fmt.Sprintf("%s.needs[%d]", path, j), "write needs: [step_a, step_b]", "needs entries must be step ids, not %s", nodeKind(it))
				continue
			}
			if seen[it.Value] {
				l.errorAt(l.pos(it), fmt.Sprintf("%s.needs[%d]", path, j), "remove the repetition", "step %q needs %q twice", st.ID, it.Value)
				continue
			}
			seen[it.Value] = true
			st.Needs = append(st.Needs, it.Value)
			rs.needsPos = append(rs.needsPos, l.pos(it))
		}
	}
	if f := fields["when"]; f != nil {
		if f.val == nil {
			l.errorAt(f.keyPos, join(path, "when"), "write when: ${{ condition }}", "when is empty")
		} else {
			st.When = l.template(f.val, join(path, "when"), exprScope{}, st.index, "when", false)
			if st.When != nil && st.When.kind != tmplExpr {
				if _, isBool := st.When.constant.(bool); st.When.kind != tmplConst || !isBool {
					l.errorAt(f.valPos, join(path, "when"), "write when: ${{ condition }}", "when must be exactly one expression")
				}
			}
		}
	}
	if f := fields["on_failure"]; f != nil && f.val != nil {
		if p := l.policy(f, join(path, "on_failure"), true); p != "" {
			st.OnFailure = p
		}
	}
}

func (l *loader) compensation(def *Definition, st *Step, f *field, path string, scope exprScope) *Compensation {
	c := &Compensation{Service: st.Service, Retry: def.Retry, Timeout: def.Timeout, Pos: f.keyPos,
		ScheduleTimeout: def.ScheduleTimeout, HeartbeatTimeout: def.HeartbeatTimeout}
	if f.val == nil {
		l.errorAt(f.keyPos, path, "write compensate: {command: Undo...}", "compensate is empty")
		return nil
	}
	fields, _, ok := l.mapping(f.val, path, "compensate", compensateKeys)
	if !ok {
		return nil
	}
	if cf := fields["command"]; cf == nil || cf.val == nil {
		l.errorAt(f.valPos, join(path, "command"), "name the command that undoes the step, e.g. command: CancelHotel", "compensate has no command")
	} else {
		c.Command, _ = l.str(cf, join(path, "command"), "command")
	}
	if cf := fields["service"]; cf != nil && cf.val != nil {
		if s, ok := l.str(cf, join(path, "service"), "service"); ok {
			c.Service = s
		}
	}
	if cf := fields["input"]; cf != nil && cf.val != nil {
		c.Input = l.template(cf.val, join(path, "input"), scope, st.index, "compensate.input", true)
	}
	if cf := fields["retry"]; cf != nil && cf.val != nil {
		c.Retry = l.retry(cf.val, join(path, "retry"), def.Retry)
	}
	if cf := fields["timeout"]; cf != nil && cf.val != nil {
		c.Timeout, _ = l.duration(cf, join(path, "timeout"), "timeout")
	}
	l.progressTimeouts(fields, path, c.Timeout, &c.ScheduleTimeout, &c.HeartbeatTimeout)
	return c
}

func (l *loader) wait(f *field, path string) *Wait {
	w := &Wait{}
	if f.val == nil {
		l.errorAt(f.keyPos, path, "write wait: {signal: approved, timeout: 48h}", "wait is empty")
		return w
	}
	fields, _, ok := l.mapping(f.val, path, "wait", waitKeys)
	if !ok {
		return w
	}
	if sf := fields["signal"]; sf == nil || sf.val == nil {
		l.errorAt(f.valPos, join(path, "signal"), "name the signal, e.g. signal: approved", "wait has no signal")
	} else if s, ok := l.str(sf, join(path, "signal"), "signal"); ok {
		if !signalPattern.MatchString(s) {
			l.errorAt(sf.valPos, join(path, "signal"), "use letters, digits, '-', '_', '.' and ':'", "invalid signal name %q", s)
		}
		w.Signal = s
	}
	if tf := fields["timeout"]; tf != nil && tf.val != nil {
		w.Timeout, _ = l.duration(tf, join(path, "timeout"), "wait.timeout")
	}
	return w
}

// template compiles a value that may contain expressions.
func (l *loader) template(n *yaml.Node, path string, scope exprScope, owner int, where string, selfOK bool) *Template {
	defer l.leave()
	if !l.enter(n, path) {
		return nil
	}
	n = l.deref(n)
	t := &Template{Pos: l.pos(n)}
	switch {
	case n == nil:
		t.kind = tmplConst
		return t
	case n.Kind == yaml.MappingNode:
		_, order, ok := l.mapping(n, path, "value", nil)
		if !ok {
			return nil
		}
		t.kind = tmplMap
		for _, f := range order {
			v := l.template(f.val, join(path, f.key), scope, owner, where, selfOK)
			if v == nil {
				continue
			}
			t.keys = append(t.keys, f.key)
			t.vals = append(t.vals, v)
			t.hasExprs = t.hasExprs || v.hasExprs
		}
		if !t.hasExprs {
			m := make(map[string]any, len(t.keys))
			for i, k := range t.keys {
				m[k] = t.vals[i].constant
			}
			t.constant = m
		}
		return t
	case n.Kind == yaml.SequenceNode:
		items, _ := l.seq(n, path, "value")
		t.kind = tmplList
		for i, it := range items {
			v := l.template(it, fmt.Sprintf("%s[%d]", path, i), scope, owner, where, selfOK)
			if v == nil {
				v = &Template{kind: tmplConst}
			}
			t.vals = append(t.vals, v)
			t.hasExprs = t.hasExprs || v.hasExprs
		}
		if !t.hasExprs {
			list := make([]any, len(t.vals))
			for i, v := range t.vals {
				list[i] = v.constant
			}
			t.constant = list
		}
		return t
	case isString(n):
		s := n.Value
		if !strings.Contains(s, exprOpen) {
			t.kind = tmplConst
			t.constant = s
			return t
		}
		parts, exact, err := splitTemplate(s)
		if err != nil {
			l.errorAt(t.Pos, path, "write expressions as ${{ expression }}", "%v", err)
			return nil
		}
		t.hasExprs = true
		for i := range parts {
			if parts[i].src == "" {
				continue
			}
			prog, ok := l.compile(parts[i].src, t.Pos, path, scope, owner, where, selfOK)
			if !ok {
				return nil
			}
			parts[i].prog = prog
		}
		if exact {
			t.kind = tmplExpr
			t.prog = parts[0].prog
			t.src = parts[0].src
		} else {
			t.kind = tmplInterp
			t.parts = parts
		}
		return t
	default:
		t.kind = tmplConst
		t.constant = l.value(n, path)
		return t
	}
}

func (l *loader) compile(src string, p Position, path string, scope exprScope, owner int, where string, selfOK bool) (*vm.Program, bool) {
	prog, refs, problems, err := l.exprs.compile(src, scope)
	if err != nil {
		msg := firstLine(err.Error())
		hint := "see docs/language.md#expressions"
		if !scope.item && (strings.Contains(msg, "unknown name item") || strings.Contains(msg, "unknown name index")) {
			hint = "item and index exist only in steps with for_each"
		} else if strings.Contains(msg, "unknown name now") {
			hint = "expressions have no clock: the time is an input of the decider; use a sleep or until step"
		} else if scope.env != nil {
			hint = triggerHint(msg)
		} else if strings.Contains(msg, "unknown name") {
			hint = "the environment has input, steps, process (and item, index in for_each)"
		}
		l.errorAt(p, path, hint, "invalid expression %q: %s", src, msg)
		return nil, false
	}
	l.exprRefs[src] = refs
	for _, pr := range problems {
		l.errorAt(p, path, "", "expression %q: %s", src, pr)
	}
	for _, r := range refs {
		r.pos = p
		l.refs = append(l.refs, ownedRef{ref: r, owner: owner, where: where, selfOK: selfOK, exprText: src})
	}
	return prog, true
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}
