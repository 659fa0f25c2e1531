package workflow

var callKeys = []string{"definition", "version", "input"}

// callAllows reports whether a step key applies to call steps.
func callAllows(k string) bool {
	switch k {
	case "retry", "timeout", "deadline", "for_each", "max_parallel":
		return true
	}
	return false
}

func callHint(k string) string {
	switch k {
	case "input":
		return "write the child's input inside call: {definition: ..., input: ...}"
	case "compensate":
		return "a call step is compensated by its child's own compensation; remove compensate"
	case "service":
		return "a call step starts a workflow, not a command: remove service"
	}
	return ""
}

// call reads the call: block of a step: the child's definition, version
// and input. It also gives the step its implicit compensation: when the
// parent compensates, a completed child runs its own compensation.
func (l *loader) call(def *Definition, st *Step, f *field, path string, scope exprScope) {
	c := &Call{}
	st.Call = c
	st.Compensate = &Compensation{Service: EngineService, Command: CmdCompensateChild, Retry: def.Retry, Pos: f.keyPos}
	if f.val == nil {
		l.errorAt(f.keyPos, path, "write call: {definition: other-workflow, input: {...}}", "call is empty")
		return
	}
	fields, _, ok := l.mapping(f.val, path, "call", callKeys)
	if !ok {
		return
	}
	if df := fields["definition"]; df == nil || df.val == nil {
		l.errorAt(f.valPos, join(path, "definition"), "name the workflow to run, e.g. definition: payment-flow", "call has no definition")
	} else if s, ok := l.str(df, join(path, "definition"), "definition"); ok {
		if !namePattern.MatchString(s) {
			l.errorAt(df.valPos, join(path, "definition"), "use letters, digits, '-', '_' and '.'", "invalid workflow name %q", s)
		}
		c.Definition = s
	}
	if vf := fields["version"]; vf != nil && vf.val != nil {
		if v, ok := l.integer(vf, join(path, "version"), "version"); ok {
			if v < 1 {
				l.errorAt(vf.valPos, join(path, "version"), "leave version out for the latest", "version must be at least 1")
			}
			c.Version = v
		}
	}
	if inf := fields["input"]; inf != nil && inf.val != nil {
		c.Input = l.template(inf.val, join(path, "input"), scope, st.index, "call.input", false)
	}
}

// CallTarget is a definition a call step runs.
type CallTarget struct {
	Step       string
	Definition string
	Version    int // 0: the latest
	Pos        Position
}

// Calls lists the definitions the call steps of def run.
func (def *Definition) Calls() []CallTarget {
	var out []CallTarget
	for _, st := range def.Steps {
		if st.Kind == KindCall && st.Call != nil {
			out = append(out, CallTarget{Step: st.ID, Definition: st.Call.Definition, Version: st.Call.Version, Pos: st.Pos})
		}
	}
	return out
}
