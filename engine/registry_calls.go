package engine

import (
	"fmt"

	"github.com/pulsaga/pulsaga/workflow"
)

// checkCalls says whether every definition a call step of def runs is
// registered (or is def itself: a recursive call, bounded by
// workflow.MaxCallDepth). r.mu is held.
func (r *Registry) checkCalls(def *workflow.Definition, batch map[string]map[int]bool) error {
	for _, c := range def.Calls() {
		if c.Definition == def.Name && (c.Version == 0 || c.Version == def.Version) {
			continue
		}
		if batch[c.Definition] != nil && (c.Version == 0 || batch[c.Definition][c.Version]) {
			continue
		}
		if r.lookup(c.Definition, c.Version) != nil {
			continue
		}
		what := fmt.Sprintf("%q", c.Definition)
		if c.Version > 0 {
			what = fmt.Sprintf("%q version %d", c.Definition, c.Version)
		}
		return fmt.Errorf("%w: %s: step %q calls definition %s, which is not registered (register it first, or in the same directory)", ErrUnknownDefinition, c.Pos, c.Step, what)
	}
	return nil
}

// callOrder orders definitions so that each comes after the ones its call
// steps run (among defs); the order is otherwise kept.
func callOrder(defs []*workflow.Definition) []int {
	placed := make([]bool, len(defs))
	var order []int
	for len(order) < len(defs) {
		progress := false
		for i, d := range defs {
			if placed[i] {
				continue
			}
			ready := true
			for _, c := range d.Calls() {
				for j, o := range defs {
					if j != i && !placed[j] && o.Name == c.Definition && (c.Version == 0 || c.Version == o.Version) {
						ready = false
					}
				}
			}
			if ready {
				placed[i], progress = true, true
				order = append(order, i)
			}
		}
		if !progress { // definitions calling each other: keep the file order
			for i := range defs {
				if !placed[i] {
					placed[i] = true
					order = append(order, i)
				}
			}
		}
	}
	return order
}
