package trigger

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

const ordersYAML = `name: orders
input:
  type: object
  required: [order_id, amount]
  properties:
    amount: {type: number}
triggers:
  - id: placed
    topic: orders
    process_id: "order-${{ message.data.order_id }}"
    input: {order_id: "${{ message.data.order_id }}", amount: "${{ message.data.amount }}", region: "${{ message.properties.region ?? 'eu' }}"}
    when: "${{ message.data?.type == 'OrderPlaced' }}"
steps:
  - id: a
    sleep: 1s
`

const rawYAML = `name: raw
triggers:
  - id: raw
    topic: raw
    process_id: "${{ message.key }}"
steps:
  - id: a
    sleep: 1s
`

func TestEvaluate(t *testing.T) {
	def, err := workflow.Load("orders.yaml", []byte(ordersYAML))
	if err != nil {
		t.Fatal(err)
	}
	rawDef, err := workflow.Load("raw.yaml", []byte(rawYAML))
	if err != nil {
		t.Fatal(err)
	}
	placed, raw := def.Triggers[0], rawDef.Triggers[0]
	msg := func(payload, key string, props map[string]string) *bus.Message {
		return &bus.Message{Topic: "orders", Payload: []byte(payload), Key: key, Properties: props, ID: bus.MessageID{1, 2}, PublishTime: time.Unix(0, 0)}
	}
	tests := []struct {
		name     string
		tr       *workflow.Trigger
		msg      *bus.Message
		ok       bool
		pid      string
		input    string
		unusable string
	}{
		{"starts", placed, msg(`{"type":"OrderPlaced","order_id":"A1","amount":5}`, "", map[string]string{"region": "us"}), true, "order-A1", `{"amount":5,"order_id":"A1","region":"us"}`, ""},
		{"default property", placed, msg(`{"type":"OrderPlaced","order_id":7,"amount":5}`, "", nil), true, "order-7", `{"amount":5,"order_id":7,"region":"eu"}`, ""},
		{"another type is ignored", placed, msg(`{"type":"OrderShipped","order_id":"A1"}`, "", nil), false, "", "", ""},
		{"not JSON is ignored by when", placed, msg(`hello`, "", nil), false, "", "", ""},
		{"no order id", placed, msg(`{"type":"OrderPlaced","amount":5}`, "", nil), false, "", "", "process_id: expression \"message.data.order_id\" yields null"},
		{"bad amount", placed, msg(`{"type":"OrderPlaced","order_id":"A2","amount":"x"}`, "", nil), false, "", "", "input does not match the schema"},
		{"raw text keyed", raw, msg(`plain text`, "k-1", nil), true, "k-1", `null`, ""},
		{"raw without key", raw, msg(`{"a":1}`, "", nil), false, "", "", "process_id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := def
			if tt.tr == raw {
				d = rawDef
			}
			st, ok, err := Evaluate(d, tt.tr, tt.msg)
			if tt.unusable != "" {
				if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), tt.unusable) {
					t.Fatalf("error %v, want unusable with %q", err, tt.unusable)
				}
				return
			}
			if err != nil || ok != tt.ok {
				t.Fatalf("ok %v err %v", ok, err)
			}
			if !ok {
				return
			}
			var got, want any
			_ = json.Unmarshal(st.Input, &got)
			_ = json.Unmarshal([]byte(tt.input), &want)
			if st.ProcessID != tt.pid || !jsonEqual(got, want) {
				t.Fatalf("start %s %s, want %s %s", st.ProcessID, st.Input, tt.pid, tt.input)
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestEnv(t *testing.T) {
	env := Env(&bus.Message{Topic: "t", Payload: []byte{0xff, 0xfe}, Key: "k", ID: bus.MessageID{1}})["message"].(map[string]any)
	if env["data"] != nil || env["payload"] != "//4=" || env["key"] != "k" || env["topic"] != "t" || env["id"] != "AQ" {
		t.Fatalf("%v", env)
	}
}
