package controllers_test

import (
	"context"
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce/sftest"
)

// metricValue reads one series from the registry the manager's metrics endpoint serves.
func metricValue(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetrics(t *testing.T) {
	ns := newNamespace(t)
	fo, _ := connectedOrg(t, ns, "m", sftest.Production, sfv1.OrgTypeProduction)
	org := map[string]string{"namespace": ns, "name": "m"}
	expect := func(name string, labels map[string]string, ok func(float64) bool) {
		t.Helper()
		eventually(t, name, func() string {
			v, found := metricValue(t, name, labels)
			if !found || !ok(v) {
				return fmt.Sprintf("found=%v value=%v", found, v)
			}
			return ""
		})
	}
	positive := func(v float64) bool { return v > 0 }
	expect("salesforce_org_connected", org, func(v float64) bool { return v == 1 })
	expect("salesforce_org_api_requests_remaining", org, positive)
	expect("salesforce_org_api_requests_max", org, positive)
	expect("salesforce_org_last_successful_check_timestamp_seconds", org, positive)
	expect("salesforce_api_calls_total", map[string]string{"endpoint": "composite", "outcome": "ok"}, positive)
	expect("salesforce_api_calls_total", map[string]string{"endpoint": "token", "outcome": "ok"}, positive)
	expect("salesforce_org_check_duration_seconds", map[string]string{"reason": sfv1.ReasonConnected}, positive)

	fo.RevokeRefreshTokens()
	fo.ExpireAccessTokens()
	requestCheck(t, ns, "m")
	waitOrgReady(t, ns, "m", metav1.ConditionFalse, sfv1.ReasonCredentialRejected)
	expect("salesforce_org_connected", org, func(v float64) bool { return v == 0 })
	expect("salesforce_api_calls_total", map[string]string{"endpoint": "token", "outcome": "rejected"}, positive)

	// An org that is not checked exports no series: an alert on connected == 0 means a failed check.
	o := getOrg(t, ns, "m")
	o.Spec.State = sfv1.StateInactive
	if err := k8s.Update(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	waitOrgReady(t, ns, "m", metav1.ConditionTrue, sfv1.ReasonInactive)
	eventually(t, "the Inactive org's series to go", func() string {
		if _, found := metricValue(t, "salesforce_org_connected", org); found {
			return "still exported"
		}
		return ""
	})

	// Deleting the org deletes its series.
	if err := k8s.Delete(context.Background(), getOrg(t, ns, "m")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the org's series to go", func() string {
		if _, found := metricValue(t, "salesforce_org_connected", org); found {
			return "still exported"
		}
		return ""
	})
}
