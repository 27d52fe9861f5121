package plugin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
)

func (o *options) treeCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "tree [-n NS | -A]",
		Short: "Show implementations, their orgs and the pipeline stages on each, with connection and Ready",
		Long: `Show the namespace's SalesforceImplementations, the SalesforceOrgs in each (production first), and
the PipelineStages mapped to each org, with connection, Ready and Ready's reason, as clusterctl
describe or flux tree do. Orgs in no implementation and stages whose org does not exist follow.`,
		Example: `  kubectl salesforce tree
  kubectl salesforce tree -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := ""
			if !all {
				var err error
				if ns, err = o.namespace(); err != nil {
					return err
				}
			}
			kc, err := o.client()
			if err != nil {
				return err
			}
			return tree(cmd.Context(), kc, ns, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Every namespace.")
	return cmd
}

type treeRow struct {
	prefix, name, typ, conn, ready, reason string
}

func tree(ctx context.Context, kc client.Client, ns string, w io.Writer) error {
	var impls sfv1.SalesforceImplementationList
	var orgs sfv1.SalesforceOrgList
	var stages sfv1.PipelineStageList
	opts := []client.ListOption{}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	for _, l := range []client.ObjectList{&impls, &orgs, &stages} {
		if err := kc.List(ctx, l, opts...); err != nil {
			return fmt.Errorf("listing: %w", apiError(err))
		}
	}
	namespaces := map[string]bool{}
	for _, i := range impls.Items {
		namespaces[i.Namespace] = true
	}
	for _, o := range orgs.Items {
		namespaces[o.Namespace] = true
	}
	for _, s := range stages.Items {
		namespaces[s.Namespace] = true
	}
	if len(namespaces) == 0 {
		where := "namespace " + ns
		if ns == "" {
			where = "any namespace"
		}
		fmt.Fprintf(w, "No SalesforceImplementations, SalesforceOrgs or PipelineStages in %s.\n", where)
		return nil
	}
	var nsList []string
	for n := range namespaces {
		nsList = append(nsList, n)
	}
	sort.Strings(nsList)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "NAME\tTYPE\tCONNECTION\tREADY\tREASON")
	for _, n := range nsList {
		var rows []treeRow
		if ns == "" {
			rows = append(rows, treeRow{name: "Namespace/" + n})
		}
		rows = append(rows, namespaceRows(n, impls.Items, orgs.Items, stages.Items, ns == "")...)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", r.prefix, r.name, r.typ, r.conn, r.ready, r.reason)
		}
	}
	return nil
}

func readyOf(conds []metav1.Condition) (status, reason string) {
	c := meta.FindStatusCondition(conds, sfv1.ConditionReady)
	if c == nil {
		return "Unknown", ""
	}
	return string(c.Status), c.Reason
}

func namespaceRows(ns string, impls []sfv1.SalesforceImplementation, orgs []sfv1.SalesforceOrg, stages []sfv1.PipelineStage, indent bool) []treeRow {
	base := ""
	if indent {
		base = "  "
	}
	var inNS []sfv1.SalesforceOrg
	for _, o := range orgs {
		if o.Namespace == ns {
			inNS = append(inNS, o)
		}
	}
	stagesOf := map[string][]sfv1.PipelineStage{}
	for _, s := range stages {
		if s.Namespace == ns {
			stagesOf[s.Spec.OrgRef.Name] = append(stagesOf[s.Spec.OrgRef.Name], s)
		}
	}
	for _, l := range stagesOf {
		sort.Slice(l, func(i, j int) bool {
			if l[i].Spec.Pipeline != l[j].Spec.Pipeline {
				return l[i].Spec.Pipeline < l[j].Spec.Pipeline
			}
			return l[i].Spec.Order < l[j].Spec.Order
		})
	}
	var rows []treeRow
	orgRows := func(prefix, childPrefix string, o sfv1.SalesforceOrg) {
		ready, reason := readyOf(o.Status.Conditions)
		conn := string(o.Status.Connection)
		if o.Spec.State == sfv1.StateInactive {
			conn = "Inactive"
		}
		rows = append(rows, treeRow{prefix: prefix, name: "SalesforceOrg/" + o.Name, typ: string(o.Spec.Type), conn: conn, ready: ready, reason: reason})
		l := stagesOf[o.Name]
		delete(stagesOf, o.Name)
		for i, s := range l {
			branch := "├─"
			if i == len(l)-1 {
				branch = "└─"
			}
			ready, reason := readyOf(s.Status.Conditions)
			rows = append(rows, treeRow{prefix: childPrefix + branch, name: "PipelineStage/" + s.Name,
				typ: fmt.Sprintf("%s#%d", s.Spec.Pipeline, s.Spec.Order), conn: string(s.Status.OrgConnection), ready: ready, reason: reason})
		}
	}
	placed := map[string]bool{}
	sortedImpls := append([]sfv1.SalesforceImplementation(nil), impls...)
	sort.Slice(sortedImpls, func(i, j int) bool { return sortedImpls[i].Name < sortedImpls[j].Name })
	for _, impl := range sortedImpls {
		if impl.Namespace != ns {
			continue
		}
		ready, reason := readyOf(impl.Status.Conditions)
		conn := fmt.Sprintf("%d/%d", impl.Status.ConnectedCount, impl.Status.OrgCount)
		if impl.Spec.Suspend {
			conn += " suspended"
		}
		rows = append(rows, treeRow{prefix: base, name: "SalesforceImplementation/" + impl.Name, typ: impl.Spec.DisplayName, conn: conn, ready: ready, reason: reason})
		var members []sfv1.SalesforceOrg
		prod := ""
		if impl.Spec.ProductionOrgRef != nil {
			prod = impl.Spec.ProductionOrgRef.Name
		}
		for _, o := range inNS {
			if o.Name == prod || o.Spec.ImplementationRef != nil && o.Spec.ImplementationRef.Name == impl.Name {
				members = append(members, o)
			}
		}
		sort.SliceStable(members, func(i, j int) bool {
			if (members[i].Name == prod) != (members[j].Name == prod) {
				return members[i].Name == prod
			}
			return members[i].Name < members[j].Name
		})
		for i, o := range members {
			branch, child := "├─", "│ "
			if i == len(members)-1 {
				branch, child = "└─", "  "
			}
			placed[o.Name] = true
			orgRows(base+branch, base+child, o)
		}
	}
	for _, o := range inNS {
		if !placed[o.Name] {
			orgRows(base, base, o)
		}
	}
	var orphans []string
	for org := range stagesOf {
		orphans = append(orphans, org)
	}
	sort.Strings(orphans)
	for _, org := range orphans {
		for _, s := range stagesOf[org] {
			ready, reason := readyOf(s.Status.Conditions)
			rows = append(rows, treeRow{prefix: base, name: "PipelineStage/" + s.Name + " (org " + org + " not found)",
				typ: fmt.Sprintf("%s#%d", s.Spec.Pipeline, s.Spec.Order), conn: string(s.Status.OrgConnection), ready: ready, reason: reason})
		}
	}
	return rows
}
