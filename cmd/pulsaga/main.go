// Command pulsaga is the command-line interface of the pulsaga workflow
// engine. Each subcommand lives in its own file and keeps its logic in
// packages; this file only assembles the root command.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// subcommands registers the subcommands; each subcommand file appends its
// constructor in an init function.
var subcommands []func() *cobra.Command

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "pulsaga",
		Short:         "pulsaga runs sagas (workflows) on Apache Pulsar",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addAPIFlags(root)
	for _, c := range subcommands {
		root.AddCommand(c())
	}
	return root
}

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		if e, ok := err.(exitError); ok {
			os.Exit(e.code)
		}
		fmt.Fprintln(os.Stderr, "pulsaga:", err)
		os.Exit(2)
	}
}
