package main

import (
	"testing"

	"github.com/pulsaga/pulsaga/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, "decider", main) }

// The command line: help, bad flags and invalid values exit 2 before
// anything starts, naming the flag or key; a broker that cannot be reached
// exits 1 with the error logged.
func TestCommandLine(t *testing.T) {
	cmdtest.Run(t, cmdtest.Standard("--concurrency=0", "concurrency"))
}
