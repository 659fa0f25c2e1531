package app

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// runBulk returns the component that runs bulk jobs (admin.BulkRunner):
// every orchestrator instance runs one, with or without its admin server,
// and the broker makes one of them active at a time.
func runBulk(name string, b bus.Bus, topics protocol.Topics, reg *engine.Registry, log zerolog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		r, err := admin.NewBulkRunner(admin.BulkRunnerOptions{Bus: b, Topics: topics, Registry: reg, Name: name}, log)
		if err != nil {
			return err
		}
		return r.Run(ctx)
	}
}
