package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/admin"
)

func init() { subcommands = append(subcommands, newDefinitionsCommand) }

func newDefinitionsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "definitions",
		Aliases: []string{"defs"},
		Short:   "Registered definitions: list, get, register (through the admin API)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List registered definitions, every version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				defs, err := c.Definitions(ctx)
				if err != nil {
					return err
				}
				return emit(cmd, defs, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tVERSION\tFILE\tREGISTERED")
					for _, d := range defs {
						fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", d.Name, d.Version, dash(d.File), since(d.RegisteredAt))
					}
				})
			})
		},
	})
	var (
		version int
		source  bool
	)
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a definition's steps (and --source)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				d, err := c.Definition(ctx, args[0], version)
				if err != nil {
					return err
				}
				return emit(cmd, d, func(w io.Writer) {
					if source {
						fmt.Fprint(w, d.Source)
						return
					}
					fmt.Fprintf(w, "%s v%d (%s)\n", d.Name, d.Version, dash(d.File))
					if d.Description != "" {
						fmt.Fprintln(w, oneLine(d.Description, 120))
					}
					fmt.Fprintln(w, "\nSTEP\tKIND\tSERVICE\tCOMMAND\tNEEDS\tCOMPENSATED\tON FAILURE")
					for _, s := range d.Steps {
						comp := "no"
						if s.Compensate {
							comp = "yes"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Kind, dash(s.Service), dash(s.Command), dash(strings.Join(s.Needs, ",")), comp, s.OnFailure)
					}
				})
			})
		},
	}
	get.Flags().IntVar(&version, "version", 0, "version (default: the latest)")
	get.Flags().BoolVar(&source, "source", false, "print the YAML source")
	cmd.AddCommand(get, &cobra.Command{
		Use:   "register FILE|DIR...",
		Short: "Validate and register definitions through the admin API",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return registerViaAPI(cmd, args)
		},
	})
	return cmd
}
