package workflow

// The needs graph. Validation and the decider only ever walk it edge by
// edge: nothing here builds the transitive closure, whose size is quadratic
// in the number of steps (a 10,000-step chain has 50 million ancestor
// pairs). See docs/language.md#limits for what that buys.

// topoOrder returns the steps in an order where each step comes after the
// steps it needs (Kahn's algorithm, ties in file order), or ok false when
// the graph has a cycle. O(steps + needs).
func topoOrder(def *Definition, dependents [][]int) (order []int, ok bool) {
	n := len(def.Steps)
	indeg := make([]int, n)
	for i, s := range def.Steps {
		indeg[i] = len(s.needs)
	}
	order = make([]int, 0, n)
	for i := range n {
		if indeg[i] == 0 {
			order = append(order, i)
		}
	}
	for head := 0; head < len(order); head++ {
		for _, j := range dependents[order[head]] {
			if indeg[j]--; indeg[j] == 0 {
				order = append(order, j)
			}
		}
	}
	return order, len(order) == n
}

// reach answers "does step owner need step target, directly or through
// other steps?" for many pairs, with memory linear in the graph: the
// queries are grouped by target and each target is searched once, forward
// over its dependents, no further (in topological order) than the last
// owner that asks about it. A query answered by a direct need costs
// nothing.
type reach struct {
	def        *Definition
	dependents [][]int
	pos        []int // position of each step in topological order
	queries    map[int][]int
	answers    map[[2]int]bool
}

func newReach(def *Definition, dependents [][]int, topo []int) *reach {
	pos := make([]int, len(topo))
	for p, k := range topo {
		pos[k] = p
	}
	return &reach{def: def, dependents: dependents, pos: pos, queries: map[int][]int{}, answers: map[[2]int]bool{}}
}

func needsDirectly(s *Step, target int) bool {
	for _, k := range s.needs {
		if k == target {
			return true
		}
	}
	return false
}

// ask registers a query; answer it with needs after solve.
func (r *reach) ask(owner, target int) {
	if owner == target || needsDirectly(r.def.Steps[owner], target) {
		return
	}
	if _, dup := r.answers[[2]int{owner, target}]; dup {
		return
	}
	r.answers[[2]int{owner, target}] = false
	r.queries[target] = append(r.queries[target], owner)
}

// solve answers every registered query.
func (r *reach) solve() {
	if len(r.queries) == 0 {
		return
	}
	mark := make([]int, len(r.def.Steps)) // generation that reached a step
	gen := 0
	var stack []int
	for target, owners := range r.queries {
		gen++
		limit := 0
		for _, o := range owners {
			limit = max(limit, r.pos[o])
		}
		stack = append(stack[:0], target)
		mark[target] = gen
		for len(stack) > 0 {
			k := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, j := range r.dependents[k] {
				if mark[j] != gen && r.pos[j] <= limit {
					mark[j] = gen
					stack = append(stack, j)
				}
			}
		}
		for _, o := range owners {
			r.answers[[2]int{o, target}] = mark[o] == gen
		}
	}
}

// needs reports whether owner needs target directly or transitively (after
// solve, for a pair that was asked).
func (r *reach) needs(owner, target int) bool {
	if owner == target || needsDirectly(r.def.Steps[owner], target) {
		return true
	}
	return r.answers[[2]int{owner, target}]
}

// compensationsBlocked says, for each step, whether a step that depends on
// it (directly or transitively) still has a compensation to finish: the
// step's own compensation must wait. O(steps + needs), dependents first.
func (d *decider) compensationsBlocked() []bool {
	def := d.def
	blocked := make([]bool, len(def.Steps))
	for p := len(def.topo) - 1; p >= 0; p-- {
		k := def.topo[p]
		for _, j := range def.dependents[k] {
			if blocked[j] || !d.compDone(j) {
				blocked[k] = true
				break
			}
		}
	}
	return blocked
}

// transitiveDependents lists the steps that need step k directly or
// transitively, in file order. O(steps + needs); for tests and tools, the
// decider never needs the whole set.
func (def *Definition) transitiveDependents(k int) []int {
	seen := make([]bool, len(def.Steps))
	stack := []int{k}
	var out []int
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range def.dependents[x] {
			if !seen[j] {
				seen[j] = true
				out = append(out, j)
				stack = append(stack, j)
			}
		}
	}
	sortInts(out)
	return out
}
