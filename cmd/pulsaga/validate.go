package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/workflow"
)

func init() { subcommands = append(subcommands, newValidateCommand) }

func newValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check workflow definitions; print every error as file:line:col: message (hint)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := validateFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), args); n > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

// validateFiles loads each file, prints "file: ok" on out for valid ones
// and every error on errOut for the others; it returns the number of files
// with errors.
func validateFiles(out, errOut io.Writer, files []string) int {
	bad := 0
	for _, f := range files {
		def, err := workflow.LoadFile(f)
		if err == nil {
			fmt.Fprintf(out, "%s: ok (%s v%d, %d steps)\n", f, def.Name, def.Version, len(def.Steps))
			continue
		}
		bad++
		var verrs workflow.ValidationErrors
		if errors.As(err, &verrs) {
			for _, e := range verrs {
				fmt.Fprintln(errOut, e.Error())
			}
			continue
		}
		fmt.Fprintf(errOut, "%s: %v\n", f, err)
	}
	return bad
}
