package engine

import (
	"encoding/json"
	"fmt"

	"github.com/pulsaga/pulsaga/workflow"
)

// messageSlack is room kept for what wraps a payload: envelope fields,
// record fields, Pulsar metadata.
const messageSlack = 16 << 10

// checkSize refuses a decision whose effects could not be written: a
// command whose input, or a state, larger than a message may be. Such a
// decision would fail every transaction that carries it, and the batch
// would come again for ever; its process fails instead (RecordFailed).
func (m *machine) checkSize(img *image, d *workflow.Decision) error {
	if m.maxMessage <= 0 {
		return nil
	}
	limit := m.maxMessage - messageSlack
	for _, c := range d.Commands {
		if len(c.Input) > limit {
			return fmt.Errorf("command %s: its input of %d bytes is more than a message may hold (%d bytes, the broker's message size less %d for the envelope)",
				c.ID, len(c.Input), limit, messageSlack)
		}
	}
	// The state travels whole in snapshots (and remote decision tasks).
	// Measure it exactly only when the data it holds is large.
	if stateData(d.State) > limit/2 {
		b, err := json.Marshal(d.State)
		if err != nil {
			return fmt.Errorf("the state of %s cannot be encoded: %v", img.pid, err)
		}
		if len(b) > limit {
			return fmt.Errorf("the state of %s would be %d bytes, more than a message may hold (%d bytes); step outputs and input are kept in it",
				img.pid, len(b), limit)
		}
	}
	return nil
}

// stateData is the size of the JSON values a state holds (input, outputs,
// items, errors): what makes a state large.
func stateData(s *workflow.State) int {
	n := len(s.Input) + len(s.Output)
	for _, st := range s.Steps {
		if st == nil {
			continue
		}
		n += len(st.Output)
		for _, it := range st.Items {
			n += len(it)
		}
		for _, runs := range [][]*workflow.Run{st.Runs, st.Compensations} {
			for _, r := range runs {
				if r == nil {
					continue
				}
				n += len(r.Output) + 64*len(r.Attempts)
				if r.Error != nil {
					n += len(r.Error.Message)
				}
			}
		}
	}
	return n
}
