package workflow

import (
	"fmt"
	"regexp"
	"strings"
)

// Trigger starts a process of its definition for each message published
// on a Pulsar topic (by any producer, in any language). The runtime
// (package trigger) evaluates its expressions over TriggerEnv.
type Trigger struct {
	ID string
	// Topic is a short topic name (in the engine's namespace) or a full
	// one (persistent://tenant/namespace/topic).
	Topic string
	// ProcessID yields the process id (a non-empty string): the same
	// message, delivered again, yields the same id and starts nothing new.
	ProcessID *Template
	// Input yields the start input (default: message.data).
	Input *Template
	// When, if set, must yield true for the message to start a process;
	// other messages are acknowledged and ignored.
	When *Template
	Pos  Position
}

// TriggerEnvName is the one name trigger expressions see: message.data (the
// payload parsed as JSON, null if it is not JSON), message.payload (the
// payload as text), message.key, message.properties, message.topic,
// message.id and message.publish_time (RFC 3339).
const TriggerEnvName = "message"

var triggerKeys = []string{"id", "topic", "process_id", "input", "when"}

var topicPattern = regexp.MustCompile(`^((persistent|non-persistent)://[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.=-]+$`)

// triggerScope is where trigger expressions are compiled.
func triggerScope() exprScope {
	return exprScope{env: map[string]any{TriggerEnvName: map[string]any{}}}
}

// triggers reads the triggers: list of a workflow.
func (l *loader) triggers(def *Definition, f *field) {
	items, ok := l.seq(f.val, "triggers", "triggers")
	if !ok {
		return
	}
	seen := map[string]Position{}
	for i, it := range items {
		path := fmt.Sprintf("triggers[%d]", i)
		fields, _, ok := l.mapping(it, path, "a trigger", triggerKeys)
		if !ok {
			continue
		}
		tr := &Trigger{Pos: l.pos(it)}
		if idf := fields["id"]; idf == nil || idf.val == nil {
			l.errorAt(tr.Pos, path, "add id: <name> to the trigger", "trigger has no id")
		} else if s, ok := l.str(idf, join(path, "id"), "id"); ok {
			if !idPattern.MatchString(s) {
				l.errorAt(idf.valPos, join(path, "id"), "use letters, digits and _", "invalid trigger id %q", s)
			}
			if p, dup := seen[s]; dup {
				l.errorAt(idf.valPos, join(path, "id"), "give each trigger its own id", "duplicate trigger id %q (first used at line %d)", s, p.Line)
			}
			seen[s] = idf.valPos
			tr.ID = s
			path = "triggers." + s
		}
		if tf := fields["topic"]; tf == nil || tf.val == nil {
			l.errorAt(tr.Pos, join(path, "topic"), "name the Pulsar topic to listen to, e.g. topic: orders", "trigger has no topic")
		} else if s, ok := l.str(tf, join(path, "topic"), "topic"); ok {
			if !topicPattern.MatchString(s) {
				l.errorAt(tf.valPos, join(path, "topic"), "write a short name such as orders, or persistent://tenant/namespace/topic", "invalid topic %q", s)
			}
			tr.Topic = s
		}
		if pf := fields["process_id"]; pf == nil || pf.val == nil {
			l.errorAt(tr.Pos, join(path, "process_id"), "derive the id from the message, e.g. process_id: \"order-${{ message.data.order_id }}\", so a message delivered twice starts one process", "trigger has no process_id")
		} else {
			tr.ProcessID = l.template(pf.val, join(path, "process_id"), triggerScope(), -1, "process_id", false)
			if tr.ProcessID != nil && !tr.ProcessID.hasExprs {
				l.errorAt(pf.valPos, join(path, "process_id"), "use an expression over the message, e.g. \"order-${{ message.data.order_id }}\"", "process_id is a constant: every message would name the same process")
			} else if tr.ProcessID != nil && tr.ProcessID.kind != tmplExpr && tr.ProcessID.kind != tmplInterp {
				l.errorAt(pf.valPos, join(path, "process_id"), "write a string such as \"order-${{ message.data.order_id }}\"", "process_id must be a string")
			}
		}
		if inf := fields["input"]; inf != nil && inf.val != nil {
			tr.Input = l.template(inf.val, join(path, "input"), triggerScope(), -1, "input", false)
		}
		if wf := fields["when"]; wf != nil {
			if wf.val == nil {
				l.errorAt(wf.keyPos, join(path, "when"), "write when: ${{ condition }}", "when is empty")
			} else {
				tr.When = l.template(wf.val, join(path, "when"), triggerScope(), -1, "when", false)
				if tr.When != nil && tr.When.kind != tmplExpr {
					l.errorAt(wf.valPos, join(path, "when"), "write when: ${{ message.data.type == 'OrderPlaced' }}", "when must be exactly one expression")
				}
			}
		}
		def.Triggers = append(def.Triggers, tr)
	}
}

// triggerHint is the hint of an unknown name in a trigger expression.
func triggerHint(msg string) string {
	if strings.Contains(msg, "unknown name") {
		return "trigger expressions see only message (data, payload, key, properties, topic, id, publish_time)"
	}
	return ""
}
