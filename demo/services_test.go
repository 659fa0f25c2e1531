package demo

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

func TestFailsRandomlyIsIndependentPerAttempt(t *testing.T) {
	f := Faults{Probability: 0.25, Seed: 7}
	const n = 20000
	fails, both := 0, 0
	for i := 0; i < n; i++ {
		a := f.FailsRandomly(fmt.Sprintf("p-%d/flight/1", i))
		b := f.FailsRandomly(fmt.Sprintf("p-%d/flight/2", i))
		if a {
			fails++
		}
		if a && b {
			both++
		}
	}
	if rate := float64(fails) / n; math.Abs(rate-0.25) > 0.02 {
		t.Errorf("failure rate %.3f, want 0.25", rate)
	}
	if rate := float64(both) / n; math.Abs(rate-0.0625) > 0.01 {
		t.Errorf("two consecutive attempts both fail at %.4f, want about 0.0625 (independent)", rate)
	}
	if (Faults{}).FailsRandomly("x") {
		t.Error("no probability, no failure")
	}
}

// A DirStore lets one key's work be claimed once among many claimers (as
// worker processes sharing a directory), each loser getting the winner's
// output; a MemoryStore does the same within a process.
func TestStoresClaimOnce(t *testing.T) {
	for name, s := range map[string]Store{"memory": NewMemoryStore(), "dir": DirStore{Dir: t.TempDir()}} {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			firsts := 0
			outs := map[string]bool{}
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out, first, err := s.Claim("p/flight", []byte(fmt.Sprintf(`{"by":%d}`, i)))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if first {
						firsts++
					}
					outs[string(out)] = true
				}()
			}
			wg.Wait()
			if firsts != 1 || len(outs) != 1 {
				t.Errorf("%d claims won, %d distinct outputs; want 1 and 1", firsts, len(outs))
			}
			if _, first, _ := s.Claim("p/hotel", []byte(`{}`)); !first {
				t.Error("another key is not claimed")
			}
		})
	}
}
