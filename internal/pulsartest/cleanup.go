package pulsartest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// DeleteNamespace removes a test's namespace ("tenant/namespace") and
// every topic in it from the broker at adminURL, so the shared broker's
// disk does not fill with the data of finished tests. The broker refuses a
// forced namespace deletion, not a forced topic deletion, so the topics go
// first. Failures are logged, not fatal: the test's outcome does not
// depend on them.
func DeleteNamespace(t testing.TB, adminURL, namespace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := deleteNamespace(ctx, adminURL, namespace); err != nil {
		t.Logf("pulsartest: delete namespace %s: %v", namespace, err)
	}
}

func deleteNamespace(ctx context.Context, adminURL, ns string) error {
	do := func(method, path string, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(adminURL, "/")+path, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		if out != nil {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		return nil
	}
	var parts []string
	if err := do(http.MethodGet, "/admin/v2/persistent/"+ns+"/partitioned", &parts); err != nil {
		return err
	}
	for _, tp := range parts {
		if err := do(http.MethodDelete, "/admin/v2/persistent/"+strings.TrimPrefix(tp, "persistent://")+"/partitions?force=true", nil); err != nil {
			return err
		}
	}
	var topics []string
	if err := do(http.MethodGet, "/admin/v2/namespaces/"+ns+"/topics", &topics); err != nil {
		return err
	}
	for _, tp := range topics {
		if err := do(http.MethodDelete, "/admin/v2/persistent/"+strings.TrimPrefix(tp, "persistent://")+"?force=true", nil); err != nil {
			return err
		}
	}
	return do(http.MethodDelete, "/admin/v2/namespaces/"+ns, nil)
}
