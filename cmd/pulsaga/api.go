package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/protocol"
)

// The commands that operate processes talk to the admin API of an
// orchestrator (its admin_listen address): --server or PULSAGA_SERVER,
// with a token from PULSAGA_TOKEN, a file (--token-file or
// PULSAGA_TOKEN_FILE) or --token (which other users see in ps).

func addAPIFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.String("server", "", "URL of the pulsaga admin API, such as http://127.0.0.1:8088 (or PULSAGA_SERVER)")
	pf.String("token", "", "bearer token of the admin API; prefer PULSAGA_TOKEN or --token-file: a flag shows in ps")
	pf.String("token-file", "", "file holding the bearer token of the admin API (or PULSAGA_TOKEN_FILE)")
	pf.StringP("output", "o", "table", "output format: table, json or yaml")
}

// apiToken finds the token: --token, --token-file, PULSAGA_TOKEN,
// PULSAGA_TOKEN_FILE, in that order.
func apiToken(cmd *cobra.Command) (string, error) {
	if f := cmd.Flag("token"); f != nil && f.Value.String() != "" {
		return f.Value.String(), nil
	}
	file := ""
	if f := cmd.Flag("token-file"); f != nil {
		file = f.Value.String()
	}
	if file == "" {
		if t := os.Getenv("PULSAGA_TOKEN"); t != "" {
			return t, nil
		}
		file = os.Getenv("PULSAGA_TOKEN_FILE")
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, " \t\n") {
		return "", fmt.Errorf("token file %s: want the token alone on one line", file)
	}
	return t, nil
}

func flagValue(cmd *cobra.Command, name, env string) string {
	if f := cmd.Flag(name); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return os.Getenv(env)
}

// usesAPI: start, signal and register go through the API when a server is
// given, else straight to Pulsar as before.
func usesAPI(cmd *cobra.Command) bool { return flagValue(cmd, "server", "PULSAGA_SERVER") != "" }

func apiClient(cmd *cobra.Command) (*admin.Client, error) {
	server := flagValue(cmd, "server", "PULSAGA_SERVER")
	if server == "" {
		return nil, errors.New("no pulsaga server: set --server or PULSAGA_SERVER to an orchestrator's admin address, such as http://127.0.0.1:8088")
	}
	token, err := apiToken(cmd)
	if err != nil {
		return nil, err
	}
	return admin.NewClient(server, token)
}

// explain turns API errors into what the user should read: the server
// cannot be reached, or it answers but cannot reach the broker, or it
// refuses.
func explain(cmd *cobra.Command, err error) error {
	server := flagValue(cmd, "server", "PULSAGA_SERVER")
	var ae *admin.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("%v (set PULSAGA_TOKEN, --token-file or --token)", ae.Message)
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		return fmt.Errorf("the pulsaga server at %s is up, but cannot do this now: %v", server, ae)
	case errors.Is(err, admin.ErrUnreachable):
		return fmt.Errorf("%w (is an orchestrator running with admin_listen at that address? see --server / PULSAGA_SERVER)", err)
	}
	return err
}

// checkID refuses a process id that breaks the rule before anything is
// sent.
func checkID(id string) error {
	if err := protocol.CheckProcessID(id); err != nil {
		return fmt.Errorf("process id: %w", err)
	}
	return nil
}

// apiRun runs f with a client and a bounded context.
func apiRun(cmd *cobra.Command, f func(ctx context.Context, c *admin.Client) error) error {
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	return explain(cmd, f(ctx, c))
}

func outputFormat(cmd *cobra.Command) (string, error) {
	o := "table"
	if f := cmd.Flag("output"); f != nil {
		o = f.Value.String()
	}
	switch o {
	case "table", "json", "yaml":
		return o, nil
	}
	return "", fmt.Errorf("--output %q: want table, json or yaml", o)
}

// emit prints v as JSON or YAML, or calls table for the human form.
func emit(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	o, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	switch o {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func printAccepted(cmd *cobra.Command, res *admin.ActionResult) error {
	return emit(cmd, res, func(w io.Writer) {
		what := res.Action
		if res.StepID != "" {
			what += " of step " + res.StepID
		}
		fmt.Fprintf(w, "%s: %s accepted (request %s, by %s)\n", res.ProcessID, what, res.RequestID, res.Actor)
	})
}

func startViaAPI(cmd *cobra.Command, def, id string, version int, input json.RawMessage) error {
	return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
		res, err := c.Start(ctx, admin.StartBody{ProcessID: id, Definition: def, Version: version, Input: input}, admin.NewKey())
		if err != nil {
			return err
		}
		return emit(cmd, res, func(w io.Writer) {
			if res.Created != nil && !*res.Created {
				e := res.Existing
				if e == nil {
					fmt.Fprintf(w, "%s exists already: nothing started\n", res.ProcessID)
					return
				}
				fmt.Fprintf(w, "%s exists already (%s v%d, %s, started %s) with the same input: nothing started\n", res.ProcessID, e.Definition, e.Version, e.Status, since(e.StartedAt))
				return
			}
			fmt.Fprintln(w, res.ProcessID)
		})
	})
}

func signalViaAPI(cmd *cobra.Command, pid, name, signalID, reason string, data json.RawMessage) error {
	return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
		res, err := c.Signal(ctx, pid, admin.SignalBody{Name: name, Data: data, SignalID: signalID, Reason: reason}, admin.NewKey())
		if err != nil {
			return err
		}
		return printAccepted(cmd, res)
	})
}

// definitionFiles expands directories into their .yaml/.yml files.
func definitionFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				files = append(files, filepath.Join(p, n))
			}
		}
	}
	return files, nil
}

func registerViaAPI(cmd *cobra.Command, paths []string) error {
	files, err := definitionFiles(paths)
	if err != nil {
		return err
	}
	return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			info, v, err := c.Register(ctx, filepath.Base(f), src)
			if err != nil {
				for _, p := range v.Errors {
					fmt.Fprintln(cmd.ErrOrStderr(), strings.Replace(p.Text, filepath.Base(f), f, 1))
				}
				return fmt.Errorf("register %s: %w", f, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s v%d\n", info.Name, info.Version)
		}
		return nil
	})
}

// completeProcesses completes process ids from the API (when a server is
// set).
func completeProcesses(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := apiClient(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	l, err := c.List(ctx, map[string][]string{"q": {prefix}, "limit": {"200"}})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, p := range l.Processes {
		if strings.HasPrefix(p.ProcessID, prefix) {
			out = append(out, p.ProcessID+"\t"+string(p.Status))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
