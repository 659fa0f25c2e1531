package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/admin"
)

func init() { subcommands = append(subcommands, newDLQCommand) }

func newDLQCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Dead letters: list the topics, inspect, replay to the origin topic, purge",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the dead-letter topics with their pending counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				topics, err := c.DLQList(ctx)
				if err != nil {
					return err
				}
				return emit(cmd, topics, func(w io.Writer) {
					fmt.Fprintln(w, "TOPIC\tPENDING")
					for _, t := range topics {
						fmt.Fprintf(w, "%s\t%d\n", t.Topic, t.Count)
					}
					if len(topics) == 0 {
						fmt.Fprintln(w, "(no dead-letter topic: nothing was ever dead-lettered in this namespace)")
					}
				})
			})
		},
	})
	var limit int
	inspect := &cobra.Command{
		Use:               "inspect TOPIC",
		Short:             "Show the pending dead letters of a topic, with their reasons",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeDLQ,
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				m, err := c.DLQInspect(ctx, args[0], limit)
				if err != nil {
					return err
				}
				return emit(cmd, m, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tKEY\tORIGIN\tDEAD-LETTERED\tREASON\tPAYLOAD")
					for _, d := range m.Messages {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, dash(d.Key), dash(d.OriginTopic), since(d.DeadLetteredAt), oneLine(dash(d.Reason), 60), oneLine(string(d.Payload), 60))
					}
					if m.Count > len(m.Messages) {
						fmt.Fprintf(w, "(%d of %d; --limit for more)\n", len(m.Messages), m.Count)
					}
				})
			})
		},
	}
	inspect.Flags().IntVar(&limit, "limit", 100, "dead letters to show (1-1000)")
	cmd.AddCommand(inspect, newDLQActionCommand("replay"), newDLQActionCommand("purge"))
	return cmd
}

func newDLQActionCommand(action string) *cobra.Command {
	var (
		ids    []string
		all    bool
		reason string
	)
	short := map[string]string{
		"replay": "Republish dead letters to the topic they came from (--id, or --all)",
		"purge":  "Delete dead letters from the topic without replaying them (--id, or --all)",
	}[action]
	cmd := &cobra.Command{
		Use:               action + " TOPIC",
		Short:             short,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeDLQ,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(ids) > 0) {
				return errors.New("name the dead letters with --id (repeatable) or pass --all")
			}
			key := admin.NewKey()
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				res, err := c.DLQAct(ctx, args[0], action, admin.DLQActionBody{IDs: ids, Reason: reason}, key)
				if err != nil {
					return err
				}
				return emit(cmd, res, func(w io.Writer) {
					verb := map[string]string{"replay": "replayed", "purge": "purged"}[action]
					fmt.Fprintf(w, "%s %d dead letter(s) of %s; %d left\n", verb, len(res.Done), res.Topic, res.Remaining)
					if len(res.Skipped) > 0 {
						fmt.Fprintf(w, "not in the topic (replayed or purged already, or unknown): %s\n", strings.Join(res.Skipped, ", "))
					}
				})
			})
		},
	}
	cmd.Flags().StringSliceVar(&ids, "id", nil, "id of a dead letter (from dlq inspect); repeatable")
	cmd.Flags().BoolVar(&all, "all", false, "every pending dead letter of the topic")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the action)")
	return cmd
}

func completeDLQ(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := apiClient(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	topics, err := c.DLQList(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, t := range topics {
		out = append(out, fmt.Sprintf("%s\t%d pending", t.Topic, t.Count))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
