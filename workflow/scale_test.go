package workflow

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// chain returns a definition of n command steps, each needing the one
// before it (the shape of issue #10's probe).
func chain(n int) []byte {
	var b strings.Builder
	b.Grow(n * 80)
	b.WriteString("name: chain\nsteps:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: s%d\n    service: svc\n    command: Do\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "    needs: [s%d]\n", i-1)
		}
	}
	return []byte(b.String())
}

// richChain is chain with each step reading the output of the step before
// it and of the first step (references that reach far up the chain), and
// a compensation on every step but the last.
func richChain(n int) []byte {
	var b strings.Builder
	b.Grow(n * 200)
	b.WriteString("name: chain\nsteps:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: s%d\n    service: svc\n    command: Do\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "    needs: [s%d]\n    input: {prev: \"${{ steps.s%d.output }}\", first: \"${{ steps.s0.output.id }}\"}\n", i-1, i-1)
		}
		if i < n-1 {
			b.WriteString("    compensate: {command: Undo}\n")
		}
	}
	return []byte(b.String())
}

// fan returns a definition of n steps: one step that n-2 parallel steps
// need, joined by a last step that needs them all.
func fan(n int) []byte {
	n -= 2
	var b strings.Builder
	b.WriteString("name: fan\nsteps:\n  - id: root\n    service: svc\n    command: Do\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: p%d\n    service: svc\n    command: Do\n    needs: [root]\n    input: \"${{ steps.root.output }}\"\n", i)
	}
	b.WriteString("  - id: join\n    service: svc\n    command: Do\n    needs: [")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "p%d", i)
	}
	b.WriteString("]\n    input: \"${{ steps.root.output }}\"\n")
	return []byte(b.String())
}

// BenchmarkLoadChain: validating a chain of steps (plain, and with
// expressions reaching up the chain). Run with
// go test -run '^$' -bench BenchmarkLoad -benchmem ./workflow/
func BenchmarkLoadChain(b *testing.B) {
	for _, shape := range []struct {
		name string
		gen  func(int) []byte
	}{{"plain", chain}, {"rich", richChain}} {
		for _, n := range []int{1000, 10000} {
			src := shape.gen(n)
			b.Run(fmt.Sprintf("%s/%d", shape.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Load("chain.yaml", src); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLoadFan: one step fanning out to n steps joined by one.
func BenchmarkLoadFan(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		src := fan(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load("fan.yaml", src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// allocated returns the bytes allocated by one Load of src.
func allocated(t *testing.T, src []byte) uint64 {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Load("x.yaml", src); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Validation is linear in the size of the definition: loading 8 times as
// many steps allocates at most about 8 times as much (a quadratic step
// would allocate 64 times as much), and the 10,000-step chain of issue #10
// (9 s and 3.1 GB before) allocates tens of MB in all.
func TestLoadIsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("loads definitions of 10,000 steps")
	}
	for _, shape := range []struct {
		name  string
		gen   func(int) []byte
		limit uint64 // bytes allocated by the 10,000-step version at most
	}{
		{"chain", chain, 60 << 20},
		{"rich chain", richChain, 200 << 20},
		{"fan", fan, 100 << 20},
	} {
		t.Run(shape.name, func(t *testing.T) {
			small, big := allocated(t, shape.gen(1250)), allocated(t, shape.gen(10000))
			ratio := float64(big) / float64(small)
			t.Logf("%s: 1,250 steps %.1f MB, 10,000 steps %.1f MB (x%.1f for x8 steps)", shape.name, float64(small)/1e6, float64(big)/1e6, ratio)
			if ratio > 10 {
				t.Errorf("allocations grow x%.1f for x8 steps: validation is not linear", ratio)
			}
			if big > shape.limit {
				t.Errorf("a 10,000-step %s allocates %.0f MB, want at most %d MB", shape.name, float64(big)/1e6, shape.limit>>20)
			}
		})
	}
}
