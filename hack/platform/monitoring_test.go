package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool is the binary make test-platform fetches (hack/platform/promtool.sh), or $PROMTOOL.
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		bin, _ = filepath.Abs(filepath.Join(root, "bin", "promtool"))
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no promtool at %s: run make test-platform, which fetches it", bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// alertRules reads the PrometheusRule's spec: a Prometheus rule file.
func alertRules(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil || rule.Kind != "PrometheusRule" {
		t.Fatalf("alerts.yaml is not a PrometheusRule: %v", err)
	}
	out, err := yaml.Marshal(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAlerts runs promtool's checks and its unit tests of the alerts (alerts_test.yaml).
func TestAlerts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.rules.yaml"), alertRules(t), 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(promtool(t, dir, "check", "rules", "alerts.rules.yaml"))
	t.Log(promtool(t, dir, "test", "rules", "alerts_test.yaml"))
}

// exported reads the metric names the operator registers (controllers/metrics.go): a vector's
// Name, or a scrape-time collector's prometheus.NewDesc.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "controllers", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:Name:\s+|NewDesc\(\s*)"(salesforce_[a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Fatal("found no metric names in controllers/metrics.go")
	}
	return names
}

var metricName = regexp.MustCompile(`\bsalesforce_[a-z_]+\b`)

func checkMetricNames(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	for _, m := range metricName.FindAllString(expr, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
		if !names[m] && !names[base] {
			t.Errorf("%s uses %s, which the operator does not export", where, m)
		}
	}
}

// TestAlertsUseExportedMetrics keeps the alerts in step with controllers/metrics.go.
func TestAlertsUseExportedMetrics(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(alertRules(t), &rules); err != nil {
		t.Fatal(err)
	}
	names := exported(t)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkMetricNames(t, r.Alert, r.Expr, names)
		}
	}
}

// TestDashboard checks the Grafana dashboard: valid JSON, every panel on the data source variable,
// every query valid PromQL (promtool parses them as recording rules) over exported metrics.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "config", "grafana", "salesforce-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID         int    `json:"id"`
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	// Grafana's variables, as Grafana would substitute them.
	vars := strings.NewReplacer(`$namespace`, `.*`, `$__rate_interval`, `5m`)
	names := exported(t)
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	ids := map[int]bool{}
	queries := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeats", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, q := range p.Targets {
			checkMetricNames(t, p.Title, q.Expr, names)
			expr, _ := json.Marshal(vars.Replace(q.Expr))
			fmt.Fprintf(&rules, "  - record: dashboard:panel%d_%d\n    expr: %s\n", p.ID, i, expr)
			queries++
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yaml"), []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "check", "rules", "dashboard.rules.yaml")
	t.Logf("%d panels, %d queries, all valid PromQL", len(dash.Panels), queries)
}
