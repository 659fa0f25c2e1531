package workflow

import (
	"fmt"
	"slices"
	"strings"
)

// validate checks the graph and the expression references of a parsed
// definition, and computes the indexes the decider uses.
func (l *loader) validate(def *Definition) {
	n := len(def.Steps)
	ids := make([]string, n)
	for i, s := range def.Steps {
		ids[i] = s.ID
	}
	// needs exist
	graphOK := true
	for i, s := range def.Steps {
		rs := l.steps[i]
		s.needs = s.needs[:0]
		for j, need := range s.Needs {
			p := rs.needsPos[j]
			switch k, ok := def.index[need]; {
			case !ok:
				hint := "needs lists step ids of this workflow"
				if sg := suggest(need, ids); sg != "" {
					hint = "did you mean " + sg + "?"
				}
				l.errorAt(p, "steps."+s.ID+".needs", hint, "step %q needs unknown step %q", s.ID, need)
			case k == i:
				l.errorAt(p, "steps."+s.ID+".needs", "remove it from needs", "step %q needs itself", s.ID)
				graphOK = false
			default:
				s.needs = append(s.needs, k)
			}
		}
	}
	if cyc := findCycles(def); len(cyc) > 0 {
		graphOK = false
		for _, c := range cyc {
			names := make([]string, len(c))
			for i, k := range c {
				names[i] = def.Steps[k].ID
			}
			// report at the needs entry of the first step that closes the cycle
			first := def.Steps[c[0]]
			p := first.Pos
			next := names[1%len(names)]
			for j, need := range first.Needs {
				if need == next && j < len(l.steps[c[0]].needsPos) {
					p = l.steps[c[0]].needsPos[j]
				}
			}
			l.errorAt(p, "steps."+first.ID+".needs", "remove one of these needs", "needs form a cycle: %s → %s (each step needs the next)", strings.Join(names, " → "), names[0])
		}
	}
	def.dependents = make([][]int, n)
	for i, s := range def.Steps {
		for _, k := range s.needs {
			def.dependents[k] = append(def.dependents[k], i)
		}
	}
	if !graphOK {
		// ancestor checks need a valid DAG; still check reference existence.
		for _, r := range l.refs {
			l.checkRefExists(def, r, ids)
		}
		return
	}
	topo, _ := topoOrder(def, def.dependents)
	def.topo = topo
	rc := newReach(def, def.dependents, topo)
	valid := make([]bool, len(l.refs))
	for i, r := range l.refs {
		if valid[i] = l.checkRefExists(def, r, ids); valid[i] && r.owner >= 0 {
			rc.ask(r.owner, def.index[r.step])
		}
	}
	rc.solve()
	for i, r := range l.refs {
		if !valid[i] || r.owner < 0 {
			continue
		}
		k := def.index[r.step]
		owner := def.Steps[r.owner]
		if k == r.owner {
			if !r.selfOK {
				l.errorAt(r.pos, "steps."+owner.ID+"."+r.where, "a step sees its own output only in its compensate block", "step %q refers to itself in %s", owner.ID, r.where)
			}
			continue
		}
		if !rc.needs(r.owner, k) {
			l.errorAt(r.pos, "steps."+owner.ID+"."+r.where, fmt.Sprintf("add %s to the needs of %s", r.step, owner.ID),
				"step %q uses steps.%s in %s but does not need %q, so it may not have run", owner.ID, r.step, r.where, r.step)
		}
	}
	// A compensation on a step that every other step precedes (the last
	// one) runs too: when a parent process compensates this one after it
	// completed (docs/language.md#child-sagas), so it is not refused.
}

func (l *loader) checkRefExists(def *Definition, r ownedRef, ids []string) bool {
	where := "output"
	if r.owner >= 0 {
		where = "steps." + def.Steps[r.owner].ID + "." + r.where
	}
	if _, ok := def.index[r.step]; !ok {
		hint := "steps.<id> must name a step of this workflow"
		if sg := suggest(r.step, ids); sg != "" {
			hint = "did you mean steps." + sg + "?"
		}
		l.errorAt(r.pos, where, hint, "expression %q refers to unknown step %q", r.exprText, r.step)
		return false
	}
	if r.field != "" && !contains(stepFields, r.field) {
		hint := "use steps." + r.step + ".output or steps." + r.step + ".status"
		if sg := suggest(r.field, stepFields); sg != "" {
			hint = "did you mean steps." + r.step + "." + sg + "?"
		}
		l.errorAt(r.pos, where, hint, "expression %q uses unknown field %q of steps.%s", r.exprText, r.field, r.step)
		return false
	}
	return true
}

// findCycles returns the cycles of the needs graph (each once, as step
// indexes in dependency order).
func findCycles(def *Definition) [][]int {
	n := len(def.Steps)
	color := make([]uint8, n) // 0 new, 1 on stack, 2 done
	var stack []int
	var cycles [][]int
	var visit func(i int)
	visit = func(i int) {
		color[i] = 1
		stack = append(stack, i)
		for _, k := range def.Steps[i].needs {
			switch color[k] {
			case 0:
				visit(k)
			case 1:
				// cycle: from k to i on the stack
				start := len(stack) - 1
				for start >= 0 && stack[start] != k {
					start--
				}
				c := append([]int(nil), stack[start:]...)
				// the stack runs in "needs" direction: each entry needs the next
				// rotate so that the step appearing first in the file leads
				m := 0
				for j := range c {
					if c[j] < c[m] {
						m = j
					}
				}
				c = append(c[m:], c[:m]...)
				cycles = append(cycles, c)
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = 2
	}
	for i := 0; i < n; i++ {
		if color[i] == 0 {
			visit(i)
		}
	}
	return cycles
}

func sortInts(a []int) { slices.Sort(a) }
