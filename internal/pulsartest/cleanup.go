package pulsartest

import (
	"context"
	"encoding/json"
	"errors"
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
	// del deletes a topic; a topic the broker refuses to delete (Pulsar
	// 4.0.7 answers 422 for a compacted topic whose last compaction
	// failed) is unloaded and tried again.
	del := func(topic, suffix string) error {
		path := "/admin/v2/persistent/" + strings.TrimPrefix(topic, "persistent://")
		var err error
		for try := 0; try < 4; try++ {
			if err = do(http.MethodDelete, path+suffix+"?force=true", nil); err == nil {
				return nil
			}
			_ = do(http.MethodPut, path+"/unload", nil)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(try+1) * 250 * time.Millisecond):
			}
		}
		return err
	}
	// The system topics too (transaction buffer snapshots, pending-ack
	// stores, topic policies), after the others, whose deletion can write
	// to them: the broker refused a namespace whose bundle still held one
	// ("409 Cannot delete non empty bundle") after it had already hidden
	// the namespace, and kept its topics loaded until it restarted.
	var errs []error
	for _, system := range []bool{false, true} {
		q := ""
		if system {
			q = "?includeSystemTopic=true"
		}
		var parts []string
		if err := do(http.MethodGet, "/admin/v2/persistent/"+ns+"/partitioned"+q, &parts); err != nil {
			return err
		}
		for _, tp := range parts {
			errs = append(errs, del(tp, "/partitions"))
		}
		var topics []string
		if err := do(http.MethodGet, "/admin/v2/namespaces/"+ns+"/topics"+q, &topics); err != nil {
			return err
		}
		for _, tp := range topics {
			if strings.Contains(tp, "-partition-") && !system {
				continue // went with its partitioned topic
			}
			errs = append(errs, del(tp, ""))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return do(http.MethodDelete, "/admin/v2/namespaces/"+ns, nil)
}
